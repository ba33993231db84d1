//! Seal then open arbitrary plaintext and AAD, binary and hex: always the
//! same bytes back; any other AAD or a flipped bit never opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinseal::{ExposeSecret, Key, OVERHEAD, Sealer};
use std::sync::LazyLock;

static SEALER: LazyLock<Sealer> = LazyLock::new(|| Sealer::new(&Key::from_bytes([0x22; 32])));

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&n| usize::from(n)).min(data.len());
    let (aad, plaintext) = data.split_at(split);
    let envelope = SEALER.seal(plaintext, aad);
    assert_eq!(envelope.len(), plaintext.len() + OVERHEAD);
    assert_eq!(
        SEALER.open(&envelope, aad).unwrap().expose_secret(),
        plaintext
    );
    let hex = SEALER.seal_hex(plaintext, aad);
    assert_eq!(
        SEALER.open_hex(&hex, aad).unwrap().expose_secret(),
        plaintext
    );
    let mut out = vec![0u8; plaintext.len()];
    assert_eq!(
        SEALER.open_into(&envelope, aad, &mut out),
        Ok(plaintext.len())
    );
    assert_eq!(out, plaintext);

    let mut other = aad.to_vec();
    other.push(0);
    assert!(SEALER.open(&envelope, &other).is_err());
    let mut flipped = envelope.clone();
    let bit = plaintext.len() % (flipped.len() * 8);
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(SEALER.open(&flipped, aad).is_err());
});
