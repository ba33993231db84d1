//! [`Sealer`]: one key, expanded once.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{AesGcm, Engine, NONCE_LEN, OVERHEAD, Seal, TAG_LEN};
use crate::nonce::fresh_nonce;
use crate::secret::ExposeSecret;
use crate::{Error, Key, KeyId};

/// Longest plaintext AES-GCM accepts under one nonce (2^36 - 32 bytes).
const MAX_PLAINTEXT: u64 = (1 << 36) - 32;

/// Seals and opens envelopes under one key.
///
/// # About
///
/// `Sealer` expands the key once, in [`Sealer::new`], and is `Send +
/// Sync`, so one instance (in an `Arc` or a `static`) serves every thread
/// of a service. Every operation comes from the [`Seal`] trait: bring it
/// into scope with `use pinseal::Seal;`. The envelope format, errors and
/// security notes are in the [module docs](super).
///
/// # Engines
///
/// `Sealer` (that is, `Sealer<AesGcm>`) runs on RustCrypto's `aes-gcm`,
/// which wipes the expanded key on drop. `Sealer::<Ring>::with_engine`
/// (feature `ring`) and `Sealer::<AwsLc>::with_engine` (feature
/// `aws-lc-rs`) run on the other engines; every engine makes and opens the
/// same envelope bytes. Turning a feature on never changes `Sealer` itself:
/// the application names the engine.
///
/// ```
/// fn wiped<T: zeroize::ZeroizeOnDrop>() {}
/// wiped::<pinseal::Sealer>();
/// ```
#[cfg_attr(
    feature = "ring",
    doc = r#"
`ring` cannot wipe its key schedule, so a sealer on it is not
`ZeroizeOnDrop`:

```compile_fail,E0277
fn wiped<T: zeroize::ZeroizeOnDrop>() {}
wiped::<pinseal::Sealer<pinseal::envelope::Ring>>();
```
"#
)]
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key, Seal, Sealer};
///
/// let sealer = Sealer::new(&Key::generate());
/// let envelope = sealer.seal(b"1234", b"call-42/pin");
/// let pin = sealer.open(&envelope, b"call-42/pin")?;
/// assert_eq!(pin.expose_secret(), b"1234");
/// assert!(sealer.open(&envelope, b"call-43/pin").is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Sealer<E: Engine = AesGcm> {
    engine: E,
    key_id: KeyId,
}

impl Sealer {
    /// Expands `key` for sealing and opening, on the default engine.
    pub fn new(key: &Key) -> Sealer {
        Sealer::with_engine(key)
    }
}

impl<E: Engine> Sealer<E> {
    /// Expands `key` on the engine `E`: `Sealer::<Ring>::with_engine(&key)`.
    pub fn with_engine(key: &Key) -> Sealer<E> {
        crate::nonce::prepare();
        Sealer {
            engine: E::new(key.expose_secret()),
            key_id: key.id(),
        }
    }

    /// The id of the key this sealer uses.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The deterministic core of [`Seal::seal_into`]. Private: a caller
    /// choosing nonces could repeat one.
    fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        aad: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        if plaintext.len() as u64 > MAX_PLAINTEXT {
            return Err(Error::PlaintextTooLong);
        }
        let total = plaintext.len() + OVERHEAD;
        let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        let (nonce_out, rest) = out.split_at_mut(NONCE_LEN);
        let (body, tag_out) = rest.split_at_mut(plaintext.len());
        nonce_out.copy_from_slice(nonce);
        let tag = self
            .engine
            .seal_to(nonce, aad, plaintext, body)
            .map_err(|_| Error::PlaintextTooLong)?;
        tag_out.copy_from_slice(&tag);
        Ok(total)
    }
}

impl<E: Engine> Seal for Sealer<E> {
    fn seal_into(&self, plaintext: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        self.seal_with_nonce(&fresh_nonce(), plaintext, aad, out)
    }

    fn open_into(&self, envelope: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let (nonce, rest) = envelope
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(Error::Decrypt)?;
        let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>().ok_or(Error::Decrypt)?;
        let out = out
            .get_mut(..ciphertext.len())
            .ok_or(Error::BufferTooSmall)?;
        if self
            .engine
            .open_to(nonce, aad, ciphertext, tag, out)
            .is_err()
        {
            out.zeroize();
            return Err(Error::Decrypt);
        }
        Ok(out.len())
    }
}

/// The expanded key is wiped on drop by the `aes-gcm` engine.
impl ZeroizeOnDrop for Sealer<AesGcm> {}
/// The expanded key is wiped on drop by the `aws-lc-rs` engine.
#[cfg(feature = "aws-lc-rs")]
impl ZeroizeOnDrop for Sealer<super::AwsLc> {}

impl<E: Engine> fmt::Debug for Sealer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .field("engine", &E::NAME)
            .finish_non_exhaustive()
    }
}
