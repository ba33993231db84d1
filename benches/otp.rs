//! OTP issue and verify on the memory store and, when one answers on
//! `PINSEAL_REDIS_URL` (default 127.0.0.1:6379), on Redis.
//!
//! Run: `cargo bench --bench otp --features redis`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pinseal::Key;
use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy, Store, Verdict};

/// One-second windows and a clock that moves a second per issue, so budgets
/// and memory never fill however long criterion runs.
fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(1), 100)
        .unwrap()
        .with_send_budget(1000, Duration::from_secs(1))
        .unwrap()
}

fn bench_store<S: Store>(c: &mut Criterion, name: &str, store: S) {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    let otp = Otp::with_parts(&Key::from_bytes([7; 32]), policy(), store, clock.clone());
    let mut g = c.benchmark_group(format!("otp/{name}"));
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("issue", |b| {
        b.iter(|| {
            n += 1;
            clock.advance(Duration::from_secs(1));
            otp.issue(black_box(&format!("+1555{}", n % 1000))).unwrap()
        })
    });
    g.bench_function("verify", |b| {
        b.iter_batched(
            || {
                n += 1;
                clock.advance(Duration::from_secs(1));
                otp.issue(&format!("+1555{}", n % 1000)).unwrap()
            },
            |(id, code)| {
                assert_eq!(
                    otp.verify(&id, code.expose_secret()).unwrap(),
                    Verdict::Approved
                )
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn otp(c: &mut Criterion) {
    bench_store(c, "memory", MemoryStore::new());
    #[cfg(feature = "redis")]
    {
        let url =
            std::env::var("PINSEAL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
        match pinseal::otp::RedisStore::open(&url) {
            Ok(store) => bench_store(c, "redis", store.with_prefix("pinseal-bench:")),
            Err(e) => eprintln!("otp/redis skipped: {e}"),
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = otp
}
criterion_main!(benches);
