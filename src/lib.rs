#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic_in_result_fn)
)]
#![warn(rust_2018_idioms, unreachable_pub)]

mod envelope;
mod error;
mod key;
pub mod otp;
mod secret;

pub use envelope::{Keyring, NONCE_LEN, OVERHEAD, Sealer, TAG_LEN};
pub use error::Error;
pub use key::{KEY_LEN, Key, KeyId};
pub use secret::{CloneableSecret, Pan, REDACTED, Secret};

/// Fills `buf` from the operating system's random number generator.
///
/// # Panics
///
/// If the operating system cannot provide random bytes. There is no safe
/// fallback: sealing with a predictable nonce or issuing a guessable code
/// would be worse than stopping.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if getrandom::getrandom(buf).is_err() {
        panic!("pinseal: the operating system's random number generator failed");
    }
}
