//! Redis challenge stores (features `redis`, `redis-tokio`, `redis-tls`):
//! one Redis server or a Redis Cluster, with or without TLS.
//!
//! One builder configures both stores: where ([`RedisBuilder::url`],
//! [`RedisBuilder::cluster`], or a client built by the caller), the key
//! prefix and the timeout; `connect` opens a blocking [`RedisStore`] or,
//! awaited, an `AsyncRedisStore`.
//!
//! | file | what |
//! |---|---|
//! | `script.rs` | the scripts (sent by digest) and the requests the stores send |
//! | `verify.lua`, `issue.lua` | a check and an issue as one script each (ports of `record.rs`'s steps) |
//! | `count.lua` | one client counter or prefix record, on a cluster (ports of `record.rs`'s and `limits.rs`'s counter steps) |
//! | `fields.lua` | the record's integer fields, sent before each of those three |
//! | `slots.rs` | an issue or a check on a cluster as one script per slot it touches |
//! | `errors.rs` | what a Redis error means for the caller (nothing of its message) |
//! | `url.rs` | URLs to clients, the TLS provider |
//! | `renew.rs` | connections replaced after a fault |
//! | `cluster.rs` | the cluster connection both stores run on, and the blocking store's lanes |
//! | `blocking.rs` | [`RedisStore`] |
//! | `aio.rs` | `AsyncRedisStore` |

use core::fmt;
use core::marker::PhantomData;
use std::time::Duration;

use redis::Client;
use redis::cluster::ClusterClient;

mod blocking;
mod cluster;
mod errors;
mod renew;
mod script;
mod slots;
mod url;

#[cfg(feature = "redis-tokio")]
mod aio;

#[cfg(feature = "redis-tokio")]
pub use aio::AsyncRedisStore;
pub use blocking::RedisStore;

/// The default key prefix.
const DEFAULT_PREFIX: &str = "pinseal:otp:";

/// The default timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a store connects. One per builder: the size difference does not
/// matter.
#[allow(clippy::large_enum_variant)]
enum Target {
    Url(String),
    Cluster(Vec<String>),
    Client(Client),
    ClusterClient(ClusterClient),
}

/// Configures a Redis store, then connects it: [`RedisStore::builder`] (and
/// `AsyncRedisStore::builder` with the `redis-tokio` feature).
///
/// # About
///
/// Setters never fail; `connect` checks everything and is the one place a
/// configuration error is reported. Exactly one target is used (the last
/// set): one server by URL or [`redis::Client`], or a cluster by seed URLs
/// or [`redis::cluster::ClusterClient`].
///
/// | setter | default |
/// |---|---|
/// | [`RedisBuilder::url`], [`RedisBuilder::cluster`], [`RedisBuilder::client`], [`RedisBuilder::cluster_client`] | none: `connect` fails with [`Error::StoreConfig`](crate::Error::StoreConfig) |
/// | [`RedisBuilder::prefix`] | `pinseal:otp:` |
/// | [`RedisBuilder::timeout`] | 2 s |
///
/// `Debug` shows the kind of target, the prefix and the timeout, never a
/// URL (which may carry a password).
///
/// # Example
///
/// ```no_run
/// use pinseal::otp::store::RedisStore;
/// use std::time::Duration;
///
/// let store = RedisStore::builder()
///     .url("rediss://:password@redis.internal:6380/0") // TLS with the `redis-tls` feature
///     .prefix("myapp:otp:")
///     .timeout(Duration::from_secs(1))
///     .connect()?;
/// // A cluster: any reachable nodes as seeds.
/// let cluster = RedisStore::builder()
///     .cluster(["redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/"])
///     .connect()?;
/// # Ok::<(), pinseal::Error>(())
/// ```
#[must_use = "a builder does nothing until `connect` is called"]
pub struct RedisBuilder<S> {
    target: Option<Target>,
    prefix: String,
    timeout: Duration,
    store: PhantomData<fn() -> S>,
}

impl<S> RedisBuilder<S> {
    fn new() -> Self {
        RedisBuilder {
            target: None,
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            store: PhantomData,
        }
    }

    /// One Redis server at `url`: `redis://[[user]:password@]host:port/[db]`,
    /// or `rediss://` with the `redis-tls` feature (certificates checked
    /// against the system's roots).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.target = Some(Target::Url(url.into()));
        self
    }

    /// A Redis Cluster, found through the seed node URLs `seeds`: any
    /// reachable nodes are enough; the store learns the others, and
    /// reconnects through them as well as the seeds after a fault.
    pub fn cluster<I>(mut self, seeds: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.target = Some(Target::Cluster(
            seeds.into_iter().map(|s| s.as_ref().to_string()).collect(),
        ));
        self
    }

    /// One Redis server through a [`redis::Client`] built by the caller (a
    /// private CA through `Client::build_with_tls`, a Unix socket, ...).
    pub fn client(mut self, client: Client) -> Self {
        self.target = Some(Target::Client(client));
        self
    }

    /// A Redis Cluster through a [`redis::cluster::ClusterClient`] built by
    /// the caller. Its own per-try timeouts apply inside the client; the
    /// builder's timeout bounds opening and each call. After a fault the
    /// store reconnects through the client's own seeds, so keep at least
    /// one of them reachable.
    pub fn cluster_client(mut self, client: ClusterClient) -> Self {
        self.target = Some(Target::ClusterClient(client));
        self
    }

    /// The prefix before every key (default `pinseal:otp:`), so several
    /// services or environments can share one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The timeout (default 2 s) for opening and for every call after:
    /// see the store's "Timeouts". Values below 1 ms or above one hour are
    /// taken as 1 ms or one hour.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = crate::deadline::clamp(timeout);
        self
    }
}

impl<S> fmt::Debug for RedisBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out: it may carry a password.
        let target = match &self.target {
            None => "none",
            Some(Target::Url(_) | Target::Client(_)) => "single",
            Some(Target::Cluster(_) | Target::ClusterClient(_)) => "cluster",
        };
        f.debug_struct("RedisBuilder")
            .field("target", &target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Configuration mistakes are told apart from an unavailable Redis, and
    /// say nothing of the URL.
    #[test]
    fn bad_urls_are_configuration_errors() {
        for url in ["not a url", "http://127.0.0.1:6379/", "redis://:pw@[::1/"] {
            assert_eq!(
                RedisStore::builder().url(url).connect().err(),
                Some(Error::StoreConfig),
                "{url}"
            );
        }
        #[cfg(not(feature = "redis-tls"))]
        assert_eq!(
            RedisStore::builder()
                .url("rediss://:hunter2@127.0.0.1:1/")
                .connect()
                .err(),
            Some(Error::StoreConfig),
            "TLS without the redis-tls feature"
        );
        assert_eq!(
            RedisStore::builder()
                .cluster(["redis://127.0.0.1:1/", "not a url"])
                .connect()
                .err(),
            Some(Error::StoreConfig)
        );
        assert_eq!(
            RedisStore::builder()
                .cluster(Vec::<String>::new())
                .connect()
                .err(),
            Some(Error::StoreConfig)
        );
        assert_eq!(
            RedisStore::builder().connect().err(),
            Some(Error::StoreConfig),
            "no target"
        );
        let shown = format!(
            "{:?}",
            RedisStore::builder().url("redis://:hunter2@127.0.0.1:1/")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
