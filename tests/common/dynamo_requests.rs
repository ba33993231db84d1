//! Requests counted as the DynamoDB client sends them (an interceptor on
//! the SDK client, so retries count too), by operation, for
//! `tests/otp_dynamo.rs` and the OTP bench.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// Each request's operation (`GetItem`, `PutItem`, ...), counted.
#[derive(Clone, Debug, Default)]
pub struct Requests(Arc<Mutex<BTreeMap<String, u64>>>);

impl Requests {
    /// The counts since the last call, as `GetItem 1, PutItem 2`, and
    /// their total.
    pub fn take(&self) -> (String, u64) {
        let counts = std::mem::take(&mut *self.0.lock().unwrap());
        let total = counts.values().sum();
        let shown = counts
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        (shown, total)
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "Requests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // X-Amz-Target: DynamoDB_20120810.GetItem
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("?")
            .to_string();
        *self.0.lock().unwrap().entry(op).or_default() += 1;
        Ok(())
    }
}
