//! HOTP/TOTP against RFC 4226 and RFC 6238, TOTP replay protection, and the
//! uniformity of generated codes.

mod common;

use common::read_blocks;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pinseal::otp::totp::{Algorithm, Totp, TotpGuard, hotp, totp};
use pinseal::otp::{Clock, ManualClock, MemoryStore, random_code};
use pinseal::{Error, ExposeSecret, Key, Secret};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// RFC 4226 appendix D: all ten counters.
#[test]
fn rfc4226_appendix_d() {
    let blocks = read_blocks("rfc4226_hotp.txt", "COUNT");
    assert_eq!(blocks.len(), 10);
    for b in &blocks {
        let counter: u64 = b.get("COUNTER").parse().unwrap();
        let code = hotp(b.get("SECRET").as_bytes(), counter, 6, Algorithm::Sha1).unwrap();
        assert_eq!(code.expose_secret(), b.get("HOTP"), "counter {counter}");
    }
}

/// RFC 6238 appendix B: all 18 rows (six times, three hash functions, the
/// per-algorithm seeds), 8 digits, 30-second steps.
#[test]
fn rfc6238_appendix_b() {
    let blocks = read_blocks("rfc6238_totp.txt", "COUNT");
    assert_eq!(blocks.len(), 18);
    for b in &blocks {
        let hash = match b.get("MODE") {
            "SHA1" => Algorithm::Sha1,
            "SHA256" => Algorithm::Sha256,
            "SHA512" => Algorithm::Sha512,
            other => panic!("unknown mode {other}"),
        };
        let time: u64 = b.get("TIME").parse().unwrap();
        let code = totp(b.get("SECRET").as_bytes(), at(time), secs(30), 8, hash).unwrap();
        assert_eq!(code.expose_secret(), b.get("TOTP"), "T={time} {hash:?}");
        let verifier = Totp::new(
            Secret::new(b.get("SECRET").as_bytes().to_vec()),
            secs(30),
            8,
            hash,
        )
        .unwrap();
        assert_eq!(
            verifier.verify(b.get("TOTP"), at(time), None),
            Some(time / 30)
        );
    }
}

#[test]
fn parameters_are_checked() {
    let k16 = [7u8; 16];
    for digits in [0, 5, 9, 10] {
        assert_eq!(
            hotp(&k16, 0, digits, Algorithm::Sha1).unwrap_err(),
            Error::InvalidOtpParameter
        );
    }
    // RFC 4226 R6: at least 128 bits of secret.
    for short in [&b""[..], b"k", &[7u8; 15]] {
        assert_eq!(
            hotp(short, 0, 6, Algorithm::Sha1).unwrap_err(),
            Error::InvalidOtpParameter
        );
        assert!(Totp::new(Secret::new(short.to_vec()), secs(30), 6, Algorithm::Sha1).is_err());
    }
    assert!(hotp(&k16, 0, 6, Algorithm::Sha1).is_ok());
    assert_eq!(
        totp(&k16, at(0), secs(0), 6, Algorithm::Sha1).unwrap_err(),
        Error::InvalidOtpParameter
    );
    assert!(Totp::new(Secret::new(k16.to_vec()), secs(0), 6, Algorithm::Sha1).is_err());
    // One argument order: secret, step, digits, hash (as `totp`).
    let t = Totp::new(Secret::new(k16.to_vec()), secs(60), 8, Algorithm::Sha256).unwrap();
    assert_eq!(
        (t.step(), t.digits(), t.algorithm()),
        (secs(60), 8, Algorithm::Sha256)
    );
    assert_eq!(
        t.generate(at(1_000_000)).expose_secret(),
        totp(&k16, at(1_000_000), secs(60), 8, Algorithm::Sha256)
            .unwrap()
            .expose_secret()
    );
}

#[test]
fn totp_skew_window_and_replay() {
    let secret = b"12345678901234567890";
    let t = 1_111_111_109;
    let verifier = Totp::new(Secret::new(secret.to_vec()), secs(30), 6, Algorithm::Sha1)
        .unwrap()
        .with_skew(1);
    let prev = totp(secret, at(t - 30), secs(30), 6, Algorithm::Sha1).unwrap();
    let next = totp(secret, at(t + 30), secs(30), 6, Algorithm::Sha1).unwrap();
    let far = totp(secret, at(t + 60), secs(30), 6, Algorithm::Sha1).unwrap();
    assert_eq!(
        verifier.verify(prev.expose_secret(), at(t), None),
        Some(t / 30 - 1)
    );
    assert_eq!(
        verifier.verify(next.expose_secret(), at(t), None),
        Some(t / 30 + 1)
    );
    assert_eq!(verifier.verify(far.expose_secret(), at(t), None), None);
    // Once step s is accepted, s and anything before it are refused.
    assert_eq!(
        verifier.verify(prev.expose_secret(), at(t), Some(t / 30 - 1)),
        None
    );
    assert_eq!(
        verifier.verify(next.expose_secret(), at(t), Some(t / 30)),
        Some(t / 30 + 1)
    );
    for junk in ["", "12345", "1234567", "abcdef", " 12345", "１２３４５６"] {
        assert_eq!(verifier.verify(junk, at(t), None), None);
    }

    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(t));
    let guard = TotpGuard::with_parts(&Key::from_bytes([3; 32]), MemoryStore::new(), clock.clone());
    let alice = Totp::new(Secret::new(secret.to_vec()), secs(30), 6, Algorithm::Sha1)
        .unwrap()
        .with_skew(1);
    let bob = Totp::new(Secret::new(secret.to_vec()), secs(30), 6, Algorithm::Sha1)
        .unwrap()
        .with_skew(1);
    let now = totp(secret, at(t), secs(30), 6, Algorithm::Sha1).unwrap();
    assert!(guard.verify("alice", &alice, now.expose_secret()).unwrap());
    assert!(
        !guard.verify("alice", &alice, now.expose_secret()).unwrap(),
        "replay refused"
    );
    assert!(
        !guard.verify("alice", &alice, prev.expose_secret()).unwrap(),
        "older step refused"
    );
    assert!(
        guard.verify("bob", &bob, now.expose_secret()).unwrap(),
        "per subject"
    );
    clock.advance(Duration::from_secs(30));
    assert!(guard.verify("alice", &alice, next.expose_secret()).unwrap());
    // The record expires one step and a minute (the clock allowance) after
    // the skew window has moved past it: bounded memory.
    let step = (t + 30) / 30;
    let expiry_ms = (step + 1 + 2) * 30 * 1000 + 60_000;
    assert_eq!(
        guard
            .store()
            .len(UNIX_EPOCH + Duration::from_millis(expiry_ms - 1)),
        1,
        "alice's record is kept until then"
    );
    assert_eq!(
        guard
            .store()
            .len(UNIX_EPOCH + Duration::from_millis(expiry_ms)),
        0,
        "the record expires then"
    );
}

#[test]
fn concurrent_totp_submissions_accept_once() {
    let secret = b"12345678901234567890";
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000));
    // Seven of each eight submissions are replays, which count as wrong
    // codes: a budget that allows them, as this test is about the race.
    let guard = TotpGuard::with_parts(&Key::from_bytes([4; 32]), MemoryStore::new(), clock.clone())
        .with_attempt_limit(100, secs(1))
        .unwrap();
    let carol = Totp::new(Secret::new(secret.to_vec()), secs(30), 6, Algorithm::Sha1).unwrap();
    for round in 0..50u64 {
        let t = 1_000_000 + round * 30;
        clock.set(at(t));
        let code = totp(secret, at(t), secs(30), 6, Algorithm::Sha1).unwrap();
        let accepted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| guard.verify("carol", &carol, code.expose_secret()).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(accepted, 1, "round {round}");
    }
}

/// Pearson's chi-squared statistic of `counts` against a uniform expectation.
fn chi_squared(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// Critical value of chi-squared with 9 degrees of freedom at p = 0.0001:
/// a uniform generator exceeds it once in 10 000 runs.
const CHI2_9_DOF_P0001: f64 = 33.72;

/// The first and the last digit of generated codes are uniform; the test's
/// statistic does catch a modulo-biased generator.
#[test]
fn codes_are_uniform() {
    const N: usize = 100_000;
    let (mut first, mut last) = ([0u64; 10], [0u64; 10]);
    for _ in 0..N {
        let code = random_code(6).unwrap();
        let b = code.expose_secret().as_bytes();
        assert_eq!(b.len(), 6);
        assert!(b.iter().all(u8::is_ascii_digit));
        first[usize::from(b[0] - b'0')] += 1;
        last[usize::from(b[5] - b'0')] += 1;
    }
    let (c1, c2) = (chi_squared(&first), chi_squared(&last));
    assert!(
        c1 < CHI2_9_DOF_P0001,
        "first digit not uniform: chi2 = {c1:.2} {first:?}"
    );
    assert!(
        c2 < CHI2_9_DOF_P0001,
        "last digit not uniform: chi2 = {c2:.2} {last:?}"
    );

    // Control: a byte reduced modulo 10 (digits 0-5 have 26/256, 6-9 have
    // 25/256) must be flagged by the same statistic and threshold.
    let mut biased = [0u64; 10];
    let mut bytes = vec![0u8; 300_000];
    getrandom::fill(&mut bytes).unwrap();
    for b in bytes {
        biased[usize::from(b % 10)] += 1;
    }
    assert!(
        chi_squared(&biased) > CHI2_9_DOF_P0001,
        "the test can detect modulo bias"
    );
}

#[test]
fn codes_keep_leading_zeros_and_check_length() {
    let mut saw_leading_zero = false;
    for _ in 0..2_000 {
        let code = random_code(4).unwrap();
        assert_eq!(code.expose_secret().len(), 4);
        saw_leading_zero |= code.expose_secret().starts_with('0');
    }
    assert!(
        saw_leading_zero,
        "P(no leading zero in 2000 draws) = 0.9^2000"
    );
    assert_eq!(random_code(10).unwrap().expose_secret().len(), 10);
    assert_eq!(random_code(3).unwrap_err(), Error::InvalidPolicy);
    assert_eq!(random_code(11).unwrap_err(), Error::InvalidPolicy);
}

#[test]
fn totp_guesses_are_limited_per_subject_and_shared_by_guards_with_one_pepper() {
    use pinseal::Error;
    let secret = b"12345678901234567890";
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(2_000_000));
    let store = std::sync::Arc::new(MemoryStore::new());
    let pepper = Key::from_bytes([5; 32]);
    let a = TotpGuard::with_parts(&pepper, store.clone(), clock.clone());
    let b = TotpGuard::with_parts(&pepper, store.clone(), clock.clone());
    let dan = Totp::new(Secret::new(secret.to_vec()), secs(30), 6, Algorithm::Sha1).unwrap();
    let right = totp(secret, clock.now(), secs(30), 6, Algorithm::Sha1).unwrap();
    // A guesser over every code, spread over two instances.
    let (mut wrong, mut locked) = (0, 0);
    for guess in 0..1_000_000u32 {
        let guess = format!("{guess:06}");
        let guard = if guess.ends_with('1') { &a } else { &b };
        match guard.verify("dan", &dan, &guess) {
            Ok(true) => panic!("a guess was accepted"),
            Ok(false) => wrong += 1,
            Err(Error::Locked { retry_after }) => {
                assert!(retry_after <= secs(300));
                locked += 1;
                if locked == 1_000 {
                    break;
                }
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((wrong, locked), (5, 1_000));
    // The right code too is refused until the window ends...
    assert!(matches!(
        a.verify("dan", &dan, right.expose_secret()),
        Err(Error::Locked { .. })
    ));
    // ...another subject is not affected...
    assert!(!a.verify("erin", &dan, "000000").unwrap() || right.expose_secret() == "000000");
    // ...and after it a right code is accepted and resets the count.
    clock.advance(secs(300));
    let now = totp(secret, clock.now(), secs(30), 6, Algorithm::Sha1).unwrap();
    for _ in 0..4 {
        assert!(!b.verify("dan", &dan, "99999").unwrap());
    }
    assert!(a.verify("dan", &dan, now.expose_secret()).unwrap());
    for _ in 0..5 {
        assert!(!b.verify("dan", &dan, "99999").unwrap());
    }
    assert!(b.verify("dan", &dan, "99999").is_err());
    // A guard made from another pepper keeps its own entry: the rule the
    // documentation states.
    let stranger = TotpGuard::with_parts(&Key::from_bytes([6; 32]), store.clone(), clock.clone());
    assert!(!stranger.verify("dan", &dan, "99999").unwrap());
}
