//! `open`, `open_hex` and `open_into` on arbitrary input: never a panic,
//! never a plaintext (nothing random opens without the key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinseal::{Error, Key, Sealer};
use std::sync::LazyLock;

static SEALER: LazyLock<Sealer> = LazyLock::new(|| Sealer::new(&Key::from_bytes([0x11; 32])));

fuzz_target!(|data: &[u8]| {
    let (aad, envelope) = data.split_at(
        data.len()
            .min(data.first().map_or(0, |&n| usize::from(n % 32))),
    );
    assert_eq!(SEALER.open(envelope, aad).err(), Some(Error::Decrypt));
    let mut out = vec![0xAAu8; envelope.len()];
    assert!(SEALER.open_into(envelope, aad, &mut out).is_err());
    if let Ok(text) = std::str::from_utf8(envelope) {
        assert_eq!(SEALER.open_hex(text, aad).err(), Some(Error::Decrypt));
    }
});
