//! HOTP (RFC 4226) and TOTP (RFC 6238), with a skew window and replay
//! protection.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac, digest::KeyInit};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater};
use zeroize::Zeroizing;

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

/// The HOTP value as a number, before formatting (RFC 4226 section 5.3).
fn hotp_value(secret: &[u8], counter: u64, digits: u32, hash: Hash) -> Result<u32, Error> {
    if !(6..=8).contains(&digits) || secret.is_empty() {
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
/// - `secret`: the shared secret (RFC 4226 asks for at least 128 bits, 160
///   recommended).
/// - `counter`: the moving factor.
/// - `digits`: 6, 7 or 8.
/// - `hash`: the HMAC hash; RFC 4226 uses [`Hash::Sha1`].
///
/// # Errors
///
/// [`Error::InvalidOtpParameter`] if `digits` is outside 6..=8 or `secret`
/// is empty.
///
/// # Example
///
/// ```
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

/// A TOTP verifier: a secret, its parameters and a tolerated clock skew.
///
/// # Use case
///
/// Second-factor codes from an authenticator app. Pair it with a
/// [`TotpGuard`] (or store the returned step yourself) so that a code, once
/// accepted, is never accepted again.
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
/// use pinseal::Secret;
///
/// let secret = b"12345678901234567890".to_vec();
/// let verifier = Totp::new(Secret::new(secret.clone()), 6, 30, Hash::Sha1)?.with_skew(1);
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
    /// A verifier with no skew.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOtpParameter`] if `digits` is outside 6..=8, `step`
    /// is 0 or the secret is empty.
    pub fn new(secret: Secret<Vec<u8>>, digits: u32, step: u64, hash: Hash) -> Result<Totp, Error> {
        if !(6..=8).contains(&digits) || step == 0 || secret.expose_secret().is_empty() {
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

    /// Also accepts codes up to `steps` steps before or after the current one
    /// (at most 10).
    #[must_use]
    pub fn with_skew(mut self, steps: u8) -> Totp {
        self.skew = u64::from(steps.min(10));
        self
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

/// Replay protection for [`Totp`]: remembers, per subject, the last accepted
/// time step, so a code is accepted at most once even if the same code is
/// submitted again within its window.
///
/// Subjects are kept as SHA-256 hashes, and entries older than the skew
/// window are pruned as new ones arrive, so memory stays proportional to
/// the subjects active in the last few steps.
///
/// # Example
///
/// ```
/// use pinseal::otp::{totp, Hash, Totp, TotpGuard};
/// use pinseal::Secret;
///
/// let guard = TotpGuard::new(Totp::new(Secret::new(b"12345678901234567890".to_vec()), 6, 30, Hash::Sha1)?);
/// let code = totp(b"12345678901234567890", 90, 30, 6, Hash::Sha1)?;
/// assert!(guard.verify("alice", code.expose_secret(), 95));
/// assert!(!guard.verify("alice", code.expose_secret(), 96)); // replay
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct TotpGuard {
    totp: Totp,
    last: Mutex<HashMap<[u8; 32], u64>>,
}

impl core::fmt::Debug for TotpGuard {
    /// The verifier (secret redacted) and how many subjects are remembered;
    /// never the subjects, whose hashes a phone-number list would reverse.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let remembered = self.last.lock().map_or(0, |m| m.len());
        f.debug_struct("TotpGuard")
            .field("totp", &self.totp)
            .field("subjects", &remembered)
            .finish()
    }
}

impl TotpGuard {
    /// Guards `totp` with an empty replay memory.
    pub fn new(totp: Totp) -> TotpGuard {
        TotpGuard {
            totp,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Accepts `input` for `subject` at `unix_time` if it matches a step in
    /// the window that is later than any step accepted before for this
    /// subject. Check and record happen under one lock, so two concurrent
    /// submissions of one code are accepted at most once.
    #[must_use]
    pub fn verify(&self, subject: &str, input: &str, unix_time: u64) -> bool {
        let id: [u8; 32] = Sha256::digest(subject.as_bytes()).into();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let accepted = self.totp.verify(input, unix_time, last.get(&id).copied());
        if let Some(step) = accepted {
            let oldest = (unix_time / self.totp.step).saturating_sub(self.totp.skew + 1);
            if last.len() >= 1024 {
                last.retain(|_, s| *s >= oldest);
            }
            last.insert(id, step);
        }
        accepted.is_some()
    }
}
