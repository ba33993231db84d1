//! One behavioural suite for every `Store`: `otp_suite!(make_store)` expands
//! to the tests below, each with a fresh store from `make_store`, an
//! expression giving `Option<impl Store>` (`None`: the backing service is
//! absent on this developer machine, and the test returns after saying so).

use std::collections::BTreeMap;
use std::sync::Mutex;

use pinseal::Error;
use pinseal::otp::store::Store;

/// Wraps a store and keeps every key and value ever written, so tests can
/// search what reached the store at rest.
pub struct Recording<S> {
    pub inner: S,
    pub writes: Mutex<BTreeMap<String, Vec<Vec<u8>>>>,
    /// Each key's expiry after its last write; deleted keys are absent.
    pub alive: Mutex<BTreeMap<String, u64>>,
}

impl<S: Store> Recording<S> {
    pub fn new(inner: S) -> Self {
        Recording {
            inner,
            writes: Mutex::new(BTreeMap::new()),
            alive: Mutex::new(BTreeMap::new()),
        }
    }
    /// How many keys hold a value at `now_ms`, by what was written.
    pub fn live_entries(&self, now_ms: u64) -> usize {
        let alive = self.alive.lock().unwrap();
        alive.values().filter(|&&expires| expires > now_ms).count()
    }
    /// Every key and value written, as one byte string for searching.
    pub fn everything(&self) -> Vec<u8> {
        let writes = self.writes.lock().unwrap();
        let mut all = Vec::new();
        for (k, vs) in writes.iter() {
            all.extend_from_slice(k.as_bytes());
            for v in vs {
                all.extend_from_slice(v);
            }
        }
        all
    }
}

impl<S: Store> Store for Recording<S> {
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get(key, now_ms)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let swapped = self
            .inner
            .compare_and_swap(key, expected, new, expires_ms, now_ms)?;
        if swapped {
            let mut alive = self.alive.lock().unwrap();
            match new {
                Some(_) if expires_ms > now_ms => alive.insert(key.to_string(), expires_ms),
                _ => alive.remove(key),
            };
            drop(alive);
            self.writes
                .lock()
                .unwrap()
                .entry(key.to_string())
                .or_default()
                .push(new.map(<[u8]>::to_vec).unwrap_or_default());
        }
        Ok(swapped)
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[macro_export]
macro_rules! otp_suite {
    ($make:expr) => {
        use std::sync::{Arc, Barrier};
        use std::time::{Duration, SystemTime, UNIX_EPOCH};

        use pinseal::otp::store::Store;
        use pinseal::otp::{Clock, ManualClock, Otp, Policy, Verdict};
        use pinseal::{Error, ExposeSecret, Key};
        use $crate::common::otp_suite::{Recording, contains};

        fn t0() -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        }

        fn service(policy: Policy) -> Option<(Otp<Arc<dyn Store>, ManualClock>, ManualClock)> {
            let clock = ManualClock::new(t0());
            let store: Arc<dyn Store> = Arc::new($make?);
            Some((
                Otp::with_parts(&Key::from_bytes([9; 32]), policy, store, clock.clone()),
                clock,
            ))
        }

        fn chat() -> Policy {
            Policy::new(6, Duration::from_secs(60), 5).unwrap()
        }

        /// Some input of the right shape that is not `code`.
        fn wrong(code: &str) -> String {
            code.bytes()
                .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
                .collect()
        }

        #[test]
        fn approves_once() {
            let Some((otp, _)) = service(chat()) else {
                return;
            };
            let (id, code) = otp.issue("+15550001").unwrap();
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Unknown
            );
        }

        #[test]
        fn unknown_ids_are_unknown() {
            let Some((otp, _)) = service(chat()) else {
                return;
            };
            let (id, code) = otp.issue("+15550002").unwrap();
            let other: pinseal::otp::ChallengeId =
                "0123456789abcdef0123456789abcdef".parse().unwrap();
            assert_ne!(other, id);
            assert_eq!(
                otp.verify(&other, code.expose_secret()).unwrap(),
                Verdict::Unknown
            );
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
        }

        #[test]
        fn wrong_codes_count_down_then_lock() {
            let Some((otp, _)) = service(chat()) else {
                return;
            };
            let (id, code) = otp.issue("+15550003").unwrap();
            for left in (0..5).rev() {
                assert_eq!(
                    otp.verify(&id, &wrong(code.expose_secret())).unwrap(),
                    Verdict::Rejected {
                        attempts_left: left
                    }
                );
            }
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Locked
            );
            assert!(matches!(
                otp.issue("+15550003").unwrap_err(),
                Error::Locked { .. }
            ));
        }

        #[test]
        fn malformed_input_is_a_wrong_attempt() {
            let Some((otp, _)) = service(Policy::new(6, Duration::from_secs(60), 100).unwrap())
            else {
                return;
            };
            let (id, code) = otp.issue("+15550004").unwrap();
            let c = code.expose_secret().clone();
            let inputs = [
                String::new(),
                c[..5].to_string(),
                format!("{c}0"),
                format!("{c}\n"),
                format!(" {c}"),
                "abcdef".into(),
                "١٢٣٤٥٦".into(),
                "１２３４５６".into(),
                c.replace(|_: char| true, "é"),
                "-12345".into(),
                "+12345".into(),
            ];
            for (i, input) in inputs.iter().enumerate() {
                assert_eq!(
                    otp.verify(&id, input).unwrap(),
                    Verdict::Rejected {
                        attempts_left: 99 - i as u32
                    },
                    "input #{i}"
                );
            }
            assert_eq!(otp.verify(&id, &c).unwrap(), Verdict::Approved);
        }

        #[test]
        fn ttl_boundary_is_exact() {
            let Some((otp, clock)) = service(chat()) else {
                return;
            };
            let (id, code) = otp.issue("+15550005").unwrap();
            clock.advance(Duration::from_millis(59_999));
            assert_eq!(
                otp.verify(&id, &wrong(code.expose_secret())).unwrap(),
                Verdict::Rejected { attempts_left: 4 }
            );
            clock.advance(Duration::from_millis(1));
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Expired
            );
            assert_eq!(
                otp.verify(&id, &wrong(code.expose_secret())).unwrap(),
                Verdict::Expired,
                "expired challenges count nothing"
            );
            // A wrong guess did not extend the TTL, and a new code still has 4 attempts.
            let (id2, code2) = otp.issue("+15550005").unwrap();
            assert_eq!(
                otp.verify(&id2, &wrong(code2.expose_secret())).unwrap(),
                Verdict::Rejected { attempts_left: 3 }
            );
            assert_eq!(
                otp.verify(&id2, code2.expose_secret()).unwrap(),
                Verdict::Approved
            );
        }

        #[test]
        fn resend_replaces_code_and_keeps_attempts() {
            let Some((otp, _)) = service(chat()) else {
                return;
            };
            let (id1, code1) = otp.issue("+15550006").unwrap();
            for _ in 0..2 {
                let _ = otp.verify(&id1, &wrong(code1.expose_secret())).unwrap();
            }
            let (id2, code2) = otp.issue("+15550006").unwrap();
            assert_eq!(
                otp.verify(&id1, code1.expose_secret()).unwrap(),
                Verdict::Unknown,
                "the old code stops working at once"
            );
            assert_eq!(
                otp.verify(&id2, &wrong(code2.expose_secret())).unwrap(),
                Verdict::Rejected { attempts_left: 2 },
                "attempts survive the resend"
            );
            assert_eq!(
                otp.verify(&id2, code2.expose_secret()).unwrap(),
                Verdict::Approved
            );
            // Approval resets the attempt count.
            let (id3, code3) = otp.issue("+15550006").unwrap();
            assert_eq!(
                otp.verify(&id3, &wrong(code3.expose_secret())).unwrap(),
                Verdict::Rejected { attempts_left: 4 }
            );
        }

        #[test]
        fn send_budget_per_window() {
            let Some((otp, clock)) = service(chat()) else {
                return;
            };
            for _ in 0..5 {
                otp.issue("+15550007").unwrap();
            }
            // The refusal says when the window ends: no second store call.
            assert_eq!(
                otp.issue("+15550007").unwrap_err(),
                Error::SendLimit {
                    retry_after: Duration::from_secs(10 * 60)
                }
            );
            assert!(otp.issue("+15550008").is_ok(), "budgets are per subject");
            clock.advance(Duration::from_secs(10 * 60 - 1));
            assert_eq!(
                otp.issue("+15550007").unwrap_err(),
                Error::SendLimit {
                    retry_after: Duration::from_secs(1)
                }
            );
            clock.advance(Duration::from_secs(1));
            let (id, code) = otp.issue("+15550007").unwrap();
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
        }

        #[test]
        fn lock_lifts_when_the_window_ends() {
            let Some((otp, clock)) = service(chat()) else {
                return;
            };
            let (id, code) = otp.issue("+15550009").unwrap();
            for _ in 0..5 {
                let _ = otp.verify(&id, &wrong(code.expose_secret())).unwrap();
            }
            assert!(matches!(
                otp.issue("+15550009").unwrap_err(),
                Error::Locked { .. }
            ));
            clock.advance(Duration::from_secs(10 * 60));
            let (id, code) = otp.issue("+15550009").unwrap();
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
        }

        #[test]
        fn nothing_in_clear_at_rest() {
            let clock = ManualClock::new(t0());
            let Some(inner) = $make else { return };
            let store = Arc::new(Recording::new(inner));
            let otp = Otp::with_parts(&Key::from_bytes([3; 32]), chat(), store.clone(), clock);
            let subject = "+15557654321";
            let mut codes = Vec::new();
            for _ in 0..3 {
                let (id, code) = otp.issue(subject).unwrap();
                let _ = otp.verify(&id, &wrong(code.expose_secret())).unwrap();
                codes.push((id, code));
            }
            let (id, code) = codes.pop().unwrap();
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
            codes.push((id, code));
            let all = store.everything();
            assert!(!all.is_empty());
            assert!(!contains(&all, subject.as_bytes()), "subject in clear");
            assert!(!contains(&all, b"5557654321"), "subject digits in clear");
            for (id, code) in &codes {
                assert!(
                    !contains(&all, code.expose_secret().as_bytes()),
                    "code as text"
                );
                assert!(
                    !contains(&all, id.to_string().as_bytes()),
                    "challenge id as text"
                );
                assert!(!contains(&all, id.as_bytes()), "challenge id as bytes");
            }
        }

        #[test]
        fn check_by_subject_follows_the_same_rules() {
            let Some((otp, _)) = service(chat()) else {
                return;
            };
            let subject = "+15550020";
            assert_eq!(otp.check(subject, "123456").unwrap(), Verdict::Unknown);
            let (id1, code1) = otp.issue(subject).unwrap();
            assert_eq!(
                otp.check(subject, &wrong(code1.expose_secret())).unwrap(),
                Verdict::Rejected { attempts_left: 4 }
            );
            // A resend: only the newest code is checked, and the attempt
            // made by subject counts for verification by id too.
            let (id2, code2) = otp.issue(subject).unwrap();
            assert_eq!(
                otp.check(subject, code1.expose_secret()).unwrap(),
                Verdict::Rejected { attempts_left: 3 }
            );
            assert_eq!(
                otp.verify(&id1, code1.expose_secret()).unwrap(),
                Verdict::Unknown
            );
            assert_eq!(
                otp.check("+15550021", code2.expose_secret()).unwrap(),
                Verdict::Unknown,
                "another subject"
            );
            assert_eq!(
                otp.check(subject, code2.expose_secret()).unwrap(),
                Verdict::Approved
            );
            assert_eq!(
                otp.check(subject, code2.expose_secret()).unwrap(),
                Verdict::Unknown
            );
            assert_eq!(
                otp.verify(&id2, code2.expose_secret()).unwrap(),
                Verdict::Unknown,
                "approved by subject is spent by id"
            );
        }

        #[test]
        fn cancel_withdraws_the_code_and_keeps_the_budgets() {
            let Some((otp, clock)) = service(chat()) else {
                return;
            };
            let subject = "+15550022";
            let (id, code) = otp.issue(subject).unwrap();
            let _ = otp.verify(&id, &wrong(code.expose_secret())).unwrap();
            let before = otp.budget(subject).unwrap();
            assert!(otp.cancel(&id).unwrap());
            assert!(!otp.cancel(&id).unwrap(), "already canceled");
            assert_eq!(otp.budget(subject).unwrap(), before);
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Canceled
            );
            assert_eq!(
                otp.check(subject, code.expose_secret()).unwrap(),
                Verdict::Canceled
            );
            assert_eq!(otp.budget(subject).unwrap(), before, "nothing counted");
            // A new code works; cancel by subject withdraws it.
            let (id2, code2) = otp.issue(subject).unwrap();
            assert!(otp.cancel_subject(subject).unwrap());
            assert_eq!(
                otp.verify(&id2, code2.expose_secret()).unwrap(),
                Verdict::Canceled
            );
            // Unknown, approved and expired challenges are not canceled.
            let unknown: pinseal::otp::ChallengeId =
                "0123456789abcdef0123456789abcdef".parse().unwrap();
            assert!(!otp.cancel(&unknown).unwrap());
            let (id3, code3) = otp.issue(subject).unwrap();
            assert_eq!(
                otp.verify(&id3, code3.expose_secret()).unwrap(),
                Verdict::Approved
            );
            assert!(!otp.cancel(&id3).unwrap());
            let (id4, _) = otp.issue(subject).unwrap();
            clock.advance(Duration::from_secs(60));
            assert!(!otp.cancel(&id4).unwrap());
            assert!(!otp.cancel_subject(subject).unwrap());
        }

        #[test]
        fn budget_reports_what_is_left_and_when_it_lifts() {
            let Some((otp, clock)) = service(chat()) else {
                return;
            };
            let subject = "+15550023";
            let fresh = otp.budget(subject).unwrap();
            assert_eq!((fresh.sends_left, fresh.attempts_left), (5, 5));
            assert_eq!(fresh.retry_after(), None);
            let (id, code) = otp.issue(subject).unwrap();
            clock.advance(Duration::from_secs(30));
            for _ in 0..5 {
                let _ = otp.verify(&id, &wrong(code.expose_secret())).unwrap();
            }
            let spent = otp.budget(subject).unwrap();
            assert_eq!((spent.sends_left, spent.attempts_left), (4, 0));
            assert_eq!(spent.retry_after(), Some(Duration::from_secs(570)));
            assert_eq!(
                otp.issue(subject).unwrap_err(),
                Error::Locked {
                    retry_after: Duration::from_secs(570)
                }
            );
            clock.advance(Duration::from_secs(569));
            assert_eq!(
                otp.issue(subject).unwrap_err(),
                Error::Locked {
                    retry_after: Duration::from_secs(1)
                }
            );
            clock.advance(Duration::from_secs(1));
            assert_eq!(otp.budget(subject).unwrap().retry_after(), None);
            assert!(otp.issue(subject).is_ok());
        }

        #[test]
        fn a_subject_holds_a_bounded_number_of_entries() {
            let clock = ManualClock::new(t0());
            let Some(inner) = $make else { return };
            let store = Arc::new(Recording::new(inner));
            let policy = chat()
                .with_send_budget(1000, Duration::from_secs(3600))
                .unwrap();
            let otp = Otp::with_parts(
                &Key::from_bytes([4; 32]),
                policy,
                store.clone(),
                clock.clone(),
            );
            let now = || clock.now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
            for i in 0..1000 {
                let (id, code) = otp.issue("+15550024").unwrap();
                if i % 100 == 99 {
                    assert_eq!(
                        otp.verify(&id, code.expose_secret()).unwrap(),
                        Verdict::Approved
                    );
                }
                if i % 250 == 0 {
                    let _ = otp.cancel(&id).unwrap();
                }
                let entries = store.live_entries(now());
                assert!(entries <= 3, "after issue {i}: {entries} entries");
            }
            // Once the last challenge and its index entry expire, only the
            // subject's record (until its window ends) remains.
            clock.advance(Duration::from_secs(120));
            assert_eq!(store.live_entries(now()), 1);
            clock.advance(Duration::from_secs(3600));
            assert_eq!(store.live_entries(now()), 0);
        }

        #[test]
        fn one_client_flooding_many_numbers_is_cut_off_alone() {
            let Some((otp, _)) = service(
                chat()
                    .with_client_budget(20, Duration::from_secs(3600))
                    .unwrap(),
            ) else {
                return;
            };
            let pumper = "198.51.100.66";
            let mut issued = 0;
            for i in 0..10_000 {
                match otp.issue_from(&format!("+4470{i:08}"), pumper) {
                    Ok(_) => issued += 1,
                    Err(e) => assert_eq!(
                        e,
                        Error::ClientLimit {
                            retry_after: Duration::from_secs(3600)
                        }
                    ),
                }
            }
            assert_eq!(issued, 20, "the client's budget");
            let budget = otp.client_budget(pumper).unwrap();
            assert_eq!(budget.sends_left, 0);
            assert_eq!(budget.retry_after(), Some(Duration::from_secs(3600)));
            // Every other client, and issues that name no client, still work.
            for i in 0..50 {
                let (id, code) = otp
                    .issue_from(&format!("+4471{i:08}"), &format!("203.0.113.{i}"))
                    .unwrap();
                assert_eq!(
                    otp.verify(&id, code.expose_secret()).unwrap(),
                    Verdict::Approved
                );
            }
            assert!(otp.issue("+447100000099").is_ok());
        }

        #[test]
        fn a_code_never_takes_more_guesses_than_max_attempts() {
            // The window (10 minutes) ends while a code sent near its end is
            // still valid: the new window restores the subject's attempts,
            // not the code's.
            let Some((otp, clock)) = service(Policy::new(6, Duration::from_secs(600), 5).unwrap())
            else {
                return;
            };
            let subject = "+15550030";
            otp.issue(subject).unwrap(); // opens the window
            clock.advance(Duration::from_secs(590));
            let (id, code) = otp.issue(subject).unwrap();
            for left in (0..5).rev() {
                assert_eq!(
                    otp.verify(&id, &wrong(code.expose_secret())).unwrap(),
                    Verdict::Rejected {
                        attempts_left: left
                    }
                );
            }
            clock.advance(Duration::from_secs(10)); // the window has ended
            assert_eq!(otp.budget(subject).unwrap().attempts_left, 5);
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Locked,
                "the code has had its five guesses"
            );
            assert_eq!(
                otp.check(subject, code.expose_secret()).unwrap(),
                Verdict::Locked
            );
            // A new code in the new window gets its own five.
            let (id, code) = otp.issue(subject).unwrap();
            assert_eq!(
                otp.verify(&id, &wrong(code.expose_secret())).unwrap(),
                Verdict::Rejected { attempts_left: 4 }
            );
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
        }

        #[test]
        fn expired_is_reported_with_the_default_policy() {
            let Some((otp, clock)) = service(Policy::default()) else {
                return;
            };
            let (id, code) = otp.issue("+15550031").unwrap();
            clock.advance(Duration::from_secs(10 * 60));
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Expired
            );
            assert_eq!(
                otp.check("+15550031", code.expose_secret()).unwrap(),
                Verdict::Expired
            );
        }

        #[test]
        fn concurrent_verifications_approve_exactly_once() {
            let Some((otp, _)) = service(chat()) else {
                return;
            };
            for round in 0..100 {
                let subject = format!("+1555{round:06}");
                let (id, code) = otp.issue(&subject).unwrap();
                let barrier = Barrier::new(8);
                let verdicts: Vec<Verdict> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..8)
                        .map(|i| {
                            let (barrier, otp, id, code, subject) =
                                (&barrier, &otp, &id, &code, &subject);
                            s.spawn(move || {
                                barrier.wait();
                                // Half the racers verify by id, half check
                                // by subject.
                                if i % 2 == 0 {
                                    otp.verify(id, code.expose_secret()).unwrap()
                                } else {
                                    otp.check(subject, code.expose_secret()).unwrap()
                                }
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                let approved = verdicts.iter().filter(|v| **v == Verdict::Approved).count();
                assert_eq!(approved, 1, "round {round}: {verdicts:?}");
                assert!(
                    verdicts
                        .iter()
                        .all(|v| matches!(v, Verdict::Approved | Verdict::Unknown))
                );
            }
        }

        #[test]
        fn concurrent_wrong_guesses_never_exceed_max_attempts() {
            let Some((otp, _)) = service(chat()) else {
                return;
            };
            for round in 0..20 {
                let (id, code) = otp.issue(&format!("+1556{round:06}")).unwrap();
                let bad = wrong(code.expose_secret());
                let barrier = Barrier::new(8);
                let verdicts: Vec<Verdict> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..8)
                        .map(|_| {
                            s.spawn(|| {
                                barrier.wait();
                                (0..3)
                                    .map(|_| otp.verify(&id, &bad).unwrap())
                                    .collect::<Vec<_>>()
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .flat_map(|h| h.join().unwrap())
                        .collect()
                });
                let rejected = verdicts
                    .iter()
                    .filter(|v| matches!(v, Verdict::Rejected { .. }))
                    .count();
                let locked = verdicts.iter().filter(|v| **v == Verdict::Locked).count();
                assert_eq!((rejected, locked), (5, 19), "round {round}");
                assert_eq!(
                    otp.verify(&id, code.expose_secret()).unwrap(),
                    Verdict::Locked
                );
            }
        }

        /// An accept-once set on a fresh store, recording what it writes.
        fn accept_once() -> Option<(
            pinseal::otp::AcceptOnce<Arc<Recording<Arc<dyn Store>>>, ManualClock>,
            Arc<Recording<Arc<dyn Store>>>,
            ManualClock,
        )> {
            let clock = ManualClock::new(t0());
            let inner: Arc<dyn Store> = Arc::new($make?);
            let store = Arc::new(Recording::new(inner));
            Some((
                pinseal::otp::AcceptOnce::with_parts(
                    &Key::from_bytes([9; 32]),
                    Arc::clone(&store),
                    clock.clone(),
                ),
                store,
                clock,
            ))
        }

        #[test]
        fn accept_once_admits_each_key_once_under_a_race() {
            let Some((once, _, _)) = accept_once() else {
                return;
            };
            let ttl = Duration::from_secs(60);
            // A fresh call id per run: a shared store may hold earlier runs.
            let run = format!("{:?}", std::time::SystemTime::now());
            for round in 0..20 {
                let call = format!("CA{run}-{round}");
                let barrier = Barrier::new(8);
                let admitted: Vec<bool> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..8)
                        .map(|_| {
                            s.spawn(|| {
                                barrier.wait();
                                once.admit(&[call.as_str(), "Digits"], ttl).unwrap()
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                assert_eq!(
                    admitted.iter().filter(|a| **a).count(),
                    1,
                    "round {round}: {admitted:?}"
                );
                // Another field of the same call is another key.
                assert!(once.admit(&[call.as_str(), "Other"], ttl).unwrap());
            }
        }

        #[test]
        fn accept_once_forgets_after_the_ttl_and_stores_no_key_in_clear() {
            let Some((once, store, clock)) = accept_once() else {
                return;
            };
            let call = format!("CA{:?}", std::time::SystemTime::now());
            let ttl = Duration::from_secs(30);
            assert!(once.admit(&[call.as_str()], ttl).unwrap());
            clock.advance(Duration::from_millis(29_999));
            assert!(!once.admit(&[call.as_str()], ttl).unwrap());
            clock.advance(Duration::from_millis(1));
            assert!(once.admit(&[call.as_str()], ttl).unwrap());
            assert_eq!(
                once.admit(&[call.as_str()], Duration::ZERO).unwrap_err(),
                Error::InvalidPolicy
            );
            let all = store.everything();
            assert!(!all.is_empty());
            assert!(!contains(&all, call.as_bytes()), "key in clear");
        }

        #[test]
        fn accept_once_opens_an_envelope_once() {
            use pinseal::{Seal, Sealer};
            let Some((once, store, _)) = accept_once() else {
                return;
            };
            let sealer = Sealer::new(&Key::generate());
            let envelope = sealer.seal(b"4321", b"CA1");
            let ttl = Duration::from_secs(60);
            assert_eq!(
                once.open_once(&sealer, &envelope, b"CA1", ttl)
                    .unwrap()
                    .expose_secret(),
                b"4321"
            );
            assert_eq!(
                once.open_once(&sealer, &envelope, b"CA1", ttl).unwrap_err(),
                Error::Replayed
            );
            // A forgery never reaches the store.
            let writes = store.everything().len();
            let mut forged = envelope.to_vec();
            forged[14] ^= 1;
            assert_eq!(
                once.open_once(&sealer, &forged, b"CA1", ttl).unwrap_err(),
                Error::Decrypt
            );
            assert_eq!(store.everything().len(), writes);
            assert!(!contains(&store.everything(), &envelope));
        }

        #[test]
        fn fetch_reports_without_spending_an_attempt() {
            use pinseal::otp::ChallengeStatus;
            let Some((otp, clock)) = service(chat()) else {
                return;
            };
            let subject = "+15550007001";
            let (id, code) = otp.issue(subject).unwrap();
            clock.advance(Duration::from_secs(5));
            let _ = otp.verify(&id, &wrong(code.expose_secret())).unwrap();
            for _ in 0..3 {
                let seen = otp.fetch(&id).unwrap().expect("live");
                assert_eq!(seen.status, ChallengeStatus::Pending);
                assert_eq!(seen.subject.unwrap().expose_secret(), subject);
                assert_eq!(seen.created_at, Some(t0()));
                assert_eq!(seen.updated_at, Some(t0() + Duration::from_secs(5)));
                assert_eq!(seen.expires_at, t0() + Duration::from_secs(60));
                assert_eq!((seen.attempts, seen.attempts_left, seen.send), (1, 4, 1));
                assert_eq!(seen.id, Some(id));
            }
            let newest = otp.fetch_subject(subject).unwrap().unwrap();
            assert_eq!(
                (newest.id, newest.status),
                (Some(id), ChallengeStatus::Pending)
            );
            assert!(otp.fetch_subject("+15550007999").unwrap().is_none());
            assert_eq!(otp.budget(subject).unwrap().attempts_left, 4);
            // A resend: the old id is gone, the new one is the second send.
            let (id2, code2) = otp.issue(subject).unwrap();
            assert!(otp.fetch(&id).unwrap().is_none());
            assert_eq!(otp.fetch(&id2).unwrap().unwrap().send, 2);
            assert_eq!(
                otp.verify(&id2, code2.expose_secret()).unwrap(),
                Verdict::Approved
            );
            let approved = otp.fetch(&id2).unwrap().unwrap();
            assert_eq!(approved.status, ChallengeStatus::Approved);
            assert_eq!(approved.subject.unwrap().expose_secret(), subject);
            // Expired, then canceled, then locked.
            let (id3, _) = otp.issue(subject).unwrap();
            clock.advance(Duration::from_secs(60));
            assert_eq!(
                otp.fetch(&id3).unwrap().unwrap().status,
                ChallengeStatus::Expired
            );
            let (id4, _) = otp.issue(subject).unwrap();
            assert!(otp.cancel(&id4).unwrap());
            assert_eq!(
                otp.fetch(&id4).unwrap().unwrap().status,
                ChallengeStatus::Canceled
            );
            let (id5, code5) = otp.issue(subject).unwrap();
            for _ in 0..5 {
                let _ = otp.verify(&id5, &wrong(code5.expose_secret())).unwrap();
            }
            assert_eq!(
                otp.fetch(&id5).unwrap().unwrap().status,
                ChallengeStatus::MaxAttemptsReached
            );
            assert!(!otp.approve(&id5).unwrap(), "a locked code is not approved");
            let unknown: pinseal::otp::ChallengeId =
                "00112233445566778899aabbccddeeff".parse().unwrap();
            assert!(otp.fetch(&unknown).unwrap().is_none());
        }

        #[test]
        fn approve_spends_a_pending_challenge_once() {
            use pinseal::otp::ChallengeStatus;
            let Some((otp, _)) = service(chat()) else {
                return;
            };
            let (id, code) = otp.issue("+15550007002").unwrap();
            let _ = otp.verify(&id, &wrong(code.expose_secret())).unwrap();
            assert!(otp.approve(&id).unwrap());
            assert!(!otp.approve(&id).unwrap());
            assert!(!otp.cancel(&id).unwrap());
            assert_eq!(
                otp.fetch(&id).unwrap().unwrap().status,
                ChallengeStatus::Approved
            );
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Unknown
            );
            // The approval reset the subject's attempts.
            assert_eq!(otp.budget("+15550007002").unwrap().attempts_left, 5);
        }

        #[test]
        fn a_client_check_budget_stops_a_stranger_locking_many_numbers() {
            let Some((otp, clock)) = service(
                chat()
                    .with_client_check_budget(6, Duration::from_secs(600))
                    .unwrap(),
            ) else {
                return;
            };
            let stranger = "198.51.100.9";
            let mut codes = Vec::new();
            for i in 0..10 {
                codes.push(otp.issue(&format!("+1555000800{i}")).unwrap());
            }
            let mut refused = 0;
            for i in 0..10 {
                for _ in 0..5 {
                    match otp.check_from(&format!("+1555000800{i}"), stranger, "000000") {
                        Ok(v) => {
                            assert!(!v.is_approved() || codes[i].1.expose_secret() == "000000")
                        }
                        Err(e) => {
                            assert!(matches!(e, Error::ClientCheckLimit { .. }), "{e:?}");
                            refused += 1;
                        }
                    }
                }
            }
            assert_eq!(refused, 50 - 6);
            // Only the first two numbers lost attempts; the rest can still sign in.
            for (i, (id, code)) in codes.iter().enumerate().skip(2) {
                assert_eq!(
                    otp.budget(&format!("+1555000800{i}"))
                        .unwrap()
                        .attempts_left,
                    5
                );
                assert_eq!(
                    otp.verify_from(id, "203.0.113.1", code.expose_secret())
                        .unwrap(),
                    Verdict::Approved
                );
            }
            // Approvals do not spend the budget of the client that made them.
            assert!(
                otp.check_from("+15550008000", "203.0.113.1", "000000")
                    .is_ok()
            );
            clock.advance(Duration::from_secs(600));
            assert!(otp.check_from("+15550008001", stranger, "000000").is_ok());
        }

        #[test]
        fn rate_limit_buckets_count_each_velocity() {
            use pinseal::otp::RateLimit;
            let Some((otp, clock)) = service(chat()) else {
                return;
            };
            let ip = RateLimit::new("ip")
                .unwrap()
                .bucket(2, Duration::from_secs(60))
                .unwrap()
                .bucket(3, Duration::from_secs(3600))
                .unwrap();
            let account = RateLimit::new("account")
                .unwrap()
                .bucket(4, Duration::from_secs(3600))
                .unwrap();
            let keys = |n: &'static str| [ip.key("203.0.113.5"), account.key(n)];
            otp.issue_limited("+15550009001", &keys("a")).unwrap();
            otp.issue_limited("+15550009002", &keys("a")).unwrap();
            assert_eq!(
                otp.issue_limited("+15550009003", &keys("a")).unwrap_err(),
                Error::ClientLimit {
                    retry_after: Duration::from_secs(60)
                }
            );
            clock.advance(Duration::from_secs(60));
            otp.issue_limited("+15550009003", &keys("a")).unwrap();
            // The hour bucket is spent now, though the minute one is not.
            assert_eq!(
                otp.issue_limited("+15550009004", &keys("a")).unwrap_err(),
                Error::ClientLimit {
                    retry_after: Duration::from_secs(3540)
                }
            );
            // Refused issues gave their uses back: the account has 1 left.
            otp.issue_limited("+15550009004", &[account.key("a")])
                .unwrap();
            assert!(
                otp.issue_limited("+15550009005", &[account.key("a")])
                    .is_err()
            );
            otp.issue_limited("+15550009005", &[account.key("b")])
                .unwrap();
        }

        #[test]
        fn an_approval_after_the_window_ends_starts_the_window_again() {
            // Codes live 10 minutes; the send window is 10 minutes too.
            let policy = Policy::new(6, Duration::from_secs(600), 5)
                .unwrap()
                .with_send_budget(5, Duration::from_secs(600))
                .unwrap();
            let Some((otp, clock)) = service(policy.clone()) else {
                return;
            };
            let s = "+15550003131";
            otp.issue(s).unwrap();
            clock.advance(Duration::from_secs(540));
            // Sent at minute 9, valid until minute 19.
            let (_, code) = otp.issue(s).unwrap();
            clock.advance(Duration::from_secs(120));
            // Minute 11: the window has ended; the approval starts the next.
            assert_eq!(
                otp.check(s, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
            clock.advance(Duration::from_secs(60));
            otp.issue(s).unwrap();
            let budget = otp.budget(s).unwrap();
            assert_eq!(budget.sends_left, 4);
            assert_eq!(budget.resets_in, Duration::from_secs(540));
            // At the window's last millisecond and at its end exactly: the
            // window restarts at the approval only in the second case.
            for (approved_at_ms, resets_in) in [(599_999, 600_000), (600_000, 540_000)] {
                let Some((otp, clock)) = service(policy.clone()) else {
                    return;
                };
                otp.issue(s).unwrap();
                clock.advance(Duration::from_secs(540));
                let (_, code) = otp.issue(s).unwrap();
                clock.advance(Duration::from_millis(approved_at_ms - 540_000));
                assert_eq!(
                    otp.check(s, code.expose_secret()).unwrap(),
                    Verdict::Approved
                );
                clock.advance(Duration::from_secs(60));
                otp.issue(s).unwrap();
                assert_eq!(
                    otp.budget(s).unwrap().resets_in,
                    Duration::from_millis(resets_in),
                    "approved at {approved_at_ms} ms"
                );
            }
        }

        #[test]
        fn an_issue_the_subject_refuses_gives_back_every_use_it_counted() {
            use pinseal::otp::{FraudGuard, RateLimit};
            let clock = ManualClock::new(t0());
            let Some(inner) = $make else { return };
            let policy = chat()
                .with_send_budget(2, Duration::from_secs(600))
                .unwrap()
                .with_client_budget(5, Duration::from_secs(3600))
                .unwrap();
            let otp = Otp::with_parts(&Key::from_bytes([4; 32]), policy, inner, clock.clone())
                .with_fraud_guard(FraudGuard::new());
            let ip = RateLimit::new("ip")
                .unwrap()
                .bucket(3, Duration::from_secs(60))
                .unwrap()
                .bucket(5, Duration::from_secs(3600))
                .unwrap();
            let number = "+15550002468";
            otp.issue_from(number, "client-r").unwrap();
            otp.issue_limited(number, &[ip.key("192.0.2.44")]).unwrap();
            // The subject's send budget is spent: refused after the client's
            // counters and the prefix were counted, which get their uses back.
            assert!(matches!(
                otp.issue_from(number, "client-r").unwrap_err(),
                Error::SendLimit { .. }
            ));
            assert!(matches!(
                otp.issue_limited(number, &[ip.key("192.0.2.44")])
                    .unwrap_err(),
                Error::SendLimit { .. }
            ));
            assert_eq!(otp.client_budget("client-r").unwrap().sends_left, 4);
            assert_eq!(otp.prefix_stats(number).unwrap().unwrap().sends, 2);
            // The rate limit's minute bucket has two uses left, not zero.
            otp.issue_limited("+15550002469", &[ip.key("192.0.2.44")])
                .unwrap();
            otp.issue_limited("+15550002470", &[ip.key("192.0.2.44")])
                .unwrap();
            assert!(matches!(
                otp.issue_limited("+15550002471", &[ip.key("192.0.2.44")])
                    .unwrap_err(),
                Error::ClientLimit { .. }
            ));
            // A counter that refuses gives back the uses the others counted:
            // the hour bucket has 5 - 3 = 2 left.
            clock.advance(Duration::from_secs(60));
            for n in 0..2 {
                otp.issue_limited(&format!("+1555000248{n}"), &[ip.key("192.0.2.44")])
                    .unwrap();
            }
            assert_eq!(
                otp.issue_limited("+15550002482", &[ip.key("192.0.2.44")])
                    .unwrap_err(),
                Error::ClientLimit {
                    retry_after: Duration::from_secs(3540)
                }
            );
        }

        #[test]
        fn a_pumping_run_over_one_prefix_is_cut_off_and_others_still_get_codes() {
            use pinseal::otp::FraudGuard;
            let clock = ManualClock::new(t0());
            let Some(inner) = $make else { return };
            let store = Arc::new(Recording::new(inner));
            let guard = FraudGuard::new()
                .with_prefix_limit(3, 30, Duration::from_secs(3600))
                .unwrap()
                .deny_countries(&["+882"])
                .unwrap();
            let otp = Otp::with_parts(
                &Key::from_bytes([4; 32]),
                chat(),
                store.clone(),
                clock.clone(),
            )
            .with_fraud_guard(guard);
            // 3 000 numbers of +4470 0900 0xxx from 300 clients, each within
            // its own client budget; real users in other ranges meanwhile.
            let (mut sent, mut blocked, mut others) = (0, 0, 0);
            for i in 0..3_000u32 {
                let number = format!("+447009000{:03}", i % 1000);
                match otp.issue_from(&number, &format!("10.0.{}.{}", i % 300 / 250, i % 300)) {
                    Ok(_) => sent += 1,
                    Err(Error::PrefixBlocked { retry_after }) => {
                        assert_eq!(retry_after, Duration::from_secs(12 * 3600));
                        blocked += 1;
                    }
                    Err(e) => panic!("{e:?}"),
                }
                if i % 100 == 0 {
                    let real = format!("+4477009{:05}", i);
                    let (id, code) = otp
                        .issue_from(&real, &format!("192.0.2.{}", i / 100))
                        .unwrap();
                    assert_eq!(
                        otp.verify(&id, code.expose_secret()).unwrap(),
                        Verdict::Approved
                    );
                    others += 1;
                }
            }
            assert_eq!((sent, blocked, others), (30, 2_970, 30));
            let stats = otp.prefix_stats("+447009000123").unwrap().unwrap();
            assert_eq!((stats.sends, stats.approvals), (30, 0));
            assert!(stats.blocked_for.is_some());
            // Ten real numbers of +447700900xxx were approved.
            assert_eq!(
                otp.prefix_stats("+447700900000")
                    .unwrap()
                    .unwrap()
                    .approvals,
                10
            );
            assert_eq!(
                otp.issue("+882123456789").unwrap_err(),
                Error::CountryBlocked
            );
            // Not a phone number: the guard leaves it alone; a number it
            // cannot place is refused rather than let through.
            assert!(otp.issue("user@example.com").is_ok());
            assert_eq!(
                otp.issue("+44 7009 000123").unwrap_err(),
                Error::InvalidPhoneNumber
            );
            // Subjects are at most 256 bytes.
            assert!(otp.issue(&"u".repeat(256)).is_ok());
            assert_eq!(
                otp.issue(&"u".repeat(257)).unwrap_err(),
                Error::InvalidParameter
            );
            // The block lifts after 12 hours.
            clock.advance(Duration::from_secs(12 * 3600));
            assert!(otp.issue("+447009000001").is_ok());
            let all = store.everything();
            assert!(!contains(&all, b"447009000"), "a prefix in clear");
            assert!(!contains(&all, b"10.0.0."), "a client in clear");
        }

        #[test]
        fn lifecycle_events_name_subjects_by_pseudonym_only() {
            use pinseal::otp::{Event, EventKind};
            use std::sync::Mutex;
            let clock = ManualClock::new(t0());
            let Some(inner) = $make else { return };
            let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
            let sink = seen.clone();
            let otp = Otp::with_parts(&Key::from_bytes([7; 32]), chat(), inner, clock.clone())
                .with_events(move |e: &Event| sink.lock().unwrap().push(e.clone()));
            let (alice, bob) = ("+15550006001", "+15550006002");
            let (id, code) = otp.issue(alice).unwrap();
            assert!(otp.verify(&id, code.expose_secret()).unwrap().is_approved());
            let (id, _) = otp.issue(alice).unwrap();
            assert!(otp.cancel(&id).unwrap());
            let (id, code) = otp.issue(bob).unwrap();
            for _ in 0..5 {
                let _ = otp.check(bob, &wrong(code.expose_secret())).unwrap();
            }
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Locked
            );
            let (id, _) = otp.issue(alice).unwrap();
            clock.advance(Duration::from_secs(60));
            assert_eq!(otp.verify(&id, "123456").unwrap(), Verdict::Expired);
            let (id, _) = otp.issue(alice).unwrap();
            assert!(otp.approve(&id).unwrap());
            let seen = seen.lock().unwrap();
            let kinds: Vec<_> = seen.iter().map(|e| e.kind).collect();
            use EventKind::*;
            assert_eq!(
                kinds,
                [
                    Pending,
                    Approved,
                    Pending,
                    Canceled,
                    Pending,
                    MaxAttemptsReached,
                    Pending,
                    Expired,
                    Pending,
                    Approved
                ]
            );
            // One pseudonym per subject, two subjects, no number anywhere.
            let alice_name = &seen[0].subject;
            assert!(alice_name.as_str().starts_with("ps1."));
            assert_eq!(seen.iter().filter(|e| e.subject == *alice_name).count(), 8);
            assert_ne!(seen[4].subject, *alice_name);
            assert!(seen[4].challenge.is_some(), "an issue names its challenge");
            // A check by subject names the challenge too.
            assert_eq!(seen[5].challenge, seen[4].challenge);
            assert!(seen.iter().all(|e| e.challenge.is_some()));
            assert_eq!(seen[9].challenge, Some(otp.challenge_pseudonym(&id)));
            assert_ne!(seen[8].challenge, seen[0].challenge);
            assert_eq!(seen[9].time, t0() + Duration::from_secs(60));
            for e in seen.iter() {
                let json = e.to_cloudevent("urn:test");
                assert!(
                    !format!("{e:?}{json}").contains("555000600"),
                    "a number in an event"
                );
                assert!(
                    !json.contains(&id.to_string()),
                    "a challenge id in an event"
                );
                let want = format!(r#""type":"{}""#, e.kind.cloudevents_type());
                assert!(json.contains(&want), "{json}");
                let status = format!(r#""verification_status":"{}""#, e.kind.status());
                assert!(json.contains(&status), "{json}");
                assert!(json.contains(&format!(r#""subject":"{}""#, e.subject)));
            }
        }
    };
}
