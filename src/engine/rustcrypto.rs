//! The default engine: RustCrypto `aes-gcm`, pure Rust, no C toolchain.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::ZeroizeOnDrop;

use super::private::{Core, Failed};
use super::{Engine, TAG_LEN};
use crate::nonce::NONCE_LEN;

/// The default engine: RustCrypto's `aes-gcm`, pure Rust, with AES-NI and
/// CLMUL (or their ARM equivalents) detected at run time; no C toolchain.
///
/// # Security
///
/// The expanded key (AES round keys and the GHASH key) is wiped on drop,
/// through `aes-gcm`'s `zeroize` feature; a bound in this crate fails to
/// compile if that ever changes. A `Sealer` or `Keyring` on this engine is
/// `ZeroizeOnDrop`.
pub struct AesGcm(Aes256Gcm);

impl Engine for AesGcm {
    const NAME: &'static str = "aes-gcm";
}

impl Core for AesGcm {
    fn new(key: &[u8; 32]) -> Self {
        AesGcm(Aes256Gcm::new(key.into()))
    }

    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Failed> {
        self.0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, InOutBuf::from(in_out))
            .map(Into::into)
            .map_err(|_| Failed)
    }

    /// Encrypts straight from `plaintext` into `out`: no copy first.
    fn seal_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Failed> {
        let buf = InOutBuf::new(plaintext, out).map_err(|_| Failed)?;
        self.0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf)
            .map(Into::into)
            .map_err(|_| Failed)
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
        let buf = InOutBuf::new(ciphertext, out).map_err(|_| Failed)?;
        self.0
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf, &Tag::from(*tag))
            .map_err(|_| Failed)
    }
}

/// The AES key schedule and GHASH key are wiped on drop (the `zeroize`
/// feature of `aes-gcm`); this bound fails to compile if that ever changes.
const _: fn() = || {
    fn wiped_on_drop<T: ZeroizeOnDrop>() {}
    wiped_on_drop::<Aes256Gcm>();
};

impl ZeroizeOnDrop for AesGcm {}
