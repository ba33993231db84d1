//! A soak run: OTP traffic for a long stretch (ten minutes by default), 64
//! operations in flight from one async client thread, on the memory store
//! and, when one answers on `PINSEAL_REDIS_URL` (default 127.0.0.1:6379),
//! on Redis. Every 30 seconds it prints the operations per second, the
//! median and 99th-percentile latency of that stretch, and the process's
//! resident memory (and Redis's `used_memory`); at the end, the same for the
//! whole run. Not a test: nothing is asserted beyond every operation
//! succeeding.
//!
//! Each of the 64 tasks loops: issue a code for the next of 200 000
//! subjects (taken in turn), answer a wrong code by id, then the right one
//! by subject. Codes live 60 s and a subject's window is 60 s (1 000 sends
//! in it), so the stores reach a steady size within the first minutes,
//! and the memory figures show whether anything grows after that.
//!
//! Run: `cargo bench --bench soak --features redis-tokio`
//! (`PINSEAL_SOAK_SECS` sets the length of each store's run, in seconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pinseal::otp::store::AsyncStore;
use pinseal::otp::{MemoryStore, Policy, Verdict, aio};
use pinseal::{ExposeSecret, Key};

const IN_FLIGHT: usize = 64;
/// Subjects, reused in turn: each is issued a new code every few seconds,
/// so what the stores hold stays bounded (a subject keeps at most three
/// entries) and the resident memory shows whether anything else grows.
const SUBJECTS: u64 = 200_000;
const REPORT_EVERY: Duration = Duration::from_secs(30);

fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(60), 5)
        .unwrap()
        .with_send_budget(1_000, Duration::from_secs(60))
        .unwrap()
}

/// Latencies (µs) of one stretch, or of the whole run: a fixed histogram
/// (exact below 1 024 µs, then 64 buckets per power of two, within 1.6%),
/// so that counting takes no memory that grows with the run.
#[derive(Clone)]
struct Stretch {
    buckets: Vec<u64>,
    count: u64,
}

const EXACT: u64 = 1024;
const PER_OCTAVE: u64 = 64;

impl Default for Stretch {
    fn default() -> Self {
        Stretch {
            buckets: vec![0; (EXACT + PER_OCTAVE * 54) as usize],
            count: 0,
        }
    }
}

impl Stretch {
    fn bucket(us: u64) -> usize {
        if us < EXACT {
            return us as usize;
        }
        let octave = 63 - u64::from(us.leading_zeros()); // >= 10
        let sub = (us >> (octave - 6)) & (PER_OCTAVE - 1);
        (EXACT + (octave - 10) * PER_OCTAVE + sub) as usize
    }

    /// The smallest latency of bucket `i`.
    fn floor(i: usize) -> u64 {
        let i = i as u64;
        if i < EXACT {
            return i;
        }
        let octave = (i - EXACT) / PER_OCTAVE + 10;
        let sub = (i - EXACT) % PER_OCTAVE;
        (1 << octave) | (sub << (octave - 6))
    }

    fn record(&mut self, us: u64) {
        self.buckets[Self::bucket(us)] += 1;
        self.count += 1;
    }

    fn add(&mut self, other: &Stretch) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
    }

    fn quantile(&self, q: f64) -> u64 {
        let want = (self.count as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return Self::floor(i);
            }
        }
        0
    }

    fn line(&self, what: &str, seconds: f64) -> String {
        format!(
            "{what}: {:>8.0} ops/s, p50 {:>6} µs, p99 {:>6} µs",
            self.count as f64 / seconds,
            self.quantile(0.50),
            self.quantile(0.99),
        )
    }
}

/// The process's resident memory, in MB (Linux), or 0.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Redis's `used_memory`, in MB.
#[cfg(feature = "redis")]
fn redis_mb(url: &str) -> Option<f64> {
    let mut conn = redis::Client::open(url).ok()?.get_connection().ok()?;
    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|b| b / 1e6)
}

#[cfg(not(feature = "redis"))]
fn redis_mb(_url: &str) -> Option<f64> {
    None
}

static SUBJECT: AtomicU64 = AtomicU64::new(0);

fn soak<S: AsyncStore + 'static>(name: &str, store: S, seconds: u64, redis: Option<&str>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let otp = Arc::new(aio::Otp::with_store(
        &Key::from_bytes([5; 32]),
        policy(),
        store,
    ));
    let memory = |label: &str| {
        let redis = redis.and_then(redis_mb).map_or(String::new(), |mb| {
            format!(", Redis used_memory {mb:.0} MB")
        });
        println!("{name} {label}: resident {:.0} MB{redis}", rss_mb());
    };
    memory("at start");
    let latencies = Arc::new(std::sync::Mutex::new(Stretch::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut all = Stretch::default();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..IN_FLIGHT {
            let (otp, latencies) = (otp.clone(), latencies.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let subject = format!(
                        "+1555{:07}",
                        SUBJECT.fetch_add(1, Ordering::Relaxed) % SUBJECTS
                    );
                    let mut took = [0u64; 3];
                    let t = Instant::now();
                    let (id, code) = otp.issue(&subject).await.unwrap();
                    took[0] = t.elapsed().as_micros() as u64;
                    let wrong: String = code
                        .expose_secret()
                        .bytes()
                        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
                        .collect();
                    let t = Instant::now();
                    let verdict = otp.verify(&id, &wrong).await.unwrap();
                    took[1] = t.elapsed().as_micros() as u64;
                    assert!(matches!(verdict, Verdict::Rejected { .. }), "{verdict:?}");
                    let t = Instant::now();
                    let verdict = otp.check(&subject, code.expose_secret()).await.unwrap();
                    took[2] = t.elapsed().as_micros() as u64;
                    assert_eq!(verdict, Verdict::Approved);
                    {
                        let mut stretch = latencies.lock().unwrap();
                        for us in took {
                            stretch.record(us);
                        }
                    }
                    // The memory store never waits: let the other tasks
                    // (and the reporter) run.
                    tokio::task::yield_now().await;
                }
            }));
        }
        let start = Instant::now();
        let mut last = start;
        while Instant::now() < deadline {
            tokio::time::sleep(REPORT_EVERY.min(deadline - Instant::now())).await;
            let stretch = std::mem::take(&mut *latencies.lock().unwrap());
            let elapsed = last.elapsed().as_secs_f64();
            last = Instant::now();
            all.add(&stretch);
            let at = format!("{name} t={:>4.0}s", start.elapsed().as_secs_f64());
            let redis = redis
                .and_then(redis_mb)
                .map_or(String::new(), |mb| format!(", Redis {mb:.0} MB"));
            println!(
                "{}, resident {:.0} MB{redis}",
                stretch.line(&at, elapsed),
                rss_mb()
            );
        }
        for task in tasks {
            task.await.unwrap();
        }
        all.add(&latencies.lock().unwrap());
        println!(
            "{}",
            all.line(&format!("{name} whole run"), start.elapsed().as_secs_f64())
        );
    });
    memory("at end");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let seconds = std::env::var("PINSEAL_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    soak(
        "memory",
        MemoryStore::with_capacity(1_000_000),
        seconds,
        None,
    );
    #[cfg(feature = "redis-tokio")]
    {
        let url =
            std::env::var("PINSEAL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(
            pinseal::otp::store::AsyncRedisStore::builder()
                .url(&url)
                .prefix("pinseal-soak:")
                .connect(),
        );
        drop(rt);
        match store {
            Ok(store) => soak("redis", store, seconds, Some(&url)),
            Err(e) => eprintln!("redis soak skipped: {e}"),
        }
    }
}
