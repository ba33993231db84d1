//! [`Envelope`]: sealed bytes, with their hex form as `Display` and
//! `FromStr`.

use core::fmt;
use core::ops::Deref;
use core::str::FromStr;

use crate::Error;

/// A sealed value: `nonce || ciphertext || tag` (or, for an expiring
/// envelope, the expiry in front of that).
///
/// # About
///
/// An envelope holds ciphertext only, so it may be logged, stored and sent
/// anywhere. Its `Display` is the envelope in lowercase hex, and `FromStr`
/// reads hex in either case, with nothing else allowed (no `0x`, no
/// spaces): one spelling per envelope up to case. It derefs to its bytes,
/// so `&envelope` is accepted wherever a `&[u8]` is, and
/// [`Envelope::into_bytes`] hands them over. With the `serde` feature it
/// serializes as its hex string.
///
/// # Errors
///
/// Parsing text that is not hex is [`Error::Decrypt`], the error every
/// failed open gives, so that a caller cannot tell bad text from a bad tag.
///
/// # Example
///
/// ```
/// use pinseal::envelope::Envelope;
/// use pinseal::{ExposeSecret, Key, Seal, Sealer};
///
/// let sealer = Sealer::new(&Key::generate());
/// let hex = sealer.seal(b"1234", b"pin").to_string();
/// assert_eq!(hex.len(), 2 * (4 + 28));
/// let envelope: Envelope = hex.to_uppercase().parse()?;
/// assert_eq!(sealer.open(&envelope, b"pin")?.expose_secret(), b"1234");
/// assert!("0xab".parse::<Envelope>().is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Envelope(Vec<u8>);

impl Envelope {
    /// The envelope's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The envelope's bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Envelope {
    /// Takes bytes read from storage as an envelope (nothing is checked
    /// until it is opened).
    fn from(bytes: Vec<u8>) -> Envelope {
        Envelope(bytes)
    }
}

impl From<&[u8]> for Envelope {
    fn from(bytes: &[u8]) -> Envelope {
        Envelope(bytes.to_vec())
    }
}

impl From<Envelope> for Vec<u8> {
    fn from(envelope: Envelope) -> Vec<u8> {
        envelope.0
    }
}

impl Deref for Envelope {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Envelope {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Envelope {
    /// The envelope in lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::hex::write_all(f, &self.0)
    }
}

impl fmt::Debug for Envelope {
    /// `Envelope("<hex>")`: ciphertext only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Envelope(\"{self}\")")
    }
}

impl FromStr for Envelope {
    type Err = Error;
    /// Reads hex in either case; anything else is [`Error::Decrypt`].
    fn from_str(text: &str) -> Result<Envelope, Error> {
        crate::hex::decode(text)
            .map(Envelope)
            .map_err(|()| Error::Decrypt)
    }
}

#[cfg(feature = "serde")]
impl ::serde::Serialize for Envelope {
    /// Writes the lowercase hex form.
    fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> ::serde::Deserialize<'de> for Envelope {
    /// Reads the hex form; an error does not quote the input.
    fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use ::serde::de::Error as _;
        struct Hex;
        impl ::serde::de::Visitor<'_> for Hex {
            type Value = Envelope;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an envelope in hex")
            }
            fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<Envelope, E> {
                v.parse()
                    .map_err(|_| E::custom("invalid envelope (input not shown)"))
            }
        }
        deserializer
            .deserialize_str(Hex)
            .map_err(|_| D::Error::custom("invalid envelope (input not shown)"))
    }
}
