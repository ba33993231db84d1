//! The `aws-lc-rs` engine (feature `aws-lc-rs`): AWS-LC's assembly for
//! AES-NI, VAES and CLMUL.
//!
//! AWS-LC cleanses its expanded key (`OPENSSL_cleanse`) when the AEAD
//! context is freed, which happens when a `LessSafeKey` is dropped.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::private::{Core, Failed};
use super::{Engine, TAG_LEN};
use crate::nonce::NONCE_LEN;

/// The `aws-lc-rs` engine (feature `aws-lc-rs`): AWS-LC's assembly for
/// AES-NI, VAES and CLMUL; the fastest here (see BENCHMARKS.md).
///
/// # Security
///
/// AWS-LC cleanses its expanded key (`OPENSSL_cleanse`) when the AEAD
/// context is freed, which happens when the key is dropped: a `Sealer` or
/// `Keyring` on this engine is `ZeroizeOnDrop`.
pub struct AwsLc(LessSafeKey);

impl Engine for AwsLc {
    const NAME: &'static str = "aws-lc-rs";
}

impl Core for AwsLc {
    fn new(key: &[u8; 32]) -> Self {
        // A 32-byte key always fits AES-256-GCM: the error arm cannot occur.
        #[allow(clippy::expect_used)]
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256-GCM key");
        AwsLc(LessSafeKey::new(key))
    }

    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Failed> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                in_out,
            )
            .map_err(|_| Failed)?;
        tag.as_ref().try_into().map_err(|_| Failed)
    }

    /// Decrypts straight from `ciphertext` into `out`: no copy first.
    fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), Failed> {
        self.0
            .open_separate_gather(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                ciphertext,
                tag,
                out,
            )
            .map_err(|_| Failed)
    }
}

impl zeroize::ZeroizeOnDrop for AwsLc {}
