//! Redaction: [`Secret<T>`], the [`ExposeSecret`] trait every
//! secret-bearing type is read through, and [`Pan`].
//!
//! # Use case
//!
//! Wrap every PIN, card number, code or decrypted buffer the moment it
//! enters the program; read it back only through
//! [`ExposeSecret::expose_secret`], so every use is one grep away.
//!
//! # Misuse that does not compile
//!
//! A secret has no `Display`, so a message cannot silently say
//! `*REDACTED*` where the value was meant:
//!
//! ```compile_fail,E0277
//! let code = pinseal::Secret::new(String::from("123456"));
//! let sms = format!("Your code is {code}");
//! ```
//!
//! nor can a card number:
//!
//! ```compile_fail,E0277
//! let pan = pinseal::secret::Pan::parse("4111111111111111").unwrap();
//! println!("{pan}");
//! ```
//!
//! and it is read only through the trait, which must be in scope:
//!
//! ```compile_fail,E0599
//! let pin = pinseal::Secret::new(String::from("1234"));
//! assert_eq!(pin.expose_secret(), "1234"); // `use pinseal::ExposeSecret;` is missing
//! ```
//!
//! A `Secret<String>` or `Secret<Vec<u8>>` is not `Clone` (see
//! [`CloneableSecret`]):
//!
//! ```compile_fail,E0599
//! let pin = pinseal::Secret::new(String::from("1234"));
//! let copy = pin.clone();
//! ```
//!
//! With the `serde` feature, serializing one needs an explicit opt-in
//! (see the crate's `serde` module).

use core::fmt;
use core::str::FromStr;

use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// The exact text every redacted value formats as with `Debug`.
pub const REDACTED: &str = "*REDACTED*";

/// Read access to a secret value: the one way into [`Secret`], [`Pan`]
/// and [`Key`](crate::Key).
///
/// # Security
///
/// Whatever is done with the returned reference is outside the protection
/// of the secret-bearing type: do not format it, log it or copy it into a
/// longer-lived buffer. Every call is a place to review, and one grep for
/// `expose_secret` finds them all.
///
/// With the `secrecy` feature, pinseal's secrets also implement
/// `secrecy::ExposeSecret`, so code written against that trait accepts
/// them.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Secret};
///
/// let pin = Secret::new(String::from("1234"));
/// assert_eq!(pin.expose_secret(), "1234");
/// ```
pub trait ExposeSecret<S: ?Sized> {
    /// Borrows the secret value.
    fn expose_secret(&self) -> &S;
}

/// Write access to a secret value, for filling a buffer in place.
///
/// # Security
///
/// Growing a `Vec` or `String` through this reference may reallocate and
/// leave a copy of the old contents in freed memory that is never wiped.
/// Reserve the full capacity before writing secret data.
pub trait ExposeSecretMut<S: ?Sized>: ExposeSecret<S> {
    /// Borrows the secret value mutably.
    fn expose_secret_mut(&mut self) -> &mut S;
}

/// A value that never shows itself: its `Debug` is `*REDACTED*`, it has no
/// `Display`, it compares in constant time and is wiped when dropped.
///
/// # Use case
///
/// Wrap every PIN, card number, code or decrypted buffer the moment it enters
/// the program, so that a stray `{:?}` in a log line, a `panic!` message, an
/// error report or a serde dump shows `*REDACTED*` and nothing else.
///
/// # Security
///
/// - `Debug` writes exactly [`REDACTED`]; there is no `Display`, so a
///   format string cannot use the secret where its value was meant (see
///   the [module docs](self) for the refused forms). With the `serde`
///   feature a `Secret` deserializes (errors never quote the input, and
///   the text `*REDACTED*` itself is refused) but serializes only by
///   explicit opt-in. The value is reached only through
///   [`ExposeSecret::expose_secret`], so every use is greppable.
/// - Memory is overwritten with zeros when a `Secret` is dropped, through
///   [`zeroize`]. Copies the program made before wrapping, or that a
///   reallocating `Vec`/`String` left behind (see
///   [`Secret::expose_secret_mut`]), are not reached.
/// - Equality runs in constant time for the contents; the lengths of the two
///   values are not hidden.
///
/// `Debug` writes exactly [`REDACTED`] (padding and alternate flags are
/// ignored). Equality (`==` and [`ConstantTimeEq`]) is available for
/// `T: AsRef<[u8]>`.
///
/// `Secret<T>` is `Clone` only when `T` implements [`CloneableSecret`], a
/// marker the owner of `T` opts into; [`Secret::clone_secret`] is the
/// explicit alternative for any `T: Clone`.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Secret};
///
/// let pin = Secret::new(String::from("1234"));
/// assert_eq!(format!("{pin:?}"), "*REDACTED*");
/// assert_eq!(pin.expose_secret(), "1234");
/// assert!(pin == Secret::new(String::from("1234")));
/// ```
pub struct Secret<T: Zeroize> {
    inner: T,
    /// How the value is wiped on drop: `T::zeroize`, or for byte buffers
    /// the crate makes, a bulk wipe of the slice and its spare capacity.
    wipe: fn(&mut T),
}

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`. From here on it prints as `*REDACTED*` and is wiped on
    /// drop.
    #[inline]
    pub fn new(value: T) -> Self {
        Secret {
            inner: value,
            wipe: T::zeroize,
        }
    }

    /// Copies the secret. The copy is also a `Secret` and is wiped on drop.
    ///
    /// This is the explicit, greppable way to duplicate a secret whose type
    /// does not implement [`CloneableSecret`].
    pub fn clone_secret(&self) -> Self
    where
        T: Clone,
    {
        Secret {
            inner: self.inner.clone(),
            wipe: self.wipe,
        }
    }
}

impl Secret<Vec<u8>> {
    /// Wraps a byte buffer the crate made (decrypted plaintext), wiped on
    /// drop through its slice and spare capacity in bulk rather than byte by
    /// byte as `Vec::zeroize` does.
    pub(crate) fn from_plaintext(bytes: Vec<u8>) -> Self {
        Secret {
            inner: bytes,
            wipe: wipe_bytes,
        }
    }
}

/// Wipes a byte buffer in bulk: its contents, then its spare capacity.
fn wipe_bytes(bytes: &mut Vec<u8>) {
    bytes.as_mut_slice().zeroize();
    bytes.spare_capacity_mut().zeroize();
    bytes.clear();
}

impl<T: Zeroize> ExposeSecret<T> for Secret<T> {
    #[inline]
    fn expose_secret(&self) -> &T {
        &self.inner
    }
}

impl<T: Zeroize> ExposeSecretMut<T> for Secret<T> {
    #[inline]
    fn expose_secret_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret::new(value)
    }
}

impl<T: Zeroize + Default> Default for Secret<T> {
    fn default() -> Self {
        Secret::new(T::default())
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        (self.wipe)(&mut self.inner);
    }
}

impl<T: Zeroize> ZeroizeOnDrop for Secret<T> {}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Marker for types whose secrets may be duplicated with `Clone`.
///
/// Implement it for your own secret-bearing type to make `Secret<YourType>`
/// implement `Clone`. It is deliberately not implemented for `Vec<u8>` or
/// `String`: use [`Secret::clone_secret`] for those.
pub trait CloneableSecret: Clone + Zeroize {}

impl<T: CloneableSecret> Clone for Secret<T> {
    fn clone(&self) -> Self {
        self.clone_secret()
    }
}

impl<T: Zeroize + AsRef<[u8]>> ConstantTimeEq for Secret<T> {
    /// Compares the contents in time that depends only on their lengths.
    fn ct_eq(&self, other: &Self) -> Choice {
        self.inner.as_ref().ct_eq(other.inner.as_ref())
    }
}

impl<T: Zeroize + AsRef<[u8]>> PartialEq for Secret<T> {
    /// Constant-time equality, through [`ConstantTimeEq`].
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl<T: Zeroize + AsRef<[u8]>> Eq for Secret<T> {}

/// A payment card number (PAN), validated and redacted.
///
/// # Use case
///
/// Card digits typed on an IVR keypad or pasted into a chat. The full number
/// is reachable only through [`ExposeSecret::expose_secret`]; the only
/// partial view is [`Pan::last_four`], the most PCI DSS allows to be
/// displayed. `Debug` writes `*REDACTED*`; there is no `Display`.
///
/// # Errors
///
/// [`Pan::parse`] (and `FromStr`) return [`Error::InvalidPan`] unless the
/// input is 12 to 19 ASCII digits, with no spaces or separators, whose last
/// digit is a valid Luhn check digit. The error does not contain the input.
///
/// # Example
///
/// ```
/// use pinseal::secret::Pan;
///
/// let pan = Pan::parse("4111111111111111")?;
/// assert_eq!(pan.last_four(), "1111");
/// assert_eq!(format!("{pan:?}"), "*REDACTED*");
/// assert!(Pan::parse("4111111111111112").is_err()); // Luhn fails
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Pan {
    digits: Secret<String>,
}

impl Pan {
    /// Shortest card number accepted.
    pub const MIN_LEN: usize = 12;
    /// Longest card number accepted.
    pub const MAX_LEN: usize = 19;

    /// Validates and wraps a card number.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPan`] if `input` is not 12–19 ASCII digits with a
    /// valid Luhn check digit.
    pub fn parse(input: &str) -> Result<Pan, Error> {
        let bytes = input.as_bytes();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len())
            || !bytes.iter().all(u8::is_ascii_digit)
            || !luhn_valid(bytes)
        {
            return Err(Error::InvalidPan);
        }
        let mut digits = String::with_capacity(bytes.len());
        digits.push_str(input);
        Ok(Pan {
            digits: Secret::new(digits),
        })
    }

    /// The last four digits, the only part of a card number that may be shown.
    pub fn last_four(&self) -> &str {
        let s = self.digits.expose_secret();
        // `parse` guarantees at least 12 ASCII digits.
        s.get(s.len().saturating_sub(4)..).unwrap_or("")
    }
}

impl ExposeSecret<str> for Pan {
    /// The full card number.
    fn expose_secret(&self) -> &str {
        self.digits.expose_secret()
    }
}

impl FromStr for Pan {
    type Err = Error;
    fn from_str(s: &str) -> Result<Pan, Error> {
        Pan::parse(s)
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl ZeroizeOnDrop for Pan {}

#[cfg(feature = "secrecy")]
impl<T: Zeroize> secrecy::ExposeSecret<T> for Secret<T> {
    fn expose_secret(&self) -> &T {
        &self.inner
    }
}

#[cfg(feature = "secrecy")]
impl secrecy::ExposeSecret<str> for Pan {
    fn expose_secret(&self) -> &str {
        ExposeSecret::expose_secret(&self.digits)
    }
}

/// Takes a `secrecy` string into a `Secret<String>`: the text is copied
/// into a buffer of exactly its length, and the `SecretString` is wiped
/// when dropped here.
#[cfg(feature = "secrecy")]
impl From<secrecy::SecretString> for Secret<String> {
    fn from(value: secrecy::SecretString) -> Self {
        let text: &str = secrecy::ExposeSecret::expose_secret(&value);
        let mut copy = String::with_capacity(text.len());
        copy.push_str(text);
        Secret::new(copy)
    }
}

/// Luhn (ISO/IEC 7812-1 annex B) check over ASCII digits.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_numbers() {
        // Test card numbers published by card networks.
        for ok in ["4111111111111111", "5555555555554444", "378282246310005"] {
            assert!(luhn_valid(ok.as_bytes()), "{ok}");
        }
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b"378282246310006"));
    }
}
