//! Authenticator-app codes: HOTP (RFC 4226), TOTP (RFC 6238) with a skew
//! window, enrollment URIs, and [`TotpGuard`] for replay protection.
//!
//! # What is in this module
//!
//! | item | for |
//! |---|---|
//! | [`hotp`], [`totp`] | one code, from a secret and a counter or a time |
//! | [`Totp`] | a user's generator and verifier: secret, step, digits, [`Algorithm`], skew; enrollment through [`Totp::random`] and [`Totp::to_uri`] |
//! | [`TotpGuard`] | accepts each time step once per subject, on a shared blocking store (async: [`aio::TotpGuard`](super::aio::TotpGuard)) |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac, digest::KeyInit};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater};
use zeroize::Zeroizing;

use super::policy::format_code;
use crate::secret::{ExposeSecret, ExposeSecretMut};
use crate::{Error, Secret};

pub(super) mod guard;
mod otpauth;

pub use guard::TotpGuard;

/// The HMAC hash function of an HOTP/TOTP generator (the `algorithm` of an
/// enrollment URI).
///
/// RFC 4226 defines HOTP with SHA-1; RFC 6238 adds SHA-256 and SHA-512 for
/// TOTP. SHA-1 is still the value most authenticator apps expect; its known
/// collision attacks do not affect HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC-SHA-1 (the RFC 4226 default).
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

/// Shortest shared secret accepted: 128 bits (RFC 4226 section 4, R6).
pub const MIN_SECRET_LEN: usize = 16;

/// Longest shared secret an enrollment URI may carry: 64 bytes (512 bits,
/// HMAC-SHA-512's output; longer keys add nothing).
pub const MAX_URI_SECRET_LEN: usize = 64;

/// Length of secrets [`Totp::random`] generates: 160 bits, as RFC 4226
/// recommends and every authenticator app accepts.
pub const SECRET_LEN: usize = 20;

/// An HMAC under `key` over `msg`, in a buffer wiped on drop, with its
/// length (20, 32 or 64 bytes).
fn hmac_digest(algorithm: Algorithm, key: &[u8], msg: &[u8]) -> (Zeroizing<[u8; 64]>, usize) {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8], out: &mut [u8; 64]) -> usize {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail.
        #[allow(clippy::expect_used)]
        let mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
        let digest = mac.chain_update(msg).finalize().into_bytes();
        let len = digest.len().min(out.len());
        out[..len].copy_from_slice(&digest[..len]);
        len
    }
    let mut out = Zeroizing::new([0u8; 64]);
    let len = match algorithm {
        Algorithm::Sha1 => run::<Hmac<Sha1>>(key, msg, &mut out),
        Algorithm::Sha256 => run::<Hmac<Sha256>>(key, msg, &mut out),
        Algorithm::Sha512 => run::<Hmac<Sha512>>(key, msg, &mut out),
    };
    (out, len)
}

/// Whether `digits` and `secret` are what HOTP accepts.
fn valid(secret: &[u8], digits: u8) -> bool {
    (6..=8).contains(&digits) && secret.len() >= MIN_SECRET_LEN
}

/// The HOTP value as a number, before formatting (RFC 4226 section 5.3),
/// for parameters already checked with [`valid`].
fn hotp_value(secret: &[u8], counter: u64, digits: u8, algorithm: Algorithm) -> u32 {
    let (mac, len) = hmac_digest(algorithm, secret, &counter.to_be_bytes());
    // Dynamic truncation. `len` is 20, 32 or 64 and the offset at most 15,
    // so every index is inside the 64-byte buffer.
    let offset = usize::from(mac[len - 1] & 0x0f);
    let word = [
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ];
    (u32::from_be_bytes(word) & 0x7fff_ffff) % 10u32.pow(u32::from(digits))
}

/// `t` in whole Unix seconds; 0 before 1970.
fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A TOTP time step in whole seconds, if it is one (at least a second, no
/// fraction).
fn step_seconds(step: Duration) -> Result<u64, Error> {
    if step.as_secs() == 0 || step.subsec_nanos() != 0 {
        return Err(Error::InvalidOtpParameter);
    }
    Ok(step.as_secs())
}

/// Computes an HOTP value (RFC 4226).
///
/// # Parameters
///
/// - `secret`: the shared secret, at least 16 bytes (RFC 4226 requires 128
///   bits and recommends 160).
/// - `counter`: the moving factor.
/// - `digits`: 6, 7 or 8.
/// - `algorithm`: the HMAC hash; RFC 4226 uses [`Algorithm::Sha1`].
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
/// use pinseal::otp::totp::{Algorithm, hotp};
///
/// // RFC 4226 appendix D, counter 0.
/// let code = hotp(b"12345678901234567890", 0, 6, Algorithm::Sha1)?;
/// assert_eq!(code.expose_secret(), "755224");
/// # Ok::<(), pinseal::Error>(())
/// ```
pub fn hotp(
    secret: &[u8],
    counter: u64,
    digits: u8,
    algorithm: Algorithm,
) -> Result<Secret<String>, Error> {
    if !valid(secret, digits) {
        return Err(Error::InvalidOtpParameter);
    }
    let value = hotp_value(secret, counter, digits, algorithm);
    Ok(format_code(u64::from(value), digits))
}

/// Computes a TOTP value (RFC 6238) with `T0 = 0`: the HOTP of the number
/// of whole `step`s between the Unix epoch and `at`.
///
/// # Errors
///
/// [`Error::InvalidOtpParameter`] if `step` is not a whole number of
/// seconds (at least one), or as [`hotp`].
///
/// # Example
///
/// ```
/// use pinseal::ExposeSecret;
/// use pinseal::otp::totp::{Algorithm, totp};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// // RFC 6238 appendix B, T = 59 s, SHA-256 with its 32-byte seed.
/// let at = UNIX_EPOCH + Duration::from_secs(59);
/// let code = totp(b"12345678901234567890123456789012", at, Duration::from_secs(30), 8, Algorithm::Sha256)?;
/// assert_eq!(code.expose_secret(), "46119246");
/// # Ok::<(), pinseal::Error>(())
/// ```
pub fn totp(
    secret: &[u8],
    at: SystemTime,
    step: Duration,
    digits: u8,
    algorithm: Algorithm,
) -> Result<Secret<String>, Error> {
    let step = step_seconds(step)?;
    hotp(secret, unix_seconds(at) / step, digits, algorithm)
}

/// A TOTP generator and verifier: a secret, its parameters and a tolerated
/// clock skew.
///
/// # Use case
///
/// Second-factor codes from an authenticator app (Google Authenticator,
/// 1Password, Authy, ...). Enroll a user with [`Totp::random`] and
/// [`Totp::to_uri`] (shown as a QR code), keep the secret (sealed), and
/// verify through a [`TotpGuard`] so that a code, once accepted, is never
/// accepted again on any instance sharing the guard's store.
///
/// # Parameters
///
/// The argument order is the same as [`totp`] and [`hotp`]: secret, then
/// time step, then digits, then algorithm. Times are [`SystemTime`]s; the
/// time-step counters [`Totp::verify`] returns and takes are counts of
/// steps since the Unix epoch, not times.
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
/// use pinseal::otp::totp::{Algorithm, Totp, totp};
/// use pinseal::{ExposeSecret, Secret};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let secret = b"12345678901234567890".to_vec();
/// let step = Duration::from_secs(30);
/// let verifier = Totp::new(Secret::new(secret.clone()), step, 6, Algorithm::Sha1)?.with_skew(1);
/// let t = UNIX_EPOCH + Duration::from_secs(1_000);
/// let code = totp(&secret, t, step, 6, Algorithm::Sha1)?;
/// let accepted = verifier.verify(code.expose_secret(), t + Duration::from_secs(10), None).expect("accepted");
/// // The same code is refused once its step has been accepted.
/// assert_eq!(verifier.verify(code.expose_secret(), t + Duration::from_secs(10), Some(accepted)), None);
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Totp {
    secret: Secret<Vec<u8>>,
    digits: u8,
    /// Whole seconds, at least one.
    step: u64,
    algorithm: Algorithm,
    skew: u8,
}

impl Totp {
    /// A generator and verifier with no skew; the same argument order as
    /// [`totp`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOtpParameter`] if `step` is not a whole number of
    /// seconds (at least one), `digits` is outside 6..=8 or the secret is
    /// shorter than 16 bytes.
    pub fn new(
        secret: Secret<Vec<u8>>,
        step: Duration,
        digits: u8,
        algorithm: Algorithm,
    ) -> Result<Totp, Error> {
        let step = step_seconds(step)?;
        if !valid(secret.expose_secret(), digits) {
            return Err(Error::InvalidOtpParameter);
        }
        Ok(Totp {
            secret,
            digits,
            step,
            algorithm,
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
            algorithm: Algorithm::Sha1,
            skew: 0,
        }
    }

    /// The shared secret.
    pub fn secret(&self) -> &Secret<Vec<u8>> {
        &self.secret
    }

    /// The time step.
    pub fn step(&self) -> Duration {
        Duration::from_secs(self.step)
    }

    /// Digits per code.
    pub fn digits(&self) -> u8 {
        self.digits
    }

    /// The HMAC hash.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Steps accepted on each side of the current one.
    pub fn skew(&self) -> u8 {
        self.skew
    }

    /// Also accepts codes up to `steps` steps before or after the current one
    /// (at most 10).
    #[must_use]
    pub fn with_skew(mut self, steps: u8) -> Totp {
        self.skew = steps.min(10);
        self
    }

    /// The code for the current time on the system clock.
    pub fn generate_now(&self) -> Secret<String> {
        self.generate(SystemTime::now())
    }

    /// [`Totp::verify`] at the current time on the system clock.
    #[must_use]
    pub fn verify_now(&self, input: &str, last_accepted: Option<u64>) -> Option<u64> {
        self.verify(input, SystemTime::now(), last_accepted)
    }

    /// The code for `at`.
    pub fn generate(&self, at: SystemTime) -> Secret<String> {
        let counter = unix_seconds(at) / self.step;
        let value = hotp_value(
            self.secret.expose_secret(),
            counter,
            self.digits,
            self.algorithm,
        );
        format_code(u64::from(value), self.digits)
    }

    /// Checks `input` at `at`. Returns the time step (a count of steps since
    /// the Unix epoch) it matched, if any step in the skew window matches
    /// and is later than `last_accepted`; store that step and pass it next
    /// time, so no step is ever accepted twice.
    ///
    /// Input that is not exactly `digits` ASCII digits never matches.
    #[must_use]
    pub fn verify(&self, input: &str, at: SystemTime, last_accepted: Option<u64>) -> Option<u64> {
        let well_formed =
            input.len() == usize::from(self.digits) && input.bytes().all(|b| b.is_ascii_digit());
        let guess: u32 = if well_formed {
            input.parse().unwrap_or(u32::MAX)
        } else {
            u32::MAX
        };
        let now = unix_seconds(at) / self.step;
        let floor = last_accepted.map_or(0, |s| s.saturating_add(1));
        let mut found = 0u64;
        let mut any = Choice::from(0);
        let skew = u64::from(self.skew);
        for step in now.saturating_sub(skew)..=now.saturating_add(skew) {
            let value = hotp_value(
                self.secret.expose_secret(),
                step,
                self.digits,
                self.algorithm,
            );
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
            .field("step", &self.step())
            .field("algorithm", &self.algorithm)
            .field("skew", &self.skew)
            .finish()
    }
}
