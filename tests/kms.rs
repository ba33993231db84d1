//! Data keys from KMS, against moto's local KMS server (an AWS emulator
//! nobody here wrote; `.ci/run` starts it and sets `PINSEAL_MOTO_URL`), and
//! against real KMS when `PINSEAL_REAL_KMS_KEY_ID` names a key (with
//! `AWS_REGION` and credentials in the environment; skipped otherwise).
//!
//! The request count is read from the server: moto's recorder keeps every
//! request it receives, and the test counts the KMS calls made for its own
//! purpose while a keyring seals 10 000 times.
#![cfg(all(feature = "aws-kms", feature = "aws-https"))]

mod common;

use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use pinseal::kms::{Kms, WrappedKey};
use pinseal::{Error, ExposeSecret, Seal, Sealer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(url: &str) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// moto's URL, or `None` (failing under CI).
fn moto() -> Option<String> {
    let url = std::env::var("PINSEAL_MOTO_URL").ok();
    if url.is_none() {
        common::unavailable("moto's server (a local KMS) at PINSEAL_MOTO_URL");
    }
    url
}

/// A fresh KMS key on moto, and its id.
async fn kms_key(client: &aws_sdk_kms::Client) -> String {
    let created = client.create_key().send().await.unwrap();
    created.key_metadata().unwrap().key_id().to_string()
}

fn purpose(what: &str) -> String {
    format!("test/{what}/{}", &common::unique_prefix()[13..29])
}

#[test]
fn a_data_key_unwraps_to_the_key_it_was_made_as() {
    let Some(url) = moto() else { return };
    runtime().block_on(async {
        let client = client(&url);
        let key_id = kms_key(&client).await;
        let kms = Kms::new(client);
        let purpose = purpose("unwrap");
        let (key, wrapped) = kms.generate_data_key(&key_id, &purpose).await.unwrap();
        // Configuration holds the base64 of a blob that is not the key.
        assert!(
            !wrapped
                .as_bytes()
                .windows(32)
                .any(|w| w == key.expose_secret())
        );
        let wrapped: WrappedKey = wrapped.to_string().parse().unwrap();
        let unwrapped = kms.unwrap(&key_id, &wrapped, &purpose).await.unwrap();
        assert_eq!(unwrapped.id(), key.id());
        // The same envelope bytes as any other key makes.
        let envelope = Sealer::new(&unwrapped).seal(b"1234", b"pin");
        assert_eq!(
            Sealer::new(&key)
                .open(&envelope, b"pin")
                .unwrap()
                .expose_secret(),
            b"1234"
        );
        // Another purpose, a blob that is not a wrapped key, the blob named
        // with another KMS key (the role may use both), a key that does not
        // exist: refused.
        let other_kms_key = kms_key(&self::client(&url)).await;
        for refused in [
            kms.unwrap(&key_id, &wrapped, "another/purpose").await,
            kms.unwrap(&key_id, &WrappedKey::from_bytes(vec![7; 64]), &purpose)
                .await,
            kms.unwrap(&other_kms_key, &wrapped, &purpose).await,
        ] {
            assert_eq!(refused.err(), Some(Error::KmsRefused));
        }
        assert_eq!(
            kms.generate_data_key("alias/does-not-exist", &purpose)
                .await
                .err(),
            Some(Error::KmsRefused)
        );
        let text = format!("{} {:?}", Error::KmsRefused, Error::KmsRefused);
        assert!(!text.contains(&key_id) && !text.contains("arn:"));
    });
}

#[test]
fn an_unreachable_kms_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kms = Kms::new(client(&format!("http://127.0.0.1:{port}"))).timeout(Duration::from_secs(2));
    let wrapped = WrappedKey::from_bytes(vec![1; 64]);
    let result = runtime().block_on(kms.unwrap("k", &wrapped, "p"));
    assert_eq!(result.err(), Some(Error::Kms));
}

/// A server that answers every request with `status` and `body`, as KMS
/// (or a proxy in front of it) would.
fn canned(status: &'static str, body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 65536];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn outages_and_refusals_are_told_apart() {
    let rt = runtime();
    let wrapped = WrappedKey::from_bytes(vec![1; 64]);
    let cases = [
        // A server error, with or without a code, and throttling: retry later.
        ("503 Service Unavailable", "<html>busy</html>", Error::Kms),
        (
            "500 Internal Server Error",
            r#"{"__type":"InternalFailure"}"#,
            Error::Kms,
        ),
        (
            "400 Bad Request",
            r#"{"__type":"ThrottlingException"}"#,
            Error::Kms,
        ),
        // KMS says no: fix the configuration.
        (
            "400 Bad Request",
            r#"{"__type":"AccessDeniedException"}"#,
            Error::KmsRefused,
        ),
        (
            "400 Bad Request",
            r#"{"__type":"IncorrectKeyException"}"#,
            Error::KmsRefused,
        ),
    ];
    for (status, body, want) in cases {
        // No retries: the SDK would retry the 5xx and the throttling.
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(canned(status, body))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build();
        let kms = Kms::new(aws_sdk_kms::Client::from_conf(config));
        let got = rt.block_on(kms.unwrap("k", &wrapped, "p")).err();
        assert_eq!(got, Some(want), "{status} {body}");
    }
    // No region: the request cannot be made; waiting will not help.
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    let kms = Kms::new(aws_sdk_kms::Client::from_conf(config));
    assert_eq!(
        rt.block_on(kms.unwrap("k", &wrapped, "p")).err(),
        Some(Error::KmsRefused)
    );
}

/// The KMS calls moto received for `purpose` since it started recording.
fn recorded_calls(url: &str, purpose: &str) -> Vec<String> {
    let body = http_get(url, "/moto-api/recorder/download-recording");
    body.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|request| {
            let target = request["headers"]["X-Amz-Target"].as_str()?.to_string();
            let body = request["body"].as_str()?;
            let body = if request["body_encoded"].as_bool() == Some(true) {
                String::from_utf8(data_encoding::BASE64.decode(body.as_bytes()).ok()?).ok()?
            } else {
                body.to_string()
            };
            body.contains(purpose).then_some(target)
        })
        .collect()
}

/// A minimal HTTP/1.1 request to moto's own API.
fn http_get_or_post(url: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // De-chunk.
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    }
}

fn http_get(url: &str, path: &str) -> String {
    http_get_or_post(url, "GET", path)
}

#[test]
fn one_kms_call_per_key_at_start_and_none_per_seal() {
    let Some(url) = moto() else { return };
    http_get_or_post(&url, "POST", "/moto-api/recorder/start-recording");
    let purpose = purpose("count");
    let rt = runtime();
    let (ring, old_envelope) = rt.block_on(async {
        let client = client(&url);
        let key_id = kms_key(&client).await;
        let kms = Kms::new(client);
        let (old_key, old) = kms.generate_data_key(&key_id, &purpose).await.unwrap();
        let (_, new) = kms.generate_data_key(&key_id, &purpose).await.unwrap();
        let old_envelope = Sealer::new(&old_key).seal(b"4321", b"last4");
        // Rotation: the new key seals, the old one still opens.
        let ring = kms.keyring(&key_id, &new, &[old], &purpose).await.unwrap();
        (ring, old_envelope)
    });
    let at_start = recorded_calls(&url, &purpose);
    for i in 0..10_000u32 {
        let envelope = ring.seal(&i.to_be_bytes(), b"pin");
        assert_eq!(
            ring.open(&envelope, b"pin").unwrap().expose_secret(),
            &i.to_be_bytes()
        );
    }
    assert_eq!(
        ring.open(&old_envelope, b"last4").unwrap().expose_secret(),
        b"4321"
    );
    assert_eq!(ring.previous_opens(), 1);
    let after = recorded_calls(&url, &purpose);
    assert_eq!(
        at_start,
        [
            "TrentService.GenerateDataKey",
            "TrentService.GenerateDataKey",
            "TrentService.Decrypt",
            "TrentService.Decrypt"
        ],
        "two keys made, then one Decrypt per key of the ring"
    );
    assert_eq!(
        after,
        at_start,
        "10 000 seals and opens called KMS {} times",
        after.len() - at_start.len()
    );
}

/// Real KMS, when a key is named: `PINSEAL_REAL_KMS_KEY_ID`, with
/// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
/// `AWS_SESSION_TOKEN`) in the environment.
#[test]
fn real_kms_when_configured() {
    let Ok(key_id) = std::env::var("PINSEAL_REAL_KMS_KEY_ID") else {
        eprintln!("SKIPPED: real KMS (set PINSEAL_REAL_KMS_KEY_ID, AWS_REGION and credentials)");
        return;
    };
    let env = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is required with PINSEAL_REAL_KMS_KEY_ID"))
    };
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(env("AWS_REGION")))
        .credentials_provider(Credentials::new(
            env("AWS_ACCESS_KEY_ID"),
            env("AWS_SECRET_ACCESS_KEY"),
            std::env::var("AWS_SESSION_TOKEN").ok(),
            None,
            "environment",
        ))
        .build();
    let kms = Kms::new(aws_sdk_kms::Client::from_conf(config));
    runtime().block_on(async {
        let purpose = purpose("real");
        let (key, wrapped) = kms.generate_data_key(&key_id, &purpose).await.unwrap();
        assert_eq!(
            kms.unwrap(&key_id, &wrapped, &purpose).await.unwrap().id(),
            key.id()
        );
        assert_eq!(
            kms.unwrap(&key_id, &wrapped, "another").await.err(),
            Some(Error::KmsRefused)
        );
    });
}
