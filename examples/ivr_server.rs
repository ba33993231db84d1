//! The IVR gather flow as the server a telephony provider posts to.
//!
//! ```text
//! provider ──POST /voice──────────▶ edge: <Gather> the PIN
//! provider ──POST /gather/pin─────▶ edge: signature, replay, seal the PIN at once;
//!                                         <Gather> the last four, the PIN's envelope
//!                                         in the next action URL
//! provider ──POST /gather/last4?pin=<envelope>
//!                                 ▶ edge: signature, replay, seal the last four;
//!                                         POST both envelopes to the back end
//! edge ─────POST /backend/check───▶ back end: open each envelope once, check
//!                                         (test data: PIN 1234, last four 4321)
//! ```
//!
//! Every provider request goes through `pinseal::web::TwilioWebhook`: the
//! `X-Twilio-Signature` is checked against the public URL, the digits are
//! handed over already in a `Secret`, and a delivery replayed (the same
//! call at the same URL) is refused. Each value is sealed into an expiring
//! envelope bound to its call and field the moment it is read; the edge
//! keeps nothing and the back end sees envelopes only. The back end opens
//! each envelope at most once (`otp::aio::AcceptOnce`), so an envelope
//! replayed into the back end, moved to another call or kept past its
//! deadline is refused. No log line holds a digit: the log names calls,
//! callers by keyed pseudonym, and the kind of each failure.
//!
//! Run: `cargo run --example ivr_server --features axum,serde`. Settings, all
//! optional: `PINSEAL_KEY` (64 hex), `PINSEAL_AUTH_TOKEN` (the account's
//! Auth Token; default a fixed test token, printed as such),
//! `PINSEAL_HTTP_ADDR` (default `127.0.0.1:3001`), `PINSEAL_PUBLIC_URL`
//! (the base URL configured at the provider; default `http://<addr>`),
//! `PINSEAL_ENVELOPE_TTL_SECS` (default 300).
//!
//! What this example leaves to a production service: the back end is
//! another service on a private network that only the edge can reach (here
//! it is an unauthenticated route of the same server, reached over HTTP all
//! the same); the accept-once sets live on a shared store under a pepper
//! from configuration; and the back end counts wrong PINs per account (for
//! example with `otp::Otp`'s budgets): each call may try once, but a caller
//! may place many calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use pinseal::envelope::Envelope;
use pinseal::otp::MemoryStore;
use pinseal::otp::aio::AcceptOnce;
use pinseal::otp::store::DynStore;
use pinseal::pseudonym::Pseudonymizer;
use pinseal::web::{TwilioWebhook, WebhookConfig, WebhookState};
use pinseal::webhook::TwilioSignature;
use pinseal::{Aad, Error, ExposeSecret, Key, Seal, Sealer, Secret};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The test account's Auth Token when `PINSEAL_AUTH_TOKEN` is not set.
const TEST_AUTH_TOKEN: &str = "pinseal-example-auth-token";

#[derive(Clone)]
struct App {
    webhooks: Arc<WebhookConfig>,
    edge: Arc<Edge>,
    backend: Arc<Backend>,
}

impl WebhookState for App {
    fn webhook_config(&self) -> &WebhookConfig {
        &self.webhooks
    }
}

/// The edge: seals what it gathers, forwards envelopes.
struct Edge {
    sealer: Sealer,
    callers: Pseudonymizer,
    ttl: Duration,
    backend_addr: SocketAddr,
}

/// The back end: opens each envelope once and checks.
struct Backend {
    sealer: Sealer,
    once: AcceptOnce<DynStore>,
}

/// The context an envelope is bound to: flow, call and field,
/// length-prefixed so a crafted call id cannot pose as a field.
fn aad(call: &str, field: &str) -> Aad {
    Aad::new()
        .field("flow", "pinseal-example/ivr-server/v1")
        .field("call", call)
        .field("field", field)
}

fn twiml(body: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml")],
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>"#),
    )
        .into_response()
}

fn gather(action: &str, prompt: &str) -> Response {
    twiml(&format!(
        r#"<Gather action="{action}" method="POST" numDigits="4" timeout="10"><Say>{prompt}</Say></Gather><Say>We did not receive any digits. Goodbye.</Say>"#
    ))
}

fn goodbye(text: &str) -> Response {
    twiml(&format!("<Say>{text}</Say><Hangup/>"))
}

/// Four ASCII digits, or `None`.
fn four_digits(digits: Option<Secret<String>>) -> Option<Secret<String>> {
    digits.filter(|d| {
        let d = d.expose_secret();
        d.len() == 4 && d.bytes().all(|b| b.is_ascii_digit())
    })
}

async fn voice(hook: TwilioWebhook) -> Response {
    let call = hook.get("CallSid").unwrap_or_default();
    tracing::info!(call, "answered; gathering the PIN");
    gather("/gather/pin", "Please enter your four digit PIN.")
}

async fn gather_pin(State(app): State<App>, mut hook: TwilioWebhook) -> Response {
    let call = hook.get("CallSid").unwrap_or_default().to_string();
    let caller = app
        .edge
        .callers
        .pseudonym(hook.get("From").unwrap_or_default());
    let Some(pin) = four_digits(hook.take_secret("Digits")) else {
        tracing::warn!(call, %caller, "PIN is not four digits");
        return goodbye("That was not a four digit PIN. Goodbye.");
    };
    let envelope = app.edge.sealer.seal_for(
        pin.expose_secret().as_bytes(),
        aad(&call, "pin").as_bytes(),
        app.edge.ttl,
    );
    tracing::info!(call, %caller, "PIN sealed; gathering the last four");
    // The envelope rides in the next action URL, which the provider signs.
    gather(
        &format!("/gather/last4?pin={envelope}"),
        "Now enter the last four digits of your card.",
    )
}

/// What the edge sends the back end: the call and two envelopes.
#[derive(Serialize, Deserialize)]
struct Check {
    call: String,
    pin: Envelope,
    last4: Envelope,
}

async fn gather_last4(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    mut hook: TwilioWebhook,
) -> Response {
    let call = hook.get("CallSid").unwrap_or_default().to_string();
    let pin = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "pin")
        .and_then(|(_, hex)| hex.parse::<Envelope>().ok());
    let (Some(pin), Some(last4)) = (pin, four_digits(hook.take_secret("Digits"))) else {
        tracing::warn!(
            call,
            "no PIN envelope, or the last four are not four digits"
        );
        return goodbye("We could not verify you. Goodbye.");
    };
    let last4 = app.edge.sealer.seal_for(
        last4.expose_secret().as_bytes(),
        aad(&call, "last4").as_bytes(),
        app.edge.ttl,
    );
    tracing::info!(call, "last four sealed; asking the back end");
    let check = Check {
        call: call.clone(),
        pin,
        last4,
    };
    match post_json(app.edge.backend_addr, "/backend/check", &check).await {
        Ok(200) => {
            tracing::info!(call, "verified");
            goodbye("Thank you. You are verified.")
        }
        Ok(status) => {
            tracing::warn!(call, status, "the back end refused the call");
            goodbye("We could not verify you. Goodbye.")
        }
        Err(e) => {
            tracing::error!(call, error = %e, "the back end is unreachable");
            goodbye("We cannot verify you right now. Please call again later.")
        }
    }
}

/// The back end's one endpoint: `200 {"verified":true}` when both values
/// match, `403 {"verified":false}` when they do not, and the error's own
/// response (`403` for an envelope that does not open, has expired or was
/// opened before) otherwise.
async fn backend_check(
    State(app): State<App>,
    Json(check): Json<Check>,
) -> Result<Response, Error> {
    let backend = &app.backend;
    let open = async |envelope: &Envelope, field: &str| {
        backend
            .once
            .open_expiring_once(
                &backend.sealer,
                envelope,
                aad(&check.call, field).as_bytes(),
            )
            .await
            .inspect_err(
                |e| tracing::warn!(call = check.call, field, error = %e, "envelope refused"),
            )
    };
    let pin = open(&check.pin, "pin").await?;
    let last4 = open(&check.last4, "last4").await?;
    // The account's values (test data); `&` so both comparisons run.
    let matches = (pin == Secret::new(b"1234".to_vec())) & (last4 == Secret::new(b"4321".to_vec()));
    if matches {
        Ok(Json(serde_json::json!({ "verified": true })).into_response())
    } else {
        // Formatting the secrets shows *REDACTED*, never the digits.
        tracing::warn!(call = check.call, ?pin, ?last4, "values do not match");
        Ok((
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "verified": false })),
        )
            .into_response())
    }
}

/// POSTs `body` as JSON to `addr` and returns the status: a minimal
/// HTTP/1.1 client for the edge-to-back-end hop.
async fn post_json<T: Serialize>(addr: SocketAddr, path: &str, body: &T) -> std::io::Result<u16> {
    let body = serde_json::to_vec(body)?;
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    // "HTTP/1.1 200 OK"
    std::str::from_utf8(&response)
        .ok()
        .and_then(|r| r.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

fn load_key() -> Result<Key, Error> {
    match Key::from_env("PINSEAL_KEY") {
        Ok(key) => Ok(key),
        Err(Error::KeyEnvMissing) => {
            println!("PINSEAL_KEY is not set; using a fresh random key for this run only.");
            Ok(Key::generate())
        }
        Err(e) => Err(e),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let root = load_key()?;
    let token = match std::env::var("PINSEAL_AUTH_TOKEN") {
        Ok(token) => token,
        Err(_) => {
            println!("PINSEAL_AUTH_TOKEN is not set; using the test token {TEST_AUTH_TOKEN:?}.");
            TEST_AUTH_TOKEN.to_string()
        }
    };
    let ttl = std::env::var("PINSEAL_ENVELOPE_TTL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);

    let addr = std::env::var("PINSEAL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let public = std::env::var("PINSEAL_PUBLIC_URL").unwrap_or_else(|_| format!("http://{local}"));

    // In production both accept-once sets live on a shared store (Redis,
    // DynamoDB) so that every instance sees every delivery.
    let webhook_once = AcceptOnce::with_store(
        &root.derive("ivr/webhook-once"),
        DynStore::new(MemoryStore::new()),
    );
    let signature = TwilioSignature::new(Secret::new(token));
    let digits_key = root.derive("ivr/digits");
    let app = App {
        // One delivery per call and URL: a call posts its digits to each
        // gather URL once.
        webhooks: Arc::new(
            WebhookConfig::new(signature, &public, webhook_once)?.once_per(&["CallSid"]),
        ),
        edge: Arc::new(Edge {
            sealer: Sealer::new(&digits_key),
            callers: Pseudonymizer::new(&root, "ivr/callers"),
            ttl,
            backend_addr: local,
        }),
        backend: Arc::new(Backend {
            sealer: Sealer::new(&digits_key),
            once: AcceptOnce::with_store(
                &root.derive("ivr/envelope-once"),
                DynStore::new(MemoryStore::new()),
            ),
        }),
    };
    let router = Router::new()
        .route("/voice", post(voice))
        .route("/gather/pin", post(gather_pin))
        .route("/gather/last4", post(gather_last4))
        .route("/backend/check", post(backend_check))
        .with_state(app);
    println!("listening on http://{local}, signed for {public}");
    axum::serve(listener, router).await?;
    Ok(())
}
