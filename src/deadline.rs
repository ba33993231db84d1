//! The one timeout the network clients (Redis, DynamoDB, KMS) put around each call.

use std::time::Duration;

/// The shortest timeout a store accepts: a zero timeout would fail every
/// call, and the OS refuses a zero socket timeout.
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest: no store call is worth waiting longer for, and deadline
/// arithmetic stays far from overflow.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A timeout a builder was given, brought into
/// [`MIN_TIMEOUT`]..=[`MAX_TIMEOUT`].
pub(crate) fn clamp(timeout: Duration) -> Duration {
    timeout.clamp(MIN_TIMEOUT, MAX_TIMEOUT)
}

/// Bounds `op` by `timeout`; `Err(None)` is a timeout, `Err(Some(e))` the
/// operation's own error.
pub(crate) async fn bounded<T, E>(
    timeout: Duration,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, Option<E>> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// How an AWS SDK call failed, as far as the classification needs.
#[cfg(any(feature = "aws-kms", feature = "aws-sns"))]
pub(crate) enum AwsFailure<'a> {
    /// No usable answer: a timeout, an I/O failure, a response that could
    /// not be read.
    NoAnswer,
    /// The request could not be made: no region, no credentials, an
    /// invalid parameter.
    NotMade,
    /// The service answered with an error.
    Service {
        server_error: bool,
        code: Option<&'a str>,
    },
}

/// `unavailable` for no usable answer, a server error or one of the
/// service's `retryable` codes (throttling); `refused` otherwise.
#[cfg(any(feature = "aws-kms", feature = "aws-sns"))]
pub(crate) fn classify_aws(
    failure: AwsFailure<'_>,
    retryable: &[&str],
    unavailable: crate::Error,
    refused: crate::Error,
) -> crate::Error {
    match failure {
        AwsFailure::NoAnswer => unavailable,
        AwsFailure::NotMade => refused,
        AwsFailure::Service { server_error, code } => {
            if server_error || code.is_some_and(|c| retryable.contains(&c)) {
                unavailable
            } else {
                refused
            }
        }
    }
}

/// An SDK error (or a timeout, `None`) as an [`AwsFailure`]; the same for
/// every AWS SDK crate, whose `SdkError` is one type re-exported.
#[cfg(any(feature = "aws-kms", feature = "aws-sns"))]
macro_rules! aws_failure {
    ($sdk:ident, $e:expr) => {{
        use $crate::deadline::AwsFailure;
        use $sdk::error::SdkError;
        match $e {
            None | Some(SdkError::TimeoutError(_) | SdkError::ResponseError(_)) => {
                AwsFailure::NoAnswer
            }
            Some(SdkError::DispatchFailure(f)) if f.is_io() || f.is_timeout() => {
                AwsFailure::NoAnswer
            }
            Some(SdkError::ServiceError(service)) => AwsFailure::Service {
                server_error: service.raw().status().is_server_error(),
                code: service.err().code(),
            },
            Some(_) => AwsFailure::NotMade,
        }
    }};
}
#[cfg(any(feature = "aws-kms", feature = "aws-sns"))]
pub(crate) use aws_failure;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_clamped_to_a_usable_range() {
        assert_eq!(clamp(Duration::ZERO), MIN_TIMEOUT);
        assert_eq!(clamp(Duration::MAX), MAX_TIMEOUT);
        assert_eq!(clamp(Duration::from_secs(2)), Duration::from_secs(2));
    }
}
