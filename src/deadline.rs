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
