//! Where challenge state lives: the store traits and the stores.
//!
//! # What is in this module
//!
//! | item | kind | for |
//! |---|---|---|
//! | [`Store`] | trait | blocking stores, used by [`otp::Otp`](super::Otp) and [`totp::TotpGuard`](super::totp::TotpGuard) |
//! | [`AsyncStore`] | trait | async stores, used by [`aio::Otp`](super::aio::Otp) and [`aio::TotpGuard`](super::aio::TotpGuard) |
//! | [`MemoryStore`] | both | one process; the default |
//! | `RedisStore` | blocking | Redis or a Redis Cluster (feature `redis`) |
//! | `AsyncRedisStore` | async | the same on tokio (feature `redis-tokio`) |
//! | `DynamoStore` | async | Amazon DynamoDB (feature `dynamodb`) |
//! | [`DynStore`] | async | any async store chosen at run time |
//!
//! # The store contract
//!
//! A store keeps opaque byte values under string keys, each with an
//! absolute expiry in milliseconds since the Unix epoch. It has two
//! operations: read a key, and a compare-and-swap that replaces (or
//! deletes) a key's value only if it still holds what the caller read. The
//! swap must be atomic: that alone makes verification accept a code at
//! most once, and counters exact, when many threads or machines verify the
//! same challenge at once. All OTP rules live outside the store; values
//! hold HMACs, counters and timestamps only, and keys are HMACs too.

use std::pin::Pin;
use std::sync::Arc;

use crate::Error;

#[cfg(feature = "dynamodb")]
mod dynamo;
mod memory;
mod one_step;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use dynamo::{DynamoBuilder, DynamoStore, TableSetup};
pub use memory::MemoryStore;
pub(crate) use one_step::{Decision, Lookup, OneStepCounter, OneStepPrefix};
pub use one_step::{OneStepCheck, OneStepIssue, OneStepOutcome};
#[cfg(feature = "redis-tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-tokio")))]
pub use redis::AsyncRedisStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisBuilder, RedisStore};

/// Storage for OTP challenge state.
///
/// # About
///
/// A store keeps opaque byte values under string keys, each with an absolute
/// expiry time in milliseconds since the Unix epoch. All OTP logic lives in
/// [`Otp`](super::Otp); a store only has to make
/// [`Store::compare_and_swap`] atomic, which is what makes verification
/// accept a code at most once, and attempt and send counters exact, even
/// when many threads or machines verify the same challenge at once.
///
/// Values never contain a code or a subject in clear: they hold HMAC-SHA256
/// outputs, counters and timestamps. Keys are derived from HMACs too.
///
/// An entry whose expiry is at or before `now_ms` must behave as absent. A
/// store may also drop expired entries on its own (Redis does).
///
/// # Errors
///
/// Implementations return [`Error::Store`] when the backing service cannot
/// be reached, and [`Error::StoreFull`] when they refuse to grow. They must
/// never report success for a write they did not make.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a blocking store",
    label = "not a blocking `Store`",
    note = "an async store (AsyncRedisStore, DynamoStore, DynStore) goes with `pinseal::otp::aio::Otp` and `pinseal::otp::aio::TotpGuard`"
)]
pub trait Store: Send + Sync {
    /// The value under `key`, or `None` if there is none or it expired.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot answer.
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error>;

    /// Atomically replaces the value under `key` with `new` (expiring at
    /// `expires_ms`), or deletes it when `new` is `None`, but only if the
    /// current value equals `expected` (`None`: absent or expired). Returns
    /// whether the swap happened.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot answer; [`Error::StoreFull`] if
    /// it holds as many entries as allowed and `key` is not one of them.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error>;

    /// Decides `check` in as few requests as this store can: Redis runs it
    /// as one script, so a check costs one round trip instead of a read and
    /// a compare-and-swap (and, by id, a read of the index before them); on
    /// a Redis Cluster a client's check budget is one script more before
    /// it, and DynamoDB approves a right code in one conditional write.
    /// `Ok(None)`, the default, has the check run through [`Store::get`]
    /// and [`Store::compare_and_swap`]; a store written outside this crate
    /// keeps it.
    ///
    /// # Errors
    ///
    /// As [`Store::compare_and_swap`].
    fn check_in_one_step(&self, check: &OneStepCheck<'_>) -> Result<Option<OneStepOutcome>, Error> {
        let _ = check;
        Ok(None)
    }

    /// Makes `issue` in as few requests as this store can: one Redis server
    /// runs it as one script, so an issue costs one round trip instead of
    /// a read and two or three writes, and a read and a write more per
    /// client counter it spends (a client's send budget, each bucket of a
    /// rate limit) and for a fraud guard's prefix, which the script spends
    /// too (on a Redis Cluster, where those are in slots of their own, one
    /// script each: the counters at once, then the prefix, then the
    /// subject's). `Ok(None)`,
    /// the default, has the issue made through [`Store::get`] and
    /// [`Store::compare_and_swap`].
    ///
    /// # Errors
    ///
    /// As [`Store::compare_and_swap`].
    fn issue_in_one_step(&self, issue: &OneStepIssue<'_>) -> Result<Option<OneStepOutcome>, Error> {
        let _ = issue;
        Ok(None)
    }

    /// Whether this store keeps a challenge's index entry in the hash slot
    /// of the subject's record, which it finds from the id's slot byte
    /// (see [`ChallengeId`](crate::otp::ChallengeId)): then the service
    /// issues ids with a slot byte, and a check by id is one request. Only
    /// `RedisStore` and `AsyncRedisStore` on a cluster say so; the default
    /// is `false`. A store that wraps another forwards this method along
    /// with the one-step ones; one that does not gets ids without a slot
    /// byte, which still work, each check by id then taking two requests on
    /// a cluster.
    fn slots_challenges(&self) -> bool {
        false
    }
}

macro_rules! forward_store {
    ($($ptr:ident),*) => {$(
        impl<S: Store + ?Sized> Store for $ptr<S> {
            fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
                (**self).get(key, now_ms)
            }
            fn compare_and_swap(
                &self,
                key: &str,
                expected: Option<&[u8]>,
                new: Option<&[u8]>,
                expires_ms: u64,
                now_ms: u64,
            ) -> Result<bool, Error> {
                (**self).compare_and_swap(key, expected, new, expires_ms, now_ms)
            }
            fn check_in_one_step(
                &self,
                check: &OneStepCheck<'_>,
            ) -> Result<Option<OneStepOutcome>, Error> {
                (**self).check_in_one_step(check)
            }
            fn issue_in_one_step(
                &self,
                issue: &OneStepIssue<'_>,
            ) -> Result<Option<OneStepOutcome>, Error> {
                (**self).issue_in_one_step(issue)
            }
            fn slots_challenges(&self) -> bool {
                (**self).slots_challenges()
            }
        }
    )*};
}

// `Store` is dyn-compatible: `Arc<dyn Store>` and `Box<dyn Store>` choose a
// store at run time for the blocking methods.
forward_store!(Arc, Box);

/// The asynchronous twin of [`Store`], for services built on an async
/// runtime: the same contract, with futures. Used by
/// [`aio::Otp`](super::aio::Otp) and
/// [`aio::TotpGuard`](super::aio::TotpGuard).
///
/// [`MemoryStore`] implements both traits (its operations never block on
/// I/O); `AsyncRedisStore` (feature `redis-tokio`) implements this one.
///
/// The trait returns `impl Future`, so it is not dyn-compatible; wrap a
/// store in a [`DynStore`] to choose it at run time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an async store",
    label = "not an `AsyncStore`",
    note = "a blocking store (RedisStore) goes with `pinseal::otp::Otp` and `pinseal::otp::totp::TotpGuard`"
)]
pub trait AsyncStore: Send + Sync {
    /// As [`Store::get`].
    ///
    /// # Errors
    ///
    /// As [`Store::get`].
    fn get(
        &self,
        key: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Error>> + Send;

    /// As [`Store::compare_and_swap`].
    ///
    /// # Errors
    ///
    /// As [`Store::compare_and_swap`].
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// As [`Store::check_in_one_step`].
    ///
    /// # Errors
    ///
    /// As [`Store::check_in_one_step`].
    fn check_in_one_step(
        &self,
        check: &OneStepCheck<'_>,
    ) -> impl Future<Output = Result<Option<OneStepOutcome>, Error>> + Send {
        let _ = check;
        async { Ok(None) }
    }

    /// As [`Store::issue_in_one_step`].
    ///
    /// # Errors
    ///
    /// As [`Store::issue_in_one_step`].
    fn issue_in_one_step(
        &self,
        issue: &OneStepIssue<'_>,
    ) -> impl Future<Output = Result<Option<OneStepOutcome>, Error>> + Send {
        let _ = issue;
        async { Ok(None) }
    }

    /// As [`Store::slots_challenges`].
    fn slots_challenges(&self) -> bool {
        false
    }
}

impl<S: AsyncStore + ?Sized> AsyncStore for Arc<S> {
    fn get(
        &self,
        key: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Error>> + Send {
        (**self).get(key, now_ms)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        (**self).compare_and_swap(key, expected, new, expires_ms, now_ms)
    }
    fn check_in_one_step(
        &self,
        check: &OneStepCheck<'_>,
    ) -> impl Future<Output = Result<Option<OneStepOutcome>, Error>> + Send {
        (**self).check_in_one_step(check)
    }
    fn issue_in_one_step(
        &self,
        issue: &OneStepIssue<'_>,
    ) -> impl Future<Output = Result<Option<OneStepOutcome>, Error>> + Send {
        (**self).issue_in_one_step(issue)
    }
    fn slots_challenges(&self) -> bool {
        (**self).slots_challenges()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`AsyncStore`] with boxed futures: what [`DynStore`] calls through.
trait ErasedStore: Send + Sync {
    fn get<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, Error>>;
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Option<&'a [u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<bool, Error>>;
    fn check_in_one_step<'a>(
        &'a self,
        check: &'a OneStepCheck<'a>,
    ) -> BoxFuture<'a, Result<Option<OneStepOutcome>, Error>>;
    fn issue_in_one_step<'a>(
        &'a self,
        issue: &'a OneStepIssue<'a>,
    ) -> BoxFuture<'a, Result<Option<OneStepOutcome>, Error>>;
    fn slots_challenges(&self) -> bool;
}

impl<S: AsyncStore> ErasedStore for S {
    fn get<'a>(
        &'a self,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, Error>> {
        Box::pin(AsyncStore::get(self, key, now_ms))
    }
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Option<&'a [u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(AsyncStore::compare_and_swap(
            self, key, expected, new, expires_ms, now_ms,
        ))
    }
    fn check_in_one_step<'a>(
        &'a self,
        check: &'a OneStepCheck<'a>,
    ) -> BoxFuture<'a, Result<Option<OneStepOutcome>, Error>> {
        Box::pin(AsyncStore::check_in_one_step(self, check))
    }
    fn issue_in_one_step<'a>(
        &'a self,
        issue: &'a OneStepIssue<'a>,
    ) -> BoxFuture<'a, Result<Option<OneStepOutcome>, Error>> {
        Box::pin(AsyncStore::issue_in_one_step(self, issue))
    }
    fn slots_challenges(&self) -> bool {
        AsyncStore::slots_challenges(self)
    }
}

/// Any [`AsyncStore`], chosen at run time: one `aio::Otp<DynStore>` type
/// serves the memory store in development and Redis in production, so
/// handlers need not be generic.
///
/// Each call boxes its future (one small allocation per store round trip).
/// Clones share the store.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key};
/// use pinseal::otp::store::{DynStore, MemoryStore};
/// use pinseal::otp::{Policy, Verdict, aio};
///
/// // In production this could be a DynStore of an AsyncRedisStore.
/// let store = DynStore::new(MemoryStore::new());
/// let otp: aio::Otp<DynStore> = aio::Otp::with_store(&Key::generate(), Policy::default(), store);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let (id, code) = otp.issue("+15551234567").await?;
/// assert_eq!(otp.verify(&id, code.expose_secret()).await?, Verdict::Approved);
/// # Ok::<(), pinseal::Error>(())
/// # })?;
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone)]
pub struct DynStore(Arc<dyn ErasedStore>);

impl DynStore {
    /// Wraps `store`.
    pub fn new<S: AsyncStore + 'static>(store: S) -> DynStore {
        DynStore(Arc::new(store))
    }
}

impl core::fmt::Debug for DynStore {
    /// The wrapper only: the store's own `Debug` is not reachable here.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DynStore")
    }
}

impl AsyncStore for DynStore {
    async fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(key, now_ms).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        self.0
            .compare_and_swap(key, expected, new, expires_ms, now_ms)
            .await
    }
    async fn check_in_one_step(
        &self,
        check: &OneStepCheck<'_>,
    ) -> Result<Option<OneStepOutcome>, Error> {
        self.0.check_in_one_step(check).await
    }
    async fn issue_in_one_step(
        &self,
        issue: &OneStepIssue<'_>,
    ) -> Result<Option<OneStepOutcome>, Error> {
        self.0.issue_in_one_step(issue).await
    }
    fn slots_challenges(&self) -> bool {
        self.0.slots_challenges()
    }
}
