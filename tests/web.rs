//! The `axum` feature: errors as responses in the provider's shape, and
//! the signed-webhook extractor (signature, secret parameters, replays,
//! proxies, JSON bodies, shared keys).

#![cfg(feature = "axum")]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::Request;
use axum::response::IntoResponse;
use pinseal::otp::aio::AcceptOnce;
use pinseal::otp::store::{DynStore, MemoryStore};
use pinseal::web::{TwilioWebhook, WebhookConfig};
use pinseal::webhook::{SignatureAlgorithm, TwilioSignature};
use pinseal::{Error, ExposeSecret, Key, Secret};

const BASE: &str = "https://ivr.example.com";

fn signature() -> TwilioSignature {
    TwilioSignature::new(Secret::new("auth-token".to_string())).with_shared_key(
        "webhooks_sharedkey_1",
        Secret::new("shared-secret".to_string()),
    )
}

fn config() -> Arc<WebhookConfig> {
    let once = AcceptOnce::with_store(&Key::generate(), DynStore::new(MemoryStore::new()));
    Arc::new(WebhookConfig::new(signature(), BASE, once).unwrap())
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A form post to `path`, signed as the provider signs it for `BASE`.
fn signed(path: &str, params: &[(&str, &str)]) -> Request<Body> {
    let sig = signature().sign_form(&format!("{BASE}{path}"), params);
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(Body::from(form(params)))
        .unwrap()
}

async fn extract(
    config: &Arc<WebhookConfig>,
    request: Request<Body>,
) -> Result<TwilioWebhook, Error> {
    TwilioWebhook::from_request(request, config).await
}

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

const GATHER: [(&str, &str); 4] = [
    ("CallSid", "CA0123456789abcdef0123456789abcdef"),
    ("Digits", "1234"),
    ("From", "+15550100199"),
    ("To", "+15550100100"),
];

#[test]
fn a_signed_form_is_handed_over_with_its_digits_in_a_secret() {
    run(async {
        let config = config();
        let mut hook = extract(&config, signed("/gather/pin?attempt=1", &GATHER))
            .await
            .unwrap();
        assert_eq!(hook.get("CallSid"), Some(GATHER[0].1));
        assert_eq!(hook.get("Digits"), None, "secret parameters are not plain");
        assert_eq!(hook.secret("Digits").unwrap().expose_secret(), "1234");
        let debug = format!("{hook:?}");
        for (_, value) in GATHER {
            assert!(!debug.contains(value), "{debug}");
        }
        assert_eq!(hook.take_secret("Digits").unwrap().expose_secret(), "1234");
        assert!(hook.secret("Digits").is_none());
    });
}

#[test]
fn forged_unsigned_and_altered_requests_are_refused() {
    run(async {
        let config = config();
        // Altered digits under the captured signature.
        let mut request = signed("/gather/pin", &GATHER);
        let mut altered = GATHER;
        altered[1].1 = "9999";
        *request.body_mut() = Body::from(form(&altered));
        assert_eq!(
            extract(&config, request).await.unwrap_err(),
            Error::WebhookSignature
        );
        // Another path under the same signature.
        let mut request = signed("/gather/pin", &GATHER);
        *request.uri_mut() = "/gather/last4".parse().unwrap();
        assert_eq!(
            extract(&config, request).await.unwrap_err(),
            Error::WebhookSignature
        );
        // No signature at all.
        let mut request = signed("/gather/pin", &GATHER);
        request.headers_mut().remove("x-twilio-signature");
        assert_eq!(
            extract(&config, request).await.unwrap_err(),
            Error::WebhookSignature
        );
        // A body larger than allowed.
        let big = "x".repeat(70_000);
        let request = signed("/gather/pin", &[("CallSid", "CA1"), ("Pad", &big)]);
        assert_eq!(
            extract(&config, request).await.unwrap_err(),
            Error::WebhookBody
        );
        // None of these was admitted: the genuine request still is.
        extract(&config, signed("/gather/pin", &GATHER))
            .await
            .unwrap();
    });
}

#[test]
fn a_replay_is_refused_and_other_deliveries_admitted() {
    run(async {
        let config = config();
        extract(&config, signed("/gather/pin", &GATHER))
            .await
            .unwrap();
        assert_eq!(
            extract(&config, signed("/gather/pin", &GATHER))
                .await
                .unwrap_err(),
            Error::Replayed
        );
        // The same call at the next gather, or at a re-gather URL.
        extract(&config, signed("/gather/last4", &GATHER))
            .await
            .unwrap();
        extract(&config, signed("/gather/pin?attempt=2", &GATHER))
            .await
            .unwrap();
        // Another delivery for the same call and URL (a gather that loops,
        // a status callback): admitted, once.
        let mut again = GATHER;
        again[1].1 = "4321";
        extract(&config, signed("/gather/pin", &again))
            .await
            .unwrap();
        assert_eq!(
            extract(&config, signed("/gather/pin", &again))
                .await
                .unwrap_err(),
            Error::Replayed
        );
    });
}

#[test]
fn once_per_call_refuses_a_second_delivery_for_the_call() {
    run(async {
        let once = AcceptOnce::with_store(&Key::generate(), DynStore::new(MemoryStore::new()));
        let config = Arc::new(
            WebhookConfig::new(signature(), BASE, once)
                .unwrap()
                .once_per(&["CallSid"]),
        );
        extract(&config, signed("/gather/pin", &GATHER))
            .await
            .unwrap();
        // Other digits for the same call and URL: refused.
        let mut again = GATHER;
        again[1].1 = "4321";
        assert_eq!(
            extract(&config, signed("/gather/pin", &again))
                .await
                .unwrap_err(),
            Error::Replayed
        );
        // Another call, or another URL of the same call.
        let mut other = GATHER;
        other[0].1 = "CA99";
        extract(&config, signed("/gather/pin", &other))
            .await
            .unwrap();
        extract(&config, signed("/gather/last4", &GATHER))
            .await
            .unwrap();
    });
}

#[test]
fn speech_is_secret_too_and_only_post_is_taken() {
    run(async {
        let config = config();
        let spoken = [("CallSid", "CA7"), ("SpeechResult", "one two three four")];
        let hook = extract(&config, signed("/gather/speech", &spoken))
            .await
            .unwrap();
        assert_eq!(hook.get("SpeechResult"), None);
        assert_eq!(
            hook.secret("SpeechResult").unwrap().expose_secret(),
            "one two three four"
        );
        let mut get = signed("/gather/pin", &GATHER);
        *get.method_mut() = axum::http::Method::GET;
        assert_eq!(
            extract(&config, get).await.unwrap_err(),
            Error::InvalidParameter
        );
    });
}

#[test]
fn the_url_behind_a_proxy_is_trusted_only_on_request() {
    run(async {
        let sig = signature().sign_form("http://internal:8080/gather", &GATHER);
        let request = || {
            Request::post("/gather")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", &sig)
                .header("x-forwarded-proto", "http")
                .header("x-forwarded-host", "internal:8080, proxy.example")
                .body(Body::from(form(&GATHER)))
                .unwrap()
        };
        assert_eq!(
            extract(&config(), request()).await.unwrap_err(),
            Error::WebhookSignature
        );
        let once = AcceptOnce::with_store(&Key::generate(), DynStore::new(MemoryStore::new()));
        let trusting = Arc::new(
            WebhookConfig::new(signature(), BASE, once)
                .unwrap()
                .trust_forwarded_headers(),
        );
        extract(&trusting, request()).await.unwrap();
        // A delivery signed for a URL without a port, replayed with the
        // host spelled with ports that the signature check accepts (it
        // tries the URL without its port): still the same delivery.
        let portless = signature().sign_form("http://internal/gather", &GATHER);
        let mut first = request();
        first
            .headers_mut()
            .insert("x-twilio-signature", portless.parse().unwrap());
        first
            .headers_mut()
            .insert("x-forwarded-host", "internal".parse().unwrap());
        extract(&trusting, first).await.unwrap();
        for host in ["internal", "internal:80", "internal:1", "internal:2"] {
            let mut replay = request();
            replay
                .headers_mut()
                .insert("x-twilio-signature", portless.parse().unwrap());
            replay
                .headers_mut()
                .insert("x-forwarded-host", host.parse().unwrap());
            assert_eq!(
                extract(&trusting, replay).await.unwrap_err(),
                Error::Replayed,
                "{host}"
            );
        }
        // A forwarded scheme or host that is not plain is not used.
        for (proto, host) in [("gopher", "internal:8080"), ("http", "internal:8080/x?")] {
            let mut odd = request();
            odd.headers_mut()
                .insert("x-forwarded-proto", proto.parse().unwrap());
            odd.headers_mut()
                .insert("x-forwarded-host", host.parse().unwrap());
            assert_eq!(
                extract(&trusting, odd).await.unwrap_err(),
                Error::WebhookSignature,
                "{proto} {host}"
            );
        }
    });
}

#[test]
fn json_webhooks_and_shared_keys() {
    run(async {
        let config = config();
        let body = br#"{"CallSid":"CA1","status":"completed"}"#;
        let (url, sig) = signature().sign_json(&format!("{BASE}/events"), body);
        let path = url.strip_prefix(BASE).unwrap().to_string();
        // JSON by the URL's bodySHA256, as the official helper decides,
        // whatever the content type says.
        let request = |body: &'static [u8]| {
            Request::post(path.as_str())
                .header("content-type", "application/vnd.example+json")
                .header("x-twilio-signature", &sig)
                .body(Body::from(body))
                .unwrap()
        };
        assert_eq!(
            extract(&config, request(br#"{"CallSid":"CA1","status":"failed"}"#))
                .await
                .unwrap_err(),
            Error::WebhookBody
        );
        let hook = extract(&config, request(body)).await.unwrap();
        assert_eq!(hook.json_body().unwrap().expose_secret(), body);
        assert!(!format!("{hook:?}").contains("completed"));
        // The captured URL and signature, an empty body sent as a form:
        // still checked against the body's hash.
        let as_form = Request::post(path.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", &sig)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            extract(&config, as_form).await.unwrap_err(),
            Error::WebhookBody
        );

        // A form signed with a shared key under HMAC-SHA256.
        let (settings, sig) = signature()
            .sign_form_shared(
                "webhooks_sharedkey_1",
                SignatureAlgorithm::HmacSha256,
                &format!("{BASE}/gather/pin"),
                &GATHER,
            )
            .unwrap();
        let request = Request::post("/gather/pin")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", &sig)
            .header("x-twilio-webhooks-signature-settings", &settings)
            .body(Body::from(form(&GATHER)))
            .unwrap();
        extract(&config, request).await.unwrap();
        let request = Request::post("/gather/last4")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", &sig)
            .header(
                "x-twilio-webhooks-signature-settings",
                "key=webhooks_sharedkey_1,algorithm=HMAC_SHA384",
            )
            .body(Body::from(form(&GATHER)))
            .unwrap();
        assert_eq!(
            extract(&config, request).await.unwrap_err(),
            Error::WebhookAlgorithm
        );
    });
}

fn response(error: Error) -> (u16, Option<String>, serde_json::Value) {
    let response = error.into_response();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = run(axum::body::to_bytes(response.into_body(), 4096)).unwrap();
    (status, retry, serde_json::from_slice(&body).unwrap())
}

#[test]
fn errors_answer_in_the_providers_shape() {
    let cases = [
        (Error::InvalidChallengeId, 404, 20404, None),
        (Error::InvalidPhoneNumber, 400, 60200, None),
        (
            Error::Locked {
                retry_after: Duration::from_millis(1),
            },
            429,
            60202,
            Some("1"),
        ),
        (
            Error::SendLimit {
                retry_after: Duration::from_millis(599_001),
            },
            429,
            60203,
            Some("600"),
        ),
        (
            Error::ClientLimit {
                retry_after: Duration::from_secs(3600),
            },
            429,
            20429,
            Some("3600"),
        ),
        (Error::Replayed, 403, 20403, None),
        (Error::WebhookSignature, 403, 20403, None),
        (Error::Store, 503, 20503, Some("1")),
        (Error::StoreConfig, 500, 20500, None),
    ];
    for (error, status, code, retry) in cases {
        let (s, r, body) = response(error);
        assert_eq!((s, r.as_deref()), (status, retry), "{error:?}");
        assert_eq!(body["code"], code, "{error:?}");
        assert_eq!(body["status"], status);
        // A 500 names nothing of the configuration.
        let message = if status == 500 {
            "internal server error".to_string()
        } else {
            error.to_string()
        };
        assert_eq!(body["message"], message);
        assert_eq!(
            body["more_info"],
            format!("https://www.twilio.com/docs/errors/{code}")
        );
    }
}

/// An app whose state is an `Arc` of its own type: the extractor finds
/// the configuration through `WebhookState`.
#[test]
fn an_apps_own_state_holds_the_configuration() {
    struct App {
        webhooks: WebhookConfig,
    }
    impl pinseal::web::WebhookState for App {
        fn webhook_config(&self) -> &WebhookConfig {
            &self.webhooks
        }
    }
    let once = AcceptOnce::with_store(&Key::generate(), DynStore::new(MemoryStore::new()));
    let app = Arc::new(App {
        webhooks: WebhookConfig::new(signature(), BASE, once).unwrap(),
    });
    run(async {
        let hook = TwilioWebhook::from_request(signed("/gather/pin", &GATHER), &app)
            .await
            .unwrap();
        assert_eq!(hook.get("CallSid"), Some(GATHER[0].1));
    });
}
