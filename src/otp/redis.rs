//! Redis challenge stores (features `redis`, `redis-tokio`, `redis-tls`):
//! one Redis server or a Redis Cluster, with or without TLS.

use core::fmt;
use std::sync::Mutex;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{Client, Cmd, Connection, ConnectionLike, ErrorKind, RedisError};

use super::Store;
use crate::Error;

/// Compare-and-swap as one server-side step. KEYS[1] = key; ARGV = has
/// expected ("0"/"1"), expected, has new ("0"/"1"), new, time to live (ms).
/// It touches one key, so on a cluster it runs on the node of that key's
/// slot.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' and tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// The default key prefix.
const DEFAULT_PREFIX: &str = "pinseal:otp:";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The compare-and-swap command for `key`. `EVAL` carries the script each
/// time, so a node that never saw it (after a failover, a restart or a
/// resharding) runs it without a `NOSCRIPT` round trip.
fn cas_cmd(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
    expires_ms: u64,
    now_ms: u64,
) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(CAS_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(if expected.is_some() { "1" } else { "0" })
        .arg(expected.unwrap_or_default())
        .arg(if new.is_some() { "1" } else { "0" })
        .arg(new.unwrap_or_default())
        .arg(expires_ms.saturating_sub(now_ms));
    cmd
}

fn get_cmd(key: &str) -> Cmd {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    cmd
}

/// What a Redis error means for the caller, without its message (which may
/// name a key, a host or a user).
fn classify(e: &RedisError) -> Error {
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

/// The client for `url`. A `rediss://` URL without the `redis-tls` feature
/// is a configuration error, as is anything that is not a Redis URL.
fn client(url: &str) -> Result<Client, Error> {
    install_tls_provider();
    Client::open(url).map_err(|_| Error::StoreConfig)
}

/// Makes ring the process's rustls provider unless one is set already, so
/// that an application that also links rustls with aws-lc-rs (two
/// providers, none chosen; the AWS SDK does) does not make rustls panic on
/// connect. Called by every constructor, before any connection.
fn install_tls_provider() {
    #[cfg(feature = "redis-tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A cluster client for the seed nodes `urls`. The client makes up to
/// three tries per command (redirections count as tries), so each try gets
/// a third of `timeout`.
fn cluster_client(urls: &[&str], timeout: Duration) -> Result<ClusterClient, Error> {
    if urls.is_empty() {
        return Err(Error::StoreConfig);
    }
    install_tls_provider();
    ClusterClientBuilder::new(urls.to_vec())
        .connection_timeout(timeout / 3)
        .response_timeout(timeout / 3)
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(200)
        .build()
        .map_err(|_| Error::StoreConfig)
}

/// Checks a fresh single-node connection: the server answers, and it is
/// not a cluster node (whose keys the single-node client could not
/// follow).
fn check_single(conn: &mut dyn ConnectionLike) -> Result<(), Error> {
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query(conn)
        .map_err(|e| classify(&e))?;
    if info.contains("cluster_enabled:1") {
        return Err(Error::StoreConfig);
    }
    Ok(())
}

/// Asks the seed nodes, in turn, whether they are in cluster mode: the
/// first that answers decides. None answering is [`Error::Store`] (or how
/// the last one refused).
fn probe_seeds(urls: &[&str], timeout: Duration) -> Result<(), Error> {
    let mut last = Error::Store;
    for url in urls {
        let answer = client(url)?
            .get_connection_with_timeout(timeout)
            .and_then(|mut conn| {
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))?;
                redis::cmd("INFO").arg("cluster").query::<String>(&mut conn)
            });
        match answer {
            Ok(info) if info.contains("cluster_enabled:1") => return Ok(()),
            Ok(_) => return Err(Error::StoreConfig),
            Err(e) => last = classify(&e),
        }
    }
    Err(last)
}

/// A cluster open that failed on a server's answer (not on the network)
/// met a node that is not in cluster mode.
fn classify_cluster_open(e: &RedisError) -> Error {
    match classify(e) {
        Error::Store if e.kind() == ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
            Error::StoreConfig
        }
        other => other,
    }
}

// One per store, made once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Node {
    Single(Client),
    Cluster(ClusterClient),
}

enum Pooled {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Pooled {
    fn conn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Pooled::Single(c) => c,
            Pooled::Cluster(c) => &mut **c,
        }
    }
}

/// A blocking challenge store on a Redis server or a Redis Cluster, shared
/// by every instance of a service.
///
/// # About
///
/// Each [`Store::compare_and_swap`] is one Lua script run atomically by
/// Redis on the one key it touches, so verify-and-consume is a single
/// server-side step and two instances verifying the same code approve it
/// exactly once; on a cluster the script runs on the node that owns the
/// key's slot, and the client follows `MOVED` and `ASK` redirections while
/// slots move. Each key gets a Redis time to live equal to its remaining
/// life, so Redis drops expired challenges on its own. Keys are `prefix` +
/// `s:`/`c:`/`k:` + the hex of an HMAC; values hold HMACs, counters and
/// timestamps only.
///
/// Connections are pooled (one per thread in use at once) and opened
/// lazily. A connection that fails is dropped; a pooled one that fails on
/// I/O (Redis restarted, the network dropped an idle connection) is
/// replaced at once and the command sent again on the fresh one, so the
/// store works again on the first call after Redis is back. (A swap that
/// had landed before the connection failed then fails its compare: a
/// correct code may be answered [`Verdict::Unknown`](super::Verdict::Unknown),
/// never approved twice.)
///
/// # Timeouts
///
/// One timeout (2 s by default, [`RedisStore::open_with_timeout`]) bounds
/// opening (connect, authenticate, first command), and every read and
/// write on every pooled connection. A Redis that is down, refuses the
/// connection or stops answering turns into [`Error::Store`] within about
/// twice that (connecting and one command), never a hang. On a cluster the
/// client makes up to three tries per command (redirections included),
/// each with a third of the timeout.
///
/// # Errors
///
/// When opening: [`Error::Store`] if Redis is unreachable or timed out;
/// [`Error::StoreConfig`] if the URL is not a Redis URL, `rediss://`
/// without the `redis-tls` feature, or a single-node store opened on a
/// cluster node (or the reverse); [`Error::StoreAuth`] if the server
/// refused the credentials, or wants some; [`Error::StoreTls`] if the TLS
/// handshake was refused (certificate not trusted, wrong name). Once open,
/// every failure is [`Error::Store`] (retry later). No error holds the
/// URL, the password or the server's message.
///
/// A Redis that is down makes `issue` and `verify` fail; it never makes a
/// code verify.
///
/// # Example
///
/// ```no_run
/// use pinseal::Key;
/// use pinseal::otp::{Otp, Policy, RedisStore, SystemClock};
///
/// let store = RedisStore::open("redis://127.0.0.1:6379/")?.with_prefix("myapp:otp:");
/// // A cluster: RedisStore::open_cluster(&["redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/"])?
/// let otp = Otp::with_parts(&Key::from_env("OTP_PEPPER")?, Policy::default(), store, SystemClock);
/// let (challenge, code) = otp.issue("+15551234567")?;
/// # Ok::<(), pinseal::Error>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisStore {
    node: Node,
    prefix: String,
    timeout: Duration,
    idle: Mutex<Vec<Pooled>>,
}

impl RedisStore {
    /// The key prefix used unless [`RedisStore::with_prefix`] sets another.
    pub const DEFAULT_PREFIX: &'static str = DEFAULT_PREFIX;

    /// The timeout used unless [`RedisStore::open_with_timeout`] sets
    /// another.
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_TIMEOUT;

    /// A store on the Redis server at `url`
    /// (`redis://[[user]:password@]host:port/[db]`, or `rediss://` with the
    /// `redis-tls` feature). Connects once to check the server answers and
    /// is not a cluster node.
    ///
    /// # Errors
    ///
    /// See [Errors](RedisStore#errors). The error does not contain the URL.
    pub fn open(url: &str) -> Result<RedisStore, Error> {
        Self::open_with_timeout(url, DEFAULT_TIMEOUT)
    }

    /// As [`RedisStore::open`], with `timeout` for opening and for every
    /// operation after.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::open`].
    pub fn open_with_timeout(url: &str, timeout: Duration) -> Result<RedisStore, Error> {
        Self::from_client(client(url)?, timeout)
    }

    /// A store on a Redis Cluster, found through the seed node URLs `urls`
    /// (any reachable primary is enough; the client learns the others).
    /// Connects once to learn the slot map.
    ///
    /// # Errors
    ///
    /// See [Errors](RedisStore#errors); [`Error::StoreConfig`] also for an
    /// empty list and for a seed node that is not in cluster mode.
    pub fn open_cluster(urls: &[&str]) -> Result<RedisStore, Error> {
        Self::open_cluster_with_timeout(urls, DEFAULT_TIMEOUT)
    }

    /// As [`RedisStore::open_cluster`], with `timeout` for opening and for
    /// every operation after.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::open_cluster`].
    pub fn open_cluster_with_timeout(
        urls: &[&str],
        timeout: Duration,
    ) -> Result<RedisStore, Error> {
        let cluster = cluster_client(urls, timeout)?;
        probe_seeds(urls, timeout)?;
        Self::from_cluster_client(cluster, timeout)
    }

    /// A store on a [`redis::Client`] built by the caller (custom TLS
    /// certificates, a Unix socket, ...). Checks it as
    /// [`RedisStore::open`] does.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::open`].
    pub fn from_client(client: Client, timeout: Duration) -> Result<RedisStore, Error> {
        install_tls_provider();
        let store = RedisStore::new(Node::Single(client), timeout);
        let mut conn = store.connect()?;
        check_single(conn.conn())?;
        store.put_back(conn);
        Ok(store)
    }

    /// A store on a [`redis::cluster::ClusterClient`] built by the caller.
    /// Its own connection and response timeouts apply inside the client;
    /// `timeout` bounds each read and write.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::open_cluster`].
    pub fn from_cluster_client(
        client: ClusterClient,
        timeout: Duration,
    ) -> Result<RedisStore, Error> {
        install_tls_provider();
        let store = RedisStore::new(Node::Cluster(client), timeout);
        let mut conn = store.connect()?;
        // The client learns the slot map lazily: ask now, so that a seed
        // node outside cluster mode is reported here.
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query::<String>(conn.conn())
            .map_err(|e| classify_cluster_open(&e))?;
        store.put_back(conn);
        Ok(store)
    }

    fn new(node: Node, timeout: Duration) -> RedisStore {
        RedisStore {
            node,
            prefix: DEFAULT_PREFIX.to_string(),
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Uses `prefix` before every key (default `pinseal:otp:`), so several
    /// services or environments can share one Redis.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> RedisStore {
        self.prefix = prefix.into();
        self
    }

    /// Bounds each read and write by `timeout` from now on, on every
    /// connection (the pooled ones are closed and reopened with it).
    /// Prefer [`RedisStore::open_with_timeout`], which also bounds opening.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> RedisStore {
        self.timeout = timeout;
        self.idle
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn connect(&self) -> Result<Pooled, Error> {
        let t = Some(self.timeout);
        match &self.node {
            Node::Single(client) => {
                // Half the timeout for connecting and the handshake (which
                // may wait twice for a server that stopped answering), so
                // that connecting and one command stay within two.
                let conn = client
                    .get_connection_with_timeout(self.timeout / 2)
                    .map_err(|e| classify(&e))?;
                conn.set_read_timeout(t)
                    .and_then(|()| conn.set_write_timeout(t))
                    .map_err(|e| classify(&e))?;
                Ok(Pooled::Single(conn))
            }
            Node::Cluster(client) => {
                let conn = client
                    .get_connection()
                    .map_err(|e| classify_cluster_open(&e))?;
                let t = Some(self.timeout / 3);
                conn.set_read_timeout(t)
                    .and_then(|()| conn.set_write_timeout(t))
                    .map_err(|e| classify(&e))?;
                Ok(Pooled::Cluster(Box::new(conn)))
            }
        }
    }

    fn put_back(&self, conn: Pooled) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push(conn);
    }

    /// Runs `cmd` on a pooled connection; a connection that failed is
    /// dropped.
    ///
    /// A pooled connection that fails on I/O (Redis restarted, an idle
    /// connection dropped by the network) is replaced by a fresh one and
    /// the command sent once more: a compare-and-swap that did land the
    /// first time then fails its compare, which fails closed. Once the
    /// store is open every failure is [`Error::Store`].
    fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect().map_err(|_| Error::Store)?,
        };
        let result = match cmd.query(conn.conn()) {
            Err(e) if reused && e.is_io_error() && !e.is_timeout() => {
                conn = self.connect().map_err(|_| Error::Store)?;
                cmd.query(conn.conn())
            }
            other => other,
        };
        match result {
            Ok(value) => {
                self.put_back(conn);
                Ok(value)
            }
            Err(_) => Err(Error::Store),
        }
    }
}

impl Store for RedisStore {
    /// Reads the key; expiry is Redis's own (`now_ms` is not used).
    fn get(&self, key: &str, _now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        self.query(&get_cmd(&format!("{}{key}", self.prefix)))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let key = format!("{}{key}", self.prefix);
        self.query::<i64>(&cas_cmd(&key, expected, new, expires_ms, now_ms))
            .map(|swapped| swapped == 1)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out: it may carry a password.
        f.debug_struct("RedisStore")
            .field(
                "mode",
                &match self.node {
                    Node::Single(_) => "single",
                    Node::Cluster(_) => "cluster",
                },
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis-tokio")]
pub use self::tokio::AsyncRedisStore;

#[cfg(feature = "redis-tokio")]
mod tokio {
    use core::fmt;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use ::tokio::time::timeout as within;
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::cluster::ClusterClient;
    use redis::cluster_async::ClusterConnection;
    use redis::{AsyncConnectionConfig, Client, Cmd, RedisError};

    use super::{
        DEFAULT_PREFIX, DEFAULT_TIMEOUT, cas_cmd, classify, classify_cluster_open, client,
        cluster_client, get_cmd, install_tls_provider,
    };
    use crate::Error;
    use crate::otp::AsyncStore;

    /// A connection manager that is replaced by a fresh one when it stops
    /// serving: the manager reconnects by itself only when a connection
    /// drops, not when it goes silent (a NAT or load balancer forgetting
    /// it) or when a failover turned its server into a read-only replica.
    struct Managed {
        client: Client,
        config: ConnectionManagerConfig,
        current: Mutex<ConnectionManager>,
    }

    impl Managed {
        fn get(&self) -> ConnectionManager {
            self.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        }

        /// A new manager (it connects on first use).
        fn renew(&self) {
            if let Ok(fresh) =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
            {
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
            }
        }
    }

    /// Whether a failed command means the connection, not the command, is
    /// at fault: a timeout (`None`), an I/O or connection error, or a
    /// server that is no longer a writable primary.
    fn connection_at_fault(e: Option<&RedisError>) -> bool {
        match e {
            None => true,
            Some(e) => {
                !matches!(e.kind(), redis::ErrorKind::Server(_))
                    || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
            }
        }
    }

    #[derive(Clone)]
    enum Conn {
        Single(Arc<Managed>),
        Cluster(ClusterConnection),
    }

    /// The asynchronous (tokio) twin of [`RedisStore`](super::RedisStore),
    /// for the `Otp::*_async` methods: one Redis server or a Redis Cluster.
    /// Same keys, same script, same guarantees; the two can serve one Redis
    /// side by side.
    ///
    /// On one server it multiplexes one connection that reconnects on its
    /// own when it drops, with short jittered backoff (50 ms to 500 ms), so
    /// instances do not retry in lockstep and the store works again within
    /// a second or two of Redis coming back; after a timeout or a reply
    /// saying the server is no longer a writable primary (`READONLY`, a
    /// failover) the connection is replaced outright. The calls that saw
    /// the failure return [`Error::Store`]. On a cluster it keeps one
    /// multiplexed connection per node and follows `MOVED`/`ASK`.
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
    /// use pinseal::Key;
    /// use pinseal::otp::{AsyncRedisStore, Otp, Policy, SystemClock, Verdict};
    ///
    /// let store = AsyncRedisStore::open("redis://127.0.0.1:6379/").await?;
    /// let otp = Otp::with_parts(&Key::from_env("OTP_PEPPER")?, Policy::default(), store, SystemClock);
    /// let (challenge, code) = otp.issue_async("+15551234567").await?;
    /// let verdict = otp.verify_async(&challenge, code.expose_secret()).await?;
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

    /// Bounds `op` by `timeout`; `Err(None)` is a timeout.
    async fn bounded<T>(
        timeout: Duration,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Option<RedisError>> {
        match within(timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Some(e)),
            Err(_) => Err(None),
        }
    }

    /// The error for a failed open: classified, a timeout being
    /// [`Error::Store`].
    fn open_error(e: Option<RedisError>, classify: fn(&RedisError) -> Error) -> Error {
        e.as_ref().map_or(Error::Store, classify)
    }

    /// Asks the seed nodes, in turn, whether they are in cluster mode, as
    /// the blocking store does.
    async fn probe_seeds(urls: &[&str], timeout: Duration) -> Result<(), Error> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut last = Error::Store;
        for url in urls {
            let client = client(url)?;
            let info = bounded(timeout, async {
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("INFO")
                    .arg("cluster")
                    .query_async::<String>(&mut conn)
                    .await
            })
            .await;
            match info {
                Ok(info) if info.contains("cluster_enabled:1") => return Ok(()),
                Ok(_) => return Err(Error::StoreConfig),
                Err(e) => last = open_error(e, classify),
            }
        }
        Err(last)
    }

    impl AsyncRedisStore {
        /// Connects to the Redis server at `url`, with a 2-second timeout.
        ///
        /// # Errors
        ///
        /// As [`RedisStore::open`](super::RedisStore::open).
        pub async fn open(url: &str) -> Result<AsyncRedisStore, Error> {
            Self::open_with_timeout(url, DEFAULT_TIMEOUT).await
        }

        /// As [`AsyncRedisStore::open`], with `timeout` for opening and
        /// for every operation after.
        ///
        /// # Errors
        ///
        /// As [`AsyncRedisStore::open`].
        pub async fn open_with_timeout(
            url: &str,
            timeout: Duration,
        ) -> Result<AsyncRedisStore, Error> {
            Self::from_client(client(url)?, timeout).await
        }

        /// A store on a [`redis::Client`] built by the caller.
        ///
        /// # Errors
        ///
        /// As [`AsyncRedisStore::open`].
        pub async fn from_client(
            client: Client,
            timeout: Duration,
        ) -> Result<AsyncRedisStore, Error> {
            install_tls_provider();
            // One direct connection first, so that a refused password or
            // certificate is reported as such rather than retried.
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
            Ok(AsyncRedisStore {
                conn: Conn::Single(Arc::new(Managed {
                    client,
                    config,
                    current: Mutex::new(manager),
                })),
                prefix: DEFAULT_PREFIX.to_string(),
                timeout,
            })
        }

        /// A store on a Redis Cluster, found through the seed node URLs
        /// `urls`, with a 2-second timeout.
        ///
        /// # Errors
        ///
        /// As [`RedisStore::open_cluster`](super::RedisStore::open_cluster).
        pub async fn open_cluster(urls: &[&str]) -> Result<AsyncRedisStore, Error> {
            Self::open_cluster_with_timeout(urls, DEFAULT_TIMEOUT).await
        }

        /// As [`AsyncRedisStore::open_cluster`], with `timeout` for opening
        /// and for every operation after.
        ///
        /// # Errors
        ///
        /// As [`AsyncRedisStore::open_cluster`].
        pub async fn open_cluster_with_timeout(
            urls: &[&str],
            timeout: Duration,
        ) -> Result<AsyncRedisStore, Error> {
            let cluster = cluster_client(urls, timeout)?;
            probe_seeds(urls, timeout).await?;
            Self::from_cluster_client(cluster, timeout).await
        }

        /// A store on a [`redis::cluster::ClusterClient`] built by the
        /// caller; `timeout` bounds opening and each operation.
        ///
        /// # Errors
        ///
        /// As [`AsyncRedisStore::open_cluster`].
        pub async fn from_cluster_client(
            client: ClusterClient,
            timeout: Duration,
        ) -> Result<AsyncRedisStore, Error> {
            install_tls_provider();
            let conn = bounded(timeout, client.get_async_connection())
                .await
                .map_err(|e| open_error(e, classify_cluster_open))?;
            Ok(AsyncRedisStore {
                conn: Conn::Cluster(conn),
                prefix: DEFAULT_PREFIX.to_string(),
                timeout,
            })
        }

        /// Uses `prefix` before every key (default `pinseal:otp:`).
        #[must_use]
        pub fn with_prefix(mut self, prefix: impl Into<String>) -> AsyncRedisStore {
            self.prefix = prefix.into();
            self
        }

        /// The key prefix in use.
        pub fn prefix(&self) -> &str {
            &self.prefix
        }

        /// Runs `cmd` within the timeout. Once the store is open every
        /// failure is [`Error::Store`]; a failure of the connection itself
        /// renews the single-node connection manager.
        async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
            match &self.conn {
                Conn::Single(managed) => {
                    let mut conn = managed.get();
                    let result = bounded(self.timeout, cmd.query_async(&mut conn)).await;
                    if let Err(e) = &result {
                        if connection_at_fault(e.as_ref()) {
                            managed.renew();
                        }
                    }
                    result.map_err(|_| Error::Store)
                }
                Conn::Cluster(conn) => {
                    let mut conn = conn.clone();
                    bounded(self.timeout, cmd.query_async(&mut conn))
                        .await
                        .map_err(|_| Error::Store)
                }
            }
        }
    }

    impl AsyncStore for AsyncRedisStore {
        async fn get(&self, key: &str, _now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
            self.query(&get_cmd(&format!("{}{key}", self.prefix))).await
        }

        async fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<&[u8]>,
            new: Option<&[u8]>,
            expires_ms: u64,
            now_ms: u64,
        ) -> Result<bool, Error> {
            let key = format!("{}{key}", self.prefix);
            self.query::<i64>(&cas_cmd(&key, expected, new, expires_ms, now_ms))
                .await
                .map(|swapped| swapped == 1)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configuration mistakes are told apart from an unavailable Redis, and
    /// say nothing of the URL.
    #[test]
    fn bad_urls_are_configuration_errors() {
        for url in ["not a url", "http://127.0.0.1:6379/", "redis://:pw@[::1/"] {
            assert_eq!(
                RedisStore::open(url).err(),
                Some(Error::StoreConfig),
                "{url}"
            );
        }
        #[cfg(not(feature = "redis-tls"))]
        assert_eq!(
            RedisStore::open("rediss://:hunter2@127.0.0.1:1/").err(),
            Some(Error::StoreConfig),
            "TLS without the redis-tls feature"
        );
        assert_eq!(
            RedisStore::open_cluster(&["redis://127.0.0.1:1/", "not a url"]).err(),
            Some(Error::StoreConfig)
        );
    }
}
