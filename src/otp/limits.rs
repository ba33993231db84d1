//! Rate limits with several buckets per key ([`RateLimit`]), and the fraud
//! guard ([`FraudGuard`]): per-prefix send velocity with a temporary block
//! of the prefix, an approval-rate floor, and country permissions.
//!
//! Every counter is stored under an HMAC of what it counts (a client, a
//! rate-limit key, a number's prefix), under the pepper's `otp/v1/client`
//! key; no number, prefix or client is stored in clear.

use core::fmt;
use std::time::Duration;

use super::clock::millis;
use super::driver::Step;
use super::record::Mac;
use crate::Error;

/// A budget: at most `max` uses in a window of `window_ms` that starts at
/// the first use after the previous window ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bucket {
    pub(super) max: u32,
    pub(super) window_ms: u64,
}

/// The store key of a counter, from its kind (a letter and a colon:
/// `"r:"`) and its tag.
pub(super) fn counter_key(kind: &str, tag: &Mac) -> String {
    crate::hex::prefixed(kind, tag)
}

/// A named rate limit with one or more buckets (velocities), as Twilio
/// Verify's *rate limits*: for example at most 3 codes a minute and 20 an
/// hour per IP address, and 100 a day per account.
///
/// A limit is applied with [`RateLimit::key`] to the value it counts (the
/// IP address, the account id) in
/// [`Otp::issue_limited`](super::Otp::issue_limited); each bucket keeps its
/// own counter for that value, stored under an HMAC of the limit's name,
/// the bucket's window and the value.
///
/// # Parameters
///
/// | parameter | accepted |
/// |---|---|
/// | name | 1 to 64 characters: ASCII letters, digits, `_`, `-`, `.` |
/// | buckets | 1 to 8, each with a different window |
/// | a bucket's `max` | 1 to 1 000 000 |
/// | a bucket's `window` | 1 second to 7 days |
///
/// # Errors
///
/// [`Error::InvalidPolicy`] for a parameter outside the table.
///
/// # Example
///
/// ```
/// use pinseal::{Error, Key};
/// use pinseal::otp::{Otp, Policy, RateLimit};
/// use std::time::Duration;
///
/// let per_ip = RateLimit::new("ip")?
///     .bucket(2, Duration::from_secs(60))?
///     .bucket(20, Duration::from_secs(3600))?;
/// let otp = Otp::new(&Key::generate(), Policy::default());
/// otp.issue_limited("+15550100001", &[per_ip.key("203.0.113.7")])?;
/// otp.issue_limited("+15550100002", &[per_ip.key("203.0.113.7")])?;
/// let refused = otp.issue_limited("+15550100003", &[per_ip.key("203.0.113.7")]);
/// assert!(matches!(refused, Err(Error::ClientLimit { .. })));
/// // Another address has its own buckets.
/// otp.issue_limited("+15550100003", &[per_ip.key("198.51.100.4")])?;
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    name: String,
    buckets: Vec<Bucket>,
}

/// The most buckets one [`RateLimit`] holds.
const MAX_BUCKETS: usize = 8;

impl RateLimit {
    /// A limit named `name`, with no bucket yet (add at least one with
    /// [`RateLimit::bucket`]; a limit without buckets refuses nothing).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] unless the name is 1 to 64 ASCII letters,
    /// digits, `_`, `-` or `.`.
    pub fn new(name: &str) -> Result<RateLimit, Error> {
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !ok {
            return Err(Error::InvalidPolicy);
        }
        Ok(RateLimit {
            name: name.to_owned(),
            buckets: Vec::new(),
        })
    }

    /// Adds a bucket: at most `max` codes per key value in a window of
    /// `window` that starts at the value's first issue.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if `max` or `window` is outside the table
    /// above, the limit already has a bucket with this window, or it has
    /// 8 buckets.
    pub fn bucket(mut self, max: u32, window: Duration) -> Result<RateLimit, Error> {
        let window_ms = super::policy::window(window)?;
        if !(1..=1_000_000).contains(&max)
            || self.buckets.len() >= MAX_BUCKETS
            || self.buckets.iter().any(|b| b.window_ms == window_ms)
        {
            return Err(Error::InvalidPolicy);
        }
        self.buckets.push(Bucket { max, window_ms });
        Ok(self)
    }

    /// The limit's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limit applied to `value` (an IP address, an account id), for
    /// [`Otp::issue_limited`](super::Otp::issue_limited).
    pub fn key<'a>(&'a self, value: &'a str) -> RateKey<'a> {
        RateKey { limit: self, value }
    }

    pub(super) fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }
}

/// A [`RateLimit`] applied to one value, from [`RateLimit::key`]. Its
/// `Debug` names the limit, never the value.
#[derive(Clone, Copy)]
pub struct RateKey<'a> {
    pub(super) limit: &'a RateLimit,
    pub(super) value: &'a str,
}

impl fmt::Debug for RateKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateKey")
            .field("limit", &self.limit.name)
            .finish_non_exhaustive()
    }
}

/// The fraud guard against SMS pumping (toll fraud) across a number range,
/// for services that send codes to phone numbers: the per-number and
/// per-client budgets do not stop a run over many numbers of one range from
/// many clients.
///
/// Set it with [`Otp::with_fraud_guard`](super::Otp::with_fraud_guard). It
/// looks at subjects in E.164 form (`+` and 7 to 15 digits, as
/// [`canonical_phone`](super::canonical_phone) writes them), refuses a
/// subject that starts with `+` but is not in that form
/// ([`Error::InvalidPhoneNumber`]: it could not be placed, and letting it
/// through would fail open), and leaves other subjects (user ids, e-mail
/// addresses) alone. Pass phone numbers canonical. For each issue to a
/// number it:
///
/// 1. refuses a number whose calling code is denied, or not allowed when
///    an allow list is set ([`Error::CountryBlocked`], Verify's 60605);
/// 2. counts the send against the number's *prefix*, the number without
///    its last digits (3 by default: a range of 1 000 numbers). When the
///    prefix's sends in the window reach the limit, or when enough of them
///    went unapproved (the approval floor, off by default), the whole
///    prefix is blocked for the block time (12 hours by default), and every
///    number in it is refused with [`Error::PrefixBlocked`] (Verify's
///    60410, *Fraud Guard*). Numbers in other prefixes still get codes.
///
/// Approvals are credited to the prefix the send was counted under (on
/// one Redis server the send and the credit are counted in the requests
/// that issue and check the code: no request of their own), and
/// [`Otp::prefix_stats`](super::Otp::prefix_stats) reports a prefix's
/// sends, approvals and block: the approval-rate signal to watch or alert
/// on.
///
/// # Defaults
///
/// | setting | default | accepted |
/// |---|---|---|
/// | digits dropped for the prefix | 3 | 1 to 6 |
/// | sends per prefix per window | 100 | 1 to 1 000 000 |
/// | prefix window | 1 hour | 1 second to 7 days |
/// | block | 12 hours | 1 minute to 7 days |
/// | approval floor | off | after 1 to 1 000 000 sends, 1 to 100 % |
/// | countries | all allowed | calling codes: `+` and 1 to 4 digits |
///
/// # Store failure: fail closed
///
/// The guard's counters live in the same store as the codes. A store that
/// cannot be reached fails the issue with [`Error::Store`]: no code is sent
/// unguarded. There is no fail-open setting, since a code that cannot be
/// stored could not be verified either.
///
/// # Example
///
/// ```
/// use pinseal::{Error, Key};
/// use pinseal::otp::{FraudGuard, Otp, Policy};
/// use std::time::Duration;
///
/// let guard = FraudGuard::new()
///     .with_prefix_limit(3, 2, Duration::from_secs(3600))?
///     .deny_countries(&["+882"])?;
/// let otp = Otp::new(&Key::generate(), Policy::default()).with_fraud_guard(guard);
/// otp.issue("+15550100101")?;
/// otp.issue("+15550100102")?;
/// // A third number of +1 555 0100xxx: the range is blocked.
/// assert!(matches!(otp.issue("+15550100103"), Err(Error::PrefixBlocked { .. })));
/// assert!(otp.issue("+15550177001").is_ok()); // another range
/// assert_eq!(otp.issue("+88212345678").unwrap_err(), Error::CountryBlocked);
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FraudGuard {
    drop_digits: u8,
    pub(super) prefix: Bucket,
    pub(super) block_ms: u64,
    pub(super) floor: Option<(u32, u8)>,
    allow: Vec<String>,
    deny: Vec<String>,
}

const HOUR_MS: u64 = 60 * 60 * 1_000;

impl Default for FraudGuard {
    fn default() -> FraudGuard {
        FraudGuard::new()
    }
}

impl FraudGuard {
    /// The guard with the defaults in the table above.
    pub fn new() -> FraudGuard {
        FraudGuard {
            drop_digits: 3,
            prefix: Bucket {
                max: 100,
                window_ms: HOUR_MS,
            },
            block_ms: 12 * HOUR_MS,
            floor: None,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }

    /// Sets the prefix velocity: a number's prefix is the number without
    /// its last `drop_digits` digits, and at most `max_sends` codes go to
    /// the numbers of one prefix per `window`; the send that would exceed
    /// it blocks the prefix.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if a parameter is outside the table above.
    pub fn with_prefix_limit(
        mut self,
        drop_digits: u8,
        max_sends: u32,
        window: Duration,
    ) -> Result<FraudGuard, Error> {
        let window_ms = super::policy::window(window)?;
        if !(1..=6).contains(&drop_digits) || !(1..=1_000_000).contains(&max_sends) {
            return Err(Error::InvalidPolicy);
        }
        self.drop_digits = drop_digits;
        self.prefix = Bucket {
            max: max_sends,
            window_ms,
        };
        Ok(self)
    }

    /// Sets how long a blocked prefix stays blocked.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] unless `block` is 1 minute to 7 days.
    pub fn with_block(mut self, block: Duration) -> Result<FraudGuard, Error> {
        let ms = millis(block);
        if !(60_000..=7 * 24 * HOUR_MS).contains(&ms) {
            return Err(Error::InvalidPolicy);
        }
        self.block_ms = ms;
        Ok(self)
    }

    /// Sets the approval floor: when a prefix had `after_sends` sends or
    /// more in its previous window and fewer than `percent` % of them were
    /// approved, its next send blocks it. Pumped numbers never type a code
    /// back; real users mostly do. The previous window is judged, not the
    /// current one, whose newest codes have not had time to come back; so
    /// make the prefix window longer than the code lifetime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if a parameter is outside the table above.
    pub fn with_approval_floor(
        mut self,
        after_sends: u32,
        percent: u8,
    ) -> Result<FraudGuard, Error> {
        if !(1..=1_000_000).contains(&after_sends) || !(1..=100).contains(&percent) {
            return Err(Error::InvalidPolicy);
        }
        self.floor = Some((after_sends, percent));
        Ok(self)
    }

    /// Sends codes only to numbers whose calling code is one of `codes`
    /// (`"+1"`, `"+44"`, `"+1268"`): Verify's geo permissions. A number
    /// is allowed when one of the codes starts it, so `"+1"` covers every
    /// NANP country, and a denied `"+1268"` still takes one of them out.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] unless each code is `+` and 1 to 4 digits.
    pub fn allow_countries(mut self, codes: &[&str]) -> Result<FraudGuard, Error> {
        self.allow = calling_codes(codes)?;
        Ok(self)
    }

    /// Never sends codes to numbers whose calling code is one of `codes`;
    /// a denied code wins over an allowed one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] unless each code is `+` and 1 to 4 digits.
    pub fn deny_countries(mut self, codes: &[&str]) -> Result<FraudGuard, Error> {
        self.deny = calling_codes(codes)?;
        Ok(self)
    }

    /// The digits of `subject` if it is an E.164 number; `None` for a
    /// subject that is not a phone number (it does not start with `+`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPhoneNumber`] for a subject that starts with `+` but
    /// is not in E.164 form: the guard cannot place it, and letting it
    /// through would fail open.
    pub(super) fn phone<'a>(&self, subject: &'a str) -> Result<Option<&'a str>, Error> {
        let Some(digits) = subject.strip_prefix('+') else {
            return Ok(None);
        };
        if (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Some(digits))
        } else {
            Err(Error::InvalidPhoneNumber)
        }
    }

    /// Whether codes may go to the number with these digits.
    pub(super) fn country_allowed(&self, digits: &str) -> bool {
        let matches = |codes: &[String]| codes.iter().any(|c| digits.starts_with(c.as_str()));
        !matches(&self.deny) && (self.allow.is_empty() || matches(&self.allow))
    }

    /// The number's prefix: its digits without the last `drop_digits`.
    pub(super) fn prefix<'a>(&self, digits: &'a str) -> &'a str {
        &digits[..digits.len() - usize::from(self.drop_digits)]
    }
}

/// Calling codes without their `+`, checked.
fn calling_codes(codes: &[&str]) -> Result<Vec<String>, Error> {
    codes
        .iter()
        .map(|c| {
            let digits = c.strip_prefix('+').ok_or(Error::InvalidPolicy)?;
            if (1..=4).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(digits.to_owned())
            } else {
                Err(Error::InvalidPolicy)
            }
        })
        .collect()
}

/// A prefix's counters in its current window, from
/// [`Otp::prefix_stats`](super::Otp::prefix_stats): the approval-rate
/// signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrefixStats {
    /// Codes sent to numbers of the prefix in this window.
    pub sends: u32,
    /// Of those (or of the previous window's, approved in this one), the
    /// codes approved.
    pub approvals: u32,
    /// How long the prefix stays blocked; `None` when it is not.
    pub blocked_for: Option<Duration>,
}

impl PrefixStats {
    /// Approvals per send in this window, 0.0 to 1.0 (1.0 with no sends).
    pub fn approval_rate(&self) -> f64 {
        if self.sends == 0 {
            1.0
        } else {
            (f64::from(self.approvals) / f64::from(self.sends)).min(1.0)
        }
    }
}

/// A prefix's record, as stored under `p:` + hex(prefix tag): this
/// window's counts, the previous window's (which the approval floor
/// judges: its codes have had time to be typed back), and any block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct PrefixRecord {
    window_start_ms: u64,
    sends: u32,
    approvals: u32,
    prev_sends: u32,
    prev_approvals: u32,
    blocked_until_ms: u64,
}

const PREFIX_VERSION: u8 = 1;

impl PrefixRecord {
    fn current(bytes: Option<&[u8]>, guard: &FraudGuard, now: u64) -> Result<PrefixRecord, Error> {
        let mut r = match bytes {
            None => PrefixRecord {
                window_start_ms: now,
                sends: 0,
                approvals: 0,
                prev_sends: 0,
                prev_approvals: 0,
                blocked_until_ms: 0,
            },
            Some(bytes) => {
                let [version, rest @ ..] = bytes else {
                    return Err(Error::StoreCorrupt);
                };
                let rest: &[u8; 32] = rest.try_into().map_err(|_| Error::StoreCorrupt)?;
                if *version != PREFIX_VERSION {
                    return Err(Error::StoreCorrupt);
                }
                let u64_at =
                    |i: usize| u64::from_be_bytes(rest[i..i + 8].try_into().unwrap_or([0; 8]));
                let u32_at =
                    |i: usize| u32::from_be_bytes(rest[i..i + 4].try_into().unwrap_or([0; 4]));
                PrefixRecord {
                    window_start_ms: u64_at(0),
                    sends: u32_at(8),
                    approvals: u32_at(12),
                    prev_sends: u32_at(16),
                    prev_approvals: u32_at(20),
                    blocked_until_ms: u64_at(24),
                }
            }
        };
        let end = r.window_start_ms.saturating_add(guard.prefix.window_ms);
        if now >= end {
            // The window that just ended becomes the previous one; after a
            // gap of a whole window, there is none.
            let adjacent = now < end.saturating_add(guard.prefix.window_ms);
            r.prev_sends = if adjacent { r.sends } else { 0 };
            r.prev_approvals = if adjacent { r.approvals } else { 0 };
            r.window_start_ms = now;
            r.sends = 0;
            r.approvals = 0;
        }
        Ok(r)
    }

    /// Whether the record holds nothing worth keeping.
    fn is_empty(&self, now: u64) -> bool {
        self.sends == 0
            && self.approvals == 0
            && self.prev_sends == 0
            && self.blocked_until_ms <= now
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        out.push(PREFIX_VERSION);
        out.extend_from_slice(&self.window_start_ms.to_be_bytes());
        out.extend_from_slice(&self.sends.to_be_bytes());
        out.extend_from_slice(&self.approvals.to_be_bytes());
        out.extend_from_slice(&self.prev_sends.to_be_bytes());
        out.extend_from_slice(&self.prev_approvals.to_be_bytes());
        out.extend_from_slice(&self.blocked_until_ms.to_be_bytes());
        out
    }

    /// Kept through the next window too, which judges this one.
    fn expiry(&self, guard: &FraudGuard) -> u64 {
        self.window_start_ms
            .saturating_add(guard.prefix.window_ms.saturating_mul(2))
            .max(self.blocked_until_ms)
    }

    fn write<T>(&self, guard: &FraudGuard, then: T) -> Step<T> {
        Step::write(self.encode(), self.expiry(guard), then)
    }
}

/// One more send to the prefix, or the block that refuses it. The outcome
/// is the window the send was counted in (for [`prefix_refund`]), or
/// [`Error::PrefixBlocked`], written first when this send starts the block.
pub(super) fn prefix_reserve(
    guard: &FraudGuard,
    current: Option<&[u8]>,
    now: u64,
) -> Result<Step<Result<u64, Error>>, Error> {
    let mut r = PrefixRecord::current(current, guard, now)?;
    let blocked = |until: u64| Error::PrefixBlocked {
        retry_after: Duration::from_millis(until.saturating_sub(now)),
    };
    if r.blocked_until_ms > now {
        return Ok(Step::Done(Err(blocked(r.blocked_until_ms))));
    }
    let too_fast = r.sends >= guard.prefix.max;
    // Judged on the previous window, whose codes have had time to be typed
    // back: this window's newest sends cannot be approved yet.
    let too_few_approved = guard.floor.is_some_and(|(after, percent)| {
        r.prev_sends >= after
            && u64::from(r.prev_approvals) * 100 < u64::from(r.prev_sends) * u64::from(percent)
    });
    if too_fast || too_few_approved {
        r.blocked_until_ms = now.saturating_add(guard.block_ms);
        return Ok(r.write(guard, Err(blocked(r.blocked_until_ms))));
    }
    r.sends += 1;
    Ok(r.write(guard, Ok(r.window_start_ms)))
}

/// The send counted in `window_start_ms` given back, when the issue it was
/// for failed.
pub(super) fn prefix_refund(
    guard: &FraudGuard,
    current: Option<&[u8]>,
    window_start_ms: u64,
    now: u64,
) -> Result<Step<()>, Error> {
    let mut r = PrefixRecord::current(current, guard, now)?;
    if current.is_none() || r.window_start_ms != window_start_ms || r.sends == 0 {
        return Ok(Step::Done(()));
    }
    r.sends -= 1;
    if r.is_empty(now) {
        // Nothing counted: a refused issue leaves no entry behind.
        return Ok(Step::delete(()));
    }
    Ok(r.write(guard, ()))
}

/// An approval credited to the prefix.
pub(super) fn prefix_credit(
    guard: &FraudGuard,
    current: Option<&[u8]>,
    now: u64,
) -> Result<Step<()>, Error> {
    if current.is_none() {
        return Ok(Step::Done(()));
    }
    let mut r = PrefixRecord::current(current, guard, now)?;
    r.approvals = r.approvals.saturating_add(1);
    Ok(r.write(guard, ()))
}

/// A prefix's counters as of `now`.
pub(super) fn prefix_stats(
    guard: &FraudGuard,
    current: Option<&[u8]>,
    now: u64,
) -> Result<PrefixStats, Error> {
    let r = PrefixRecord::current(current, guard, now)?;
    Ok(PrefixStats {
        sends: r.sends,
        approvals: r.approvals,
        blocked_for: (r.blocked_until_ms > now)
            .then(|| Duration::from_millis(r.blocked_until_ms - now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written<T>(step: Step<T>) -> (Vec<u8>, T) {
        match step {
            Step::Write { next, then, .. } => (next.unwrap(), then),
            Step::Done(_) => panic!("nothing written"),
        }
    }

    #[test]
    fn a_prefix_is_blocked_at_its_limit_and_until_the_block_ends() {
        let guard = FraudGuard::new()
            .with_prefix_limit(3, 2, Duration::from_secs(60))
            .unwrap()
            .with_block(Duration::from_secs(600))
            .unwrap();
        let (b, w) = written(prefix_reserve(&guard, None, 1_000).unwrap());
        assert_eq!(w, Ok(1_000));
        let (b, _) = written(prefix_reserve(&guard, Some(&b), 2_000).unwrap());
        let (b, refused) = written(prefix_reserve(&guard, Some(&b), 3_000).unwrap());
        assert_eq!(
            refused,
            Err(Error::PrefixBlocked {
                retry_after: Duration::from_secs(600)
            })
        );
        // Still blocked after the window, until the block ends.
        let Step::Done(Err(Error::PrefixBlocked { retry_after })) =
            prefix_reserve(&guard, Some(&b), 300_000).unwrap()
        else {
            panic!("not blocked")
        };
        assert_eq!(retry_after, Duration::from_millis(603_000 - 300_000));
        let (_, w) = written(prefix_reserve(&guard, Some(&b), 603_000).unwrap());
        assert_eq!(w, Ok(603_000));
        let mut corrupt = b;
        corrupt.push(0);
        assert_eq!(
            prefix_reserve(&guard, Some(&corrupt), 1).err(),
            Some(Error::StoreCorrupt)
        );
    }

    #[test]
    fn the_approval_floor_judges_the_previous_window() {
        let guard = FraudGuard::new()
            .with_prefix_limit(3, 100, Duration::from_secs(60))
            .unwrap()
            .with_approval_floor(4, 50)
            .unwrap();
        let mut b: Option<Vec<u8>> = None;
        let send = |b: &mut Option<Vec<u8>>, t: u64| {
            let (next, w) = written(prefix_reserve(&guard, b.as_deref(), t).unwrap());
            *b = Some(next);
            w
        };
        // Five sends, none approved yet: this window is not judged.
        for t in 0..5 {
            assert!(send(&mut b, t).is_ok());
        }
        // Two approvals come back: 40 %.
        for t in 5..7 {
            b = Some(written(prefix_credit(&guard, b.as_deref(), t).unwrap()).0);
        }
        // The next window judges it: below the floor, blocked.
        assert!(matches!(
            send(&mut b, 60_000),
            Err(Error::PrefixBlocked { .. })
        ));
        let stats = prefix_stats(&guard, b.as_deref(), 60_000).unwrap();
        assert_eq!((stats.sends, stats.approvals), (0, 0));
        assert!(stats.blocked_for.is_some());

        // The same with half approved: not below the floor.
        let mut b: Option<Vec<u8>> = None;
        for t in 0..4 {
            assert!(send(&mut b, t).is_ok());
        }
        for t in 4..6 {
            b = Some(written(prefix_credit(&guard, b.as_deref(), t).unwrap()).0);
        }
        assert!(send(&mut b, 60_000).is_ok());
        // After an idle window, nothing is judged.
        let mut b: Option<Vec<u8>> = None;
        for t in 0..5 {
            assert!(send(&mut b, t).is_ok());
        }
        assert!(send(&mut b, 120_000).is_ok());
    }

    #[test]
    fn a_refund_of_the_only_send_deletes_the_record() {
        let guard = FraudGuard::new();
        let (b, w) = written(prefix_reserve(&guard, None, 1_000).unwrap());
        let w = w.unwrap();
        assert!(matches!(
            prefix_refund(&guard, Some(&b), w, 1_000).unwrap(),
            Step::Write { next: None, .. }
        ));
        // Deleted; two sends then, and one given back.
        let (b, _) = written(prefix_reserve(&guard, None, 1_000).unwrap());
        let (b, _) = written(prefix_reserve(&guard, Some(&b), 1_000).unwrap());
        let (b, ()) = written(prefix_refund(&guard, Some(&b), w, 1_000).unwrap());
        assert_eq!(prefix_stats(&guard, Some(&b), 1_000).unwrap().sends, 1);
    }

    #[test]
    fn countries_and_prefixes() {
        let guard = FraudGuard::new()
            .allow_countries(&["+1", "+44"])
            .unwrap()
            .deny_countries(&["+1268"])
            .unwrap();
        let digits = guard.phone("+15550100199").unwrap().unwrap();
        assert!(guard.country_allowed(digits));
        assert_eq!(guard.prefix(digits), "15550100");
        let place = |n| guard.phone(n).unwrap().unwrap();
        assert!(!guard.country_allowed(place("+12684601234")));
        assert!(!guard.country_allowed(place("+33612345678")));
        // Seven digits (Niue, +683) is a number too: not allowed here.
        assert!(!guard.country_allowed(place("+6831234")));
        assert_eq!(guard.phone("user@example.com"), Ok(None));
        for unplaced in ["+1555", "+44 20 7946 0958", "+1234567890123456", "+"] {
            assert_eq!(
                guard.phone(unplaced),
                Err(Error::InvalidPhoneNumber),
                "{unplaced}"
            );
        }
        for bad in ["1", "+", "+12345", "+1a"] {
            assert_eq!(
                FraudGuard::new().allow_countries(&[bad]).err(),
                Some(Error::InvalidPolicy)
            );
        }
    }
}
