//! A keyring across rotations: envelopes sealed under any ring key open
//! under the ring and reseal to the primary; arbitrary bytes never open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinseal::{ExposeSecret, Key, Keyring, Seal, Sealer};

/// The engine under test: `cargo fuzz run --features ring|aws-lc-rs`.
#[cfg(feature = "aws-lc-rs")]
type Engine = pinseal::envelope::AwsLc;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
type Engine = pinseal::envelope::Ring;
#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
type Engine = pinseal::envelope::AesGcm;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let keys: Vec<[u8; 32]> = (0..3u8).map(|i| [i.wrapping_add(selector); 32]).collect();
    let ring = Keyring::<Engine>::with_engine(&Key::from_bytes(keys[0]))
        .with_previous(&Key::from_bytes(keys[1]))
        .and_then(|r| r.with_previous(&Key::from_bytes(keys[2])))
        .expect("three keys fit in a ring");
    let sealed_by = usize::from(selector % 3);
    let envelope =
        Sealer::<Engine>::with_engine(&Key::from_bytes(keys[sealed_by])).seal(rest, b"field");
    let (plaintext, id) = ring.open_with_key_id(&envelope, b"field").unwrap();
    assert_eq!(plaintext.expose_secret(), rest);
    assert_eq!(id, Key::from_bytes(keys[sealed_by]).id());
    let moved = ring.reseal(&envelope, b"field").unwrap();
    assert_eq!(
        ring.open_with_key_id(&moved, b"field").unwrap().1,
        ring.primary_id()
    );
    assert!(ring.open(rest, b"field").is_err());
});
