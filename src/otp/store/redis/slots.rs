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
/// A counter given back was spent for the length of a round trip: a
/// request that read it meanwhile saw one use fewer left. A give-back that
/// fails loses that use for the rest of its window, as on the general
/// path.
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
    let replies = all(spends
        .iter()
        .map(|r| send::<Vec<i64>>(conn, timeout, r))
        .collect())
    .await;
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
/// of its window.
async fn give_back(conn: &ClusterConn, timeout: Duration, gives: &[Request]) {
    let _ = all(gives
        .iter()
        .map(|r| send::<Vec<i64>>(conn, timeout, r))
        .collect())
    .await;
}

/// The check as one script per slot: the client's check budget (one use,
/// none left refuses before anything is decided), the subject's record
/// (through the index entry in its slot, for an id with the slot byte),
/// then, at once, the use given back if the check approved or decided
/// nothing, and an approval credited to its prefix. `IndexFirst` for an id
/// without the slot byte: nothing was sent.
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
    let replies = all(after
        .iter()
        .map(|r| send::<Vec<i64>>(conn, timeout, r))
        .collect())
    .await;
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
