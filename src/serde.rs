//! serde support for secrets (feature `serde`).
//!
//! # Use case
//!
//! Forms, JSON bodies and queue messages that carry a PIN, a card number or
//! a code: deserialize them straight into [`Secret`] or [`Pan`], and
//! persist a value only where the code says so in as many words.
//!
//! # About
//!
//! - **Deserializing** reads the value itself. When the input does not fit
//!   (a number where a string was expected, a string where bytes were, an
//!   invalid card number), the error names the expected type and never the
//!   input: serde's own messages quote it (``invalid type: integer `4321`
//!   ``), and web frameworks send those messages back to the client and to
//!   their logs. The text `*REDACTED*` is refused: it is what a value
//!   looks like after it went through a log, never a value itself, and
//!   accepting it would make a restored secret equal to a public string.
//! - **Serializing** a secret needs an explicit opt-in. A struct that
//!   derives `Serialize` with a `Secret` or `Pan` field does not compile
//!   unless the field says `#[serde(with = "pinseal::serde::expose")]`
//!   (which writes the value), or the secret's type implements
//!   [`SerializableSecret`] (a marker for your own types). There is no
//!   silent placeholder: a queue message that must carry a PIN carries it
//!   on purpose, and one that must not never did. Prefer carrying an
//!   envelope (a sealed value in hex) over a value in clear.
//!
//! ```compile_fail,E0277
//! #[derive(serde::Serialize)]
//! struct Gather {
//!     call: String,
//!     pin: pinseal::Secret<String>, // Secret<String> is not Serialize
//! }
//! ```
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
//! use pinseal::{ExposeSecret, Secret};
//! use pinseal::secret::Pan;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Gather {
//!     call: String,
//!     pin: Secret<String>,
//!     card: Pan,
//! }
//!
//! let g: Gather = serde_json::from_str(r#"{"call":"CA-1","pin":"4321","card":"4111111111111111"}"#)?;
//! assert_eq!(g.pin.expose_secret(), "4321");
//!
//! // A number where a string belongs: the error does not quote it.
//! let err = serde_json::from_str::<Gather>(r#"{"call":"CA-1","pin":4321,"card":"4111111111111111"}"#)
//!     .err()
//!     .unwrap();
//! assert!(!err.to_string().contains("4321"));
//!
//! // The redaction marker is not a PIN.
//! assert!(serde_json::from_str::<Gather>(r#"{"call":"CA-1","pin":"*REDACTED*","card":"4111111111111111"}"#).is_err());
//!
//! // A queue message that carries the PIN says so.
//! #[derive(Serialize, Deserialize)]
//! struct Job {
//!     call: String,
//!     #[serde(with = "pinseal::serde::expose")]
//!     pin: Secret<String>,
//! }
//! let json = serde_json::to_string(&Job { call: "CA-1".into(), pin: Secret::new("4321".into()) })?;
//! assert_eq!(json, r#"{"call":"CA-1","pin":"4321"}"#);
//! # Ok::<(), serde_json::Error>(())
//! ```

use core::any::type_name;
use core::fmt;

use ::serde::de::Error as _;
use ::serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use subtle::ConstantTimeEq;

use crate::secret::{ExposeSecret, Pan, REDACTED, Secret};

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

/// Marks a type whose secrets may be serialized with their value, so that
/// `Secret<YourType>` implements `Serialize`.
///
/// Implement it for your own secret-bearing type when every serialization
/// of it is meant to carry the value (an encrypted blob, say). It cannot be
/// implemented for `String` or `Vec<u8>` outside this crate, and this crate
/// does not: for those, opt a field in with [`expose`].
pub trait SerializableSecret: Serialize {}

impl<T: Zeroize + SerializableSecret> Serialize for Secret<T> {
    /// Writes the value itself: `T` opted in through
    /// [`SerializableSecret`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.expose_secret().serialize(serializer)
    }
}

impl<'de, T: Zeroize + Deserialize<'de> + AsRef<[u8]>> Deserialize<'de> for Secret<T> {
    /// Reads the value itself; an error names `T`, never the input, and
    /// the text `*REDACTED*` is refused.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Secret::new(read::<T, D>(deserializer)?);
        if bool::from(value.expose_secret().as_ref().ct_eq(REDACTED.as_bytes())) {
            return Err(D::Error::custom(
                "a redaction marker is not a secret value (input not shown)",
            ));
        }
        Ok(value)
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
    /// Writes the id as its lowercase hex characters (32, or 34 with a
    /// slot byte).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for crate::otp::ChallengeId {
    /// Reads 32 hex characters, or 34 with a slot byte; an error does not
    /// quote the input.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl ::serde::de::Visitor<'_> for Hex {
            type Value = crate::otp::ChallengeId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a challenge id (32 or 34 hex characters)")
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
/// carry it: `#[serde(with = "pinseal::serde::expose")]` on a [`Secret`]
/// or [`Pan`] field.
///
/// # Security
///
/// The value is written in clear wherever the serializer writes. Prefer an
/// envelope, a sealed value in hex, in a plain `String` field.
/// Deserialization is the same as without the attribute: errors never
/// quote the input, and `*REDACTED*` is refused.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Secret};
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
    /// Whatever the serializer reports for the value.
    pub fn serialize<V, T, S>(secret: &V, serializer: S) -> Result<S::Ok, S::Error>
    where
        V: ExposeSecret<T>,
        T: Serialize + ?Sized,
        S: Serializer,
    {
        secret.expose_secret().serialize(serializer)
    }

    /// Deserializes a secret, as its own `Deserialize` does.
    ///
    /// # Errors
    ///
    /// A deserializer error that names the type, never the input.
    pub fn deserialize<'de, V, D>(deserializer: D) -> Result<V, D::Error>
    where
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        V::deserialize(deserializer)
    }
}
