//! Envelope known answers (NIST CAVP), tamper cases, and properties, on
//! every engine this build has: the default `AesGcm` always, `Ring` and
//! `AwsLc` with their features (`cargo test --all-features` runs all
//! three).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::read_blocks;
use pinseal::envelope::{EXPIRING_OVERHEAD, Envelope, OVERHEAD};
use pinseal::{Error, ExposeSecret, Key, Keyring, Seal, Sealer};
use proptest::prelude::*;

fn envelope_of(b: &common::Block) -> Vec<u8> {
    [b.hex("IV"), b.hex("CT"), b.hex("Tag")].concat()
}

/// `secs` seconds after the Unix epoch.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Expiries the property tests draw: anything a `SystemTime` can hold here
/// (34 000 years), and the edges.
fn expiry() -> impl Strategy<Value = u64> {
    prop_oneof![0..(1u64 << 40), Just(0), Just(1), Just((1u64 << 40) - 1)]
}

macro_rules! engine_tests {
    ($module:ident, $engine:ty) => {
        mod $module {
            use super::*;

            fn sealer(key: &Key) -> Sealer<$engine> {
                Sealer::with_engine(key)
            }

            fn keyring(key: &Key) -> Keyring<$engine> {
                Keyring::with_engine(key)
            }

            /// NIST CAVP gcmDecrypt256: every PASS case opens to its PT,
            /// both through `open` and `open_into`; every FAIL case is
            /// refused and leaves `out` zeroed.
            #[test]
            fn nist_cavp_decrypt_known_answers() {
                let blocks = read_blocks("nist_cavp_gcmDecrypt256_iv96_tag128.rsp", "Count");
                let (mut passes, mut fails) = (0, 0);
                for b in &blocks {
                    let sealer = sealer(&Key::from_slice(&b.hex("Key")).unwrap());
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

            /// NIST CAVP gcmEncryptExtIV256 seen from the open side, plus
            /// tamper cases derived from each vector: a flipped bit in
            /// nonce, ciphertext, tag or AAD, and a truncated tag, must all
            /// fail.
            #[test]
            fn nist_cavp_encrypt_vectors_open_and_resist_tampering() {
                let blocks = read_blocks("nist_cavp_gcmEncryptExtIV256_iv96_tag128.rsp", "Count");
                assert_eq!(blocks.len(), 375);
                for b in &blocks {
                    let sealer = sealer(&Key::from_slice(&b.hex("Key")).unwrap());
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
                let sealer = sealer(&Key::generate());
                for len in 0..OVERHEAD {
                    assert_eq!(sealer.open(&vec![0; len], b"").unwrap_err(), Error::Decrypt);
                    assert_eq!(
                        sealer.open_into(&vec![0; len], b"", &mut []).unwrap_err(),
                        Error::Decrypt
                    );
                }
                let good = sealer.seal(b"1234", b"pin").to_string();
                let (odd, replaced) = (format!("{good}0"), good.replace('a', "g"));
                for bad in ["", "0", "zz", &good[1..], &odd, &replaced] {
                    if bad != good {
                        let opened = bad
                            .parse::<Envelope>()
                            .and_then(|e| sealer.open(&e, b"pin"));
                        assert_eq!(opened.unwrap_err(), Error::Decrypt, "{bad:?}");
                    }
                }
                // Upper-case hex opens too; no other spelling parses.
                let upper: Envelope = good.to_uppercase().parse().unwrap();
                assert_eq!(sealer.open(&upper, b"pin").unwrap().expose_secret(), b"1234");
                for bad in [format!("0x{good}"), format!(" {good}"), format!("{good}\n")] {
                    assert_eq!(bad.parse::<Envelope>().unwrap_err(), Error::Decrypt);
                }
                let wrong_key = self::sealer(&Key::generate());
                assert_eq!(
                    wrong_key.open(&good.parse::<Envelope>().unwrap(), b"pin").unwrap_err(),
                    Error::Decrypt
                );
            }

            #[test]
            fn seal_produces_the_documented_layout() {
                let sealer = sealer(&Key::generate());
                let a = sealer.seal(b"4321", b"last4");
                let b = sealer.seal(b"4321", b"last4");
                assert_eq!(a.len(), 4 + OVERHEAD);
                assert_ne!(a[..12], b[..12], "each seal draws a fresh nonce");
                assert_ne!(a, b);
                let hex = a.to_string();
                assert_eq!(hex.len(), 2 * (4 + OVERHEAD));
                assert!(hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
                assert_eq!(hex.parse::<Envelope>().unwrap(), a);
                assert_eq!(format!("{a:?}"), format!("Envelope(\"{hex}\")"));
                assert_eq!(Envelope::from(a.to_vec()), a);
                assert_eq!(a.clone().into_bytes(), a.as_bytes());
            }

            #[test]
            fn buffers_are_checked_before_use() {
                let sealer = sealer(&Key::generate());
                let mut small = [0u8; 4 + OVERHEAD - 1];
                assert_eq!(
                    sealer.seal_into(b"1234", b"", &mut small).unwrap_err(),
                    Error::BufferTooSmall
                );
                assert!(small.iter().all(|&b| b == 0), "nothing written on error");

                let mut big = [0xEEu8; 64];
                let n = sealer.seal_into(b"1234", b"aad", &mut big).unwrap();
                assert_eq!(n, 4 + OVERHEAD);
                assert!(big[n..].iter().all(|&b| b == 0xEE), "bytes past the envelope untouched");

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
                let (k1, k2, k3) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]), Key::from_bytes([3; 32]));
                let old = keyring(&k1);
                let env1 = old.seal(b"1234", b"pin");
                let ring = keyring(&k3).with_previous(&k2).unwrap().with_previous(&k1).unwrap().with_previous(&k1).unwrap();
                assert_eq!(ring.key_ids().len(), 3, "duplicate keys are ignored");
                assert_eq!(keyring(&k1).with_previous(&k1).unwrap().key_ids().len(), 1);
                let (pt, id) = ring.open_with_key_id(&env1, b"pin").unwrap();
                assert_eq!(pt.expose_secret(), b"1234");
                assert_eq!(id, k1.id());
                // The open is counted against the key that made it.
                assert_eq!(ring.previous_opens(), 1);
                let usage = ring.key_usage();
                assert_eq!(usage.iter().map(|u| (u.id, u.primary, u.opens)).collect::<Vec<_>>(),
                    [(k3.id(), true, 0), (k2.id(), false, 0), (k1.id(), false, 1)]);

                let moved = ring.reseal(&env1, b"pin").unwrap();
                assert_eq!(ring.open_with_key_id(&moved, b"pin").unwrap().1, ring.primary_id());
                assert_eq!(old.open(&moved, b"pin").unwrap_err(), Error::Decrypt);
                assert_eq!(ring.reseal(&env1, b"other").unwrap_err(), Error::Decrypt);
                assert_eq!(keyring(&k2).open(&env1, b"pin").unwrap_err(), Error::Decrypt);

                // Every form of a sealer exists on a keyring, and opens
                // what a sealer of a ring key made.
                let mut out = [0u8; 4];
                assert_eq!(ring.open_into(&sealer(&k2).seal(b"5678", b"x"), b"x", &mut out), Ok(4));
                assert_eq!(&out, b"5678");
                let mut env = [0u8; 4 + OVERHEAD];
                ring.seal_into(b"9012", b"y", &mut env).unwrap();
                assert_eq!(sealer(&k3).open(&env, b"y").unwrap().expose_secret(), b"9012");
                let hex = ring.seal(b"3456", b"z").to_string();
                assert_eq!(sealer(&k3).open(&hex.parse::<Envelope>().unwrap(), b"z").unwrap().expose_secret(), b"3456");
                let expiring = ring.seal_for(b"7890", b"w", Duration::from_secs(60));
                assert_eq!(sealer(&k3).open_expiring(&expiring, b"w").unwrap().expose_secret(), b"7890");
            }

            #[test]
            fn a_keyring_holds_at_most_eight_keys() {
                let keys: Vec<Key> = (1..=9u8).map(|i| Key::from_bytes([i; 32])).collect();
                let mut ring = keyring(&keys[0]);
                for k in &keys[1..8] {
                    ring = ring.with_previous(k).unwrap();
                }
                assert_eq!(ring.key_ids().len(), Keyring::<$engine>::MAX_KEYS);
                // A key already in the ring is still ignored, not refused.
                let ring = ring.with_previous(&keys[3]).unwrap();
                assert_eq!(ring.with_previous(&keys[8]).err(), Some(Error::TooManyKeys));
                // A full ring: the oldest key opens; a forgery is tried
                // against all eight and refused, and counts nothing.
                let ring = keys[1..8].iter().fold(keyring(&keys[0]), |r, k| r.with_previous(k).unwrap());
                let env = sealer(&keys[7]).seal(b"1234", b"pin");
                assert_eq!(ring.open(&env, b"pin").unwrap().expose_secret(), b"1234");
                let mut forged = env.to_vec();
                forged[12] ^= 1;
                assert_eq!(ring.open(&forged, b"pin").unwrap_err(), Error::Decrypt);
                assert_eq!(ring.previous_opens(), 1);
                assert_eq!(ring.key_usage().last().unwrap().opens, 1);
            }

            #[test]
            fn sealers_and_keyrings_are_send_sync_and_dyn_seal() {
                fn assert_send_sync<T: Send + Sync>() {}
                assert_send_sync::<Sealer<$engine>>();
                assert_send_sync::<Keyring<$engine>>();
                let key = Key::generate();
                let both: [Box<dyn Seal>; 2] = [Box::new(sealer(&key)), Box::new(keyring(&key))];
                let envelope = both[0].seal(b"1234", b"pin");
                assert_eq!(both[1].open(&envelope, b"pin").unwrap().expose_secret(), b"1234");
            }

            #[test]
            fn keyring_reseal_keeps_the_expiry() {
                let (k1, k2) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
                let old = keyring(&k1);
                let deadline = SystemTime::now() + Duration::from_secs(3_600);
                let expires_at = deadline.duration_since(UNIX_EPOCH).unwrap().as_secs();
                let env = old.seal_until(b"4321", b"last4", deadline);
                let ring = keyring(&k2).with_previous(&k1).unwrap();
                let moved = ring.reseal_expiring(&env, b"last4").unwrap();
                assert_eq!(&moved[..8], &expires_at.to_be_bytes());
                assert!(old.open_expiring(&moved, b"last4").is_err(), "now under the new key");
                assert_eq!(ring.open_expiring(&moved, b"last4").unwrap().expose_secret(), b"4321");
                assert_eq!(
                    ring.open_expiring_at(&moved, b"last4", at(expires_at)).unwrap_err(),
                    Error::Expired
                );
                let expired = old.seal_until(b"4321", b"last4", at(1_000));
                assert_eq!(ring.reseal_expiring(&expired, b"last4").unwrap_err(), Error::Expired);
                // The same against an explicit clock: open at 999, expired at 1000.
                let moved = ring.reseal_expiring_at(&expired, b"last4", at(999)).unwrap();
                assert_eq!(&moved[..8], &1_000u64.to_be_bytes());
                assert_eq!(ring.open_expiring_at(&moved, b"last4", at(999)).unwrap().expose_secret(), b"4321");
                assert_eq!(
                    ring.reseal_expiring_at(&expired, b"last4", at(1_000)).unwrap_err(),
                    Error::Expired
                );
                for cut in 0..EXPIRING_OVERHEAD {
                    assert_eq!(
                        ring.open_expiring_at(&env[..cut], b"last4", at(0)).unwrap_err(),
                        Error::Decrypt
                    );
                }
            }

            /// Deadlines are typed: `seal_for` counts from the system
            /// clock, a deadline is kept in whole seconds rounded down (so
            /// never late), and one before 1970 is already expired.
            #[test]
            fn deadlines_and_ttls() {
                let sealer = sealer(&Key::generate());
                let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
                let env = sealer.seal_for(b"1234", b"pin", Duration::from_secs(300));
                let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
                let expires_at = u64::from_be_bytes(env[..8].try_into().unwrap());
                assert!((before + 300..=after + 300).contains(&expires_at), "{expires_at}");
                assert_eq!(sealer.open_expiring(&env, b"pin").unwrap().expose_secret(), b"1234");

                let half = at(2_000) + Duration::from_millis(500);
                let env = sealer.seal_until(b"1234", b"pin", half);
                assert_eq!(&env[..8], &2_000u64.to_be_bytes());
                assert!(sealer.open_expiring_at(&env, b"pin", at(1_999) + Duration::from_millis(999)).is_ok());
                assert_eq!(sealer.open_expiring_at(&env, b"pin", at(2_000)).unwrap_err(), Error::Expired);

                let ancient = UNIX_EPOCH - Duration::from_secs(1);
                let env = sealer.seal_until(b"1234", b"pin", ancient);
                assert_eq!(&env[..8], &0u64.to_be_bytes());
                assert_eq!(sealer.open_expiring_at(&env, b"pin", ancient).unwrap_err(), Error::Expired);

                // A TTL too long for the clock never expires.
                let forever = sealer.seal_for(b"1234", b"pin", Duration::MAX);
                assert_eq!(&forever[..8], &u64::MAX.to_be_bytes());
                assert!(sealer.open_expiring(&forever, b"pin").is_ok());
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(64))]

                #[test]
                fn round_trip(pt in prop::collection::vec(any::<u8>(), 0..=65536),
                              aad in prop::collection::vec(any::<u8>(), 0..=65536)) {
                    let sealer = sealer(&Key::generate());
                    let env = sealer.seal(&pt, &aad);
                    prop_assert_eq!(env.len(), pt.len() + OVERHEAD);
                    let opened = sealer.open(&env, &aad).unwrap();
                    prop_assert_eq!(opened.expose_secret(), &pt);
                    let hex: Envelope = env.to_string().parse().unwrap();
                    let opened = sealer.open(&hex, &aad).unwrap();
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
                    let sealer = sealer(&Key::generate());
                    let mut env = sealer.seal(&pt, &aad).into_bytes();
                    let i = bit.index(env.len() * 8);
                    env[i / 8] ^= 1 << (i % 8);
                    prop_assert_eq!(sealer.open(&env, &aad).unwrap_err(), Error::Decrypt);
                }

                #[test]
                fn any_truncation_fails(pt in prop::collection::vec(any::<u8>(), 0..256),
                                        cut in any::<prop::sample::Index>()) {
                    let sealer = sealer(&Key::generate());
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
                    let sealer = sealer(&Key::generate());
                    prop_assert!(sealer.open(&sealer.seal(&pt, &a), &b).is_err());
                }

                /// Expiring envelopes: open exactly while `now <
                /// expires_at`; any flipped bit (the expiry included) or
                /// other associated data is a forgery; an authentic expired
                /// envelope is `Error::Expired`.
                #[test]
                fn expiring_envelopes_open_only_before_their_expiry(
                    pt in prop::collection::vec(any::<u8>(), 0..256),
                    aad in prop::collection::vec(any::<u8>(), 0..64),
                    expires_at in expiry(),
                    now in expiry(),
                    bit in any::<prop::sample::Index>(),
                ) {
                    let sealer = sealer(&Key::generate());
                    let env = sealer.seal_until(&pt, &aad, at(expires_at));
                    prop_assert_eq!(env.len(), pt.len() + EXPIRING_OVERHEAD);
                    prop_assert_eq!(&env[..8], &expires_at.to_be_bytes()[..]);
                    match sealer.open_expiring_at(&env, &aad, at(now)) {
                        Ok(opened) => {
                            prop_assert!(now < expires_at);
                            prop_assert_eq!(opened.expose_secret(), &pt);
                        }
                        Err(e) => {
                            prop_assert!(now >= expires_at);
                            prop_assert_eq!(e, Error::Expired);
                        }
                    }
                    let mut flipped = env.to_vec();
                    let i = bit.index(flipped.len() * 8);
                    flipped[i / 8] ^= 1 << (i % 8);
                    prop_assert_eq!(sealer.open_expiring_at(&flipped, &aad, at(now)).unwrap_err(), Error::Decrypt);
                    let mut other = aad.clone();
                    other.push(0);
                    prop_assert_eq!(sealer.open_expiring_at(&env, &other, at(0)).unwrap_err(), Error::Decrypt);
                    // Not an ordinary envelope either way round.
                    prop_assert!(sealer.open(&env, &aad).is_err());
                    prop_assert!(sealer.open_expiring_at(&sealer.seal(&pt, &aad), &aad, at(0)).is_err());
                    let hex: Envelope = env.to_string().parse().unwrap();
                    prop_assert_eq!(
                        sealer.open_expiring_at(&hex, &aad, at(now)).is_ok(),
                        now < expires_at
                    );
                }
            }
        }
    };
}

engine_tests!(aes_gcm, pinseal::envelope::AesGcm);
#[cfg(feature = "ring")]
engine_tests!(ring, pinseal::envelope::Ring);
#[cfg(feature = "aws-lc-rs")]
engine_tests!(aws_lc, pinseal::envelope::AwsLc);

/// Turning an engine feature on changes nothing for code that did not ask
/// for that engine: `Sealer` is `Sealer<AesGcm>`, and every engine opens
/// what every other sealed.
#[test]
fn the_default_engine_is_aes_gcm_whatever_the_features() {
    use pinseal::envelope::{AesGcm, Engine};
    let key = Key::generate();
    let sealer: Sealer<AesGcm> = Sealer::new(&key);
    assert!(format!("{sealer:?}").contains(AesGcm::NAME));
    #[cfg(feature = "ring")]
    {
        let ring = Sealer::<pinseal::envelope::Ring>::with_engine(&key);
        assert_eq!(
            ring.open(&sealer.seal(b"1", b""), b"")
                .unwrap()
                .expose_secret(),
            b"1"
        );
        assert_eq!(
            sealer
                .open(&ring.seal(b"2", b""), b"")
                .unwrap()
                .expose_secret(),
            b"2"
        );
    }
    #[cfg(feature = "aws-lc-rs")]
    {
        let aws = Sealer::<pinseal::envelope::AwsLc>::with_engine(&key);
        assert_eq!(
            aws.open(&sealer.seal(b"1", b""), b"")
                .unwrap()
                .expose_secret(),
            b"1"
        );
        assert_eq!(
            sealer
                .open(&aws.seal(b"2", b""), b"")
                .unwrap()
                .expose_secret(),
            b"2"
        );
    }
}
