//! The IVR gather flow, end to end in one process.
//!
//! A caller types a 4-digit PIN and the last four digits of a card on the
//! phone keypad. The telephony provider posts the digits to the edge in a
//! signed webhook. The edge:
//!
//! 1. checks the webhook signature (`X-Twilio-Signature`) before reading a
//!    parameter, and refuses forged requests;
//! 2. seals each value at once into an envelope that expires in 5 minutes,
//!    bound to its field and call id;
//! 3. logs the caller by keyed pseudonym, never by number.
//!
//! The back end opens the envelopes, checks them (test data: PIN `1234`,
//! last-4 `4321`) in constant time, and logs failures without printing a
//! value. A forged request, an expired envelope and an envelope replayed
//! into another call are all refused.
//!
//! Run: `cargo run --example ivr_gather` (optionally with `PINSEAL_KEY` set
//! to 64 hex characters).

use std::time::{Duration, SystemTime};

use pinseal::envelope::Envelope;
use pinseal::pseudonym::Pseudonymizer;
use pinseal::webhook::TwilioSignature;
use pinseal::{Aad, Error, ExposeSecret, Key, Seal, Sealer, Secret};

/// How long an envelope may wait between the edge and the back end.
const ENVELOPE_TTL: Duration = Duration::from_secs(5 * 60);

/// A webhook as the provider posts it: URL, form parameters, signature.
struct Webhook {
    url: String,
    params: Vec<(String, String)>,
    signature: String,
}

impl Webhook {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
}

/// What the edge sends to the back end: identifiers and envelopes only.
#[derive(Debug, Clone)]
struct GatherResult {
    call_id: String,
    pin: String,   // hex expiring envelope
    last4: String, // hex expiring envelope
}

/// The context an envelope is bound to: which flow, which call, which field.
/// Length-prefixed fields, so a crafted call id cannot pose as a field.
fn aad(call_id: &str, field: &str) -> Aad {
    Aad::new()
        .field("flow", "pinseal-example/ivr/v1")
        .field("call", call_id)
        .field("field", field)
}

/// Why a request or a call was refused. Holds no value.
#[derive(Debug)]
enum Refusal {
    Webhook(Error),
    Envelope(Error),
    Mismatch,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Webhook(e) => write!(f, "refused at the edge: {e}"),
            Refusal::Envelope(e) => write!(f, "refused: {e}"),
            Refusal::Mismatch => f.write_str("refused: values do not match"),
        }
    }
}

struct Edge {
    webhooks: TwilioSignature,
    sealer: Sealer,
    callers: Pseudonymizer,
}

impl Edge {
    /// Checks the signature first, then seals the two gathered values.
    fn gather(
        &self,
        pin_hook: &Webhook,
        last4_hook: &Webhook,
        now: SystemTime,
    ) -> Result<GatherResult, Refusal> {
        for hook in [pin_hook, last4_hook] {
            self.webhooks
                .verify_form(&hook.url, &hook.pairs(), &hook.signature)
                .map_err(Refusal::Webhook)?;
        }
        // Both gathers must belong to one call: two validly signed requests
        // from different calls are not a pair.
        let call_id = pin_hook.param("CallSid").unwrap_or_default().to_string();
        if last4_hook.param("CallSid") != Some(call_id.as_str()) {
            return Err(Refusal::Webhook(Error::WebhookSignature));
        }
        let caller = self
            .callers
            .pseudonym(pin_hook.param("From").unwrap_or_default());
        // The digits are wrapped the moment they are read.
        let pin = Secret::new(pin_hook.param("Digits").unwrap_or_default().to_string());
        let last4 = Secret::new(last4_hook.param("Digits").unwrap_or_default().to_string());
        println!(
            "[edge] call {call_id} from caller {caller}: gathered pin={pin:?} last4={last4:?}"
        );
        let deadline = now + ENVELOPE_TTL;
        Ok(GatherResult {
            pin: self
                .sealer
                .seal_until(
                    pin.expose_secret().as_bytes(),
                    aad(&call_id, "pin").as_bytes(),
                    deadline,
                )
                .to_string(),
            last4: self
                .sealer
                .seal_until(
                    last4.expose_secret().as_bytes(),
                    aad(&call_id, "last4").as_bytes(),
                    deadline,
                )
                .to_string(),
            call_id,
        })
    }
}

/// The back end: open both envelopes and compare in constant time with the
/// account's values (here the test data `1234` / `4321`).
fn backend(sealer: &Sealer, r: &GatherResult, now: SystemTime) -> Result<(), Refusal> {
    let expected_pin = Secret::new(b"1234".to_vec());
    let expected_last4 = Secret::new(b"4321".to_vec());
    let open = |text: &str, field: &str| {
        text.parse::<Envelope>().and_then(|envelope| {
            sealer.open_expiring_at(&envelope, aad(&r.call_id, field).as_bytes(), now)
        })
    };
    let pin = open(&r.pin, "pin").map_err(Refusal::Envelope)?;
    let last4 = open(&r.last4, "last4").map_err(Refusal::Envelope)?;
    // `&` not `&&`: both comparisons always run.
    if (pin == expected_pin) & (last4 == expected_last4) {
        Ok(())
    } else {
        // The log line formats the secrets, and shows only *REDACTED*.
        eprintln!(
            "[backend] ERROR call={} verification failed pin={pin:?} last4={last4:?}",
            r.call_id
        );
        Err(Refusal::Mismatch)
    }
}

fn report(label: &str, result: &Result<(), Refusal>) {
    match result {
        Ok(()) => println!("[backend] {label}: accepted"),
        Err(refusal) => println!("[backend] {label}: {refusal}"),
    }
}

fn load_key() -> Key {
    match Key::from_env("PINSEAL_KEY") {
        Ok(key) => key,
        Err(Error::KeyEnvMissing) => {
            println!("PINSEAL_KEY is not set; using a fresh random key for this run only.");
            println!("To keep one across runs, set 64 hex characters of randomness, e.g.:");
            println!("  export PINSEAL_KEY=$(openssl rand -hex 32)");
            Key::generate()
        }
        Err(e) => {
            eprintln!("PINSEAL_KEY is set but unusable: {e}");
            std::process::exit(2);
        }
    }
}

/// The provider's side, for the demonstration: a signed form post.
fn provider_posts(signer: &TwilioSignature, call: &str, step: &str, digits: &str) -> Webhook {
    let url = format!("https://ivr.example.com/gather?step={step}");
    let params = vec![
        ("CallSid".to_string(), call.to_string()),
        ("From".to_string(), "+15551234567".to_string()),
        ("Digits".to_string(), digits.to_string()),
    ];
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signature = signer.sign_form(&url, &pairs);
    Webhook {
        url,
        params,
        signature,
    }
}

fn main() {
    let root = load_key();
    // One derived key per purpose; only key ids are ever logged.
    let key = root.derive("ivr/gather");
    let sealer = Sealer::new(&key);
    println!("[edge] sealing with key id {}", key.id());
    // The provider account's auth token (in a service: from a secret store).
    let auth_token = Secret::new("example-auth-token-0123456789abcdef".to_string());
    let provider = TwilioSignature::new(Secret::new(auth_token.expose_secret().clone()));
    let edge = Edge {
        webhooks: TwilioSignature::new(auth_token),
        sealer: Sealer::new(&key),
        callers: Pseudonymizer::new(&root, "ivr/caller"),
    };
    let now = SystemTime::now();

    // Call 1: the right PIN and card digits.
    let ok = edge
        .gather(
            &provider_posts(&provider, "CA-1001", "pin", "1234"),
            &provider_posts(&provider, "CA-1001", "last4", "4321"),
            now,
        )
        .map_err(|e| e.to_string());
    let ok = ok.expect("a signed request is accepted");
    println!("[edge] call {} forwarded: {ok:?}", ok.call_id);
    let r1 = backend(&sealer, &ok, now + Duration::from_secs(2));
    report("call CA-1001", &r1);

    // Call 2: a wrong PIN. The error log shows *REDACTED*, never the digits.
    let wrong = edge
        .gather(
            &provider_posts(&provider, "CA-1002", "pin", "9999"),
            &provider_posts(&provider, "CA-1002", "last4", "4321"),
            now,
        )
        .map_err(|e| e.to_string())
        .expect("a signed request is accepted");
    let r2 = backend(&sealer, &wrong, now + Duration::from_secs(2));
    report("call CA-1002", &r2);

    // Call 3: a forged request: someone who found the URL posts digits
    // with a made-up signature. Refused before any parameter is read.
    let mut forged = provider_posts(&provider, "CA-1003", "pin", "1234");
    forged.params[2].1 = "0000".to_string();
    let r3 = edge
        .gather(
            &forged,
            &provider_posts(&provider, "CA-1003", "last4", "4321"),
            now,
        )
        .map(|_| ());
    report("call CA-1003 (forged webhook)", &r3);

    // Call 1's envelopes, opened after their 5 minutes: expired.
    let r4 = backend(&sealer, &ok, now + ENVELOPE_TTL);
    report("call CA-1001 envelopes after 5 minutes", &r4);

    // Call 1's PIN envelope replayed into another call: bound to CA-1001.
    let mut replayed = edge
        .gather(
            &provider_posts(&provider, "CA-1004", "pin", "0000"),
            &provider_posts(&provider, "CA-1004", "last4", "0000"),
            now,
        )
        .map_err(|e| e.to_string())
        .expect("a signed request is accepted");
    replayed.pin = ok.pin.clone();
    let r5 = backend(&sealer, &replayed, now + Duration::from_secs(2));
    report("call CA-1004 (PIN replayed from CA-1001)", &r5);

    let outcomes = [&r1, &r2, &r3, &r4, &r5].map(|r| r.is_ok());
    assert_eq!(
        outcomes,
        [true, false, false, false, false],
        "unexpected outcome"
    );
    assert!(matches!(r3, Err(Refusal::Webhook(Error::WebhookSignature))));
    assert!(matches!(r4, Err(Refusal::Envelope(Error::Expired))));
    assert!(matches!(r5, Err(Refusal::Envelope(Error::Decrypt))));
    println!("done: 1 call accepted, 4 refused, no value printed");
}
