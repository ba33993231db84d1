//! The chat flow as an Amazon Lex V2 code hook: Lex sends a JSON event,
//! the handler answers with a JSON response. No network is needed: `main`
//! plays a conversation through the handler and prints each turn.
//!
//! Two ways to keep the code between turns:
//!
//! - **Store** (`Turns::Store`): the code is issued by `Otp` on a challenge
//!   store (the memory store, or DynamoDB with `--features dynamodb-https` and
//!   `PINSEAL_DYNAMODB_URL` pointing at a local server, or real DynamoDB
//!   with `PINSEAL_DYNAMODB_TABLE`), checked by phone number, with send and
//!   attempt budgets; a wrong answer gets a new code while the budgets
//!   last.
//! - **Session attributes** (`Turns::Session`): no store at all. The code
//!   travels in the Lex session attributes sealed with `Sealer`, under
//!   associated data bound to the Lex session id, with an expiry inside the
//!   envelope, and is compared in constant time. Its limits: a client that
//!   can write session attributes (the Lex runtime API lets it) can replay
//!   an earlier envelope, and so its attempt count; use the store where
//!   that matters.
//!
//! Run: `cargo run --example lex_fulfillment` (memory store), or
//! `PINSEAL_DYNAMODB_URL=http://127.0.0.1:8000 cargo run --example
//! lex_fulfillment --features dynamodb-https` against a local DynamoDB.

use std::time::Duration;

use pinseal::envelope::Envelope;
use pinseal::otp::store::DynStore;
use pinseal::otp::{MemoryStore, Policy, SystemClock, Verdict, aio, canonical_phone};
use pinseal::{Aad, Error, ExposeSecret, Key, Seal, Sealer, Secret};
use serde_json::{Value, json};

thread_local! {
    /// The simulated phone's inbox: the codes it received, so the demo
    /// conversation can answer them.
    static INBOX: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Stands in for the SMS gateway: the simulated phone receives the code.
fn send_sms(to: &str, code: &Secret<String>) {
    println!("    [phone {to}] Your code is {}", code.expose_secret());
    INBOX.with(|inbox| inbox.borrow_mut().push(code.expose_secret().clone()));
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

enum Turns {
    Store(aio::Otp<DynStore>),
    Session { sealer: Box<Sealer>, ttl: Duration },
}

const MAX_SESSION_ATTEMPTS: u32 = 3;

impl Turns {
    async fn handle(&self, event: &Value) -> Result<Value, Error> {
        let attributes = event["sessionState"]["sessionAttributes"].clone();
        let phone = canonical_phone(attributes["phone"].as_str().unwrap_or_default())?;
        match self {
            Turns::Store(otp) => {
                let Some(code) = typed_code(event) else {
                    let (_, code) = otp.issue(&phone).await?;
                    send_sms(&phone, &code);
                    return Ok(elicit_code(
                        event,
                        attributes,
                        "I sent you a code. What is it?",
                    ));
                };
                match otp.check(&phone, code.expose_secret()).await? {
                    Verdict::Approved => Ok(close(event, attributes, true, "You are verified.")),
                    Verdict::Rejected { .. } | Verdict::Expired => {
                        match otp.issue(&phone).await {
                            // The seed's behaviour: a wrong answer gets a new code.
                            Ok((_, code)) => {
                                send_sms(&phone, &code);
                                Ok(elicit_code(
                                    event,
                                    attributes,
                                    "That was not it. I sent a new code.",
                                ))
                            }
                            Err(Error::SendLimit { .. } | Error::Locked { .. }) => Ok(close(
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
                let attempts = match (typed_code(event), attributes["otp"].as_str()) {
                    (Some(code), Some(envelope)) => {
                        let opened = envelope
                            .parse::<Envelope>()
                            .and_then(|e| sealer.open_expiring(&e, aad.as_bytes()));
                        let opened = match opened {
                            Ok(p) => p,
                            Err(Error::Expired) => {
                                return Ok(close(event, attributes, false, "The code expired."));
                            }
                            Err(e) => return Err(e),
                        };
                        let text = std::str::from_utf8(opened.expose_secret())
                            .map_err(|_| Error::Decrypt)?;
                        let (attempts, sent) = text.split_once(':').ok_or(Error::Decrypt)?;
                        let attempts: u32 = attempts.parse().map_err(|_| Error::Decrypt)?;
                        // Constant-time comparison of two secrets.
                        if Secret::new(sent.to_string()) == code {
                            attributes["otp"] = Value::Null;
                            return Ok(close(event, attributes, true, "You are verified."));
                        }
                        if attempts + 1 >= MAX_SESSION_ATTEMPTS {
                            attributes["otp"] = Value::Null;
                            return Ok(close(event, attributes, false, "Too many tries."));
                        }
                        attempts + 1
                    }
                    _ => 0,
                };
                let code = pinseal::otp::random_code(6)?;
                let payload = Secret::new(format!("{attempts}:{}", code.expose_secret()));
                let envelope =
                    sealer.seal_for(payload.expose_secret().as_bytes(), aad.as_bytes(), *ttl);
                attributes["otp"] = Value::String(envelope.to_string());
                send_sms(&phone, &code);
                let message = if attempts == 0 {
                    "I sent you a code. What is it?"
                } else {
                    "That was not it. I sent a new code."
                };
                Ok(elicit_code(event, attributes, message))
            }
        }
    }
}

/// Milliseconds since the Unix epoch, to name a fresh table.
#[cfg(feature = "dynamodb-https")]
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
    #[cfg(feature = "dynamodb-https")]
    if let Ok(url) = std::env::var("PINSEAL_DYNAMODB_URL") {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(Credentials::new("local", "local", None, None, "example"))
            .build();
        let builder = pinseal::otp::store::DynamoStore::builder(
            aws_sdk_dynamodb::Client::from_conf(config),
            format!("lex-example-{}", unix_millis()),
        );
        builder.create_table().await?;
        let store = builder.connect().await?;
        println!("challenge store: DynamoDB (local, table {})", store.table());
        return Ok(DynStore::new(store));
    }
    println!("challenge store: memory");
    Ok(DynStore::new(MemoryStore::new()))
}

/// Plays one conversation: a wrong answer, then the right one.
async fn converse(name: &str, turns: &Turns) -> Result<(), Error> {
    println!("\n== {name}");
    let session = format!("session-{name}");
    let mut attributes = json!({ "phone": "+1 (555) 010-0199" });
    let first = turns.handle(&event(&session, &attributes, None)).await?;
    println!("  bot: {}", first["messages"][0]["content"]);
    attributes = attributes_of(&first);
    // The user mistypes (every digit off by one)...
    let sent = INBOX
        .with(|inbox| inbox.borrow().last().cloned())
        .expect("a code was sent");
    let typo: String = sent
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect();
    let wrong = turns
        .handle(&event(&session, &attributes, Some(&typo)))
        .await?;
    println!("  user: {typo}\n  bot: {}", wrong["messages"][0]["content"]);
    assert_eq!(wrong["sessionState"]["dialogAction"]["type"], "ElicitSlot");
    attributes = attributes_of(&wrong);
    let code = INBOX
        .with(|inbox| inbox.borrow().last().cloned())
        .expect("a code was sent");
    // ...then types the new code.
    let right = turns
        .handle(&event(&session, &attributes, Some(&code)))
        .await?;
    println!("  user: {code}\n  bot: {}", right["messages"][0]["content"]);
    assert_eq!(right["sessionState"]["intent"]["state"], "Fulfilled");
    // The response carries no code in clear.
    assert!(!right.to_string().contains(&code) && !wrong.to_string().contains(&code));
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let root = Key::generate();
    let policy = Policy::new(6, Duration::from_secs(60), 3)?
        .with_send_budget(5, Duration::from_secs(15 * 60))?;
    let by_store = Turns::Store(aio::Otp::with_parts(
        &root.derive("otp/pepper"),
        policy,
        store().await?,
        SystemClock,
    ));
    converse("store", &by_store).await?;
    let by_session = Turns::Session {
        sealer: Box::new(Sealer::new(&root.derive("lex/session-otp"))),
        ttl: Duration::from_secs(60),
    };
    converse("session-attributes", &by_session).await?;
    println!("\ndone: both flows verified the caller; no response carried a code");
    Ok(())
}
