//! Redaction: no secret ever reaches `Debug`, an error, a panic message or
//! serde output. (Secrets have no `Display` and serialize only by opt-in:
//! the compile-fail doctests in `src/secret.rs` and `src/serde.rs` hold
//! that.)

mod common;

use std::panic;

use common::assert_no_leak;
use pinseal::secret::{CloneableSecret, Pan, REDACTED};
use pinseal::{Error, ExposeSecret, Key, Keyring, Seal, Sealer, Secret};
use proptest::prelude::*;
use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Debug)]
#[allow(dead_code)]
struct Caller {
    call_id: u32,
    pin: Secret<String>,
    digits: Secret<Vec<u8>>,
}

fn all_formats<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}|{v:#?}|{v:>30?}|{v:<30?}|{v:^30?}|{v:+?}")
}

proptest! {
    #[test]
    fn any_two_secrets_format_identically(a in ".*", b in ".*",
                                          x in prop::collection::vec(any::<u8>(), 0..64),
                                          y in prop::collection::vec(any::<u8>(), 0..64)) {
        let (sa, sb) = (Secret::new(a.clone()), Secret::new(b.clone()));
        prop_assert_eq!(all_formats(&sa), all_formats(&sb));
        prop_assert_eq!(format!("{sa:?}"), REDACTED);
        prop_assert_eq!(format!("{sa:#?}"), REDACTED);
        let (va, vb) = (Secret::new(x.clone()), Secret::new(y.clone()));
        prop_assert_eq!(all_formats(&va), all_formats(&vb));

        let ca = Caller { call_id: 7, pin: sa, digits: va };
        let cb = Caller { call_id: 7, pin: sb, digits: vb };
        prop_assert_eq!(format!("{ca:?}"), format!("{cb:?}"));
        prop_assert_eq!(format!("{ca:#?}"), format!("{cb:#?}"));
        let shown = format!("{ca:?}");
        prop_assert!(shown.contains("pin: *REDACTED*"));
    }

    #[test]
    fn equality_matches_the_values(x in prop::collection::vec(any::<u8>(), 0..16),
                                   y in prop::collection::vec(any::<u8>(), 0..16)) {
        prop_assert_eq!(Secret::new(x.clone()) == Secret::new(y.clone()), x == y);
        prop_assert!(Secret::new(x.clone()) == Secret::new(x));
    }

    #[test]
    fn pans_format_identically(a in "[0-9]{12,19}", b in "[0-9]{12,19}") {
        if let (Ok(pa), Ok(pb)) = (Pan::parse(&a), Pan::parse(&b)) {
            prop_assert_eq!(all_formats(&pa), all_formats(&pb));
            prop_assert_eq!(pa.last_four(), &a[a.len() - 4..]);
        }
    }

    #[test]
    fn pan_parsing_never_panics_or_echoes(s in ".*") {
        if let Err(e) = Pan::parse(&s) {
            prop_assert_eq!(e, Error::InvalidPan);
            if s.len() >= 4 {
                prop_assert!(!e.to_string().contains(&s));
            }
        }
    }
}

#[test]
fn pan_validation() {
    let pan = Pan::parse("5555555555554444").unwrap();
    assert_eq!(pan.last_four(), "4444");
    assert_eq!(pan.expose_secret(), "5555555555554444");
    assert!("378282246310005".parse::<Pan>().is_ok());
    for bad in [
        "",
        "41111111111",          // 11 digits
        "41111111111111111111", // 20 digits
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111112", // Luhn
        "411111111111111a",
        "４１１１１１１１１１１１１１１１", // full-width digits
    ] {
        assert_eq!(Pan::parse(bad).unwrap_err(), Error::InvalidPan, "{bad:?}");
    }
}

#[test]
fn clone_is_opt_in() {
    #[derive(Clone, Zeroize)]
    struct Otp([u8; 6]);
    impl CloneableSecret for Otp {}
    let a = Secret::new(Otp(*b"123456"));
    let b = a.clone();
    assert_eq!(b.expose_secret().0, *b"123456");
    let v = Secret::new(vec![1u8, 2, 3]);
    assert!(v.clone_secret() == v);
}

#[test]
fn secret_bearing_types_zeroize_on_drop() {
    fn zod<T: ZeroizeOnDrop>() {}
    zod::<Key>();
    zod::<Secret<Vec<u8>>>();
    zod::<Secret<String>>();
    zod::<Pan>();
    // Every engine but `Ring`, which cannot wipe its expanded key: the
    // compile-fail doctest in `Sealer`'s docs holds that side.
    zod::<Sealer>();
    zod::<Keyring>();
    #[cfg(feature = "aws-lc-rs")]
    {
        zod::<Sealer<pinseal::envelope::AwsLc>>();
        zod::<Keyring<pinseal::envelope::AwsLc>>();
    }
    zod::<pinseal::otp::totp::Totp>();
    zod::<pinseal::otp::Otp>();
    zod::<pinseal::otp::aio::Otp>();
    zod::<pinseal::otp::totp::TotpGuard>();
    zod::<pinseal::otp::aio::TotpGuard>();
}

/// Every public type and every error path, formatted every way, is searched
/// for the key, the plaintext and their hex.
#[test]
fn debug_and_errors_never_contain_secrets() {
    let key_bytes = [0x5a; 32];
    let key_hex = const_hex::encode(key_bytes);
    let plaintext = b"PIN-7391-CARD-5555555555554444";
    let key = Key::from_bytes(key_bytes);
    let sealer = Sealer::new(&key);
    let envelope = sealer.seal(plaintext, b"ctx");
    let opened = sealer.open(&envelope, b"ctx").unwrap();
    let ring = Keyring::new(&Key::from_bytes(key_bytes))
        .with_previous(&Key::generate())
        .unwrap();
    let pan = Pan::parse("5555555555554444").unwrap();

    let mut seen = vec![
        format!("{key:?} {key:#?} {:?} {}", key.id(), key.id()),
        format!("{sealer:?} {sealer:#?} {ring:?} {ring:#?}"),
        format!("{opened:?} {opened:#?} {pan:?} {pan:#?}"),
        format!("{:?}", sealer.open(&envelope, b"ctx")),
        format!("{:?}", Key::from_env("PINSEAL_TEST_NEVER_SET_31c")),
    ];
    // Bad inputs that carry the secret: the errors must not echo them.
    let mut bad_hex = key_hex.clone();
    bad_hex.replace_range(..1, "x");
    for err in [
        Key::from_hex(&bad_hex).unwrap_err(),
        Key::from_hex(&key_hex[..62]).unwrap_err(),
        Key::from_slice(&key_bytes[..31]).unwrap_err(),
        sealer.open(&envelope, b"other").unwrap_err(),
        format!("{}zz", const_hex::encode(plaintext))
            .parse::<pinseal::envelope::Envelope>()
            .unwrap_err(),
        Pan::parse("5555555555554445").unwrap_err(),
    ] {
        seen.push(format!("{err} {err:?}"));
    }
    let all = seen.join("\n");
    assert_no_leak(&all, &key_bytes, "key");
    assert_no_leak(&all, &key_bytes[..31], "key prefix");
    assert_no_leak(&all, plaintext, "plaintext");
    assert_no_leak(&all, b"5555555555554444", "card number");
    assert!(all.contains("*REDACTED*"));
}

/// An `Err` that carries a secret, as a caller's own code might return.
fn refuse(s: Secret<String>) -> Result<Secret<String>, Secret<String>> {
    Err(s)
}

/// A panic whose message formats secrets, and the panic of an `unwrap_err`
/// on a successful open, show only `*REDACTED*`.
#[test]
fn panic_messages_are_redacted() {
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = messages.clone();
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        sink.lock().unwrap().push(info.to_string());
    }));

    let sealer = Sealer::new(&Key::generate());
    let envelope = sealer.seal(b"8642", b"pin");
    let r1 = panic::catch_unwind(|| {
        let pin = sealer.open(&envelope, b"pin").unwrap();
        panic!("gather failed for pin {pin:?} / {pin:#?}");
    });
    let r2 = panic::catch_unwind(|| {
        let _ = sealer.open(&envelope, b"pin").unwrap_err();
    });
    let r3 = panic::catch_unwind(|| {
        let _: Secret<String> = refuse(Secret::new(String::from("8642"))).unwrap();
    });
    panic::set_hook(previous);
    assert!(r1.is_err() && r2.is_err() && r3.is_err());

    let messages = messages.lock().unwrap().join("\n");
    assert_eq!(messages.matches("*REDACTED*").count(), 4, "{messages}");
    assert_no_leak(&messages, b"8642", "panic message");
}

/// The edge types: a webhook checker shows nothing of its token, a
/// pseudonymizer nothing of its key, a pseudonym only its token.
#[test]
fn edge_types_never_show_their_secrets() {
    use pinseal::ExposeSecret;
    use pinseal::pseudonym::Pseudonymizer;
    use pinseal::secret::REDACTED;
    use pinseal::webhook::TwilioSignature;
    let token = "auth-token-5f3a9c";
    let check = TwilioSignature::new(Secret::new(token.to_string()));
    let shown = format!("{check:?} {check:#?}");
    assert!(
        !shown.contains(token) && shown.contains(REDACTED),
        "{shown}"
    );

    let root = Key::from_bytes([0x5a; 32]);
    let callers = Pseudonymizer::new(&root, "ivr/caller");
    let shown = format!("{callers:?}");
    assert_no_leak(&shown, &[0x5a; 32], "Pseudonymizer");
    assert_no_leak(
        &shown,
        root.derive("pseudonym/ivr/caller").expose_secret(),
        "Pseudonymizer",
    );
    let p = callers.pseudonym("+15551234567");
    for text in [format!("{p}"), format!("{p:?}")] {
        assert!(!text.contains("5551234567"), "{text}");
        assert_eq!(text.len(), 35, "{text}");
    }
    // A rotation is visible in the token's key field.
    let rotated =
        Pseudonymizer::new(&Key::from_bytes([0x5b; 32]), "ivr/caller").pseudonym("+15551234567");
    assert_ne!(p.as_str()[4..12], rotated.as_str()[4..12]);
    assert_eq!(&p.as_str()[4..12], &callers.key_id().to_string()[..8]);
}

/// With the `secrecy` feature, code written against `secrecy`'s trait
/// takes pinseal's secrets, and a `SecretString` becomes a `Secret`.
#[cfg(feature = "secrecy")]
#[test]
fn secrecy_interop() {
    fn length<S: secrecy::ExposeSecret<T>, T: AsRef<[u8]> + ?Sized>(secret: &S) -> usize {
        secret.expose_secret().as_ref().len()
    }
    assert_eq!(length(&Secret::new(String::from("1234"))), 4);
    assert_eq!(length(&Pan::parse("4111111111111111").unwrap()), 16);
    assert_eq!(length(&Key::from_bytes([1; 32])), 32);
    let from: Secret<String> = secrecy::SecretString::from("5678").into();
    assert_eq!(from.expose_secret(), "5678");
}
