//! An issue or a check on a Redis Cluster whose client counters and fraud
//! guard's prefix are in slots of their own: one script per slot it
//! touches (`count.lua` for each counter and the prefix, then `issue.lua`
//! or `verify.lua` for the subject), the counters all at once.
//!
//! Both stores run these on their cluster connection; each request is
//! bounded by the store's timeout. On one server the subject's script
//! spends the counters itself, in the same request.

use core::future::Future;
use core::pin::Pin;
use core::task::Poll;
use std::time::Duration;

use redis::Value;

use super::cluster::ClusterConn;
use super::script::{
    Count, Request, count_cmd, issue_cmd, issue_reply, one_step_cmd, one_step_reply, redis_key,
};
use crate::Error;
use crate::otp::Verdict;
use crate::otp::store::{Decision, OneStepCheck, OneStepIssue, OneStepOutcome};

/// Runs `futures` at once; their outputs, in order.
async fn all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut running: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    core::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, out) in running.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *out = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// Sends `request` on `conn` within `timeout`.
async fn send<T: redis::FromRedisValue>(
    conn: &ClusterConn,
    timeout: Duration,
    request: &Request,
) -> Result<T, Error> {
    conn.run(timeout, |c| request.run_cluster(c)).await
}

/// Sends `requests` at once; their replies, in order.
async fn send_all(
    conn: &ClusterConn,
    timeout: Duration,
    requests: &[Request],
) -> Vec<Result<Vec<i64>, Error>> {
    all(requests.iter().map(|r| send(conn, timeout, r)).collect()).await
}

/// What `count.lua` answered: counted (with the window's start, for a
/// give-back), refused (`4` a counter, `5` the prefix, with the wait in
/// ms), or not read (`-1`).
enum Counted {
    Held(u64),
    Refused(i64, Duration),
    Unread,
}

fn counted(reply: &[i64]) -> Result<Counted, Error> {
    let number = |at: usize| {
        reply
            .get(at)
            .and_then(|n| u64::try_from(*n).ok())
            .ok_or(Error::StoreCorrupt)
    };
    match reply.first() {
        Some(0) => number(1).map(Counted::Held),
        Some(kind @ (4 | 5)) => Ok(Counted::Refused(*kind, Duration::from_millis(number(1)?))),
        Some(-1) => Ok(Counted::Unread),
        _ => Err(Error::StoreCorrupt),
    }
}

/// The issue as one script per slot: the client counters at once, then
/// the fraud guard's prefix, then the subject's record and index entry
/// (one slot, the id carrying the subject's slot byte). The first counter
/// (in order) with no use left refuses, then the prefix, then the subject;
/// a refusal gives back every use and the send already counted, at once.
/// `None` for an id without the slot byte: nothing was sent.
///
/// A counter given back was spent until the refusal was known (up to
/// three round trips: the counters, the prefix, the subject): a request
/// that read it meanwhile saw one use fewer left. A give-back that fails
/// loses that use for the rest of its window, as on the general path; one
/// that lands and is sent again (the cluster client retries a request
/// whose connection failed) gives back one use more.
pub(super) async fn issue(
    conn: &ClusterConn,
    timeout: Duration,
    issue: &OneStepIssue<'_>,
    prefix: &str,
) -> Result<Option<OneStepOutcome>, Error> {
    let subject = OneStepIssue {
        counters: &[],
        prefix: None,
        ..*issue
    };
    let Some(subject_request) = issue_cmd(&subject, prefix, true) else {
        return Ok(None);
    };
    let now = issue.now_ms;
    let keys: Vec<String> = issue
        .counters
        .iter()
        .map(|c| redis_key(prefix, c.key, true))
        .collect();
    let spends: Vec<Request> = issue
        .counters
        .iter()
        .zip(&keys)
        .map(|(c, key)| {
            let spend = Count::Spend {
                max: c.max,
                window_ms: c.window_ms,
            };
            count_cmd(key, spend, now)
        })
        .collect();
    let replies = send_all(conn, timeout, &spends).await;
    // Every use spent, to give back if the issue goes no further.
    let mut gives = Vec::new();
    let mut stop = None;
    for ((reply, c), key) in replies.into_iter().zip(issue.counters).zip(&keys) {
        let decided = reply.and_then(|r| counted(&r));
        if let Ok(Counted::Held(held)) = decided {
            let give = Count::Give {
                window_ms: c.window_ms,
                held,
            };
            gives.push(count_cmd(key, give, now));
        } else if stop.is_none() {
            stop = Some(match decided {
                Ok(Counted::Refused(_, wait)) => Ok(Decision::Refused((c.refused)(wait))),
                Ok(Counted::Unread) => Ok(Decision::Fallback),
                Err(e) => Err(e),
                Ok(Counted::Held(_)) => Err(Error::StoreCorrupt),
            });
        }
    }
    if let Some(stop) = stop {
        give_back(conn, timeout, &gives).await;
        return stop.map(|decision| Some(OneStepOutcome(decision)));
    }
    if let Some(guard) = &issue.prefix {
        let key = redis_key(prefix, guard.key, true);
        let decided = send::<Vec<i64>>(conn, timeout, &count_cmd(&key, Count::Prefix(guard), now))
            .await
            .and_then(|r| counted(&r));
        let stop = match decided {
            Ok(Counted::Held(held)) => {
                let give = Count::Unprefix {
                    window_ms: guard.window_ms,
                    held,
                };
                gives.push(count_cmd(&key, give, now));
                None
            }
            Ok(Counted::Refused(5, wait)) => Some(Ok(Decision::Refused(Error::PrefixBlocked {
                retry_after: wait,
            }))),
            Ok(Counted::Unread) => Some(Ok(Decision::Fallback)),
            Ok(Counted::Refused(..)) => Some(Err(Error::StoreCorrupt)),
            Err(e) => Some(Err(e)),
        };
        if let Some(stop) = stop {
            give_back(conn, timeout, &gives).await;
            return stop.map(|decision| Some(OneStepOutcome(decision)));
        }
    }
    let made = send::<Vec<i64>>(conn, timeout, &subject_request)
        .await
        .and_then(|r| issue_reply(r, &subject));
    if !matches!(made, Ok(OneStepOutcome(Decision::Issued))) {
        give_back(conn, timeout, &gives).await;
    }
    made.map(Some)
}

/// Sends the give-backs, at once; a failed one is a use lost for the rest
/// of its window. Their replies are not read: each record was read by the
/// spend a moment before, so a `-1` (a record the script does not read)
/// cannot come back but from a record damaged since.
async fn give_back(conn: &ClusterConn, timeout: Duration, gives: &[Request]) {
    let _ = send_all(conn, timeout, gives).await;
}

/// The check as one script per slot: the client's check budget (one use,
/// none left refuses before anything is decided), the subject's record
/// (through the index entry in its slot, for an id with the slot byte),
/// then, at once, the use given back if the check approved or the script
/// decided nothing (a record it does not read), and an approval credited
/// to its prefix. After a store error the use stays spent: the check may
/// have been counted. `IndexFirst` for an id without the slot byte:
/// nothing was sent.
///
/// A credit that fails is not sent again (it may have landed): the prefix
/// then counts one approval fewer.
pub(super) async fn check(
    conn: &ClusterConn,
    timeout: Duration,
    check: &OneStepCheck<'_>,
    prefix: &str,
) -> Result<Option<OneStepOutcome>, Error> {
    let alone = OneStepCheck {
        counter: None,
        ..*check
    };
    let Some(request) = one_step_cmd(&alone, prefix, true) else {
        return Ok(Some(OneStepOutcome(Decision::IndexFirst)));
    };
    let now = check.now_ms;
    let mut after = Vec::new();
    if let Some(counter) = &check.counter {
        let key = redis_key(prefix, counter.key, true);
        let spend = Count::Spend {
            max: counter.max,
            window_ms: counter.window_ms,
        };
        match counted(&send::<Vec<i64>>(conn, timeout, &count_cmd(&key, spend, now)).await?)? {
            Counted::Held(held) => {
                let give = Count::Give {
                    window_ms: counter.window_ms,
                    held,
                };
                after.push(count_cmd(&key, give, now));
            }
            Counted::Refused(4, wait) => {
                return Ok(Some(OneStepOutcome(Decision::Refused((counter.refused)(
                    wait,
                )))));
            }
            // The general path reports what is wrong with it.
            Counted::Unread => return Ok(None),
            Counted::Refused(..) => return Err(Error::StoreCorrupt),
        }
    }
    let decided = send::<Vec<Value>>(conn, timeout, &request)
        .await
        .and_then(|r| one_step_reply(r, &alone));
    let approved = matches!(
        decided,
        Ok(OneStepOutcome(Decision::Decided {
            verdict: Verdict::Approved,
            ..
        }))
    );
    // Every decision but an approval spends one check of the budget.
    if !approved && matches!(decided, Ok(OneStepOutcome(Decision::Decided { .. }))) {
        after.clear();
    }
    let mut decided = decided?;
    // An approval credited to its prefix: its tag is then left out.
    let mut credited = None;
    if let (
        Decision::Decided {
            verdict: Verdict::Approved,
            prefix: tag @ Some(_),
            ..
        },
        Some(window_ms),
    ) = (&mut decided.0, check.credit_window_ms)
    {
        if let Some(t) = tag.take() {
            let key = redis_key(prefix, &crate::hex::prefixed("p:", &t), true);
            after.push(count_cmd(&key, Count::Credit { window_ms }, now));
            credited = Some(t);
        }
    }
    let replies = send_all(conn, timeout, &after).await;
    // A prefix record the script does not read is left to the caller,
    // with the tag.
    if let (Some(t), Some(Ok(reply))) = (credited, replies.last()) {
        if reply.first() == Some(&-1) {
            if let Decision::Decided { prefix, .. } = &mut decided.0 {
                *prefix = Some(t);
            }
        }
    }
    Ok(Some(decided))
}

/// The control flow above on the test Redis Cluster: what is given back
/// when a counter, the prefix or the subject refuses, and when a record
/// is one the scripts do not read. (`count.lua`'s rules are held to the
/// Rust ones in `script.rs`; the request counts in
/// `tests/redis_round_trips.rs`.)
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::cluster::{ClusterSource, open_cluster};
    use super::*;
    use crate::otp::limits::Bucket;
    use crate::otp::record::cases::NOW;
    use crate::otp::record::{Live, Macs, State, index_key, subject_key};
    use crate::otp::store::{Lookup, OneStepCounter, OneStepPrefix};

    fn limit(retry_after: Duration) -> Error {
        Error::ClientLimit { retry_after }
    }

    fn other_limit(retry_after: Duration) -> Error {
        Error::ClientCheckLimit { retry_after }
    }

    struct Cluster {
        rt: tokio::runtime::Runtime,
        conn: ClusterConn,
        raw: redis::cluster::ClusterConnection,
        prefix: String,
    }

    impl Cluster {
        fn get(&mut self, key: &str) -> Option<Vec<u8>> {
            redis::cmd("GET")
                .arg(redis_key(&self.prefix, key, true))
                .query(&mut self.raw)
                .unwrap()
        }

        fn set(&mut self, key: &str, value: &[u8]) {
            let _: () = redis::cmd("SET")
                .arg(redis_key(&self.prefix, key, true))
                .arg(value)
                .arg("PX")
                .arg(60_000)
                .query(&mut self.raw)
                .unwrap();
        }

        fn issue(&self, issue: &OneStepIssue<'_>) -> Result<Option<OneStepOutcome>, Error> {
            self.rt.block_on(super::issue(
                &self.conn,
                Duration::from_secs(2),
                issue,
                &self.prefix,
            ))
        }

        fn check(&self, check: &OneStepCheck<'_>) -> Result<Option<OneStepOutcome>, Error> {
            self.rt.block_on(super::check(
                &self.conn,
                Duration::from_secs(2),
                check,
                &self.prefix,
            ))
        }
    }

    fn cluster() -> Option<Cluster> {
        let urls: Vec<String> = std::env::var("PINSEAL_REDIS_CLUSTER")
            .unwrap_or_else(|_| {
                "redis://127.0.0.1:7001/,redis://127.0.0.1:7002/,redis://127.0.0.1:7003/".into()
            })
            .split(',')
            .map(str::to_string)
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
        let source = Arc::new(ClusterSource::from_urls(&seeds, Duration::from_secs(2)).ok()?);
        let opened = rt.block_on(open_cluster(&source));
        let raw = redis::cluster::ClusterClient::new(urls.clone()).and_then(|c| c.get_connection());
        let (Ok(conn), Ok(raw)) = (opened, raw) else {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(!ci, "a Redis Cluster is required under CI");
            eprintln!("SKIPPED: no Redis Cluster at PINSEAL_REDIS_CLUSTER");
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Some(Cluster {
            rt,
            conn,
            raw,
            prefix: format!("pinseal-test:slots:{nanos}:"),
        })
    }

    /// A pending challenge for the subject tagged `[slot; 32]`, whose code's
    /// MAC by subject is `[0x22; 32]`, counted under prefix `[0x44; 32]`.
    fn challenge(slot: u8) -> (Vec<u8>, [u8; 32]) {
        let mut id_tag = [0x70; 32];
        id_tag[0] = slot;
        let live = Live {
            id_tag,
            macs: Macs::Split {
                by_id: [0x11; 32],
                by_subject: [0x22; 32],
            },
            expires_ms: NOW + 60_000,
            state: State::Pending,
            attempts: 0,
            created_ms: NOW,
            updated_ms: NOW,
            send: 0,
            to: Vec::new(),
            prefix: Some([0x44; 32]),
        };
        let mut encoded = Vec::new();
        live.encode_into(&mut encoded);
        (encoded, id_tag)
    }

    const BUCKET: Bucket = Bucket {
        max: 2,
        window_ms: 60_000,
    };

    fn counter(start: u64, uses: u32) -> Vec<u8> {
        [&[1u8][..], &start.to_be_bytes(), &uses.to_be_bytes()].concat()
    }

    #[test]
    fn refusals_and_unread_records_give_back_every_use_counted() {
        let Some(mut c) = cluster() else { return };
        let tag = [0x5a; 32];
        let (live, id_tag) = challenge(tag[0]);
        let (record, index) = (subject_key(&tag), index_key(&id_tag));
        let guard = OneStepPrefix {
            key: "p:4444",
            max: 10,
            window_ms: 3_600_000,
            block_ms: 60_000,
            floor: None,
        };
        let counters = [
            OneStepCounter {
                key: "r:one",
                max: BUCKET.max,
                window_ms: BUCKET.window_ms,
                refused: limit,
            },
            OneStepCounter {
                key: "r:two",
                max: BUCKET.max,
                window_ms: BUCKET.window_ms,
                refused: other_limit,
            },
        ];
        let issue = OneStepIssue {
            record_key: &record,
            index_key: &index,
            subject_tag: &tag,
            live: &live,
            expires_ms: NOW + 60_000,
            now_ms: NOW,
            max_attempts: 5,
            max_sends: 5,
            send_window_ms: 600_000,
            ttl_ms: 60_000,
            counters: &counters,
            prefix: Some(guard),
        };
        // The second counter has no use left: the second's error, and the
        // first's use given back (its record gone, as it was).
        c.set("r:two", &counter(NOW - 1_000, 2));
        let refused = c.issue(&issue).unwrap().unwrap();
        assert!(
            matches!(refused.0, Decision::Refused(Error::ClientCheckLimit { retry_after })
                if retry_after == Duration::from_millis(59_000)),
            "{refused:?}"
        );
        assert_eq!(c.get("r:one"), None);
        assert_eq!(c.get("r:two"), Some(counter(NOW - 1_000, 2)));
        assert_eq!(c.get("p:4444"), None);
        assert_eq!(c.get(&record), None);
        // A counter the script does not read: the general path, with the
        // first counter's use given back.
        c.set("r:two", &[1; 12]);
        let unread = c.issue(&issue).unwrap().unwrap();
        assert!(matches!(unread.0, Decision::Fallback), "{unread:?}");
        assert_eq!(c.get("r:one"), None);
        // The subject refuses (its new index entry is taken): both counters
        // and the prefix's send given back.
        c.set("r:two", &counter(NOW - 1_000, 1));
        c.set(&index, b"taken");
        let contended = c.issue(&issue).unwrap().unwrap();
        assert!(
            matches!(contended.0, Decision::Refused(Error::Contention)),
            "{contended:?}"
        );
        assert_eq!(c.get("r:one"), None);
        assert_eq!(c.get("r:two"), Some(counter(NOW - 1_000, 1)));
        assert_eq!(c.get("p:4444"), None);
        assert_eq!(c.get(&record), None);
        // Issued: every counter and the prefix spent once.
        let _: () = redis::cmd("DEL")
            .arg(redis_key(&c.prefix, &index, true))
            .query(&mut c.raw)
            .unwrap();
        let made = c.issue(&issue).unwrap().unwrap();
        assert!(matches!(made.0, Decision::Issued), "{made:?}");
        assert_eq!(c.get("r:one"), Some(counter(NOW, 1)));
        assert_eq!(c.get("r:two"), Some(counter(NOW - 1_000, 2)));
        assert_eq!(c.get("p:4444").map(|p| p[12]), Some(1), "one send counted");
        assert!(c.get(&record).is_some());
    }

    #[test]
    fn a_check_gives_its_budget_back_on_approval_and_credits_the_prefix() {
        let Some(mut c) = cluster() else { return };
        let tag = [0xa5; 32];
        let (live, id_tag) = challenge(tag[0]);
        let (record, index) = (subject_key(&tag), index_key(&id_tag));
        let prefix_key = crate::hex::prefixed("p:", &[0x44; 32]);
        let issue = OneStepIssue {
            record_key: &record,
            index_key: &index,
            subject_tag: &tag,
            live: &live,
            expires_ms: NOW + 60_000,
            now_ms: NOW,
            max_attempts: 5,
            max_sends: 5,
            send_window_ms: 600_000,
            ttl_ms: 60_000,
            counters: &[],
            prefix: Some(OneStepPrefix {
                key: &prefix_key,
                max: 10,
                window_ms: 3_600_000,
                block_ms: 60_000,
                floor: None,
            }),
        };
        let check = |mac: [u8; 32], uses: u32| OneStepCheck {
            lookup: Lookup::Record(&record),
            id_tag: None,
            slotted: false,
            mac: Some(mac),
            now_ms: NOW,
            max_attempts: 5,
            send_window_ms: 600_000,
            ttl_ms: 60_000,
            counter: Some(OneStepCounter {
                key: "q:budget",
                max: uses,
                window_ms: BUCKET.window_ms,
                refused: other_limit,
            }),
            credit_window_ms: Some(3_600_000),
        };
        assert!(matches!(
            c.issue(&issue).unwrap().unwrap().0,
            Decision::Issued
        ));
        // A wrong code spends a check of the budget; with none left, the
        // check is refused before anything is decided.
        let wrong = c.check(&check([0x23; 32], 1)).unwrap().unwrap();
        assert!(matches!(
            wrong.0,
            Decision::Decided {
                verdict: Verdict::Rejected { attempts_left: 4 },
                ..
            }
        ));
        assert_eq!(c.get("q:budget"), Some(counter(NOW, 1)));
        let refused = c.check(&check([0x22; 32], 1)).unwrap().unwrap();
        assert!(matches!(
            refused.0,
            Decision::Refused(Error::ClientCheckLimit { .. })
        ));
        // The approval gives its use back and credits the prefix, whose
        // tag is then left out.
        let approved = c.check(&check([0x22; 32], 2)).unwrap().unwrap();
        let Decision::Decided {
            verdict: Verdict::Approved,
            prefix: None,
            challenge: Some(decided),
            ..
        } = approved.0
        else {
            panic!("{approved:?}");
        };
        assert_eq!(decided, id_tag);
        assert_eq!(c.get("q:budget"), Some(counter(NOW, 1)));
        assert_eq!(c.get(&prefix_key).map(|p| (p[12], p[16])), Some((1, 1)));
        // A prefix record the script does not read: the tag is left to
        // the caller.
        let _: () = redis::cmd("DEL")
            .arg(redis_key(&c.prefix, &record, true))
            .query(&mut c.raw)
            .unwrap();
        // Another challenge: its id tag (after the state byte) differs past
        // the slot byte.
        let mut again = challenge(tag[0]).0;
        again[2] ^= 1;
        let mut id_again = id_tag;
        id_again[1] ^= 1;
        let index_again = index_key(&id_again);
        let issue = OneStepIssue {
            live: &again,
            index_key: &index_again,
            ..issue
        };
        assert!(matches!(
            c.issue(&issue).unwrap().unwrap().0,
            Decision::Issued
        ));
        c.set(&prefix_key, &[9; 33]);
        let approved = c.check(&check([0x22; 32], 2)).unwrap().unwrap();
        assert!(
            matches!(
                approved.0,
                Decision::Decided {
                    verdict: Verdict::Approved,
                    prefix: Some(p),
                    ..
                } if p == [0x44; 32]
            ),
            "{approved:?}"
        );
        assert_eq!(c.get(&prefix_key), Some(vec![9; 33]));
    }
}
