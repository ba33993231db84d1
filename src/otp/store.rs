//! Where challenge state lives: the [`Store`] trait and the embedded
//! [`MemoryStore`].

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::Error;

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
        }
    )*};
}

// `Store` is dyn-compatible: `Arc<dyn Store>` and `Box<dyn Store>` choose a
// store at run time for the blocking methods.
forward_store!(Arc, Box);

/// The asynchronous twin of [`Store`], for services built on an async
/// runtime: the same contract, with futures. Used by the `_async` methods
/// of [`Otp`](super::Otp) ([`Otp::issue_async`](super::Otp::issue_async),
/// [`Otp::check_async`](super::Otp::check_async), ...).
///
/// [`MemoryStore`] implements both traits (its operations never block on
/// I/O); `AsyncRedisStore` (feature `redis-tokio`) implements this one.
///
/// The trait returns `impl Future`, so it is not dyn-compatible; wrap a
/// store in a [`DynStore`] to choose it at run time.
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
}

/// Any [`AsyncStore`], chosen at run time: one `Otp<DynStore>` type serves
/// the memory store in development and Redis in production, so handlers
/// need not be generic.
///
/// Each call boxes its future (one small allocation per store round trip).
/// Clones share the store.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key};
/// use pinseal::otp::{DynStore, MemoryStore, Otp, Policy, SystemClock, Verdict};
///
/// // In production this could be `DynStore::new(AsyncRedisStore::open(url).await?)`.
/// let store = DynStore::new(MemoryStore::new());
/// let otp: Otp<DynStore> = Otp::with_parts(&Key::generate(), Policy::default(), store, SystemClock);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let (id, code) = otp.issue_async("+15551234567").await?;
/// assert_eq!(otp.verify_async(&id, code.expose_secret()).await?, Verdict::Approved);
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
}

/// The embedded, in-process challenge store.
///
/// # About
///
/// A hash map behind one mutex, with an index ordered by expiry. Every call
/// first drops the entries that have expired, so memory is bounded by the
/// entries alive at that moment, and never exceeds `capacity` entries: once
/// full, writes of new keys fail with [`Error::StoreFull`] (existing keys can
/// still be updated, so challenges in flight still verify).
///
/// A subject holds at most three entries (its record and up to two index
/// entries, see the [module docs](super)) however often it is re-sent; a
/// client named in [`Otp::issue_from`](super::Otp::issue_from) holds one. Measured with a counting allocator
/// (`tests/alloc.rs`), an entry costs about 340 bytes of heap including both
/// maps' overhead, so the default capacity, 100 000 entries, bounds the
/// store to under 40 MB and serves at least 33 000 subjects with a code
/// alive at once (50 000 when none was re-sent within its TTL).
///
/// `MemoryStore` serves one process. Services on several machines need a
/// shared store such as `RedisStore` (feature `redis`).
///
/// # Example
///
/// ```
/// use pinseal::otp::{MemoryStore, Store};
///
/// let store = MemoryStore::with_capacity(2);
/// assert!(store.compare_and_swap("a", None, Some(b"1"), 1_000, 0)?);
/// assert!(!store.compare_and_swap("a", None, Some(b"2"), 1_000, 0)?); // not absent
/// assert_eq!(store.get("a", 999)?, Some(b"1".to_vec()));
/// assert_eq!(store.get("a", 1_000)?, None); // expired
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct MemoryStore {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, (Vec<u8>, u64)>,
    by_expiry: BTreeSet<(u64, String)>,
}

impl Entries {
    fn prune(&mut self, now_ms: u64) {
        while let Some((expires, _)) = self.by_expiry.first() {
            if *expires > now_ms {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.map.remove(&key);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, expires)) = self.map.remove(key) {
            self.by_expiry.remove(&(expires, key.to_string()));
        }
    }
}

impl MemoryStore {
    /// Default maximum number of entries.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A store with the default capacity.
    pub fn new() -> MemoryStore {
        MemoryStore::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A store that holds at most `capacity` live entries.
    pub fn with_capacity(capacity: usize) -> MemoryStore {
        MemoryStore {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// Live entries after dropping those expired at `now_ms`.
    pub fn len(&self, now_ms: u64) -> usize {
        let mut entries = self.lock();
        entries.prune(now_ms);
        entries.map.len()
    }

    /// Whether no live entry remains at `now_ms`.
    pub fn is_empty(&self, now_ms: u64) -> bool {
        self.len(now_ms) == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // No code path panics while holding the lock, so a poisoned mutex
        // still guards consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl core::fmt::Debug for MemoryStore {
    /// Capacity and size only: entries are not listed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("entries", &self.lock().map.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        let mut entries = self.lock();
        entries.prune(now_ms);
        Ok(entries.map.get(key).map(|(v, _)| v.clone()))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let mut entries = self.lock();
        entries.prune(now_ms);
        let current = entries.map.get(key).map(|(v, _)| v.as_slice());
        if current != expected {
            return Ok(false);
        }
        match new {
            None => entries.remove(key),
            Some(_) if expires_ms <= now_ms => entries.remove(key),
            Some(value) => {
                if current.is_none() && entries.map.len() >= self.capacity {
                    return Err(Error::StoreFull);
                }
                entries.remove(key);
                entries.by_expiry.insert((expires_ms, key.to_string()));
                entries
                    .map
                    .insert(key.to_string(), (value.to_vec(), expires_ms));
            }
        }
        Ok(true)
    }
}

impl AsyncStore for MemoryStore {
    async fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        Store::get(self, key, now_ms)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        Store::compare_and_swap(self, key, expected, new, expires_ms, now_ms)
    }
}
