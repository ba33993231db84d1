//! Envelope encryption: AES-256-GCM with a random nonce carried in the output.

use core::fmt;

use zeroize::Zeroize;

use crate::engine::{Engine, Selected};
use crate::nonce::fresh_nonce;
use crate::secret::{ExposeSecret, ExposeSecretMut};
use crate::{Error, Key, KeyId, Secret};

pub use crate::engine::TAG_LEN;
pub use crate::nonce::NONCE_LEN;

/// Bytes an envelope adds to its plaintext: `NONCE_LEN + TAG_LEN` = 28.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The AES-GCM engine this build seals and opens with: `"aes-gcm"`
/// (RustCrypto, pure Rust, the default), `"ring"` (feature `ring`) or
/// `"aws-lc-rs"` (feature `aws-lc-rs`).
///
/// With several engine features on, the fastest wins: aws-lc-rs, then ring.
/// Every engine makes and opens the same envelope bytes, so the choice can
/// change between deployments without touching stored data. See "Engines"
/// in `SECURITY.md` for what each wipes.
///
/// # Example
///
/// ```
/// println!("sealing with {}", pinseal::ENGINE);
/// assert!(["aes-gcm", "ring", "aws-lc-rs"].contains(&pinseal::ENGINE));
/// ```
pub const ENGINE: &str = <Selected as Engine>::NAME;

/// Length of the expiry at the start of an expiring envelope.
pub const EXPIRY_LEN: usize = 8;
/// Bytes an expiring envelope adds to its plaintext: `EXPIRY_LEN + OVERHEAD`
/// = 36.
pub const EXPIRING_OVERHEAD: usize = EXPIRY_LEN + OVERHEAD;

/// Longest plaintext AES-GCM accepts under one nonce (2^36 - 32 bytes).
const MAX_PLAINTEXT: u64 = (1 << 36) - 32;

/// Seals and opens envelopes under one key.
///
/// # Use case
///
/// Seal a PIN, card digits or any short secret at the edge of a system and
/// pass only the envelope onward (through queues, logs, databases); open it
/// where the value is needed. Associated data binds an envelope to its
/// context (field name, call id), so an envelope moved to another field or
/// call does not open.
///
/// # About
///
/// An envelope is one byte string:
///
/// ```text
/// +----------------+--------------------------+----------------+
/// | nonce 12 bytes | ciphertext (= plaintext  | tag 16 bytes   |
/// | (random)       |  length)                 |                |
/// +----------------+--------------------------+----------------+
/// ```
///
/// It is standard AES-256-GCM (NIST SP 800-38D) with a 96-bit nonce, so any
/// AES-GCM implementation opens it given the key and associated data. The
/// hex form is the same bytes in hex (lowercase on output, either case on
/// input).
///
/// # Parameters
///
/// - `plaintext`: any length up to 2^36 - 32 bytes (the GCM limit).
/// - `aad`: associated data, authenticated but not encrypted and not part of
///   the envelope; the same bytes must be given to open.
///
/// # Errors
///
/// Opening fails with [`Error::Decrypt`] for every cause: an envelope shorter
/// than [`OVERHEAD`], bad hex, a wrong key, wrong associated data, any
/// changed bit. The error never says which.
///
/// # Security
///
/// - Each seal uses a fresh, uniformly random 96-bit nonce from the
///   operating system (see "Nonces" below). A nonce must never repeat under
///   one key; with random nonces the chance of any repeat after `q` seals is
///   at most `q^2 / 2^97`, which stays below 2^-32 for up to 2^32 seals per
///   key (the limit of NIST SP 800-38D section 8.3). Rotate keys (see
///   [`Keyring`]) well before that.
/// - Plaintext is released only after the tag has been checked; a failed
///   [`Sealer::open_into`] leaves zeros, never plaintext, in `out`.
/// - The length of the plaintext is visible from the envelope's length. A
///   4-digit PIN and a 6-digit code are distinguishable; pad if that matters.
///
/// # Nonces
///
/// A system call per seal would cost more than the encryption of a PIN, so
/// each thread reads OS randomness (`getrandom`) 4 KiB at a time and serves
/// 341 nonces from it, erasing each one from the pool as it is served. The
/// bytes are exactly as random as single reads: the collision bound above
/// is unchanged.
///
/// The pool is fork-safe without a system call per seal: on Linux it checks
/// a word in a page the kernel zeroes in every forked child
/// (`MADV_WIPEONFORK`, as BoringSSL does), so a child refills before its
/// first seal and never serves a nonce its parent also serves, however it
/// was forked. Where the kernel lacks wipe-on-fork memory the pool compares
/// process ids instead, which misses only a process id reused by a
/// grandchild after its grandparent exited.
///
/// # Engines
///
/// `Sealer` expands the key once, in [`Sealer::new`], with the engine named
/// by [`ENGINE`](crate::ENGINE); it is `Send + Sync`, so one instance (in an
/// `Arc` or a `static`) serves every thread of a service. The expanded key
/// is wiped on drop with the default `aes-gcm` engine and with `aws-lc-rs`;
/// the `ring` engine does not wipe it (and `Sealer` is then not
/// [`ZeroizeOnDrop`](zeroize::ZeroizeOnDrop)).
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key, Sealer};
///
/// let sealer = Sealer::new(&Key::generate());
/// let envelope = sealer.seal(b"1234", b"call-42/pin");
/// let pin = sealer.open(&envelope, b"call-42/pin")?;
/// assert_eq!(pin.expose_secret(), b"1234");
/// assert!(sealer.open(&envelope, b"call-43/pin").is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Sealer {
    engine: Selected,
    key_id: KeyId,
}

impl Sealer {
    /// Expands `key` for sealing and opening.
    pub fn new(key: &Key) -> Sealer {
        crate::nonce::prepare();
        Sealer {
            engine: Selected::new(key.expose_secret()),
            key_id: key.id(),
        }
    }

    /// The id of the key this sealer uses.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Encrypts `plaintext` bound to `aad` into a new envelope of
    /// `plaintext.len() + OVERHEAD` bytes.
    ///
    /// # Panics
    ///
    /// If `plaintext` is longer than 2^36 - 32 bytes, or the operating
    /// system cannot provide random bytes.
    #[must_use]
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        if plaintext.len() as u64 > MAX_PLAINTEXT {
            panic!("pinseal: plaintext exceeds the AES-GCM limit of 2^36 - 32 bytes");
        }
        // Built by appending, with no zero-fill pass: nonce, the plaintext
        // (encrypted in place below), room for the tag.
        let nonce = fresh_nonce();
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        out.extend_from_slice(&[0; TAG_LEN]);
        let (body, tag_out) = out[NONCE_LEN..].split_at_mut(plaintext.len());
        match self.engine.seal_in_place(&nonce, aad, body) {
            Ok(tag) => tag_out.copy_from_slice(&tag),
            Err(_) => panic!("pinseal: plaintext exceeds the AES-GCM limit of 2^36 - 32 bytes"),
        }
        out
    }

    /// Like [`Sealer::seal`], but returns the envelope in lowercase hex.
    ///
    /// # Panics
    ///
    /// As [`Sealer::seal`].
    #[must_use]
    pub fn seal_hex(&self, plaintext: &[u8], aad: &[u8]) -> String {
        // Short values (PINs, card digits, codes) are sealed on the stack:
        // the only allocation is the hex string. The buffer holds the
        // envelope, never the plaintext, once `seal_into` returns.
        const STACK: usize = 256;
        let mut buf = [0u8; STACK];
        match self.seal_into(plaintext, aad, &mut buf) {
            Ok(len) => crate::hex::encode(buf.get(..len).unwrap_or_default()),
            Err(_) => {
                buf.zeroize();
                crate::hex::encode(self.seal(plaintext, aad))
            }
        }
    }

    /// Seals into the caller's buffer without allocating; returns the number
    /// of bytes written, always `plaintext.len() + OVERHEAD`.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] if `out` is shorter than
    /// `plaintext.len() + OVERHEAD` (a longer `out` is fine; bytes past the
    /// envelope are left untouched); [`Error::PlaintextTooLong`] past the GCM
    /// limit.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub fn seal_into(&self, plaintext: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        self.seal_with_nonce(&fresh_nonce(), plaintext, aad, out)
    }

    /// The deterministic core of [`Sealer::seal_into`]. Private: a caller
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

    /// Opens an envelope made with the same key and `aad`.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] for every failure, whatever its cause.
    pub fn open(&self, envelope: &[u8], aad: &[u8]) -> Result<Secret<Vec<u8>>, Error> {
        let Parts {
            nonce,
            ciphertext,
            tag,
        } = split(envelope)?;
        // Allocated once at its final size and wrapped before decryption, so
        // no unwiped copy of the plaintext is ever left behind.
        let mut plaintext = Secret::from_plaintext(vec![0u8; ciphertext.len()]);
        self.engine
            .open_to(nonce, aad, ciphertext, tag, plaintext.expose_secret_mut())
            .map_err(|_| Error::Decrypt)?;
        Ok(plaintext)
    }

    /// Opens a hex envelope (either case).
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] for every failure, including malformed hex.
    pub fn open_hex(&self, envelope: &str, aad: &[u8]) -> Result<Secret<Vec<u8>>, Error> {
        self.open(&hex_envelope(envelope)?, aad)
    }

    /// Opens into the caller's buffer without allocating; returns the
    /// plaintext length, `envelope.len() - OVERHEAD`.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] for every failure of the envelope (then the first
    /// `envelope.len() - OVERHEAD` bytes of `out` are zeroed and nothing else
    /// is touched); [`Error::BufferTooSmall`] if `out` is shorter than the
    /// plaintext (then `out` is untouched).
    ///
    /// # Security
    ///
    /// `out` holds plaintext on success: wipe it when done (for example with
    /// [`zeroize::Zeroize`]).
    pub fn open_into(&self, envelope: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let Parts {
            nonce,
            ciphertext,
            tag,
        } = split(envelope)?;
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

    /// Seals `plaintext` so that it opens only before `expires_at` (Unix
    /// seconds): an *expiring envelope*.
    ///
    /// # About
    ///
    /// The expiring envelope is
    ///
    /// ```text
    /// expires_at (8 bytes, big-endian Unix seconds) || nonce (12) || ciphertext || tag (16)
    /// ```
    ///
    /// where the last three fields are an ordinary envelope sealed with the
    /// associated data `Aad::new().field("pinseal/expires",
    /// expires_at_be_bytes).field("aad", aad)` (see [`Aad`](crate::Aad) for
    /// the bytes). The expiry is in clear but authenticated: change one bit
    /// and the envelope no longer opens. Any AES-GCM implementation opens it
    /// after rebuilding that associated data; the interop tests do so in
    /// Node.js and Python.
    ///
    /// # Panics
    ///
    /// As [`Sealer::seal`].
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{Error, ExposeSecret, Key, Sealer};
    ///
    /// let sealer = Sealer::new(&Key::generate());
    /// let now = 1_700_000_000; // SystemTime::now() as Unix seconds in a service
    /// let envelope = sealer.seal_until(b"1234", b"call-42/pin", now + 300);
    /// assert_eq!(sealer.open_expiring(&envelope, b"call-42/pin", now + 299)?.expose_secret(), b"1234");
    /// assert_eq!(sealer.open_expiring(&envelope, b"call-42/pin", now + 300).unwrap_err(), Error::Expired);
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn seal_until(&self, plaintext: &[u8], aad: &[u8], expires_at: u64) -> Vec<u8> {
        let inner = self.seal(plaintext, expiring_aad(expires_at, aad).as_bytes());
        let mut out = Vec::with_capacity(EXPIRY_LEN + inner.len());
        out.extend_from_slice(&expires_at.to_be_bytes());
        out.extend_from_slice(&inner);
        out
    }

    /// Like [`Sealer::seal_until`], in lowercase hex.
    ///
    /// # Panics
    ///
    /// As [`Sealer::seal`].
    #[must_use]
    pub fn seal_until_hex(&self, plaintext: &[u8], aad: &[u8], expires_at: u64) -> String {
        crate::hex::encode(self.seal_until(plaintext, aad, expires_at))
    }

    /// Opens an expiring envelope at time `now` (Unix seconds): it opens
    /// while `now < expires_at`.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] for every forgery, including a changed expiry;
    /// [`Error::Expired`] for an authentic envelope whose expiry has passed.
    /// The tag is checked first, so a changed expiry is a forgery. The
    /// distinct error tells an operator that a stale envelope was replayed;
    /// it also confirms to whoever sees it that the envelope is authentic
    /// under the associated data given (for example, that it belongs to the
    /// call it was replayed into), which the same envelope before its
    /// expiry would confirm by opening. Where that matters, report both
    /// errors the same way.
    pub fn open_expiring(
        &self,
        envelope: &[u8],
        aad: &[u8],
        now: u64,
    ) -> Result<Secret<Vec<u8>>, Error> {
        open_expiring_with(envelope, aad, now, |inner, aad| self.open(inner, aad))
    }

    /// Opens a hex expiring envelope (either case); see
    /// [`Sealer::open_expiring`].
    ///
    /// # Errors
    ///
    /// As [`Sealer::open_expiring`]; malformed hex is [`Error::Decrypt`].
    pub fn open_expiring_hex(
        &self,
        envelope: &str,
        aad: &[u8],
        now: u64,
    ) -> Result<Secret<Vec<u8>>, Error> {
        let bytes = hex_envelope(envelope)?;
        self.open_expiring(&bytes, aad, now)
    }
}

/// Opens an expiring envelope with `open` (a sealer's or a keyring's): the
/// tag first, then the expiry.
fn open_expiring_with(
    envelope: &[u8],
    aad: &[u8],
    now: u64,
    open: impl FnOnce(&[u8], &[u8]) -> Result<Secret<Vec<u8>>, Error>,
) -> Result<Secret<Vec<u8>>, Error> {
    let (expires_at, inner) = split_expiry(envelope)?;
    let plaintext = open(inner, expiring_aad(expires_at, aad).as_bytes())?;
    if now >= expires_at {
        return Err(Error::Expired);
    }
    Ok(plaintext)
}

/// The associated data an expiring envelope is sealed with.
fn expiring_aad(expires_at: u64, aad: &[u8]) -> crate::Aad {
    crate::Aad::new()
        .field("pinseal/expires", expires_at.to_be_bytes())
        .field("aad", aad)
}

/// The expiry and the inner envelope of an expiring envelope.
fn split_expiry(envelope: &[u8]) -> Result<(u64, &[u8]), Error> {
    let (expiry, inner) = envelope
        .split_first_chunk::<EXPIRY_LEN>()
        .ok_or(Error::Decrypt)?;
    Ok((u64::from_be_bytes(*expiry), inner))
}

/// Hex text to bytes for the `open_*_hex` forms: every failure is
/// [`Error::Decrypt`].
fn hex_envelope(envelope: &str) -> Result<Vec<u8>, Error> {
    crate::hex::decode(envelope).map_err(|()| Error::Decrypt)
}

/// The three fields of an envelope.
struct Parts<'a> {
    nonce: &'a [u8; NONCE_LEN],
    ciphertext: &'a [u8],
    tag: &'a [u8; TAG_LEN],
}

/// Splits an envelope into its fields, checking the length first.
fn split(envelope: &[u8]) -> Result<Parts<'_>, Error> {
    let (nonce, rest) = envelope
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(Error::Decrypt)?;
    let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>().ok_or(Error::Decrypt)?;
    Ok(Parts {
        nonce,
        ciphertext,
        tag,
    })
}

/// The expanded key is wiped on drop by the `aes-gcm` and `aws-lc-rs`
/// engines; `ring` offers no way to wipe it.
#[cfg(not(all(feature = "ring", not(feature = "aws-lc-rs"))))]
impl zeroize::ZeroizeOnDrop for Sealer {}
#[cfg(not(all(feature = "ring", not(feature = "aws-lc-rs"))))]
impl zeroize::ZeroizeOnDrop for Keyring {}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Key rotation: seal under the primary key, open under the primary or any
/// previous key.
///
/// # Use case
///
/// Rotate a key without a flag day: deploy a `Keyring` whose primary is the
/// new key and whose previous keys are the old ones; envelopes made before
/// the rotation still open, and [`Keyring::reseal`] moves them to the new
/// key as they pass through. Drop an old key once nothing sealed under it
/// remains.
///
/// # About
///
/// The envelope carries no key id (the format is plain AES-GCM), so `open`
/// tries the primary first, then each previous key in the order added. A
/// failed open costs one tag check per key.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key, Keyring};
///
/// let old = Keyring::new(Key::from_bytes([1; 32]));
/// let envelope = old.seal(b"4321", b"last4");
///
/// let rotated = Keyring::new(Key::from_bytes([2; 32])).with_previous(Key::from_bytes([1; 32]));
/// assert_eq!(rotated.open(&envelope, b"last4")?.expose_secret(), b"4321");
/// let moved = rotated.reseal(&envelope, b"last4")?;
/// assert!(old.open(&moved, b"last4").is_err()); // now under the new key only
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Keyring {
    primary: Sealer,
    /// Boxed so that growing the list moves pointers, not key schedules: a
    /// reallocated `Vec<Sealer>` would free its old buffer unwiped.
    #[allow(clippy::vec_box)]
    previous: Vec<Box<Sealer>>,
}

impl Keyring {
    /// A keyring that seals and opens with `primary`. The key is expanded
    /// and the `Key` itself wiped.
    pub fn new(primary: Key) -> Keyring {
        Keyring {
            primary: Sealer::new(&primary),
            previous: Vec::new(),
        }
    }

    /// Adds a key that still opens envelopes but no longer seals. A key equal
    /// to one already in the ring is ignored.
    #[must_use]
    pub fn with_previous(mut self, key: Key) -> Keyring {
        let id = key.id();
        if id != self.primary.key_id && self.previous.iter().all(|s| s.key_id != id) {
            self.previous.push(Box::new(Sealer::new(&key)));
        }
        self
    }

    /// The id of the key new envelopes are sealed with.
    pub fn primary_id(&self) -> KeyId {
        self.primary.key_id
    }

    /// Ids of all keys, primary first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.sealers().map(Sealer::key_id).collect()
    }

    /// Seals under the primary key; see [`Sealer::seal`].
    ///
    /// # Panics
    ///
    /// As [`Sealer::seal`].
    #[must_use]
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        self.primary.seal(plaintext, aad)
    }

    /// Opens under whichever key of the ring sealed the envelope.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] if no key opens it.
    pub fn open(&self, envelope: &[u8], aad: &[u8]) -> Result<Secret<Vec<u8>>, Error> {
        self.open_with_key_id(envelope, aad)
            .map(|(plaintext, _)| plaintext)
    }

    /// Like [`Keyring::open`], and also returns the id of the key that
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
        // One plaintext buffer for every key tried: a failed `open_into`
        // leaves it zeroed for the next.
        let len = envelope.len().checked_sub(OVERHEAD).ok_or(Error::Decrypt)?;
        let mut plaintext = Secret::from_plaintext(vec![0u8; len]);
        let key_id = self
            .sealers()
            .find(|s| {
                s.open_into(envelope, aad, plaintext.expose_secret_mut())
                    .is_ok()
            })
            .map(Sealer::key_id)
            .ok_or(Error::Decrypt)?;
        Ok((plaintext, key_id))
    }

    /// Opens an envelope under any key of the ring and seals its plaintext
    /// again, with a fresh nonce, under the primary key.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] if no key opens it.
    pub fn reseal(&self, envelope: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        let plaintext = self.open(envelope, aad)?;
        Ok(self.primary.seal(plaintext.expose_secret(), aad))
    }

    /// Seals an expiring envelope under the primary key; see
    /// [`Sealer::seal_until`].
    ///
    /// # Panics
    ///
    /// As [`Sealer::seal`].
    #[must_use]
    pub fn seal_until(&self, plaintext: &[u8], aad: &[u8], expires_at: u64) -> Vec<u8> {
        self.primary.seal_until(plaintext, aad, expires_at)
    }

    /// Opens an expiring envelope under any key of the ring at time `now`;
    /// see [`Sealer::open_expiring`].
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] if no key opens it; [`Error::Expired`] if it is
    /// authentic and expired.
    pub fn open_expiring(
        &self,
        envelope: &[u8],
        aad: &[u8],
        now: u64,
    ) -> Result<Secret<Vec<u8>>, Error> {
        open_expiring_with(envelope, aad, now, |inner, aad| self.open(inner, aad))
    }

    /// Moves an expiring envelope to the primary key, keeping its expiry:
    /// the reseal of [`Keyring::reseal`] for envelopes from
    /// [`Keyring::seal_until`].
    ///
    /// # Errors
    ///
    /// As [`Keyring::open_expiring`]: an expired envelope is not resealed.
    pub fn reseal_expiring(&self, envelope: &[u8], aad: &[u8], now: u64) -> Result<Vec<u8>, Error> {
        let (expires_at, _) = split_expiry(envelope)?;
        let plaintext = self.open_expiring(envelope, aad, now)?;
        Ok(self
            .primary
            .seal_until(plaintext.expose_secret(), aad, expires_at))
    }

    fn sealers(&self) -> impl Iterator<Item = &Sealer> {
        core::iter::once(&self.primary).chain(self.previous.iter().map(|s| &**s))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary.key_id)
            .field(
                "previous",
                &self.previous.iter().map(|s| s.key_id).collect::<Vec<_>>(),
            )
            .finish()
    }
}
