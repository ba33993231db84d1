//! A refused, failed or dropped issue never destroys the code a subject
//! already holds, and never spends a send: a store wrapper fails the Nth
//! write, for every N an issue makes; an async issue is dropped at each of
//! its await points; and a store with no room left refuses the issue.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

use pinseal::otp::store::{AsyncStore, Store};
use pinseal::otp::{ChallengeId, ManualClock, MemoryStore, Otp, Policy, Verdict, aio};
use pinseal::{Error, ExposeSecret, Key, Secret};

/// Fails the write numbered `fail_at` (counting from 0) with
/// `Error::Store`, without applying it; every other call goes through.
struct FailingWrite {
    inner: MemoryStore,
    writes: AtomicUsize,
    fail_at: AtomicUsize,
    fired: AtomicBool,
}

impl FailingWrite {
    fn new(inner: MemoryStore) -> Self {
        FailingWrite {
            inner,
            writes: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(usize::MAX),
            fired: AtomicBool::new(false),
        }
    }
    /// Fails the `n`th write from now.
    fn fail_nth_write_from_now(&self, n: usize) {
        let done = self.writes.load(Ordering::SeqCst);
        self.fail_at.store(done + n, Ordering::SeqCst);
    }
    fn heal(&self) {
        self.fail_at.store(usize::MAX, Ordering::SeqCst);
    }
    /// Whether the planned fault happened.
    fn fault_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Store for FailingWrite {
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        Store::get(&self.inner, key, now_ms)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if n == self.fail_at.load(Ordering::SeqCst) {
            self.fired.store(true, Ordering::SeqCst);
            return Err(Error::Store);
        }
        Store::compare_and_swap(&self.inner, key, expected, new, expires_ms, now_ms)
    }
}

fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(60), 5)
        .unwrap()
        .with_send_budget(3, Duration::from_secs(600))
        .unwrap()
}

/// A subject with a delivered code (and an earlier, replaced one, so that
/// the resend also deletes a stale index entry).
fn victim<S: Store>(store: S) -> (Otp<S, ManualClock>, ChallengeId, Secret<String>) {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let otp = Otp::with_parts(&Key::from_bytes([1; 32]), policy(), store, clock);
    otp.issue(VICTIM).unwrap();
    let (id, code) = otp.issue(VICTIM).unwrap();
    (otp, id, code)
}

const VICTIM: &str = "+15551234567";
const NOW_MS: u64 = 1_700_000_000_000;

/// After a resend that returned an error: the delivered code still works
/// and the failed resend spent no send.
fn assert_untouched<S: Store>(otp: &Otp<S, ManualClock>, id: &ChallengeId, code: &Secret<String>) {
    assert_eq!(otp.budget(VICTIM).unwrap().sends_left, 1);
    assert_eq!(
        otp.verify(id, code.expose_secret()).unwrap(),
        Verdict::Approved
    );
}

#[test]
fn a_failed_resend_keeps_the_code_and_the_send() {
    // Fail each write of the resend in turn (the challenge index, the stale
    // index deletion, the subject's record) until a fault lands past them.
    let mut failed = 0;
    for n in 0.. {
        let (otp, id, code) = victim(FailingWrite::new(MemoryStore::new()));
        let entries = otp
            .store()
            .inner
            .len(UNIX_EPOCH + Duration::from_millis(NOW_MS));
        otp.store().fail_nth_write_from_now(n);
        let resend = otp.issue(VICTIM);
        let faulted = otp.store().fault_fired();
        otp.store().heal();
        match resend {
            Err(e) => {
                assert_eq!(e, Error::Store, "write {n}");
                failed += 1;
                // The failed issue took its new index entry back out: after
                // a failed index write nothing changed; after a failed
                // record write the stale entry is gone and the new one too.
                let expected = if n == 0 { entries } else { entries - 1 };
                assert_eq!(
                    otp.store()
                        .inner
                        .len(UNIX_EPOCH + Duration::from_millis(NOW_MS)),
                    expected,
                    "write {n}"
                );
                assert_untouched(&otp, &id, &code);
            }
            Ok((new_id, new_code)) => {
                // The resend landed: the new code replaced the old one.
                assert_eq!(
                    otp.verify(&id, code.expose_secret()).unwrap(),
                    Verdict::Unknown
                );
                assert_eq!(
                    otp.verify(&new_id, new_code.expose_secret()).unwrap(),
                    Verdict::Approved
                );
                if !faulted {
                    break; // no write of this resend was failed: all covered
                }
            }
        }
    }
    // The index write and the record write each fail the resend; the stale
    // entry's deletion is best effort and does not.
    assert_eq!(failed, 2);
}

/// Yields once before each store call, so that a test can drop an async
/// `issue` future at each of its await points.
struct Yielding(Arc<MemoryStore>);

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

impl AsyncStore for Yielding {
    async fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        YieldOnce(false).await;
        Store::get(&*self.0, key, now_ms)
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        YieldOnce(false).await;
        Store::compare_and_swap(&*self.0, key, expected, new, expires_ms, now_ms)
    }
}

/// Polls `future` `polls` times; `Some` if it completed.
fn poll_times<F: Future>(future: F, polls: usize) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None // dropped here, mid-flight
}

/// A victim on a shared memory store, and an async service with the same
/// pepper and clock whose every store call yields once.
struct AsyncVictim {
    otp: Otp<Arc<MemoryStore>, ManualClock>,
    async_otp: aio::Otp<Yielding, ManualClock>,
    id: ChallengeId,
    code: Secret<String>,
}

fn async_victim() -> AsyncVictim {
    let store = Arc::new(MemoryStore::new());
    let (otp, id, code) = victim(store.clone());
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let async_otp =
        aio::Otp::with_parts(&Key::from_bytes([1; 32]), policy(), Yielding(store), clock);
    AsyncVictim {
        otp,
        async_otp,
        id,
        code,
    }
}

#[test]
fn a_dropped_issue_async_keeps_the_code_and_the_send() {
    let mut dropped = 0;
    for polls in 1.. {
        let AsyncVictim {
            otp,
            async_otp,
            id,
            code,
        } = async_victim();
        match poll_times(async_otp.issue(VICTIM), polls) {
            None => {
                dropped += 1;
                assert_untouched(&otp, &id, &code);
            }
            Some(issued) => {
                let (new_id, new_code) = issued.unwrap();
                assert_eq!(
                    otp.verify(&new_id, new_code.expose_secret()).unwrap(),
                    Verdict::Approved
                );
                break;
            }
        }
    }
    // Read the record, write the index, delete the stale entry, write the
    // record: the future was dropped at each of the four awaits.
    assert_eq!(dropped, 4);
}

#[test]
fn a_dropped_issue_from_async_spends_at_most_the_client_send() {
    let mut dropped = 0;
    for polls in 1.. {
        let AsyncVictim {
            otp,
            async_otp,
            id,
            code,
        } = async_victim();
        match poll_times(async_otp.issue_from(VICTIM, "203.0.113.7"), polls) {
            None => {
                dropped += 1;
                let client = otp.client_budget("203.0.113.7").unwrap();
                assert!(client.sends_left >= otp.policy().client_max_sends() - 1);
                assert_untouched(&otp, &id, &code);
            }
            Some(issued) => {
                issued.unwrap();
                assert_eq!(
                    otp.client_budget("203.0.113.7").unwrap().sends_left,
                    otp.policy().client_max_sends() - 1
                );
                break;
            }
        }
    }
    // Two awaits for the client's send, four for the subject.
    assert_eq!(dropped, 6);
}

#[test]
fn a_refused_issue_from_gives_the_client_its_send_back() {
    let (otp, _, _) = victim(MemoryStore::new());
    let before = otp.client_budget("203.0.113.7").unwrap().sends_left;
    otp.issue_from(VICTIM, "203.0.113.7").unwrap(); // the third send: the last
    assert!(matches!(
        otp.issue_from(VICTIM, "203.0.113.7").err(),
        Some(Error::SendLimit { .. })
    ));
    assert_eq!(
        otp.client_budget("203.0.113.7").unwrap().sends_left,
        before - 1
    );
}

/// The reported case: a store with room for four entries, another subject
/// holding two, and the victim's resend refused with `StoreFull`. The
/// victim's delivered code must still verify.
#[test]
fn a_full_store_refuses_the_resend_not_the_live_code() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let otp = Otp::with_parts(
        &Key::from_bytes([2; 32]),
        policy(),
        MemoryStore::with_capacity(4),
        clock,
    );
    let (id, code) = otp.issue("victim").unwrap();
    otp.issue("someone-else").unwrap();
    assert_eq!(otp.issue("victim").err(), Some(Error::StoreFull));
    assert_eq!(
        otp.verify(&id, code.expose_secret()).unwrap(),
        Verdict::Approved
    );
}

/// Applies the write numbered `n`, then reports a failure (a timeout after
/// the server acted).
struct LostAnswer {
    inner: MemoryStore,
    lose: AtomicBool,
}

impl Store for LostAnswer {
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        Store::get(&self.inner, key, now_ms)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let swapped = Store::compare_and_swap(&self.inner, key, expected, new, expires_ms, now_ms)?;
        if self.lose.swap(false, Ordering::SeqCst) {
            return Err(Error::Store);
        }
        Ok(swapped)
    }
}

#[test]
fn accept_once_fails_closed() {
    use pinseal::otp::AcceptOnce;
    let ttl = Duration::from_secs(60);
    // A write that fails unapplied: an error, nothing admitted, the key
    // still admissible once the store heals.
    let once = AcceptOnce::with_store(
        &Key::from_bytes([1; 32]),
        FailingWrite::new(MemoryStore::new()),
    );
    once.store().fail_nth_write_from_now(0);
    assert_eq!(once.admit(&["CA1", "Digits"], ttl), Err(Error::Store));
    assert!(once.store().fault_fired());
    once.store().heal();
    assert!(once.admit(&["CA1", "Digits"], ttl).unwrap());
    assert!(!once.admit(&["CA1", "Digits"], ttl).unwrap());
    // A write applied whose answer is lost: an error, and the retry is
    // refused as a replay. Never admitted twice.
    let once = AcceptOnce::with_store(
        &Key::from_bytes([1; 32]),
        LostAnswer {
            inner: MemoryStore::new(),
            lose: AtomicBool::new(true),
        },
    );
    assert_eq!(once.admit(&["CA2"], ttl), Err(Error::Store));
    assert!(!once.admit(&["CA2"], ttl).unwrap());
}
