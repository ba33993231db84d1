#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic_in_result_fn)
)]
#![warn(rust_2018_idioms, unreachable_pub)]

mod aad;
mod engine;
mod envelope;
mod error;
mod key;
mod nonce;
pub mod otp;
mod pseudonym;
mod secret;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod serde;
pub mod webhook;

pub use aad::Aad;
pub use envelope::{
    ENGINE, EXPIRING_OVERHEAD, EXPIRY_LEN, Keyring, NONCE_LEN, OVERHEAD, Sealer, TAG_LEN,
};
pub use error::{Error, ErrorClass};
pub use key::{KEY_LEN, Key, KeyId};
pub use pseudonym::{Pseudonym, Pseudonymizer};
pub use secret::{CloneableSecret, Pan, REDACTED, Secret};

/// Fills `buf` from the operating system's random number generator.
///
/// # Panics
///
/// If the operating system cannot provide random bytes. There is no safe
/// fallback: sealing with a predictable nonce or issuing a guessable code
/// would be worse than stopping.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        panic!("pinseal: the operating system's random number generator failed");
    }
}

/// HMAC-SHA256 under `key` over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &Key, parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.expose_secret())
        .expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Decodes exactly `2 * out.len()` hex characters (either case) into `out`.
///
/// Stricter than `const_hex::decode_to_slice`, which also accepts a `0x`
/// prefix: every textual form this crate parses (keys, challenge ids, hex
/// envelopes) has exactly one spelling per value, in either case.
pub(crate) fn decode_hex(text: &str, out: &mut [u8]) -> Result<(), ()> {
    if text.len() != 2 * out.len() {
        return Err(());
    }
    const_hex::decode_to_slice(text, out).map_err(|_| ())
}

/// Writes `bytes` as lowercase hex without allocating (`H` = 2 * `N`).
pub(crate) fn write_hex<const N: usize, const H: usize>(
    f: &mut core::fmt::Formatter<'_>,
    bytes: &[u8; N],
) -> core::fmt::Result {
    let mut buf = [0u8; H];
    const_hex::encode_to_slice(bytes, &mut buf).map_err(|_| core::fmt::Error)?;
    f.write_str(core::str::from_utf8(&buf).map_err(|_| core::fmt::Error)?)
}
