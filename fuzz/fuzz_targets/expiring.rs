//! Expiring envelopes on arbitrary input: opening arbitrary bytes never
//! panics and never succeeds; a sealed value opens exactly before its
//! expiry; a changed expiry is a forgery.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinseal::{EXPIRY_LEN, Error, ExposeSecret, Key, Sealer};
use std::sync::LazyLock;

static SEALER: LazyLock<Sealer> = LazyLock::new(|| Sealer::new(&Key::from_bytes([0x33; 32])));

fuzz_target!(|data: &[u8]| {
    let sealer = &*SEALER;
    let (head, rest) = data.split_at(data.len().min(16));
    let mut times = [0u8; 16];
    times[..head.len()].copy_from_slice(head);
    let expires_at = u64::from_le_bytes(times[..8].try_into().unwrap());
    let now = u64::from_le_bytes(times[8..].try_into().unwrap());

    // Arbitrary bytes: never a panic, never an opened value.
    assert!(sealer.open_expiring(rest, b"aad", now).is_err());
    if let Ok(text) = std::str::from_utf8(rest) {
        assert!(sealer.open_expiring_hex(text, b"aad", now).is_err());
    }

    // The bytes as a plaintext: opens exactly while now < expires_at.
    let env = sealer.seal_until(rest, b"aad", expires_at);
    match sealer.open_expiring(&env, b"aad", now) {
        Ok(pt) => {
            assert!(now < expires_at);
            assert_eq!(pt.expose_secret(), rest);
        }
        Err(e) => {
            assert!(now >= expires_at);
            assert_eq!(e, Error::Expired);
        }
    }
    let mut moved = env.clone();
    moved[(now as usize) % EXPIRY_LEN] ^= 1 << (expires_at % 8);
    assert_eq!(sealer.open_expiring(&moved, b"aad", 0), Err(Error::Decrypt));
});
