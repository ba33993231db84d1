//! [`AsyncRedisStore`]: the async (tokio) store.

use core::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client};

use super::cluster::{ClusterConn, ClusterSource, open_cluster, probe_seeds};
use super::errors::{classify, open_error};
use super::renew::{Connect, Renewing};
use super::script::{
    Request, cas_cmd, get_cmd, issue_cmd, issue_reply, one_step_cmd, one_step_reply, redis_key,
};
use super::slots;
use super::url::{client, install_tls_provider};
use super::{RedisBuilder, Target};
use crate::Error;
use crate::deadline::bounded;
use crate::otp::store::{AsyncStore, Decision, OneStepCheck, OneStepIssue, OneStepOutcome};

impl RedisBuilder<AsyncRedisStore> {
    /// Connects an async store, as
    /// [`RedisBuilder::<RedisStore>::connect`](RedisBuilder::connect) does
    /// a blocking one; the timeout bounds opening as a whole.
    ///
    /// # Errors
    ///
    /// As [`RedisStore`](super::RedisStore#errors).
    pub async fn connect(self) -> Result<AsyncRedisStore, Error> {
        let store = match self.target {
            None => return Err(Error::StoreConfig),
            Some(Target::Url(url)) => AsyncRedisStore::single(client(&url)?, self.timeout).await?,
            Some(Target::Client(c)) => AsyncRedisStore::single(c, self.timeout).await?,
            Some(Target::Cluster(seeds)) => {
                let urls: Vec<&str> = seeds.iter().map(String::as_str).collect();
                let source = ClusterSource::from_urls(&urls, self.timeout)?;
                probe_seeds(&seeds, self.timeout).await?;
                AsyncRedisStore::cluster(source).await?
            }
            Some(Target::ClusterClient(c)) => {
                AsyncRedisStore::cluster(ClusterSource::from_client(c, self.timeout)).await?
            }
        };
        Ok(AsyncRedisStore {
            prefix: self.prefix,
            ..store
        })
    }
}

#[derive(Clone)]
enum Conn {
    Single(Arc<Renewing<ConnectionManager>>),
    Cluster(ClusterConn),
}

/// The asynchronous (tokio) twin of [`RedisStore`](super::RedisStore),
/// for [`aio::Otp`](crate::otp::aio::Otp) and
/// [`aio::TotpGuard`](crate::otp::aio::TotpGuard): one Redis server or a
/// Redis Cluster.
/// Same keys, same scripts (a check is one request), same guarantees;
/// the two can serve one Redis side by side.
///
/// On one server it multiplexes one connection that reconnects on its
/// own when it drops, with short jittered backoff (50 ms to 500 ms), so
/// instances do not retry in lockstep and the store works again within
/// a second or two of Redis coming back; after a timeout or a reply
/// saying the server is no longer a writable primary (`READONLY`, a
/// failover) the connection is replaced outright. On a cluster it keeps
/// one multiplexed connection per node, follows `MOVED`/`ASK`, and
/// replaces the whole cluster connection after a timeout, which asks
/// the cluster for its slot map again: see
/// [Failover](super::RedisStore#failover). The calls that saw a failure
/// return [`Error::Store`].
///
/// # Timeouts
///
/// One timeout (2 s by default) bounds opening as a whole and every
/// operation as a whole, whatever the client is doing inside (waiting
/// for a reconnect included): a Redis that stops answering turns into
/// errors, never a hang.
///
/// # Errors
///
/// As [`RedisStore`](super::RedisStore#errors).
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), pinseal::Error> {
/// use pinseal::{ExposeSecret, Key};
/// use pinseal::otp::store::AsyncRedisStore;
/// use pinseal::otp::{Policy, Verdict, aio};
///
/// let store = AsyncRedisStore::builder()
///     .url("redis://127.0.0.1:6379/")
///     .connect()
///     .await?;
/// let otp = aio::Otp::with_store(&Key::from_env("OTP_PEPPER")?, Policy::default(), store);
/// let (challenge, code) = otp.issue("+15551234567").await?;
/// let verdict = otp.verify(&challenge, code.expose_secret()).await?;
/// assert_eq!(verdict, Verdict::Approved);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-tokio")))]
pub struct AsyncRedisStore {
    conn: Conn,
    prefix: String,
    timeout: Duration,
}

impl AsyncRedisStore {
    /// A builder for an async Redis store: see [`RedisBuilder`].
    pub fn builder() -> RedisBuilder<AsyncRedisStore> {
        RedisBuilder::new()
    }

    /// A store on one server, through `client`: one direct connection
    /// first, so that a refused password or certificate is reported as
    /// such rather than retried, and a cluster node is refused.
    async fn single(client: Client, timeout: Duration) -> Result<AsyncRedisStore, Error> {
        install_tls_provider();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let check = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("INFO")
                .arg("cluster")
                .query_async::<String>(&mut conn)
                .await
        };
        let info = bounded(timeout, check)
            .await
            .map_err(|e| open_error(e, classify))?;
        if info.contains("cluster_enabled:1") {
            return Err(Error::StoreConfig);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| classify(&e))?;
        // The manager reconnects by itself when a connection drops; it
        // is replaced when it goes silent or its server is demoted.
        let connect: Connect<ConnectionManager> = Arc::new(move || {
            let fresh = ConnectionManager::new_lazy_with_config(client.clone(), config.clone());
            Box::pin(async move { fresh.map(|manager| (manager, None)) })
        });
        let renewing = Renewing::new(Some((manager, None)), Duration::ZERO, connect, None);
        Ok(AsyncRedisStore {
            conn: Conn::Single(Arc::new(renewing)),
            prefix: String::new(),
            timeout,
        })
    }

    /// A store on a cluster, connected now.
    async fn cluster(source: ClusterSource) -> Result<AsyncRedisStore, Error> {
        let source = Arc::new(source);
        Ok(AsyncRedisStore {
            conn: Conn::Cluster(open_cluster(&source).await?),
            prefix: String::new(),
            timeout: source.timeout,
        })
    }

    /// The timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Request) -> Result<T, Error> {
        match &self.conn {
            Conn::Single(conn) => {
                conn.run(
                    self.timeout,
                    |mut c| async move { cmd.run_async(&mut c).await },
                )
                .await
            }
            Conn::Cluster(conn) => conn.run(self.timeout, |c| cmd.run_cluster(c)).await,
        }
    }
}

impl AsyncStore for AsyncRedisStore {
    async fn get(&self, key: &str, _now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        self.query(&get_cmd(&redis_key(
            &self.prefix,
            key,
            matches!(self.conn, Conn::Cluster(_)),
        )))
        .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let key = redis_key(&self.prefix, key, matches!(self.conn, Conn::Cluster(_)));
        self.query::<i64>(&cas_cmd(&key, expected, new, expires_ms, now_ms))
            .await
            .map(|swapped| swapped == 1)
    }

    /// One script (see [`Store::check_in_one_step`](crate::otp::store::Store::check_in_one_step));
    /// on a cluster one per slot: the client's check budget, the subject,
    /// then the budget's give-back and the prefix's credit at once. By an
    /// id without a slot byte on a cluster, the caller reads the index
    /// entry first.
    async fn check_in_one_step(
        &self,
        check: &OneStepCheck<'_>,
    ) -> Result<Option<OneStepOutcome>, Error> {
        match &self.conn {
            Conn::Cluster(conn) => slots::check(conn, self.timeout, check, &self.prefix).await,
            Conn::Single(_) => match one_step_cmd(check, &self.prefix, false) {
                None => Ok(Some(OneStepOutcome(Decision::IndexFirst))),
                Some(cmd) => one_step_reply(self.query(&cmd).await?, check).map(Some),
            },
        }
    }

    /// One script on one server (see
    /// [`Store::issue_in_one_step`](crate::otp::store::Store::issue_in_one_step));
    /// on a cluster one per slot: the client counters at once, the fraud
    /// guard's prefix, then the subject.
    async fn issue_in_one_step(
        &self,
        issue: &OneStepIssue<'_>,
    ) -> Result<Option<OneStepOutcome>, Error> {
        match &self.conn {
            Conn::Cluster(conn) => slots::issue(conn, self.timeout, issue, &self.prefix).await,
            Conn::Single(_) => match issue_cmd(issue, &self.prefix, false) {
                None => Ok(None),
                Some(cmd) => issue_reply(self.query(&cmd).await?, issue).map(Some),
            },
        }
    }

    /// On a cluster: a challenge's index entry goes in the slot of its
    /// subject's record (see
    /// [`Store::slots_challenges`](crate::otp::store::Store::slots_challenges)).
    fn slots_challenges(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }
}

impl fmt::Debug for AsyncRedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisStore")
            .field(
                "mode",
                &match self.conn {
                    Conn::Single(_) => "single",
                    Conn::Cluster(_) => "cluster",
                },
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
