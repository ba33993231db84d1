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
mod hex;
mod key;
mod mac;
mod nonce;
pub mod otp;
mod pseudonym;
mod rand;
pub mod secret;
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
pub use secret::{ExposeSecret, Secret};
