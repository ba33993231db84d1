//! One-time codes delivered by SMS through Amazon SNS (feature `aws-sns`).
//!
//! # Use case
//!
//! The chat flow on AWS sends its code with SNS `Publish` to the caller's
//! phone number. [`SnsSms::send_code`] does that with the code kept in a
//! [`Secret`] up to the request: the message is built in a buffer wiped
//! after the call, and nothing is logged.
//!
//! # About
//!
//! - The message is a template with one `{code}` placeholder
//!   ([`SnsSms::template`]); the default is
//!   `"Your verification code is {code}"`.
//! - `to` must be an E.164 number (use
//!   [`otp::canonical_phone`](crate::otp::canonical_phone)).
//! - The SMS type is `Transactional` (SNS's setting for codes: delivery is
//!   preferred over cost).
//! - Every call is bounded by a timeout (5 s by default).
//!
//! # Errors
//!
//! [`Error::Delivery`] when SNS cannot be reached or does not answer in
//! time; [`Error::DeliveryRefused`] when it refuses (a number that is not
//! valid or has opted out, no permission, a spending limit). Neither holds
//! the SDK's message, which may quote the number.
//!
//! # Security
//!
//! The request body the SDK builds holds the message until it is sent and
//! is not wiped (it is the SDK's); the message itself reaches the
//! operator's SNS delivery logs if those are turned on.
//!
//! # Example
//!
//! ```no_run
//! # async fn run(code: pinseal::Secret<String>) -> Result<(), pinseal::Error> {
//! use pinseal::sns::SnsSms;
//!
//! // let config = aws_config::load_from_env().await;
//! # let config = aws_sdk_sns::Config::builder().build();
//! let sms = SnsSms::new(aws_sdk_sns::Client::from_conf(config))
//!     .template("Your Example Bank code is {code}. It expires in 1 minute.")?;
//! sms.send_code("+15550100199", &code).await?;
//! # Ok(()) }
//! ```

use core::fmt;
use std::time::Duration;

use aws_sdk_sns::Client;
use aws_sdk_sns::config::http::HttpResponse;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::MessageAttributeValue;
use zeroize::Zeroizing;

use crate::deadline::bounded;
use crate::{Error, ExposeSecret, Secret};

/// The placeholder a template holds once.
const PLACEHOLDER: &str = "{code}";

/// Sends codes by SMS with SNS `Publish`. See the [module docs](self).
#[derive(Clone)]
pub struct SnsSms {
    client: Client,
    template: String,
    timeout: Duration,
}

impl fmt::Debug for SnsSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsSms")
            .field("template", &self.template)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SnsSms {
    /// SMS through `client` (its region, credentials, endpoint and HTTP
    /// client are the caller's).
    pub fn new(client: Client) -> SnsSms {
        SnsSms {
            client,
            template: "Your verification code is {code}".to_string(),
            timeout: Duration::from_secs(5),
        }
    }

    /// The message, with `{code}` where the code goes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] unless `template` holds `{code}` exactly
    /// once.
    pub fn template(mut self, template: &str) -> Result<SnsSms, Error> {
        if template.matches(PLACEHOLDER).count() != 1 {
            return Err(Error::InvalidParameter);
        }
        self.template = template.to_string();
        Ok(self)
    }

    /// Bounds each call by `timeout` (5 s by default; clamped to 1 ms –
    /// 1 h).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> SnsSms {
        self.timeout = crate::deadline::clamp(timeout);
        self
    }

    /// Sends `code` to the phone number `to` (E.164) and returns SNS's
    /// message id.
    ///
    /// # Errors
    ///
    /// [`Error::Delivery`]; [`Error::DeliveryRefused`]. Either way the code
    /// may not have arrived: withdraw it (`Otp::cancel`) or let the caller
    /// ask again.
    pub async fn send_code(&self, to: &str, code: &Secret<String>) -> Result<String, Error> {
        let message = Zeroizing::new(self.template.replacen(PLACEHOLDER, code.expose_secret(), 1));
        let sms_type = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("Transactional")
            .build()
            .map_err(|_| Error::InvalidParameter)?;
        let output = bounded(
            self.timeout,
            self.client
                .publish()
                .phone_number(to)
                .message(message.as_str())
                .message_attributes("AWS.SNS.SMS.SMSType", sms_type)
                .send(),
        )
        .await
        .map_err(|e| classify(e.as_ref()))?;
        Ok(output.message_id().unwrap_or_default().to_string())
    }
}

/// What a failed `Publish` means, without the SDK's message: no usable
/// answer ([`Error::Delivery`]), or a refusal ([`Error::DeliveryRefused`]).
fn classify<E: ProvideErrorMetadata>(e: Option<&SdkError<E, HttpResponse>>) -> Error {
    crate::deadline::classify_aws(
        crate::deadline::aws_failure!(aws_sdk_sns, e),
        &[
            "Throttling",
            "ThrottledException",
            "InternalError",
            "InternalFailure",
        ],
        Error::Delivery,
        Error::DeliveryRefused,
    )
}
