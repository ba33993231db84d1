//! Envelope encryption: AES-256-GCM with a random nonce carried in the
//! output.
//!
//! # Use case
//!
//! Seal a PIN, card digits or any short secret at the edge of a system and
//! pass only the envelope onward (through queues, logs, databases); open it
//! where the value is needed. Associated data binds an envelope to its
//! context (field name, call id), so an envelope moved to another field or
//! call does not open. An *expiring envelope* also carries a deadline after
//! which it no longer opens.
//!
//! # What is in this module
//!
//! | item | for |
//! |---|---|
//! | [`Sealer`] | sealing and opening under one [`Key`](crate::Key) |
//! | [`Keyring`] | rotation: seal under the primary key, open under any |
//! | [`Seal`] | the trait both implement: every form (bytes, into a buffer, expiring) exists on both, written once |
//! | [`Envelope`] | a sealed value; `Display` and `FromStr` are its lowercase hex form |
//! | [`Engine`], [`AesGcm`] | the AES-GCM implementation a sealer runs on (also `Ring`, `AwsLc` behind features) |
//!
//! # About
//!
//! An envelope is one byte string:
//!
//! ```text
//! +----------------+--------------------------+----------------+
//! | nonce 12 bytes | ciphertext (= plaintext  | tag 16 bytes   |
//! | (random)       |  length)                 |                |
//! +----------------+--------------------------+----------------+
//! ```
//!
//! It is standard AES-256-GCM (NIST SP 800-38D) with a 96-bit nonce, so any
//! AES-GCM implementation opens it given the key and associated data. The
//! hex form is the same bytes in hex (lowercase on output, either case on
//! input). An expiring envelope is
//!
//! ```text
//! expires_at (8 bytes, big-endian Unix seconds) || nonce (12) || ciphertext || tag (16)
//! ```
//!
//! where the last three fields are an ordinary envelope sealed with the
//! associated data `Aad::new().field("pinseal/expires",
//! expires_at_be_bytes).field("aad", aad)` (see [`Aad`](crate::Aad) for the
//! bytes). The expiry is in clear but authenticated: change one bit and the
//! envelope no longer opens. Any AES-GCM implementation opens it after
//! rebuilding that associated data; the interop tests do so in Node.js and
//! Python.
//!
//! # Errors
//!
//! Opening fails with [`Error::Decrypt`](crate::Error::Decrypt) for every
//! cause: an envelope shorter than [`OVERHEAD`], bad hex, a wrong key, wrong
//! associated data, any changed bit. The error never says which. An
//! authentic expiring envelope past its deadline is
//! [`Error::Expired`](crate::Error::Expired).
//!
//! # Security
//!
//! - Each seal uses a fresh, uniformly random 96-bit nonce from the
//!   operating system. A nonce must never repeat under one key; with random
//!   nonces the chance of any repeat after `q` seals is at most
//!   `q^2 / 2^97`, which stays below 2^-32 for up to 2^32 seals per key (the
//!   limit of NIST SP 800-38D section 8.3). Rotate keys (see [`Keyring`])
//!   well before that.
//! - Plaintext is released only after the tag has been checked; a failed
//!   [`Seal::open_into`] leaves zeros, never plaintext, in `out`.
//! - The length of the plaintext is visible from the envelope's length. A
//!   4-digit PIN and a 6-digit code are distinguishable; pad if that
//!   matters.
//!
//! # Nonces
//!
//! A system call per seal would cost more than the encryption of a PIN, so
//! each thread reads OS randomness (`getrandom`) 4 KiB at a time and serves
//! 341 nonces from it, erasing each one from the pool as it is served. The
//! bytes are exactly as random as single reads: the collision bound above
//! is unchanged.
//!
//! The pool is fork-safe without a system call per seal: on Linux it checks
//! a word in a page the kernel zeroes in every forked child
//! (`MADV_WIPEONFORK`, as BoringSSL does), so a child refills before its
//! first seal and never serves a nonce its parent also serves, however it
//! was forked. Where the kernel lacks wipe-on-fork memory the pool compares
//! process ids instead, which misses only a process id reused by a
//! grandchild after its grandparent exited.
//!
//! # Example
//!
//! ```
//! use pinseal::envelope::Envelope;
//! use pinseal::{Aad, ExposeSecret, Key, Seal, Sealer};
//! use std::time::Duration;
//!
//! let sealer = Sealer::new(&Key::generate());
//! let aad = Aad::new().field("call", "CA-1001").field("field", "pin");
//!
//! // At the edge: seal, and pass the hex on.
//! let hex = sealer.seal(b"1234", aad.as_bytes()).to_string();
//!
//! // At the back end: parse, open.
//! let envelope: Envelope = hex.parse()?;
//! assert_eq!(sealer.open(&envelope, aad.as_bytes())?.expose_secret(), b"1234");
//!
//! // An envelope that opens for five minutes only.
//! let short_lived = sealer.seal_for(b"1234", aad.as_bytes(), Duration::from_secs(300));
//! assert_eq!(sealer.open_expiring(&short_lived, aad.as_bytes())?.expose_secret(), b"1234");
//! # Ok::<(), pinseal::Error>(())
//! ```

mod expiring;
mod keyring;
mod seal;
mod sealer;
mod wire;

#[cfg(feature = "aws-lc-rs")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-lc-rs")))]
pub use crate::engine::AwsLc;
#[cfg(feature = "ring")]
#[cfg_attr(docsrs, doc(cfg(feature = "ring")))]
pub use crate::engine::Ring;
pub use crate::engine::{AesGcm, Engine, TAG_LEN};
pub use crate::nonce::{NONCE_LEN, NonceSource, nonce_source, use_os_nonces};
pub use keyring::{KeyUsage, Keyring};
pub use seal::Seal;
pub use sealer::Sealer;
pub use wire::Envelope;

/// The deadline of an expiring envelope (seconds since the Unix epoch),
/// for one-time opening (`otp::AcceptOnce`).
pub(crate) use expiring::deadline as expiring_deadline;

/// Bytes an envelope adds to its plaintext: `NONCE_LEN + TAG_LEN` = 28.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Length of the expiry at the start of an expiring envelope.
pub const EXPIRY_LEN: usize = 8;

/// Bytes an expiring envelope adds to its plaintext: `EXPIRY_LEN +
/// OVERHEAD` = 36.
pub const EXPIRING_OVERHEAD: usize = EXPIRY_LEN + OVERHEAD;
