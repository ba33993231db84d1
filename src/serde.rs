//! serde support for secrets (feature `serde`).
//!
//! # Use case
//!
//! Forms, JSON bodies and queue messages that carry a PIN, a card number or
//! a code: deserialize them straight into [`Secret`] or [`Pan`], log or
//! echo the struct safely, and persist a value only where the code says so
//! in as many words.
//!
//! # About
//!
//! - **Serializing** a [`Secret`] or a [`Pan`] writes the string
//!   `*REDACTED*`, so a struct that reaches a log, an error report or an
//!   API response never carries the value.
//! - **Deserializing** reads the value itself. When the input does not fit
//!   (a number where a string was expected, a string where bytes were, an
//!   invalid card number), the error names the expected type and never the
//!   input: serde's own messages quote it (``invalid type: integer `4321`
//!   ``), and web frameworks send those messages back to the client and to
//!   their logs.
//! - **Persisting** a value needs an explicit opt-in on the field:
//!   `#[serde(with = "pinseal::serde::expose")]` serializes the value
//!   itself. Prefer storing an envelope (a `String` from
//!   [`Sealer::seal_hex`](crate::Sealer::seal_hex)) over storing a value in
//!   clear.
//!
//! The OTP types a web service sends and receives are serde types too:
//! [`ChallengeId`](crate::otp::ChallengeId) as its hex string,
//! [`Verdict`](crate::otp::Verdict) as `{"status":"pending","attempts_left":3}`.
//!
//! # Security
//!
//! Deserializers may copy the input into buffers of their own (a JSON
//! string with escapes, for example) and free them without wiping; that is
//! outside this crate's reach. The error a deserializer first produced,
//! which may quote the input, is dropped unread.
//!
//! # Example
//!
//! ```
//! use pinseal::{Pan, Secret};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Gather {
//!     call: String,
//!     pin: Secret<String>,
//!     card: Pan,
//! }
//!
//! let g: Gather = serde_json::from_str(r#"{"call":"CA-1","pin":"4321","card":"4111111111111111"}"#)?;
//! assert_eq!(g.pin.expose_secret(), "4321");
//! assert_eq!(
//!     serde_json::to_string(&g)?,
//!     r#"{"call":"CA-1","pin":"*REDACTED*","card":"*REDACTED*"}"#
//! );
//!
//! // A number where a string belongs: the error does not quote it.
//! let err = serde_json::from_str::<Gather>(r#"{"call":"CA-1","pin":4321,"card":"4111111111111111"}"#)
//!     .err()
//!     .unwrap();
//! assert!(!err.to_string().contains("4321"));
//! # Ok::<(), serde_json::Error>(())
//! ```

use core::any::type_name;
use core::fmt;

use ::serde::de::Error as _;
use ::serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use crate::{Pan, REDACTED, Secret};

/// The message of every deserialization error: the expected type, never the
/// input.
struct NotShown(&'static str);

impl fmt::Display for NotShown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid value for a secret {} (input not shown)", self.0)
    }
}

/// Reads a `T`, replacing any error with one that does not quote the input.
fn read<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    T::deserialize(deserializer).map_err(|_| D::Error::custom(NotShown(type_name::<T>())))
}

impl<T: Zeroize> Serialize for Secret<T> {
    /// Writes the string `*REDACTED*`, never the value.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de, T: Zeroize + Deserialize<'de>> Deserialize<'de> for Secret<T> {
    /// Reads the value itself; an error names `T`, never the input.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer).map(Secret::new)
    }
}

impl Serialize for Pan {
    /// Writes the string `*REDACTED*`, never the number.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Pan {
    /// Reads a string of 12 to 19 digits with a valid Luhn check digit; an
    /// error never contains the input.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text: Secret<String> = read(deserializer)?;
        Pan::parse(text.expose_secret()).map_err(|_| D::Error::custom(NotShown("card number")))
    }
}

/// The wire form of a [`Verdict`](crate::otp::Verdict): Verify's status
/// strings, internally tagged.
#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum VerdictRepr {
    Approved,
    #[serde(rename = "pending")]
    Rejected {
        attempts_left: u32,
    },
    Expired,
    #[serde(rename = "max_attempts_reached")]
    Locked,
    Canceled,
    #[serde(rename = "not_found")]
    Unknown,
}

impl Serialize for crate::otp::Verdict {
    /// Writes `{"status":"..."}` (with `attempts_left` when pending).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use crate::otp::Verdict;
        match *self {
            Verdict::Approved => VerdictRepr::Approved,
            Verdict::Rejected { attempts_left } => VerdictRepr::Rejected { attempts_left },
            Verdict::Expired => VerdictRepr::Expired,
            Verdict::Locked => VerdictRepr::Locked,
            Verdict::Canceled => VerdictRepr::Canceled,
            Verdict::Unknown => VerdictRepr::Unknown,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for crate::otp::Verdict {
    /// Reads what `serialize` writes; an error does not quote the input.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use crate::otp::Verdict;
        let repr = VerdictRepr::deserialize(deserializer)
            .map_err(|_| D::Error::custom("invalid verdict (input not shown)"))?;
        Ok(match repr {
            VerdictRepr::Approved => Verdict::Approved,
            VerdictRepr::Rejected { attempts_left } => Verdict::Rejected { attempts_left },
            VerdictRepr::Expired => Verdict::Expired,
            VerdictRepr::Locked => Verdict::Locked,
            VerdictRepr::Canceled => Verdict::Canceled,
            VerdictRepr::Unknown => Verdict::Unknown,
        })
    }
}

impl Serialize for crate::otp::ChallengeId {
    /// Writes the id as its 32 lowercase hex characters.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for crate::otp::ChallengeId {
    /// Reads 32 hex characters; an error does not quote the input.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl ::serde::de::Visitor<'_> for Hex {
            type Value = crate::otp::ChallengeId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a challenge id (32 hex characters)")
            }
            fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse()
                    .map_err(|_| E::custom("invalid challenge id (input not shown)"))
            }
        }
        deserializer
            .deserialize_str(Hex)
            .map_err(|_| D::Error::custom("invalid challenge id (input not shown)"))
    }
}

/// The explicit opt-in to serialize a secret's value, for fields that must
/// persist: `#[serde(with = "pinseal::serde::expose")]`.
///
/// # Security
///
/// The value is written in clear wherever the serializer writes. Prefer an
/// envelope from [`Sealer::seal_hex`](crate::Sealer::seal_hex) in a plain
/// `String` field. Deserialization is the same as without the attribute:
/// errors never quote the input.
///
/// # Example
///
/// ```
/// use pinseal::Secret;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Enrollment {
///     account: String,
///     #[serde(with = "pinseal::serde::expose")]
///     totp_secret: Secret<String>,
/// }
///
/// let e = Enrollment { account: "alice".into(), totp_secret: Secret::new("JBSWY3DPEHPK3PXP".into()) };
/// let json = serde_json::to_string(&e)?;
/// assert_eq!(json, r#"{"account":"alice","totp_secret":"JBSWY3DPEHPK3PXP"}"#);
/// let back: Enrollment = serde_json::from_str(&json)?;
/// assert!(back.totp_secret == e.totp_secret);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub mod expose {
    use super::*;

    /// Serializes the secret's value itself.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports for `T`.
    pub fn serialize<T, S>(secret: &Secret<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: Zeroize + Serialize,
        S: Serializer,
    {
        secret.expose_secret().serialize(serializer)
    }

    /// Deserializes a secret, as `Secret`'s own `Deserialize` does.
    ///
    /// # Errors
    ///
    /// A deserializer error that names `T`, never the input.
    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Secret<T>, D::Error>
    where
        T: Zeroize + Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Secret::deserialize(deserializer)
    }
}
