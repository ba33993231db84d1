//! The [`Seal`] trait: two required operations, every other form provided
//! once for every implementor.

use std::time::{Duration, SystemTime};

use super::{Envelope, OVERHEAD, expiring};
use crate::Error;
use crate::secret::{ExposeSecretMut, Secret};

/// Sealing and opening envelopes: what [`Sealer`](super::Sealer) and
/// [`Keyring`](super::Keyring) have in common.
///
/// # About
///
/// An implementor writes two operations, [`Seal::seal_into`] and
/// [`Seal::open_into`], which work in the caller's buffers without
/// allocating. Every other form is provided here once, on top of them, so
/// it exists for every implementor with the same rules: owned envelopes
/// ([`Seal::seal`], [`Seal::open`]), the hex form (through [`Envelope`]'s
/// `Display` and `FromStr`), and expiring envelopes ([`Seal::seal_until`],
/// [`Seal::seal_for`], [`Seal::open_expiring`], [`Seal::open_expiring_at`]).
/// The trait is dyn-compatible: a `Box<dyn Seal>` holds either.
///
/// # Parameters
///
/// - `plaintext`: any length up to 2^36 - 32 bytes (the GCM limit).
/// - `aad`: associated data, authenticated but not encrypted and not part
///   of the envelope; the same bytes must be given to open. Build it with
///   [`Aad`](crate::Aad).
/// - `envelope`: the bytes of an envelope, an [`Envelope`] (which derefs
///   to them) or what was read from storage.
///
/// # Errors
///
/// Every failure to open is [`Error::Decrypt`], whatever its cause; an
/// authentic expiring envelope past its deadline is [`Error::Expired`].
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key, Keyring, Seal, Sealer};
///
/// // The same call on a sealer and on a keyring.
/// fn round_trip(s: &dyn Seal) -> Result<bool, pinseal::Error> {
///     let envelope = s.seal(b"4321", b"last4");
///     Ok(s.open(&envelope, b"last4")?.expose_secret() == b"4321")
/// }
/// assert!(round_trip(&Sealer::new(&Key::generate()))?);
/// assert!(round_trip(&Keyring::new(&Key::generate()))?);
/// # Ok::<(), pinseal::Error>(())
/// ```
pub trait Seal {
    /// Seals into the caller's buffer without allocating; returns the
    /// number of bytes written, always `plaintext.len() + OVERHEAD`.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] if `out` is shorter than
    /// `plaintext.len() + OVERHEAD` (a longer `out` is fine; bytes past the
    /// envelope are left untouched); [`Error::PlaintextTooLong`] past the
    /// GCM limit.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    fn seal_into(&self, plaintext: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, Error>;

    /// Opens into the caller's buffer without allocating; returns the
    /// plaintext length, `envelope.len() - OVERHEAD`.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] for every failure of the envelope (then the first
    /// `envelope.len() - OVERHEAD` bytes of `out` are zeroed and nothing
    /// else is touched); [`Error::BufferTooSmall`] if `out` is shorter than
    /// the plaintext (then `out` is untouched).
    ///
    /// # Security
    ///
    /// `out` holds plaintext on success: wipe it when done (for example
    /// with [`zeroize::Zeroize`]).
    fn open_into(&self, envelope: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, Error>;

    /// Encrypts `plaintext` bound to `aad` into a new envelope of
    /// `plaintext.len() + OVERHEAD` bytes. Its `to_string()` is the hex
    /// form.
    ///
    /// # Panics
    ///
    /// If `plaintext` is longer than 2^36 - 32 bytes, or the operating
    /// system cannot provide random bytes.
    #[must_use]
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Envelope {
        let mut out = vec![0u8; plaintext.len() + OVERHEAD];
        if self.seal_into(plaintext, aad, &mut out).is_err() {
            // The buffer has the exact length: only the GCM limit remains.
            panic!("pinseal: plaintext exceeds the AES-GCM limit of 2^36 - 32 bytes");
        }
        Envelope::from(out)
    }

    /// Opens an envelope made with the same key (or, for a keyring, any of
    /// its keys) and `aad`.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] for every failure, whatever its cause.
    fn open(&self, envelope: &[u8], aad: &[u8]) -> Result<Secret<Vec<u8>>, Error> {
        let len = envelope.len().checked_sub(OVERHEAD).ok_or(Error::Decrypt)?;
        // Allocated once at its final size and wrapped before decryption,
        // so no unwiped copy of the plaintext is ever left behind.
        let mut plaintext = Secret::from_plaintext(vec![0u8; len]);
        self.open_into(envelope, aad, plaintext.expose_secret_mut())?;
        Ok(plaintext)
    }

    /// Seals `plaintext` so that it opens only before `deadline`: an
    /// *expiring envelope* (layout in the [module docs](super)).
    ///
    /// The deadline is stored in whole Unix seconds, rounded down, so the
    /// envelope never opens past it; a deadline before 1970 makes an
    /// envelope that is already expired.
    ///
    /// # Panics
    ///
    /// As [`Seal::seal`].
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{Error, ExposeSecret, Key, Seal, Sealer};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let sealer = Sealer::new(&Key::generate());
    /// let deadline = SystemTime::now() + Duration::from_secs(300);
    /// let envelope = sealer.seal_until(b"1234", b"call-42/pin", deadline);
    /// let before = deadline - Duration::from_secs(1);
    /// assert_eq!(sealer.open_expiring_at(&envelope, b"call-42/pin", before)?.expose_secret(), b"1234");
    /// assert_eq!(sealer.open_expiring_at(&envelope, b"call-42/pin", deadline).unwrap_err(), Error::Expired);
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// A number of seconds is not a deadline:
    ///
    /// ```compile_fail,E0308
    /// use pinseal::{Key, Seal, Sealer};
    /// let sealer = Sealer::new(&Key::generate());
    /// let envelope = sealer.seal_until(b"1234", b"aad", 300); // a TTL where a deadline is meant
    /// ```
    #[must_use]
    fn seal_until(&self, plaintext: &[u8], aad: &[u8], deadline: SystemTime) -> Envelope {
        expiring::seal(self, plaintext, aad, expiring::unix_seconds(deadline))
    }

    /// Seals `plaintext` so that it opens for `ttl` from now (the system
    /// clock), as [`Seal::seal_until`] does for `now + ttl`.
    ///
    /// # Panics
    ///
    /// As [`Seal::seal`].
    #[must_use]
    fn seal_for(&self, plaintext: &[u8], aad: &[u8], ttl: Duration) -> Envelope {
        let expires_at = SystemTime::now()
            .checked_add(ttl)
            .map_or(u64::MAX, expiring::unix_seconds);
        expiring::seal(self, plaintext, aad, expires_at)
    }

    /// Opens an expiring envelope against the system clock; see
    /// [`Seal::open_expiring_at`].
    ///
    /// # Errors
    ///
    /// As [`Seal::open_expiring_at`].
    fn open_expiring(&self, envelope: &[u8], aad: &[u8]) -> Result<Secret<Vec<u8>>, Error> {
        self.open_expiring_at(envelope, aad, SystemTime::now())
    }

    /// Opens an expiring envelope at `now`: it opens while `now` is before
    /// its deadline (in whole seconds).
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] for every forgery, including a changed expiry;
    /// [`Error::Expired`] for an authentic envelope whose deadline has
    /// passed. The tag is checked first, so a changed expiry is a forgery.
    /// The distinct error tells an operator that a stale envelope was
    /// replayed; it also confirms to whoever sees it that the envelope is
    /// authentic under the associated data given (for example, that it
    /// belongs to the call it was replayed into), which the same envelope
    /// before its expiry would confirm by opening. Where that matters,
    /// report both errors the same way.
    fn open_expiring_at(
        &self,
        envelope: &[u8],
        aad: &[u8],
        now: SystemTime,
    ) -> Result<Secret<Vec<u8>>, Error> {
        expiring::open(self, envelope, aad, now)
    }
}
