//! Key, card number, challenge id and otpauth URI parsing on arbitrary
//! text: never a panic, and an accepted value always round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinseal::otp::ChallengeId;
use pinseal::otp::totp::Totp;
use pinseal::secret::Pan;
use pinseal::{ExposeSecret, Key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = Key::from_slice(data);
        return;
    };
    if let Ok(key) = Key::from_hex(text) {
        assert_eq!(hex_of(key.expose_secret()), text.to_ascii_lowercase());
    }
    if let Ok(pan) = Pan::parse(text) {
        assert_eq!(pan.expose_secret(), text);
        assert!(text.ends_with(pan.last_four()));
        assert_eq!(format!("{pan:?}"), "*REDACTED*");
    }
    if let Ok(id) = text.parse::<ChallengeId>() {
        assert_eq!(id.to_string(), text.to_ascii_lowercase());
    }
    if let Ok(totp) = Totp::from_uri(text) {
        let again = Totp::from_uri(totp.to_uri("issuer", "account").expose_secret())
            .expect("a URI pinseal writes parses");
        assert!(again.secret() == totp.secret());
        assert_eq!(
            (again.step(), again.digits(), again.algorithm()),
            (totp.step(), totp.digits(), totp.algorithm())
        );
    }
});

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
