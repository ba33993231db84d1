//! The chat/SMS sign-in flow with a 60-second one-time code.
//!
//! The service issues a code under a random challenge id, "sends" it (the
//! service log shows `*REDACTED*`; only the simulated phone shows digits),
//! the user mistypes, the service re-sends, the user types the new code and
//! is signed in, and the spent code is refused.
//!
//! Run: `cargo run --example sms_otp` (optionally with `PINSEAL_KEY` set to
//! 64 hex characters).

use std::time::Duration;

use pinseal::otp::{ChallengeId, Otp, Policy, Verdict};
use pinseal::{Error, ExposeSecret, Key, Secret};

/// Stands in for an SMS gateway: the only place the code appears in clear.
fn send_sms(to: &str, code: &Secret<String>) {
    println!(
        "[service] sms queued to={} body=\"Your code is {code:?}\"",
        mask(to)
    );
    println!("[phone {to}] Your code is {}", code.expose_secret());
}

/// Phone numbers are personal data: logs keep only the last two digits.
fn mask(phone: &str) -> String {
    let tail = phone.get(phone.len().saturating_sub(2)..).unwrap_or("");
    format!("***{tail}")
}

fn sign_in(otp: &Otp, challenge: &ChallengeId, typed: &str) -> Verdict {
    let verdict = otp.verify(challenge, typed).unwrap_or_else(|e| {
        // The service could not decide: never treat this as approved.
        eprintln!("[service] verification unavailable: {e}");
        std::process::exit(1);
    });
    println!("[service] challenge={challenge} input=*REDACTED* verdict={verdict:?}");
    verdict
}

fn main() -> Result<(), Error> {
    let root = match Key::from_env("PINSEAL_KEY") {
        Ok(key) => key,
        Err(Error::KeyEnvMissing) => {
            println!("PINSEAL_KEY is not set; using a fresh random key for this run only.");
            println!("  export PINSEAL_KEY=$(openssl rand -hex 32)");
            Key::generate()
        }
        Err(e) => return Err(e),
    };
    let policy = Policy::new(6, Duration::from_secs(60), 5)?;
    let otp = Otp::new(&root.derive("otp/pepper"), policy);
    let phone = "+15550100";

    // 1. The user asks to sign in: issue and send a code.
    let (challenge, code) = otp.issue(phone)?;
    println!("[service] issued challenge={challenge} ttl=60s");
    send_sms(phone, &code);

    // 2. The user mistypes. The service re-sends a fresh code.
    let typo: String = code
        .expose_secret()
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect();
    let first = sign_in(&otp, &challenge, &typo);
    assert_eq!(first, Verdict::Rejected { attempts_left: 4 });
    let (challenge2, code2) = otp.issue(phone)?;
    println!("[service] re-sent: new challenge={challenge2}; the attempt count is kept");
    send_sms(phone, &code2);

    // The old code no longer works.
    let old = sign_in(&otp, &challenge, code.expose_secret());
    assert_eq!(old, Verdict::Unknown);

    // 3. The user types the new code: signed in.
    let ok = sign_in(&otp, &challenge2, code2.expose_secret());
    assert_eq!(ok, Verdict::Approved);
    println!("[service] {} signed in", mask(phone));

    // 4. The code is spent: replaying it is refused.
    let replay = sign_in(&otp, &challenge2, code2.expose_secret());
    assert_eq!(replay, Verdict::Unknown);
    println!("done: one sign-in approved, the spent code refused");
    Ok(())
}
