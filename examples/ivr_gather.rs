//! The IVR gather flow, end to end in one process.
//!
//! A caller types a 4-digit PIN and the last four digits of a card on the
//! phone keypad. The edge (the service that receives the keypad digits)
//! seals each value at once, binding it to its field and call id, and hands
//! only envelopes to the back end. The back end opens them, checks them, and
//! logs failures without ever printing a value.
//!
//! Run: `cargo run --example ivr_gather` (optionally with `PINSEAL_KEY` set
//! to 64 hex characters).

use pinseal::{Aad, Error, Key, Sealer, Secret};

/// What the edge sends to the back end: identifiers and envelopes only.
#[derive(Debug)]
struct GatherResult {
    call_id: String,
    pin: String,   // hex envelope
    last4: String, // hex envelope
}

/// The context an envelope is bound to: which flow, which call, which field.
/// Length-prefixed fields, so a crafted call id cannot pose as a field.
fn aad(call_id: &str, field: &str) -> Aad {
    Aad::new()
        .field("flow", "pinseal-example/ivr/v1")
        .field("call", call_id)
        .field("field", field)
}

/// The edge: seal each keypad value as soon as it is gathered.
fn edge(sealer: &Sealer, call_id: &str, pin: &str, last4: &str) -> GatherResult {
    GatherResult {
        call_id: call_id.to_string(),
        pin: sealer.seal_hex(pin.as_bytes(), aad(call_id, "pin").as_bytes()),
        last4: sealer.seal_hex(last4.as_bytes(), aad(call_id, "last4").as_bytes()),
    }
}

/// Why the back end refused a call. Holds no value.
#[derive(Debug)]
enum Refusal {
    Envelope(Error),
    Mismatch,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Envelope(e) => write!(f, "refused: {e}"),
            Refusal::Mismatch => f.write_str("refused: values do not match"),
        }
    }
}

fn report(label: &str, result: &Result<(), Refusal>) {
    match result {
        Ok(()) => println!("[backend] {label}: accepted"),
        Err(refusal) => println!("[backend] {label}: {refusal}"),
    }
}

/// The back end: open both envelopes and compare in constant time with the
/// account's values (here the test data `1234` / `4321`).
fn backend(sealer: &Sealer, r: &GatherResult) -> Result<(), Refusal> {
    let expected_pin = Secret::new(b"1234".to_vec());
    let expected_last4 = Secret::new(b"4321".to_vec());
    let pin = sealer
        .open_hex(&r.pin, aad(&r.call_id, "pin").as_bytes())
        .map_err(Refusal::Envelope)?;
    let last4 = sealer
        .open_hex(&r.last4, aad(&r.call_id, "last4").as_bytes())
        .map_err(Refusal::Envelope)?;
    // `&` not `&&`: both comparisons always run.
    if (pin == expected_pin) & (last4 == expected_last4) {
        Ok(())
    } else {
        // The log line formats the secrets, and shows only *REDACTED*.
        eprintln!(
            "[backend] ERROR call={} verification failed pin={pin} last4={last4:?}",
            r.call_id
        );
        Err(Refusal::Mismatch)
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

fn main() {
    let root = load_key();
    // One derived key per purpose; only its id is ever logged.
    let key = root.derive("ivr/gather");
    let sealer = Sealer::new(&key);
    println!("[edge] sealing with key id {}", key.id());

    // Call 1: the right PIN and card digits.
    let ok = edge(&sealer, "CA-1001", "1234", "4321");
    println!("[edge] call {} forwarded: {ok:?}", ok.call_id);
    let r1 = backend(&sealer, &ok);
    report("call CA-1001", &r1);

    // Call 2: a wrong PIN. The error log shows *REDACTED*, never the digits.
    let wrong = edge(&sealer, "CA-1002", "9999", "4321");
    let r2 = backend(&sealer, &wrong);
    report("call CA-1002", &r2);

    // Call 3: an attacker swaps the envelopes between fields and calls.
    // The associated data binds each one to its field and call: they fail.
    let mut swapped = edge(&sealer, "CA-1003", "1234", "4321");
    std::mem::swap(&mut swapped.pin, &mut swapped.last4);
    let r3 = backend(&sealer, &swapped);
    report("call CA-1003 (fields swapped)", &r3);
    let mut replayed = edge(&sealer, "CA-1004", "0000", "0000");
    replayed.pin = ok.pin.clone();
    let r4 = backend(&sealer, &replayed);
    report("call CA-1004 (PIN replayed from CA-1001)", &r4);

    let outcomes = (r1.is_ok(), r2.is_ok(), r3.is_ok(), r4.is_ok());
    assert_eq!(outcomes, (true, false, false, false), "unexpected outcome");
    println!("done: 1 call accepted, 3 refused, no value printed");
}
