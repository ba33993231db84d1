//! How many verifications one async client thread gets through a Redis
//! server with 64 in flight, and how busy that keeps Redis: for a raw
//! `GET` (the baseline), `verify` by id and `check` by subject, each over
//! `PINSEAL_RATE_N` fresh challenges (100 000 by default) issued first,
//! untimed. Redis's CPU time over the timed stretch comes from its own
//! `INFO cpu`, so the figure holds for a remote server too.
//!
//! Prints, per round and operation: operations per second, Redis's CPU
//! time as a share of one CPU over the stretch, and Redis's CPU time per
//! operation. A share near 100% means Redis's CPU sets the rate, not the
//! round trip. Not a test: nothing is asserted beyond every operation
//! succeeding.
//!
//! Run: `cargo bench --bench redis_rate --features redis-tokio`, with a
//! Redis on `PINSEAL_REDIS_URL` (default 127.0.0.1:6379);
//! `PINSEAL_RATE_ROUNDS` (3) rounds, the operations in turn in each. Its
//! keys start with `pinseal-rate:` and expire two minutes after they are
//! written (about 200 000 per round until then).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use pinseal::otp::store::AsyncRedisStore;
use pinseal::otp::{ChallengeId, ManualClock, Policy, Verdict, aio};
use pinseal::{ExposeSecret, Key, Secret};

const IN_FLIGHT: usize = 64;
const PREFIX: &str = "pinseal-rate:";

static SUBJECT: AtomicU64 = AtomicU64::new(0);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Redis's CPU time so far (user and system), in seconds.
async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .map(|v| v.trim().parse::<f64>().unwrap())
        .sum()
}

type Otp = Arc<aio::Otp<AsyncRedisStore, ManualClock>>;
type Issued = (ChallengeId, Secret<String>, String);

/// Runs `op` on each of `items`, `IN_FLIGHT` at a time.
async fn run<T: Send + 'static, F>(items: Vec<T>, op: impl Fn(T) -> F)
where
    F: core::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut items = items.into_iter();
    loop {
        while set.len() < IN_FLIGHT {
            let Some(item) = items.next() else { break };
            set.spawn(op(item));
        }
        match set.join_next().await {
            Some(done) => done.unwrap(),
            None => break,
        }
    }
}

async fn issue_all(otp: &Otp, n: usize) -> Vec<Issued> {
    let issued = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let subjects: Vec<String> = (0..n)
        .map(|_| {
            let i = SUBJECT.fetch_add(1, Ordering::Relaxed);
            format!("+1777{:07}", i % 10_000_000)
        })
        .collect();
    let (o, out) = (otp.clone(), issued.clone());
    run(subjects, move |s| {
        let (otp, out) = (o.clone(), out.clone());
        async move {
            let (id, code) = otp.issue(&s).await.unwrap();
            out.lock().unwrap().push((id, code, s));
        }
    })
    .await;
    Arc::try_unwrap(issued).ok().unwrap().into_inner().unwrap()
}

fn main() {
    let url =
        std::env::var("PINSEAL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let n = env("PINSEAL_RATE_N", 100_000);
    let rounds = env("PINSEAL_RATE_ROUNDS", 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = match AsyncRedisStore::builder()
            .url(&url)
            .prefix(PREFIX)
            .connect()
            .await
        {
            Ok(store) => store,
            Err(e) => return eprintln!("redis_rate skipped: {e}"),
        };
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut info = client.get_multiplexed_async_connection().await.unwrap();
        let raw = client.get_multiplexed_async_connection().await.unwrap();
        // Codes live two minutes of Redis's time; the clock stands still,
        // so none expires within a run.
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let policy = Policy::new(6, Duration::from_secs(120), 5).unwrap();
        let otp: Otp = Arc::new(aio::Otp::with_parts(
            &Key::from_bytes([7; 32]),
            policy,
            store,
            clock,
        ));
        println!("one async thread, {IN_FLIGHT} in flight, {n} operations each");
        for round in 1..=rounds {
            for op in ["GET", "verify by id", "check by subject"] {
                let issued = if op == "GET" {
                    Vec::new()
                } else {
                    issue_all(&otp, n).await
                };
                let cpu = redis_cpu(&mut info).await;
                let start = Instant::now();
                match op {
                    "GET" => {
                        run(vec![(); n], |()| {
                            let mut conn = raw.clone();
                            async move {
                                let v: Option<Vec<u8>> = redis::cmd("GET")
                                    .arg("pinseal-rate:absent")
                                    .query_async(&mut conn)
                                    .await
                                    .unwrap();
                                assert!(v.is_none());
                            }
                        })
                        .await
                    }
                    _ => {
                        let (o, by_id) = (otp.clone(), op == "verify by id");
                        run(issued, move |(id, code, s)| {
                            let otp = o.clone();
                            async move {
                                let verdict = if by_id {
                                    otp.verify(&id, code.expose_secret()).await
                                } else {
                                    otp.check(&s, code.expose_secret()).await
                                };
                                assert_eq!(verdict.unwrap(), Verdict::Approved);
                            }
                        })
                        .await
                    }
                }
                let seconds = start.elapsed().as_secs_f64();
                let busy = redis_cpu(&mut info).await - cpu;
                println!(
                    "round {round} {op:<17} {:>7.0}/s  Redis {:>3.0}% of a CPU, {:>5.1} µs of Redis CPU each",
                    n as f64 / seconds,
                    100.0 * busy / seconds,
                    1e6 * busy / n as f64
                );
            }
        }
    });
}
