//! Seal then open arbitrary plaintext and AAD, binary and hex: always the
//! same bytes back; any other AAD or a flipped bit never opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinseal::envelope::{Envelope, OVERHEAD};
use pinseal::{ExposeSecret, Key, Seal, Sealer};
use std::sync::LazyLock;

/// The engine under test: `cargo fuzz run --features ring|aws-lc-rs`.
#[cfg(feature = "aws-lc-rs")]
type Engine = pinseal::envelope::AwsLc;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
type Engine = pinseal::envelope::Ring;
#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
type Engine = pinseal::envelope::AesGcm;

static SEALER: LazyLock<Sealer<Engine>> =
    LazyLock::new(|| Sealer::with_engine(&Key::from_bytes([0x22; 32])));

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&n| usize::from(n)).min(data.len());
    let (aad, plaintext) = data.split_at(split);
    let envelope = SEALER.seal(plaintext, aad);
    assert_eq!(envelope.len(), plaintext.len() + OVERHEAD);
    assert_eq!(
        SEALER.open(&envelope, aad).unwrap().expose_secret(),
        plaintext
    );
    let hex: Envelope = SEALER.seal(plaintext, aad).to_string().parse().unwrap();
    assert_eq!(SEALER.open(&hex, aad).unwrap().expose_secret(), plaintext);
    let mut out = vec![0u8; plaintext.len()];
    assert_eq!(
        SEALER.open_into(&envelope, aad, &mut out),
        Ok(plaintext.len())
    );
    assert_eq!(out, plaintext);

    let mut other = aad.to_vec();
    other.push(0);
    assert!(SEALER.open(&envelope, &other).is_err());
    let mut flipped = envelope.to_vec();
    let bit = plaintext.len() % (flipped.len() * 8);
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(SEALER.open(&flipped, aad).is_err());
});
