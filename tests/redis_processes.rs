//! Several processes verify the same challenges against one Redis at once:
//! each challenge is approved exactly once, and concurrent wrong guesses
//! never exceed the attempt budget.
//!
//! The binary is its own child: run without `PINSEAL_CHILD` it is the
//! parent, issues challenges, spawns copies of itself that race on them, and
//! checks what they report. Needs Redis like `tests/otp_redis.rs`.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pinseal::otp::store::RedisStore;
use pinseal::otp::{ChallengeId, Otp, Policy, SystemClock, Verdict};
use pinseal::{ExposeSecret, Key};

const CHILDREN: usize = 4;
const PEPPER: [u8; 32] = [0x42; 32];

fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(60), 5).unwrap()
}

/// Whether this process works on the Redis Cluster rather than the single
/// server (the parent runs every test on both; children inherit the mode).
static CLUSTER: AtomicBool = AtomicBool::new(false);

fn open_store(prefix: &str) -> Result<RedisStore, pinseal::Error> {
    let builder = RedisStore::builder().prefix(prefix);
    if CLUSTER.load(Ordering::SeqCst) {
        builder.cluster(common::redis_cluster_urls()).connect()
    } else {
        builder.url(common::redis_url()).connect()
    }
}

fn service(prefix: &str) -> Otp<RedisStore, SystemClock> {
    let store = open_store(prefix).unwrap();
    Otp::with_parts(&Key::from_bytes(PEPPER), policy(), store, SystemClock)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Child: wait for the common start time, then verify every `id:input`
/// pair of the job, `repeat` times each, printing one verdict per line.
fn child(job: &str) {
    let prefix = std::env::var("PINSEAL_CHILD_PREFIX").unwrap();
    let start: u64 = std::env::var("PINSEAL_CHILD_START")
        .unwrap()
        .parse()
        .unwrap();
    let repeat: usize = std::env::var("PINSEAL_CHILD_REPEAT")
        .unwrap()
        .parse()
        .unwrap();
    let otp = service(&prefix);
    while unix_ms() < start {
        std::thread::sleep(Duration::from_millis(1));
    }
    for pair in job.split(',') {
        let (id, input) = pair.split_once(':').unwrap();
        let id: ChallengeId = id.parse().unwrap();
        for _ in 0..repeat {
            let verdict = otp.verify(&id, input).unwrap();
            println!("{id} {verdict:?}");
        }
    }
}

/// Parent: spawns the children on one job and gathers their verdicts per id.
fn race(prefix: &str, job: &str, repeat: usize) -> HashMap<String, Vec<String>> {
    let exe = std::env::current_exe().unwrap();
    let start = unix_ms() + 500;
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(&exe)
                .env("PINSEAL_CHILD", job)
                .env("PINSEAL_CHILD_PREFIX", prefix)
                .env("PINSEAL_CHILD_START", start.to_string())
                .env("PINSEAL_CHILD_REPEAT", repeat.to_string())
                .env(
                    "PINSEAL_CHILD_CLUSTER",
                    if CLUSTER.load(Ordering::SeqCst) {
                        "1"
                    } else {
                        "0"
                    },
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut verdicts: HashMap<String, Vec<String>> = HashMap::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed");
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let (id, verdict) = line.split_once(' ').unwrap();
            verdicts
                .entry(id.to_string())
                .or_default()
                .push(verdict.to_string());
        }
    }
    verdicts
}

fn wrong(code: &str) -> String {
    code.bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect()
}

fn exactly_one_approval_across_processes() {
    for rep in 0..3 {
        let prefix = common::unique_prefix();
        let otp = service(&prefix);
        let mut pairs = Vec::new();
        for i in 0..40 {
            let (id, code) = otp.issue(&format!("+1558{rep}{i:05}")).unwrap();
            pairs.push(format!("{id}:{}", code.expose_secret()));
        }
        let verdicts = race(&prefix, &pairs.join(","), 1);
        assert_eq!(verdicts.len(), 40);
        for (id, v) in &verdicts {
            assert_eq!(v.len(), CHILDREN);
            let approved = v.iter().filter(|s| *s == "Approved").count();
            assert_eq!(approved, 1, "challenge {id}: {v:?}");
            assert!(v.iter().all(|s| s == "Approved" || s == "Unknown"), "{v:?}");
        }
    }
}

fn wrong_guesses_never_exceed_the_budget_across_processes() {
    for rep in 0..2 {
        let prefix = common::unique_prefix();
        let otp = service(&prefix);
        let mut pairs = Vec::new();
        let mut issued = Vec::new();
        for i in 0..20 {
            let (id, code) = otp.issue(&format!("+1559{rep}{i:05}")).unwrap();
            pairs.push(format!("{id}:{}", wrong(code.expose_secret())));
            issued.push((id, code));
        }
        let verdicts = race(&prefix, &pairs.join(","), 3);
        for (id, v) in &verdicts {
            let rejected = v.iter().filter(|s| s.starts_with("Rejected")).count();
            let locked = v.iter().filter(|s| *s == "Locked").count();
            assert_eq!(
                (rejected, locked),
                (5, CHILDREN * 3 - 5),
                "challenge {id}: {v:?}"
            );
        }
        for (id, code) in issued {
            assert_eq!(
                otp.verify(&id, code.expose_secret()).unwrap(),
                Verdict::Locked
            );
        }
    }
}

fn main() {
    if let Ok(job) = std::env::var("PINSEAL_CHILD") {
        let cluster = std::env::var("PINSEAL_CHILD_CLUSTER").is_ok_and(|v| v == "1");
        CLUSTER.store(cluster, Ordering::SeqCst);
        child(&job);
        return;
    }
    let mut passed = 0;
    let mut skipped = 0;
    for (cluster, what) in [
        (
            false,
            "a Redis server at PINSEAL_REDIS_URL or 127.0.0.1:6379",
        ),
        (
            true,
            "a Redis Cluster at PINSEAL_REDIS_CLUSTER or 127.0.0.1:7001-7003",
        ),
    ] {
        CLUSTER.store(cluster, Ordering::SeqCst);
        if open_store("pinseal-test:probe:").is_err() {
            common::unavailable(what);
            skipped += 2;
            continue;
        }
        passed += run_all(if cluster { "cluster" } else { "single" });
    }
    println!("{passed} passed, 0 failed, {skipped} skipped");
}

fn run_all(mode: &str) -> usize {
    let tests: [(&str, fn()); 2] = [
        (
            "exactly_one_approval_across_processes",
            exactly_one_approval_across_processes,
        ),
        (
            "wrong_guesses_never_exceed_the_budget_across_processes",
            wrong_guesses_never_exceed_the_budget_across_processes,
        ),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ({mode}) ... ok");
    }
    tests.len()
}
