//! Keyed pseudonyms: a stable, short token for a caller in logs, without
//! the caller's number.

use core::fmt;

use data_encoding::BASE64URL_NOPAD;

use crate::secret::ExposeSecret;
use crate::{Key, KeyId};

/// Bytes of HMAC output a pseudonym keeps: 128 bits.
const TAG_BYTES: usize = 16;

/// Makes [`Pseudonym`]s for one purpose under one key.
///
/// # Use case
///
/// Operators follow a caller across log lines and systems (the IVR, the
/// back end, the SMS sender) by joining on a token. A plain hash of a phone
/// number is no good: there are few enough numbers to hash them all and
/// reverse it. A keyed pseudonym is stable for one key and purpose, and
/// reversible only by whoever holds the key.
///
/// # About
///
/// For a root key, a `purpose` and an input (UTF-8 text or bytes):
///
/// ```text
/// k     = HKDF-SHA256(root, salt = none, info = "pinseal/v1/pseudonym/" || purpose), 32 bytes
///         (that is, root.derive("pseudonym/" + purpose))
/// tag   = HMAC-SHA256(k, input), first 16 bytes
/// token = "ps1." || first 8 hex characters of KeyId(k) || "." || base64url(tag) without padding
/// ```
///
/// for example `ps1.4f0b9c1e.q3ZxL0W4yS1mV7mB8kzP2A`. The token is URL-safe,
/// 35 characters long, and names the key: after a key rotation the middle
/// field changes, so logs show which tokens can be joined. The Node.js and
/// Python interop tests compute the same tokens from this description.
///
/// # Security
///
/// - Without the key, a token reveals nothing about its input, even for
///   inputs as guessable as phone numbers. With the key, anyone can confirm
///   a guess: keep the root key as secret as the sealing keys, and use a
///   purpose per system that needs to join logs.
/// - Canonicalize inputs first (E.164 numbers, lower-case e-mail
///   addresses): `+1 555 0100` and `+15550100` are different inputs.
/// - A pseudonym is not an envelope: it cannot be opened. Its `Debug` and
///   `Display` show the token, which is safe to log.
///
/// # Example
///
/// ```
/// use pinseal::Key;
/// use pinseal::pseudonym::Pseudonymizer;
///
/// let callers = Pseudonymizer::new(&Key::from_bytes([7; 32]), "ivr/caller");
/// let a = callers.pseudonym("+15551234567");
/// assert_eq!(a, callers.pseudonym("+15551234567")); // stable: logs can join on it
/// assert_ne!(a, callers.pseudonym("+15551234568"));
/// assert!(a.as_str().starts_with("ps1."));
/// println!("call from {a}"); // no number in the log line
/// ```
pub struct Pseudonymizer {
    key_id: KeyId,
    mac: crate::mac::KeyedMac,
    prefix: String,
}

impl Pseudonymizer {
    /// A pseudonymizer for `purpose` under `root` (see the type docs for
    /// the derivation).
    pub fn new(root: &Key, purpose: &str) -> Pseudonymizer {
        let key = root.derive(&format!("pseudonym/{purpose}"));
        let id = key.id().to_string();
        let prefix = format!("ps1.{}.", id.get(..8).unwrap_or_default());
        Pseudonymizer {
            key_id: key.id(),
            mac: crate::mac::KeyedMac::new(key.expose_secret()),
            prefix,
        }
    }

    /// The id of the derived key (its first 8 hex characters are in every
    /// token).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The pseudonym of `input`.
    pub fn pseudonym(&self, input: impl AsRef<[u8]>) -> Pseudonym {
        let tag = self.mac.mac(&[input.as_ref()]);
        let mut token = String::with_capacity(self.prefix.len() + 22);
        token.push_str(&self.prefix);
        token.push_str(&BASE64URL_NOPAD.encode(tag.get(..TAG_BYTES).unwrap_or_default()));
        Pseudonym(token)
    }
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A keyed pseudonym: a short token that stands for an input in logs. See
/// [`Pseudonymizer`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym(String);

impl Pseudonym {
    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
