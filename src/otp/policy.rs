//! The rules an [`Otp`](super::Otp) service applies: [`Policy`], and
//! [`random_code`], which draws the codes it sends.

use std::time::Duration;

use zeroize::Zeroize;

use super::clock::millis;
use super::limits::Bucket;
use crate::secret::ExposeSecretMut;
use crate::{Error, Secret};

/// Rules for issued codes: length, lifetime, attempt and send budgets.
///
/// # Parameters
///
/// | parameter | default | accepted |
/// |---|---|---|
/// | `digits` | 6 | 4 to 10 |
/// | `ttl` | 10 minutes | 1 second to 24 hours |
/// | `max_attempts` (per subject per window) | 5 | 1 to 100 |
/// | `max_sends` (per subject per window) | 5 | 1 to 1000 |
/// | `send_window` | 10 minutes | 1 second to 7 days |
/// | `client_max_sends` (per client per window) | 10 | 1 to 100 000 |
/// | `client_window` | 10 minutes | 1 second to 7 days |
/// | `client_max_checks` (per client per window) | 30 | 1 to 100 000 |
/// | `client_check_window` | 10 minutes | 1 second to 7 days |
///
/// The client budget applies only to issues that name a client
/// ([`Otp::issue_from`](super::Otp::issue_from)). Durations are kept to the
/// millisecond.
///
/// # Example
///
/// ```
/// use pinseal::otp::Policy;
/// use std::time::Duration;
///
/// let chat = Policy::new(6, Duration::from_secs(60), 5)?
///     .with_send_budget(3, Duration::from_secs(15 * 60))?
///     .with_client_budget(20, Duration::from_secs(60 * 60))?;
/// assert_eq!(chat.ttl(), Duration::from_secs(60));
/// assert_eq!(chat.client_max_sends(), 20);
/// assert!(Policy::new(3, Duration::from_secs(60), 5).is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub(super) digits: u8,
    pub(super) ttl_ms: u64,
    pub(super) max_attempts: u32,
    pub(super) max_sends: u32,
    pub(super) send_window_ms: u64,
    pub(super) client_max_sends: u32,
    pub(super) client_window_ms: u64,
    pub(super) client_max_checks: u32,
    pub(super) client_check_window_ms: u64,
}

const SECOND_MS: u64 = 1_000;
const DAY_MS: u64 = 24 * 60 * 60 * SECOND_MS;
const TEN_MINUTES_MS: u64 = 10 * 60 * SECOND_MS;

/// A window length in milliseconds, if it is 1 second to 7 days.
pub(super) fn window(d: Duration) -> Result<u64, Error> {
    let ms = millis(d);
    if (SECOND_MS..=7 * DAY_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(Error::InvalidPolicy)
    }
}

impl Policy {
    /// A policy with the default send budgets (5 sends per subject and 10
    /// per client per 10 minutes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if a parameter is outside the table above.
    pub fn new(digits: u8, ttl: Duration, max_attempts: u32) -> Result<Policy, Error> {
        let ttl_ms = millis(ttl);
        if !(4..=10).contains(&digits)
            || !(SECOND_MS..=DAY_MS).contains(&ttl_ms)
            || !(1..=100).contains(&max_attempts)
        {
            return Err(Error::InvalidPolicy);
        }
        Ok(Policy {
            digits,
            ttl_ms,
            max_attempts,
            ..Policy::default()
        })
    }

    /// Sets the subject's send budget: at most `max_sends` codes per subject
    /// in a window of `window` that starts at the subject's first send. The
    /// attempt budget shares this window.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if a parameter is outside the table above.
    pub fn with_send_budget(mut self, max_sends: u32, window: Duration) -> Result<Policy, Error> {
        let window_ms = self::window(window)?;
        if !(1..=1000).contains(&max_sends) {
            return Err(Error::InvalidPolicy);
        }
        self.max_sends = max_sends;
        self.send_window_ms = window_ms;
        Ok(self)
    }

    /// Sets the client's send budget: at most `max_sends` codes issued on
    /// behalf of one client key (an IP address, a device id, an account) in
    /// a window of `window` that starts at the client's first issue,
    /// whatever subjects they go to. This is the limit that stops one
    /// caller from cycling through many phone numbers (SMS pumping).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if a parameter is outside the table above.
    pub fn with_client_budget(mut self, max_sends: u32, window: Duration) -> Result<Policy, Error> {
        let window_ms = self::window(window)?;
        if !(1..=100_000).contains(&max_sends) {
            return Err(Error::InvalidPolicy);
        }
        self.client_max_sends = max_sends;
        self.client_window_ms = window_ms;
        Ok(self)
    }

    /// Sets the client's check budget: at most `max_checks` checks that are
    /// not approvals ([`Otp::check_from`](super::Otp::check_from),
    /// [`Otp::verify_from`](super::Otp::verify_from)) on behalf of one
    /// client in a window of `window` that starts at its first check,
    /// whatever subjects they are for.
    ///
    /// The subject's own attempt budget stops guessing at one code; this
    /// one stops a stranger who knows many numbers from locking them all
    /// out, and a guesser spreading over many subjects. (One stranger can
    /// still spend one known subject's attempts: that lock is what stops a
    /// guesser who spreads over many clients.)
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if a parameter is outside the table above.
    pub fn with_client_check_budget(
        mut self,
        max_checks: u32,
        window: Duration,
    ) -> Result<Policy, Error> {
        let window_ms = self::window(window)?;
        if !(1..=100_000).contains(&max_checks) {
            return Err(Error::InvalidPolicy);
        }
        self.client_max_checks = max_checks;
        self.client_check_window_ms = window_ms;
        Ok(self)
    }

    pub(super) fn client_bucket(&self) -> Bucket {
        Bucket {
            max: self.client_max_sends,
            window_ms: self.client_window_ms,
        }
    }

    pub(super) fn client_check_bucket(&self) -> Bucket {
        Bucket {
            max: self.client_max_checks,
            window_ms: self.client_check_window_ms,
        }
    }

    /// Number of digits in a code.
    pub fn digits(&self) -> u8 {
        self.digits
    }
    /// How long a code stays valid after it is issued.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
    /// Wrong attempts a subject may make per window.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// Codes a subject may be sent per window.
    pub fn max_sends(&self) -> u32 {
        self.max_sends
    }
    /// Length of a subject's send window.
    pub fn send_window(&self) -> Duration {
        Duration::from_millis(self.send_window_ms)
    }
    /// Codes issued on behalf of one client per client window.
    pub fn client_max_sends(&self) -> u32 {
        self.client_max_sends
    }
    /// Length of a client's window.
    pub fn client_window(&self) -> Duration {
        Duration::from_millis(self.client_window_ms)
    }
    /// Checks made on behalf of one client per check window that are not
    /// approvals.
    pub fn client_max_checks(&self) -> u32 {
        self.client_max_checks
    }
    /// Length of a client's check window.
    pub fn client_check_window(&self) -> Duration {
        Duration::from_millis(self.client_check_window_ms)
    }
}

impl Default for Policy {
    /// 6 digits, 10 minutes, 5 attempts, 5 sends per subject and 10 per
    /// client per 10 minutes, 30 checks per client per 10 minutes.
    fn default() -> Policy {
        Policy {
            digits: 6,
            ttl_ms: TEN_MINUTES_MS,
            max_attempts: 5,
            max_sends: 5,
            send_window_ms: TEN_MINUTES_MS,
            client_max_sends: 10,
            client_window_ms: TEN_MINUTES_MS,
            client_max_checks: 30,
            client_check_window_ms: TEN_MINUTES_MS,
        }
    }
}

/// Draws a code uniformly from all `10^digits` values, leading zeros kept.
///
/// Rejection sampling over 64-bit words from the operating system's
/// generator: values in the incomplete last block of `2^64 mod 10^digits`
/// are redrawn, so no code is more likely than another.
///
/// # Errors
///
/// [`Error::InvalidPolicy`] unless `digits` is 4 to 10.
///
/// # Panics
///
/// If the operating system cannot provide random bytes.
///
/// # Example
///
/// ```
/// use pinseal::ExposeSecret;
/// let code = pinseal::otp::random_code(6)?;
/// assert_eq!(code.expose_secret().len(), 6);
/// # Ok::<(), pinseal::Error>(())
/// ```
pub fn random_code(digits: u8) -> Result<Secret<String>, Error> {
    if !(4..=10).contains(&digits) {
        return Err(Error::InvalidPolicy);
    }
    let n = 10u64.pow(u32::from(digits));
    let limit = u64::MAX - u64::MAX % n; // a multiple of n
    let mut word = [0u8; 8];
    let value = loop {
        crate::rand::fill(&mut word);
        let r = u64::from_le_bytes(word);
        if r < limit {
            break r % n;
        }
    };
    word.zeroize();
    let code = format_code(value, digits);
    let mut value = value;
    value.zeroize();
    Ok(code)
}

/// Formats `value` as exactly `digits` ASCII digits, leading zeros kept,
/// into a string allocated once at its final size.
pub(super) fn format_code(value: u64, digits: u8) -> Secret<String> {
    let mut s = Secret::new(String::with_capacity(usize::from(digits)));
    for i in (0..u32::from(digits)).rev() {
        let d = (value / 10u64.pow(i) % 10) as u8;
        s.expose_secret_mut().push(char::from(b'0' + d));
    }
    s
}
