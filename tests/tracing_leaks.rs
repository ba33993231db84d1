//! Every secret-bearing type logged through `tracing`, as services do
//! (`#[instrument]` records arguments with `Debug`; events with `?` and
//! `%`), and the captured output searched for the secrets.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use common::assert_no_leak;
use pinseal::otp::totp::{Algorithm, Totp, TotpGuard};
use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy};
use pinseal::secret::Pan;
use pinseal::{ExposeSecret, Key, Keyring, Seal, Sealer, Secret};
use tracing::instrument;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const KEY: [u8; 32] = [0x6b; 32];
const PIN: &str = "7391";
const PAN: &str = "5555555555554444";
const TOTP_SECRET: &[u8] = b"totp-shared-secret-0123456789";

#[instrument(level = "info")]
fn gather(
    call_id: &str,
    pin: &Secret<String>,
    pan: &Pan,
    key: &Key,
    sealer: &Sealer,
    ring: &Keyring,
) {
    tracing::info!(?pin, ?pan, "gathered");
}

#[instrument(level = "info")]
fn decrypted(plaintext: &Secret<Vec<u8>>, error: &pinseal::Error) {
    tracing::error!(%error, ?error, ?plaintext, "verification failed");
}

#[instrument(level = "info", skip(otp))]
fn otp_flow(
    otp: &Otp<MemoryStore, ManualClock>,
    code: &Secret<String>,
    totp: &Totp,
    guard: &TotpGuard<MemoryStore, ManualClock>,
) {
    tracing::info!(?otp, ?code, ?totp, ?guard, "otp");
}

#[test]
fn tracing_output_holds_no_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let mut codes = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let key = Key::from_bytes(KEY);
        let sealer = Sealer::new(&key);
        let ring = Keyring::new(&Key::from_bytes(KEY))
            .with_previous(&Key::generate())
            .unwrap();
        let pin = Secret::new(PIN.to_string());
        let pan = Pan::parse(PAN).unwrap();
        gather("CA-1001", &pin, &pan, &key, &sealer, &ring);

        let envelope = sealer.seal(PIN.as_bytes(), b"pin");
        let plaintext = sealer.open(&envelope, b"pin").unwrap();
        let error = sealer.open(&envelope, b"other").unwrap_err();
        decrypted(&plaintext, &error);

        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp = Otp::with_parts(
            &Key::from_bytes(KEY),
            Policy::default(),
            MemoryStore::new(),
            clock,
        );
        let (id, code) = otp.issue("+15551234567").unwrap();
        let verdict = otp.verify(&id, "000000").unwrap();
        tracing::info!(?id, %id, ?verdict, "verified");
        let totp = Totp::new(
            Secret::new(TOTP_SECRET.to_vec()),
            Duration::from_secs(30),
            6,
            Algorithm::Sha1,
        )
        .unwrap();
        let guard = TotpGuard::with_parts(
            &Key::from_bytes(KEY),
            MemoryStore::new(),
            ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        );
        let now_code = pinseal::otp::totp::totp(
            TOTP_SECRET,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            Duration::from_secs(30),
            6,
            Algorithm::Sha1,
        )
        .unwrap();
        assert!(
            guard
                .verify("+15551234567", &totp, now_code.expose_secret())
                .unwrap()
        );
        codes.push(now_code.expose_secret().clone());
        otp_flow(&otp, &code, &totp, &guard);
        codes.push(code.expose_secret().clone());
    });
    let output = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        output.contains("gathered") && output.contains("otp"),
        "events were captured: {output}"
    );
    assert!(output.matches("*REDACTED*").count() >= 8, "{output}");
    assert_no_leak(&output, &KEY, "key");
    assert_no_leak(&output, PAN.as_bytes(), "card number");
    assert_no_leak(&output, TOTP_SECRET, "TOTP secret");
    assert!(
        !output.contains(&format!("\"{PIN}\"")) && !output.contains(&format!("={PIN}")),
        "PIN"
    );
    for code in &codes {
        assert!(!output.contains(code.as_str()), "OTP code in the log");
    }
    // The subject (a phone number) is not stored or logged by the crate.
    assert!(!output.contains("5551234567"));
}
