//! OTP issue, verify (by challenge id) and check (by subject) on the memory
//! store and, when one answers on `PINSEAL_REDIS_URL` (default
//! 127.0.0.1:6379), on Redis: one blocking client thread, eight blocking
//! threads, and one async client thread with 64 operations in flight. A raw
//! `GET` on the same Redis, in the same process, is the baseline: one round
//! trip.
//!
//! With `PINSEAL_REDIS_CLUSTER` (comma-separated seed URLs), one blocking
//! thread on a Redis Cluster: issues with and without client counters,
//! which are in slots of their own there, next to a raw `GET`.
//!
//! With `--features dynamodb` and `PINSEAL_DYNAMODB_URL` (a local server
//! such as dynalite), the same async figures for `DynamoStore`.
//!
//! Run: `cargo bench --bench otp --features redis-tokio`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pinseal::Secret;
use pinseal::otp::store::Store;
use pinseal::otp::{ChallengeId, ManualClock, MemoryStore, Otp, Policy, Verdict};
use pinseal::{ExposeSecret, Key};

/// One-second windows and a clock that moves a second per issue, so budgets
/// and memory never fill however long criterion runs.
fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(1), 100)
        .unwrap()
        .with_send_budget(1000, Duration::from_secs(1))
        .unwrap()
        .with_client_budget(1000, Duration::from_secs(1))
        .unwrap()
}

static SUBJECT: AtomicU64 = AtomicU64::new(0);

/// A subject not used for a while (the clock moves a second per issue).
fn subject() -> String {
    format!(
        "+1555{:07}",
        SUBJECT.fetch_add(1, Ordering::Relaxed) % 1_000_000
    )
}

type Issued = (ChallengeId, Secret<String>, String);

fn issue<S: Store>(otp: &Otp<S, ManualClock>, clock: &ManualClock) -> Issued {
    clock.advance(Duration::from_secs(1));
    let s = subject();
    let (id, code) = otp.issue(&s).unwrap();
    (id, code, s)
}

fn bench_store<S: Store + 'static>(
    c: &mut Criterion,
    name: &str,
    store: S,
) -> Arc<Otp<S, ManualClock>> {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let otp = Arc::new(Otp::with_parts(
        &Key::from_bytes([7; 32]),
        policy(),
        store,
        clock.clone(),
    ));
    let mut g = c.benchmark_group(format!("otp/{name}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("issue", |b| b.iter(|| black_box(issue(&otp, &clock))));
    // One client's send budget spent too (in the same request on one Redis
    // server).
    g.bench_function("issue from a client", |b| {
        b.iter(|| {
            clock.advance(Duration::from_secs(1));
            black_box(otp.issue_from(&subject(), "203.0.113.7").unwrap())
        })
    });
    g.bench_function("verify", |b| {
        b.iter_batched(
            || issue(&otp, &clock),
            |(id, code, _)| {
                assert_eq!(
                    otp.verify(&id, code.expose_secret()).unwrap(),
                    Verdict::Approved
                )
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("check", |b| {
        b.iter_batched(
            || issue(&otp, &clock),
            |(_, code, s)| {
                assert_eq!(
                    otp.check(&s, code.expose_secret()).unwrap(),
                    Verdict::Approved
                )
            },
            BatchSize::PerIteration,
        )
    });
    // On behalf of a client: its check budget spent, and given back on
    // approval (in the same request on one Redis server).
    g.bench_function("check from a client", |b| {
        b.iter_batched(
            || issue(&otp, &clock),
            |(_, code, s)| {
                assert_eq!(
                    otp.check_from(&s, "203.0.113.7", code.expose_secret())
                        .unwrap(),
                    Verdict::Approved
                )
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    otp
}

/// `iters` operations over `threads` threads, timed together; challenges
/// are issued first, untimed.
#[cfg(feature = "redis")]
fn threaded<S: Store + 'static>(
    otp: &Arc<Otp<S, ManualClock>>,
    threads: u64,
    iters: u64,
    op: fn(&Otp<S, ManualClock>, Issued),
) -> Duration {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let per = iters.div_ceil(threads);
    let work: Vec<Vec<Issued>> = (0..threads)
        .map(|_| (0..per).map(|_| issue(otp, &clock)).collect())
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for batch in work {
            s.spawn(move || {
                for item in batch {
                    op(otp, item);
                }
            });
        }
    });
    start.elapsed()
}

#[cfg(feature = "redis")]
#[path = "../tests/common/monitor.rs"]
mod monitor;

/// Prints the requests each operation sends, as Redis counts them
/// (`MONITOR`), before the timings.
#[cfg(feature = "redis")]
fn round_trips(url: &str) {
    let store = pinseal::otp::store::RedisStore::builder()
        .url(url)
        .prefix("pinseal-bench:")
        .connect()
        .unwrap();
    let Ok(mut monitor) = monitor::Monitor::start(&[url.to_string()]) else {
        return eprintln!("round trips not counted: MONITOR is not available");
    };
    let otp = Otp::with_store(&Key::from_bytes([7; 32]), policy(), store);
    let s = subject();
    monitor.take();
    let (id, code) = otp.issue(&s).unwrap();
    let issue = monitor.take();
    assert_eq!(
        otp.verify(&id, code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    let verify = monitor.take();
    let (_, code) = otp.issue(&s).unwrap();
    let resend = monitor.take();
    assert_eq!(
        otp.check(&s, code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    let check = monitor.take();
    eprintln!(
        "otp/redis round trips (counted by Redis): issue {issue}, resend {resend}, \
         verify {verify}, check {check}"
    );
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    let url =
        std::env::var("PINSEAL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let store = pinseal::otp::store::RedisStore::builder()
        .url(&url)
        .prefix("pinseal-bench:")
        .connect();
    let store = match store {
        Ok(store) => store,
        Err(e) => return eprintln!("otp/redis skipped: {e}"),
    };
    // The baseline: one round trip, `GET` on a key that is absent.
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut g = c.benchmark_group("otp/redis");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline GET", |b| {
        b.iter(|| {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg("pinseal-bench:absent")
                .query(&mut raw)
                .unwrap();
            black_box(v)
        })
    });
    // The floor for any script: one that returns 1 at once, sent with as
    // many arguments as a check by id.
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return 1")
        .query(&mut raw)
        .unwrap();
    g.bench_function("baseline EVALSHA of `return 1`", |b| {
        b.iter(|| {
            let v: i64 = redis::cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg("pinseal-bench:absent")
                .arg("i")
                .arg(&[0x49u8; 32][..])
                .arg(&[0x57u8; 32][..])
                .arg(1_700_000_001_000u64)
                .arg(5)
                .arg(600_000)
                .arg(60_000)
                .arg("pinseal-bench:")
                .arg(0)
                .arg("")
                .arg("")
                .arg("")
                .query(&mut raw)
                .unwrap();
            black_box(v)
        })
    });
    g.finish();
    round_trips(&url);
    let otp = bench_store(c, "redis", store);

    let mut g = c.benchmark_group("otp/redis-8-threads");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline GET", |b| {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conns: Vec<redis::Connection> =
            (0..8).map(|_| client.get_connection().unwrap()).collect();
        b.iter_custom(|iters| {
            let per = iters.div_ceil(8);
            let start = Instant::now();
            std::thread::scope(|s| {
                for conn in &mut conns {
                    s.spawn(move || {
                        for _ in 0..per {
                            let v: Option<Vec<u8>> = redis::cmd("GET")
                                .arg("pinseal-bench:absent")
                                .query(conn)
                                .unwrap();
                            black_box(v);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.bench_function("verify", |b| {
        b.iter_custom(|iters| {
            threaded(&otp, 8, iters, |otp, (id, code, _)| {
                assert_eq!(
                    otp.verify(&id, code.expose_secret()).unwrap(),
                    Verdict::Approved
                )
            })
        })
    });
    g.bench_function("check", |b| {
        b.iter_custom(|iters| {
            threaded(&otp, 8, iters, |otp, (_, code, s)| {
                assert_eq!(
                    otp.check(&s, code.expose_secret()).unwrap(),
                    Verdict::Approved
                )
            })
        })
    });
    g.bench_function("issue", |b| {
        b.iter_custom(|iters| {
            // Issues for fresh subjects: one per timed operation.
            threaded(&otp, 8, iters, |otp, _| {
                black_box(otp.issue(&subject()).unwrap());
            })
        })
    });
    g.finish();

    #[cfg(feature = "redis-tokio")]
    {
        let rt = runtime();
        let store = rt
            .block_on(
                pinseal::otp::store::AsyncRedisStore::builder()
                    .url(&url)
                    .prefix("pinseal-bench:")
                    .connect(),
            )
            .unwrap();
        async_one_thread(c, "redis", &rt, store);

        // The baseline: raw `GET`s, 64 in flight on one multiplexed
        // connection, as the async store sends its commands.
        let conn = rt
            .block_on(
                redis::Client::open(url.as_str())
                    .unwrap()
                    .get_multiplexed_async_connection(),
            )
            .unwrap();
        let mut g = c.benchmark_group("otp/redis-async-1-thread-64-in-flight-baseline");
        g.throughput(Throughput::Elements(1));
        g.bench_function("GET", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    // As `async_one_thread` runs its operations.
                    let mut set = Vec::new();
                    let mut next = 0;
                    while next < iters || !set.is_empty() {
                        while next < iters && set.len() < 64 {
                            let mut conn = conn.clone();
                            set.push(tokio::spawn(async move {
                                let v: Option<Vec<u8>> = redis::cmd("GET")
                                    .arg("pinseal-bench:absent")
                                    .query_async(&mut conn)
                                    .await
                                    .unwrap();
                                black_box(v);
                            }));
                            next += 1;
                        }
                        set.remove(0).await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        g.finish();
    }
}

#[cfg(any(
    feature = "redis-tokio",
    all(feature = "dynamodb", feature = "aws-https")
))]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// DynamoDB's API on a local server (`PINSEAL_DYNAMODB_URL`, dynalite):
/// figures for the client and the local server, not for DynamoDB.
#[cfg(all(feature = "dynamodb", feature = "aws-https"))]
fn dynamo(c: &mut Criterion) {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let Ok(url) = std::env::var("PINSEAL_DYNAMODB_URL") else {
        return eprintln!("otp/dynamodb-local skipped: PINSEAL_DYNAMODB_URL is not set");
    };
    let rt = runtime();
    let requests = dynamo_requests::Requests::default();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("local", "local", None, None, "bench"))
        .interceptor(requests.clone())
        .build();
    let builder = pinseal::otp::store::DynamoStore::builder(
        aws_sdk_dynamodb::Client::from_conf(config),
        format!("pinseal-bench-{}", std::process::id()),
    );
    rt.block_on(builder.create_table()).unwrap();
    let store = rt.block_on(builder.connect()).unwrap();
    // Requests per operation, as the client sent them.
    {
        let otp =
            pinseal::otp::aio::Otp::with_store(&Key::from_bytes([7; 32]), policy(), store.clone());
        requests.take();
        let s = subject();
        let (id, code) = rt.block_on(otp.issue(&s)).unwrap();
        let issue = requests.take().1;
        let v = rt.block_on(otp.verify(&id, code.expose_secret())).unwrap();
        assert_eq!(v, Verdict::Approved);
        let verify = requests.take().1;
        let (_, code) = rt.block_on(otp.issue(&s)).unwrap();
        requests.take();
        let v = rt.block_on(otp.check(&s, code.expose_secret())).unwrap();
        assert_eq!(v, Verdict::Approved);
        let check = requests.take().1;
        eprintln!("otp/dynamodb-local requests: issue {issue}, verify {verify}, check {check}");
    }
    async_one_thread(c, "dynamodb-local", &rt, store);
}

#[cfg(all(feature = "dynamodb", feature = "aws-https"))]
#[path = "../tests/common/dynamo_requests.rs"]
mod dynamo_requests;

/// One client thread (a current-thread tokio runtime): one operation at a
/// time, then 64 in flight.
#[cfg(any(
    feature = "redis-tokio",
    all(feature = "dynamodb", feature = "aws-https")
))]
fn async_one_thread<S: pinseal::otp::store::AsyncStore + 'static>(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: S,
) {
    const IN_FLIGHT: u64 = 64;
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let otp = Arc::new(pinseal::otp::aio::Otp::with_parts(
        &Key::from_bytes([7; 32]),
        policy(),
        store,
        clock.clone(),
    ));

    /// Runs `iters` operations, `IN_FLIGHT` at a time; returns the time.
    fn run(
        rt: &tokio::runtime::Runtime,
        iters: u64,
        task: impl Fn(u64) -> tokio::task::JoinHandle<()>,
    ) -> Duration {
        rt.block_on(async {
            let start = Instant::now();
            let mut next = 0;
            let mut set = Vec::new();
            while next < iters || !set.is_empty() {
                while next < iters && (set.len() as u64) < IN_FLIGHT {
                    set.push(task(next));
                    next += 1;
                }
                let first = set.remove(0);
                first.await.unwrap();
            }
            start.elapsed()
        })
    }

    let mut g = c.benchmark_group(format!("otp/{name}-async-1-thread-1-in-flight"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("issue", |b| {
        b.iter(|| rt.block_on(otp.issue(&subject())).unwrap())
    });
    g.bench_function("check", |b| {
        b.iter_batched(
            || {
                let s = subject();
                let (_, code) = rt.block_on(otp.issue(&s)).unwrap();
                (s, code)
            },
            |(s, code)| {
                let verdict = rt.block_on(otp.check(&s, code.expose_secret()));
                assert_eq!(verdict.unwrap(), Verdict::Approved)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group(format!("otp/{name}-async-1-thread-64-in-flight"));
    g.throughput(Throughput::Elements(1));
    for op in ["verify", "check", "issue"] {
        g.bench_function(op, |b| {
            b.iter_custom(|iters| {
                // Challenges first, untimed.
                let issued: Vec<Issued> = rt.block_on(async {
                    let mut v = Vec::new();
                    if op != "issue" {
                        // Distinct subjects, no clock move: none expires.
                        for _ in 0..iters {
                            let s = subject();
                            let (id, code) = otp.issue(&s).await.unwrap();
                            v.push((id, code, s));
                        }
                    }
                    v
                });
                let issued = Arc::new(std::sync::Mutex::new(issued));
                run(rt, iters, |_| {
                    let (otp, issued) = (otp.clone(), issued.clone());
                    tokio::spawn(async move {
                        if op == "issue" {
                            black_box(otp.issue(&subject()).await.unwrap());
                            return;
                        }
                        let (id, code, s) = issued.lock().unwrap().pop().unwrap();
                        let verdict = if op == "verify" {
                            otp.verify(&id, code.expose_secret()).await
                        } else {
                            otp.check(&s, code.expose_secret()).await
                        };
                        assert_eq!(verdict.unwrap(), Verdict::Approved);
                    })
                })
            })
        });
    }
    g.finish();
}

/// Verify and check on the memory store from 1, 2 and 8 threads at once
/// (on a 2-core machine, 8 threads measure contention, not more speed).
/// Each sample issues its challenges first, untimed, at one instant, then
/// moves the clock past them so the next sample starts on an empty store.
fn memory_threads(c: &mut Criterion) {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let otp = Arc::new(Otp::with_parts(
        &Key::from_bytes([7; 32]),
        policy(),
        MemoryStore::with_capacity(1_000_000),
        clock.clone(),
    ));
    let run = |threads: u64, iters: u64, op: fn(&Otp<MemoryStore, ManualClock>, Issued)| {
        clock.advance(Duration::from_secs(2));
        let per = iters.div_ceil(threads);
        let work: Vec<Vec<Issued>> = (0..threads)
            .map(|_| {
                (0..per)
                    .map(|_| {
                        let s = subject();
                        let (id, code) = otp.issue(&s).unwrap();
                        (id, code, s)
                    })
                    .collect()
            })
            .collect();
        let start = Instant::now();
        std::thread::scope(|s| {
            for batch in work {
                let otp = &otp;
                s.spawn(move || {
                    for item in batch {
                        op(otp, item);
                    }
                });
            }
        });
        start.elapsed()
    };
    let mut g = c.benchmark_group("otp/memory-threads");
    g.throughput(Throughput::Elements(1));
    for threads in [1, 2, 8] {
        g.bench_function(format!("verify/{threads}"), |b| {
            b.iter_custom(|iters| {
                run(threads, iters, |otp, (id, code, _)| {
                    assert_eq!(
                        otp.verify(&id, code.expose_secret()).unwrap(),
                        Verdict::Approved
                    )
                })
            })
        });
        g.bench_function(format!("check/{threads}"), |b| {
            b.iter_custom(|iters| {
                run(threads, iters, |otp, (_, code, s)| {
                    assert_eq!(
                        otp.check(&s, code.expose_secret()).unwrap(),
                        Verdict::Approved
                    )
                })
            })
        });
    }
    g.finish();
}

/// One blocking thread on a Redis Cluster, when `PINSEAL_REDIS_CLUSTER`
/// names one: a plain issue and verification, issues that spend one and
/// two client counters (each in a slot of its own, sent at once before the
/// subject's script), and one that spends a counter and then a fraud
/// guard's prefix, next to a raw `GET` from redis-rs's own blocking
/// cluster client.
#[cfg(feature = "redis")]
fn redis_cluster(c: &mut Criterion) {
    let Ok(seeds) = std::env::var("PINSEAL_REDIS_CLUSTER") else {
        return;
    };
    let seeds: Vec<String> = seeds.split(',').map(str::to_string).collect();
    let store = pinseal::otp::store::RedisStore::builder()
        .cluster(seeds.clone())
        .prefix("pinseal-bench:")
        .connect();
    let store = match store {
        Ok(store) => store,
        Err(e) => return eprintln!("otp/redis-cluster skipped: {e}"),
    };
    let mut raw = redis::cluster::ClusterClient::new(seeds)
        .unwrap()
        .get_connection()
        .unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let otp = Otp::with_parts(&Key::from_bytes([7; 32]), policy(), store, clock.clone());
    let limit = pinseal::otp::RateLimit::new("ip")
        .unwrap()
        .bucket(1000, Duration::from_secs(1))
        .unwrap()
        .bucket(1000, Duration::from_secs(2))
        .unwrap();
    let mut g = c.benchmark_group("otp/redis-cluster");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline GET", |b| {
        b.iter(|| {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg("pinseal-bench:absent")
                .query(&mut raw)
                .unwrap();
            black_box(v)
        })
    });
    g.bench_function("issue", |b| b.iter(|| black_box(issue(&otp, &clock))));
    g.bench_function("issue from a client", |b| {
        b.iter(|| {
            clock.advance(Duration::from_secs(1));
            black_box(otp.issue_from(&subject(), "203.0.113.7").unwrap())
        })
    });
    g.bench_function("issue under two buckets", |b| {
        b.iter(|| {
            clock.advance(Duration::from_secs(1));
            black_box(
                otp.issue_limited(&subject(), &[limit.key("203.0.113.8")])
                    .unwrap(),
            )
        })
    });
    g.bench_function("verify", |b| {
        b.iter_batched(
            || issue(&otp, &clock),
            |(id, code, _)| {
                assert_eq!(
                    otp.verify(&id, code.expose_secret()).unwrap(),
                    Verdict::Approved
                )
            },
            BatchSize::PerIteration,
        )
    });
    // A fraud guard whose prefix (the number without its last six digits)
    // never blocks here: the prefix's send is counted once the client's
    // counter has said yes, then the subject's script runs.
    let guard = pinseal::otp::FraudGuard::new()
        .with_prefix_limit(6, 1_000_000, Duration::from_secs(3600))
        .unwrap();
    let guarded = otp.with_fraud_guard(guard);
    g.bench_function("issue from a client, with a fraud guard", |b| {
        b.iter(|| {
            clock.advance(Duration::from_secs(1));
            black_box(guarded.issue_from(&subject(), "203.0.113.9").unwrap())
        })
    });
    g.finish();
}

fn otp(c: &mut Criterion) {
    bench_store(c, "memory", MemoryStore::new());
    memory_threads(c);
    #[cfg(feature = "redis")]
    redis(c);
    #[cfg(feature = "redis")]
    redis_cluster(c);
    #[cfg(all(feature = "dynamodb", feature = "aws-https"))]
    dynamo(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = otp
}
criterion_main!(benches);
