//! The AES-256-GCM engines: one public type per engine, behind one sealed
//! trait.
//!
//! Each engine is a small file that maps the trait onto one crate:
//! [`AesGcm`] (RustCrypto `aes-gcm`, always built, the default), `Ring`
//! (feature `ring`) and `AwsLc` (feature `aws-lc-rs`). The application
//! picks one by naming it (`Sealer::<Ring>::with_engine`); a feature only
//! makes an engine available, so a dependency that turns on `ring` changes
//! nothing for code that did not ask for it. Every engine produces the same
//! bytes: standard AES-256-GCM with a 96-bit nonce and a 128-bit tag.

mod rustcrypto;

#[cfg(feature = "aws-lc-rs")]
mod aws_lc;
#[cfg(feature = "ring")]
mod ring;

#[cfg(feature = "aws-lc-rs")]
pub use aws_lc::AwsLc;
#[cfg(feature = "ring")]
pub use ring::Ring;
pub use rustcrypto::AesGcm;

/// Length of the authentication tag at the end of an envelope.
pub const TAG_LEN: usize = 16;

/// An AES-256-GCM implementation a [`Sealer`](crate::Sealer) or
/// [`Keyring`](crate::Keyring) can run on: [`AesGcm`] (the default),
/// `Ring` (feature `ring`) or `AwsLc` (feature `aws-lc-rs`).
///
/// The trait is sealed: the engines are the crate's own, each checked
/// against the NIST vectors and against the others.
///
/// # Security
///
/// [`AesGcm`] and `AwsLc` wipe their expanded key on drop, and a `Sealer`
/// or `Keyring` on them is `ZeroizeOnDrop`; `Ring` cannot (ring offers no
/// way to), so one on `Ring` is not. An engine that does not wipe is used
/// only where the application names it.
pub trait Engine: private::Core + Send + Sync + 'static {
    /// The engine's name: `"aes-gcm"`, `"ring"` or `"aws-lc-rs"`.
    const NAME: &'static str;
}

/// The engines' operations, out of reach outside the crate.
pub(crate) mod private {
    use super::TAG_LEN;
    use crate::nonce::NONCE_LEN;

    /// An engine refused an operation: a tag did not verify, or a length
    /// is out of range. Carries nothing.
    #[derive(Debug)]
    pub struct Failed;

    /// AES-256-GCM with a caller-supplied nonce, as one crate provides it;
    /// `Self` is the expanded key.
    pub trait Core: Sized {
        /// Expands a 256-bit key.
        fn new(key: &[u8; 32]) -> Self;

        /// Encrypts `in_out` in place; returns the tag.
        fn seal_in_place(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            in_out: &mut [u8],
        ) -> Result<[u8; TAG_LEN], Failed>;

        /// Encrypts `plaintext` into `out` (of the same length); returns
        /// the tag. The default copies, then encrypts in place.
        fn seal_to(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            plaintext: &[u8],
            out: &mut [u8],
        ) -> Result<[u8; TAG_LEN], Failed> {
            out.copy_from_slice(plaintext);
            self.seal_in_place(nonce, aad, out)
        }

        /// Checks `tag` and decrypts `ciphertext` into `out` (of the same
        /// length). On failure `out` holds no plaintext the caller may use;
        /// the caller wipes it.
        fn open_to(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            ciphertext: &[u8],
            tag: &[u8; TAG_LEN],
            out: &mut [u8],
        ) -> Result<(), Failed>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nonce::NONCE_LEN;

    /// Seals with `A` and opens with `B`, both ways through every entry
    /// point, over lengths around the block size.
    fn cross<A: Engine, B: Engine>() {
        let key = [0x42; 32];
        let (a, b) = (A::new(&key), B::new(&key));
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 1000, 4097] {
            let nonce = [len as u8; NONCE_LEN];
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ct = pt.clone();
            let tag = a.seal_in_place(&nonce, b"aad", &mut ct).unwrap();
            let mut ct2 = vec![0u8; len];
            assert_eq!(b.seal_to(&nonce, b"aad", &pt, &mut ct2).unwrap(), tag);
            assert_eq!(ct, ct2, "{} and {} agree at {len} bytes", A::NAME, B::NAME);
            let mut back = vec![0u8; len];
            b.open_to(&nonce, b"aad", &ct, &tag, &mut back).unwrap();
            assert_eq!(back, pt);
            let mut bad = tag;
            bad[15] ^= 1;
            assert!(b.open_to(&nonce, b"aad", &ct, &bad, &mut back).is_err());
            assert!(b.open_to(&nonce, b"aae", &ct, &tag, &mut back).is_err());
        }
    }

    #[test]
    fn every_built_engine_opens_what_every_other_seals() {
        cross::<AesGcm, AesGcm>();
        #[cfg(feature = "ring")]
        {
            cross::<AesGcm, Ring>();
            cross::<Ring, AesGcm>();
        }
        #[cfg(feature = "aws-lc-rs")]
        {
            cross::<AesGcm, AwsLc>();
            cross::<AwsLc, AesGcm>();
        }
        #[cfg(all(feature = "ring", feature = "aws-lc-rs"))]
        {
            cross::<Ring, AwsLc>();
            cross::<AwsLc, Ring>();
        }
    }

    /// The seal direction of the NIST CAVP vectors, which needs the nonce
    /// fixed, on every engine built; the open direction runs from
    /// `tests/envelope.rs` on the selected engine. The vector file is read
    /// at run time from the repository's `tests/data`, which the published
    /// package leaves out.
    fn nist_cavp_encrypt<E: Engine>() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/nist_cavp_gcmEncryptExtIV256_iv96_tag128.rsp"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{path} is required under CI"
            );
            eprintln!("SKIPPED: {path} is not in this copy of the crate");
            return;
        };
        let mut fields = std::collections::HashMap::new();
        let mut checked = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (k, v) = line.split_once('=').unwrap_or_default();
            let k = k.trim();
            if ["Key", "IV", "PT", "AAD", "CT", "Tag"].contains(&k) {
                fields.insert(k.to_string(), const_hex::decode(v.trim()).expect("hex"));
            }
            if line.starts_with("Tag") {
                let key: [u8; 32] = fields["Key"].as_slice().try_into().expect("key");
                let nonce: [u8; NONCE_LEN] = fields["IV"].as_slice().try_into().expect("iv");
                let mut body = fields["PT"].clone();
                let tag = E::new(&key)
                    .seal_in_place(&nonce, &fields["AAD"], &mut body)
                    .expect("seal");
                assert_eq!(body, fields["CT"], "{} Count {checked}", E::NAME);
                assert_eq!(tag[..], fields["Tag"][..], "{} Count {checked}", E::NAME);
                checked += 1;
            }
        }
        assert_eq!(checked, 375, "every vector in the file was checked");
    }

    #[test]
    fn nist_cavp_encrypt_known_answers_on_every_engine() {
        nist_cavp_encrypt::<AesGcm>();
        #[cfg(feature = "ring")]
        nist_cavp_encrypt::<Ring>();
        #[cfg(feature = "aws-lc-rs")]
        nist_cavp_encrypt::<AwsLc>();
    }
}
