//! TOTP enrollment: the `otpauth://` URI both ways against pyotp (an
//! implementation nobody here wrote), URI parsing errors, and replay
//! protection shared by two verifier instances on one Redis.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pinseal::otp::totp::{Algorithm, Totp};
use pinseal::{Error, ExposeSecret, Secret};

fn python() -> String {
    std::env::var("PINSEAL_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs the pyotp helper over `lines`, or says why it cannot (failing
/// under CI).
fn pyotp(lines: &[String]) -> Option<Vec<String>> {
    let ok = Command::new(python())
        .args(["-c", "import pyotp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        common::unavailable("Python with the `pyotp` package for the TOTP interop tests");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyotp_totp.py");
    let mut command = Command::new(python());
    command.arg(script);
    Some(common::run_lines(command, lines))
}

/// Deterministic pseudo-random cases: secret, hash, digits, period,
/// issuer, account, time.
struct Case {
    secret: Vec<u8>,
    hash: Algorithm,
    digits: u8,
    period: u64,
    issuer: String,
    account: String,
    time: u64,
}

fn cases(n: usize) -> Vec<Case> {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).unwrap();
    let mut x = u64::from_le_bytes(seed) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const NAMES: [&str; 8] = [
        "ACME Co",
        "alice@example.com",
        "Bank & Trust",
        "a+b=c",
        "Zürich Télécom",
        "user/42?x#y",
        "☎ support",
        "plain",
    ];
    (0..n)
        .map(|_| Case {
            secret: (0..16 + next() % 49).map(|_| next() as u8).collect(),
            hash: [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512][(next() % 3) as usize],
            digits: 6 + (next() % 3) as u8,
            period: [15, 30, 45, 60, 90][(next() % 5) as usize],
            issuer: NAMES[(next() % 8) as usize].to_string(),
            account: format!("{}-{}", NAMES[(next() % 8) as usize], next() % 1000),
            time: 1_500_000_000 + next() % 500_000_000,
        })
        .collect()
}

fn totp_of(c: &Case) -> Totp {
    Totp::new(
        Secret::new(c.secret.clone()),
        Duration::from_secs(c.period),
        c.digits,
        c.hash,
    )
    .unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn pyotp_reads_the_uris_pinseal_writes() {
    let cases = cases(300);
    let lines: Vec<String> = cases
        .iter()
        .map(|c| {
            let uri = totp_of(c).to_uri(&c.issuer, &c.account);
            format!("code {} {}", const_hex::encode(uri.expose_secret()), c.time)
        })
        .collect();
    let Some(out) = pyotp(&lines) else { return };
    for (c, code) in cases.iter().zip(&out) {
        assert_eq!(
            code,
            totp_of(c).generate(at(c.time)).expose_secret(),
            "{:?} {} digits {} s",
            c.hash,
            c.digits,
            c.period
        );
    }
}

#[test]
fn pinseal_reads_the_uris_pyotp_writes() {
    let cases = cases(300);
    let lines: Vec<String> = cases
        .iter()
        .map(|c| {
            format!(
                "make {} {} {} {} {} {} {}",
                const_hex::encode(&c.secret),
                c.hash.uri_name(),
                c.digits,
                c.period,
                const_hex::encode(&c.issuer),
                const_hex::encode(&c.account),
                c.time
            )
        })
        .collect();
    let Some(out) = pyotp(&lines) else { return };
    for (c, line) in cases.iter().zip(&out) {
        let (uri, code) = line.split_once(' ').expect("uri and code");
        let parsed = Totp::from_uri(uri).unwrap_or_else(|e| panic!("{e}: {:?}", c.hash));
        assert!(parsed.secret().expose_secret() == &c.secret);
        assert_eq!(
            (parsed.algorithm(), parsed.digits(), parsed.step()),
            (c.hash, c.digits, Duration::from_secs(c.period))
        );
        assert_eq!(parsed.generate(at(c.time)).expose_secret(), code);
        // pyotp leaves out parameters at their defaults and `/` unencoded;
        // pinseal writes every parameter and encodes all but unreserved
        // characters. The labels decode to the same text.
        let ours = totp_of(c).to_uri(&c.issuer, &c.account);
        let label = |u: &str| {
            let (l, _) = u.split_once('?').unwrap();
            percent_encoding::percent_decode_str(l)
                .decode_utf8()
                .unwrap()
                .into_owned()
        };
        assert_eq!(label(ours.expose_secret()), label(uri));
    }
}

#[test]
fn uri_errors_are_typed_and_never_echo_the_uri() {
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // 20 bytes
    let good = format!("otpauth://totp/ACME:alice?secret={secret}&issuer=ACME");
    let t = Totp::from_uri(&good).unwrap();
    assert_eq!(
        (t.algorithm(), t.digits(), t.step()),
        (Algorithm::Sha1, 6, Duration::from_secs(30)),
        "defaults"
    );
    // 64 bytes of secret: the longest a URI may carry.
    assert!(Totp::from_uri(&format!("otpauth://totp/A:a?secret={}", "A".repeat(103))).is_ok());
    // Either case, padding or not.
    assert!(Totp::from_uri(&good.to_lowercase()).is_ok());
    assert!(Totp::from_uri(&good.replace(secret, &format!("{secret}===="))).is_ok());
    let bad = [
        format!("otpauth://hotp/ACME:alice?secret={secret}"),
        format!("https://totp/ACME:alice?secret={secret}"),
        "otpauth://totp/ACME:alice?issuer=ACME".to_string(),
        format!("otpauth://totp/ACME:alice?secret={secret}&secret={secret}"),
        format!("otpauth://totp/ACME:alice?secret={secret}&digits=5"),
        format!("otpauth://totp/ACME:alice?secret={secret}&digits=9"),
        format!("otpauth://totp/ACME:alice?secret={secret}&digits=six"),
        format!("otpauth://totp/ACME:alice?secret={secret}&period=0"),
        format!("otpauth://totp/ACME:alice?secret={secret}&period=86401"),
        format!("otpauth://totp/ACME:alice?secret={secret}&algorithm=MD5"),
        format!("otpauth://totp/ACME:alice?secret={secret}1"),
        format!("otpauth://totp/ACME:alice?secret={secret}%ZZ"),
        // 10 bytes: the common 16-character secret, under RFC 4226's minimum.
        "otpauth://totp/ACME:alice?secret=JBSWY3DPEHPK3PXP".to_string(),
        // 65 bytes of secret (one over the cap), and a 62 500-byte one.
        format!("otpauth://totp/ACME:alice?secret={}", "A".repeat(104)),
        format!("otpauth://totp/ACME:alice?secret={}", "A".repeat(100_000)),
        // A URI longer than any enrollment needs.
        format!(
            "otpauth://totp/ACME:alice?secret={secret}&issuer={}",
            "x".repeat(2048)
        ),
    ];
    for uri in &bad {
        let err = Totp::from_uri(uri).unwrap_err();
        assert_eq!(err, Error::InvalidOtpUri, "{uri}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("GEZDGNBV") && !shown.contains("JBSWY3DP"),
            "{shown}"
        );
    }
    // The URI itself is a secret: its Debug is redacted.
    let uri = t.to_uri("ACME", "alice");
    assert_eq!(format!("{uri:?}"), "*REDACTED*");
    assert_eq!(format!("{t:?}").matches("GEZDGNBV").count(), 0);
}

#[test]
fn random_secrets_are_fresh_and_long_enough() {
    let a = Totp::random();
    let b = Totp::random();
    assert_eq!(
        a.secret().expose_secret().len(),
        pinseal::otp::totp::SECRET_LEN
    );
    assert!(a.secret() != b.secret());
    assert_eq!(a.secret_base32().expose_secret().len(), 32);
    let back = Totp::from_uri(a.to_uri("i", "a").expose_secret()).unwrap();
    assert_eq!(
        back.generate_now().expose_secret(),
        a.generate_now().expose_secret()
    );
}

#[cfg(feature = "qr")]
#[test]
fn qr_svg_is_an_svg() {
    let svg = Totp::random()
        .to_qr_svg("ACME Co", "alice@example.com")
        .unwrap();
    let svg = svg.expose_secret();
    assert!(
        svg.contains("<svg") && svg.contains("</svg>"),
        "{}",
        &svg[..80]
    );
    assert!(svg.len() > 1000);
    assert!(Totp::random().to_qr_svg(&"x".repeat(5000), "a").is_err());
}

/// Two verifier instances on one Redis: a code accepted by one is refused
/// by the other, and 8 threads racing one code across both get exactly one
/// acceptance.
#[cfg(feature = "redis")]
#[test]
fn replay_protection_is_shared_through_redis() {
    use pinseal::Key;
    use pinseal::otp::SystemClock;
    use pinseal::otp::store::RedisStore;
    use pinseal::otp::totp::TotpGuard;
    let Some(first) = common::redis_store() else {
        return;
    };
    let prefix = first.prefix().to_string();
    let second = RedisStore::builder()
        .url(common::redis_url())
        .prefix(prefix)
        .connect()
        .unwrap();
    let pepper = Key::from_bytes([8; 32]);
    // Racing submissions are replays, which count as wrong codes: a budget
    // that allows them, as this test is about accepting once.
    let lenient = |g: TotpGuard<_, _>| g.with_attempt_limit(100, Duration::from_secs(60)).unwrap();
    let a = lenient(TotpGuard::with_parts(&pepper, first, SystemClock));
    let b = lenient(TotpGuard::with_parts(&pepper, second, SystemClock));
    let dave = Totp::random().with_skew(1);
    let code = dave.generate_now();
    assert!(a.verify("dave", &dave, code.expose_secret()).unwrap());
    assert!(
        !b.verify("dave", &dave, code.expose_secret()).unwrap(),
        "replayed on B"
    );
    assert!(
        !a.verify("dave", &dave, code.expose_secret()).unwrap(),
        "replayed on A"
    );

    for round in 0..10 {
        let erin = Totp::random();
        let code = erin.generate_now();
        let subject = format!("erin-{round}");
        let accepted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let guard = if i % 2 == 0 { &a } else { &b };
                    let (erin, code, subject) = (&erin, &code, &subject);
                    s.spawn(move || guard.verify(subject, erin, code.expose_secret()).unwrap())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(accepted, 1, "round {round}");
    }
}

/// The guard on an async store: a replay is refused, and eight tasks
/// racing one code get exactly one acceptance.
#[test]
fn the_async_guard_accepts_each_step_once() {
    use pinseal::Key;
    use pinseal::otp::aio::TotpGuard;
    use pinseal::otp::store::{DynStore, MemoryStore};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let guard = std::sync::Arc::new(
        TotpGuard::with_store(&Key::from_bytes([9; 32]), DynStore::new(MemoryStore::new()))
            .with_attempt_limit(100, std::time::Duration::from_secs(60))
            .unwrap(),
    );
    rt.block_on(async {
        let frank = Totp::random();
        let code = frank.generate_now();
        assert!(
            guard
                .verify("frank", &frank, code.expose_secret())
                .await
                .unwrap()
        );
        assert!(
            !guard
                .verify("frank", &frank, code.expose_secret())
                .await
                .unwrap()
        );
        for round in 0..10 {
            let subject = format!("grace-{round}");
            let grace = std::sync::Arc::new(Totp::random());
            let code = std::sync::Arc::new(grace.generate_now());
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (guard, grace, code, subject) =
                        (guard.clone(), grace.clone(), code.clone(), subject.clone());
                    tokio::spawn(async move {
                        guard
                            .verify(&subject, &grace, code.expose_secret())
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut accepted = 0;
            for t in tasks {
                accepted += usize::from(t.await.unwrap());
            }
            assert_eq!(accepted, 1, "round {round}");
        }
    });
}

/// A blocking guard and an async guard on one Redis share what was
/// accepted: a code accepted through one is a replay on the other.
#[cfg(feature = "redis-tokio")]
#[test]
fn blocking_and_async_guards_share_one_redis() {
    use pinseal::Key;
    use pinseal::otp::SystemClock;
    use pinseal::otp::store::AsyncRedisStore;
    use pinseal::otp::totp::TotpGuard;
    let Some(blocking_store) = common::redis_store() else {
        return;
    };
    let prefix = blocking_store.prefix().to_string();
    let pepper = Key::from_bytes([10; 32]);
    let blocking = TotpGuard::with_parts(&pepper, blocking_store, SystemClock);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let async_store = rt
        .block_on(
            AsyncRedisStore::builder()
                .url(common::redis_url())
                .prefix(prefix)
                .connect(),
        )
        .unwrap();
    let aio = pinseal::otp::aio::TotpGuard::with_store(&pepper, async_store);
    let heidi = Totp::random();
    let code = heidi.generate_now();
    assert!(
        rt.block_on(aio.verify("heidi", &heidi, code.expose_secret()))
            .unwrap()
    );
    assert!(
        !blocking
            .verify("heidi", &heidi, code.expose_secret())
            .unwrap(),
        "replayed on the blocking guard"
    );
}
