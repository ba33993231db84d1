//! What a Redis error means for the caller, without its message (which
//! may name a key, a host or a user).

use redis::{ErrorKind, RedisError};

use crate::Error;

/// What a Redis error means for the caller, without its message (which may
/// name a key, a host or a user).
pub(super) fn classify(e: &RedisError) -> Error {
    match e.kind() {
        ErrorKind::AuthenticationFailed => return Error::StoreAuth,
        ErrorKind::InvalidClientConfig => return Error::StoreConfig,
        _ => {}
    }
    if matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM")) {
        return Error::StoreAuth;
    }
    if tls_refused(e) {
        return Error::StoreTls;
    }
    Error::Store
}

/// Whether the error comes from a TLS handshake the client refused (a
/// certificate it does not trust, a name that does not match).
#[cfg(feature = "redis-tls")]
fn tls_refused(e: &RedisError) -> bool {
    use std::error::Error as StdError;
    use std::sync::Arc;
    // The I/O error under a Redis error, kept as is or shared in an `Arc`.
    fn io_of<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a std::io::Error> {
        e.downcast_ref::<std::io::Error>()
            .or_else(|| e.downcast_ref::<Arc<std::io::Error>>().map(|a| &**a))
    }
    let mut err: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(mut current) = err {
        // redis keeps its inner error as `Arc<dyn Error + Send + Sync>`.
        if let Some(shared) = current.downcast_ref::<Arc<dyn StdError + Send + Sync>>() {
            current = &**shared;
        }
        if current.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = io_of(current).and_then(|io| io.get_ref()) {
            if inner.is::<rustls::Error>() {
                return true;
            }
        }
        err = current.source();
    }
    false
}

#[cfg(not(feature = "redis-tls"))]
fn tls_refused(_: &RedisError) -> bool {
    false
}

/// A cluster open that failed on a server's answer (not on the network)
/// met a node that is not in cluster mode.
pub(super) fn classify_cluster_open(e: &RedisError) -> Error {
    match classify(e) {
        Error::Store if e.kind() == ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
            Error::StoreConfig
        }
        other => other,
    }
}

/// The error for a failed open: classified, a timeout being
/// [`Error::Store`].
pub(super) fn open_error(e: Option<RedisError>, classify: fn(&RedisError) -> Error) -> Error {
    e.as_ref().map_or(Error::Store, classify)
}

/// An I/O timeout, as a Redis error.
pub(super) fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// Whether a failed command means the connection, not the command, is at
/// fault: a timeout (`None`, or an I/O timeout inside the client), an I/O
/// or connection error, or a server that is no longer a writable primary.
pub(super) fn connection_at_fault(e: Option<&RedisError>) -> bool {
    match e {
        None => true,
        Some(e) => {
            !matches!(e.kind(), ErrorKind::Server(_))
                || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        }
    }
}
