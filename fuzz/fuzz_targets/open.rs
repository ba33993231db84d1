//! `open`, `open_into` and the hex form on arbitrary input: never a panic,
//! never a plaintext (nothing random opens without the key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinseal::envelope::Envelope;
use pinseal::{Error, Key, Seal, Sealer};
use std::sync::LazyLock;

/// The engine under test: `cargo fuzz run --features ring|aws-lc-rs`.
#[cfg(feature = "aws-lc-rs")]
type Engine = pinseal::envelope::AwsLc;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
type Engine = pinseal::envelope::Ring;
#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
type Engine = pinseal::envelope::AesGcm;

static SEALER: LazyLock<Sealer<Engine>> =
    LazyLock::new(|| Sealer::with_engine(&Key::from_bytes([0x11; 32])));

fuzz_target!(|data: &[u8]| {
    let (aad, envelope) = data.split_at(
        data.len()
            .min(data.first().map_or(0, |&n| usize::from(n % 32))),
    );
    assert_eq!(SEALER.open(envelope, aad).err(), Some(Error::Decrypt));
    let mut out = vec![0xAAu8; envelope.len()];
    assert!(SEALER.open_into(envelope, aad, &mut out).is_err());
    if let Ok(text) = std::str::from_utf8(envelope) {
        let opened = text.parse::<Envelope>().and_then(|e| SEALER.open(&e, aad));
        assert_eq!(opened.err(), Some(Error::Decrypt));
    }
});
