//! Enrolling a user in an authenticator app, then verifying their codes
//! with replay protection.
//!
//! 1. Generate a secret and the `otpauth://` URI an app reads from a QR
//!    code; write the QR code as an SVG file (feature `qr`).
//! 2. Keep the secret sealed (here: an envelope in memory, as it would be
//!    in a database row).
//! 3. Verify a code through a `TotpGuard`: accepted once, refused when
//!    replayed.
//!
//! Run: `cargo run --example totp_enroll --features qr`

use pinseal::envelope::Envelope;
use pinseal::otp::totp::{Totp, TotpGuard};
use pinseal::{Aad, ExposeSecret, Key, Seal, Sealer, Secret};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Key::generate(); // in a service: Key::from_env("PINSEAL_KEY")?
    let sealer = Sealer::new(&root.derive("totp/secrets"));
    let guard = TotpGuard::new(&root.derive("otp/pepper"));

    // 1. Enrollment.
    let totp = Totp::random();
    let uri = totp.to_uri("ACME Co", "alice@example.com");
    // The URI holds the secret: it is shown to the user, never logged.
    println!(
        "[enroll] otpauth URI for alice@example.com: {uri:?} ({} characters)",
        uri.expose_secret().len()
    );
    #[cfg(feature = "qr")]
    {
        let svg = totp.to_qr_svg("ACME Co", "alice@example.com")?;
        let path = std::env::temp_dir().join("pinseal-totp-enroll.svg");
        // Readable by this user only: the picture is the secret.
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        std::io::Write::write_all(&mut file.open(&path)?, svg.expose_secret().as_bytes())?;
        println!(
            "[enroll] QR code written to {} (scan it, then delete it)",
            path.display()
        );
    }
    #[cfg(not(feature = "qr"))]
    println!("[enroll] (run with --features qr to write the QR code as SVG)");

    // 2. Storage: only an envelope bound to the account.
    let aad = Aad::new()
        .field("purpose", "totp-secret")
        .field("account", "alice@example.com");
    let stored = sealer
        .seal(totp.secret().expose_secret(), aad.as_bytes())
        .to_string();
    println!("[store] sealed secret, {} hex characters", stored.len());
    drop(totp);

    // 3. Later, at sign-in: open the secret, verify the code the user typed.
    let secret = sealer.open(&stored.parse::<Envelope>()?, aad.as_bytes())?;
    let alice = Totp::new(
        Secret::new(secret.expose_secret().clone()),
        std::time::Duration::from_secs(30),
        6,
        pinseal::otp::totp::Algorithm::Sha1,
    )?
    .with_skew(1);
    let typed = alice.generate_now(); // what the app shows right now
    let first = guard.verify("alice@example.com", &alice, typed.expose_secret())?;
    println!("[verify] code {typed:?}: accepted = {first}");
    let replay = guard.verify("alice@example.com", &alice, typed.expose_secret())?;
    println!("[verify] the same code again: accepted = {replay}");
    let wrong = guard.verify("alice@example.com", &alice, "000000")?;
    assert!(first && !replay, "accepted once, refused on replay");
    println!("[verify] a wrong code: accepted = {wrong}");
    println!("done: one code accepted once, the replay refused, no secret printed");
    Ok(())
}
