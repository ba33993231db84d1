//! SMS delivery through SNS `Publish`, against moto's server (an AWS
//! emulator nobody here wrote; `.ci/run` starts it and sets
//! `PINSEAL_MOTO_URL`): the message moto received is read back from its
//! data API.
#![cfg(all(feature = "aws-sns", feature = "aws-https"))]

mod common;

use std::time::Duration;

use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
use pinseal::sns::SnsSms;
use pinseal::{Error, Secret};

fn client(url: &str) -> aws_sdk_sns::Client {
    let config = aws_sdk_sns::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The SMS messages moto holds: (phone number, message, message id).
fn sent(url: &str) -> Vec<(String, String, String)> {
    use std::io::{Read, Write};
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "GET /moto-api/data.json HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = &response[response.find('{').unwrap()..response.rfind('}').unwrap() + 1];
    let data: serde_json::Value = serde_json::from_str(body).unwrap();
    data["sns"]["SMS"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["phone_number"].as_str().unwrap().to_string(),
                m["message"].as_str().unwrap().to_string(),
                m["message_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_code_reaches_the_phone_through_sns() {
    let Ok(url) = std::env::var("PINSEAL_MOTO_URL") else {
        common::unavailable("moto's server (a local SNS) at PINSEAL_MOTO_URL");
        return;
    };
    let sms = SnsSms::new(client(&url))
        .template("Your Example code is {code}. It expires in 1 minute.")
        .unwrap();
    let code = pinseal::otp::random_code(6).unwrap();
    let id = runtime()
        .block_on(sms.send_code("+15550100177", &code))
        .unwrap();
    let (to, message, _) = sent(&url)
        .into_iter()
        .find(|(_, _, m)| *m == id)
        .expect("moto holds the message");
    assert_eq!(to, "+15550100177");
    use pinseal::ExposeSecret;
    assert_eq!(
        message,
        format!(
            "Your Example code is {}. It expires in 1 minute.",
            code.expose_secret()
        )
    );
    // The sender shows no code.
    assert!(!format!("{sms:?}").contains(code.expose_secret().as_str()));
}

#[test]
fn templates_hold_the_code_once() {
    let sms = SnsSms::new(client("http://127.0.0.1:9"));
    for bad in ["no placeholder", "{code} and {code}"] {
        assert_eq!(
            sms.clone().template(bad).err(),
            Some(Error::InvalidParameter),
            "{bad}"
        );
    }
}

#[test]
fn an_unreachable_sns_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sms =
        SnsSms::new(client(&format!("http://127.0.0.1:{port}"))).timeout(Duration::from_secs(2));
    let code = Secret::new("123456".to_string());
    assert_eq!(
        runtime()
            .block_on(sms.send_code("+15550100177", &code))
            .err(),
        Some(Error::Delivery)
    );
}
