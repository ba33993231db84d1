//! Key parsing, derivation and ids against RFC 5869 and an independent
//! implementation.

mod common;

use common::read_blocks;
use hkdf::Hkdf;
use pinseal::{Error, ExposeSecret, Key};
use sha2::Sha256;

/// RFC 5869 appendix A, test cases 1-3 (SHA-256), through the same `hkdf`
/// calls `Key::derive` makes (extract, then expand with split info).
#[test]
fn rfc5869_hkdf_sha256() {
    let blocks = read_blocks("rfc5869_hkdf_sha256.txt", "COUNT");
    let names: Vec<_> = blocks.iter().map(|b| b.get("COUNT").to_string()).collect();
    assert_eq!(names, ["1", "2", "3"]);
    for b in &blocks {
        let salt = b.hex("salt");
        let info = b.hex("info");
        let (prk, hk) = Hkdf::<Sha256>::extract(Some(&salt), &b.hex("IKM"));
        assert_eq!(prk.as_slice(), b.hex("PRK"), "PRK, case {}", b.get("COUNT"));
        let mut okm = vec![0u8; b.get("L").parse().unwrap()];
        let (i1, i2) = info.split_at(info.len() / 2);
        hk.expand_multi_info(&[i1, i2], &mut okm).unwrap();
        assert_eq!(okm, b.hex("OKM"), "OKM, case {}", b.get("COUNT"));
    }
}

/// `Key::derive` and `KeyId` against values computed by Python
/// `cryptography` (tests/data/gen_pinseal_kdf.py).
#[test]
fn derive_and_key_id_match_independent_implementation() {
    let text = std::fs::read_to_string(common::data_path("pinseal_kdf.txt")).unwrap();
    let (mut key, mut purpose) = (None::<Key>, String::new());
    let mut derived = None::<Key>;
    let mut checked = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.split_once('=').unwrap();
        let value = value.trim();
        match name.trim() {
            "KEY" => key = Some(Key::from_hex(value).unwrap()),
            "KEYID" => assert_eq!(key.as_ref().unwrap().id().to_string(), value),
            "PURPOSE" => purpose = String::from_utf8(const_hex::decode(value).unwrap()).unwrap(),
            "DERIVED" => {
                let d = key.as_ref().unwrap().derive(&purpose);
                assert_eq!(
                    const_hex::encode(d.expose_secret()),
                    value,
                    "purpose {purpose:?}"
                );
                derived = Some(d);
                checked += 1;
            }
            "DERIVEDID" => assert_eq!(derived.as_ref().unwrap().id().to_string(), value),
            other => panic!("unknown field {other}"),
        }
    }
    assert_eq!(checked, 20);
}

#[test]
fn parsing_errors_are_typed() {
    assert_eq!(Key::from_slice(&[0; 31]).unwrap_err(), Error::KeyLength);
    assert_eq!(Key::from_slice(&[0; 33]).unwrap_err(), Error::KeyLength);
    assert!(Key::from_slice(&[0; 32]).is_ok());
    assert_eq!(
        Key::from_hex(&"0".repeat(63)).unwrap_err(),
        Error::KeyLength
    );
    assert_eq!(
        Key::from_hex(&"0".repeat(65)).unwrap_err(),
        Error::KeyLength
    );
    assert_eq!(
        Key::from_hex(&format!("{}x", "0".repeat(63))).unwrap_err(),
        Error::KeyHex
    );
    // A multi-byte character of the right byte length is bad hex, not a panic.
    assert_eq!(
        Key::from_hex(&format!("é{}", "0".repeat(62))).unwrap_err(),
        Error::KeyHex
    );
    // One spelling per key: no `0x` prefix, whatever the length.
    for prefixed in [
        format!("0x{}", "ab".repeat(31)),
        format!("0x{}", "ab".repeat(32)),
    ] {
        assert!(Key::from_hex(&prefixed).is_err(), "{prefixed}");
    }
    let upper = Key::from_hex(&"AB".repeat(32)).unwrap();
    let lower = Key::from_hex(&"ab".repeat(32)).unwrap();
    assert_eq!(upper.id(), lower.id());
}

#[test]
fn from_env() {
    // Variable names unique to this test; no other test touches them.
    let hex = "0f".repeat(32);
    // SAFETY: test-only, single-threaded use of these variable names.
    unsafe {
        std::env::set_var("PINSEAL_TEST_KEY_OK", format!("  {hex}\n"));
        std::env::set_var("PINSEAL_TEST_KEY_SHORT", "abcd");
        std::env::set_var("PINSEAL_TEST_KEY_BAD", "g".repeat(64));
    }
    let key = Key::from_env("PINSEAL_TEST_KEY_OK").unwrap();
    assert_eq!(key.id(), Key::from_bytes([0x0f; 32]).id());
    assert_eq!(
        Key::from_env("PINSEAL_TEST_KEY_SHORT").unwrap_err(),
        Error::KeyLength
    );
    assert_eq!(
        Key::from_env("PINSEAL_TEST_KEY_BAD").unwrap_err(),
        Error::KeyHex
    );
    assert_eq!(
        Key::from_env("PINSEAL_TEST_KEY_UNSET_8d2f").unwrap_err(),
        Error::KeyEnvMissing
    );
}

#[test]
fn generated_keys_differ_and_derivation_separates_purposes() {
    let a = Key::generate();
    let b = Key::generate();
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_ne!(a.derive("x").expose_secret(), a.derive("y").expose_secret());
    assert_eq!(a.derive("x").expose_secret(), a.derive("x").expose_secret());
    assert_ne!(a.derive("x").expose_secret(), a.expose_secret());
}
