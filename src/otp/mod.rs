//! One-time passcodes: issue, send budget, verify once.
//!
//! # Use case
//!
//! Sign-in and step-up flows that send a short numeric code by SMS or chat
//! (or read it out on a call) and ask the user to type it back; and
//! authenticator-app codes ([`hotp`], [`totp`], [`Totp`] with enrollment,
//! [`TotpGuard`] for replay protection).
//!
//! # About
//!
//! [`Otp`] is the whole life of a sent code. It is sans-IO at its core: the
//! rules live here, time comes from a [`Clock`], and state lives in a
//! [`Store`] ([`MemoryStore`] by default, `RedisStore` with the `redis`
//! feature for services on several machines).
//!
//! - [`Otp::issue`] draws a code uniformly from all `10^digits` values
//!   (rejection sampling from the OS generator, leading zeros kept) and a
//!   128-bit [`ChallengeId`], and returns both; the caller sends the code.
//!   Issuing again for the same subject replaces the previous code at once,
//!   counts against the subject's send budget, and keeps the subject's
//!   attempt count.
//! - [`Otp::verify`] returns a [`Verdict`]: approved (the challenge is
//!   consumed), rejected with attempts left, expired, locked or unknown.
//!
//! ## Budgets and time
//!
//! - A code is valid while `now < issued_at + ttl`: at exactly
//!   `issued_at + ttl` it is expired.
//! - A subject's send window starts with its first send and lasts
//!   `send_window`; at most `max_sends` codes are issued in it, and the next
//!   issue is refused with [`Error::SendLimit`].
//! - Wrong attempts are counted per subject and carried over when a code is
//!   re-sent, so resending never buys more guesses. When they reach
//!   `max_attempts`, verification answers [`Verdict::Locked`] and issuing
//!   answers [`Error::Locked`] until the send window ends. Approval resets
//!   the count. A wrong code never extends a TTL.
//! - An expired or replaced challenge is reported as [`Verdict::Expired`] or
//!   [`Verdict::Unknown`] while the store still holds its subject's record,
//!   and as [`Verdict::Unknown`] after.
//!
//! ## What is stored
//!
//! From the pepper key three keys are derived with [`Key::derive`]:
//! `otp/v1/code`, `otp/v1/subject` and `otp/v1/index`. The store holds:
//!
//! - under `s:` + hex(subject tag), where the subject tag is
//!   HMAC-SHA256(subject key, subject), the subject's record: window start,
//!   send and attempt counters, and for the live challenge its id tag
//!   HMAC-SHA256(index key, challenge id), its expiry, and `mac` =
//!   HMAC-SHA256(code key, challenge id (16 bytes) || subject tag (32
//!   bytes) || code (ASCII digits));
//! - under `c:` + hex(id tag), the subject tag.
//!
//! Neither the code, the subject nor the challenge id is ever stored in
//! clear, and the code cannot be recovered from the store without the
//! pepper.
//!
//! # Errors
//!
//! An `Err` from [`Otp::issue`] or [`Otp::verify`] means the service could
//! not decide: the store is down or full, a budget is spent, or contention
//! did not settle. A verdict is never [`Verdict::Approved`] by default.
//!
//! # Security
//!
//! - Verification compares HMACs with [`subtle`] and computes exactly one
//!   HMAC whatever the outcome: unknown, expired and locked challenges and
//!   malformed input cost the same cryptographic work as a real check. (The
//!   store round trips differ: an unknown id needs one lookup, a known one
//!   two.)
//! - With the defaults (6 digits, 5 attempts per 10-minute window) an online
//!   guesser succeeds with probability at most 5 / 10^6 per window per
//!   subject.
//! - Use a pepper [`Key`] dedicated to OTP (for example
//!   `root.derive("otp/pepper")`). Rotating it invalidates codes in flight.
//!
//! # Example
//!
//! ```
//! use pinseal::Key;
//! use pinseal::otp::{Otp, Policy, Verdict};
//! use std::time::Duration;
//!
//! let otp = Otp::new(&Key::generate(), Policy::new(6, Duration::from_secs(60), 5)?);
//! let (challenge, code) = otp.issue("+15551234567")?;
//! // send `code.expose_secret()` by SMS; keep `challenge` in the session
//! assert_eq!(otp.verify(&challenge, "not it")?, Verdict::Rejected { attempts_left: 4 });
//! assert_eq!(otp.verify(&challenge, code.expose_secret())?, Verdict::Approved);
//! assert_eq!(otp.verify(&challenge, code.expose_secret())?, Verdict::Unknown); // spent
//! # Ok::<(), pinseal::Error>(())
//! ```

mod hotp;
mod otpauth;
#[cfg(feature = "redis")]
mod redis;
mod replay;
mod store;

use core::fmt;
use core::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroize;

pub use hotp::{Hash, MIN_SECRET_LEN, SECRET_LEN, Totp, hotp, totp};
#[cfg(feature = "redis-tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-tokio")))]
pub use redis::AsyncRedisStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
pub use replay::TotpGuard;
pub use store::{AsyncStore, MemoryStore, Store};

use crate::{Error, Key, Secret};

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
///
/// Durations are kept to the millisecond.
///
/// # Example
///
/// ```
/// use pinseal::otp::Policy;
/// use std::time::Duration;
///
/// let chat = Policy::new(6, Duration::from_secs(60), 5)?
///     .with_send_budget(3, Duration::from_secs(15 * 60))?;
/// assert_eq!(chat.ttl(), Duration::from_secs(60));
/// assert!(Policy::new(3, Duration::from_secs(60), 5).is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    digits: u8,
    ttl_ms: u64,
    max_attempts: u32,
    max_sends: u32,
    send_window_ms: u64,
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Policy {
    /// A policy with the default send budget (5 sends per 10 minutes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if a parameter is outside the table above.
    pub fn new(digits: u8, ttl: Duration, max_attempts: u32) -> Result<Policy, Error> {
        let ttl_ms = millis(ttl);
        if !(4..=10).contains(&digits)
            || !(1_000..=DAY_MS).contains(&ttl_ms)
            || !(1..=100).contains(&max_attempts)
        {
            return Err(Error::InvalidPolicy);
        }
        Ok(Policy {
            digits,
            ttl_ms,
            max_attempts,
            max_sends: 5,
            send_window_ms: 10 * 60 * 1000,
        })
    }

    /// Sets the send budget: at most `max_sends` codes per subject in a
    /// window of `window` that starts at the subject's first send.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] if a parameter is outside the table above.
    pub fn with_send_budget(mut self, max_sends: u32, window: Duration) -> Result<Policy, Error> {
        let window_ms = millis(window);
        if !(1..=1000).contains(&max_sends) || !(1_000..=7 * DAY_MS).contains(&window_ms) {
            return Err(Error::InvalidPolicy);
        }
        self.max_sends = max_sends;
        self.send_window_ms = window_ms;
        Ok(self)
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
}

impl Default for Policy {
    /// 6 digits, 10 minutes, 5 attempts, 5 sends per 10 minutes.
    fn default() -> Policy {
        Policy {
            digits: 6,
            ttl_ms: 10 * 60 * 1000,
            max_attempts: 5,
            max_sends: 5,
            send_window_ms: 10 * 60 * 1000,
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
        crate::fill_random(&mut word);
        let r = u64::from_le_bytes(word);
        if r < limit {
            break r % n;
        }
    };
    word.zeroize();
    let code = hotp::format_code(value, u32::from(digits));
    let mut value = value;
    value.zeroize();
    Ok(code)
}

/// The public handle of an issued code: 128 random bits, shown as 32
/// lowercase hex characters (URL-safe).
///
/// A challenge id is not a secret on its own (it is useless without the
/// code), so it may go into a session, a URL or a log line.
///
/// # Example
///
/// ```
/// use pinseal::otp::ChallengeId;
///
/// let id: ChallengeId = "00112233445566778899aabbccddeeff".parse()?;
/// assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
/// assert!("short".parse::<ChallengeId>().is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChallengeId([u8; 16]);

impl ChallengeId {
    fn random() -> ChallengeId {
        let mut id = [0u8; 16];
        crate::fill_random(&mut id);
        ChallengeId(id)
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::write_hex::<16, 32>(f, &self.0)
    }
}

impl fmt::Debug for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChallengeId({self})")
    }
}

impl FromStr for ChallengeId {
    type Err = Error;
    /// Parses 32 hex characters (either case).
    fn from_str(s: &str) -> Result<ChallengeId, Error> {
        let mut id = [0u8; 16];
        crate::decode_hex(s, &mut id).map_err(|()| Error::InvalidChallengeId)?;
        Ok(ChallengeId(id))
    }
}

/// The outcome of [`Otp::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum Verdict {
    /// The code is right. The challenge is consumed: it never verifies again.
    Approved,
    /// The code is wrong (or malformed); `attempts_left` more may be tried.
    Rejected {
        /// Attempts the subject has left in this window; 0 means the next
        /// verification will answer [`Verdict::Locked`].
        attempts_left: u32,
    },
    /// The challenge's lifetime has passed. Nothing was counted.
    Expired,
    /// The subject has no attempts left in this window. Nothing was counted.
    Locked,
    /// No such live challenge: never issued, already approved, replaced by a
    /// newer code, or forgotten by the store after expiry.
    Unknown,
}

/// A source of wall-clock time, injected so tests never sleep.
pub trait Clock: Send + Sync {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The system clock ([`SystemTime::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that moves only when told to. Clones share one time.
///
/// # Example
///
/// ```
/// use pinseal::otp::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Duration::from_secs(1_000));
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(60));
/// assert_eq!(clock.now(), Duration::from_secs(1_060));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing `start` since the Unix epoch (millisecond precision).
    pub fn new(start: Duration) -> ManualClock {
        ManualClock {
            millis: Arc::new(AtomicU64::new(millis(start))),
        }
    }
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.millis.fetch_add(millis(by), Ordering::SeqCst);
    }
    /// Sets the clock to `to` since the Unix epoch (it may go backwards).
    pub fn set(&self, to: Duration) {
        self.millis.store(millis(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// How often a compare-and-swap is retried before [`Error::Contention`].
const MAX_RETRIES: usize = 64;

const TAG_LEN: usize = 32;
type Tag = [u8; TAG_LEN];

/// The live challenge inside a subject's record.
#[derive(Clone, PartialEq, Eq)]
struct Live {
    /// HMAC(index key, challenge id): the id itself is not stored.
    id_tag: Tag,
    mac: Tag,
    expires_ms: u64,
}

/// A subject's state, as stored (see the module docs).
#[derive(Clone, PartialEq, Eq)]
struct Record {
    window_start_ms: u64,
    sends: u32,
    attempts: u32,
    live: Option<Live>,
}

const RECORD_VERSION: u8 = 1;
const RECORD_HEAD: usize = 1 + 8 + 4 + 4 + 1;
const RECORD_LIVE: usize = TAG_LEN + TAG_LEN + 8;

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEAD + RECORD_LIVE);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.window_start_ms.to_be_bytes());
        out.extend_from_slice(&self.sends.to_be_bytes());
        out.extend_from_slice(&self.attempts.to_be_bytes());
        match &self.live {
            None => out.push(0),
            Some(live) => {
                out.push(1);
                out.extend_from_slice(&live.id_tag);
                out.extend_from_slice(&live.mac);
                out.extend_from_slice(&live.expires_ms.to_be_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Record, Error> {
        fn take<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], Error> {
            let (head, rest) = b.split_first_chunk::<N>().ok_or(Error::StoreCorrupt)?;
            *b = rest;
            Ok(*head)
        }
        let mut b = bytes;
        let [version] = take::<1>(&mut b)?;
        if version != RECORD_VERSION {
            return Err(Error::StoreCorrupt);
        }
        let window_start_ms = u64::from_be_bytes(take(&mut b)?);
        let sends = u32::from_be_bytes(take(&mut b)?);
        let attempts = u32::from_be_bytes(take(&mut b)?);
        let live = match take::<1>(&mut b)? {
            [0] => None,
            [1] => Some(Live {
                id_tag: take(&mut b)?,
                mac: take(&mut b)?,
                expires_ms: u64::from_be_bytes(take(&mut b)?),
            }),
            _ => return Err(Error::StoreCorrupt),
        };
        if !b.is_empty() {
            return Err(Error::StoreCorrupt);
        }
        Ok(Record {
            window_start_ms,
            sends,
            attempts,
            live,
        })
    }
}

/// The three keys derived from the pepper.
struct Keys {
    code: Key,
    subject: Key,
    index: Key,
}

impl Keys {
    fn new(pepper: &Key) -> Keys {
        Keys {
            code: pepper.derive("otp/v1/code"),
            subject: pepper.derive("otp/v1/subject"),
            index: pepper.derive("otp/v1/index"),
        }
    }
}

fn hmac(key: &Key, parts: &[&[u8]]) -> Tag {
    crate::hmac_sha256(key, parts)
}

/// The OTP service: issues codes and verifies them against a store.
///
/// `Otp` is `Send + Sync`; share one instance (for example in an `Arc`)
/// across a service. See the [module documentation](self) for the rules,
/// what is stored and the security notes.
///
/// # Example
///
/// A manual clock and an explicit store, as in tests:
///
/// ```
/// use pinseal::Key;
/// use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy, Verdict};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
/// let policy = Policy::new(6, Duration::from_secs(60), 5)?;
/// let otp = Otp::with_parts(&Key::generate(), policy, MemoryStore::new(), clock.clone());
/// let (id, code) = otp.issue("user-42")?;
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(otp.verify(&id, code.expose_secret())?, Verdict::Expired);
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Otp<S = MemoryStore, C = SystemClock> {
    keys: Keys,
    policy: Policy,
    store: S,
    clock: C,
}

impl Otp {
    /// An OTP service with an in-memory store and the system clock.
    pub fn new(pepper: &Key, policy: Policy) -> Otp {
        Otp::with_parts(pepper, policy, MemoryStore::new(), SystemClock)
    }
}

/// Everything [`Otp::issue`] computes before it touches the store.
struct IssuePlan {
    now: u64,
    key: String,
    index_key: String,
    tag: Tag,
    id: ChallengeId,
    live: Live,
    code: Secret<String>,
}

/// Everything [`Otp::verify`] computes before it touches the store.
struct VerifyPlan<'a> {
    now: u64,
    id: &'a ChallengeId,
    id_tag: Tag,
    index_key: String,
    candidate: &'a [u8],
    valid: Choice,
}

/// What one verification round decided.
enum Step {
    /// Nothing to write: the verdict stands.
    Done(Verdict),
    /// Write `next` in place of the record read, then the verdict stands.
    Swap {
        next: Vec<u8>,
        expires: u64,
        verdict: Verdict,
    },
}

impl<S, C> Otp<S, C> {
    /// An OTP service over any store and clock: a [`Store`] for
    /// [`Otp::issue`]/[`Otp::verify`], an [`AsyncStore`] for
    /// [`Otp::issue_async`]/[`Otp::verify_async`].
    pub fn with_parts(pepper: &Key, policy: Policy, store: S, clock: C) -> Self {
        Otp {
            keys: Keys::new(pepper),
            policy,
            store,
            clock,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn subject_key(tag: &Tag) -> String {
        format!("s:{}", const_hex::encode(tag))
    }

    /// The challenge id's tag, and the index key made from it.
    fn id_tag(&self, id: &ChallengeId) -> (Tag, String) {
        let tag = hmac(&self.keys.index, &[&id.0]);
        (tag, format!("c:{}", const_hex::encode(tag)))
    }

    /// When a record can be forgotten: after its window and its challenge.
    fn record_expiry(&self, r: &Record) -> u64 {
        let window_end = r.window_start_ms.saturating_add(self.policy.send_window_ms);
        r.live
            .as_ref()
            .map_or(window_end, |l| l.expires_ms.max(window_end))
    }

    fn plan_issue(&self, subject: &str, now: u64) -> Result<IssuePlan, Error> {
        let tag = hmac(&self.keys.subject, &[subject.as_bytes()]);
        let id = ChallengeId::random();
        let code = random_code(self.policy.digits)?;
        let (id_tag, index_key) = self.id_tag(&id);
        let live = Live {
            id_tag,
            mac: hmac(
                &self.keys.code,
                &[&id.0, &tag, code.expose_secret().as_bytes()],
            ),
            expires_ms: now.saturating_add(self.policy.ttl_ms),
        };
        Ok(IssuePlan {
            now,
            key: Self::subject_key(&tag),
            index_key,
            tag,
            id,
            live,
            code,
        })
    }

    /// The subject record after this issue, and when it expires; or why the
    /// issue is refused.
    fn issue_step(
        &self,
        plan: &IssuePlan,
        current: Option<&[u8]>,
    ) -> Result<(Vec<u8>, u64), Error> {
        let now = plan.now;
        let mut next = match current {
            Some(bytes) => Record::decode(bytes)?,
            None => Record {
                window_start_ms: now,
                sends: 0,
                attempts: 0,
                live: None,
            },
        };
        if now
            >= next
                .window_start_ms
                .saturating_add(self.policy.send_window_ms)
        {
            next.window_start_ms = now;
            next.sends = 0;
            next.attempts = 0;
        }
        if next.attempts >= self.policy.max_attempts {
            return Err(Error::Locked);
        }
        if next.sends >= self.policy.max_sends {
            return Err(Error::SendLimit);
        }
        next.sends += 1;
        next.live = Some(plan.live.clone());
        let expires = self.record_expiry(&next);
        Ok((next.encode(), expires))
    }

    fn plan_verify<'a>(&self, id: &'a ChallengeId, input: &'a str, now: u64) -> VerifyPlan<'a> {
        let digits = usize::from(self.policy.digits);
        let well_formed = input.len() == digits && input.bytes().all(|b| b.is_ascii_digit());
        // Malformed input is replaced by a same-length placeholder so the
        // HMAC does the same work; it can never match (see `valid`).
        let candidate: &[u8] = if well_formed {
            input.as_bytes()
        } else {
            &b"0000000000"[..digits]
        };
        let (id_tag, index_key) = self.id_tag(id);
        VerifyPlan {
            now,
            id,
            id_tag,
            index_key,
            candidate,
            valid: Choice::from(u8::from(well_formed)),
        }
    }

    /// The subject tag an index entry holds.
    fn subject_of(index_entry: Option<Vec<u8>>) -> Result<Option<Tag>, Error> {
        index_entry
            .map(|bytes| bytes.try_into().map_err(|_| Error::StoreCorrupt))
            .transpose()
    }

    /// The verdict for an id with no index entry, after the same HMAC and
    /// comparison a real check costs.
    fn verify_unknown(&self, plan: &VerifyPlan<'_>) -> Verdict {
        let _ = self.compare(plan, &[0; TAG_LEN], &[0; TAG_LEN]);
        Verdict::Unknown
    }

    /// One verification round against the subject record as read.
    fn verify_step(
        &self,
        plan: &VerifyPlan<'_>,
        tag: &Tag,
        current: Option<&[u8]>,
    ) -> Result<Step, Error> {
        let record = current.map(Record::decode).transpose()?;
        let live = match &record {
            Some(r) => r.live.as_ref().filter(|l| l.id_tag == plan.id_tag),
            None => None,
        };
        // Exactly one HMAC and one comparison, whatever the state.
        let stored = live.map_or([0; TAG_LEN], |l| l.mac);
        let matched: bool = (self.compare(plan, tag, &stored) & plan.valid).into();
        let (Some(record), Some(live)) = (&record, live) else {
            return Ok(Step::Done(Verdict::Unknown));
        };
        if record.attempts >= self.policy.max_attempts {
            return Ok(Step::Done(Verdict::Locked));
        }
        if plan.now >= live.expires_ms {
            return Ok(Step::Done(Verdict::Expired));
        }
        let mut next = record.clone();
        let verdict = if matched {
            next.live = None;
            next.attempts = 0;
            Verdict::Approved
        } else {
            next.attempts += 1;
            Verdict::Rejected {
                attempts_left: self.policy.max_attempts.saturating_sub(next.attempts),
            }
        };
        Ok(Step::Swap {
            expires: self.record_expiry(&next),
            next: next.encode(),
            verdict,
        })
    }

    /// HMAC of the candidate code, compared in constant time with `stored`.
    fn compare(&self, plan: &VerifyPlan<'_>, tag: &Tag, stored: &Tag) -> Choice {
        hmac(&self.keys.code, &[&plan.id.0, tag, plan.candidate]).ct_eq(stored)
    }
}

impl<S: Store, C: Clock> Otp<S, C> {
    /// Issues a new code for `subject` (a phone number, user id, ...).
    ///
    /// Returns the challenge id to keep (in the session, a URL) and the code
    /// to send. A previous code for the subject stops working at once.
    ///
    /// # Errors
    ///
    /// [`Error::SendLimit`] when the subject's send budget for the window is
    /// spent; [`Error::Locked`] when its attempt budget is; store errors
    /// ([`Error::Store`], [`Error::StoreFull`], [`Error::StoreCorrupt`],
    /// [`Error::Contention`]). On any error no usable code has been issued.
    ///
    /// # Failure
    ///
    /// A refused or failed issue leaves the subject as it was: the code sent
    /// before still works and no send is spent. The challenge index is
    /// written first and the subject's record last, in one compare-and-swap;
    /// when anything fails before that swap, the index entry left behind
    /// names a challenge the record does not hold (it verifies
    /// [`Verdict::Unknown`]) and expires on its own. The one exception is a
    /// store that applies the final swap and then fails to say so (a
    /// timeout): then the new code replaced the old one although `issue`
    /// returned an error, and the caller should offer a resend.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub fn issue(&self, subject: &str) -> Result<(ChallengeId, Secret<String>), Error> {
        let plan = self.plan_issue(subject, millis(self.clock.now()))?;
        let mut index_written = false;
        for _ in 0..MAX_RETRIES {
            let current = self.store.get(&plan.key, plan.now)?;
            let (next, expires) = self.issue_step(&plan, current.as_deref())?;
            // The index goes first (see "Failure" above): until the record
            // swap below lands, the subject's live code and send count are
            // untouched.
            if !index_written {
                if !self.store.compare_and_swap(
                    &plan.index_key,
                    None,
                    Some(&plan.tag),
                    expires,
                    plan.now,
                )? {
                    return Err(Error::Contention);
                }
                index_written = true;
            }
            if self.store.compare_and_swap(
                &plan.key,
                current.as_deref(),
                Some(&next),
                expires,
                plan.now,
            )? {
                return Ok((plan.id, plan.code));
            }
        }
        Err(Error::Contention)
    }

    /// Checks `input` against the challenge `id`.
    ///
    /// Input that is not exactly `digits` ASCII digits is a wrong attempt.
    /// Counting the attempt and consuming the challenge happen in one
    /// compare-and-swap on the store, so among concurrent verifications of
    /// one challenge at most one is approved, and no more than
    /// `max_attempts` are ever evaluated.
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`],
    /// [`Error::Contention`]); then nothing was decided, and the caller
    /// must treat the code as not verified.
    pub fn verify(&self, id: &ChallengeId, input: &str) -> Result<Verdict, Error> {
        let plan = self.plan_verify(id, input, millis(self.clock.now()));
        let Some(tag) = Self::subject_of(self.store.get(&plan.index_key, plan.now)?)? else {
            return Ok(self.verify_unknown(&plan));
        };
        let key = Self::subject_key(&tag);
        for _ in 0..MAX_RETRIES {
            let current = self.store.get(&key, plan.now)?;
            match self.verify_step(&plan, &tag, current.as_deref())? {
                Step::Done(verdict) => return Ok(verdict),
                Step::Swap {
                    next,
                    expires,
                    verdict,
                } => {
                    if self.store.compare_and_swap(
                        &key,
                        current.as_deref(),
                        Some(&next),
                        expires,
                        plan.now,
                    )? {
                        return Ok(verdict);
                    }
                }
            }
        }
        Err(Error::Contention)
    }
}

impl<S: AsyncStore, C: Clock> Otp<S, C> {
    /// [`Otp::issue`] for an asynchronous store; same rules, same errors.
    ///
    /// # Errors
    ///
    /// As [`Otp::issue`].
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub async fn issue_async(&self, subject: &str) -> Result<(ChallengeId, Secret<String>), Error> {
        let plan = self.plan_issue(subject, millis(self.clock.now()))?;
        let mut index_written = false;
        for _ in 0..MAX_RETRIES {
            let current = self.store.get(&plan.key, plan.now).await?;
            let (next, expires) = self.issue_step(&plan, current.as_deref())?;
            // The index goes first, as in `issue`: a failed or dropped
            // issue leaves the live code and the send count as they were.
            if !index_written {
                if !self
                    .store
                    .compare_and_swap(&plan.index_key, None, Some(&plan.tag), expires, plan.now)
                    .await?
                {
                    return Err(Error::Contention);
                }
                index_written = true;
            }
            if self
                .store
                .compare_and_swap(
                    &plan.key,
                    current.as_deref(),
                    Some(&next),
                    expires,
                    plan.now,
                )
                .await?
            {
                return Ok((plan.id, plan.code));
            }
        }
        Err(Error::Contention)
    }

    /// [`Otp::verify`] for an asynchronous store; same rules, same errors.
    ///
    /// # Errors
    ///
    /// As [`Otp::verify`].
    pub async fn verify_async(&self, id: &ChallengeId, input: &str) -> Result<Verdict, Error> {
        let plan = self.plan_verify(id, input, millis(self.clock.now()));
        let Some(tag) = Self::subject_of(self.store.get(&plan.index_key, plan.now).await?)? else {
            return Ok(self.verify_unknown(&plan));
        };
        let key = Self::subject_key(&tag);
        for _ in 0..MAX_RETRIES {
            let current = self.store.get(&key, plan.now).await?;
            match self.verify_step(&plan, &tag, current.as_deref())? {
                Step::Done(verdict) => return Ok(verdict),
                Step::Swap {
                    next,
                    expires,
                    verdict,
                } => {
                    if self
                        .store
                        .compare_and_swap(&key, current.as_deref(), Some(&next), expires, plan.now)
                        .await?
                    {
                        return Ok(verdict);
                    }
                }
            }
        }
        Err(Error::Contention)
    }
}

/// The derived keys are wiped on drop; the store and clock hold no secret.
impl<S, C> zeroize::ZeroizeOnDrop for Otp<S, C> {}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Otp<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otp")
            .field("pepper", &crate::REDACTED)
            .field("policy", &self.policy)
            .field("store", &self.store)
            .field("clock", &self.clock)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let r = Record {
            window_start_ms: 1,
            sends: 2,
            attempts: 3,
            live: Some(Live {
                id_tag: [4; 32],
                mac: [5; 32],
                expires_ms: 6,
            }),
        };
        let bytes = r.encode();
        assert_eq!(bytes.len(), RECORD_HEAD + RECORD_LIVE);
        assert!(Record::decode(&bytes).unwrap() == r);
        for cut in 0..bytes.len() {
            assert_eq!(
                Record::decode(&bytes[..cut]).err(),
                Some(Error::StoreCorrupt)
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Record::decode(&extra).is_err());
        let mut bad_version = bytes;
        bad_version[0] = 9;
        assert!(Record::decode(&bad_version).is_err());
    }
}
