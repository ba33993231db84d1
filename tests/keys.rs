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

/// Standard base64 with padding, written out here (an encoder independent
/// of the one the crate uses).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_keys_read_as_the_same_bytes() {
    for _ in 0..200 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        let text = base64(&bytes);
        assert_eq!(text.len(), 44);
        let key = Key::from_base64(&text).unwrap();
        assert_eq!(key.expose_secret(), &bytes);
        // With a trailing newline, as a secrets file or `echo` leaves it.
        let parsed =
            Key::parse(format!("{text}\n").as_bytes(), pinseal::KeyFormat::Base64).unwrap();
        assert_eq!(parsed.expose_secret(), &bytes);
    }
    let text = base64(&[7; 32]);
    for bad in [
        &text[..43],
        "&".repeat(44).as_str(),
        &text.replace('=', "A"),
    ] {
        let err = Key::from_base64(bad).unwrap_err();
        assert!(
            matches!(err, Error::KeyBase64 | Error::KeyLength),
            "{err:?}"
        );
        assert!(!err.to_string().contains(bad));
    }
    assert_eq!(
        Key::from_base64(&base64(&[7; 31])).unwrap_err(),
        Error::KeyLength
    );
    assert_eq!(
        Key::from_base64(&base64(&[7; 33])).unwrap_err(),
        Error::KeyLength
    );
}

#[cfg(unix)]
#[test]
fn key_files_must_be_private_regular_files() {
    use pinseal::KeyFormat;
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pinseal-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, contents: &[u8], mode: u32| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let bytes = [0x42u8; 32];
    let hex = format!("{}\n", const_hex::encode(bytes));
    for (name, contents, format) in [
        ("hex", hex.as_bytes().to_vec(), KeyFormat::Hex),
        (
            "b64",
            format!("{}\n", base64(&bytes)).into_bytes(),
            KeyFormat::Base64,
        ),
        ("raw", bytes.to_vec(), KeyFormat::Raw),
    ] {
        let path = write(name, &contents, 0o600);
        assert_eq!(
            Key::from_file(&path, format).unwrap().expose_secret(),
            &bytes,
            "{name}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Key::from_file(&path, format).is_ok(), "{name} 0400");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        assert!(
            Key::from_file(&path, format).is_ok(),
            "{name} 0440 (a group read)"
        );
        for mode in [0o644, 0o604, 0o620, 0o660, 0o444, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                Key::from_file(&path, format).unwrap_err(),
                Error::KeyFileMode,
                "{name} {mode:o}"
            );
        }
    }
    // The wrong format, a directory, a missing file, a file too long.
    let path = write("hex2", hex.as_bytes(), 0o600);
    // (64 hex digits are valid base64, of 48 bytes.)
    assert_eq!(
        Key::from_file(&path, KeyFormat::Base64).unwrap_err(),
        Error::KeyLength
    );
    let bad = write("b64bad", b"!!!!\n", 0o600);
    assert_eq!(
        Key::from_file(&bad, KeyFormat::Base64).unwrap_err(),
        Error::KeyBase64
    );
    assert_eq!(
        Key::from_file(&path, KeyFormat::Raw).unwrap_err(),
        Error::KeyLength
    );
    assert_eq!(
        Key::from_file(&dir, KeyFormat::Hex).unwrap_err(),
        Error::KeyFile
    );
    assert_eq!(
        Key::from_file(dir.join("absent"), KeyFormat::Hex).unwrap_err(),
        Error::KeyFile
    );
    let long = write("long", &[b'a'; 4096], 0o600);
    let err = Key::from_file(&long, KeyFormat::Hex).unwrap_err();
    assert_eq!(err, Error::KeyFile);
    // A symbolic link to a private key file is followed (a mounted secret
    // is one); a FIFO is refused without blocking on it.
    let target = write("target", hex.as_bytes(), 0o600);
    let link = dir.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(
        Key::from_file(&link, KeyFormat::Hex)
            .unwrap()
            .expose_secret(),
        &bytes
    );
    let fifo = dir.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        Key::from_file(&fifo, KeyFormat::Hex).unwrap_err(),
        Error::KeyFile
    );
    // No error names the path or echoes the contents.
    for e in [Error::KeyFile, Error::KeyFileMode, Error::KeyBase64] {
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("pinseal-keys") && !text.contains("4242"),
            "{text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_from_the_environment_in_either_text_format() {
    use pinseal::KeyFormat;
    let bytes = [0x17u8; 32];
    // SAFETY: this test binary sets no other variable of these names, and
    // no other test reads them.
    unsafe {
        std::env::set_var("PINSEAL_TEST_KEY_B64", format!(" {}\n", base64(&bytes)));
        std::env::set_var("PINSEAL_TEST_KEY_HEX", const_hex::encode(bytes));
    }
    let b64 = Key::from_env_as("PINSEAL_TEST_KEY_B64", KeyFormat::Base64).unwrap();
    let hex = Key::from_env_as("PINSEAL_TEST_KEY_HEX", KeyFormat::Hex).unwrap();
    assert_eq!(b64.expose_secret(), &bytes);
    assert_eq!(hex.expose_secret(), &bytes);
    assert_eq!(
        Key::from_env_as("PINSEAL_TEST_KEY_HEX", KeyFormat::Base64).unwrap_err(),
        Error::KeyLength
    );
    assert_eq!(
        Key::from_env_as("PINSEAL_TEST_KEY_ABSENT", KeyFormat::Hex).unwrap_err(),
        Error::KeyEnvMissing
    );
    // Raw bytes are for files: 32 characters of a variable are a password.
    assert_eq!(
        Key::from_env_as("PINSEAL_TEST_KEY_HEX", KeyFormat::Raw).unwrap_err(),
        Error::InvalidParameter
    );
}
