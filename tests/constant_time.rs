//! Timing evidence for the three secret comparisons, dudect-style: inputs of
//! two classes are interleaved at random, each operation is timed, the
//! slowest 10% are cropped, and Welch's t-test compares the classes.
//!
//! - `Secret` equality: unequal in the first byte vs unequal in the last;
//! - OTP verification: wrong in the first digit vs wrong in the last;
//! - envelope tag check: tag wrong in the first byte vs in the last.
//!
//! A correct (valid) tag or code takes a different path by design (the
//! plaintext is decrypted, the challenge consumed); that outcome is public.
//! What must not leak is *where* a wrong guess differs, which is what an
//! attacker would use to build a guess byte by byte.
//!
//! Threshold: dudect flags |t| > 4.5 over millions of measurements on quiet
//! machines. CI here is a shared 2-core VM with bounded samples, where
//! scheduling and frequency noise that happens to line up with one class
//! can push an honest |t| past 4.5 now and then. With |t| > 10 a false
//! alarm needs a ten-sigma event, while the deliberately leaky control
//! below lands far above it on every run, so the test can still fail.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy, Verdict};
use pinseal::{Key, OVERHEAD, Sealer, Secret};

const THRESHOLD: f64 = 10.0;
const SAMPLES: usize = 20_000;

/// A cheap deterministic coin (xorshift) so the class sequence is random
/// with respect to the machine's noise.
struct Coin(u64);
impl Coin {
    fn flip(&mut self) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 & 1 == 1
    }
}

/// Times `op(class)` `SAMPLES` times with random classes; returns Welch's t.
fn welch_t(op: impl FnMut(bool)) -> f64 {
    welch_t_with(&mut (), |_| {}, {
        let mut op = op;
        move |_, class| op(class)
    })
}

/// As [`welch_t`], with a state that `prepare` may change between timed
/// calls (outside the timing).
fn welch_t_with<S>(
    state: &mut S,
    mut prepare: impl FnMut(&mut S),
    mut op: impl FnMut(&S, bool),
) -> f64 {
    let mut coin = Coin(0x9E37_79B9_7F4A_7C15);
    let mut samples: Vec<(bool, f64)> = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES / 10 {
        prepare(state);
        op(state, coin.flip()); // warm up caches and branch predictors
    }
    for _ in 0..SAMPLES {
        let class = coin.flip();
        prepare(state);
        let start = Instant::now();
        op(state, class);
        samples.push((class, start.elapsed().as_nanos() as f64));
    }
    let mut times: Vec<f64> = samples.iter().map(|s| s.1).collect();
    times.sort_by(f64::total_cmp);
    let cut = times[times.len() * 9 / 10];
    let stats = |c: bool| {
        let xs: Vec<f64> = samples
            .iter()
            .filter(|s| s.0 == c && s.1 <= cut)
            .map(|s| s.1)
            .collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (n, mean, var)
    };
    let (n0, m0, v0) = stats(false);
    let (n1, m1, v1) = stats(true);
    (m0 - m1) / (v0 / n0 + v1 / n1).sqrt()
}

/// The control: an early-exit comparison, the classic leak.
fn leaky_eq(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if black_box(*x) != black_box(*y) {
            return false;
        }
    }
    true
}

fn differing(len: usize, at_end: bool) -> (Vec<u8>, Vec<u8>) {
    let a = vec![0x5a; len];
    let mut b = a.clone();
    b[if at_end { len - 1 } else { 0 }] ^= 1;
    (a, b)
}

#[test]
fn harness_detects_a_leaky_comparison() {
    let (a, first) = differing(1024, false);
    let (_, last) = differing(1024, true);
    let t = welch_t(|c| {
        let other = if c { &last } else { &first };
        for _ in 0..8 {
            black_box(leaky_eq(black_box(&a), black_box(other)));
        }
    });
    eprintln!("leaky control: t = {t:.1}");
    assert!(
        t.abs() > THRESHOLD,
        "the harness missed a leak (t = {t:.1})"
    );
}

#[test]
fn secret_equality_is_constant_time() {
    let (a, first) = differing(1024, false);
    let (_, last) = differing(1024, true);
    let (a, first, last) = (Secret::new(a), Secret::new(first), Secret::new(last));
    let t = welch_t(|c| {
        let other = if c { &last } else { &first };
        for _ in 0..8 {
            black_box(black_box(&a) == black_box(other));
        }
    });
    eprintln!("Secret ==: t = {t:.1}");
    assert!(
        t.abs() < THRESHOLD,
        "Secret equality leaks where inputs differ (t = {t:.1})"
    );
}

#[test]
fn envelope_tag_check_is_constant_time() {
    let sealer = Sealer::new(&Key::from_bytes([8; 32]));
    let envelope = sealer.seal(b"0123456789abcdef", b"pin");
    let mut first = envelope.clone();
    first[16 + 12] ^= 1; // first tag byte
    let mut last = envelope.clone();
    *last.last_mut().unwrap() ^= 1; // last tag byte
    assert_eq!(first.len(), 16 + OVERHEAD);
    let mut out = [0u8; 16];
    let t = welch_t(|c| {
        let env = if c { &last } else { &first };
        for _ in 0..8 {
            black_box(sealer.open_into(black_box(env), b"pin", &mut out).is_err());
        }
    });
    eprintln!("tag check: t = {t:.1}");
    assert!(
        t.abs() < THRESHOLD,
        "the tag check leaks where the tag differs (t = {t:.1})"
    );
}

#[test]
fn otp_verification_is_constant_time() {
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    let policy = Policy::new(6, Duration::from_secs(600), 100).unwrap();
    let otp = Otp::with_parts(&Key::from_bytes([9; 32]), policy, MemoryStore::new(), clock);
    let mut n = 0u32;
    let mut fresh = || {
        n += 1;
        let (id, code) = otp.issue(&format!("subject-{n}")).unwrap();
        let c = code.expose_secret().as_bytes();
        let bump = |d: u8| char::from(b'0' + (d - b'0' + 1) % 10);
        let first: String = std::iter::once(bump(c[0]))
            .chain(c[1..].iter().map(|&d| char::from(d)))
            .collect();
        let last: String = c[..5]
            .iter()
            .map(|&d| char::from(d))
            .chain(std::iter::once(bump(c[5])))
            .collect();
        (id, first, last)
    };
    // (challenge, wrong in first digit, wrong in last digit, attempts used)
    let mut state = {
        let (id, first, last) = fresh();
        (id, first, last, 0u32)
    };
    let t = welch_t_with(
        &mut state,
        |s| {
            // Stay under the attempt budget: a fresh challenge every 90 calls.
            if s.3 == 90 {
                let (id, first, last) = fresh();
                *s = (id, first, last, 0);
            }
            s.3 += 1;
        },
        |s, c| {
            let input = if c { &s.2 } else { &s.1 };
            let verdict = otp.verify(&s.0, black_box(input)).unwrap();
            assert!(matches!(verdict, Verdict::Rejected { .. }));
        },
    );
    eprintln!("OTP verify: t = {t:.1}");
    assert!(
        t.abs() < THRESHOLD,
        "OTP verification leaks where the code differs (t = {t:.1})"
    );
}
