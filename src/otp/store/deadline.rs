//! The one timeout the network stores put around each call.

use std::time::Duration;

/// Bounds `op` by `timeout`; `Err(None)` is a timeout, `Err(Some(e))` the
/// operation's own error.
pub(super) async fn bounded<T, E>(
    timeout: Duration,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, Option<E>> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}
