//! Redis challenge stores (features `redis`, `redis-tokio`, `redis-tls`):
//! one Redis server or a Redis Cluster, with or without TLS.

use core::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterClientBuilder};
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

/// A cluster client for `nodes`. The client makes up to three tries per
/// command (redirections count as tries), so each try gets a third of
/// `timeout`, and the command as a whole all of it (redis-rs would
/// otherwise bound the whole command by one try's timeout).
fn cluster_client(
    nodes: Vec<redis::ConnectionInfo>,
    timeout: Duration,
) -> Result<ClusterClient, RedisError> {
    ClusterClientBuilder::new(nodes)
        .connection_timeout(timeout / 3)
        .response_timeout(timeout / 3)
        .overall_response_timeout(Some(timeout))
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(200)
        .build()
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

/// Bounds `op` by `timeout`; `Err(None)` is a timeout.
async fn bounded<T>(
    timeout: Duration,
    op: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, Option<RedisError>> {
    match tokio::time::timeout(timeout, op).await {
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

/// An I/O timeout, as a Redis error.
fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// Whether a failed command means the connection, not the command, is at
/// fault: a timeout (`None`, or an I/O timeout inside the client), an I/O
/// or connection error, or a server that is no longer a writable primary.
fn connection_at_fault(e: Option<&RedisError>) -> bool {
    match e {
        None => true,
        Some(e) => {
            !matches!(e.kind(), ErrorKind::Server(_))
                || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        }
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// Makes a new connection, connected (or, for a connection manager, ready
/// to connect on first use).
type Connect<C> = Arc<dyn Fn() -> BoxFuture<Result<C, RedisError>> + Send + Sync>;

/// An async connection that is replaced by a fresh one when it stops
/// serving.
///
/// redis-rs reconnects on its own when a connection drops, and a cluster
/// connection refreshes its slot map on `MOVED`. Neither notices a server
/// that goes silent: a frozen primary (a paused VM, a partition, `SIGSTOP`)
/// keeps its TCP connections open, so the cluster connection keeps sending
/// that shard's commands to it after its replica has been promoted, and a
/// single-node connection behind a NAT that forgot it waits forever. A
/// fresh cluster connection asks the cluster for its slot map again (a
/// fresh single-node one connects again), so after a fault the next
/// generation finds the new primary.
///
/// A fault seen on the current generation starts one renewal in the
/// background, and no other within `min_age` of it; the fresh connection
/// takes over only once it has connected, so a renewal that cannot reach
/// any node (every seed down) leaves the current generation serving.
struct Renewing<C> {
    connect: Connect<C>,
    min_age: Duration,
    state: Arc<Mutex<RenewState<C>>>,
}

struct RenewState<C> {
    /// The generation in use and its number; `None` until the first
    /// connects.
    current: Option<(C, u64)>,
    next_number: u64,
    renewing: bool,
    last_renewal: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C: Clone + redis::aio::ConnectionLike + Send + 'static> RenewState<C> {
    fn install(&mut self, conn: C) -> (C, u64) {
        let number = self.next_number;
        self.next_number += 1;
        self.current = Some((conn.clone(), number));
        (conn, number)
    }
}

impl<C: Clone + redis::aio::ConnectionLike + Send + 'static> Renewing<C> {
    /// Starts with `first`, or with no connection: then the first call
    /// connects, within its own timeout.
    fn new(first: Option<C>, min_age: Duration, connect: Connect<C>) -> Renewing<C> {
        let mut state = RenewState {
            current: None,
            next_number: 0,
            renewing: false,
            last_renewal: None,
        };
        if let Some(conn) = first {
            state.install(conn);
        }
        Renewing {
            connect,
            min_age,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The current generation, connecting one if there is none yet.
    async fn current(&self) -> Result<(C, u64), RedisError> {
        if let Some(current) = lock(&self.state).current.clone() {
            return Ok(current);
        }
        let conn = (self.connect)().await?;
        let mut state = lock(&self.state);
        Ok(match state.current.clone() {
            // Another call connected first: use that one.
            Some(current) => current,
            None => state.install(conn),
        })
    }

    /// Starts connecting a replacement for generation `seen` in the
    /// background, unless one is connecting, one started within
    /// `min_age`, or `seen` was replaced already.
    fn renew(&self, seen: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut state = lock(&self.state);
            let too_soon = state
                .last_renewal
                .is_some_and(|at| at.elapsed() < self.min_age);
            let replaced = state.current.as_ref().is_some_and(|(_, n)| *n != seen);
            if state.renewing || too_soon || replaced {
                return;
            }
            state.renewing = true;
            state.last_renewal = Some(Instant::now());
        }
        let (connect, state) = (self.connect.clone(), self.state.clone());
        runtime.spawn(async move {
            let fresh = connect().await;
            let mut state = lock(&state);
            state.renewing = false;
            if let Ok(conn) = fresh {
                state.install(conn);
            }
        });
    }

    /// Runs `op` on the current generation within `timeout` (connecting
    /// one first if there is none); a failure of the connection itself
    /// renews it. Every failure is [`Error::Store`].
    async fn run<T, F>(&self, timeout: Duration, op: impl FnOnce(C) -> F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let used = std::sync::atomic::AtomicU64::new(u64::MAX);
        let result = bounded(timeout, async {
            let (conn, number) = self.current().await?;
            used.store(number, std::sync::atomic::Ordering::Relaxed);
            op(conn).await
        })
        .await;
        if let Err(e) = &result {
            let number = used.load(std::sync::atomic::Ordering::Relaxed);
            if number != u64::MAX && connection_at_fault(e.as_ref()) {
                self.renew(number);
            }
        }
        result.map_err(|_| Error::Store)
    }
}

/// Runs `cmd` on a cluster connection.
///
/// An `ASK` redirection (a slot half moved to another node) that outlives
/// the client's own tries is followed once more, with `ASKING` and the
/// command sent to the target as one pipeline. redis-rs sends them as two
/// requests on a connection that other requests share, so under
/// concurrency another request can take the `ASKING` and the command is
/// redirected again; nothing can come between the two commands of a
/// pipeline. (An `ASK` reply means the command did not run, so it runs at
/// most once.)
async fn cluster_query<T: redis::FromRedisValue>(
    mut conn: redis::cluster_async::ClusterConnection,
    cmd: &Cmd,
) -> Result<T, RedisError> {
    let ask = match cmd.query_async(&mut conn).await {
        Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::Ask) => e,
        other => return other,
    };
    let Some((host, port)) = ask
        .redirect_node()
        .and_then(|(node, _slot)| node.rsplit_once(':'))
        .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)))
    else {
        return Err(ask);
    };
    let mut pipe = redis::pipe();
    pipe.add_command(redis::cmd("ASKING"))
        .add_command(cmd.clone());
    let route = redis::cluster_routing::SingleNodeRoutingInfo::ByAddress { host, port };
    let reply = conn
        .route_pipeline(pipe, 1, 1, route)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| RedisError::from((ErrorKind::Client, "no reply")))?
        .extract_error()?;
    Ok(redis::from_redis_value(reply)?)
}

/// Where a cluster connection starts from. One per store: the size
/// difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Seeds {
    /// Seed nodes given as URLs: a renewal also starts from the nodes the
    /// last connection learned, so it does not depend on the seeds alone.
    Nodes(Vec<redis::ConnectionInfo>),
    /// A client built by the caller, whose seeds are its own.
    Client(ClusterClient),
}

/// Most nodes remembered from a cluster's slot map.
const KNOWN_NODES: usize = 16;

/// How a blocking or async store (re)connects to a Redis Cluster.
struct ClusterSource {
    seeds: Seeds,
    /// The cluster's nodes (primaries first) as the last connection saw
    /// them, with the seeds' credentials and TLS settings.
    known: Mutex<Vec<redis::ConnectionInfo>>,
    timeout: Duration,
}

impl ClusterSource {
    /// A source for the seed URLs `urls`.
    ///
    /// # Errors
    ///
    /// [`Error::StoreConfig`] for an empty list or a URL that is not a
    /// Redis URL (or `rediss://` without the `redis-tls` feature).
    fn from_urls(urls: &[&str], timeout: Duration) -> Result<ClusterSource, Error> {
        use redis::IntoConnectionInfo;
        install_tls_provider();
        let nodes = urls
            .iter()
            .map(|url| url.into_connection_info())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Error::StoreConfig)?;
        if nodes.is_empty() {
            return Err(Error::StoreConfig);
        }
        // Refuses what the builder would (a TLS URL without TLS support).
        cluster_client(nodes.clone(), timeout).map_err(|_| Error::StoreConfig)?;
        Ok(ClusterSource {
            seeds: Seeds::Nodes(nodes),
            known: Mutex::new(Vec::new()),
            timeout,
        })
    }

    fn from_client(client: ClusterClient, timeout: Duration) -> ClusterSource {
        install_tls_provider();
        ClusterSource {
            seeds: Seeds::Client(client),
            known: Mutex::new(Vec::new()),
            timeout,
        }
    }

    /// A new cluster connection, within the timeout; learns the cluster's
    /// nodes for the next one.
    async fn connect(&self) -> Result<redis::cluster_async::ClusterConnection, RedisError> {
        let client = match &self.seeds {
            Seeds::Client(client) => client.clone(),
            Seeds::Nodes(seeds) => {
                let mut nodes = lock(&self.known).clone();
                nodes.extend(seeds.iter().cloned());
                cluster_client(nodes, self.timeout)?
            }
        };
        let conn = tokio::time::timeout(self.timeout, client.get_async_connection())
            .await
            .map_err(|_| timed_out())??;
        if let Seeds::Nodes(seeds) = &self.seeds {
            if let Some(nodes) = learn_nodes(conn.clone(), &seeds[0], self.timeout).await {
                *lock(&self.known) = nodes;
            }
        }
        Ok(conn)
    }

    /// A connection that starts with `first` (or connects on first use)
    /// and is renewed after a fault.
    fn renewing(
        self: &Arc<Self>,
        first: Option<redis::cluster_async::ClusterConnection>,
    ) -> ClusterConn {
        let source = self.clone();
        let connect: Connect<_> = Arc::new(move || {
            let source = source.clone();
            Box::pin(async move { source.connect().await })
        });
        // A renewal gets half a timeout before the next may start: a
        // frozen seed alone costs it a third.
        Arc::new(Renewing::new(first, self.timeout / 2, connect))
    }
}

/// The nodes of the cluster `conn` is connected to, from `CLUSTER SLOTS`
/// (primaries first, at most [`KNOWN_NODES`]), each with `template`'s
/// credentials and TLS settings; `None` if the cluster does not answer in
/// time or the seeds are Unix sockets.
async fn learn_nodes(
    mut conn: redis::cluster_async::ClusterConnection,
    template: &redis::ConnectionInfo,
    timeout: Duration,
) -> Option<Vec<redis::ConnectionInfo>> {
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    use redis::{ConnectionAddr, Value};
    let mut slots = redis::cmd("CLUSTER");
    slots.arg("SLOTS");
    let reply = tokio::time::timeout(
        timeout,
        conn.route_command(
            slots,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        ),
    )
    .await
    .ok()?
    .ok()?;
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut primaries = Vec::new();
    let mut replicas = Vec::new();
    let Value::Array(ranges) = reply else {
        return None;
    };
    for range in &ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        for (i, node) in fields.iter().skip(2).enumerate() {
            let Value::Array(node) = node else { continue };
            let (Some(host), Some(Value::Int(port))) = (node.first().and_then(text), node.get(1))
            else {
                continue;
            };
            let Ok(port) = u16::try_from(*port) else {
                continue;
            };
            if host.is_empty() || host == "?" {
                continue;
            }
            let list = if i == 0 {
                &mut primaries
            } else {
                &mut replicas
            };
            if !list.contains(&(host.clone(), port)) {
                list.push((host, port));
            }
        }
    }
    let nodes = primaries
        .into_iter()
        .chain(replicas)
        .take(KNOWN_NODES)
        .filter_map(|(host, port)| {
            let addr = match template.addr() {
                ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host, port),
                ConnectionAddr::TcpTls {
                    insecure,
                    tls_params,
                    ..
                } => ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: *insecure,
                    tls_params: tls_params.clone(),
                },
                _ => return None,
            };
            Some(template.clone().set_addr(addr))
        })
        .collect::<Vec<_>>();
    (!nodes.is_empty()).then_some(nodes)
}

/// A cluster connection that renews itself after a fault, as
/// `AsyncRedisStore` and each [`Lane`] of a blocking [`RedisStore`] hold
/// one.
type ClusterConn = Arc<Renewing<redis::cluster_async::ClusterConnection>>;

/// Asks the seed nodes, in turn, whether they are in cluster mode: the
/// first that answers decides. None answering is [`Error::Store`] (or how
/// the last one refused).
async fn probe_seeds(urls: &[String], timeout: Duration) -> Result<(), Error> {
    let config = redis::AsyncConnectionConfig::new()
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

/// Connects to a Redis Cluster (learning its slot map) within the
/// source's timeout, classifying a failure.
async fn open_cluster(source: &Arc<ClusterSource>) -> Result<ClusterConn, Error> {
    let conn = source
        .connect()
        .await
        .map_err(|e| classify_cluster_open(&e))?;
    Ok(source.renewing(Some(conn)))
}

/// A current-thread tokio runtime with a cluster connection on it, for the
/// blocking store. The thread that takes a lane from the pool drives its
/// runtime for the length of one call, so a call costs no thread switch,
/// and the blocking store uses the same async connection, slot-map renewal
/// and timeouts as `AsyncRedisStore`. A lane's background work (a
/// reconnect, a renewal connecting) advances while a call runs on it.
struct Lane {
    conn: ClusterConn,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Lane {
    /// A lane whose connection is made by its first call, within that
    /// call's timeout.
    fn new(source: &Arc<ClusterSource>) -> Result<Lane, Error> {
        Ok(Lane {
            conn: source.renewing(None),
            runtime: Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|_| Error::Store)?,
            ),
        })
    }

    /// A lane connected now; first asks the seed nodes `probe` whether
    /// they are in cluster mode, if given. Failures are classified.
    fn open(source: &Arc<ClusterSource>, probe: Option<Vec<String>>) -> Result<Lane, Error> {
        let mut lane = Lane::new(source)?;
        lane.conn = lane.block_on(async {
            if let Some(seeds) = probe {
                probe_seeds(&seeds, source.timeout).await?;
            }
            open_cluster(source).await
        })?;
        Ok(lane)
    }

    /// Runs `cmd` within `timeout`.
    fn call<T: redis::FromRedisValue + Send>(
        &self,
        cmd: &Cmd,
        timeout: Duration,
    ) -> Result<T, Error> {
        self.block_on(self.conn.run(timeout, |c| cluster_query(c, cmd)))
    }

    /// Runs `op` to completion on the lane's runtime from this thread, or,
    /// when this thread is already inside an async runtime (whose threads
    /// must not block on another one), from a scoped thread of its own.
    fn block_on<T: Send>(
        &self,
        op: impl Future<Output = Result<T, Error>> + Send,
    ) -> Result<T, Error> {
        let Some(runtime) = &self.runtime else {
            return Err(Error::Store);
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return runtime.block_on(op);
        }
        std::thread::scope(|s| {
            let thread = std::thread::Builder::new()
                .name("pinseal-redis".into())
                .spawn_scoped(s, || runtime.block_on(op))
                .map_err(|_| Error::Store)?;
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which is not allowed
        // inside an async runtime, where a store may well be dropped.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

// One per store, made once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Node {
    Single {
        client: Client,
        idle: Mutex<Vec<Connection>>,
    },
    Cluster {
        source: Arc<ClusterSource>,
        lanes: Mutex<Vec<Lane>>,
    },
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
/// On one server, connections are pooled (one per thread in use at once)
/// and opened lazily. A connection that fails is dropped; a pooled one that
/// fails on I/O (Redis restarted, the network dropped an idle connection)
/// is replaced at once and the command sent again on the fresh one, so the
/// store works again on the first call after Redis is back. (A swap that
/// had landed before the connection failed then fails its compare: a
/// correct code may be answered [`Verdict::Unknown`](crate::otp::Verdict::Unknown),
/// never approved twice.)
///
/// On a cluster, the store uses the same multiplexed cluster connection as
/// `AsyncRedisStore` (feature `redis-tokio`), one per thread in use at
/// once, each on a small tokio runtime that the calling thread drives for
/// the length of its call (no thread switch per call). Called from a
/// thread inside a tokio runtime (a task, or `spawn_blocking`), where that
/// is not allowed, each call runs on a short-lived thread of its own:
/// prefer `AsyncRedisStore` there. Each thread in use at once holds a
/// connection to every node of the cluster, as the single-node pool holds
/// one connection per thread.
///
/// # Failover
///
/// On a cluster with replicas, a primary that fails is replaced by its
/// replica once the cluster notices (`cluster-node-timeout`, then an
/// election). Until then calls that touch its slots fail with
/// [`Error::Store`] (and with `cluster-require-full-coverage yes`, Redis's
/// default, every call fails: the cluster refuses all commands while a
/// slot has no primary). A primary that is killed or restarted is noticed
/// by the client at once. A primary that freezes (a paused VM, a network
/// partition) keeps its connections open and never answers: each timeout
/// makes the store connect a fresh cluster connection in the background,
/// which asks the cluster for its slot map again and takes over once
/// connected, so the store serves again within about twice its timeout of
/// the replica's promotion, without a restart. It reconnects through the
/// seed nodes and, for a store opened from URLs, the nodes the cluster
/// last reported, so one seed that fails is not fatal; a store made
/// [`from_cluster_client`](RedisStore::from_cluster_client) reconnects
/// through that client's seeds only. Measured in BENCHMARKS.md;
/// `tests/redis_failover.rs` holds it to that with one seed, the node it
/// freezes.
///
/// A frozen primary that is resumed still believes it is a primary until
/// the cluster tells it otherwise, and may briefly answer and then lose
/// writes: see "What Redis loses" in the README.
///
/// # Timeouts
///
/// One timeout (2 s by default, [`RedisStore::open_with_timeout`]) bounds
/// opening (connect, authenticate, first command). On one server it bounds
/// every read and write on every pooled connection: a Redis that is down,
/// refuses the connection or stops answering turns into [`Error::Store`]
/// within about twice that (connecting and one command), never a hang. On
/// a cluster it bounds each call as a whole, whatever the connection is
/// doing inside: the client's own tries (redirections included) get a
/// third of it each.
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
/// use pinseal::otp::store::RedisStore;
/// use pinseal::otp::{Otp, Policy, SystemClock};
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
        let source = ClusterSource::from_urls(urls, timeout)?;
        let seeds: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        Self::cluster(source, Some(seeds))
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
        let store = RedisStore {
            node: Node::Single {
                client,
                idle: Mutex::new(Vec::new()),
            },
            prefix: DEFAULT_PREFIX.to_string(),
            timeout,
        };
        let mut conn = store.connect_single()?;
        check_single(&mut conn)?;
        store.put_back(conn);
        Ok(store)
    }

    /// A store on a [`redis::cluster::ClusterClient`] built by the caller.
    /// Its own connection and response timeouts apply inside the client;
    /// `timeout` bounds opening and each call. After a fault the store
    /// reconnects through the client's own seed nodes, so keep at least
    /// one of them reachable (the stores opened from URLs also remember
    /// the nodes the cluster reported).
    ///
    /// # Errors
    ///
    /// As [`RedisStore::open_cluster`].
    pub fn from_cluster_client(
        client: ClusterClient,
        timeout: Duration,
    ) -> Result<RedisStore, Error> {
        Self::cluster(ClusterSource::from_client(client, timeout), None)
    }

    fn cluster(source: ClusterSource, probe: Option<Vec<String>>) -> Result<RedisStore, Error> {
        let source = Arc::new(source);
        let lane = Lane::open(&source, probe)?;
        Ok(RedisStore {
            timeout: source.timeout,
            node: Node::Cluster {
                source,
                lanes: Mutex::new(vec![lane]),
            },
            prefix: DEFAULT_PREFIX.to_string(),
        })
    }

    /// Uses `prefix` before every key (default `pinseal:otp:`), so several
    /// services or environments can share one Redis.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> RedisStore {
        self.prefix = prefix.into();
        self
    }

    /// Bounds each call by `timeout` from now on (on one server, each read
    /// and write of every connection: the pooled ones are closed and
    /// reopened with it). Prefer [`RedisStore::open_with_timeout`], which
    /// also bounds opening and, on a cluster, the client's own tries.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> RedisStore {
        self.timeout = timeout;
        if let Node::Single { idle, .. } = &mut self.node {
            idle.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
        }
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

    fn connect_single(&self) -> Result<Connection, Error> {
        let Node::Single { client, .. } = &self.node else {
            return Err(Error::Store);
        };
        // Half the timeout for connecting and the handshake (which may wait
        // twice for a server that stopped answering), so that connecting
        // and one command stay within two.
        let conn = client
            .get_connection_with_timeout(self.timeout / 2)
            .map_err(|e| classify(&e))?;
        let t = Some(self.timeout);
        conn.set_read_timeout(t)
            .and_then(|()| conn.set_write_timeout(t))
            .map_err(|e| classify(&e))?;
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        if let Node::Single { idle, .. } = &self.node {
            idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
    }

    /// Runs `cmd` on a pooled connection (one server) or lane (a cluster),
    /// made when none is idle. Once the store is open every failure is
    /// [`Error::Store`].
    fn query<T: redis::FromRedisValue + Send>(&self, cmd: Cmd) -> Result<T, Error> {
        match &self.node {
            Node::Single { idle, .. } => {
                let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                self.query_single(pooled, &cmd)
            }
            Node::Cluster { source, lanes } => {
                let pooled = lanes.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let lane = match pooled {
                    Some(lane) => lane,
                    // Connects within the call's own timeout.
                    None => Lane::new(source)?,
                };
                let result = lane.call(&cmd, self.timeout);
                // A lane renews its connection on its own after a fault.
                lanes.lock().unwrap_or_else(|e| e.into_inner()).push(lane);
                result
            }
        }
    }

    /// Runs `cmd` on `pooled` (or a new connection); a connection that
    /// failed is dropped.
    ///
    /// A pooled connection that fails on I/O (Redis restarted, an idle
    /// connection dropped by the network) is replaced by a fresh one and
    /// the command sent once more: a compare-and-swap that did land the
    /// first time then fails its compare, which fails closed.
    fn query_single<T: redis::FromRedisValue>(
        &self,
        pooled: Option<Connection>,
        cmd: &Cmd,
    ) -> Result<T, Error> {
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect_single().map_err(|_| Error::Store)?,
        };
        let result = match cmd.query(&mut conn) {
            Err(e) if reused && e.is_io_error() && !e.is_timeout() => {
                conn = self.connect_single().map_err(|_| Error::Store)?;
                cmd.query(&mut conn)
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
        self.query(get_cmd(&format!("{}{key}", self.prefix)))
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
        self.query::<i64>(cas_cmd(&key, expected, new, expires_ms, now_ms))
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
                    Node::Single { .. } => "single",
                    Node::Cluster { .. } => "cluster",
                },
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis-tokio")]
pub use self::tokio_store::AsyncRedisStore;

#[cfg(feature = "redis-tokio")]
mod tokio_store {
    use core::fmt;
    use std::sync::Arc;
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::cluster::ClusterClient;
    use redis::{AsyncConnectionConfig, Client, Cmd};

    use super::{
        ClusterConn, ClusterSource, Connect, DEFAULT_PREFIX, DEFAULT_TIMEOUT, Renewing, bounded,
        cas_cmd, classify, client, cluster_query, get_cmd, install_tls_provider, open_cluster,
        open_error, probe_seeds,
    };
    use crate::Error;
    use crate::otp::store::AsyncStore;

    #[derive(Clone)]
    enum Conn {
        Single(Arc<Renewing<ConnectionManager>>),
        Cluster(ClusterConn),
    }

    /// The asynchronous (tokio) twin of [`RedisStore`](super::RedisStore),
    /// for [`aio::Otp`](crate::otp::aio::Otp) and
    /// [`aio::TotpGuard`](crate::otp::aio::TotpGuard): one Redis server or a
    /// Redis Cluster.
    /// Same keys, same script, same guarantees; the two can serve one Redis
    /// side by side.
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
    /// let store = AsyncRedisStore::open("redis://127.0.0.1:6379/").await?;
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
            // The manager reconnects by itself when a connection drops; it
            // is replaced when it goes silent or its server is demoted.
            let connect: Connect<ConnectionManager> = Arc::new(move || {
                let fresh = ConnectionManager::new_lazy_with_config(client.clone(), config.clone());
                Box::pin(async move { fresh })
            });
            let renewing = Renewing::new(Some(manager), Duration::ZERO, connect);
            Ok(AsyncRedisStore {
                conn: Conn::Single(Arc::new(renewing)),
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
            let source = ClusterSource::from_urls(urls, timeout)?;
            let seeds: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
            probe_seeds(&seeds, timeout).await?;
            Self::cluster(source).await
        }

        /// A store on a [`redis::cluster::ClusterClient`] built by the
        /// caller; `timeout` bounds opening and each operation. As
        /// [`RedisStore::from_cluster_client`](super::RedisStore::from_cluster_client),
        /// it reconnects through the client's own seeds after a fault.
        ///
        /// # Errors
        ///
        /// As [`AsyncRedisStore::open_cluster`].
        pub async fn from_cluster_client(
            client: ClusterClient,
            timeout: Duration,
        ) -> Result<AsyncRedisStore, Error> {
            Self::cluster(ClusterSource::from_client(client, timeout)).await
        }

        async fn cluster(source: ClusterSource) -> Result<AsyncRedisStore, Error> {
            let source = Arc::new(source);
            Ok(AsyncRedisStore {
                conn: Conn::Cluster(open_cluster(&source).await?),
                prefix: DEFAULT_PREFIX.to_string(),
                timeout: source.timeout,
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

        async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
            match &self.conn {
                Conn::Single(conn) => {
                    conn.run(self.timeout, |mut c| async move {
                        cmd.query_async(&mut c).await
                    })
                    .await
                }
                Conn::Cluster(conn) => conn.run(self.timeout, |c| cluster_query(c, cmd)).await,
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
