//! The `ring` engine (feature `ring`): BoringSSL's assembly for AES-NI,
//! VAES and CLMUL.
//!
//! `ring` does not wipe its expanded key when a `LessSafeKey` is dropped;
//! with this engine the AES round keys stay in freed memory until it is
//! reused. See "Engines" in SECURITY.md.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::private::{Core, Failed};
use super::{Engine, TAG_LEN};
use crate::nonce::NONCE_LEN;

/// The `ring` engine (feature `ring`): BoringSSL's assembly for AES-NI,
/// VAES and CLMUL.
///
/// # Security
///
/// `ring` does not wipe its expanded key when a `LessSafeKey` is dropped:
/// with this engine the AES round keys stay in freed memory until it is
/// reused, and a `Sealer` or `Keyring` on it is not `ZeroizeOnDrop`. It is
/// used only where the application names it. See "Engines" in
/// SECURITY.md.
pub struct Ring(LessSafeKey);

impl Engine for Ring {
    const NAME: &'static str = "ring";
}

impl Core for Ring {
    fn new(key: &[u8; 32]) -> Self {
        // A 32-byte key always fits AES-256-GCM: the error arm cannot occur.
        #[allow(clippy::expect_used)]
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256-GCM key");
        Ring(LessSafeKey::new(key))
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

    /// `ring` decrypts in place: copy, then open.
    fn open_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), Failed> {
        out.copy_from_slice(ciphertext);
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(*tag),
                out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| Failed)
    }
}
