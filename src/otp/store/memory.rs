//! The embedded, in-process store.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::{AsyncStore, Decision, Lookup, OneStepCheck, OneStepOutcome, Store};
use crate::Error;
use crate::otp::Verdict;
use crate::otp::clock::unix_millis;
use crate::otp::record;

/// The embedded, in-process challenge store.
///
/// # About
///
/// Hash maps in shards, each behind its own mutex with an index ordered by
/// expiry: a store of 16 384 entries or more has 16 shards (a key's shard
/// is a hash of it), a smaller one a single shard. Threads working on
/// different subjects rarely wait for one another. Every call first drops
/// the entries of its shard that have expired; memory is bounded by the
/// capacities below, which count every shard exactly.
///
/// A check ([`Store::check_in_one_step`]) is decided on the record in
/// place, under its shard's lock: one lookup, no copy of the record out
/// and back.
///
/// Entries are held in two pools, so that counters can never crowd out
/// challenges:
///
/// - **client counters** (the OTP service's per-client send, check and
///   rate-limit counters: keys `k:`, `q:`, `r:`) hold at most
///   `counter_capacity` entries (by default half of `capacity`). When the
///   pool is full, a new counter evicts the counter that would expire
///   first: in a sharded store, among those of its own shard and of the
///   shards no other thread holds at that instant (others are never waited
///   for). A full pool of either kind first drops what has expired in
///   those shards, since an expired entry counts until a call touches its
///   shard. A refused request leaves no counter behind, so filling the
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
/// (`tests/alloc.rs`), an entry costs about 410 bytes of heap with a
/// phone number as the subject, including both maps' overhead; a subject's
/// record grows by one byte per byte of subject (kept sealed), and subjects
/// are at most 256 bytes. The default capacities (100 000 entries and
/// 50 000 client counters) bound the store to about 62 MB with phone
/// numbers, under 75 MB with the longest subjects, and serve at least
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
    /// Entries besides counters, and counters, in every shard.
    others: AtomicUsize,
    counters: AtomicUsize,
    shards: Box<[Mutex<Entries>]>,
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

/// A store this large or larger is split into [`SHARDS`] shards.
const SHARDED_FROM: usize = 16_384;
/// How many shards a large store has: a power of two, several per core on
/// the machines services run on.
const SHARDS: usize = 16;

/// The shard of `key`: its bytes eight at a time, each folded in with a
/// multiply (the keys are HMAC outputs in hex, so any mixing spreads them;
/// a byte at a time took 0.1 µs on a 66-byte key, twice per check), and
/// the shard taken from the top bits, which every input bit reaches.
fn shard_of(key: &str, shards: usize) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes = key.as_bytes();
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // `shards` is a power of two, at most 2^32.
    if shards <= 1 {
        return 0;
    }
    (h >> (64 - shards.trailing_zeros())) as usize
}

impl Entries {
    /// Drops what has expired; returns how many entries besides counters,
    /// and how many counters, went.
    fn prune(&mut self, now_ms: u64) -> (usize, usize) {
        let mut gone = (0, 0);
        while let Some((expires, _)) = self.by_expiry.first() {
            if *expires > now_ms {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                let counter = is_counter(&key);
                self.remove(&key);
                if counter {
                    gone.1 += 1;
                } else {
                    gone.0 += 1;
                }
            }
        }
        gone
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some((_, expires)) = self.map.remove(key) else {
            return false;
        };
        let entry = (expires, key.to_string());
        self.by_expiry.remove(&entry);
        if is_counter(key) {
            self.counters.remove(&entry);
        }
        true
    }
}

/// One shard, locked, and the counts it keeps up to date.
struct Shard<'a> {
    entries: MutexGuard<'a, Entries>,
    store: &'a MemoryStore,
    index: usize,
}

impl Shard<'_> {
    fn prune(&mut self, now_ms: u64) {
        let (others, counters) = self.entries.prune(now_ms);
        self.store.others.fetch_sub(others, Ordering::Relaxed);
        self.store.counters.fetch_sub(counters, Ordering::Relaxed);
    }

    fn remove(&mut self, key: &str) {
        if self.entries.remove(key) {
            self.uncount(key);
        }
    }

    fn uncount(&self, key: &str) {
        let pool = if is_counter(key) {
            &self.store.counters
        } else {
            &self.store.others
        };
        pool.fetch_sub(1, Ordering::Relaxed);
    }

    /// Writes `value` under `key`, expiring at `expires_ms` (after
    /// `now_ms`): in place when the key exists, else as a new entry, if
    /// its pool has room.
    fn put(&mut self, key: &str, value: &[u8], expires_ms: u64, now_ms: u64) -> Result<(), Error> {
        let entries = &mut *self.entries;
        if let Some((old, old_expires)) = entries.map.get_mut(key) {
            old.clear();
            old.extend_from_slice(value);
            if *old_expires == expires_ms {
                return Ok(());
            }
            let was = (*old_expires, key.to_string());
            *old_expires = expires_ms;
            // The owned keys taken out go back in under the new expiry.
            let owned = entries.by_expiry.take(&was).map(|(_, k)| k);
            entries
                .by_expiry
                .insert((expires_ms, owned.unwrap_or_else(|| key.to_string())));
            if is_counter(key) {
                entries.counters.remove(&was);
                entries.counters.insert((expires_ms, was.1));
            }
            return Ok(());
        }
        let counter = is_counter(key);
        let (pool, capacity) = if counter {
            (&self.store.counters, self.store.counter_capacity)
        } else {
            (&self.store.others, self.store.capacity)
        };
        if pool.fetch_add(1, Ordering::Relaxed) >= capacity && !self.make_room(counter, now_ms) {
            pool.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::StoreFull);
        }
        let entries = &mut *self.entries;
        entries.by_expiry.insert((expires_ms, key.to_string()));
        if counter {
            entries.counters.insert((expires_ms, key.to_string()));
        }
        entries
            .map
            .insert(key.to_string(), (value.to_vec(), expires_ms));
        Ok(())
    }

    /// Room for one more entry of a full pool (this call's reservation is
    /// already counted): first the entries that expired in the other
    /// shards, which still count until a call touches their shard; then,
    /// for a counter, the counter that would expire first. Other shards
    /// are only tried (`try_lock`), never waited for, so two threads
    /// making room at once cannot deadlock; a shard busy at that moment is
    /// skipped.
    fn make_room(&mut self, counter: bool, now_ms: u64) -> bool {
        let (pool, capacity) = if counter {
            (&self.store.counters, self.store.counter_capacity)
        } else {
            (&self.store.others, self.store.capacity)
        };
        let mut others: Vec<MutexGuard<'_, Entries>> = Vec::new();
        for (i, shard) in self.store.shards.iter().enumerate() {
            // This thread holds its own shard (pruned when it was locked).
            if i == self.index {
                continue;
            }
            if let Ok(mut entries) = shard.try_lock() {
                let (o, c) = entries.prune(now_ms);
                self.store.others.fetch_sub(o, Ordering::Relaxed);
                self.store.counters.fetch_sub(c, Ordering::Relaxed);
                others.push(entries);
            }
        }
        if pool.load(Ordering::Relaxed) <= capacity {
            return true;
        }
        if !counter {
            return false;
        }
        // The counter that would expire first, here or in a shard held.
        let soonest = |e: &Entries| e.counters.first().map(|(at, _)| *at);
        let mut best: Option<(u64, Option<usize>)> = soonest(&self.entries).map(|at| (at, None));
        for (i, entries) in others.iter().enumerate() {
            if let Some(at) = soonest(entries) {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, Some(i)));
                }
            }
        }
        let entries: &mut Entries = match best {
            None => return false,
            Some((_, None)) => &mut self.entries,
            Some((_, Some(i))) => &mut others[i],
        };
        let Some((_, oldest)) = entries.counters.first().cloned() else {
            return false;
        };
        entries.remove(&oldest);
        self.store.counters.fetch_sub(1, Ordering::Relaxed);
        true
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
        let shards = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        MemoryStore {
            capacity,
            counter_capacity,
            others: AtomicUsize::new(0),
            counters: AtomicUsize::new(0),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    /// The number of entries alive at `now` (an entry whose expiry is at
    /// or before `now` is not counted). Expired entries are dropped by the
    /// next read or write; counting changes nothing.
    pub fn len(&self, now: SystemTime) -> usize {
        let now_ms = unix_millis(now);
        self.shards
            .iter()
            .map(|shard| {
                lock(shard)
                    .by_expiry
                    .range((now_ms.saturating_add(1), String::new())..)
                    .count()
            })
            .sum()
    }

    /// Whether no entry is alive at `now`.
    pub fn is_empty(&self, now: SystemTime) -> bool {
        self.len(now) == 0
    }

    /// The shard of `key`, locked, with what has expired in it dropped.
    fn shard(&self, key: &str, now_ms: u64) -> Shard<'_> {
        let index = shard_of(key, self.shards.len());
        let mut shard = Shard {
            entries: lock(&self.shards[index]),
            store: self,
            index,
        };
        shard.prune(now_ms);
        shard
    }
}

fn lock(shard: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    // No code path panics while holding the lock, so a poisoned mutex
    // still guards consistent data.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

impl core::fmt::Debug for MemoryStore {
    /// Capacity and size only: entries are not listed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("counter_capacity", &self.counter_capacity)
            .field(
                "entries",
                &(self.others.load(Ordering::Relaxed) + self.counters.load(Ordering::Relaxed)),
            )
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
        let shard = self.shard(key, now_ms);
        Ok(shard.entries.map.get(key).map(|(v, _)| v.clone()))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let mut shard = self.shard(key, now_ms);
        let current = shard.entries.map.get(key).map(|(v, _)| v.as_slice());
        if current != expected {
            return Ok(false);
        }
        match new {
            Some(value) if expires_ms > now_ms => shard.put(key, value, expires_ms, now_ms)?,
            _ => shard.remove(key),
        }
        Ok(true)
    }

    /// Decides the check under the record's lock, on the record in place:
    /// no copy out and back, one lookup (two by id: the index entry
    /// first, in its own shard).
    fn check_in_one_step(&self, check: &OneStepCheck<'_>) -> Result<Option<OneStepOutcome>, Error> {
        if check.counter.is_some() {
            // A client's counter may be in another shard: the general path.
            return Ok(None);
        }
        let now = check.now_ms;
        let mut buf = [0u8; 2 + 2 * crate::mac::MAC_LEN];
        let (record_key, subject_tag) = match check.lookup {
            Lookup::Record(key) => (Cow::Borrowed(key), None),
            Lookup::Index(key) => {
                let shard = self.shard(key, now);
                let Some((tag, _)) = shard.entries.map.get(key) else {
                    return Ok(Some(OneStepOutcome(Decision::Decided {
                        verdict: Verdict::Unknown,
                        subject_tag: None,
                        challenge: None,
                        prefix: None,
                    })));
                };
                let tag = <[u8; 32]>::try_from(tag.as_slice()).map_err(|_| Error::StoreCorrupt)?;
                drop(shard);
                (record::subject_key_in(&tag, &mut buf), Some(tag))
            }
        };
        let mut shard = self.shard(&record_key, now);
        let current = shard
            .entries
            .map
            .get(&*record_key)
            .map(|(v, _)| v.as_slice());
        let (mut decision, write) = record::one_step(check, current)?;
        if let Some((next, expires_ms)) = write {
            // The record exists (a step writes only over one), so this
            // never needs room.
            shard.put(&record_key, &next, expires_ms, now)?;
        }
        if let Decision::Decided {
            subject_tag: found, ..
        } = &mut decision
        {
            *found = subject_tag;
        }
        Ok(Some(OneStepOutcome(decision)))
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

    async fn check_in_one_step(
        &self,
        check: &OneStepCheck<'_>,
    ) -> Result<Option<OneStepOutcome>, Error> {
        Store::check_in_one_step(self, check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// A store large enough to be sharded still holds exactly its
    /// capacities, counted over every shard, and its keys do spread.
    #[test]
    fn sharded_capacities_are_exact() {
        let store = &MemoryStore::with_capacities(SHARDED_FROM, 2_000);
        assert_eq!(store.shards.len(), SHARDS);
        for i in 0..SHARDED_FROM {
            let key = format!("s:{i:064x}");
            assert!(Store::compare_and_swap(store, &key, None, Some(b"v"), 10, 0).unwrap());
        }
        assert_eq!(
            Store::compare_and_swap(store, "s:one-more", None, Some(b"v"), 10, 0),
            Err(Error::StoreFull)
        );
        for shard in store.shards.iter() {
            let held = lock(shard).map.len();
            assert!(held > SHARDED_FROM / SHARDS / 2, "{held} in one shard");
        }
        // Updating an entry needs no room; deleting one makes some.
        assert!(
            Store::compare_and_swap(
                store,
                "s:0000000000000000000000000000000000000000000000000000000000000000",
                Some(b"v"),
                Some(b"w"),
                20,
                0
            )
            .unwrap()
        );
        let last = format!("s:{:064x}", SHARDED_FROM - 1);
        assert!(Store::compare_and_swap(store, &last, Some(b"v"), None, 0, 0).unwrap());
        assert!(Store::compare_and_swap(store, "s:one-more", None, Some(b"v"), 10, 0).unwrap());
        // Counters: never more than their pool, however many arrive.
        for i in 0..10_000u64 {
            let key = format!("k:{i:064x}");
            let _ = Store::compare_and_swap(store, &key, None, Some(b"1"), 100 + i, 0);
            assert!(store.counters.load(Ordering::Relaxed) <= 2_000);
        }
        assert_eq!(store.counters.load(Ordering::Relaxed), 2_000);
        // The newest counters stayed; the soonest to expire went.
        assert!(
            Store::get(store, &format!("k:{:064x}", 9_999), 0)
                .unwrap()
                .is_some()
        );
        assert!(
            Store::get(store, &format!("k:{:064x}", 0), 0)
                .unwrap()
                .is_none()
        );
        // Expiry frees room in every pool, shard by shard as each is used.
        assert_eq!(store.len(UNIX_EPOCH + Duration::from_millis(20_000)), 0);
    }

    /// Entries that expired in shards no call has touched since do not
    /// make a full store refuse, and a full counter pool evicts from
    /// another shard when the new counter's shard holds none.
    #[test]
    fn a_full_pool_makes_room_across_shards() {
        let store = &MemoryStore::with_capacities(SHARDED_FROM, 8);
        // The whole capacity in shard 0, expiring at 10.
        let mut filled = 0;
        for i in 0.. {
            let key = format!("s:{i:064x}");
            if shard_of(&key, SHARDS) == 0 {
                assert!(Store::compare_and_swap(store, &key, None, Some(b"v"), 10, 0).unwrap());
                filled += 1;
                if filled == SHARDED_FROM {
                    break;
                }
            }
        }
        // At 20, writes to the other shards find room.
        for i in 0..1_000 {
            let key = format!("c:{i:064x}");
            if shard_of(&key, SHARDS) == 0 {
                continue;
            }
            assert!(
                Store::compare_and_swap(store, &key, None, Some(b"v"), 1_000, 20).unwrap(),
                "{i}"
            );
        }
        // Eight counters, then one whose shard holds none of them.
        let counters: Vec<String> = (0..8u64).map(|i| format!("k:{i:064x}")).collect();
        for (i, key) in counters.iter().enumerate() {
            assert!(
                Store::compare_and_swap(store, key, None, Some(b"1"), 100 + i as u64, 20).unwrap()
            );
        }
        let held: Vec<usize> = counters.iter().map(|k| shard_of(k, SHARDS)).collect();
        let lonely = (8u64..)
            .map(|i| format!("k:{i:064x}"))
            .find(|k| !held.contains(&shard_of(k, SHARDS)))
            .unwrap();
        assert!(Store::compare_and_swap(store, &lonely, None, Some(b"1"), 500, 20).unwrap());
        assert_eq!(store.counters.load(Ordering::Relaxed), 8);
        assert_eq!(
            Store::get(store, &counters[0], 20).unwrap(),
            None,
            "the soonest went"
        );
        assert!(Store::get(store, &lonely, 20).unwrap().is_some());
    }

    /// Threads on different subjects, at once: counts stay exact.
    #[test]
    fn concurrent_writers_keep_the_counts() {
        let store = &MemoryStore::with_capacities(SHARDED_FROM, 1_000);
        std::thread::scope(|s| {
            for t in 0..8 {
                s.spawn(move || {
                    for i in 0..1_000 {
                        let key = format!("s:{t}:{i}");
                        assert!(
                            Store::compare_and_swap(store, &key, None, Some(b"v"), 10, 0).unwrap()
                        );
                        if i % 2 == 0 {
                            assert!(
                                Store::compare_and_swap(store, &key, Some(b"v"), None, 0, 0)
                                    .unwrap()
                            );
                        }
                        let _ = Store::compare_and_swap(
                            store,
                            &format!("k:{t}:{i}"),
                            None,
                            Some(b"1"),
                            10,
                            0,
                        );
                    }
                });
            }
        });
        assert_eq!(store.others.load(Ordering::Relaxed), 4_000);
        assert_eq!(store.counters.load(Ordering::Relaxed), 1_000);
        let held: usize = store.shards.iter().map(|s| lock(s).map.len()).sum();
        assert_eq!(held, 5_000);
    }
}
