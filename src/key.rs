//! Keys, key ids and key derivation.

use core::fmt;

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::Error;
use crate::secret::ExposeSecret;

/// Length of a key in bytes; [`Key::LEN`].
const KEY_LEN: usize = 32;

/// The longest key file read: a key in any format, with room for a
/// newline or two.
const MAX_KEY_FILE: u64 = 256;

/// The value of the environment variable `var`, wiped on drop (a value
/// that is not Unicode too).
fn env_value(var: &str) -> Result<Zeroizing<String>, Error> {
    match std::env::var_os(var) {
        None => Err(Error::KeyEnvMissing),
        Some(value) => match value.into_string() {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(not_unicode) => {
                #[cfg(unix)]
                {
                    use std::os::unix::ffi::OsStringExt;
                    drop(Zeroizing::new(not_unicode.into_vec()));
                }
                #[cfg(not(unix))]
                drop(not_unicode);
                Err(Error::KeyEnvMissing)
            }
        },
    }
}

/// How key material is written where it is kept: an environment variable,
/// a file, a secrets manager's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyFormat {
    /// 64 hexadecimal characters, either case (`openssl rand -hex 32`).
    Hex,
    /// 44 characters of standard base64 with padding (RFC 4648, section
    /// 4), as `openssl rand -base64 32` and most secrets managers write it.
    Base64,
    /// The 32 bytes themselves (files only).
    Raw,
}

/// A 256-bit secret key, wiped on drop.
///
/// # Use case
///
/// A [`Key`] is the 32-byte secret behind a [`Sealer`](crate::Sealer), a
/// [`Keyring`](crate::Keyring) or an [`Otp`](crate::otp::Otp) service. Load
/// it once at start-up (usually [`Key::from_env`]), derive one sub-key per
/// purpose with [`Key::derive`], and log only its [`KeyId`].
///
/// # About
///
/// Both derivations are fixed so that any other implementation can
/// reproduce them:
///
/// - `Key::derive(purpose)` = HKDF-SHA256 (RFC 5869) with `ikm` = the key
///   bytes, no salt, `info` = `"pinseal/v1/" || purpose` (UTF-8), 32 bytes of
///   output.
/// - `KeyId` = the first 8 bytes of SHA-256(`"pinseal/v1/key-id" || key
///   bytes`), shown as 16 lowercase hex characters.
///
/// # Security
///
/// - Key bytes are wiped when a `Key` is dropped. `Key` is not `Clone`;
///   derive a new key or pass a reference.
/// - `Debug` prints only the key id, which reveals nothing usable about the
///   key (it is a truncated hash under a fixed label).
/// - A key kept in an environment variable is as safe as the process
///   environment: anyone who can read `/proc/<pid>/environ` or the service's
///   deployment configuration has it. See `SECURITY.md`.
///
/// # Example
///
/// ```
/// use pinseal::Key;
///
/// let root = Key::generate();
/// let pins = root.derive("ivr/pin");
/// assert_ne!(root.id(), pins.id());
/// println!("sealing PINs with key {}", pins.id()); // safe to log
/// ```
#[derive(ZeroizeOnDrop)]
pub struct Key {
    bytes: [u8; KEY_LEN],
}

impl Key {
    /// Length of a key in bytes: 32.
    pub const LEN: usize = KEY_LEN;

    /// Generates a fresh key from the operating system's random number
    /// generator.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes, which on a
    /// supported platform means the system is unusable for cryptography.
    pub fn generate() -> Key {
        let mut key = Key {
            bytes: [0; KEY_LEN],
        };
        crate::rand::fill(&mut key.bytes);
        key
    }

    /// Wraps 32 bytes of key material.
    ///
    /// # Security
    ///
    /// The array passed in is a copy the caller still owns; wipe it if it
    /// outlives this call.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key { bytes }
    }

    /// Copies key material from a slice.
    ///
    /// # Errors
    ///
    /// [`Error::KeyLength`] unless `bytes` is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Key, Error> {
        let mut key = Key {
            bytes: [0; KEY_LEN],
        };
        if bytes.len() != KEY_LEN {
            return Err(Error::KeyLength);
        }
        key.bytes.copy_from_slice(bytes);
        Ok(key)
    }

    /// Parses a key written as 64 hexadecimal characters (either case).
    ///
    /// # Errors
    ///
    /// [`Error::KeyLength`] unless `hex` is exactly 64 characters long;
    /// [`Error::KeyHex`] if any of them is not a hex digit. Neither error
    /// contains the input.
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{Error, Key};
    ///
    /// let key = Key::from_hex(&"ab".repeat(32))?;
    /// assert_eq!(Key::from_hex("abcd").unwrap_err(), Error::KeyLength);
    /// assert_eq!(Key::from_hex(&"zz".repeat(32)).unwrap_err(), Error::KeyHex);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_hex(hex: &str) -> Result<Key, Error> {
        if hex.len() != 2 * KEY_LEN {
            return Err(Error::KeyLength);
        }
        let mut key = Key {
            bytes: [0; KEY_LEN],
        };
        crate::hex::decode_exact(hex, &mut key.bytes).map_err(|()| Error::KeyHex)?;
        Ok(key)
    }

    /// Parses a key written as 44 characters of standard base64 with
    /// padding (32 bytes).
    ///
    /// # Errors
    ///
    /// [`Error::KeyBase64`] if `text` is not standard padded base64;
    /// [`Error::KeyLength`] if it does not decode to exactly 32 bytes.
    /// Neither error contains the input.
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{Error, Key};
    ///
    /// let key = Key::from_base64("q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=")?;
    /// assert_eq!(key.id(), Key::from_hex(&"abcdef0123456789".repeat(4))?.id());
    /// assert_eq!(Key::from_base64("q83v").unwrap_err(), Error::KeyLength);
    /// assert_eq!(Key::from_base64("not base64!").unwrap_err(), Error::KeyBase64);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_base64(text: &str) -> Result<Key, Error> {
        use data_encoding::BASE64;
        let len = BASE64
            .decode_len(text.len())
            .map_err(|_| Error::KeyBase64)?;
        if len > KEY_LEN + 2 {
            return Err(Error::KeyLength);
        }
        let mut buffer = Zeroizing::new([0u8; KEY_LEN + 2]);
        let written = BASE64
            .decode_mut(text.as_bytes(), &mut buffer[..len])
            .map_err(|_| Error::KeyBase64)?;
        Key::from_slice(&buffer[..written])
    }

    /// Parses key material in `format` (surrounding whitespace ignored for
    /// the text formats).
    ///
    /// # Errors
    ///
    /// As [`Key::from_hex`], [`Key::from_base64`] or [`Key::from_slice`].
    pub fn parse(material: &[u8], format: KeyFormat) -> Result<Key, Error> {
        let text = || {
            core::str::from_utf8(material)
                .map(str::trim)
                .map_err(|_| match format {
                    KeyFormat::Base64 => Error::KeyBase64,
                    _ => Error::KeyHex,
                })
        };
        match format {
            KeyFormat::Hex => Key::from_hex(text()?),
            KeyFormat::Base64 => Key::from_base64(text()?),
            KeyFormat::Raw => Key::from_slice(material),
        }
    }

    /// Reads a key in `format` from the environment variable `var`, as
    /// [`Key::from_env`] does for hex.
    ///
    /// # Errors
    ///
    /// [`Error::KeyEnvMissing`] if the variable is unset or not Unicode;
    /// [`Error::InvalidParameter`] for [`KeyFormat::Raw`] (an environment
    /// variable holds text: 32 characters of it would be a password, not
    /// a key); otherwise as [`Key::parse`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use pinseal::{Key, KeyFormat};
    /// // PINSEAL_KEY=$(openssl rand -base64 32)
    /// let key = Key::from_env_as("PINSEAL_KEY", KeyFormat::Base64)?;
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn from_env_as(var: &str, format: KeyFormat) -> Result<Key, Error> {
        if format == KeyFormat::Raw {
            return Err(Error::InvalidParameter);
        }
        Key::parse(env_value(var)?.as_bytes(), format)
    }

    /// Reads a key in `format` from the file at `path` (a mounted secret,
    /// a file written by a deployment tool).
    ///
    /// On Unix the file must be a regular file (a symbolic link to one is
    /// followed; a FIFO or a device is refused before it is opened) that
    /// others cannot read or write and its group cannot write: `0600`,
    /// `0400`, `0640` or `0440`. Kubernetes mounts secrets `0644` unless
    /// the volume sets `defaultMode: 0400` (`0440` with an `fsGroup`);
    /// Docker secrets are `0444` unless the service sets `mode: 0400`. The
    /// owner is not checked. The bytes read are wiped before returning.
    ///
    /// # Errors
    ///
    /// [`Error::KeyFile`] if the file cannot be read, is not a regular file
    /// or is longer than any key; [`Error::KeyFileMode`] if others have any
    /// permission or its group more than read; otherwise as
    /// [`Key::parse`]. No error contains the path or the contents.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use pinseal::{Key, KeyFormat};
    /// let key = Key::from_file("/run/secrets/pinseal-key", KeyFormat::Hex)?;
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn from_file(path: impl AsRef<std::path::Path>, format: KeyFormat) -> Result<Key, Error> {
        use std::io::Read;
        let path = path.as_ref();
        // Looked at before opening: opening a FIFO would block.
        let before = std::fs::metadata(path).map_err(|_| Error::KeyFile)?;
        if !before.is_file() {
            return Err(Error::KeyFile);
        }
        let mut file = std::fs::File::open(path).map_err(|_| Error::KeyFile)?;
        let metadata = file.metadata().map_err(|_| Error::KeyFile)?;
        if !metadata.is_file() || metadata.len() > MAX_KEY_FILE {
            return Err(Error::KeyFile);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            // The file opened is the one looked at.
            if (before.dev(), before.ino()) != (metadata.dev(), metadata.ino()) {
                return Err(Error::KeyFile);
            }
            // Others: nothing. The group: read at most.
            if metadata.permissions().mode() & 0o037 != 0 {
                return Err(Error::KeyFileMode);
            }
        }
        let mut contents = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE as usize + 1));
        file.by_ref()
            .take(MAX_KEY_FILE + 1)
            .read_to_end(&mut contents)
            .map_err(|_| Error::KeyFile)?;
        if contents.len() as u64 > MAX_KEY_FILE {
            return Err(Error::KeyFile);
        }
        Key::parse(&contents, format)
    }

    /// Reads a hex-encoded key from the environment variable `var`.
    ///
    /// Leading and trailing whitespace (a newline left by `echo` or a
    /// secrets file) is ignored. The copy of the variable's value read into
    /// this process is wiped before returning; the environment itself is not
    /// changed.
    ///
    /// # Errors
    ///
    /// [`Error::KeyEnvMissing`] if the variable is unset or not Unicode;
    /// otherwise the errors of [`Key::from_hex`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// let key = pinseal::Key::from_env("PINSEAL_KEY")?;
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn from_env(var: &str) -> Result<Key, Error> {
        Key::from_hex(env_value(var)?.trim())
    }

    /// The key's public identifier, safe to log and store beside data.
    pub fn id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(b"pinseal/v1/key-id")
            .chain_update(self.bytes)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    /// Derives an independent key for one `purpose` (HKDF-SHA256, see the
    /// [`Key`] type documentation for the exact construction).
    ///
    /// Use a distinct purpose string for each use of one root key, for
    /// example `"ivr/pin"`, `"ivr/pan"`, `"otp/pepper"`.
    pub fn derive(&self, purpose: &str) -> Key {
        let hk = Hkdf::<Sha256>::new(None, &self.bytes);
        let mut out = Key {
            bytes: [0; KEY_LEN],
        };
        #[allow(clippy::expect_used)]
        hk.expand_multi_info(&[b"pinseal/v1/", purpose.as_bytes()], &mut out.bytes)
            .expect("32 bytes is always a valid HKDF-SHA256 output length");
        out
    }
}

impl ExposeSecret<[u8; KEY_LEN]> for Key {
    /// The raw key bytes, for handing the key to another system.
    ///
    /// # Security
    ///
    /// The returned bytes are the key. Never log or persist them in clear.
    fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

#[cfg(feature = "secrecy")]
impl secrecy::ExposeSecret<[u8; KEY_LEN]> for Key {
    fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("id", &self.id()).finish()
    }
}

/// A short public identifier of a [`Key`]: 8 bytes, shown as 16 lowercase
/// hex characters by both `Display` and `Debug`.
///
/// # Example
///
/// ```
/// let key = pinseal::Key::from_bytes([7; 32]);
/// let id = key.id();
/// assert_eq!(id.to_string().len(), 16);
/// assert_eq!(format!("{id:?}"), id.to_string());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// The identifier's 8 bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::hex::write::<8, 16>(f, &self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
