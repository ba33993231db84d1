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
#[cfg(any(
    feature = "redis",
    feature = "dynamodb",
    feature = "aws-kms",
    feature = "aws-sns"
))]
mod deadline;
mod engine;
pub mod envelope;
mod error;
mod hex;
mod key;
#[cfg(feature = "aws-kms")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-kms")))]
pub mod kms;
mod mac;
mod nonce;
pub mod otp;
pub mod pseudonym;
mod rand;
pub mod secret;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod serde;
#[cfg(feature = "aws-sns")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-sns")))]
pub mod sns;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod web;
pub mod webhook;

pub use aad::Aad;
pub use envelope::{Keyring, Seal, Sealer};
pub use error::{Error, ErrorClass};
pub use key::{Key, KeyFormat, KeyId};
pub use secret::{ExposeSecret, Secret};
