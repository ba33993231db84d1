//! [`Keyring`]: key rotation.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use zeroize::ZeroizeOnDrop;

use super::{AesGcm, Engine, Envelope, OVERHEAD, Seal, Sealer, expiring};
use crate::secret::{ExposeSecret, ExposeSecretMut, Secret};
use crate::{Error, Key, KeyId};

/// Key rotation: seal under the primary key, open under the primary or any
/// previous key.
///
/// # Use case
///
/// Rotate a key without a flag day: deploy a `Keyring` whose primary is the
/// new key and whose previous keys are the old ones; envelopes made before
/// the rotation still open, and [`Keyring::reseal`] moves them to the new
/// key as they pass through. Drop an old key once nothing sealed under it
/// remains ([`Keyring::open_with_key_id`] tells which key opened each
/// envelope).
///
/// # About
///
/// A keyring implements [`Seal`], so every form a [`Sealer`] has (bytes,
/// into a buffer, hex through [`Envelope`], expiring) exists here too. The
/// envelope carries no key id (the format is plain AES-GCM), so opening
/// tries the primary first, then each previous key in the order added; a
/// failed open costs one tag check per key. Every key is expanded once,
/// when added, on the engine `E` (see [`Sealer`]'s "Engines").
///
/// A ring holds at most [`Keyring::MAX_KEYS`] keys (the primary and seven
/// previous), so a forged envelope costs at most eight tag checks: about
/// 1.5 µs for a PIN-sized envelope on the default engine, against 0.19 µs
/// with one key (BENCHMARKS.md, "Keyring"). Formats that let a message name thousands of candidate
/// keys turned that loop into a denial of service; here the ring's size is
/// the service's own, and bounded.
///
/// # Knowing whether the old keys are still used
///
/// The ring counts, per key, the opens it served since it was made
/// ([`Keyring::key_usage`], [`Keyring::previous_opens`]; a reseal counts,
/// an expired envelope that authenticates counts, a failed open does not).
/// Export the count of opens under previous keys as a metric: while its
/// rate is above zero, envelopes under old keys are still in use. A rate
/// of zero is evidence for the envelopes that pass through, not for those
/// at rest: before retiring a key, reseal what is stored (every row through
/// [`Keyring::reseal`]) and check that no open under it follows, for at
/// least as long as an envelope in transit lives. The counts restart with
/// the process.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key, Keyring, Seal};
///
/// let (old_key, new_key) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
/// let old = Keyring::new(&old_key);
/// let envelope = old.seal(b"4321", b"last4");
///
/// let rotated = Keyring::new(&new_key).with_previous(&old_key)?;
/// assert_eq!(rotated.open(&envelope, b"last4")?.expose_secret(), b"4321");
/// assert_eq!(rotated.previous_opens(), 1); // an envelope under the old key was used
/// let moved = rotated.reseal(&envelope, b"last4")?;
/// assert!(old.open(&moved, b"last4").is_err()); // now under the new key only
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Keyring<E: Engine = AesGcm> {
    primary: Sealer<E>,
    /// Boxed so that growing the list moves pointers, not key schedules: a
    /// reallocated `Vec<Sealer>` would free its old buffer unwiped.
    #[allow(clippy::vec_box)]
    previous: Vec<Box<Sealer<E>>>,
    /// Envelopes opened under each key, primary first.
    opens: [AtomicU64; MAX_KEYS],
}

/// How many keys a [`Keyring`] holds at most: [`Keyring::MAX_KEYS`].
const MAX_KEYS: usize = 8;

/// How much one key of a [`Keyring`] has been used: from
/// [`Keyring::key_usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyUsage {
    /// The key's id.
    pub id: KeyId,
    /// Whether it is the primary key (the one that seals).
    pub primary: bool,
    /// Envelopes it opened since the ring was made.
    pub opens: u64,
}

impl Keyring {
    /// A keyring that seals and opens with `primary`, on the default
    /// engine.
    pub fn new(primary: &Key) -> Keyring {
        Keyring::with_engine(primary)
    }
}

impl<E: Engine> Keyring<E> {
    /// A keyring on the engine `E`: `Keyring::<Ring>::with_engine(&key)`.
    pub fn with_engine(primary: &Key) -> Keyring<E> {
        Keyring {
            primary: Sealer::with_engine(primary),
            previous: Vec::new(),
            opens: Default::default(),
        }
    }

    /// The most keys a ring holds: the primary and seven previous keys.
    pub const MAX_KEYS: usize = MAX_KEYS;

    /// Adds a key that still opens envelopes but no longer seals. A key
    /// equal to one already in the ring is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyKeys`] if the ring holds [`Keyring::MAX_KEYS`] keys
    /// already: retire the oldest before adding another.
    pub fn with_previous(mut self, key: &Key) -> Result<Keyring<E>, Error> {
        let id = key.id();
        if self.sealers().all(|s| s.key_id() != id) {
            if 1 + self.previous.len() >= MAX_KEYS {
                return Err(Error::TooManyKeys);
            }
            self.previous.push(Box::new(Sealer::with_engine(key)));
        }
        Ok(self)
    }

    /// How many opens each key served since the ring was made, primary
    /// first (see "Knowing whether the old keys are still used").
    pub fn key_usage(&self) -> Vec<KeyUsage> {
        self.sealers()
            .zip(&self.opens)
            .enumerate()
            .map(|(i, (sealer, opens))| KeyUsage {
                id: sealer.key_id(),
                primary: i == 0,
                opens: opens.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Opens served by a previous key since the ring was made: envelopes
    /// under old keys that are still in use (see "Knowing whether the old
    /// keys are still used").
    pub fn previous_opens(&self) -> u64 {
        self.opens[1..]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// The id of the key new envelopes are sealed with.
    pub fn primary_id(&self) -> KeyId {
        self.primary.key_id()
    }

    /// Ids of all keys, primary first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.sealers().map(Sealer::key_id).collect()
    }

    /// Opens like [`Seal::open`], and also returns the id of the key that
    /// opened the envelope (compare it with [`Keyring::primary_id`] to count
    /// envelopes still waiting for a reseal).
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] if no key opens it.
    pub fn open_with_key_id(
        &self,
        envelope: &[u8],
        aad: &[u8],
    ) -> Result<(Secret<Vec<u8>>, KeyId), Error> {
        let len = envelope.len().checked_sub(OVERHEAD).ok_or(Error::Decrypt)?;
        let mut plaintext = Secret::from_plaintext(vec![0u8; len]);
        let (_, key_id) = self.open_with(envelope, aad, plaintext.expose_secret_mut())?;
        Ok((plaintext, key_id))
    }

    /// Opens an envelope under any key of the ring and seals its plaintext
    /// again, with a fresh nonce, under the primary key.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] if no key opens it.
    pub fn reseal(&self, envelope: &[u8], aad: &[u8]) -> Result<Envelope, Error> {
        let plaintext = self.open(envelope, aad)?;
        Ok(self.primary.seal(plaintext.expose_secret(), aad))
    }

    /// Moves an expiring envelope to the primary key, keeping its deadline:
    /// the [`Keyring::reseal`] of expiring envelopes. Checked against the
    /// system clock.
    ///
    /// # Errors
    ///
    /// As [`Seal::open_expiring`]: an expired envelope is not resealed.
    pub fn reseal_expiring(&self, envelope: &[u8], aad: &[u8]) -> Result<Envelope, Error> {
        self.reseal_expiring_at(envelope, aad, SystemTime::now())
    }

    /// [`Keyring::reseal_expiring`] checked against `now` instead of the
    /// system clock, as [`Seal::open_expiring_at`] is.
    ///
    /// # Errors
    ///
    /// As [`Seal::open_expiring_at`]: an envelope expired at `now` is not
    /// resealed.
    pub fn reseal_expiring_at(
        &self,
        envelope: &[u8],
        aad: &[u8],
        now: SystemTime,
    ) -> Result<Envelope, Error> {
        let (expires_at, _) = expiring::split(envelope)?;
        let plaintext = self.open_expiring_at(envelope, aad, now)?;
        Ok(expiring::seal(
            &self.primary,
            plaintext.expose_secret(),
            aad,
            expires_at,
        ))
    }

    fn sealers(&self) -> impl Iterator<Item = &Sealer<E>> {
        core::iter::once(&self.primary).chain(self.previous.iter().map(|s| &**s))
    }

    /// Opens into `out` under the first key that can; a failed try leaves
    /// `out` zeroed for the next.
    fn open_with(
        &self,
        envelope: &[u8],
        aad: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, KeyId), Error> {
        let mut result = Err(Error::Decrypt);
        for (sealer, opens) in self.sealers().zip(&self.opens) {
            match sealer.open_into(envelope, aad, out) {
                Ok(len) => {
                    opens.fetch_add(1, Ordering::Relaxed);
                    return Ok((len, sealer.key_id()));
                }
                Err(Error::Decrypt) => {}
                Err(other) => result = Err(other),
            }
        }
        result
    }
}

impl<E: Engine> Seal for Keyring<E> {
    /// Seals under the primary key.
    fn seal_into(&self, plaintext: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        self.primary.seal_into(plaintext, aad, out)
    }

    /// Opens under whichever key of the ring sealed the envelope.
    fn open_into(&self, envelope: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        self.open_with(envelope, aad, out).map(|(len, _)| len)
    }
}

/// Every key schedule is wiped on drop by the `aes-gcm` engine.
impl ZeroizeOnDrop for Keyring<AesGcm> {}
/// Every key schedule is wiped on drop by the `aws-lc-rs` engine.
#[cfg(feature = "aws-lc-rs")]
impl ZeroizeOnDrop for Keyring<super::AwsLc> {}

impl<E: Engine> fmt::Debug for Keyring<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary.key_id())
            .field(
                "previous",
                &self.previous.iter().map(|s| s.key_id()).collect::<Vec<_>>(),
            )
            .field("engine", &E::NAME)
            .finish()
    }
}
