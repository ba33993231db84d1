//! Expiring envelopes on arbitrary input: opening arbitrary bytes never
//! panics and never succeeds; a sealed value opens exactly before its
//! expiry; a changed expiry is a forgery.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pinseal::envelope::{EXPIRY_LEN, Envelope};
use pinseal::{Error, ExposeSecret, Key, Seal, Sealer};
use std::sync::LazyLock;

/// The engine under test: `cargo fuzz run --features ring|aws-lc-rs`.
#[cfg(feature = "aws-lc-rs")]
type Engine = pinseal::envelope::AwsLc;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
type Engine = pinseal::envelope::Ring;
#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
type Engine = pinseal::envelope::AesGcm;

static SEALER: LazyLock<Sealer<Engine>> =
    LazyLock::new(|| Sealer::with_engine(&Key::from_bytes([0x33; 32])));

/// `secs` after the epoch, for the times a `SystemTime` holds (the fuzzed
/// values are cut to 40 bits: 34 000 years).
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fuzz_target!(|data: &[u8]| {
    let sealer = &*SEALER;
    let (head, rest) = data.split_at(data.len().min(16));
    let mut times = [0u8; 16];
    times[..head.len()].copy_from_slice(head);
    let expires_at = u64::from_le_bytes(times[..8].try_into().unwrap()) >> 24;
    let now = u64::from_le_bytes(times[8..].try_into().unwrap()) >> 24;

    // Arbitrary bytes: never a panic, never an opened value.
    assert!(sealer.open_expiring_at(rest, b"aad", at(now)).is_err());
    if let Ok(text) = std::str::from_utf8(rest) {
        let opened = text
            .parse::<Envelope>()
            .and_then(|e| sealer.open_expiring_at(&e, b"aad", at(now)));
        assert!(opened.is_err());
    }

    // The bytes as a plaintext: opens exactly while now < expires_at.
    let env = sealer.seal_until(rest, b"aad", at(expires_at));
    match sealer.open_expiring_at(&env, b"aad", at(now)) {
        Ok(pt) => {
            assert!(now < expires_at);
            assert_eq!(pt.expose_secret(), rest);
        }
        Err(e) => {
            assert!(now >= expires_at);
            assert_eq!(e, Error::Expired);
        }
    }
    let mut moved = env.to_vec();
    moved[(now as usize) % EXPIRY_LEN] ^= 1 << (expires_at % 8);
    assert_eq!(
        sealer.open_expiring_at(&moved, b"aad", at(0)),
        Err(Error::Decrypt)
    );
});
