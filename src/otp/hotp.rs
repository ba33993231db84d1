//! HOTP (RFC 4226) and TOTP (RFC 6238), with a skew window and replay
//! protection.

use hmac::{Hmac, Mac, digest::KeyInit};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater};
use zeroize::Zeroizing;

use crate::secret::{ExposeSecret, ExposeSecretMut};
use crate::{Error, Secret};

/// The HMAC hash function of an HOTP/TOTP generator.
///
/// RFC 4226 defines HOTP with SHA-1; RFC 6238 adds SHA-256 and SHA-512 for
/// TOTP. SHA-1 is still the value most authenticator apps expect; its known
/// collision attacks do not affect HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hash {
    /// HMAC-SHA-1 (the RFC 4226 default).
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

/// HMAC of `msg` under `key` with the chosen hash, in a buffer wiped on drop.
fn hmac_digest(hash: Hash, key: &[u8], msg: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        // HMAC takes keys of any length; the error arm is unreachable.
        let mac = <M as KeyInit>::new_from_slice(key).map_err(|_| Error::InvalidOtpParameter)?;
        Ok(Zeroizing::new(
            mac.chain_update(msg).finalize().into_bytes().to_vec(),
        ))
    }
    match hash {
        Hash::Sha1 => run::<Hmac<Sha1>>(key, msg),
        Hash::Sha256 => run::<Hmac<Sha256>>(key, msg),
        Hash::Sha512 => run::<Hmac<Sha512>>(key, msg),
    }
}

/// Shortest shared secret accepted: 128 bits (RFC 4226 section 4, R6).
pub const MIN_SECRET_LEN: usize = 16;

/// Length of secrets [`Totp::random`] generates: 160 bits, as RFC 4226
/// recommends and every authenticator app accepts.
pub const SECRET_LEN: usize = 20;

/// The HOTP value as a number, before formatting (RFC 4226 section 5.3).
fn hotp_value(secret: &[u8], counter: u64, digits: u32, hash: Hash) -> Result<u32, Error> {
    if !(6..=8).contains(&digits) || secret.len() < MIN_SECRET_LEN {
        return Err(Error::InvalidOtpParameter);
    }
    let msg = counter.to_be_bytes();
    let mac = hmac_digest(hash, secret, &msg)?;
    let offset = usize::from(mac.last().ok_or(Error::InvalidOtpParameter)? & 0x0f);
    let window = mac
        .get(offset..offset + 4)
        .ok_or(Error::InvalidOtpParameter)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(window);
    let binary = u32::from_be_bytes(word) & 0x7fff_ffff;
    Ok(binary % 10u32.pow(digits))
}

/// Formats `value` as exactly `digits` ASCII digits, leading zeros kept,
/// into a string allocated once at its final size.
pub(crate) fn format_code(value: u64, digits: u32) -> Secret<String> {
    let mut s = Secret::new(String::with_capacity(digits as usize));
    for i in (0..digits).rev() {
        let d = (value / 10u64.pow(i) % 10) as u8;
        s.expose_secret_mut().push(char::from(b'0' + d));
    }
    s
}

/// Computes an HOTP value (RFC 4226).
///
/// # Parameters
///
/// - `secret`: the shared secret, at least 16 bytes (RFC 4226 requires 128
///   bits and recommends 160).
/// - `counter`: the moving factor.
/// - `digits`: 6, 7 or 8.
/// - `hash`: the HMAC hash; RFC 4226 uses [`Hash::Sha1`].
///
/// # Errors
///
/// [`Error::InvalidOtpParameter`] if `digits` is outside 6..=8 or `secret`
/// is shorter than 16 bytes.
///
/// # Example
///
/// ```
/// use pinseal::ExposeSecret;
/// use pinseal::otp::{hotp, Hash};
///
/// // RFC 4226 appendix D, counter 0.
/// let code = hotp(b"12345678901234567890", 0, 6, Hash::Sha1)?;
/// assert_eq!(code.expose_secret(), "755224");
/// # Ok::<(), pinseal::Error>(())
/// ```
pub fn hotp(secret: &[u8], counter: u64, digits: u32, hash: Hash) -> Result<Secret<String>, Error> {
    let value = hotp_value(secret, counter, digits, hash)?;
    Ok(format_code(u64::from(value), digits))
}

/// Computes a TOTP value (RFC 6238) with `T0 = 0`:
/// `hotp(secret, unix_time / step, digits, hash)`.
///
/// # Errors
///
/// [`Error::InvalidOtpParameter`] if `step` is 0, or as [`hotp`].
///
/// # Example
///
/// ```
/// use pinseal::ExposeSecret;
/// use pinseal::otp::{totp, Hash};
///
/// // RFC 6238 appendix B, T = 59 s, SHA-256 with its 32-byte seed.
/// let code = totp(b"12345678901234567890123456789012", 59, 30, 8, Hash::Sha256)?;
/// assert_eq!(code.expose_secret(), "46119246");
/// # Ok::<(), pinseal::Error>(())
/// ```
pub fn totp(
    secret: &[u8],
    unix_time: u64,
    step: u64,
    digits: u32,
    hash: Hash,
) -> Result<Secret<String>, Error> {
    if step == 0 {
        return Err(Error::InvalidOtpParameter);
    }
    hotp(secret, unix_time / step, digits, hash)
}

/// A TOTP generator and verifier: a secret, its parameters and a tolerated
/// clock skew.
///
/// # Use case
///
/// Second-factor codes from an authenticator app (Google Authenticator,
/// 1Password, Authy, ...). Enroll a user with [`Totp::random`] and
/// [`Totp::to_uri`] (shown as a QR code), keep the secret (sealed), and
/// verify through a [`TotpGuard`](super::TotpGuard) so that a code, once accepted, is never
/// accepted again on any instance sharing the guard's store.
///
/// # Parameters
///
/// The argument order is the same as [`totp`] and [`hotp`]: secret, then
/// time step (seconds), then digits, then hash.
///
/// # Security
///
/// - Every step in the skew window is computed and compared in constant
///   time; the loop does not stop at the first match.
/// - A skew of `s` accepts `2s + 1` codes at any moment, which multiplies an
///   online guesser's chance by the same factor: keep it at 1 or 0 and limit
///   attempts.
///
/// # Example
///
/// ```
/// use pinseal::otp::{totp, Hash, Totp};
/// use pinseal::{ExposeSecret, Secret};
///
/// let secret = b"12345678901234567890".to_vec();
/// let verifier = Totp::new(Secret::new(secret.clone()), 30, 6, Hash::Sha1)?.with_skew(1);
/// let code = totp(&secret, 1_000, 30, 6, Hash::Sha1)?;
/// let step = verifier.verify(code.expose_secret(), 1_010, None).expect("accepted");
/// // The same code is refused once its step has been accepted.
/// assert_eq!(verifier.verify(code.expose_secret(), 1_010, Some(step)), None);
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Totp {
    secret: Secret<Vec<u8>>,
    digits: u32,
    step: u64,
    hash: Hash,
    skew: u64,
}

impl Totp {
    /// A generator and verifier with no skew; the same argument order as
    /// [`totp`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOtpParameter`] if `step` is 0, `digits` is outside
    /// 6..=8 or the secret is shorter than 16 bytes.
    pub fn new(secret: Secret<Vec<u8>>, step: u64, digits: u32, hash: Hash) -> Result<Totp, Error> {
        if !(6..=8).contains(&digits) || step == 0 || secret.expose_secret().len() < MIN_SECRET_LEN
        {
            return Err(Error::InvalidOtpParameter);
        }
        Ok(Totp {
            secret,
            digits,
            step,
            hash,
            skew: 0,
        })
    }

    /// A new secret of 20 bytes from the operating system's generator, with
    /// the parameters every authenticator app supports: 30-second steps, 6
    /// digits, SHA-1.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub fn random() -> Totp {
        let mut secret = Secret::new(vec![0u8; SECRET_LEN]);
        crate::rand::fill(secret.expose_secret_mut());
        Totp {
            secret,
            digits: 6,
            step: 30,
            hash: Hash::Sha1,
            skew: 0,
        }
    }

    /// The shared secret.
    pub fn secret(&self) -> &Secret<Vec<u8>> {
        &self.secret
    }
    /// The time step in seconds.
    pub fn step(&self) -> u64 {
        self.step
    }
    /// Digits per code.
    pub fn digits(&self) -> u32 {
        self.digits
    }
    /// The HMAC hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }
    /// Steps accepted on each side of the current one.
    pub fn skew(&self) -> u64 {
        self.skew
    }

    /// Also accepts codes up to `steps` steps before or after the current one
    /// (at most 10).
    #[must_use]
    pub fn with_skew(mut self, steps: u8) -> Totp {
        self.skew = u64::from(steps.min(10));
        self
    }

    /// The code for the current time on the system clock.
    pub fn generate_now(&self) -> Secret<String> {
        self.generate(unix_now())
    }

    /// [`Totp::verify`] at the current time on the system clock.
    #[must_use]
    pub fn verify_now(&self, input: &str, last_accepted: Option<u64>) -> Option<u64> {
        self.verify(input, unix_now(), last_accepted)
    }

    /// The code for `unix_time`.
    pub fn generate(&self, unix_time: u64) -> Secret<String> {
        let value = hotp_value(
            self.secret.expose_secret(),
            unix_time / self.step,
            self.digits,
            self.hash,
        )
        .unwrap_or(0);
        format_code(u64::from(value), self.digits)
    }

    /// Checks `input` at `unix_time`. Returns the time step it matched, if
    /// any step in the skew window matches and is later than
    /// `last_accepted`; store that step and pass it next time, so no step is
    /// ever accepted twice.
    ///
    /// Input that is not exactly `digits` ASCII digits never matches.
    #[must_use]
    pub fn verify(&self, input: &str, unix_time: u64, last_accepted: Option<u64>) -> Option<u64> {
        let well_formed =
            input.len() == self.digits as usize && input.bytes().all(|b| b.is_ascii_digit());
        let guess: u32 = if well_formed {
            input.parse().unwrap_or(u32::MAX)
        } else {
            u32::MAX
        };
        let now = unix_time / self.step;
        let floor = last_accepted.map_or(0, |s| s.saturating_add(1));
        let mut found = 0u64;
        let mut any = Choice::from(0);
        for step in now.saturating_sub(self.skew)..=now.saturating_add(self.skew) {
            let value = hotp_value(self.secret.expose_secret(), step, self.digits, self.hash)
                .unwrap_or(u32::MAX);
            let fresh = step.ct_gt(&floor) | step.ct_eq(&floor);
            let hit = value.ct_eq(&guess) & fresh & Choice::from(u8::from(well_formed));
            found = u64::conditional_select(&found, &step, hit);
            any |= hit;
        }
        bool::from(any).then_some(found)
    }
}

impl zeroize::ZeroizeOnDrop for Totp {}

impl core::fmt::Debug for Totp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Totp")
            .field("secret", &self.secret)
            .field("digits", &self.digits)
            .field("step", &self.step)
            .field("hash", &self.hash)
            .field("skew", &self.skew)
            .finish()
    }
}

/// Seconds since the Unix epoch on the system clock.
fn unix_now() -> u64 {
    use super::Clock;
    super::SystemClock.now().as_secs()
}
