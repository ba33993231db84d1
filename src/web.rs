//! Web services on axum (feature `axum`): the crate's errors as HTTP
//! responses, and an extractor for signed Twilio webhooks.
//!
//! # What is in this module
//!
//! | item | for |
//! |---|---|
//! | `impl IntoResponse for Error` | a handler returns `Result<_, pinseal::Error>`: status, `Retry-After`, a JSON body in the provider's error shape |
//! | [`TwilioWebhook`] | the extractor: signature checked, secret parameters in [`Secret`], replays refused |
//! | [`WebhookConfig`] | what it checks against: tokens and shared keys, the public URL, the accept-once store |
//! | [`WebhookState`] | how the extractor finds the configuration in an app's state |
//!
//! # Errors as responses
//!
//! [`Error`] implements [`IntoResponse`]: the status is
//! [`Error::http_status`], the body
//! `{"code":60203,"message":"…","more_info":"https://www.twilio.com/docs/errors/60203","status":429}`
//! with [`Error::twilio_code`] (Verify's numbers where one exists), and a
//! refusal for a spent budget carries `Retry-After` (whole seconds, rounded
//! up) from [`Error::retry_after`]; an unavailable store answers
//! `Retry-After: 1`. The message is the error's `Display`, which names the
//! kind of failure and never the input; for a `500` it is only "internal
//! server error" (log the error itself on the server).
//!
//! ```
//! use axum::response::IntoResponse;
//! use pinseal::Error;
//! use std::time::Duration;
//!
//! let response = Error::SendLimit { retry_after: Duration::from_millis(41_200) }.into_response();
//! assert_eq!(response.status(), 429);
//! assert_eq!(response.headers()["retry-after"], "42");
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use zeroize::Zeroizing;

use crate::otp::aio::AcceptOnce;
use crate::otp::store::DynStore;
use crate::webhook::{SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER, TwilioSignature};
use crate::{Error, ErrorClass, ExposeSecret, Secret};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = self.twilio_code();
        // A 500 says no more than that: which configuration is wrong is for
        // the operator's log, not for the client.
        let message = if self.class() == ErrorClass::Internal {
            "internal server error".to_string()
        } else {
            json_escape(&self.to_string())
        };
        let body = format!(
            r#"{{"code":{code},"message":"{message}","more_info":"https://www.twilio.com/docs/errors/{code}","status":{}}}"#,
            status.as_u16()
        );
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        let wait = self
            .retry_after()
            .or((self.class() == ErrorClass::Unavailable).then_some(Duration::from_secs(1)));
        if let Some(wait) = wait {
            let secs = wait.as_millis().div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
        }
        response
    }
}

/// `text` as the inside of a JSON string.
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// What [`TwilioWebhook`] checks requests against: the account's
/// signature secrets, the public URL the provider calls, which parameters
/// are secret, and the accept-once set that refuses replays.
///
/// The extractor finds it in the router's state through [`WebhookState`]:
/// the state can be an `Arc<WebhookConfig>`, or the app's own state type
/// (or an `Arc` of it) that implements [`WebhookState`] by returning the
/// field that holds it (see `examples/ivr_server.rs`).
///
/// # Replays
///
/// Each delivery is admitted once, for [`WebhookConfig::replay_window`]
/// (4 hours by default, the longest a call lasts by default), under its
/// path and query and its signature. The signature covers every parameter,
/// so the same request sent again is refused, however its host or port is
/// spelled, while the provider's other deliveries to the same URL (status
/// callbacks, a gather that loops) are admitted.
/// [`WebhookConfig::once_per`] narrows that to one delivery per call (or
/// message) and URL: a second gather posted to the same URL for the same
/// call is refused even with other digits.
///
/// The accept-once set's pepper must be the same on every instance and
/// across restarts (a `Key` from configuration, not `Key::generate`), and
/// its store shared (Redis, DynamoDB): otherwise another instance, or the
/// next process, does not recognize what was admitted. After the window a
/// delivery is forgotten; the provider's signatures carry no time, so a
/// request captured earlier than that is admitted again.
///
/// Each admitted delivery holds one store entry for the window: a
/// [`MemoryStore`](crate::otp::MemoryStore) of the default 100 000 entries
/// fills at about 7 deliveries a second over 4 hours, and a full store
/// answers `503` ([`Error::StoreFull`]). Size the store, or the window, for
/// the traffic.
///
/// A parameter sent several times is signed as a set of values, sorted (as
/// the provider signs it), so the order of repeated values is not
/// authenticated: [`TwilioWebhook::get`] returns the first value received.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use pinseal::{Key, Secret};
/// use pinseal::otp::aio::AcceptOnce;
/// use pinseal::otp::store::{DynStore, MemoryStore};
/// use pinseal::web::WebhookConfig;
/// use pinseal::webhook::TwilioSignature;
///
/// let signature = TwilioSignature::new(Secret::new("auth-token".to_string()));
/// let once = AcceptOnce::with_store(&Key::generate(), DynStore::new(MemoryStore::new()));
/// let config = WebhookConfig::new(signature, "https://ivr.example.com", once)?
///     .trust_forwarded_headers(); // behind a proxy that sets X-Forwarded-Proto/Host
/// let state = Arc::new(config);
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct WebhookConfig {
    signature: TwilioSignature,
    /// `scheme://authority`, no trailing slash.
    origin: String,
    /// A path prefix the proxy strips, or "".
    prefix: String,
    trust_forwarded: bool,
    secret_params: Vec<String>,
    replay_key_params: Vec<String>,
    once: AcceptOnce<DynStore>,
    replay_window: Duration,
    max_body: usize,
}

impl WebhookConfig {
    /// Checks signatures with `signature` against URLs under
    /// `public_base_url` (`https://host[:port][/prefix]`), and admits each
    /// delivery once in `once`.
    ///
    /// The URL checked is the base followed by the request's path and
    /// query as this server receives them (before any `Router::nest`
    /// strips a prefix). Give a `/prefix` only when a proxy in front
    /// removes it, so that the provider calls `https://host/prefix/voice`
    /// and this server sees `/voice`; if this server itself serves
    /// `/prefix/voice`, the base is `https://host`.
    ///
    /// # Errors
    ///
    /// [`Error::WebhookConfig`] if `public_base_url` is not an `http` or
    /// `https` URL with a host and without user info, query or fragment.
    pub fn new(
        signature: TwilioSignature,
        public_base_url: &str,
        once: AcceptOnce<DynStore>,
    ) -> Result<WebhookConfig, Error> {
        let base = public_base_url.trim_end_matches('/');
        let (scheme, rest) = base.split_once("://").ok_or(Error::WebhookConfig)?;
        if !(scheme == "https" || scheme == "http")
            || rest.contains(['?', '#', '@'])
            || rest
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(Error::WebhookConfig);
        }
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(Error::WebhookConfig);
        }
        Ok(WebhookConfig {
            signature,
            origin: format!("{scheme}://{authority}"),
            prefix: prefix.to_string(),
            trust_forwarded: false,
            secret_params: DEFAULT_SECRET_PARAMS
                .iter()
                .map(|n| n.to_string())
                .collect(),
            replay_key_params: Vec::new(),
            once,
            replay_window: Duration::from_secs(4 * 3600),
            max_body: 64 * 1024,
        })
    }

    /// Takes the scheme and host from `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` when a request carries both (the first value of
    /// each; the scheme `http` or `https`, the host a plain `host[:port]`),
    /// keeping the configured path prefix.
    ///
    /// # Security
    ///
    /// Only behind a proxy that sets both headers itself and drops them
    /// from what clients send: otherwise a client chooses the host its
    /// signature is checked against, which lets in a webhook signed for
    /// another host of the same account. Replays are refused either way:
    /// the replay key holds no host.
    #[must_use]
    pub fn trust_forwarded_headers(mut self) -> WebhookConfig {
        self.trust_forwarded = true;
        self
    }

    /// The parameters handed over only inside [`Secret`]; replaces the
    /// list. By default `Digits`, `SpeechResult`, `UnstableSpeechResult`
    /// (a PIN may be spoken) and `Body` (an SMS may carry a code).
    #[must_use]
    pub fn secret_params(mut self, names: &[&str]) -> WebhookConfig {
        self.secret_params = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Admits one delivery per URL (path and query) and value of the
    /// parameters `names` (for example `["CallSid"]`): a call posts to each
    /// gather URL once, and a second delivery for it is refused whatever it
    /// carries. A flow that gathers again on the same call then uses a new
    /// action URL (`/gather/pin?attempt=2`; the query is signed). A request
    /// that carries none of `names` is admitted once under its signature,
    /// as by default. An empty list restores the default.
    #[must_use]
    pub fn once_per(mut self, names: &[&str]) -> WebhookConfig {
        self.replay_key_params = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// How long a delivery is remembered: 4 hours by default, at least one
    /// second and at most 30 days (the value is clamped).
    #[must_use]
    pub fn replay_window(mut self, window: Duration) -> WebhookConfig {
        self.replay_window = window.clamp(Duration::from_secs(1), Duration::from_secs(30 * 86_400));
        self
    }

    /// The largest body read (64 KiB by default); a longer one is refused
    /// with [`Error::WebhookBody`].
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> WebhookConfig {
        self.max_body = bytes;
        self
    }

    /// The URL the provider called, as it signed it.
    fn url_of(&self, parts: &Parts) -> String {
        let path_and_query = path_and_query(parts);
        let forwarded = self
            .trust_forwarded
            .then(|| {
                let proto = first_value(&parts.headers, "x-forwarded-proto")?;
                let host = first_value(&parts.headers, "x-forwarded-host")?;
                let plain_host = host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
                let proto = ["https", "http"]
                    .into_iter()
                    .find(|p| p.eq_ignore_ascii_case(proto))?;
                plain_host.then(|| format!("{proto}://{host}"))
            })
            .flatten();
        let origin = forwarded.as_deref().unwrap_or(&self.origin);
        format!("{origin}{}{path_and_query}", self.prefix)
    }
}

impl core::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("signature", &self.signature)
            .field("origin", &self.origin)
            .field("prefix", &self.prefix)
            .field("trust_forwarded", &self.trust_forwarded)
            .field("secret_params", &self.secret_params)
            .field("replay_key_params", &self.replay_key_params)
            .field("replay_window", &self.replay_window)
            .finish_non_exhaustive()
    }
}

/// How [`TwilioWebhook`] finds its [`WebhookConfig`] in a router's state.
///
/// Implement it for the app's state type; an `Arc` of that type, and
/// `WebhookConfig` itself (or an `Arc` of it), implement it then too. (A
/// trait of this crate rather than axum's `FromRef`: an app whose state is
/// an `Arc<App>` could not implement `FromRef` for it.)
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use pinseal::web::{WebhookConfig, WebhookState};
///
/// struct App {
///     webhooks: WebhookConfig,
///     // ... the app's other state
/// }
///
/// impl WebhookState for App {
///     fn webhook_config(&self) -> &WebhookConfig {
///         &self.webhooks
///     }
/// }
/// // Router::new()...with_state(Arc::new(app)): `TwilioWebhook` extracts.
/// ```
pub trait WebhookState: Send + Sync {
    /// The configuration webhooks are checked against.
    fn webhook_config(&self) -> &WebhookConfig;
}

impl WebhookState for WebhookConfig {
    fn webhook_config(&self) -> &WebhookConfig {
        self
    }
}

impl<T: WebhookState + ?Sized> WebhookState for Arc<T> {
    fn webhook_config(&self) -> &WebhookConfig {
        (**self).webhook_config()
    }
}

/// The parameters [`TwilioWebhook`] hands over in [`Secret`] by default.
const DEFAULT_SECRET_PARAMS: [&str; 4] = ["Digits", "SpeechResult", "UnstableSpeechResult", "Body"];

/// The path and query of the request, as received.
fn path_and_query(parts: &Parts) -> &str {
    parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |o| &o.0)
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
}

/// The first comma-separated value of header `name`, trimmed, if any.
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// A signed Twilio webhook, checked and admitted once: the axum extractor
/// for the endpoints the provider posts to.
///
/// # About
///
/// Extracting it, with a [`WebhookConfig`] reachable from the router's
/// state through [`WebhookState`]:
///
/// 1. rebuilds the URL the provider called from the configured public base
///    URL (or the forwarded headers, if trusted) and the request's original
///    path and query;
/// 2. reads the body (at most [`WebhookConfig::max_body`]) and checks
///    `X-Twilio-Signature` (with `X-Twilio-Webhooks-Signature-Settings`,
///    if present) with [`TwilioSignature`]: a URL that carries
///    `bodySHA256` is a JSON webhook, checked against the body's hash (as
///    the official helper decides), any other a form post, checked against
///    its parameters;
/// 3. admits the delivery once ([`WebhookConfig`] says under which key);
/// 4. hands over the parameters, the secret ones (`Digits`,
///    `SpeechResult`, `UnstableSpeechResult` and `Body` by default) moved
///    into [`Secret`] as they are decoded; a JSON body whole, in a
///    [`Secret`].
///
/// Only `POST` is accepted ([`Error::InvalidParameter`] otherwise):
/// configure the provider to post, since a `GET` carries the digits in the
/// URL, where every access log keeps them. Like any extractor that reads
/// the body, it must be a handler's last argument.
///
/// A forged or replayed request never reaches the handler: the rejection
/// is an [`Error`] (`403` with [`Error::WebhookSignature`],
/// [`Error::WebhookBody`] (also for a body over the limit),
/// [`Error::WebhookAlgorithm`] or [`Error::Replayed`]; `503` if the
/// accept-once store is unavailable). A delivery is admitted before the
/// handler runs and stays admitted if the handler fails: the provider's
/// retry of it is refused.
/// `Debug` names the parameters, never their values (`From` and `Caller`
/// are phone numbers).
///
/// The decoded body is wiped when parsed; the buffer the HTTP server read
/// it into is not (it is not this crate's).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use axum::http::header::CONTENT_TYPE;
/// use axum::response::IntoResponse;
/// use axum::{Router, routing::post};
/// use pinseal::web::{TwilioWebhook, WebhookConfig};
/// use pinseal::ExposeSecret;
///
/// async fn gather(mut hook: TwilioWebhook) -> impl IntoResponse {
///     let _call = hook.get("CallSid").unwrap_or_default().to_string();
///     let digits = hook.take_secret("Digits"); // Option<Secret<String>>
///     let four = digits.is_some_and(|d| d.expose_secret().len() == 4);
///     let say = if four { "Thank you." } else { "Please try again." };
///     ([(CONTENT_TYPE, "text/xml")], format!("<Response><Say>{say}</Say></Response>"))
/// }
///
/// fn app(config: Arc<WebhookConfig>) -> Router {
///     Router::new().route("/gather", post(gather)).with_state(config)
/// }
/// ```
pub struct TwilioWebhook {
    params: Vec<(String, String)>,
    secrets: Vec<(String, Secret<String>)>,
    json: Option<Secret<Vec<u8>>>,
}

impl TwilioWebhook {
    /// The first value of the non-secret parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every non-secret parameter, in the order sent.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The first value of the secret parameter `name`.
    pub fn secret(&self, name: &str) -> Option<&Secret<String>> {
        self.secrets.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Moves the first value of the secret parameter `name` out.
    pub fn take_secret(&mut self, name: &str) -> Option<Secret<String>> {
        let i = self.secrets.iter().position(|(n, _)| n == name)?;
        Some(self.secrets.remove(i).1)
    }

    /// The raw body of a JSON webhook (checked against its `bodySHA256`),
    /// or `None` for a form post.
    pub fn json_body(&self) -> Option<&Secret<Vec<u8>>> {
        self.json.as_ref()
    }
}

impl core::fmt::Debug for TwilioWebhook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TwilioWebhook")
            .field(
                "params",
                &self
                    .params
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field(
                "secrets",
                &self
                    .secrets
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("json", &self.json.as_ref().map(|b| b.expose_secret().len()))
            .finish()
    }
}

impl<S: WebhookState> FromRequest<S> for TwilioWebhook {
    type Rejection = Error;

    async fn from_request(request: Request<Body>, state: &S) -> Result<Self, Error> {
        let config = state.webhook_config();
        let (parts, body) = request.into_parts();
        if parts.method != axum::http::Method::POST {
            return Err(Error::InvalidParameter);
        }
        let url = config.url_of(&parts);
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let signature = header(SIGNATURE_HEADER).ok_or(Error::WebhookSignature)?;
        let settings = header(SIGNATURE_SETTINGS_HEADER);
        let is_json = crate::webhook::carries_body_hash(&url);
        let bytes = axum::body::to_bytes(body, config.max_body)
            .await
            .map_err(|_| Error::WebhookBody)?;

        let mut hook = TwilioWebhook {
            params: Vec::new(),
            secrets: Vec::new(),
            json: None,
        };
        if is_json {
            config
                .signature
                .verify_json_with_settings(&url, &bytes, signature, settings)?;
            hook.json = Some(Secret::new(Vec::from(bytes)));
        } else {
            let body = Zeroizing::new(Vec::from(bytes));
            for (name, value) in form_urlencoded::parse(&body) {
                if config.secret_params.iter().any(|s| *s == name) {
                    hook.secrets
                        .push((name.into_owned(), Secret::new(value.into_owned())));
                } else {
                    hook.params.push((name.into_owned(), value.into_owned()));
                }
            }
            let all: Vec<(&str, &str)> = hook
                .params()
                .chain(
                    hook.secrets
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.expose_secret().as_str())),
                )
                .collect();
            config
                .signature
                .verify_form_with_settings(&url, &all, signature, settings)?;
        }

        // Signed: now admit it once, under its path and query (not its
        // host: proxies and clients spell that in several ways the
        // signature check accepts) and its signature, or the values of the
        // `once_per` parameters.
        let mut key: Vec<&[u8]> = vec![b"twilio-webhook", path_and_query(&parts).as_bytes()];
        let mut named = false;
        for name in &config.replay_key_params {
            if let Some(value) = hook.get(name) {
                key.push(name.as_bytes());
                key.push(value.as_bytes());
                named = true;
            }
        }
        if !named {
            key.push(signature.as_bytes());
            key.push(settings.unwrap_or_default().as_bytes());
        }
        if config.once.admit(&key, config.replay_window).await? {
            Ok(hook)
        } else {
            Err(Error::Replayed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }

    #[test]
    fn the_url_is_rebuilt_from_the_configured_base() {
        let config = WebhookConfig::new(
            TwilioSignature::new(Secret::new("t".into())),
            "https://ivr.example.com/twilio/",
            AcceptOnce::with_store(
                &crate::Key::generate(),
                DynStore::new(crate::otp::MemoryStore::new()),
            ),
        )
        .unwrap();
        let request = axum::http::Request::builder()
            .uri("/gather?step=1")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", "evil.example")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        assert_eq!(
            config.url_of(&parts),
            "https://ivr.example.com/twilio/gather?step=1"
        );
        let trusting = config.trust_forwarded_headers();
        assert_eq!(
            trusting.url_of(&parts),
            "http://evil.example/twilio/gather?step=1"
        );
        for bad in [
            "ivr.example.com",
            "ftp://x",
            "https://",
            "https://x/?a=1",
            "https://u@x",
            "https://x y",
            "HTTPS://x",
        ] {
            assert!(
                WebhookConfig::new(
                    TwilioSignature::new(Secret::new("t".into())),
                    bad,
                    AcceptOnce::with_store(
                        &crate::Key::generate(),
                        DynStore::new(crate::otp::MemoryStore::new())
                    ),
                )
                .is_err(),
                "{bad}"
            );
        }
    }
}
