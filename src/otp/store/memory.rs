//! The embedded, in-process store.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{AsyncStore, Store};
use crate::Error;
use crate::otp::clock::unix_millis;

/// The embedded, in-process challenge store.
///
/// # About
///
/// A hash map behind one mutex, with an index ordered by expiry. Every call
/// first drops the entries that have expired, so memory is bounded by the
/// entries alive at that moment.
///
/// Entries are held in two pools, so that counters can never crowd out
/// challenges:
///
/// - **client counters** (the OTP service's per-client send, check and
///   rate-limit counters: keys `k:`, `q:`, `r:`) hold at most
///   `counter_capacity` entries (by default half of `capacity`). When the
///   pool is full, a new counter evicts the counter that would expire
///   first. A refused request leaves no counter behind, so filling the
///   pool takes that many distinct clients each using its budget; then
///   the counts about to reset anyway are forgotten first (fail-open for
///   those clients, whose keys a caller with that many could rotate
///   through anyway);
/// - **everything else** (subject records, challenge index entries, the
///   fraud guard's prefix records, TOTP steps, accept-once marks) holds at
///   most `capacity` entries and is never evicted; once full,
///   writes of new keys fail with [`Error::StoreFull`], while existing keys
///   can still be updated, so challenges in flight still verify and are
///   never dropped.
///
/// A subject holds at most three entries (its record and up to two index
/// entries, see the [module docs](super)) however often it is re-sent; a
/// client named in [`Otp::issue_from`](crate::otp::Otp::issue_from) holds one. Measured with a counting allocator
/// (`tests/alloc.rs`), an entry costs about 384 bytes of heap with a
/// phone number as the subject, including both maps' overhead; a subject's
/// record grows by one byte per byte of subject (kept sealed), and subjects
/// are at most 256 bytes. The default capacities (100 000 entries and
/// 50 000 client counters) bound the store to about 58 MB with phone
/// numbers, under 70 MB with the longest subjects, and serve at least
/// 33 000 subjects with a code alive at once (50 000 when none was re-sent
/// within its TTL).
///
/// `MemoryStore` serves one process. Services on several machines need a
/// shared store such as `RedisStore` (feature `redis`).
///
/// # Example
///
/// ```
/// use pinseal::otp::store::{MemoryStore, Store};
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
    counter_capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, (Vec<u8>, u64)>,
    by_expiry: BTreeSet<(u64, String)>,
    /// The counters among them, by expiry.
    counters: BTreeSet<(u64, String)>,
}

/// Whether `key` names one of the OTP service's client counters.
fn is_counter(key: &str) -> bool {
    matches!(key.as_bytes(), [b'k' | b'q' | b'r', b':', ..])
}

impl Entries {
    fn prune(&mut self, now_ms: u64) {
        while let Some((expires, _)) = self.by_expiry.first() {
            if *expires > now_ms {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.remove(&key);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, expires)) = self.map.remove(key) {
            let entry = (expires, key.to_string());
            self.by_expiry.remove(&entry);
            if is_counter(key) {
                self.counters.remove(&entry);
            }
        }
    }

    /// Entries that are not counters.
    fn others(&self) -> usize {
        self.map.len() - self.counters.len()
    }
}

impl MemoryStore {
    /// Default maximum number of entries.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A store with the default capacity.
    pub fn new() -> MemoryStore {
        MemoryStore::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A store that holds at most `capacity` live entries besides
    /// counters, and `capacity / 2` (at least 1) counters.
    pub fn with_capacity(capacity: usize) -> MemoryStore {
        MemoryStore::with_capacities(capacity, (capacity / 2).max(1))
    }

    /// A store that holds at most `capacity` live entries besides
    /// counters, and `counter_capacity` counters (see the pools above).
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::otp::store::{MemoryStore, Store};
    ///
    /// let store = MemoryStore::with_capacities(1, 2);
    /// assert!(store.compare_and_swap("k:1", None, Some(b"1"), 1_000, 0)?);
    /// assert!(store.compare_and_swap("k:2", None, Some(b"2"), 2_000, 0)?);
    /// // A third counter evicts the one that expires first...
    /// assert!(store.compare_and_swap("k:3", None, Some(b"3"), 3_000, 0)?);
    /// assert_eq!(store.get("k:1", 0)?, None);
    /// // ...and counters never take a challenge's room.
    /// assert!(store.compare_and_swap("s:1", None, Some(b"s"), 1_000, 0)?);
    /// assert!(store.compare_and_swap("s:2", None, Some(b"s"), 1_000, 0).is_err());
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn with_capacities(capacity: usize, counter_capacity: usize) -> MemoryStore {
        MemoryStore {
            capacity,
            counter_capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// The number of entries alive at `now` (an entry whose expiry is at
    /// or before `now` is not counted). Expired entries are dropped by the
    /// next read or write; counting changes nothing.
    pub fn len(&self, now: SystemTime) -> usize {
        let now_ms = unix_millis(now);
        self.lock()
            .by_expiry
            .range((now_ms.saturating_add(1), String::new())..)
            .count()
    }

    /// Whether no entry is alive at `now`.
    pub fn is_empty(&self, now: SystemTime) -> bool {
        self.len(now) == 0
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
            .field("counter_capacity", &self.counter_capacity)
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
                let counter = is_counter(key);
                if current.is_none() {
                    if counter {
                        if entries.counters.len() >= self.counter_capacity {
                            // Forget the counter that would expire first.
                            match entries.counters.first().map(|(_, k)| k.clone()) {
                                Some(oldest) => entries.remove(&oldest),
                                None => return Err(Error::StoreFull),
                            }
                        }
                    } else if entries.others() >= self.capacity {
                        return Err(Error::StoreFull);
                    }
                }
                entries.remove(key);
                entries.by_expiry.insert((expires_ms, key.to_string()));
                if counter {
                    entries.counters.insert((expires_ms, key.to_string()));
                }
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
