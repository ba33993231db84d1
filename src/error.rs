//! The crate's one error type.

use core::fmt;
use core::time::Duration;

/// Every way a pinseal operation can fail.
///
/// Variants carry no input data: an error never holds, prints or echoes a
/// key, a plaintext, a PIN, a code, a phone number or the input that caused
/// it, so it is always safe to log with `{}` or `{:?}`. The one value an
/// error carries is the wait before a spent budget lifts
/// ([`Error::retry_after`]): a refusal says when to come back, so a web
/// service can answer `Retry-After` without a second store call.
///
/// Decryption failures are deliberately one opaque variant,
/// [`Error::Decrypt`], whatever the cause (short input, bad hex, wrong key,
/// wrong associated data, a flipped bit), so that a caller who reports errors
/// cannot become a decryption oracle.
///
/// The enum is `#[non_exhaustive]`: match it with a wildcard arm.
///
/// # Example
///
/// ```
/// use pinseal::{Error, Key};
///
/// let err = Key::from_hex("not a key").unwrap_err();
/// assert_eq!(err, Error::KeyLength);
/// // The message names the kind of failure, never the input.
/// assert!(!err.to_string().contains("not a key"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// An envelope could not be opened. One variant for every cause.
    Decrypt,
    /// Key material is not exactly 32 bytes (64 hex characters).
    KeyLength,
    /// Key material of the right length is not valid hexadecimal.
    KeyHex,
    /// The environment variable that should hold a key is not set, or is not
    /// valid Unicode.
    KeyEnvMissing,
    /// Key material is not valid standard base64 (with padding).
    KeyBase64,
    /// A key file cannot be read, is not a regular file, or is longer than
    /// any key.
    KeyFile,
    /// A key file grants others a permission, or its group more than read
    /// (Unix): it must be `0600`, `0400`, `0640` or `0440`.
    KeyFileMode,
    /// A caller-supplied output buffer is too small for the result.
    BufferTooSmall,
    /// A plaintext is longer than AES-GCM allows under one nonce
    /// (2^36 - 32 bytes).
    PlaintextTooLong,
    /// A card number is not 12 to 19 ASCII digits with a valid Luhn check
    /// digit.
    InvalidPan,
    /// An OTP policy parameter is out of its documented range.
    InvalidPolicy,
    /// An HOTP/TOTP parameter (digit count, step, secret) is out of range.
    InvalidOtpParameter,
    /// A string is not a well-formed challenge id.
    InvalidChallengeId,
    /// An `otpauth://` enrollment URI is malformed, incomplete or out of
    /// range.
    InvalidOtpUri,
    /// The subject has used its send budget for the current window.
    SendLimit {
        /// Time until the window ends and the budget is restored.
        retry_after: Duration,
    },
    /// The subject has used its attempt budget for the current window; no
    /// new code is issued until the window ends.
    Locked {
        /// Time until the window ends and the budget is restored.
        retry_after: Duration,
    },
    /// The client has used its send budget for the current window
    /// (`Otp::issue_from`).
    ClientLimit {
        /// Time until the client's window ends and its budget is restored.
        retry_after: Duration,
    },
    /// The client has used its check budget for the current window
    /// (`Otp::check_from`, `Otp::verify_from`): nothing was checked.
    ClientCheckLimit {
        /// Time until the client's window ends and its budget is restored.
        retry_after: Duration,
    },
    /// The fraud guard has blocked the phone number's prefix (too many
    /// sends to numbers in its range, or too few of them approved): no code
    /// is sent to any number in it until the block lifts.
    PrefixBlocked {
        /// Time until the block lifts.
        retry_after: Duration,
    },
    /// The fraud guard does not send codes to the phone number's country
    /// (calling code): it is denied, or not among those allowed.
    CountryBlocked,
    /// A phone number is not in international form (`+` or `00`, country
    /// code, 7 to 15 digits).
    InvalidPhoneNumber,
    /// A webhook's signature does not match its URL, parameters and the
    /// account's token.
    WebhookSignature,
    /// A signed JSON webhook's body does not hash to the `bodySHA256` in its
    /// URL, or the URL has none.
    WebhookBody,
    /// An envelope sealed with an expiry was authentic but has expired.
    Expired,
    /// The challenge store holds as many live challenges as it is allowed to.
    StoreFull,
    /// The challenge store could not be reached or answered with an error.
    Store,
    /// The challenge store held a record this version cannot read.
    StoreCorrupt,
    /// The challenge store is configured wrongly: not a valid URL, a TLS URL
    /// without TLS support compiled in, or a single-node client on a
    /// cluster node (or the reverse).
    StoreConfig,
    /// The challenge store refused the credentials, or requires some.
    StoreAuth,
    /// The TLS handshake with the challenge store was refused: its
    /// certificate is not trusted or does not name the host.
    StoreTls,
    /// Concurrent updates to one subject kept conflicting; retrying later is
    /// safe.
    Contention,
    /// Something that may be accepted only once (a webhook delivery, a
    /// one-time envelope, see `otp::AcceptOnce`) was presented again.
    Replayed,
    /// A request parameter is missing, malformed or out of range (a web
    /// service's own check, answered as Verify's 60200), or a webhook came
    /// with another method than `POST`.
    InvalidParameter,
    /// A `Keyring` holds as many keys as it may (`Keyring::MAX_KEYS`).
    TooManyKeys,
    /// AWS KMS could not be reached, or did not answer in time.
    Kms,
    /// AWS KMS refused: no permission for the key, a disabled key, or a
    /// wrapped key that is not one (or was made for another purpose).
    KmsRefused,
    /// A message (an SMS with a code) could not be handed to the delivery
    /// service: it was unreachable or did not answer in time.
    Delivery,
    /// The delivery service refused a message: a number that is not valid
    /// or has opted out, no permission, a spending limit.
    DeliveryRefused,
    /// A webhook configuration is not valid: its public base URL is not an
    /// `http` or `https` URL with a host and nothing after the path.
    WebhookConfig,
    /// A webhook names a signature algorithm this version does not check
    /// (only `HMAC_SHA1` and `HMAC_SHA256` are known), or a signing key it
    /// was not given.
    WebhookAlgorithm,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Decrypt => "envelope could not be opened",
            Error::KeyLength => "key must be exactly 32 bytes (64 hex characters)",
            Error::KeyHex => "key is not valid hexadecimal",
            Error::KeyEnvMissing => "key environment variable is not set or not valid Unicode",
            Error::KeyBase64 => "key is not valid base64",
            Error::KeyFile => "key file cannot be read or is not a key file",
            Error::KeyFileMode => {
                "key file grants others access, or its group more than read (use 0600 or 0400)"
            }
            Error::BufferTooSmall => "output buffer is too small",
            Error::PlaintextTooLong => "plaintext is too long for AES-GCM",
            Error::InvalidPan => "card number is not valid",
            Error::InvalidPolicy => "OTP policy parameter is out of range",
            Error::InvalidOtpParameter => "HOTP/TOTP parameter is out of range",
            Error::InvalidChallengeId => "challenge id is not valid",
            Error::InvalidOtpUri => "otpauth URI is not valid",
            Error::SendLimit { .. } => "send budget for this subject is spent",
            Error::Locked { .. } => "attempt budget for this subject is spent",
            Error::ClientLimit { .. } => "send budget for this client is spent",
            Error::ClientCheckLimit { .. } => "check budget for this client is spent",
            Error::PrefixBlocked { .. } => "sending to this number range is blocked for a while",
            Error::CountryBlocked => "sending to this country is not permitted",
            Error::InvalidPhoneNumber => "phone number is not in international form",
            Error::WebhookSignature => "webhook signature does not match",
            Error::WebhookBody => "webhook body does not match its signed hash",
            Error::Expired => "envelope has expired",
            Error::StoreFull => "challenge store is full",
            Error::Store => "challenge store is unavailable",
            Error::StoreCorrupt => "challenge store returned an unreadable record",
            Error::StoreConfig => {
                "challenge store configuration is not valid (URL, TLS support or cluster mode)"
            }
            Error::StoreAuth => "challenge store refused the credentials",
            Error::StoreTls => "challenge store's TLS certificate was not accepted",
            Error::Contention => "challenge store is busy with conflicting updates",
            Error::Replayed => "already accepted once",
            Error::InvalidParameter => "a request parameter is missing or not valid",
            Error::WebhookConfig => "webhook configuration is not valid (public base URL)",
            Error::TooManyKeys => "keyring holds as many keys as it may",
            Error::Kms => "key management service is unavailable",
            Error::KmsRefused => "key management service refused the request",
            Error::Delivery => "message delivery service is unavailable",
            Error::DeliveryRefused => "message delivery service refused the message",
            Error::WebhookAlgorithm => "webhook signature scheme or key is not known",
        })
    }
}

impl std::error::Error for Error {}

/// What kind of failure an [`Error`] is: what a web service answers, and
/// whether trying again can help.
///
/// | class | errors | HTTP | retry |
/// |---|---|---|---|
/// | [`BadInput`](ErrorClass::BadInput) | `InvalidChallengeId`, `InvalidPan`, `InvalidPhoneNumber`, `InvalidOtpUri`, `PlaintextTooLong`, `InvalidParameter` | 400 | no: the input is wrong |
/// | [`Unauthentic`](ErrorClass::Unauthentic) | `Decrypt`, `Expired`, `WebhookSignature`, `WebhookBody`, `WebhookAlgorithm`, `Replayed` | 403 | no |
/// | [`Limited`](ErrorClass::Limited) | `SendLimit`, `Locked`, `ClientLimit`, `ClientCheckLimit` | 429 | after [`Error::retry_after`] |
/// | [`Refused`](ErrorClass::Refused) | `PrefixBlocked`, `CountryBlocked` | 403 | `PrefixBlocked` after [`Error::retry_after`]; `CountryBlocked` no |
/// | [`Unavailable`](ErrorClass::Unavailable) | `Store`, `StoreFull`, `Contention`, `Kms`, `Delivery` | 503 | yes, with backoff |
/// | [`Internal`](ErrorClass::Internal) | `KeyLength`, `KeyHex`, `KeyBase64`, `KeyEnvMissing`, `KeyFile`, `KeyFileMode`, `InvalidPolicy`, `InvalidOtpParameter`, `BufferTooSmall`, `StoreCorrupt`, `StoreConfig`, `StoreAuth`, `StoreTls`, `WebhookConfig`, `TooManyKeys`, `KmsRefused`, `DeliveryRefused` | 500 | no: configuration or code to fix |
///
/// # Example
///
/// ```
/// use core::time::Duration;
/// use pinseal::{Error, ErrorClass};
///
/// let refused = Error::SendLimit { retry_after: Duration::from_secs(42) };
/// assert_eq!(refused.class(), ErrorClass::Limited);
/// assert_eq!(refused.retry_after(), Some(Duration::from_secs(42)));
/// assert_eq!(Error::Store.class().http_status(), 503);
/// assert!(Error::Contention.is_retryable());
/// assert!(!Error::InvalidChallengeId.is_retryable());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The caller's input is malformed; the same request fails again.
    BadInput,
    /// The input is not authentic, or no longer valid: an envelope that does
    /// not open, a webhook that is not signed by the account, an expired
    /// envelope.
    Unauthentic,
    /// A send or attempt budget is spent; the same request succeeds once the
    /// window ends.
    Limited,
    /// A policy forbids the request (the fraud guard blocks the number's
    /// range or country); asking again does not help until the block lifts.
    Refused,
    /// The challenge store cannot serve the request now; retrying later is
    /// safe.
    Unavailable,
    /// A key, a parameter or stored state is wrong: the service's own
    /// configuration or code needs fixing.
    Internal,
}

impl ErrorClass {
    /// The HTTP status code a web service answers for this class: 400, 403,
    /// 429, 503 or 500 (see the table above).
    pub fn http_status(&self) -> u16 {
        match self {
            ErrorClass::BadInput => 400,
            ErrorClass::Unauthentic => 403,
            ErrorClass::Refused => 403,
            ErrorClass::Limited => 429,
            ErrorClass::Unavailable => 503,
            ErrorClass::Internal => 500,
        }
    }
}

impl Error {
    /// The error's class (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidChallengeId
            | Error::InvalidPan
            | Error::InvalidPhoneNumber
            | Error::InvalidOtpUri
            | Error::PlaintextTooLong
            | Error::InvalidParameter => ErrorClass::BadInput,
            Error::Decrypt
            | Error::Expired
            | Error::WebhookSignature
            | Error::WebhookBody
            | Error::WebhookAlgorithm
            | Error::Replayed => ErrorClass::Unauthentic,
            Error::SendLimit { .. }
            | Error::Locked { .. }
            | Error::ClientLimit { .. }
            | Error::ClientCheckLimit { .. } => ErrorClass::Limited,
            Error::PrefixBlocked { .. } | Error::CountryBlocked => ErrorClass::Refused,
            Error::Store | Error::StoreFull | Error::Contention | Error::Kms | Error::Delivery => {
                ErrorClass::Unavailable
            }
            Error::KeyLength
            | Error::KeyHex
            | Error::KeyEnvMissing
            | Error::KeyBase64
            | Error::KeyFile
            | Error::KeyFileMode
            | Error::InvalidPolicy
            | Error::InvalidOtpParameter
            | Error::BufferTooSmall
            | Error::StoreCorrupt
            | Error::StoreConfig
            | Error::StoreAuth
            | Error::StoreTls
            | Error::WebhookConfig
            | Error::TooManyKeys
            | Error::KmsRefused
            | Error::DeliveryRefused => ErrorClass::Internal,
        }
    }

    /// Whether the same request can succeed later: a spent budget or an
    /// unavailable store ([`ErrorClass::Limited`],
    /// [`ErrorClass::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self.class(), ErrorClass::Limited | ErrorClass::Unavailable)
    }

    /// The HTTP status a web service answers: the class's
    /// ([`ErrorClass::http_status`]), except `404` for a challenge id that
    /// is not well formed, which, as for an id that is not known, names no
    /// challenge.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::InvalidChallengeId => 404,
            _ => self.class().http_status(),
        }
    }

    /// The error code a Twilio client knows for this error: Verify's where
    /// one exists, the REST API's generic ones otherwise.
    ///
    /// | code | errors |
    /// |---|---|
    /// | 20404 not found | `InvalidChallengeId` |
    /// | 60200 invalid parameter | the other bad input |
    /// | 60202 max check attempts reached | `Locked`, `ClientCheckLimit` |
    /// | 60203 max send attempts reached | `SendLimit` |
    /// | 20429 too many requests | `ClientLimit` |
    /// | 60410 delivery blocked (fraud guard) | `PrefixBlocked` |
    /// | 60605 delivery blocked (geo permissions) | `CountryBlocked` |
    /// | 20403 forbidden | not authentic: `Decrypt`, `Expired`, `WebhookSignature`, `WebhookBody`, `WebhookAlgorithm`, `Replayed` |
    /// | 20503 service unavailable | `Store`, `StoreFull`, `Contention` |
    /// | 20500 internal server error | configuration and stored state |
    ///
    /// Error bodies in the provider's shape, with a `more_info` link, are
    /// what the `axum` feature's `IntoResponse` for [`Error`] writes.
    pub fn twilio_code(&self) -> u32 {
        match self {
            Error::InvalidChallengeId => 20404,
            Error::Locked { .. } => 60202,
            Error::SendLimit { .. } => 60203,
            Error::ClientLimit { .. } => 20429,
            Error::ClientCheckLimit { .. } => 60202,
            Error::PrefixBlocked { .. } => 60410,
            Error::CountryBlocked => 60605,
            _ => match self.class() {
                ErrorClass::BadInput => 60200,
                ErrorClass::Unauthentic | ErrorClass::Refused => 20403,
                ErrorClass::Limited => 20429,
                ErrorClass::Unavailable => 20503,
                ErrorClass::Internal => 20500,
            },
        }
    }

    /// How long until a spent budget lifts: `Some` for
    /// [`Error::SendLimit`], [`Error::Locked`], [`Error::ClientLimit`],
    /// [`Error::ClientCheckLimit`] and [`Error::PrefixBlocked`] (what a web service puts in `Retry-After`), `None` for every other
    /// error.
    ///
    /// The wait is counted from the refusal, by the clock of the service
    /// that refused.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::SendLimit { retry_after }
            | Error::Locked { retry_after }
            | Error::ClientLimit { retry_after }
            | Error::ClientCheckLimit { retry_after }
            | Error::PrefixBlocked { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}
