//! Envelope known answers (NIST CAVP), tamper cases, and properties.

mod common;

use common::read_blocks;
use pinseal::{EXPIRING_OVERHEAD, Error, ExposeSecret, Key, Keyring, OVERHEAD, Sealer};
use proptest::prelude::*;

fn envelope_of(b: &common::Block) -> Vec<u8> {
    [b.hex("IV"), b.hex("CT"), b.hex("Tag")].concat()
}

/// NIST CAVP gcmDecrypt256: every PASS case opens to its PT, both through
/// `open` and `open_into`; every FAIL case is refused and leaves `out` zeroed.
#[test]
fn nist_cavp_decrypt_known_answers() {
    let blocks = read_blocks("nist_cavp_gcmDecrypt256_iv96_tag128.rsp", "Count");
    let (mut passes, mut fails) = (0, 0);
    for b in &blocks {
        let sealer = Sealer::new(&Key::from_slice(&b.hex("Key")).unwrap());
        let envelope = envelope_of(b);
        let aad = b.hex("AAD");
        let mut out = vec![0xAA; envelope.len() - OVERHEAD];
        if b.has("FAIL") {
            assert_eq!(sealer.open(&envelope, &aad).unwrap_err(), Error::Decrypt);
            assert_eq!(
                sealer.open_into(&envelope, &aad, &mut out).unwrap_err(),
                Error::Decrypt
            );
            assert!(out.iter().all(|&x| x == 0), "failed open_into left data");
            fails += 1;
        } else {
            let pt = b.hex("PT");
            assert_eq!(sealer.open(&envelope, &aad).unwrap().expose_secret(), &pt);
            assert_eq!(sealer.open_into(&envelope, &aad, &mut out), Ok(pt.len()));
            assert_eq!(out, pt);
            passes += 1;
        }
    }
    assert_eq!((passes, fails), (184, 191), "every case in the file ran");
}

/// NIST CAVP gcmEncryptExtIV256 seen from the open side, plus tamper cases
/// derived from each vector: a flipped bit in nonce, ciphertext, tag or AAD,
/// and a truncated tag, must all fail.
#[test]
fn nist_cavp_encrypt_vectors_open_and_resist_tampering() {
    let blocks = read_blocks("nist_cavp_gcmEncryptExtIV256_iv96_tag128.rsp", "Count");
    assert_eq!(blocks.len(), 375);
    for b in &blocks {
        let sealer = Sealer::new(&Key::from_slice(&b.hex("Key")).unwrap());
        let envelope = envelope_of(b);
        let aad = b.hex("AAD");
        assert_eq!(
            sealer.open(&envelope, &aad).unwrap().expose_secret(),
            &b.hex("PT")
        );
        for pos in [0, envelope.len() / 2, envelope.len() - 1] {
            let mut bad = envelope.clone();
            bad[pos] ^= 0x01;
            assert_eq!(sealer.open(&bad, &aad).unwrap_err(), Error::Decrypt);
        }
        assert!(sealer.open(&envelope[..envelope.len() - 1], &aad).is_err());
        let mut bad_aad = aad.clone();
        bad_aad.push(0);
        assert!(sealer.open(&envelope, &bad_aad).is_err());
    }
}

#[test]
fn short_and_malformed_input_is_one_opaque_error() {
    let sealer = Sealer::new(&Key::generate());
    for len in 0..OVERHEAD {
        assert_eq!(sealer.open(&vec![0; len], b"").unwrap_err(), Error::Decrypt);
        assert_eq!(
            sealer.open_into(&vec![0; len], b"", &mut []).unwrap_err(),
            Error::Decrypt
        );
    }
    let good = sealer.seal_hex(b"1234", b"pin");
    let (odd, replaced) = (format!("{good}0"), good.replace('a', "g"));
    for bad in ["", "0", "zz", &good[1..], &odd, &replaced] {
        if bad != good {
            assert_eq!(sealer.open_hex(bad, b"pin").unwrap_err(), Error::Decrypt);
        }
    }
    // Upper-case hex opens too.
    assert_eq!(
        sealer
            .open_hex(&good.to_uppercase(), b"pin")
            .unwrap()
            .expose_secret(),
        b"1234"
    );
    let wrong_key = Sealer::new(&Key::generate());
    assert_eq!(
        wrong_key.open_hex(&good, b"pin").unwrap_err(),
        Error::Decrypt
    );
}

#[test]
fn seal_produces_the_documented_layout() {
    let sealer = Sealer::new(&Key::generate());
    let a = sealer.seal(b"4321", b"last4");
    let b = sealer.seal(b"4321", b"last4");
    assert_eq!(a.len(), 4 + OVERHEAD);
    assert_ne!(a[..12], b[..12], "each seal draws a fresh nonce");
    assert_ne!(a, b);
    let hex = sealer.seal_hex(b"4321", b"last4");
    assert_eq!(hex.len(), 2 * (4 + OVERHEAD));
    assert!(
        hex.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    );
}

#[test]
fn buffers_are_checked_before_use() {
    let sealer = Sealer::new(&Key::generate());
    let mut small = [0u8; 4 + OVERHEAD - 1];
    assert_eq!(
        sealer.seal_into(b"1234", b"", &mut small).unwrap_err(),
        Error::BufferTooSmall
    );
    assert!(small.iter().all(|&b| b == 0), "nothing written on error");

    let mut big = [0xEEu8; 64];
    let n = sealer.seal_into(b"1234", b"aad", &mut big).unwrap();
    assert_eq!(n, 4 + OVERHEAD);
    assert!(
        big[n..].iter().all(|&b| b == 0xEE),
        "bytes past the envelope untouched"
    );

    let mut tiny = [0x55u8; 3];
    assert_eq!(
        sealer.open_into(&big[..n], b"aad", &mut tiny).unwrap_err(),
        Error::BufferTooSmall
    );
    assert_eq!(tiny, [0x55; 3]);
    let mut pt = [0u8; 8];
    assert_eq!(sealer.open_into(&big[..n], b"aad", &mut pt), Ok(4));
    assert_eq!(&pt[..4], b"1234");
}

#[test]
fn keyring_rotates() {
    let k1 = [1u8; 32];
    let k2 = [2u8; 32];
    let k3 = [3u8; 32];
    let old = Keyring::new(Key::from_bytes(k1));
    let env1 = old.seal(b"1234", b"pin");
    let ring = Keyring::new(Key::from_bytes(k3))
        .with_previous(Key::from_bytes(k2))
        .with_previous(Key::from_bytes(k1))
        .with_previous(Key::from_bytes(k1));
    assert_eq!(ring.key_ids().len(), 3, "duplicate keys are ignored");
    let (pt, id) = ring.open_with_key_id(&env1, b"pin").unwrap();
    assert_eq!(pt.expose_secret(), b"1234");
    assert_eq!(id, Key::from_bytes(k1).id());

    let moved = ring.reseal(&env1, b"pin").unwrap();
    assert_eq!(
        ring.open_with_key_id(&moved, b"pin").unwrap().1,
        ring.primary_id()
    );
    assert_eq!(old.open(&moved, b"pin").unwrap_err(), Error::Decrypt);
    assert_eq!(ring.reseal(&env1, b"other").unwrap_err(), Error::Decrypt);
    assert_eq!(
        Keyring::new(Key::from_bytes(k2))
            .open(&env1, b"pin")
            .unwrap_err(),
        Error::Decrypt
    );
}

#[test]
fn sealer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sealer>();
    assert_send_sync::<Keyring>();
    assert_send_sync::<Key>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(pt in prop::collection::vec(any::<u8>(), 0..=65536),
                  aad in prop::collection::vec(any::<u8>(), 0..=65536)) {
        let sealer = Sealer::new(&Key::generate());
        let env = sealer.seal(&pt, &aad);
        prop_assert_eq!(env.len(), pt.len() + OVERHEAD);
        let opened = sealer.open(&env, &aad).unwrap();
        prop_assert_eq!(opened.expose_secret(), &pt);
        let hex = sealer.seal_hex(&pt, &aad);
        let opened = sealer.open_hex(&hex, &aad).unwrap();
        prop_assert_eq!(opened.expose_secret(), &pt);
        let mut out = vec![0u8; pt.len()];
        prop_assert_eq!(sealer.open_into(&env, &aad, &mut out), Ok(pt.len()));
        prop_assert_eq!(out, pt);
    }
}

proptest! {
    #[test]
    fn any_single_bit_flip_fails(pt in prop::collection::vec(any::<u8>(), 0..256),
                                 aad in prop::collection::vec(any::<u8>(), 0..64),
                                 bit in any::<prop::sample::Index>()) {
        let sealer = Sealer::new(&Key::generate());
        let mut env = sealer.seal(&pt, &aad);
        let i = bit.index(env.len() * 8);
        env[i / 8] ^= 1 << (i % 8);
        prop_assert_eq!(sealer.open(&env, &aad).unwrap_err(), Error::Decrypt);
    }

    #[test]
    fn any_truncation_fails(pt in prop::collection::vec(any::<u8>(), 0..256),
                            cut in any::<prop::sample::Index>()) {
        let sealer = Sealer::new(&Key::generate());
        let env = sealer.seal(&pt, b"aad");
        let keep = cut.index(env.len());
        prop_assert_eq!(sealer.open(&env[..keep], b"aad").unwrap_err(), Error::Decrypt);
        // Dropping bytes from the front fails too.
        prop_assert!(sealer.open(&env[env.len() - keep..], b"aad").is_err());
    }

    #[test]
    fn aad_is_bound(pt in prop::collection::vec(any::<u8>(), 0..64),
                    a in prop::collection::vec(any::<u8>(), 0..32),
                    b in prop::collection::vec(any::<u8>(), 0..32)) {
        prop_assume!(a != b);
        let sealer = Sealer::new(&Key::generate());
        prop_assert!(sealer.open(&sealer.seal(&pt, &a), &b).is_err());
    }
}

proptest! {
    /// Expiring envelopes: open exactly while `now < expires_at`; any flipped
    /// bit (the expiry included) or other associated data is a forgery;
    /// an authentic expired envelope is `Error::Expired`.
    #[test]
    fn expiring_envelopes_open_only_before_their_expiry(
        pt in prop::collection::vec(any::<u8>(), 0..256),
        aad in prop::collection::vec(any::<u8>(), 0..64),
        expires_at in any::<u64>(),
        now in any::<u64>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let sealer = Sealer::new(&Key::generate());
        let env = sealer.seal_until(&pt, &aad, expires_at);
        prop_assert_eq!(env.len(), pt.len() + EXPIRING_OVERHEAD);
        prop_assert_eq!(&env[..8], &expires_at.to_be_bytes()[..]);
        match sealer.open_expiring(&env, &aad, now) {
            Ok(opened) => {
                prop_assert!(now < expires_at);
                prop_assert_eq!(opened.expose_secret(), &pt);
            }
            Err(e) => {
                prop_assert!(now >= expires_at);
                prop_assert_eq!(e, Error::Expired);
            }
        }
        let mut flipped = env.clone();
        let i = bit.index(flipped.len() * 8);
        flipped[i / 8] ^= 1 << (i % 8);
        prop_assert_eq!(sealer.open_expiring(&flipped, &aad, now).unwrap_err(), Error::Decrypt);
        let mut other = aad.clone();
        other.push(0);
        prop_assert_eq!(sealer.open_expiring(&env, &other, 0).unwrap_err(), Error::Decrypt);
        // Not an ordinary envelope either way round.
        prop_assert!(sealer.open(&env, &aad).is_err());
        prop_assert!(sealer.open_expiring(&sealer.seal(&pt, &aad), &aad, 0).is_err());
        let hex = sealer.seal_until_hex(&pt, &aad, expires_at);
        prop_assert_eq!(
            sealer.open_expiring_hex(&hex, &aad, now).is_ok(),
            now < expires_at
        );
    }
}

#[test]
fn keyring_reseal_keeps_the_expiry() {
    let old = Keyring::new(Key::from_bytes([1; 32]));
    let env = old.seal_until(b"4321", b"last4", 2_000);
    let ring = Keyring::new(Key::from_bytes([2; 32])).with_previous(Key::from_bytes([1; 32]));
    let moved = ring.reseal_expiring(&env, b"last4", 1_000).unwrap();
    assert_eq!(&moved[..8], &2_000u64.to_be_bytes());
    assert!(
        old.open_expiring(&moved, b"last4", 1_000).is_err(),
        "now under the new key"
    );
    assert_eq!(
        ring.open_expiring(&moved, b"last4", 1_999)
            .unwrap()
            .expose_secret(),
        b"4321"
    );
    assert_eq!(
        ring.open_expiring(&moved, b"last4", 2_000).unwrap_err(),
        Error::Expired
    );
    assert_eq!(
        ring.reseal_expiring(&env, b"last4", 2_000).unwrap_err(),
        Error::Expired
    );
    for cut in 0..EXPIRING_OVERHEAD {
        assert_eq!(
            ring.open_expiring(&env[..cut], b"last4", 0).unwrap_err(),
            Error::Decrypt
        );
    }
}
