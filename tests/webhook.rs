//! Webhook signatures against the provider's published example and, both
//! ways, against its official `twilio` npm package (an implementation
//! nobody here wrote) on a few hundred random URLs, parameter sets and JSON
//! bodies.
//!
//! The npm package is found through `NODE_PATH` (`.ci/run` installs it
//! under `target/ci-node`); without it the interop tests print why and
//! pass, except under CI.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use pinseal::webhook::{SignatureAlgorithm, TwilioSignature, body_sha256};
use pinseal::{Error, Secret};

fn checker(token: &str) -> TwilioSignature {
    TwilioSignature::new(Secret::new(token.to_string()))
}

#[test]
fn the_providers_published_example() {
    let text = std::fs::read_to_string(common::data_path("twilio_webhook.txt")).unwrap();
    let field = |name: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_once(" = "))
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
            .collect()
    };
    let params: Vec<(String, String)> = field("PARAM")
        .iter()
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(pairs.len(), 5);
    let (token, url, signature) = (&field("TOKEN")[0], &field("URL")[0], &field("SIGNATURE")[0]);
    let check = checker(token);
    assert_eq!(check.sign_form(url, &pairs), *signature);
    check.verify_form(url, &pairs, signature).unwrap();
    // Parameter order does not matter; the port variants are accepted.
    let reversed: Vec<(&str, &str)> = pairs.iter().rev().copied().collect();
    check.verify_form(url, &reversed, signature).unwrap();
    let with_port = url.replace("mycompany.com", "mycompany.com:443");
    check.verify_form(&with_port, &pairs, signature).unwrap();
    // Any change is refused, with a typed error that echoes nothing.
    let mut forged = pairs.clone();
    forged[2] = ("Digits", "1235");
    let err = check.verify_form(url, &forged, signature).unwrap_err();
    assert_eq!(err, Error::WebhookSignature);
    let shown = format!("{err} {err:?} {check:?}");
    for leak in ["12345", "1235", "mycompany", "GvWf1c"] {
        assert!(!shown.contains(leak), "{shown}");
    }
    assert!(
        check
            .verify_form(&url.replace("foo=1", "foo=2"), &pairs, signature)
            .is_err()
    );
    assert!(
        checker("12346")
            .verify_form(url, &pairs, signature)
            .is_err()
    );

    assert_eq!(
        body_sha256(field("BODY")[0].as_bytes()),
        field("BODYSHA256")[0]
    );
}

#[test]
fn json_bodies_are_bound_by_their_hash() {
    let check = checker("token-for-json");
    let body = br#"{"CallSid":"CA1","Digits":"4321"}"#;
    let (url, signature) = check.sign_json("https://ivr.example/gather?step=pin", body);
    assert!(url.contains("&bodySHA256="));
    check.verify_json(&url, body, &signature).unwrap();
    let other = br#"{"CallSid":"CA1","Digits":"4322"}"#;
    assert_eq!(
        check.verify_json(&url, other, &signature),
        Err(Error::WebhookBody)
    );
    let bare = url.split("&bodySHA256").next().unwrap();
    let bare_signature = check.sign_form::<&str, &str>(bare, &[]);
    assert_eq!(
        check.verify_json(bare, body, &bare_signature),
        Err(Error::WebhookBody)
    );
    assert_eq!(
        check.verify_json(&url, body, "AAAA"),
        Err(Error::WebhookSignature)
    );
}

/// Runs the npm package over `lines`, or says why it cannot (failing under
/// CI).
fn twilio_npm(lines: &[String]) -> Option<Vec<String>> {
    let ok = Command::new("node")
        .args(["-e", "require('twilio')"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        common::unavailable(
            "Node.js with the `twilio` npm package (NODE_PATH) for the webhook interop tests",
        );
        return None;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/twilio_webhook.js"
    );
    let mut command = Command::new("node");
    command.arg(script);
    Some(common::run_lines(command, lines))
}

fn hx(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        const_hex::encode(s)
    }
}

/// Random requests: token, URL, parameters (names may repeat).
struct Request {
    token: String,
    url: String,
    params: Vec<(String, String)>,
}

impl Request {
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
    /// The parameters as the npm package takes them: repeated names as
    /// arrays.
    fn params_json(&self) -> String {
        let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (n, v) in &self.params {
            map.entry(n).or_default().push(v);
        }
        let obj: serde_json::Map<String, serde_json::Value> = map
            .into_iter()
            .map(|(n, vs)| {
                let value = if vs.len() == 1 {
                    serde_json::Value::from(vs[0])
                } else {
                    serde_json::Value::from(vs)
                };
                (n.to_string(), value)
            })
            .collect();
        serde_json::Value::Object(obj).to_string()
    }
}

fn requests(n: usize) -> Vec<Request> {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).unwrap();
    let mut x = u64::from_le_bytes(seed) | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    const HOSTS: [&str; 4] = [
        "ivr.example.com",
        "api.example.org",
        "127.0.0.1",
        "hooks.example.net",
    ];
    const PORTS: [&str; 4] = ["", ":443", ":8443", ":80"];
    const WORDS: [&str; 10] = [
        "CallSid",
        "Digits",
        "From",
        "To",
        "Caller",
        "SpeechResult",
        "a b",
        "é",
        "x&y=z",
        "+1555",
    ];
    (0..n)
        .map(|_| {
            let scheme = if next(4) == 0 { "http" } else { "https" };
            let mut url = format!(
                "{scheme}://{}{}/ivr/{}",
                HOSTS[next(4) as usize],
                PORTS[next(4) as usize],
                next(1000)
            );
            if next(2) == 0 {
                url += &format!("?step={}&lang=en-US", next(10));
            }
            let params = (0..next(8))
                .map(|_| {
                    let name = WORDS[next(6) as usize].to_string();
                    let value = format!("{}{}", WORDS[next(10) as usize], next(100_000));
                    (name, value)
                })
                .collect();
            Request {
                token: format!("{:032x}", next(u64::MAX)),
                url,
                params,
            }
        })
        .collect()
}

#[test]
fn both_tokens_verify_while_a_rotation_propagates() {
    let url = "https://ivr.example.com/gather?step=pin";
    let params = [("CallSid", "CA1"), ("Digits", "1234")];
    let old = checker("old-token").sign_form(url, &params);
    let new = checker("new-token").sign_form(url, &params);
    let rotating = TwilioSignature::new(Secret::new("new-token".to_string()))
        .with_secondary_token(Secret::new("old-token".to_string()));
    rotating.verify_form(url, &params, &old).unwrap();
    rotating.verify_form(url, &params, &new).unwrap();
    let stranger = checker("another-token").sign_form(url, &params);
    assert_eq!(
        rotating.verify_form(url, &params, &stranger),
        Err(Error::WebhookSignature)
    );
    // After the rotation, the old token is gone.
    assert_eq!(
        checker("new-token").verify_form(url, &params, &old),
        Err(Error::WebhookSignature)
    );
}

#[test]
fn shared_keys_are_chosen_by_the_settings_header() {
    let url = "https://ivr.example.com/gather";
    let params = [("CallSid", "CA1"), ("Digits", "1234")];
    let check = checker("auth-token")
        .with_shared_key("webhooks_sharedkey_a", Secret::new("secret-a".to_string()))
        .with_shared_key("webhooks_sharedkey_b", Secret::new("secret-b".to_string()));
    for algorithm in [SignatureAlgorithm::HmacSha1, SignatureAlgorithm::HmacSha256] {
        let (settings, signature) = check
            .sign_form_shared("webhooks_sharedkey_b", algorithm, url, &params)
            .unwrap();
        check
            .verify_form_with_settings(url, &params, &signature, Some(&settings))
            .unwrap();
        // Names are read without regard to case and spaces.
        let loose = settings.replace("algorithm=HMAC", " algorithm = hmac");
        check
            .verify_form_with_settings(url, &params, &signature, Some(&loose))
            .unwrap();
        // The same MAC claimed under the other key, or as an Auth Token
        // signature, is refused.
        let other = settings.replace("_b", "_a");
        assert_eq!(
            check.verify_form_with_settings(url, &params, &signature, Some(&other)),
            Err(Error::WebhookSignature)
        );
        assert_eq!(
            check.verify_form(url, &params, &signature),
            Err(Error::WebhookSignature)
        );
    }
    let (_, sha256) = check
        .sign_form_shared(
            "webhooks_sharedkey_a",
            SignatureAlgorithm::HmacSha256,
            url,
            &params,
        )
        .unwrap();
    // An algorithm that is not known, or a key that was not given.
    for settings in [
        "key=webhooks_sharedkey_a,algorithm=HMAC_SHA512",
        "key=webhooks_sharedkey_c,algorithm=HMAC_SHA256",
    ] {
        assert_eq!(
            check.verify_form_with_settings(url, &params, &sha256, Some(settings)),
            Err(Error::WebhookAlgorithm),
            "{settings}"
        );
    }
    // A settings header without a key tries every shared key.
    check
        .verify_form_with_settings(url, &params, &sha256, Some("algorithm=HMAC_SHA256"))
        .unwrap();
    // No shared key at all: a shared-key webhook cannot be checked.
    assert_eq!(
        checker("auth-token").verify_form_with_settings(
            url,
            &params,
            &sha256,
            Some("key=webhooks_sharedkey_a,algorithm=HMAC_SHA256")
        ),
        Err(Error::WebhookAlgorithm)
    );
    assert!(!format!("{check:?}").contains("secret-"));
}

#[test]
fn a_json_webhook_is_not_accepted_as_a_form_without_its_body() {
    let check = checker("auth-token");
    let (url, signature) = check.sign_json("https://hooks.example.com/events", br#"{"a":1}"#);
    // The captured URL and signature, posted with any body as a form with
    // no parameters: the URL's signature covers no parameter.
    let none: [(&str, &str); 0] = [];
    assert_eq!(
        check.verify_form(&url, &none, &signature),
        Err(Error::WebhookBody)
    );
    check.verify_json(&url, br#"{"a":1}"#, &signature).unwrap();
}

#[test]
fn fragments_are_neither_signed_nor_read() {
    let check = checker("auth-token");
    let url = "https://ivr.example.com/gather?step=1";
    let params = [("Digits", "1234")];
    let signature = check.sign_form(url, &params);
    check
        .verify_form(&format!("{url}#rc=2&rp=all"), &params, &signature)
        .unwrap();
    assert_eq!(check.sign_form(&format!("{url}#rc=2"), &params), signature);
    // A bodySHA256 in the fragment is not a bodySHA256.
    let body = b"{}";
    let hashed = format!("{url}#bodySHA256={}", body_sha256(body));
    let signature = check.sign_form(url, &params);
    assert_eq!(
        check.verify_json(&hashed, body, &signature),
        Err(Error::WebhookSignature)
    );
    let none: [(&str, &str); 0] = [];
    let bare = check.sign_form(url, &none);
    assert_eq!(
        check.verify_json(&hashed, body, &bare),
        Err(Error::WebhookBody)
    );
    check.verify_form(&hashed, &none, &bare).unwrap();
}

/// The scheme of the `i`th random request: Auth Token, or a shared key
/// under HMAC-SHA1 or HMAC-SHA256.
fn scheme(i: usize) -> Option<SignatureAlgorithm> {
    match i % 3 {
        0 => None,
        1 => Some(SignatureAlgorithm::HmacSha1),
        _ => Some(SignatureAlgorithm::HmacSha256),
    }
}

/// A checker that knows `r.token` in the role `scheme` gives it.
fn checker_for(r: &Request, scheme: Option<SignatureAlgorithm>) -> TwilioSignature {
    match scheme {
        None => checker(&r.token),
        Some(_) => checker("the-auth-token")
            .with_shared_key("webhooks_sharedkey_1", Secret::new(r.token.clone())),
    }
}

#[test]
fn pinseal_verifies_what_the_npm_package_signs() {
    let requests = requests(300);
    let lines: Vec<String> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let alg = scheme(i).map_or("-".to_string(), |a| hx(a.name()));
            format!(
                "sign {} {} {} {alg}",
                hx(&r.token),
                hx(&r.url),
                hx(&r.params_json())
            )
        })
        .collect();
    let Some(signatures) = twilio_npm(&lines) else {
        return;
    };
    for (i, (r, signature)) in requests.iter().zip(&signatures).enumerate() {
        let check = checker_for(r, scheme(i));
        let settings =
            scheme(i).map(|a| format!("key=webhooks_sharedkey_1,algorithm={}", a.name()));
        match scheme(i) {
            None => assert_eq!(&check.sign_form(&r.url, &r.pairs()), signature, "{}", r.url),
            Some(a) => {
                let (_, mine) = check
                    .sign_form_shared("webhooks_sharedkey_1", a, &r.url, &r.pairs())
                    .unwrap();
                assert_eq!(&mine, signature, "{}", r.url);
            }
        }
        check
            .verify_form_with_settings(&r.url, &r.pairs(), signature, settings.as_deref())
            .unwrap();
        let mut forged = r.params.clone();
        forged.push(("Digits".into(), "0000".into()));
        assert!(
            check
                .verify_form_with_settings(&r.url, &forged, signature, settings.as_deref())
                .is_err()
        );
    }
}

#[test]
fn the_npm_package_verifies_what_pinseal_signs() {
    let requests = requests(300);
    let mut lines = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let check = checker(&r.token);
        let signature = check.sign_form(&r.url, &r.pairs());
        lines.push(format!(
            "check {} {} {} {}",
            hx(&r.token),
            hx(&signature),
            hx(&r.url),
            hx(&r.params_json())
        ));
        // The same request signed with a shared key, the npm package told
        // the algorithm by the settings header pinseal writes.
        let algorithm = scheme(i).unwrap_or(SignatureAlgorithm::HmacSha256);
        let (settings, shared) = checker_for(r, Some(algorithm))
            .sign_form_shared("webhooks_sharedkey_1", algorithm, &r.url, &r.pairs())
            .unwrap();
        lines.push(format!(
            "check {} {} {} {} {}",
            hx(&r.token),
            hx(&shared),
            hx(&r.url),
            hx(&r.params_json()),
            hx(&settings)
        ));
        // A signature for another token is refused there too.
        let wrong = checker("another-token").sign_form(&r.url, &r.pairs());
        lines.push(format!(
            "check {} {} {} {}",
            hx(&r.token),
            hx(&wrong),
            hx(&r.url),
            hx(&r.params_json())
        ));
        // JSON bodies: pinseal adds bodySHA256 and signs.
        let body = format!(
            r#"{{"CallSid":"CA{}","Digits":"{}"}}"#,
            r.token,
            r.params.len()
        );
        let (url, signature) = check.sign_json(&r.url, body.as_bytes());
        lines.push(format!(
            "checkbody {} {} {} {}",
            hx(&r.token),
            hx(&signature),
            hx(&url),
            hx(&body)
        ));
    }
    let Some(out) = twilio_npm(&lines) else {
        return;
    };
    for (i, chunk) in out.chunks(4).enumerate() {
        assert_eq!(
            chunk,
            ["true", "true", "false", "true"],
            "{}",
            requests[i].url
        );
    }
}
