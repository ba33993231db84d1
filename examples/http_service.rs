//! A verification service in the shape of Twilio Verify, on axum: start a
//! verification, check a code, cancel, with per-number and per-client
//! budgets and errors mapped to HTTP.
//!
//! ```text
//! POST /verifications                {"to": "+1 555 010 0199"}
//!   201 {"id": "<32 hex>", "to": "+15550100199", "status": "pending"}
//! POST /verifications/check          {"to": "+15550100199", "code": "123456"}
//!                                 or {"id": "<32 hex>", "code": "123456"}
//!   200 {"status": "approved"} | {"status": "pending", "attempts_left": 4}
//!     | {"status": "expired"} | {"status": "max_attempts_reached"}
//!     | {"status": "canceled"} | {"status": "not_found"}
//! POST /verifications/{id}/cancel
//!   200 {"status": "canceled"} | 404 {"status": "not_found"}
//! errors: {"code": 60203, "message": "...", "more_info": "...", "status": 429}
//!         400 bad input (60200), 404 unknown id (20404), 429 + Retry-After
//!         for a spent budget (60203, 20429), 503 + Retry-After when the
//!         store is unavailable
//! ```
//!
//! The code goes out through `Outbox`, a stand-in for an SMS gateway that
//! appends each message to a file: the only place the code is written in
//! clear. Request bodies are read into `Secret` and error bodies never echo
//! the input.
//!
//! Run: `cargo run --example http_service --features serde,axum`, then for
//! example `curl -s localhost:3000/verifications -d '{"to":"+15550100199"}'
//! -H 'content-type: application/json'` and read the code from the outbox
//! file the service names at start. Settings, all optional:
//! `PINSEAL_KEY` (64 hex), `PINSEAL_HTTP_ADDR` (default `127.0.0.1:3000`),
//! `PINSEAL_OUTBOX` (default `http_service_outbox.txt` in the current
//! directory, created readable by its owner only), and with `--features serde,axum,redis-tokio`, `PINSEAL_REDIS_URL`
//! to keep challenges in Redis instead of memory.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use pinseal::otp::store::DynStore;
use pinseal::otp::{ChallengeId, MemoryStore, Policy, SystemClock, aio, canonical_phone};
use pinseal::{Error, ExposeSecret, Key, Secret};
use serde::{Deserialize, Serialize};
use serde_json::json;

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

    fn send(&self, to: &str, code: &Secret<String>) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(
            file,
            "{to} Your verification code is {}",
            code.expose_secret()
        )
    }
}

struct App {
    otp: aio::Otp<DynStore>,
    outbox: Outbox,
}

type Shared = State<Arc<App>>;

/// A body that did not parse: 400, without the parser's message (which may
/// quote the input). Every other error answers through pinseal's
/// `IntoResponse` (feature `axum`): status, `Retry-After`, a JSON body in
/// the provider's error shape.
fn bad_body(_: JsonRejection) -> Error {
    Error::InvalidParameter
}

/// The client key for the per-client budget: the caller's IPv4 address,
/// or the /64 network of an IPv6 one (a single host usually holds a whole
/// /64). Behind a proxy, take the address from the header the proxy sets.
fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[derive(Deserialize)]
struct Start {
    to: String,
}

#[derive(Serialize)]
struct Started {
    id: ChallengeId,
    to: String,
    status: &'static str,
}

async fn start(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<Start>, JsonRejection>,
) -> Result<(StatusCode, Json<Started>), Error> {
    let Json(start) = body.map_err(bad_body)?;
    let to = canonical_phone(&start.to)?;
    let client = client_key(peer.ip());
    // A refusal carries its Retry-After: no second store call.
    let (id, code) = app.otp.issue_from(&to, &client).await?;
    if app.outbox.send(&to, &code).is_err() {
        // Not delivered: withdraw the code rather than leave it pending.
        let _ = app.otp.cancel(&id).await;
        return Err(Error::Store);
    }
    Ok((
        StatusCode::CREATED,
        Json(Started {
            id,
            to,
            status: "pending",
        }),
    ))
}

#[derive(Deserialize)]
struct Check {
    to: Option<String>,
    id: Option<ChallengeId>,
    code: Secret<String>,
}

/// Checks are limited per subject (attempts); a production service also
/// rate-limits this endpoint per client in front of it, so that one caller
/// cannot spend many numbers' attempts (see SECURITY.md, lock-out).
async fn check(
    State(app): Shared,
    body: Result<Json<Check>, JsonRejection>,
) -> Result<Json<pinseal::otp::Verdict>, Error> {
    let Json(check) = body.map_err(bad_body)?;
    let verdict = match (check.id, check.to) {
        (Some(id), _) => app.otp.verify(&id, check.code.expose_secret()).await?,
        (None, Some(to)) => {
            let to = canonical_phone(&to)?;
            app.otp.check(&to, check.code.expose_secret()).await?
        }
        (None, None) => return Err(Error::InvalidParameter),
    };
    Ok(Json(verdict))
}

async fn cancel(State(app): Shared, Path(id): Path<String>) -> Result<Response, Error> {
    let id: ChallengeId = id.parse()?;
    Ok(if app.otp.cancel(&id).await? {
        Json(json!({ "status": "canceled" })).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "status": "not_found" })),
        )
            .into_response()
    })
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
    let policy = Policy::new(6, Duration::from_secs(5 * 60), 5)?
        .with_send_budget(5, Duration::from_secs(10 * 60))?
        .with_client_budget(20, Duration::from_secs(60 * 60))?;
    let outbox = std::env::var_os("PINSEAL_OUTBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("http_service_outbox.txt"));
    let app = Arc::new(App {
        otp: aio::Otp::with_parts(&pepper, policy, store().await?, SystemClock),
        outbox: Outbox::open(outbox)?,
    });
    println!(
        "outbox (the stand-in SMS gateway): {}",
        app.outbox.path.display()
    );

    let router = Router::new()
        .route("/verifications", post(start))
        .route("/verifications/check", post(check))
        .route("/verifications/{id}/cancel", post(cancel))
        .with_state(app);
    let addr = std::env::var("PINSEAL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
