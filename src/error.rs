//! The crate's one error type.

use core::fmt;

/// Every way a pinseal operation can fail.
///
/// Variants carry no data: an error never holds, prints or echoes a key, a
/// plaintext, a PIN, a code or the input that caused it, so it is always safe
/// to log with `{}` or `{:?}`.
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
    SendLimit,
    /// The subject has used its attempt budget for the current window; no
    /// new code is issued until the window ends.
    Locked,
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
    /// Concurrent updates to one subject kept conflicting; retrying later is
    /// safe.
    Contention,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Decrypt => "envelope could not be opened",
            Error::KeyLength => "key must be exactly 32 bytes (64 hex characters)",
            Error::KeyHex => "key is not valid hexadecimal",
            Error::KeyEnvMissing => "key environment variable is not set or not valid Unicode",
            Error::BufferTooSmall => "output buffer is too small",
            Error::PlaintextTooLong => "plaintext is too long for AES-GCM",
            Error::InvalidPan => "card number is not valid",
            Error::InvalidPolicy => "OTP policy parameter is out of range",
            Error::InvalidOtpParameter => "HOTP/TOTP parameter is out of range",
            Error::InvalidChallengeId => "challenge id is not valid",
            Error::InvalidOtpUri => "otpauth URI is not valid",
            Error::SendLimit => "send budget for this subject is spent",
            Error::Locked => "attempt budget for this subject is spent",
            Error::WebhookSignature => "webhook signature does not match",
            Error::WebhookBody => "webhook body does not match its signed hash",
            Error::Expired => "envelope has expired",
            Error::StoreFull => "challenge store is full",
            Error::Store => "challenge store is unavailable",
            Error::StoreCorrupt => "challenge store returned an unreadable record",
            Error::Contention => "challenge store is busy with conflicting updates",
        })
    }
}

impl std::error::Error for Error {}
