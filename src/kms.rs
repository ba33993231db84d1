//! Data keys from AWS KMS (feature `aws-kms`): a key wrapped under a KMS
//! key lives in configuration, and is unwrapped once, at start.
//!
//! # Use case
//!
//! A service on AWS keeps its sealing key out of plain configuration: KMS
//! generates a 256-bit data key and returns it twice, in clear and wrapped
//! (encrypted under a KMS key the service's role may use). Only the wrapped
//! key is stored (an environment variable, a parameter); at start the
//! service asks KMS to unwrap it and builds its [`Keyring`] from the
//! result. Sealing and opening then never call KMS: one request per key per
//! process start, not one per seal as a flow that calls KMS `Encrypt` for
//! each code makes (a network round trip and a billed request per code).
//!
//! # About
//!
//! - [`Kms::generate_data_key`] calls `GenerateDataKey` (`AES_256`) and
//!   [`Kms::unwrap`] calls `Decrypt`, both with the encryption context
//!   `{"pinseal:purpose": purpose}`: a wrapped key opens only for the
//!   purpose it was made for, and KMS writes the purpose into CloudTrail.
//! - [`WrappedKey`] is the `CiphertextBlob`; its `Display`/`FromStr` is
//!   standard base64, as the AWS CLI prints it.
//! - `Decrypt` names the KMS key: a blob wrapped under any other KMS key is
//!   refused, so whoever can edit the configuration cannot substitute a
//!   data key of their own.
//! - Rotation: generate a new data key, make it the primary, list the old
//!   one as previous ([`Kms::keyring`]); envelopes made under the old key
//!   keep opening, and [`Keyring::previous_opens`] counts how often they
//!   still are.
//!   Rotating the KMS key itself changes nothing here: KMS keeps every
//!   version it needs to unwrap older blobs.
//! - Every call is bounded by a timeout (5 s by default).
//!
//! # Errors
//!
//! [`Error::Kms`] when KMS cannot be reached or does not answer in time
//! (retrying later may help); [`Error::KmsRefused`] when it answers no: the
//! role may not use the key, the key is disabled or pending deletion, the
//! wrapped key is not one (or was made for another purpose). Neither holds
//! the SDK's message, which names the key and the account.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), pinseal::Error> {
//! use pinseal::kms::{Kms, WrappedKey};
//! use pinseal::{ExposeSecret, Seal};
//!
//! // let config = aws_config::load_from_env().await;   // region, credentials
//! # let config = aws_sdk_kms::Config::builder().build();
//! let kms = Kms::new(aws_sdk_kms::Client::from_conf(config));
//!
//! // Once, in a set-up script: keep `wrapped` (base64) in configuration.
//! let (_, wrapped) = kms.generate_data_key("alias/pinseal", "ivr/digits").await?;
//! println!("PINSEAL_WRAPPED_KEY={wrapped}");
//!
//! // At every start: one Decrypt, then no KMS call per seal.
//! let wrapped: WrappedKey = std::env::var("PINSEAL_WRAPPED_KEY").unwrap().parse()?;
//! let ring = kms.keyring("alias/pinseal", &wrapped, &[], "ivr/digits").await?;
//! let envelope = ring.seal(b"1234", b"call=CA1;field=pin");
//! # Ok(()) }
//! ```

use core::fmt;
use core::str::FromStr;
use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use data_encoding::BASE64;
use zeroize::Zeroize;

use crate::deadline::bounded;
use crate::{Error, Key, Keyring};

/// The encryption-context entry that binds a data key to its purpose.
const CONTEXT_KEY: &str = "pinseal:purpose";

/// A data key wrapped under a KMS key: the `CiphertextBlob` of
/// `GenerateDataKey`. Not secret (only KMS can unwrap it), so it may sit in
/// configuration; `Display` and `FromStr` are standard base64.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    /// The blob's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps a blob read from elsewhere (raw bytes).
    pub fn from_bytes(bytes: Vec<u8>) -> WrappedKey {
        WrappedKey(bytes)
    }
}

impl fmt::Display for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(&self.0))
    }
}

impl fmt::Debug for WrappedKey {
    /// The length only: the blob is not secret, but it is long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

impl FromStr for WrappedKey {
    type Err = Error;

    /// Parses standard base64 (surrounding whitespace ignored).
    ///
    /// # Errors
    ///
    /// [`Error::KeyBase64`] if it is not base64, or empty.
    fn from_str(text: &str) -> Result<WrappedKey, Error> {
        let bytes = BASE64
            .decode(text.trim().as_bytes())
            .map_err(|_| Error::KeyBase64)?;
        if bytes.is_empty() {
            return Err(Error::KeyBase64);
        }
        Ok(WrappedKey(bytes))
    }
}

/// Generates and unwraps data keys with AWS KMS. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Kms {
    client: Client,
    timeout: Duration,
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kms")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Kms {
    /// KMS through `client` (its region, credentials, endpoint and HTTP
    /// client are the caller's: `aws_config::load_from_env()` reads the
    /// standard AWS environment, `AWS_ENDPOINT_URL_KMS` included).
    pub fn new(client: Client) -> Kms {
        Kms {
            client,
            timeout: Duration::from_secs(5),
        }
    }

    /// Bounds each KMS call by `timeout` (5 s by default; clamped to 1 ms –
    /// 1 h).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Kms {
        self.timeout = crate::deadline::clamp(timeout);
        self
    }

    /// A new 256-bit data key for `purpose`, in clear and wrapped under the
    /// KMS key `kms_key_id` (a key id, an ARN or an `alias/...`).
    ///
    /// # Errors
    ///
    /// [`Error::Kms`]; [`Error::KmsRefused`] (for example, no permission
    /// for `kms:GenerateDataKey` on that key).
    pub async fn generate_data_key(
        &self,
        kms_key_id: &str,
        purpose: &str,
    ) -> Result<(Key, WrappedKey), Error> {
        let output = bounded(
            self.timeout,
            self.client
                .generate_data_key()
                .key_id(kms_key_id)
                .key_spec(DataKeySpec::Aes256)
                .encryption_context(CONTEXT_KEY, purpose)
                .send(),
        )
        .await
        .map_err(|e| classify(e.as_ref()))?;
        let mut output = output;
        // The plaintext first, so that no early return leaves it unwiped.
        let key = key_from(output.plaintext.take())?;
        let wrapped = output
            .ciphertext_blob()
            .map(|b| WrappedKey(b.as_ref().to_vec()))
            .ok_or(Error::Kms)?;
        Ok((key, wrapped))
    }

    /// Unwraps a data key made for `purpose` under the KMS key
    /// `kms_key_id` (one `Decrypt` call).
    ///
    /// The KMS key is named, not taken from the blob: a blob wrapped under
    /// another KMS key (one whoever can edit the configuration controls) is
    /// refused rather than unwrapped to a key they know.
    ///
    /// # Errors
    ///
    /// [`Error::Kms`]; [`Error::KmsRefused`] if KMS refuses (no permission,
    /// a disabled key, a blob that is not a wrapped key, another KMS key,
    /// another purpose); [`Error::KeyLength`] if what KMS returns is not a
    /// 256-bit key.
    pub async fn unwrap(
        &self,
        kms_key_id: &str,
        wrapped: &WrappedKey,
        purpose: &str,
    ) -> Result<Key, Error> {
        let output = bounded(
            self.timeout,
            self.client
                .decrypt()
                .key_id(kms_key_id)
                .ciphertext_blob(Blob::new(wrapped.0.clone()))
                .encryption_context(CONTEXT_KEY, purpose)
                .send(),
        )
        .await
        .map_err(|e| classify(e.as_ref()))?;
        key_from(output.plaintext)
    }

    /// A keyring whose primary key is `primary` and whose previous keys are
    /// `previous`, all wrapped under `kms_key_id`, each unwrapped once (one
    /// `Decrypt` per key, in turn).
    ///
    /// # Errors
    ///
    /// As [`Kms::unwrap`]; [`Error::TooManyKeys`] past
    /// [`Keyring::MAX_KEYS`], before any call.
    pub async fn keyring(
        &self,
        kms_key_id: &str,
        primary: &WrappedKey,
        previous: &[WrappedKey],
        purpose: &str,
    ) -> Result<Keyring, Error> {
        if 1 + previous.len() > Keyring::<crate::envelope::AesGcm>::MAX_KEYS {
            return Err(Error::TooManyKeys);
        }
        let mut ring = Keyring::new(&self.unwrap(kms_key_id, primary, purpose).await?);
        for wrapped in previous {
            ring = ring.with_previous(&self.unwrap(kms_key_id, wrapped, purpose).await?)?;
        }
        Ok(ring)
    }
}

/// The data key in a KMS answer; the answer's `Vec` is wiped (the SDK's
/// own response buffers are not this crate's to wipe).
fn key_from(plaintext: Option<Blob>) -> Result<Key, Error> {
    let mut bytes = plaintext.ok_or(Error::Kms)?.into_inner();
    let key = Key::from_slice(&bytes);
    bytes.zeroize();
    key
}

/// What a failed KMS call means, without the SDK's message: no usable
/// answer ([`Error::Kms`]: a timeout, a network failure, a server error,
/// throttling), or a refusal ([`Error::KmsRefused`]: KMS said no, or the
/// request could not be made, as with no region or credentials).
fn classify<E: ProvideErrorMetadata>(e: Option<&SdkError<E, HttpResponse>>) -> Error {
    crate::deadline::classify_aws(
        crate::deadline::aws_failure!(aws_sdk_kms, e),
        &[
            "ThrottlingException",
            "KMSInternalException",
            "DependencyTimeoutException",
            "KeyUnavailableException",
        ],
        Error::Kms,
        Error::KmsRefused,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_read_and_print_as_base64() {
        let wrapped: WrappedKey = " AQIDBA==\n".parse().unwrap();
        assert_eq!(wrapped.as_bytes(), [1, 2, 3, 4]);
        assert_eq!(wrapped.to_string(), "AQIDBA==");
        assert_eq!(format!("{wrapped:?}"), "WrappedKey(4 bytes)");
        assert_eq!("not base64!".parse::<WrappedKey>(), Err(Error::KeyBase64));
        assert_eq!("".parse::<WrappedKey>(), Err(Error::KeyBase64));
    }
}
