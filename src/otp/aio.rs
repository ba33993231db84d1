//! The OTP service, the TOTP guard and the accept-once set for async
//! stores: the same operations, rules and errors as
//! [`otp::Otp`](super::Otp), [`totp::TotpGuard`](super::totp::TotpGuard)
//! and [`otp::AcceptOnce`](super::AcceptOnce), awaited.
//!
//! # Use case
//!
//! Services on an async runtime (axum, a Lambda handler) whose store is
//! async: [`AsyncRedisStore`](super::store::AsyncRedisStore) (feature
//! `redis-tokio`), `DynamoStore` (in [`store`](super::store), feature
//! `dynamodb`), [`DynStore`] (any async store chosen at run time), or the
//! [`MemoryStore`], which is both blocking and async.
//!
//! Each operation here is the one its blocking twin documents in full
//! (errors, failure handling, security notes); the blocking and the async
//! types run the same code. A store of the wrong kind is refused when the
//! service is made, naming the type to use instead:
//!
//! ```compile_fail,E0277
//! use pinseal::Key;
//! use pinseal::otp::{MemoryStore, Policy, SystemClock};
//!
//! struct OnlyBlocking(MemoryStore); // implements `Store`, not `AsyncStore`
//! impl pinseal::otp::store::Store for OnlyBlocking {
//!     fn get(&self, k: &str, now: u64) -> Result<Option<Vec<u8>>, pinseal::Error> { self.0.get(k, now) }
//!     fn compare_and_swap(&self, k: &str, e: Option<&[u8]>, n: Option<&[u8]>, x: u64, now: u64) -> Result<bool, pinseal::Error> {
//!         pinseal::otp::store::Store::compare_and_swap(&self.0, k, e, n, x, now)
//!     }
//! }
//! let otp = pinseal::otp::aio::Otp::with_parts(&Key::generate(), Policy::default(), OnlyBlocking(MemoryStore::new()), SystemClock);
//! ```
//!
//! # Cancellation
//!
//! Dropping an `issue` future before its last await leaves the subject as
//! a failed issue does: the previous code still works and no send is
//! spent. The subject's record is written by that last await; dropped
//! while it is in flight (a request timeout, a client that disconnects),
//! the write may still land, as with a store that applies a swap and fails
//! to say so (see [`otp::Otp::issue`](super::Otp::issue)). An `issue_from`
//! dropped before it completes may also have spent one of the client's
//! sends.
//!
//! # Example
//!
//! ```
//! use pinseal::{ExposeSecret, Key};
//! use pinseal::otp::{Policy, Verdict, aio};
//! use pinseal::otp::store::{DynStore, MemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // In production: DynStore::new(AsyncRedisStore::... ) or a DynamoStore.
//! let otp = aio::Otp::with_store(&Key::generate(), Policy::default(), DynStore::new(MemoryStore::new()));
//! let (id, code) = otp.issue("+15551234567").await?;
//! assert_eq!(otp.verify(&id, code.expose_secret()).await?, Verdict::Approved);
//! # Ok::<(), pinseal::Error>(())
//! # })?;
//! # Ok::<(), pinseal::Error>(())
//! ```

use core::fmt;

use super::challenge::{Budget, Challenge, ChallengeId, ClientBudget, Verdict};
use super::clock::{Clock, SystemClock};
use super::limits::{FraudGuard, PrefixStats, RateKey};
use super::once::Once;
use super::policy::Policy;
use super::service::{Service, Target};
#[cfg(doc)]
use super::store::DynStore;
use super::store::{AsyncStore, MemoryStore};
use super::totp::Totp;
use super::totp::guard::Guard;
use crate::envelope::Seal;
use crate::{Error, Key, Secret};
use std::time::Duration;

/// The OTP service on an async store: [`otp::Otp`](super::Otp)'s
/// operations, awaited. See the [module docs](self).
pub struct Otp<S = MemoryStore, C = SystemClock> {
    service: Service<C>,
    store: S,
}

impl Otp {
    /// An OTP service with an in-memory store and the system clock.
    pub fn new(pepper: &Key, policy: Policy) -> Otp {
        Otp::with_parts(pepper, policy, MemoryStore::new(), SystemClock)
    }
}

impl<S: AsyncStore> Otp<S, SystemClock> {
    /// An OTP service over `store` and the system clock.
    pub fn with_store(pepper: &Key, policy: Policy, store: S) -> Self {
        Otp::with_parts(pepper, policy, store, SystemClock)
    }
}

impl<S, C> Otp<S, C> {
    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        self.service.policy()
    }

    /// The service with a fraud guard; as
    /// [`otp::Otp::with_fraud_guard`](super::Otp::with_fraud_guard).
    pub fn with_fraud_guard(mut self, guard: FraudGuard) -> Self {
        self.service.set_guard(guard);
        self
    }

    /// The fraud guard in force, if any.
    pub fn fraud_guard(&self) -> Option<&FraudGuard> {
        self.service.guard()
    }

    /// The keyed pseudonym events name a challenge by; as
    /// [`otp::Otp::challenge_pseudonym`](super::Otp::challenge_pseudonym).
    pub fn challenge_pseudonym(&self, id: &ChallengeId) -> crate::pseudonym::Pseudonym {
        self.service.challenge_pseudonym(id)
    }

    /// The service with `sink` receiving its lifecycle events; as
    /// [`otp::Otp::with_events`](super::Otp::with_events).
    pub fn with_events(mut self, sink: impl super::events::EventSink + 'static) -> Self {
        self.service.set_events(std::sync::Arc::new(sink));
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: AsyncStore, C: Clock> Otp<S, C> {
    /// An OTP service over an [`AsyncStore`] and a [`Clock`].
    pub fn with_parts(pepper: &Key, policy: Policy, store: S, clock: C) -> Self {
        Otp {
            service: Service::new(pepper, policy, clock),
            store,
        }
    }

    /// Issues a new code for `subject`; as [`otp::Otp::issue`](super::Otp::issue).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::issue`](super::Otp::issue).
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub async fn issue(&self, subject: &str) -> Result<(ChallengeId, Secret<String>), Error> {
        self.service.issue(&self.store, subject, None, &[]).await
    }

    /// Issues a code on behalf of `client`; as
    /// [`otp::Otp::issue_from`](super::Otp::issue_from).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::issue_from`](super::Otp::issue_from).
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub async fn issue_from(
        &self,
        subject: &str,
        client: &str,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        self.service
            .issue(&self.store, subject, Some(client), &[])
            .await
    }

    /// Issues a code counted against rate-limit keys; as
    /// [`otp::Otp::issue_limited`](super::Otp::issue_limited).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::issue_limited`](super::Otp::issue_limited).
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub async fn issue_limited(
        &self,
        subject: &str,
        limits: &[RateKey<'_>],
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        self.service.issue(&self.store, subject, None, limits).await
    }

    /// Checks `input` against the challenge `id`; as
    /// [`otp::Otp::verify`](super::Otp::verify).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::verify`](super::Otp::verify).
    pub async fn verify(&self, id: &ChallengeId, input: &str) -> Result<Verdict, Error> {
        self.service
            .verify(&self.store, Target::Id(id), input, None)
            .await
    }

    /// Checks `input` against the challenge `id` on behalf of `client`; as
    /// [`otp::Otp::verify_from`](super::Otp::verify_from).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::verify_from`](super::Otp::verify_from).
    pub async fn verify_from(
        &self,
        id: &ChallengeId,
        client: &str,
        input: &str,
    ) -> Result<Verdict, Error> {
        self.service
            .verify(&self.store, Target::Id(id), input, Some(client))
            .await
    }

    /// Checks `input` against the subject's newest challenge; as
    /// [`otp::Otp::check`](super::Otp::check).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::check`](super::Otp::check).
    pub async fn check(&self, subject: &str, input: &str) -> Result<Verdict, Error> {
        self.service
            .verify(&self.store, Target::Subject(subject), input, None)
            .await
    }

    /// Checks `input` against the subject's newest challenge on behalf of
    /// `client`; as [`otp::Otp::check_from`](super::Otp::check_from).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::verify_from`](super::Otp::verify_from).
    pub async fn check_from(
        &self,
        subject: &str,
        client: &str,
        input: &str,
    ) -> Result<Verdict, Error> {
        self.service
            .verify(&self.store, Target::Subject(subject), input, Some(client))
            .await
    }

    /// Where the challenge `id` stands, without counting an attempt; as
    /// [`otp::Otp::fetch`](super::Otp::fetch).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::fetch`](super::Otp::fetch).
    pub async fn fetch(&self, id: &ChallengeId) -> Result<Option<Challenge>, Error> {
        self.service.fetch(&self.store, id).await
    }

    /// Where the subject's newest challenge stands; as
    /// [`otp::Otp::fetch_subject`](super::Otp::fetch_subject).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::fetch`](super::Otp::fetch).
    pub async fn fetch_subject(&self, subject: &str) -> Result<Option<Challenge>, Error> {
        self.service.fetch_subject(&self.store, subject).await
    }

    /// Approves the challenge `id` without a code; as
    /// [`otp::Otp::approve`](super::Otp::approve).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::approve`](super::Otp::approve).
    pub async fn approve(&self, id: &ChallengeId) -> Result<bool, Error> {
        self.service.settle(&self.store, Target::Id(id), true).await
    }

    /// The fraud guard's counters for a number's prefix; as
    /// [`otp::Otp::prefix_stats`](super::Otp::prefix_stats).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::prefix_stats`](super::Otp::prefix_stats).
    pub async fn prefix_stats(&self, number: &str) -> Result<Option<PrefixStats>, Error> {
        self.service.prefix_stats(&self.store, number).await
    }

    /// Cancels the challenge `id` if it is still pending; as
    /// [`otp::Otp::cancel`](super::Otp::cancel).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::cancel`](super::Otp::cancel).
    pub async fn cancel(&self, id: &ChallengeId) -> Result<bool, Error> {
        self.service
            .settle(&self.store, Target::Id(id), false)
            .await
    }

    /// Cancels the subject's pending challenge; as
    /// [`otp::Otp::cancel_subject`](super::Otp::cancel_subject).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::cancel`](super::Otp::cancel).
    pub async fn cancel_subject(&self, subject: &str) -> Result<bool, Error> {
        self.service
            .settle(&self.store, Target::Subject(subject), false)
            .await
    }

    /// The subject's budgets now; as [`otp::Otp::budget`](super::Otp::budget).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::budget`](super::Otp::budget).
    pub async fn budget(&self, subject: &str) -> Result<Budget, Error> {
        self.service.budget(&self.store, subject).await
    }

    /// The client's send budget now; as
    /// [`otp::Otp::client_budget`](super::Otp::client_budget).
    ///
    /// # Errors
    ///
    /// As [`otp::Otp::client_budget`](super::Otp::client_budget).
    pub async fn client_budget(&self, client: &str) -> Result<ClientBudget, Error> {
        self.service.client_budget(&self.store, client).await
    }
}

/// The derived keys are wiped on drop, and a [`MemoryStore`] holds no secret
/// (MACs under those keys, counters and times). A store that holds
/// credentials (a Redis password, AWS credentials) does not promise to wipe
/// them, so a service over it is not `ZeroizeOnDrop`.
impl<C> zeroize::ZeroizeOnDrop for Otp<MemoryStore, C> {}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Otp<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("aio::Otp")
            .field("pepper", &crate::secret::REDACTED)
            .field("policy", self.service.policy())
            .field("store", &self.store)
            .field("clock", self.service.clock())
            .finish()
    }
}

/// [`totp::TotpGuard`](super::totp::TotpGuard) on an async store: each TOTP
/// step accepted at most once per subject, across every instance sharing
/// the store.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key};
/// use pinseal::otp::aio::TotpGuard;
/// use pinseal::otp::store::{DynStore, MemoryStore};
/// use pinseal::otp::totp::Totp;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let guard = TotpGuard::with_store(&Key::generate(), DynStore::new(MemoryStore::new()));
/// let alice = Totp::random();
/// let code = alice.generate_now();
/// assert!(guard.verify("alice", &alice, code.expose_secret()).await?);
/// assert!(!guard.verify("alice", &alice, code.expose_secret()).await?); // replay
/// # Ok::<(), pinseal::Error>(())
/// # })?;
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

impl<S: AsyncStore> TotpGuard<S, SystemClock> {
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

impl<S: AsyncStore, C: Clock> TotpGuard<S, C> {
    /// A guard over an [`AsyncStore`] and a [`Clock`].
    pub fn with_parts(pepper: &Key, store: S, clock: C) -> Self {
        TotpGuard {
            guard: Guard::new(pepper, clock),
            store,
        }
    }

    /// Sets the attempt budget; as
    /// [`totp::TotpGuard::with_attempt_limit`](super::totp::TotpGuard::with_attempt_limit).
    ///
    /// # Errors
    ///
    /// As [`totp::TotpGuard::with_attempt_limit`](super::totp::TotpGuard::with_attempt_limit).
    pub fn with_attempt_limit(
        mut self,
        max_failures: u32,
        window: Duration,
    ) -> Result<Self, Error> {
        self.guard.set_attempt_limit(max_failures, window)?;
        Ok(self)
    }

    /// Accepts `input` for `subject`; as
    /// [`totp::TotpGuard::verify`](super::totp::TotpGuard::verify).
    ///
    /// # Errors
    ///
    /// As [`totp::TotpGuard`](super::totp::TotpGuard#errors).
    #[must_use = "a code is accepted only if this returns Ok(true)"]
    pub async fn verify(&self, subject: &str, totp: &Totp, input: &str) -> Result<bool, Error> {
        self.guard.verify(&self.store, subject, totp, input).await
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for TotpGuard<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("aio::TotpGuard")
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

/// The accept-once set on an async store: [`otp::AcceptOnce`](super::AcceptOnce)'s
/// operations, awaited.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use pinseal::Key;
/// use pinseal::otp::aio::AcceptOnce;
/// use pinseal::otp::store::{DynStore, MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let once = AcceptOnce::with_store(&Key::generate(), DynStore::new(MemoryStore::new()));
/// let ttl = Duration::from_secs(3600);
/// assert!(once.admit(&["CA1234", "Digits"], ttl).await?);
/// assert!(!once.admit(&["CA1234", "Digits"], ttl).await?); // a replay
/// # Ok::<(), pinseal::Error>(())
/// # })?;
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct AcceptOnce<S = MemoryStore, C = SystemClock> {
    once: Once<C>,
    store: S,
}

impl AcceptOnce {
    /// An accept-once set on its own in-memory store and the system clock.
    pub fn new(pepper: &Key) -> AcceptOnce {
        AcceptOnce::with_parts(pepper, MemoryStore::new(), SystemClock)
    }
}

impl<S: AsyncStore> AcceptOnce<S, SystemClock> {
    /// An accept-once set over `store` and the system clock.
    pub fn with_store(pepper: &Key, store: S) -> Self {
        AcceptOnce::with_parts(pepper, store, SystemClock)
    }
}

impl<S, C> AcceptOnce<S, C> {
    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: AsyncStore, C: Clock> AcceptOnce<S, C> {
    /// An accept-once set over an [`AsyncStore`] and a [`Clock`].
    pub fn with_parts(pepper: &Key, store: S, clock: C) -> Self {
        AcceptOnce {
            once: Once::new(pepper, clock),
            store,
        }
    }

    /// As [`otp::AcceptOnce::admit`](super::AcceptOnce::admit).
    ///
    /// # Errors
    ///
    /// As [`otp::AcceptOnce::admit`](super::AcceptOnce::admit).
    #[must_use = "a key is admitted only if this returns Ok(true)"]
    pub async fn admit<P: AsRef<[u8]>>(&self, parts: &[P], ttl: Duration) -> Result<bool, Error> {
        self.once.admit(&self.store, parts, ttl).await
    }

    /// As [`otp::AcceptOnce::open_once`](super::AcceptOnce::open_once).
    ///
    /// # Errors
    ///
    /// As [`otp::AcceptOnce::open_once`](super::AcceptOnce::open_once).
    pub async fn open_once<E: Seal + ?Sized>(
        &self,
        opener: &E,
        envelope: &[u8],
        aad: &[u8],
        ttl: Duration,
    ) -> Result<Secret<Vec<u8>>, Error> {
        self.once
            .open_once(&self.store, opener, envelope, aad, ttl)
            .await
    }

    /// As [`otp::AcceptOnce::open_expiring_once`](super::AcceptOnce::open_expiring_once).
    ///
    /// # Errors
    ///
    /// As [`otp::AcceptOnce::open_expiring_once`](super::AcceptOnce::open_expiring_once).
    pub async fn open_expiring_once<E: Seal + ?Sized>(
        &self,
        opener: &E,
        envelope: &[u8],
        aad: &[u8],
    ) -> Result<Secret<Vec<u8>>, Error> {
        self.once
            .open_expiring_once(&self.store, opener, envelope, aad)
            .await
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for AcceptOnce<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("aio::AcceptOnce")
            .field("key", &crate::secret::REDACTED)
            .field("store", &self.store)
            .field("clock", self.once.clock())
            .finish()
    }
}

/// The derived key is wiped on drop, and a [`MemoryStore`] holds no secret.
impl<C> zeroize::ZeroizeOnDrop for AcceptOnce<MemoryStore, C> {}
