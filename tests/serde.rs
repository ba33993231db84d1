//! serde: secrets serialize only where a field opts in with
//! `pinseal::serde::expose` or the type with `SerializableSecret` (without
//! either, serializing does not compile: the doctests in `src/serde.rs`),
//! the redaction marker never deserializes, and no deserialization error
//! ever quotes the input, whatever shape the input has.

#![cfg(feature = "serde")]

use pinseal::secret::Pan;
use pinseal::{ExposeSecret, Secret};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Form {
    call: String,
    pin: Secret<String>,
    digits: Secret<Vec<u8>>,
    card: Pan,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Outer {
    caller: String,
    form: Form,
}

const OK_FORM: &str =
    r#"{"call":"CA-1","pin":"1234","digits":[1,2,3,4],"card":"4111111111111111"}"#;

/// A well-formed form, with one field replaced by `value`.
fn form_with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(OK_FORM).unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

/// The secrets planted in the malformed inputs: none may reach an error.
const PLANTED: [&str; 6] = [
    "739182",
    "5555555555554444",
    "5555555555554445",
    "pin-marker",
    "98765",
    "NDMyMQ",
];

fn assert_quiet(input: &str, err: &serde_json::Error) {
    let shown = format!("{err} | {err:?}");
    for secret in PLANTED {
        if input.contains(secret) {
            assert!(
                !shown.contains(secret),
                "the error for {input} quotes the input: {shown}"
            );
        }
    }
    assert!(shown.contains("input not shown"), "{shown}");
}

#[test]
fn deserialization_errors_never_quote_the_input() {
    let cases = [
        // field, malformed value: integers, strings, arrays, maps, nesting
        ("pin", "739182"),
        ("pin", "-739182"),
        ("pin", "7391.82"),
        ("pin", "[7,3,9,1,8,2]"),
        ("pin", r#"{"value":"739182"}"#),
        ("pin", r#"["pin-marker"]"#),
        ("pin", "true"),
        ("digits", r#""5555555555554444""#),
        ("digits", r#"[98765, 1]"#),
        ("digits", r#"{"a":"pin-marker"}"#),
        ("digits", r#"[1, "pin-marker"]"#),
        ("card", "5555555555554444"),
        ("card", r#""5555555555554445""#),
        ("card", r#"["5555555555554444"]"#),
        ("card", r#"{"n":"5555555555554444"}"#),
        ("card", r#""NDMyMQ""#),
    ];
    for (field, value) in cases {
        let input = form_with(field, value);
        let err = serde_json::from_str::<Form>(&input).unwrap_err();
        assert_quiet(&input, &err);
        // The same form nested one level down.
        let nested = format!(r#"{{"caller":"c","form":{input}}}"#);
        let err = serde_json::from_str::<Outer>(&nested).unwrap_err();
        assert_quiet(&nested, &err);
    }
    // Each shape is refused (not silently accepted).
    assert!(serde_json::from_str::<Form>(OK_FORM).is_ok());
}

#[test]
fn serde_json_alone_would_quote_them() {
    // Control: without `Secret`, serde's own messages quote the input, so
    // the test above is looking for something that really appears.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Plain {
        pin: String,
    }
    let err = serde_json::from_str::<Plain>(r#"{"pin":739182}"#).unwrap_err();
    assert!(err.to_string().contains("739182"), "{err}");
}

#[test]
fn a_field_serializes_only_by_opt_in() {
    let form: Form = serde_json::from_str(OK_FORM).unwrap();
    assert_eq!(form.pin.expose_secret(), "1234");
    assert_eq!(form.digits.expose_secret(), &[1, 2, 3, 4]);
    assert_eq!(form.card.last_four(), "1111");

    #[derive(Debug, Serialize, Deserialize)]
    struct Stored {
        #[serde(with = "pinseal::serde::expose")]
        secret: Secret<Vec<u8>>,
        #[serde(with = "pinseal::serde::expose")]
        card: Pan,
    }
    let stored = Stored {
        secret: Secret::new(vec![9, 8, 7]),
        card: Pan::parse("4111111111111111").unwrap(),
    };
    let json = serde_json::to_string(&stored).unwrap();
    assert_eq!(json, r#"{"secret":[9,8,7],"card":"4111111111111111"}"#);
    // Opting in to serde does not opt in to logs.
    assert_eq!(
        format!("{stored:?}"),
        "Stored { secret: *REDACTED*, card: *REDACTED* }"
    );
    let back: Stored = serde_json::from_str(&json).unwrap();
    assert!(back.secret == stored.secret);
    assert_eq!(back.card.expose_secret(), "4111111111111111");
    // The opt-in reads like the default: errors stay quiet.
    let err =
        serde_json::from_str::<Stored>(r#"{"secret":"pin-marker","card":"4111111111111111"}"#)
            .unwrap_err();
    assert_quiet(r#"pin-marker"#, &err);
}

/// A type of the caller's own, marked `SerializableSecret`, serializes with
/// its value inside a `Secret`.
#[test]
fn a_marked_type_serializes_with_its_value() {
    use pinseal::serde::SerializableSecret;
    use zeroize::Zeroize;

    #[derive(Serialize, Deserialize, Zeroize)]
    struct Sealed(String);
    impl AsRef<[u8]> for Sealed {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    impl SerializableSecret for Sealed {}

    let blob = Secret::new(Sealed("9f86d081884c7d65".into()));
    assert_eq!(
        serde_json::to_string(&blob).unwrap(),
        r#""9f86d081884c7d65""#
    );
    let back: Secret<Sealed> = serde_json::from_str(r#""9f86d081884c7d65""#).unwrap();
    assert!(back == blob);
}

/// What a log made of a secret is never read back as one: a restored
/// `Secret` equal to the public text `*REDACTED*` would let anyone who
/// types that text match.
#[test]
fn the_redaction_marker_is_not_a_value() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Message {
        call: String,
        pin: Secret<String>,
    }
    let err = serde_json::from_str::<Message>(r#"{"call":"CA-1","pin":"*REDACTED*"}"#).unwrap_err();
    let shown = format!("{err} | {err:?}");
    assert!(!shown.contains("*REDACTED*"), "{shown}");
    assert!(shown.contains("input not shown"), "{shown}");
    let err = serde_json::from_str::<Secret<Vec<u8>>>(&format!("{:?}", b"*REDACTED*".to_vec()))
        .unwrap_err();
    assert!(err.to_string().contains("input not shown"), "{err}");
    // Only the marker itself: texts around it are values like any other.
    for ok in ["*REDACTED", "REDACTED", "*redacted*", " *REDACTED*"] {
        let m: Message =
            serde_json::from_str(&format!(r#"{{"call":"CA-1","pin":"{ok}"}}"#)).unwrap();
        assert_eq!(m.pin.expose_secret(), ok);
    }
}

/// The OTP types a web service sends: the verdict in Verify's vocabulary,
/// the challenge id as hex; both read back.
#[test]
fn verdicts_and_challenge_ids_round_trip_as_verify_json() {
    use pinseal::otp::{ChallengeId, Verdict};
    let cases = [
        (Verdict::Approved, r#"{"status":"approved"}"#),
        (
            Verdict::Rejected { attempts_left: 3 },
            r#"{"status":"pending","attempts_left":3}"#,
        ),
        (Verdict::Expired, r#"{"status":"expired"}"#),
        (Verdict::Locked, r#"{"status":"max_attempts_reached"}"#),
        (Verdict::Canceled, r#"{"status":"canceled"}"#),
        (Verdict::Unknown, r#"{"status":"not_found"}"#),
    ];
    for (verdict, json) in cases {
        assert_eq!(serde_json::to_string(&verdict).unwrap(), json);
        assert_eq!(serde_json::from_str::<Verdict>(json).unwrap(), verdict);
        // The serialized status is the one `status()` and `Display` give.
        assert!(json.contains(&format!(r#""status":"{}""#, verdict.status())));
        assert_eq!(verdict.to_string(), verdict.status());
    }
    for bad in [
        r#"{"status":"739182"}"#,
        r#"{"status":"pending","attempts_left":"739182"}"#,
        r#"{"status":"rejected"}"#,
    ] {
        let err = serde_json::from_str::<Verdict>(bad).unwrap_err();
        let shown = format!("{err} | {err:?}");
        assert!(
            !shown.contains("739182") && !shown.contains("rejected"),
            "{shown}"
        );
        assert!(shown.contains("input not shown"), "{shown}");
    }

    let hex = "00112233445566778899aabbccddeeff";
    let id: ChallengeId = hex.parse().unwrap();
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{hex}\""));
    assert_eq!(serde_json::from_str::<ChallengeId>(&json).unwrap(), id);
    assert_eq!(
        serde_json::from_str::<ChallengeId>(&json.to_uppercase()).unwrap(),
        id
    );
    for bad in [
        r#""0x112233445566778899aabbccddeeff""#,
        r#""739182""#,
        "739182",
        "[7,3,9]",
        r#"{"id":"739182"}"#,
    ] {
        let err = serde_json::from_str::<ChallengeId>(bad).unwrap_err();
        let shown = format!("{err} | {err:?}");
        assert!(!shown.contains("739182"), "{shown}");
        assert!(shown.contains("input not shown"), "{shown}");
    }
}
