//! A twin of Twilio Verify v2 on axum and pinseal: the same paths, form
//! parameters, JSON fields and error bodies, so that the official Twilio
//! client libraries work against it unchanged (pointed at it through their
//! HTTP client option).
//!
//! ```text
//! POST /v2/Services/{ServiceSid}/Verifications         To, Channel, [RateLimits]
//!   201 {"sid":"VE…","status":"pending","to":"+15550100199",…}
//! POST /v2/Services/{ServiceSid}/VerificationCheck     Code, To | VerificationSid
//!   200 {"status":"approved","valid":true,…} | {"status":"pending","valid":false,…}
//! GET  /v2/Services/{ServiceSid}/Verifications/{Sid}   (Sid: VE…, or the To number)
//! POST /v2/Services/{ServiceSid}/Verifications/{Sid}   Status=canceled|approved
//! errors: {"code":60203,"message":"…","more_info":"…","status":429}
//!   20003 401 bad credentials      20404 404 no such (pending) verification
//!   60200 400 invalid parameter    60202 429 max check attempts reached
//!   60203 429 max send attempts    20429 429 a rate limit's bucket is spent
//!   60410 403 number range blocked by the fraud guard
//!   60605 403 country not permitted
//! ```
//!
//! Every request needs HTTP Basic credentials: the account SID and auth
//! token (compared in constant time). A verification's SID is `VE` and
//! its challenge id. As the provider does, a wrong code is a `200` with
//! `"status":"pending"`; a check with nothing pending, or on an expired or
//! canceled verification, is a `404` (20404). Unlike the provider, a
//! second create for the same number sends a new code under a new SID
//! (the old one stops working): codes are stored only as HMACs, so the
//! same code cannot be sent again.
//!
//! Defences: the number's send and attempt budgets, the `RateLimits`
//! parameter with the service's rate limit `end_user_ip_address` (3 a
//! minute, 10 an hour, counted per end user's address as the caller's
//! back end passes it), and the fraud guard (prefix velocity with a 12-hour
//! block, and no codes to numbers of +882/+883, the international networks
//! pumping favours). Only the account's back end can call the service, so
//! the peer address is that back end's, the same for every end user: no
//! budget is counted on it.
//!
//! Lifecycle events (pending, approved, canceled, expired, max attempts
//! reached) are printed as CloudEvents lines with the provider's type
//! names, each subject a keyed pseudonym.
//!
//! Codes go out through a `Sender`: here `Outbox`, a stand-in SMS gateway
//! that appends one line per message, `<unix time> sms <to> <code>`, to a
//! file (the only place a code is written in clear); an SMS provider's client implements the same trait
//! (`pinseal::sns::SnsSms::send_code` fits it, as `lex_fulfillment` shows).
//!
//! Run: `PINSEAL_AUTH_TOKEN=<token> cargo run --example http_service
//! --features serde,axum`. Settings: `PINSEAL_ACCOUNT_SID` (default
//! `AC` and 32 zeros), `PINSEAL_AUTH_TOKEN` (required), `PINSEAL_SERVICE_SID`
//! (default `VA` and 32 zeros), `PINSEAL_KEY` (64 hex; default a fresh key
//! per run), `PINSEAL_HTTP_ADDR` (default `127.0.0.1:3000`),
//! `PINSEAL_OUTBOX` (default `http_service_outbox.txt`, created readable by
//! its owner only), and with `--features serde,axum,redis-tokio`,
//! `PINSEAL_REDIS_URL` to keep verifications in Redis instead of memory.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use pinseal::otp::store::DynStore;
use pinseal::otp::{
    Challenge, ChallengeId, Event, FraudGuard, MemoryStore, Policy, RateLimit, SystemClock,
    Verdict, aio, canonical_phone,
};
use pinseal::{Error, ExposeSecret, Key, Secret};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

/// Where codes go: an SMS gateway, or a stand-in.
trait Sender: Send + Sync {
    /// Delivers `code` to `to`.
    fn send(
        &self,
        to: &str,
        code: &Secret<String>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Stands in for an SMS gateway: appends each message to a file.
struct Outbox {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Outbox {
    fn open(path: PathBuf) -> std::io::Result<Outbox> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        // Readable by this user only: it holds codes.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        Ok(Outbox {
            path,
            file: Mutex::new(file),
        })
    }
}

impl Sender for Outbox {
    async fn send(&self, to: &str, code: &Secret<String>) -> Result<(), Error> {
        // One line per message, ending in `<to> <code>`.
        let sent_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(file, "{sent_at} sms {to} {}", code.expose_secret()).map_err(|_| Error::Delivery)
    }
}

struct App<S> {
    otp: aio::Otp<DynStore>,
    sender: S,
    account_sid: String,
    auth_token: Secret<String>,
    service_sid: String,
    per_ip: RateLimit,
}

/// The service with the outbox as its gateway; another `Sender` (an SMS
/// provider's client, `pinseal::sns::SnsSms` as in `lex_fulfillment`)
/// plugs in the same way.
type Shared = State<Arc<App<Outbox>>>;

/// An error body of the provider's shape for the cases pinseal's `Error`
/// does not cover (credentials, a resource that does not exist).
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn not_found() -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        "The requested resource was not found",
    )
}

/// A body that did not parse: 400 (60200), without the parser's message,
/// which may quote the input.
fn bad_form(_: FormRejection) -> Error {
    Error::InvalidParameter
}

/// HTTP Basic authentication with the account SID and auth token, both
/// compared in constant time.
async fn authenticate(State(app): Shared, request: Request, next: Next) -> Response {
    if authentic(&app, request.headers()) {
        next.run(request).await
    } else {
        let mut response = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        response
    }
}

fn authentic<S>(app: &App<S>, headers: &HeaderMap) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = data_encoding::BASE64.decode(encoded.trim().as_bytes()) else {
        return false;
    };
    let decoded = Secret::new(decoded);
    let Some(colon) = decoded.expose_secret().iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = decoded.expose_secret().split_at(colon);
    let user_ok = user.ct_eq(app.account_sid.as_bytes());
    let password_ok = password[1..].ct_eq(app.auth_token.expose_secret().as_bytes());
    (user_ok & password_ok).into()
}

/// The rate-limit key of an end user's address as the back end passes it:
/// an IPv4 address, or the /64 network of an IPv6 one (a single host
/// usually holds a whole /64); anything else as given.
fn end_user_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => ip.to_string(),
    }
}

/// `t` as ISO 8601 in UTC, as the provider writes dates.
fn iso8601(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A verification as the provider's JSON resource.
fn resource<S>(app: &App<S>, c: &Challenge, channel: &str) -> Result<Value, Error> {
    let (Some(id), Some(to)) = (c.id, c.subject.as_ref()) else {
        // Stored by a release that kept neither: nothing to show.
        return Err(Error::StoreCorrupt);
    };
    // 34 characters, as the provider's; 36 on a Redis Cluster store,
    // whose ids carry a slot byte.
    let sid = format!("VE{id}");
    let created = iso8601(c.created_at.unwrap_or(UNIX_EPOCH));
    let updated = iso8601(c.updated_at.unwrap_or(UNIX_EPOCH));
    Ok(json!({
        "sid": sid,
        "service_sid": app.service_sid,
        "account_sid": app.account_sid,
        "to": to.expose_secret(),
        "channel": channel,
        "status": c.status.as_str(),
        "valid": c.status == pinseal::otp::ChallengeStatus::Approved,
        "lookup": {},
        "amount": null,
        "payee": null,
        "send_code_attempts": [{
            "attempt_sid": format!("VL{id}"),
            "channel": channel,
            "time": created,
        }],
        "date_created": created,
        "date_updated": updated,
        "sna": null,
        "url": format!(
            "https://verify.twilio.com/v2/Services/{}/Verifications/{sid}",
            app.service_sid
        ),
    }))
}

/// The verification SID's challenge id, if it is one of ours.
fn challenge_id(sid: &str) -> Option<ChallengeId> {
    sid.strip_prefix("VE")?.parse().ok()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Create {
    to: Option<String>,
    channel: Option<String>,
    /// JSON: `{"end_user_ip_address": "203.0.113.7"}`.
    rate_limits: Option<String>,
}

async fn create(
    State(app): Shared,
    Path(service): Path<String>,
    form: Result<Form<Create>, FormRejection>,
) -> Result<Response, Error> {
    if service != app.service_sid {
        return Ok(not_found());
    }
    let Form(create) = form.map_err(bad_form)?;
    let to = canonical_phone(create.to.as_deref().ok_or(Error::InvalidParameter)?)?;
    let channel = create.channel.as_deref().ok_or(Error::InvalidParameter)?;
    if channel != "sms" {
        return Err(Error::InvalidParameter);
    }
    let mut end_user = None;
    if let Some(limits) = &create.rate_limits {
        let limits: serde_json::Map<String, Value> =
            serde_json::from_str(limits).map_err(|_| Error::InvalidParameter)?;
        for (name, value) in limits {
            match (name.as_str(), value) {
                ("end_user_ip_address", Value::String(ip)) => end_user = Some(end_user_key(&ip)),
                _ => return Err(Error::InvalidParameter),
            }
        }
    }
    let mut keys = Vec::new();
    if let Some(ip) = &end_user {
        keys.push(app.per_ip.key(ip));
    }
    // A refusal carries its Retry-After: no second store call.
    let (id, code) = app.otp.issue_limited(&to, &keys).await?;
    if let Err(e) = app.sender.send(&to, &code).await {
        // Not delivered: withdraw the code rather than leave it pending.
        let _ = app.otp.cancel(&id).await;
        return Err(e);
    }
    drop(code);
    let seen = app.otp.fetch(&id).await?.ok_or(Error::Contention)?;
    Ok((StatusCode::CREATED, Json(resource(&app, &seen, channel)?)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Check {
    code: Option<Secret<String>>,
    to: Option<String>,
    verification_sid: Option<String>,
}

async fn check(
    State(app): Shared,
    Path(service): Path<String>,
    form: Result<Form<Check>, FormRejection>,
) -> Result<Response, Error> {
    if service != app.service_sid {
        return Ok(not_found());
    }
    let Form(check) = form.map_err(bad_form)?;
    let code = check.code.ok_or(Error::InvalidParameter)?;
    let (verdict, seen) = match (check.verification_sid, check.to) {
        (Some(sid), _) => {
            let Some(id) = challenge_id(&sid) else {
                return Ok(not_found());
            };
            let verdict = app.otp.verify(&id, code.expose_secret()).await?;
            (verdict, app.otp.fetch(&id).await?)
        }
        (None, Some(to)) => {
            let to = canonical_phone(&to)?;
            let verdict = app.otp.check(&to, code.expose_secret()).await?;
            (verdict, app.otp.fetch_subject(&to).await?)
        }
        (None, None) => return Err(Error::InvalidParameter),
    };
    match verdict {
        Verdict::Approved | Verdict::Rejected { .. } => {
            let seen = seen.ok_or(Error::Contention)?;
            let mut body = resource(&app, &seen, "sms")?;
            body["status"] = json!(verdict.status());
            body["valid"] = json!(verdict.is_approved());
            Ok(Json(body).into_response())
        }
        Verdict::Locked => {
            // Until the subject's window ends (its attempts), or, for a code
            // that has had all its guesses, until it expires.
            let subject = seen.as_ref().and_then(|c| c.subject.as_ref());
            let window = match subject {
                Some(to) => app.otp.budget(to.expose_secret()).await?.retry_after(),
                None => None,
            };
            let code_lifetime = seen
                .as_ref()
                .and_then(|c| c.expires_at.duration_since(SystemTime::now()).ok());
            Err(Error::Locked {
                retry_after: window.or(code_lifetime).unwrap_or(Duration::from_secs(1)),
            })
        }
        // Expired, canceled, approved before, replaced, never issued.
        _ => Ok(not_found()),
    }
}

/// The verification named by `sid`: its SID, or the number it was sent to.
async fn find<S>(app: &App<S>, sid: &str) -> Result<Option<Challenge>, Error> {
    if sid.starts_with('+') {
        return app.otp.fetch_subject(&canonical_phone(sid)?).await;
    }
    match challenge_id(sid) {
        Some(id) => app.otp.fetch(&id).await,
        None => Ok(None),
    }
}

async fn fetch(
    State(app): Shared,
    Path((service, sid)): Path<(String, String)>,
) -> Result<Response, Error> {
    if service != app.service_sid {
        return Ok(not_found());
    }
    Ok(match find(&app, &sid).await? {
        Some(seen) => Json(resource(&app, &seen, "sms")?).into_response(),
        None => not_found(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Update {
    status: Option<String>,
}

async fn update(
    State(app): Shared,
    Path((service, sid)): Path<(String, String)>,
    form: Result<Form<Update>, FormRejection>,
) -> Result<Response, Error> {
    if service != app.service_sid {
        return Ok(not_found());
    }
    let Form(update) = form.map_err(bad_form)?;
    let approve = match update.status.as_deref() {
        Some("canceled") => false,
        Some("approved") => true,
        _ => return Err(Error::InvalidParameter),
    };
    let Some(id) = find(&app, &sid).await?.and_then(|c| c.id) else {
        return Ok(not_found());
    };
    let done = if approve {
        app.otp.approve(&id).await?
    } else {
        app.otp.cancel(&id).await?
    };
    if !done {
        return Ok(not_found());
    }
    let seen = app.otp.fetch(&id).await?.ok_or(Error::Contention)?;
    Ok(Json(resource(&app, &seen, "sms")?).into_response())
}

/// The challenge store, chosen at run time: one `aio::Otp<DynStore>` type
/// serves both.
async fn store() -> Result<DynStore, Error> {
    #[cfg(feature = "redis-tokio")]
    if let Ok(url) = std::env::var("PINSEAL_REDIS_URL") {
        println!("challenge store: Redis");
        return Ok(DynStore::new(
            pinseal::otp::store::AsyncRedisStore::builder()
                .url(url)
                .connect()
                .await?,
        ));
    }
    println!("challenge store: memory");
    Ok(DynStore::new(MemoryStore::new()))
}

/// The stand-in gateway: `PINSEAL_OUTBOX`, or `http_service_outbox.txt`.
fn outbox() -> std::io::Result<Outbox> {
    let path = std::env::var_os("PINSEAL_OUTBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("http_service_outbox.txt"));
    let outbox = Outbox::open(path)?;
    println!(
        "SMS gateway: the outbox file {} (a stand-in)",
        outbox.path.display()
    );
    Ok(outbox)
}

fn sid_from_env(name: &str, prefix: &str) -> Result<String, Box<dyn std::error::Error>> {
    let sid = std::env::var(name).unwrap_or_else(|_| format!("{prefix}{}", "0".repeat(32)));
    let ok = sid.len() == 34
        && sid.starts_with(prefix)
        && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(format!("{name} must be {prefix} and 32 hex digits").into());
    }
    Ok(sid)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pepper = match Key::from_env("PINSEAL_KEY") {
        Ok(root) => root.derive("otp/pepper"),
        Err(Error::KeyEnvMissing) => {
            println!("PINSEAL_KEY is not set; using a fresh random key for this run only.");
            Key::generate()
        }
        Err(e) => return Err(e.into()),
    };
    let auth_token = match std::env::var("PINSEAL_AUTH_TOKEN") {
        Ok(token) if token.len() >= 16 => Secret::new(token),
        _ => {
            return Err(
                "set PINSEAL_AUTH_TOKEN to the auth token clients use (16 characters or more)"
                    .into(),
            );
        }
    };
    let policy = Policy::new(6, Duration::from_secs(10 * 60), 5)?
        .with_send_budget(5, Duration::from_secs(10 * 60))?;
    let guard = FraudGuard::new()
        .with_prefix_limit(3, 50, Duration::from_secs(60 * 60))?
        .deny_countries(&["+882", "+883"])?;
    let app = Arc::new(App {
        otp: aio::Otp::with_parts(&pepper, policy, store().await?, SystemClock)
            .with_fraud_guard(guard)
            // The event sink: one CloudEvents line per lifecycle event on
            // standard output, subjects as keyed pseudonyms. A service
            // hands them to its event bus instead.
            .with_events(|event: &Event| {
                println!("{}", event.to_cloudevent("urn:pinseal:http_service"))
            }),
        sender: outbox()?,
        account_sid: sid_from_env("PINSEAL_ACCOUNT_SID", "AC")?,
        auth_token,
        service_sid: sid_from_env("PINSEAL_SERVICE_SID", "VA")?,
        per_ip: RateLimit::new("end_user_ip_address")?
            .bucket(3, Duration::from_secs(60))?
            .bucket(10, Duration::from_secs(60 * 60))?,
    });
    println!("service: {}", app.service_sid);

    let router = Router::new()
        .route("/v2/Services/{service}/Verifications", post(create))
        .route("/v2/Services/{service}/VerificationCheck", post(check))
        .route(
            "/v2/Services/{service}/Verifications/{sid}",
            post(update).get(fetch),
        )
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .with_state(app);
    let addr = std::env::var("PINSEAL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
