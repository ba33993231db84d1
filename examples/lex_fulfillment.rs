//! The chat flow as an Amazon Lex V2 code hook: Lex sends a JSON event,
//! the handler answers with a JSON response. No network is needed: `main`
//! plays a conversation through the handler and prints each turn.
//!
//! The number a code goes to comes from a trusted source, never from the
//! conversation: Lex session and request attributes are written by the
//! client (the Lex runtime API's `PutSession` and `RecognizeText` accept
//! them), so a client could point the code at any number. Here the app
//! that authenticated the user starts the Lex session with the account id
//! in its session id (`<account>:<conversation>`), and the handler looks
//! the phone number up in the account directory (a stand-in for the
//! service's user database). The session id is trustworthy only when the
//! app's own back end calls the Lex runtime (`RecognizeText` with the
//! session id it chose); a client that calls Lex directly picks its own,
//! and then the account must come from the client's verified identity
//! (a Cognito identity, a signed token) instead.
//!
//! Two ways to keep the code between turns:
//!
//! - **Store** (`Turns::Store`): the code is issued by `Otp` on a challenge
//!   store (the memory store, or DynamoDB with `--features dynamodb,aws-https` and
//!   `PINSEAL_DYNAMODB_URL` pointing at a local server, or real DynamoDB
//!   with `PINSEAL_DYNAMODB_TABLE`), checked by phone number, with send and
//!   attempt budgets and a per-account send budget (`issue_from`); a wrong
//!   answer gets a new code while the budgets last.
//! - **Session attributes** (`Turns::Session`): no store at all. The code
//!   travels in the Lex session attributes sealed with `Sealer`, under
//!   associated data bound to the Lex session id, with an expiry inside the
//!   envelope, and is compared in constant time. The attempt count travels
//!   in the envelope and carries over every turn, a resend included. Its
//!   limits: a client that can write session attributes (the Lex runtime
//!   API lets it) can replay an earlier envelope, or drop it and start
//!   over with a fresh code and a fresh count, and nothing limits sends;
//!   use the store where that matters.
//!
//! Run: `cargo run --example lex_fulfillment` (memory store, a simulated
//! phone, a local key), or against AWS services (real, or moto's server as
//! `.ci/run` does) with `--features dynamodb,aws-kms,aws-sns,aws-https`:
//!
//! - `PINSEAL_DYNAMODB_URL`: the challenge store on DynamoDB at that
//!   endpoint, in the table `PINSEAL_DYNAMODB_TABLE` (made if absent; a
//!   fresh one per run without it);
//! - `PINSEAL_KMS_KEY_ID`: the session variant's key is a KMS data key
//!   (unwrapped from `PINSEAL_WRAPPED_KEY` if set, else made), one KMS call
//!   at start and none per turn;
//! - `PINSEAL_SMS=sns`: codes go out with SNS `Publish`, never printed;
//!   with `PINSEAL_MOTO_URL` the demo user reads the phone back from moto;
//! - KMS and SNS take the standard AWS environment: `AWS_ENDPOINT_URL` (or
//!   `AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL_SNS`), `AWS_REGION`,
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.

use std::time::Duration;

use pinseal::envelope::Envelope;
use pinseal::otp::store::DynStore;
use pinseal::otp::{MemoryStore, Policy, SystemClock, Verdict, aio, canonical_phone};
use pinseal::{Aad, Error, ExposeSecret, Key, Seal, Sealer, Secret};
use serde_json::{Value, json};

thread_local! {
    /// The simulated phones' inbox: the number and code of each message,
    /// so the demo conversation can answer them.
    static INBOX: std::cell::RefCell<Vec<(String, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where codes go: a simulated phone, or SMS through Amazon SNS.
enum Sms {
    /// The phone is simulated in this process.
    Simulated,
    /// SNS `Publish`; the demo user reads the phone back from moto's data
    /// API when `moto` is set (on real SNS the code goes to a real phone).
    #[cfg(all(feature = "aws-sns", feature = "aws-https"))]
    Sns {
        sms: pinseal::sns::SnsSms,
        moto: Option<String>,
    },
}

impl Sms {
    async fn send(&self, to: &str, code: &Secret<String>) -> Result<(), Error> {
        match self {
            Sms::Simulated => {
                INBOX.with(|inbox| {
                    inbox
                        .borrow_mut()
                        .push((to.to_string(), code.expose_secret().clone()))
                });
                Ok(())
            }
            #[cfg(all(feature = "aws-sns", feature = "aws-https"))]
            Sms::Sns { sms, .. } => sms.send_code(to, code).await.map(|_| ()),
        }
    }

    /// The last code the phone `to` received: the demo user reads it.
    fn last_code(&self, to: &str) -> Option<String> {
        match self {
            Sms::Simulated => INBOX.with(|inbox| {
                let inbox = inbox.borrow();
                let (_, code) = inbox.iter().rev().find(|(number, _)| number == to)?;
                Some(code.clone())
            }),
            #[cfg(all(feature = "aws-sns", feature = "aws-https"))]
            Sms::Sns { moto, .. } => {
                let data = http_get(moto.as_deref()?, "/moto-api/data.json")?;
                let data: Value = serde_json::from_str(&data).ok()?;
                let message = data["sns"]["SMS"]
                    .as_array()?
                    .iter()
                    .rev()
                    .find(|m| m["phone_number"] == to)?["message"]
                    .as_str()?
                    .to_string();
                Some(message.chars().filter(char::is_ascii_digit).collect())
            }
        }
    }
}

/// A plain HTTP GET (moto's data API), the body as text.
#[cfg(all(feature = "aws-sns", feature = "aws-https"))]
fn http_get(base: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let body = &response[response.find('{')?..=response.rfind('}')?];
    Some(body.to_string())
}

/// A Lex V2 response that asks for the `Code` slot.
fn elicit_code(event: &Value, attributes: Value, message: &str) -> Value {
    json!({
        "sessionState": {
            "sessionAttributes": attributes,
            "dialogAction": { "type": "ElicitSlot", "slotToElicit": "Code" },
            "intent": { "name": event["sessionState"]["intent"]["name"], "state": "InProgress" }
        },
        "messages": [{ "contentType": "PlainText", "content": message }]
    })
}

/// A Lex V2 response that ends the intent.
fn close(event: &Value, attributes: Value, fulfilled: bool, message: &str) -> Value {
    json!({
        "sessionState": {
            "sessionAttributes": attributes,
            "dialogAction": { "type": "Close" },
            "intent": {
                "name": event["sessionState"]["intent"]["name"],
                "state": if fulfilled { "Fulfilled" } else { "Failed" }
            }
        },
        "messages": [{ "contentType": "PlainText", "content": message }]
    })
}

/// The code the user typed (the `Code` slot), if any.
fn typed_code(event: &Value) -> Option<Secret<String>> {
    event["sessionState"]["intent"]["slots"]["Code"]["value"]["interpretedValue"]
        .as_str()
        .map(|s| Secret::new(s.trim().to_string()))
}

/// The account directory: the phone number on file for an account. In a
/// service, the user database.
fn phone_on_file(account: &str) -> Option<&'static str> {
    match account {
        "user-42" => Some("+1 (555) 010-0199"),
        _ => None,
    }
}

/// The account the session belongs to: the app that authenticated the user
/// set the Lex session id to `<account>:<conversation>`.
fn account_of(event: &Value) -> Option<&str> {
    event["sessionId"].as_str()?.split_once(':').map(|(a, _)| a)
}

enum Turns {
    Store(Box<aio::Otp<DynStore>>),
    Session { sealer: Box<Sealer>, ttl: Duration },
}

const MAX_SESSION_ATTEMPTS: u32 = 3;

impl Turns {
    async fn handle(&self, sms: &Sms, event: &Value) -> Result<Value, Error> {
        let attributes = event["sessionState"]["sessionAttributes"].clone();
        // Never `attributes["phone"]`: the client writes those.
        let Some(account) = account_of(event) else {
            return Ok(close(event, attributes, false, "Please sign in first."));
        };
        let Some(on_file) = phone_on_file(account) else {
            return Ok(close(
                event,
                attributes,
                false,
                "No phone number is on file.",
            ));
        };
        let phone = canonical_phone(on_file)?;
        match self {
            Turns::Store(otp) => {
                let Some(code) = typed_code(event) else {
                    // Counted against the account's own send budget too.
                    let (_, code) = otp.issue_from(&phone, account).await?;
                    sms.send(&phone, &code).await?;
                    return Ok(elicit_code(
                        event,
                        attributes,
                        "I sent you a code. What is it?",
                    ));
                };
                match otp.check(&phone, code.expose_secret()).await? {
                    Verdict::Approved => Ok(close(event, attributes, true, "You are verified.")),
                    Verdict::Rejected { .. } | Verdict::Expired => {
                        match otp.issue_from(&phone, account).await {
                            // The seed's behaviour: a wrong answer gets a new code.
                            Ok((_, code)) => {
                                sms.send(&phone, &code).await?;
                                Ok(elicit_code(
                                    event,
                                    attributes,
                                    "That was not it. I sent a new code.",
                                ))
                            }
                            Err(
                                Error::SendLimit { .. }
                                | Error::Locked { .. }
                                | Error::ClientLimit { .. },
                            ) => Ok(close(
                                event,
                                attributes,
                                false,
                                "Too many tries. Try later.",
                            )),
                            Err(e) => Err(e),
                        }
                    }
                    _ => Ok(close(
                        event,
                        attributes,
                        false,
                        "Too many tries. Try later.",
                    )),
                }
            }
            Turns::Session { sealer, ttl } => {
                let session = event["sessionId"].as_str().unwrap_or_default();
                let aad = Aad::new()
                    .field("lex-session", session)
                    .field("purpose", "otp");
                let mut attributes = attributes;
                // The envelope holds "attempts:code".
                let (attempts, wrong) = match attributes["otp"].as_str() {
                    None => (0, false),
                    Some(envelope) => {
                        let opened = envelope
                            .parse::<Envelope>()
                            .and_then(|e| sealer.open_expiring(&e, aad.as_bytes()));
                        let opened = match opened {
                            Ok(p) => p,
                            Err(Error::Expired) => {
                                attributes["otp"] = Value::Null;
                                return Ok(close(event, attributes, false, "The code expired."));
                            }
                            Err(e) => return Err(e),
                        };
                        let text = std::str::from_utf8(opened.expose_secret())
                            .map_err(|_| Error::Decrypt)?;
                        let (attempts, sent) = text.split_once(':').ok_or(Error::Decrypt)?;
                        let attempts: u32 = attempts.parse().map_err(|_| Error::Decrypt)?;
                        match typed_code(event) {
                            // A turn without a code (the user asked again):
                            // a new code, the count carried over.
                            None => (attempts, false),
                            // Constant-time comparison of two secrets.
                            Some(code) if Secret::new(sent.to_string()) == code => {
                                attributes["otp"] = Value::Null;
                                return Ok(close(event, attributes, true, "You are verified."));
                            }
                            Some(_) if attempts + 1 >= MAX_SESSION_ATTEMPTS => {
                                attributes["otp"] = Value::Null;
                                return Ok(close(event, attributes, false, "Too many tries."));
                            }
                            Some(_) => (attempts + 1, true),
                        }
                    }
                };
                let code = pinseal::otp::random_code(6)?;
                let payload = Secret::new(format!("{attempts}:{}", code.expose_secret()));
                let envelope =
                    sealer.seal_for(payload.expose_secret().as_bytes(), aad.as_bytes(), *ttl);
                attributes["otp"] = Value::String(envelope.to_string());
                sms.send(&phone, &code).await?;
                let message = if wrong {
                    "That was not it. I sent a new code."
                } else {
                    "I sent you a code. What is it?"
                };
                Ok(elicit_code(event, attributes, message))
            }
        }
    }
}

/// Milliseconds since the Unix epoch, to name a fresh table.
#[cfg(all(feature = "dynamodb", feature = "aws-https"))]
fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A Lex V2 code-hook event for one turn.
fn event(session: &str, attributes: &Value, code: Option<&str>) -> Value {
    let slots = match code {
        Some(c) => json!({ "Code": { "value": { "originalValue": c, "interpretedValue": c } } }),
        None => json!({ "Code": null }),
    };
    json!({
        "sessionId": session,
        "invocationSource": "DialogCodeHook",
        "inputTranscript": code.unwrap_or("verify me"),
        "sessionState": {
            "sessionAttributes": attributes,
            "intent": { "name": "VerifyPhone", "slots": slots, "state": "InProgress" }
        }
    })
}

/// The session attributes Lex keeps for the next turn.
fn attributes_of(response: &Value) -> Value {
    response["sessionState"]["sessionAttributes"].clone()
}

async fn store() -> Result<DynStore, Error> {
    #[cfg(all(feature = "dynamodb", feature = "aws-https"))]
    if let Ok(url) = std::env::var("PINSEAL_DYNAMODB_URL") {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(Credentials::new("local", "local", None, None, "example"))
            .build();
        // PINSEAL_DYNAMODB_TABLE names a table to use (made if absent);
        // without it, a fresh one per run.
        let table = std::env::var("PINSEAL_DYNAMODB_TABLE")
            .unwrap_or_else(|_| format!("lex-example-{}", unix_millis()));
        let builder = pinseal::otp::store::DynamoStore::builder(
            aws_sdk_dynamodb::Client::from_conf(config),
            table,
        );
        let setup = builder.create_table().await?;
        println!("table: {setup:?}");
        let store = builder.connect().await?;
        println!("challenge store: DynamoDB (local, table {})", store.table());
        return Ok(DynStore::new(store));
    }
    println!("challenge store: memory");
    Ok(DynStore::new(MemoryStore::new()))
}

/// An AWS endpoint from the standard environment: `AWS_ENDPOINT_URL_<SERVICE>`,
/// else `AWS_ENDPOINT_URL`; `None` means the SDK's own (real AWS).
#[cfg(all(any(feature = "aws-kms", feature = "aws-sns"), feature = "aws-https"))]
fn aws_endpoint(service: &str) -> Option<String> {
    std::env::var(format!("AWS_ENDPOINT_URL_{service}"))
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok()
}

/// Region and credentials from the standard AWS environment.
#[cfg(all(any(feature = "aws-kms", feature = "aws-sns"), feature = "aws-https"))]
fn aws_env() -> (String, Option<(String, String, Option<String>)>) {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let credentials = match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) => Some((id, secret, std::env::var("AWS_SESSION_TOKEN").ok())),
        _ => None,
    };
    (region, credentials)
}

/// The key the session-attribute variant seals with. With
/// `PINSEAL_KMS_KEY_ID` set: a data key from KMS, one call at start (a
/// `Decrypt` of `PINSEAL_WRAPPED_KEY` if set, else a new data key), never
/// one per turn. Otherwise a key derived from the local root.
async fn session_key(root: &Key) -> Result<Key, Error> {
    #[cfg(all(feature = "aws-kms", feature = "aws-https"))]
    if let Ok(kms_key_id) = std::env::var("PINSEAL_KMS_KEY_ID") {
        use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
        use pinseal::kms::{Kms, WrappedKey};
        const PURPOSE: &str = "lex/session-otp";
        let (region, credentials) = aws_env();
        let mut config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region));
        if let Some(url) = aws_endpoint("KMS") {
            config = config.endpoint_url(url);
        }
        if let Some((id, secret, token)) = credentials {
            config = config.credentials_provider(Credentials::new(id, secret, token, None, "env"));
        }
        let kms = Kms::new(aws_sdk_kms::Client::from_conf(config.build()));
        let key = match std::env::var("PINSEAL_WRAPPED_KEY") {
            Ok(text) => {
                kms.unwrap(&kms_key_id, &text.parse::<WrappedKey>()?, PURPOSE)
                    .await?
            }
            Err(_) => {
                let (key, wrapped) = kms.generate_data_key(&kms_key_id, PURPOSE).await?;
                println!("session key: a new KMS data key; keep PINSEAL_WRAPPED_KEY={wrapped}");
                key
            }
        };
        println!(
            "session key: from KMS, id {} (one KMS call, at start)",
            key.id()
        );
        return Ok(key);
    }
    Ok(root.derive("lex/session-otp"))
}

/// Where codes go: SNS when `PINSEAL_SMS=sns` (and the example is built
/// with `aws-sns`), the demo user reading the phone back from moto at
/// `PINSEAL_MOTO_URL`; otherwise a simulated phone.
fn sms() -> Sms {
    #[cfg(all(feature = "aws-sns", feature = "aws-https"))]
    if std::env::var("PINSEAL_SMS").as_deref() == Ok("sns") {
        use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
        let (region, credentials) = aws_env();
        let mut config = aws_sdk_sns::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region));
        if let Some(url) = aws_endpoint("SNS") {
            config = config.endpoint_url(url);
        }
        if let Some((id, secret, token)) = credentials {
            config = config.credentials_provider(Credentials::new(id, secret, token, None, "env"));
        }
        println!("SMS: Amazon SNS");
        return Sms::Sns {
            sms: pinseal::sns::SnsSms::new(aws_sdk_sns::Client::from_conf(config.build())),
            moto: std::env::var("PINSEAL_MOTO_URL").ok(),
        };
    }
    println!("SMS: a simulated phone");
    Sms::Simulated
}

/// The last code the demo phone received, every digit off by one: a
/// wrong answer.
fn mistyped(sms: &Sms) -> String {
    let sent = sms.last_code("+15550100199").expect("a code was sent");
    sent.bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect()
}

/// Plays one conversation: a wrong answer, then the right one.
async fn converse(name: &str, turns: &Turns, sms: &Sms) -> Result<(), Error> {
    println!("\n== {name}");
    // The app authenticated user-42 and started the session under that
    // account. The client also writes a phone number into the session
    // attributes: it is ignored.
    let session = format!("user-42:{name}");
    let mut attributes = json!({ "phone": "+1 (555) 010-0666" });
    let first = turns
        .handle(sms, &event(&session, &attributes, None))
        .await?;
    println!("  bot: {}", first["messages"][0]["content"]);
    attributes = attributes_of(&first);
    // The user mistypes...
    let typo = mistyped(sms);
    let wrong = turns
        .handle(sms, &event(&session, &attributes, Some(&typo)))
        .await?;
    println!(
        "  user: (types a wrong code)\n  bot: {}",
        wrong["messages"][0]["content"]
    );
    assert_eq!(wrong["sessionState"]["dialogAction"]["type"], "ElicitSlot");
    attributes = attributes_of(&wrong);
    let code = sms.last_code("+15550100199").expect("a code was sent");
    // ...then types the new code.
    let right = turns
        .handle(sms, &event(&session, &attributes, Some(&code)))
        .await?;
    println!(
        "  user: (types the code from the phone)\n  bot: {}",
        right["messages"][0]["content"]
    );
    assert_eq!(right["sessionState"]["intent"]["state"], "Fulfilled");
    // Every code went to the number on file, none to the client's.
    assert!(sms.last_code("+15550100666").is_none());
    // The response carries no code in clear.
    assert!(!right.to_string().contains(&code) && !wrong.to_string().contains(&code));
    Ok(())
}

/// Plays a guesser's conversation: a wrong code, a turn that asks for a
/// new code, then wrong codes. The attempt count carries over the resend,
/// so the third wrong code ends the conversation at the latest.
async fn resend_keeps_the_count(name: &str, turns: &Turns, sms: &Sms) -> Result<(), Error> {
    println!("\n== {name}: wrong, resend, wrong, wrong");
    let session = format!("user-42:{name}-guesser");
    let mut attributes = json!({});
    let mut typed: Vec<Option<String>> = vec![None];
    let mut last = Value::Null;
    for turn in 0..5 {
        let code = typed.last().cloned().flatten();
        last = turns
            .handle(sms, &event(&session, &attributes, code.as_deref()))
            .await?;
        println!("  bot: {}", last["messages"][0]["content"]);
        attributes = attributes_of(&last);
        if last["sessionState"]["dialogAction"]["type"] == "Close" {
            // The store variant may stop a turn earlier, on its send budget.
            assert!(turn >= 3, "closed before the third wrong code");
            break;
        }
        // Turn 1 is a wrong code, turn 2 asks again, then wrong codes.
        typed.push(if turn == 1 { None } else { Some(mistyped(sms)) });
    }
    assert_eq!(last["sessionState"]["dialogAction"]["type"], "Close");
    assert_eq!(last["sessionState"]["intent"]["state"], "Failed");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let root = Key::generate();
    let policy = Policy::new(6, Duration::from_secs(60), 3)?
        .with_send_budget(5, Duration::from_secs(15 * 60))?;
    let by_store = Turns::Store(Box::new(aio::Otp::with_parts(
        &root.derive("otp/pepper"),
        policy,
        store().await?,
        SystemClock,
    )));
    let sms = sms();
    converse("store", &by_store, &sms).await?;
    let by_session = Turns::Session {
        sealer: Box::new(Sealer::new(&session_key(&root).await?)),
        ttl: Duration::from_secs(60),
    };
    converse("session-attributes", &by_session, &sms).await?;
    resend_keeps_the_count("store", &by_store, &sms).await?;
    resend_keeps_the_count("session-attributes", &by_session, &sms).await?;
    println!("\ndone: both flows verified the caller; no response carried a code");
    Ok(())
}
