//! A refused or failed issue never destroys the code a subject already
//! holds, and never spends a send: a store wrapper fails the Nth write, for
//! every N an issue makes, and a store with no room left refuses the issue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy, Store, Verdict};
use pinseal::{Error, Key};

/// Fails the write numbered `fail_at` (counting from 0) with
/// `Error::Store`, without applying it; every other call goes through.
struct FailingWrite {
    inner: MemoryStore,
    writes: AtomicUsize,
    fail_at: AtomicUsize,
}

impl FailingWrite {
    fn new(inner: MemoryStore) -> Self {
        FailingWrite {
            inner,
            writes: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(usize::MAX),
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
            return Err(Error::Store);
        }
        Store::compare_and_swap(&self.inner, key, expected, new, expires_ms, now_ms)
    }
}

fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(60), 5)
        .unwrap()
        .with_send_budget(2, Duration::from_secs(600))
        .unwrap()
}

#[test]
fn a_failed_resend_keeps_the_code_and_the_send() {
    // An issue makes two writes (the challenge index, then the subject's
    // record); fail each in turn, then check a fault past them is harmless.
    for n in 0..3 {
        let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
        let store = FailingWrite::new(MemoryStore::new());
        let otp = Otp::with_parts(&Key::from_bytes([1; 32]), policy(), store, clock);
        let (id, code) = otp.issue("+15551234567").unwrap();

        otp.store().fail_nth_write_from_now(n);
        let resend = otp.issue("+15551234567");
        otp.store().heal();
        if n < 2 {
            assert_eq!(resend.err(), Some(Error::Store), "write {n} failed");
            // The code already delivered still works...
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
            // ...and the failed resend spent no send: one is left.
            assert!(
                otp.issue("+15551234567").is_ok(),
                "write {n}: the second send"
            );
            assert_eq!(otp.issue("+15551234567").err(), Some(Error::SendLimit));
        } else {
            // No write of the issue failed: the new code replaced the old.
            let (new_id, new_code) = resend.unwrap();
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Unknown
            );
            assert_eq!(
                otp.verify(&new_id, new_code.expose_secret()).unwrap(),
                Verdict::Approved
            );
        }
    }
}

/// The reported case: a store with room for four entries, another subject
/// holding two, and the victim's resend refused with `StoreFull`. The
/// victim's delivered code must still verify.
#[test]
fn a_full_store_refuses_the_resend_not_the_live_code() {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
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
