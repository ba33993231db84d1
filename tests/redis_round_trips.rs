//! How many requests each OTP operation sends to Redis, counted by the
//! servers themselves (`MONITOR`, see `tests/common/monitor.rs`), on one server and on the
//! cluster, for the blocking and the async store.
//!
//! A check by subject, a verification by id and an issue are one request
//! (one script), on one server and on a cluster, where a challenge's index
//! entry is in the slot of its subject's record (the id's slot byte). Run
//! with `--nocapture` for the table.
//!
//! Needs Redis and the cluster like `tests/otp_redis.rs` and
//! `tests/otp_redis_cluster.rs`. A monitor sees every client, so the tests
//! here run one at a time, and no other test binary may use the same
//! servers at once (`cargo test` runs binaries one after another).
#![cfg(feature = "redis-tokio")]

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::monitor::Monitor;
use pinseal::otp::store::AsyncRedisStore;
use pinseal::otp::{ChallengeId, Otp, Policy, Verdict, aio};
use pinseal::{ExposeSecret, Key, Secret};

/// One test at a time: the servers report every client's commands.
static SERIAL: Mutex<()> = Mutex::new(());

fn nodes(cluster: bool) -> Vec<String> {
    if cluster {
        common::redis_cluster_urls()
    } else {
        vec![common::redis_url()]
    }
}

fn monitor(cluster: bool) -> Option<Monitor> {
    match Monitor::start(&nodes(cluster)) {
        Ok(m) => Some(m),
        Err(_) => {
            common::unavailable(if cluster {
                "the Redis Cluster"
            } else {
                "Redis"
            });
            None
        }
    }
}

fn wrong(code: &Secret<String>) -> String {
    code.expose_secret()
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect()
}

/// The requests each operation took, by name.
type Counts = Vec<(&'static str, u64)>;

/// Runs the operations through `ops` (blocking or async), counting each.
fn measure(
    monitor: &mut Monitor,
    issue: &mut dyn FnMut(&str) -> (ChallengeId, Secret<String>),
    verify: &mut dyn FnMut(&ChallengeId, &str) -> Verdict,
    check: &mut dyn FnMut(&str, &str) -> Verdict,
) -> Counts {
    // The scripts are cached on every node first: a node that does not
    // hold one costs one more request, once (see `scripts_flushed_...`).
    for n in 0..32 {
        let subject = format!("+1555000999{n}");
        let (id, code) = issue(&subject);
        assert_eq!(
            verify(&id, &wrong(&code)),
            Verdict::Rejected { attempts_left: 4 }
        );
        assert_eq!(check(&subject, code.expose_secret()), Verdict::Approved);
    }
    let mut counts = Vec::new();
    let (mut a, mut code_a) = (None, None);
    step(
        &mut counts,
        "issue (first for the subject)",
        monitor,
        &mut || {
            let (id, code) = issue("+15550001111");
            a = Some(id);
            code_a = Some(code);
        },
    );
    let (a, code_a) = (a.unwrap(), code_a.unwrap());
    step(
        &mut counts,
        "verify by id, wrong code",
        monitor,
        &mut || {
            assert_eq!(
                verify(&a, &wrong(&code_a)),
                Verdict::Rejected { attempts_left: 4 }
            );
        },
    );
    step(
        &mut counts,
        "verify by id, right code",
        monitor,
        &mut || {
            assert_eq!(verify(&a, code_a.expose_secret()), Verdict::Approved);
        },
    );
    step(&mut counts, "verify by id, spent", monitor, &mut || {
        assert_eq!(verify(&a, code_a.expose_secret()), Verdict::Unknown);
    });
    let unknown: ChallengeId = "00000000000000000000000000000000".parse().unwrap();
    step(
        &mut counts,
        "verify by id, unknown id",
        monitor,
        &mut || {
            assert_eq!(verify(&unknown, "123456"), Verdict::Unknown);
        },
    );
    let mut code_b = None;
    step(&mut counts, "issue (a resend)", monitor, &mut || {
        code_b = Some(issue("+15550001111").1);
    });
    let code_b = code_b.unwrap();
    step(
        &mut counts,
        "check by subject, wrong code",
        monitor,
        &mut || {
            assert_eq!(
                check("+15550001111", &wrong(&code_b)),
                Verdict::Rejected { attempts_left: 4 }
            );
        },
    );
    step(
        &mut counts,
        "check by subject, malformed",
        monitor,
        &mut || {
            assert_eq!(
                check("+15550001111", "12"),
                Verdict::Rejected { attempts_left: 3 }
            );
        },
    );
    step(
        &mut counts,
        "check by subject, right code",
        monitor,
        &mut || {
            assert_eq!(
                check("+15550001111", code_b.expose_secret()),
                Verdict::Approved
            );
        },
    );
    step(
        &mut counts,
        "check by subject, no challenge",
        monitor,
        &mut || {
            assert_eq!(check("+15550002222", "123456"), Verdict::Unknown);
        },
    );
    counts
}

fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(60), 5).unwrap()
}

/// A blocking store on one server or the cluster, with a fresh prefix.
fn blocking_store(cluster: bool) -> Option<pinseal::otp::store::RedisStore> {
    if cluster {
        common::redis_cluster_store()
    } else {
        common::redis_store()
    }
}

/// A current-thread runtime and an async store on it, on one server or
/// the cluster, with a fresh prefix.
fn async_store(cluster: bool) -> (tokio::runtime::Runtime, AsyncRedisStore) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let builder = AsyncRedisStore::builder().prefix(common::unique_prefix());
    let builder = if cluster {
        builder.cluster(common::redis_cluster_urls())
    } else {
        builder.url(common::redis_url())
    };
    let store = rt.block_on(builder.connect()).unwrap();
    (rt, store)
}

/// Runs `f`, and records under `name` the requests it sent.
fn step(counts: &mut Counts, name: &'static str, monitor: &mut Monitor, f: &mut dyn FnMut()) {
    monitor.take();
    f();
    counts.push((name, monitor.take()));
}

fn blocking(cluster: bool) -> Option<Counts> {
    let mut monitor = monitor(cluster)?;
    let store = blocking_store(cluster)?;
    let otp = Otp::with_store(&Key::from_bytes([3; 32]), policy(), store);
    Some(measure(
        &mut monitor,
        &mut |s| otp.issue(s).unwrap(),
        &mut |id, input| otp.verify(id, input).unwrap(),
        &mut |s, input| otp.check(s, input).unwrap(),
    ))
}

fn asynchronous(cluster: bool) -> Option<Counts> {
    let mut monitor = monitor(cluster)?;
    let (rt, store) = async_store(cluster);
    let otp = aio::Otp::with_store(&Key::from_bytes([3; 32]), policy(), store);
    Some(measure(
        &mut monitor,
        &mut |s| rt.block_on(otp.issue(s)).unwrap(),
        &mut |id, input| rt.block_on(otp.verify(id, input)).unwrap(),
        &mut |s, input| rt.block_on(otp.check(s, input)).unwrap(),
    ))
}

fn report(what: &str, counts: &Counts) {
    println!("{what}:");
    for (name, n) in counts {
        println!("  {n}  {name}");
    }
}

fn of(counts: &Counts, name: &str) -> u64 {
    counts.iter().find(|(n, _)| *n == name).unwrap().1
}

/// Every check and every issue is one request, on one server and on a
/// cluster. An unknown id without a slot byte is one request too: its
/// index entry, read first, is not there.
fn holds_to_the_bounds(counts: &Counts) {
    for (name, want) in [
        ("issue (first for the subject)", 1),
        ("issue (a resend)", 1),
        ("verify by id, wrong code", 1),
        ("verify by id, right code", 1),
        ("verify by id, spent", 1),
        ("verify by id, unknown id", 1),
        ("check by subject, wrong code", 1),
        ("check by subject, malformed", 1),
        ("check by subject, right code", 1),
        ("check by subject, no challenge", 1),
    ] {
        assert_eq!(of(counts, name), want, "{name}");
    }
}

#[test]
fn single_node_checks_and_issues_take_one_request() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (what, counts) in [
        ("blocking, one server", blocking(false)),
        ("async, one server", asynchronous(false)),
    ] {
        let Some(counts) = counts else { return };
        report(what, &counts);
        holds_to_the_bounds(&counts);
    }
}

#[test]
fn cluster_checks_and_issues_take_one_request() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (what, counts) in [
        ("blocking, cluster", blocking(true)),
        ("async, cluster", asynchronous(true)),
    ] {
        let Some(counts) = counts else { return };
        report(what, &counts);
        holds_to_the_bounds(&counts);
    }
}

/// A node that lost its scripts (a restart, a failover, `SCRIPT FLUSH`)
/// answers the digest with `NOSCRIPT`; the store then sends the script
/// itself, once: that check takes one request more, the next none.
#[test]
fn scripts_flushed_from_the_server_cost_one_request_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut monitor) = monitor(false) else {
        return;
    };
    let Some(store) = common::redis_store() else {
        return;
    };
    let otp = Otp::with_store(&Key::from_bytes([3; 32]), policy(), store);
    let (_, code) = otp.issue("+15550003333").unwrap();
    let mut flush = redis::Client::open(common::redis_url().as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut flush).unwrap();
    monitor.take();
    assert_eq!(
        otp.check("+15550003333", &wrong(&code)).unwrap(),
        Verdict::Rejected { attempts_left: 4 }
    );
    assert_eq!(monitor.take(), 2, "EVALSHA, NOSCRIPT, then EVAL");
    assert_eq!(
        otp.check("+15550003333", code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    assert_eq!(monitor.take(), 1, "the script is cached again");
}

/// The requests of issues that spend client counters: a client's send
/// budget ([`Otp::issue_from`]) and a rate limit of two buckets
/// ([`Otp::issue_limited`]), made and refused.
fn counted(
    monitor: &mut Monitor,
    issue_from: &mut dyn FnMut(&str, &str) -> Result<(), pinseal::Error>,
    issue_limited: &mut dyn FnMut(&str, &str) -> Result<(), pinseal::Error>,
) -> Counts {
    // The scripts cached on every node first.
    for n in 0..32 {
        issue_from(&format!("+1555000888{n}"), &format!("warm-{n}")).unwrap();
    }
    let mut counts = Vec::new();
    step(&mut counts, "issue from a client", monitor, &mut || {
        issue_from("+15550004441", "client-a").unwrap();
    });
    step(
        &mut counts,
        "issue from a client, its last",
        monitor,
        &mut || {
            issue_from("+15550004442", "client-a").unwrap();
        },
    );
    step(
        &mut counts,
        "issue from a client, refused",
        monitor,
        &mut || {
            let refused = issue_from("+15550004443", "client-a").unwrap_err();
            assert!(matches!(refused, pinseal::Error::ClientLimit { .. }));
        },
    );
    step(
        &mut counts,
        "issue under a rate limit of two buckets",
        monitor,
        &mut || {
            issue_limited("+15550004444", "203.0.113.9").unwrap();
        },
    );
    counts
}

fn counted_policy() -> Policy {
    policy()
        .with_client_budget(2, Duration::from_secs(600))
        .unwrap()
}

fn limit() -> pinseal::otp::RateLimit {
    pinseal::otp::RateLimit::new("ip")
        .unwrap()
        .bucket(3, Duration::from_secs(60))
        .unwrap()
        .bucket(20, Duration::from_secs(3600))
        .unwrap()
}

/// On one server an issue spends its counters and writes the challenge in
/// the same request, refused or not. On a cluster, where the counters are
/// in other slots, each counter is one request (all sent at once) before
/// the subject's one request; a counter with no use left refuses there.
#[test]
fn issues_with_client_counters_take_one_request_on_one_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for cluster in [false, true] {
        let Some(mut monitor) = monitor(cluster) else {
            return;
        };
        let limit = limit();
        let Some(store) = blocking_store(cluster) else {
            return;
        };
        let otp = Otp::with_store(&Key::from_bytes([3; 32]), counted_policy(), store);
        let blocking = counted(
            &mut monitor,
            &mut |s, client| otp.issue_from(s, client).map(drop),
            &mut |s, ip| otp.issue_limited(s, &[limit.key(ip)]).map(drop),
        );
        let (rt, store) = async_store(cluster);
        let otp = aio::Otp::with_store(&Key::from_bytes([3; 32]), counted_policy(), store);
        let asynchronous = counted(
            &mut monitor,
            &mut |s, client| rt.block_on(otp.issue_from(s, client)).map(drop),
            &mut |s, ip| {
                rt.block_on(otp.issue_limited(s, &[limit.key(ip)]))
                    .map(drop)
            },
        );
        let place = if cluster { "cluster" } else { "one server" };
        for (what, counts) in [("blocking", blocking), ("async", asynchronous)] {
            report(&format!("{what}, {place}, counted issues"), &counts);
            let (one, two, refused) = if cluster { (2, 2, 1) } else { (1, 1, 1) };
            let limited = if cluster { 3 } else { 1 };
            assert_eq!(of(&counts, "issue from a client"), one);
            assert_eq!(of(&counts, "issue from a client, its last"), two);
            assert_eq!(of(&counts, "issue from a client, refused"), refused);
            assert_eq!(
                of(&counts, "issue under a rate limit of two buckets"),
                limited
            );
        }
    }
}

/// The requests of checks on behalf of a client (`check_from`,
/// `verify_from`), whose check budget (two here) is spent unless the check
/// approves.
fn counted_checks(
    monitor: &mut Monitor,
    issue: &mut dyn FnMut(&str) -> (ChallengeId, Secret<String>),
    verify_from: &mut dyn FnMut(&ChallengeId, &str) -> Result<Verdict, pinseal::Error>,
    check_from: &mut dyn FnMut(&str, &str) -> Result<Verdict, pinseal::Error>,
) -> Counts {
    for n in 0..32 {
        let subject = format!("+1555000777{n}");
        let (_, code) = issue(&subject);
        assert_eq!(
            check_from(&subject, code.expose_secret()).unwrap(),
            Verdict::Approved
        );
    }
    let (id, code) = issue("+15550005551");
    let mut counts = Vec::new();
    step(
        &mut counts,
        "check from a client, wrong code",
        monitor,
        &mut || {
            assert_eq!(
                check_from("+15550005551", &wrong(&code)).unwrap(),
                Verdict::Rejected { attempts_left: 4 }
            );
        },
    );
    step(
        &mut counts,
        "verify from a client, right code",
        monitor,
        &mut || {
            assert_eq!(
                verify_from(&id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
        },
    );
    step(
        &mut counts,
        "check from a client, no challenge",
        monitor,
        &mut || {
            assert_eq!(
                check_from("+15550005552", "123456").unwrap(),
                Verdict::Unknown
            );
        },
    );
    step(
        &mut counts,
        "check from a client, budget spent",
        monitor,
        &mut || {
            let refused = check_from("+15550005551", "123456").unwrap_err();
            assert!(matches!(refused, pinseal::Error::ClientCheckLimit { .. }));
        },
    );
    counts
}

fn check_budget_policy() -> Policy {
    policy()
        .with_client_check_budget(2, Duration::from_secs(600))
        .unwrap()
}

/// On one server a check spends the client's check budget in its own
/// request. On a cluster the budget is in another slot: one request before
/// the check, and one more to give it back on approval.
#[test]
fn checks_with_a_client_budget_take_one_request_on_one_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for cluster in [false, true] {
        let Some(mut monitor) = monitor(cluster) else {
            return;
        };
        let Some(store) = blocking_store(cluster) else {
            return;
        };
        let otp = Otp::with_store(&Key::from_bytes([3; 32]), check_budget_policy(), store);
        let mut n = 0;
        let blocking = counted_checks(
            &mut monitor,
            &mut |s| otp.issue(s).unwrap(),
            &mut |id, input| otp.verify_from(id, "client-b", input),
            &mut |s, input| {
                // The warm-up checks each from a client of their own.
                n += 1;
                let client = if n <= 32 {
                    format!("warm-{n}")
                } else {
                    "client-b".into()
                };
                otp.check_from(s, &client, input)
            },
        );
        let (rt, store) = async_store(cluster);
        let otp = aio::Otp::with_store(&Key::from_bytes([3; 32]), check_budget_policy(), store);
        let mut n = 0;
        let asynchronous = counted_checks(
            &mut monitor,
            &mut |s| rt.block_on(otp.issue(s)).unwrap(),
            &mut |id, input| rt.block_on(otp.verify_from(id, "client-b", input)),
            &mut |s, input| {
                n += 1;
                let client = if n <= 32 {
                    format!("warm-{n}")
                } else {
                    "client-b".into()
                };
                rt.block_on(otp.check_from(s, &client, input))
            },
        );
        let place = if cluster { "cluster" } else { "one server" };
        for (what, counts) in [("blocking", blocking), ("async", asynchronous)] {
            report(&format!("{what}, {place}, checks from a client"), &counts);
            for (name, one_server, on_cluster) in [
                ("check from a client, wrong code", 1, 2),
                ("verify from a client, right code", 1, 3),
                ("check from a client, no challenge", 1, 2),
                ("check from a client, budget spent", 1, 1),
            ] {
                let want = if cluster { on_cluster } else { one_server };
                assert_eq!(of(&counts, name), want, "{what}, {place}: {name}");
            }
        }
    }
}

/// A store that makes checks and issues in one request but does not say
/// that it slots challenges, as a wrapper written outside the crate may:
/// its ids have no slot byte.
struct Unslotted<S>(S);

impl<S: pinseal::otp::store::Store> pinseal::otp::store::Store for Unslotted<S> {
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, pinseal::Error> {
        self.0.get(key, now_ms)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, pinseal::Error> {
        self.0
            .compare_and_swap(key, expected, new, expires_ms, now_ms)
    }
    fn check_in_one_step(
        &self,
        check: &pinseal::otp::store::OneStepCheck<'_>,
    ) -> Result<Option<pinseal::otp::store::OneStepOutcome>, pinseal::Error> {
        self.0.check_in_one_step(check)
    }
    fn issue_in_one_step(
        &self,
        issue: &pinseal::otp::store::OneStepIssue<'_>,
    ) -> Result<Option<pinseal::otp::store::OneStepOutcome>, pinseal::Error> {
        self.0.issue_in_one_step(issue)
    }
}

/// On a cluster, ids carry their subject's slot byte (34 hex characters)
/// and a check by id is one request. Ids without one (32 characters, from
/// a store that does not say it slots challenges) still verify: the index
/// entry is read first, then the record's script (two requests), and an
/// issue is made as a read and two writes.
#[test]
fn on_a_cluster_ids_carry_a_slot_byte_and_ids_without_one_still_verify() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut monitor) = monitor(true) else {
        return;
    };
    let Some(store) = common::redis_cluster_store() else {
        return;
    };
    let otp = Otp::with_store(&Key::from_bytes([3; 32]), policy(), store);
    let (id, code) = otp.issue("+15550006661").unwrap();
    assert_eq!(id.to_string().len(), 34);
    assert_eq!(id.to_string().parse::<ChallengeId>().unwrap(), id);
    monitor.take();
    assert_eq!(
        otp.verify(&id, code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    assert_eq!(monitor.take(), 1);

    let Some(store) = common::redis_cluster_store() else {
        return;
    };
    let otp = Otp::with_store(&Key::from_bytes([3; 32]), policy(), Unslotted(store));
    // The compare-and-swap script cached on every node first.
    for n in 0..32 {
        otp.issue(&format!("+1555000999{n}")).unwrap();
    }
    monitor.take();
    let (id, code) = otp.issue("+15550006662").unwrap();
    assert_eq!(id.to_string().len(), 32);
    assert_eq!(monitor.take(), 3, "a read and two writes");
    assert_eq!(
        otp.verify(&id, &wrong(&code)).unwrap(),
        Verdict::Rejected { attempts_left: 4 }
    );
    assert_eq!(monitor.take(), 2, "the index entry, then the script");
    assert_eq!(
        otp.verify(&id, code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    assert_eq!(monitor.take(), 2);
    assert_eq!(
        otp.verify(&id, code.expose_secret()).unwrap(),
        Verdict::Unknown
    );
}

/// With a fraud guard, an issue to a phone number counts a send to its
/// prefix and an approval credits it: on one server both in the same
/// script; on a cluster, where the prefix's record is in a slot of its
/// own, one request more each, before the issue and after the check.
#[test]
fn a_fraud_guards_prefix_is_counted_in_the_same_request_on_one_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for cluster in [false, true] {
        let Some(mut monitor) = monitor(cluster) else {
            return;
        };
        let Some(store) = blocking_store(cluster) else {
            return;
        };
        let otp = Otp::with_store(&Key::from_bytes([3; 32]), policy(), store)
            .with_fraud_guard(pinseal::otp::FraudGuard::new());
        // The scripts cached on every node first (prefixes too: each of
        // these numbers is in a prefix of its own).
        for n in 0..32 {
            let subject = format!("+155500{n:02}6660");
            let (_, code) = otp.issue(&subject).unwrap();
            assert_eq!(
                otp.check(&subject, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
        }
        monitor.take();
        let (id, code) = otp.issue("+15550007771").unwrap();
        let issue = monitor.take();
        assert_eq!(
            otp.verify(&id, &wrong(&code)).unwrap(),
            Verdict::Rejected { attempts_left: 4 }
        );
        let rejected = monitor.take();
        assert_eq!(
            otp.verify(&id, code.expose_secret()).unwrap(),
            Verdict::Approved
        );
        let approved = monitor.take();
        let stats = otp.prefix_stats("+15550007771").unwrap().unwrap();
        assert_eq!((stats.sends, stats.approvals), (1, 1));
        let place = if cluster { "cluster" } else { "one server" };
        println!(
            "{place}, with a fraud guard: issue {issue}, wrong code {rejected}, approval {approved}"
        );
        let (want_issue, want_approved) = if cluster { (2, 2) } else { (1, 1) };
        assert_eq!(issue, want_issue, "{place}: issue");
        assert_eq!(rejected, 1, "{place}: a wrong code");
        assert_eq!(approved, want_approved, "{place}: an approval");
    }
}
