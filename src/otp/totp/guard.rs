//! Replay protection for TOTP codes, shared by every instance on one
//! store: [`TotpGuard`] (blocking), and the steps
//! [`aio::TotpGuard`](crate::otp::aio::TotpGuard) shares with it.

use core::fmt;

use super::Totp;
use crate::otp::clock::{Clock, SystemClock, unix_millis};
use crate::otp::driver::{Blocking, Step, drive, run_blocking};
use crate::otp::record::{Mac, hmac};
use crate::otp::store::{AsyncStore, MemoryStore, Store};
use crate::{Error, Key};

/// How far apart the clocks of instances sharing a store may be before a
/// step could be accepted twice.
const CLOCK_ALLOWANCE_MS: u64 = 60_000;

/// The guard's key and clock, and its one operation over any
/// [`AsyncStore`].
pub(crate) struct Guard<C> {
    subject_key: Key,
    clock: C,
}

impl<C> Guard<C> {
    pub(crate) fn new(pepper: &Key, clock: C) -> Guard<C> {
        Guard {
            subject_key: pepper.derive("otp/v1/totp-subject"),
            clock,
        }
    }

    pub(crate) fn clock(&self) -> &C {
        &self.clock
    }

    fn key_of(&self, subject: &str) -> String {
        let tag: Mac = hmac(&self.subject_key, &[subject.as_bytes()]);
        format!("t:{}", crate::hex::encode(tag))
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
            let last = match current {
                None => None,
                Some(bytes) => Some(u64::from_be_bytes(
                    bytes.try_into().map_err(|_| Error::StoreCorrupt)?,
                )),
            };
            let Some(step) = totp.verify(input, now, last) else {
                return Ok(Step::Done(false));
            };
            // Once the window has moved past `step`, no code of it (or of
            // an earlier step) can be accepted again: the record may go.
            // One more step and a minute of margin cover instances whose
            // clocks disagree (the store counts the lifetime from this
            // instance's clock); the record is 8 bytes.
            let expires_ms = step
                .saturating_add(u64::from(totp.skew()))
                .saturating_add(2)
                .saturating_mul(totp.step().as_secs())
                .saturating_mul(1000)
                .saturating_add(CLOCK_ALLOWANCE_MS)
                .max(now_ms.saturating_add(1));
            Ok(Step::write(step.to_be_bytes().to_vec(), expires_ms, true))
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
/// # Errors
///
/// Store errors ([`Error::Store`], [`Error::StoreFull`],
/// [`Error::StoreCorrupt`], [`Error::Contention`]): nothing was decided and
/// the code must be treated as not verified.
///
/// # Security
///
/// The guard refuses replays; it does not count wrong codes. A guesser who
/// can call `verify` without limit finds a 6-digit code with skew 1 in about
/// 330 000 tries on average: limit attempts per subject in front of it,
/// with the service's own rate limiter.
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
