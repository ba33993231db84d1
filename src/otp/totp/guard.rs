//! Replay protection for TOTP codes, shared by every instance on one
//! store: [`TotpGuard`] (blocking), and the steps
//! [`aio::TotpGuard`](crate::otp::aio::TotpGuard) shares with it.

use core::fmt;

use super::Totp;
use crate::otp::clock::{Clock, SystemClock, unix_millis};
use crate::otp::driver::{Blocking, Step, drive, run_blocking};
use crate::otp::record::Mac;
use crate::otp::store::{AsyncStore, MemoryStore, Store};
use crate::{Error, Key};

/// How far apart the clocks of instances sharing a store may be before a
/// step could be accepted twice.
const CLOCK_ALLOWANCE_MS: u64 = 60_000;

/// The guard's key and clock, and its one operation over any
/// [`AsyncStore`].
pub(crate) struct Guard<C> {
    subject_key: crate::mac::KeyedMac,
    max_failures: u32,
    window_ms: u64,
    clock: C,
}

/// What the guard keeps per subject: the last accepted step, and the wrong
/// codes in the current attempt window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    last_step: Option<u64>,
    window_start_ms: u64,
    failures: u32,
}

const SEEN_VERSION: u8 = 2;

impl Seen {
    /// The stored value: 8 bytes (the last step, as written before attempt
    /// counting), or version 2 with the attempt window.
    fn decode(bytes: Option<&[u8]>, now_ms: u64) -> Result<Seen, Error> {
        let fresh = Seen {
            last_step: None,
            window_start_ms: now_ms,
            failures: 0,
        };
        let Some(bytes) = bytes else {
            return Ok(fresh);
        };
        if let Ok(step) = <[u8; 8]>::try_from(bytes) {
            return Ok(Seen {
                last_step: Some(u64::from_be_bytes(step)),
                ..fresh
            });
        }
        let [SEEN_VERSION, has_step, rest @ ..] = bytes else {
            return Err(Error::StoreCorrupt);
        };
        let rest: &[u8; 20] = rest.try_into().map_err(|_| Error::StoreCorrupt)?;
        let (step, rest) = rest.split_at(8);
        let (start, failures) = rest.split_at(8);
        let step = u64::from_be_bytes(step.try_into().map_err(|_| Error::StoreCorrupt)?);
        Ok(Seen {
            last_step: match has_step {
                0 => None,
                1 => Some(step),
                _ => return Err(Error::StoreCorrupt),
            },
            window_start_ms: u64::from_be_bytes(start.try_into().map_err(|_| Error::StoreCorrupt)?),
            failures: u32::from_be_bytes(failures.try_into().map_err(|_| Error::StoreCorrupt)?),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(22);
        out.push(SEEN_VERSION);
        out.push(u8::from(self.last_step.is_some()));
        out.extend_from_slice(&self.last_step.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.window_start_ms.to_be_bytes());
        out.extend_from_slice(&self.failures.to_be_bytes());
        out
    }
}

/// The default attempt budget: 5 wrong codes per subject per 5 minutes, as
/// the provider's TOTP factors allow 5 attempts.
pub(crate) const DEFAULT_MAX_FAILURES: u32 = 5;
pub(crate) const DEFAULT_WINDOW_MS: u64 = 5 * 60_000;

impl<C> Guard<C> {
    pub(crate) fn new(pepper: &Key, clock: C) -> Guard<C> {
        Guard {
            subject_key: crate::mac::KeyedMac::new(crate::ExposeSecret::expose_secret(
                &pepper.derive("otp/v1/totp-subject"),
            )),
            max_failures: DEFAULT_MAX_FAILURES,
            window_ms: DEFAULT_WINDOW_MS,
            clock,
        }
    }

    /// Sets the attempt budget; see [`TotpGuard::with_attempt_limit`].
    pub(crate) fn set_attempt_limit(
        &mut self,
        max_failures: u32,
        window: core::time::Duration,
    ) -> Result<(), Error> {
        let ms = crate::otp::clock::millis(window);
        if !(1..=100).contains(&max_failures) || !(1_000..=24 * 3_600_000).contains(&ms) {
            return Err(Error::InvalidPolicy);
        }
        self.max_failures = max_failures;
        self.window_ms = ms;
        Ok(())
    }

    pub(crate) fn clock(&self) -> &C {
        &self.clock
    }

    fn key_of(&self, subject: &str) -> String {
        let tag: Mac = self.subject_key.mac(&[subject.as_bytes()]);
        crate::hex::prefixed("t:", &tag)
    }
}

impl<C: Clock> Guard<C> {
    /// Accepts `input` if it matches a step of `totp`'s window later than
    /// the last one accepted for `subject`, and records that step.
    pub(crate) async fn verify<S: AsyncStore + ?Sized>(
        &self,
        store: &S,
        subject: &str,
        totp: &Totp,
        input: &str,
    ) -> Result<bool, Error> {
        let now = self.clock.now();
        let now_ms = unix_millis(now);
        drive(store, &self.key_of(subject), now_ms, None, |current| {
            let mut seen = Seen::decode(current, now_ms)?;
            let window_end = seen.window_start_ms.saturating_add(self.window_ms);
            if now_ms >= window_end {
                seen.window_start_ms = now_ms;
                seen.failures = 0;
            }
            let window_end = seen.window_start_ms.saturating_add(self.window_ms);
            if seen.failures >= self.max_failures {
                // No code is checked, not even the right one, until the
                // window ends.
                return Err(Error::Locked {
                    retry_after: core::time::Duration::from_millis(window_end - now_ms),
                });
            }
            let accepted = totp.verify(input, now, seen.last_step);
            match accepted {
                Some(step) => {
                    seen.last_step = Some(step);
                    seen.failures = 0;
                }
                None => seen.failures += 1,
            }
            // Kept while a step could be replayed, and while wrong codes
            // count.
            let step_expires_ms = seen.last_step.map_or(0, |step| {
                step.saturating_add(u64::from(totp.skew()))
                    .saturating_add(2)
                    .saturating_mul(totp.step().as_secs())
                    .saturating_mul(1000)
                    .saturating_add(CLOCK_ALLOWANCE_MS)
            });
            let failures_expire_ms = if seen.failures > 0 { window_end } else { 0 };
            let expires_ms = step_expires_ms
                .max(failures_expire_ms)
                .max(now_ms.saturating_add(1));
            Ok(Step::write(seen.encode(), expires_ms, accepted.is_some()))
        })
        .await
    }
}

/// Accepts each TOTP time step at most once per subject, across every
/// instance of a service that shares the guard's [`Store`].
///
/// # Use case
///
/// A second factor from an authenticator app. A code stays valid for its
/// whole time step (and the skew around it), so without a memory of what
/// was accepted, a code read over a shoulder or replayed from a proxy log
/// works again. The guard remembers, per subject, the last accepted step in
/// the store, and updates it with a compare-and-swap: on a [`MemoryStore`]
/// this covers one process, on a `RedisStore` every instance. Services on
/// an async runtime (the async Redis store, DynamoDB) use
/// [`aio::TotpGuard`](crate::otp::aio::TotpGuard), the same guard awaited.
///
/// # About
///
/// - Each subject has its own [`Totp`] (its own secret); the guard holds
///   none, only a key to name subjects in the store.
/// - Under `t:` + hex(HMAC-SHA256(guard key, subject)) the store keeps the
///   last accepted step (8 bytes, big-endian), expiring one step and one
///   minute after no code of that step or an earlier one can fall inside
///   the skew window again (the margin covers instances whose clocks differ
///   by up to a minute), so memory is bounded by the subjects active in the
///   last few steps.
/// - The guard key is derived from the pepper as `otp/v1/totp-subject`; an
///   [`Otp`](crate::otp::Otp) service may share the pepper and the store.
///
/// - In the same entry it counts wrong codes (a replay is one): after 5 in
///   a window of 5 minutes (the provider's TOTP factors allow 5 attempts;
///   [`TotpGuard::with_attempt_limit`] changes both) every code, even the
///   right one, is refused with [`Error::Locked`] until the window ends. A
///   right code resets the count. The window starts at the first
///   verification after the previous one ended.
///
/// # Errors
///
/// [`Error::Locked`] when the subject's attempt budget is spent, with the
/// wait until it lifts ([`Error::retry_after`]); store errors
/// ([`Error::Store`], [`Error::StoreFull`], [`Error::StoreCorrupt`],
/// [`Error::Contention`]): nothing was decided and the code must be treated
/// as not verified.
///
/// # Security
///
/// Without an attempt budget a guesser finds a 6-digit code with skew 1 in
/// about 330 000 tries on average, well within one 30-second step on a
/// local store. With the default budget a guesser has 5 tries per 5
/// minutes against about 3 valid codes in 10^6: about 1 chance in 230 per
/// day per subject, so alert on repeated [`Error::Locked`].
///
/// The lock is per subject, so whoever can submit codes for a subject (past
/// its first factor) can keep it locked, one window after another. Limit
/// attempts per client in front of the guard too (an IP address, a
/// session: `RateLimit` and `Otp::check_from` show the pattern), and alert
/// on repeated locks.
///
/// **Every guard on one store must be made from the same pepper.** The
/// subject's entry is named by an HMAC under a key derived from it: two
/// guards with different peppers keep two entries for one subject, so each
/// accepts the same code once and each grants its own attempt budget.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key};
/// use pinseal::otp::totp::{Totp, TotpGuard};
///
/// let guard = TotpGuard::new(&Key::generate());
/// let alice = Totp::random(); // enrolled earlier; its secret kept sealed
/// let code = alice.generate_now();
/// assert!(guard.verify("alice", &alice, code.expose_secret())?);
/// assert!(!guard.verify("alice", &alice, code.expose_secret())?); // replay
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct TotpGuard<S = MemoryStore, C = SystemClock> {
    guard: Guard<C>,
    store: S,
}

impl TotpGuard {
    /// A guard on its own in-memory store and the system clock (one
    /// process; use [`TotpGuard::with_store`] with a shared store for
    /// several).
    pub fn new(pepper: &Key) -> TotpGuard {
        TotpGuard::with_parts(pepper, MemoryStore::new(), SystemClock)
    }
}

impl<S: Store> TotpGuard<S, SystemClock> {
    /// A guard over `store` and the system clock.
    pub fn with_store(pepper: &Key, store: S) -> Self {
        TotpGuard::with_parts(pepper, store, SystemClock)
    }
}

impl<S, C> TotpGuard<S, C> {
    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: Store, C: Clock> TotpGuard<S, C> {
    /// A guard over a blocking [`Store`] and a [`Clock`].
    pub fn with_parts(pepper: &Key, store: S, clock: C) -> Self {
        TotpGuard {
            guard: Guard::new(pepper, clock),
            store,
        }
    }

    /// Sets the attempt budget: at most `max_failures` wrong codes per
    /// subject in a window of `window` that starts at the first
    /// verification after the previous window ended (default 5 per 5
    /// minutes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] unless `max_failures` is 1 to 100 and
    /// `window` 1 second to 24 hours.
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{Error, ExposeSecret, Key};
    /// use pinseal::otp::totp::{Totp, TotpGuard};
    /// use std::time::Duration;
    ///
    /// let guard = TotpGuard::new(&Key::generate())
    ///     .with_attempt_limit(3, Duration::from_secs(600))?;
    /// let alice = Totp::random();
    /// let right = alice.generate_now();
    /// let wrong = if right.expose_secret() == "000000" { "111111" } else { "000000" };
    /// for _ in 0..3 {
    ///     assert!(!guard.verify("alice", &alice, wrong)?);
    /// }
    /// // Locked: even the right code is refused until the window ends.
    /// let locked = guard.verify("alice", &alice, right.expose_secret()).unwrap_err();
    /// assert!(matches!(locked, Error::Locked { .. }));
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn with_attempt_limit(
        mut self,
        max_failures: u32,
        window: core::time::Duration,
    ) -> Result<Self, Error> {
        self.guard.set_attempt_limit(max_failures, window)?;
        Ok(self)
    }

    /// Accepts `input` for `subject`, checked with the subject's `totp`, if
    /// it matches a step in the skew window later than any step accepted
    /// before for this subject by any guard on the same store.
    ///
    /// Among concurrent submissions of one code, at most one is accepted.
    ///
    /// # Errors
    ///
    /// See the type documentation.
    #[must_use = "a code is accepted only if this returns Ok(true)"]
    pub fn verify(&self, subject: &str, totp: &Totp, input: &str) -> Result<bool, Error> {
        run_blocking(
            self.guard
                .verify(&Blocking(&self.store), subject, totp, input),
        )
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for TotpGuard<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpGuard")
            .field("key", &crate::secret::REDACTED)
            .field("store", &self.store)
            .field("clock", self.guard.clock())
            .finish()
    }
}

/// The derived key is wiped on drop, and a [`MemoryStore`] holds no secret
/// (MACs under that key, counters and times). A store that holds
/// credentials (a Redis password, AWS credentials) does not promise to wipe
/// them, so a guard over it is not `ZeroizeOnDrop`.
impl<C> zeroize::ZeroizeOnDrop for TotpGuard<MemoryStore, C> {}
