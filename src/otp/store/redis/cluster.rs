//! The cluster connection both Redis stores run on: where it (re)connects
//! from, the slot map it learns, the `ASK` fallback, and the blocking
//! store's lanes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{Cmd, ErrorKind, RedisError};

use super::errors::{classify, classify_cluster_open, open_error, timed_out};
use super::renew::{Connect, Renewing, lock};
use super::script::Request;
use super::url::{client, install_tls_provider};
use crate::Error;
use crate::deadline::bounded;

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
pub(super) async fn cluster_query<T: redis::FromRedisValue>(
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
pub(super) struct ClusterSource {
    seeds: Seeds,
    /// The cluster's nodes (primaries first) as the last connection saw
    /// them, with the seeds' credentials and TLS settings.
    known: Mutex<Vec<redis::ConnectionInfo>>,
    /// The cluster's primaries (sorted) as the last connection that asked
    /// saw them, and the number of that view.
    view: Mutex<(Vec<(String, u16)>, u64)>,
    /// The latest view's number: it grows each time a connection finds
    /// the primaries changed (a replica promoted, a node added or
    /// removed), and a connection made under an older view is replaced
    /// before its next use (see [`Renewing`]).
    latest_view: Arc<AtomicU64>,
    pub(super) timeout: Duration,
}

impl ClusterSource {
    /// A source for the seed URLs `urls`.
    ///
    /// # Errors
    ///
    /// [`Error::StoreConfig`] for an empty list or a URL that is not a
    /// Redis URL (or `rediss://` without the `redis-tls` feature).
    pub(super) fn from_urls(urls: &[&str], timeout: Duration) -> Result<ClusterSource, Error> {
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
            view: Mutex::new((Vec::new(), 0)),
            latest_view: Arc::new(AtomicU64::new(0)),
            timeout,
        })
    }

    pub(super) fn from_client(client: ClusterClient, timeout: Duration) -> ClusterSource {
        install_tls_provider();
        ClusterSource {
            seeds: Seeds::Client(client),
            known: Mutex::new(Vec::new()),
            view: Mutex::new((Vec::new(), 0)),
            latest_view: Arc::new(AtomicU64::new(0)),
            timeout,
        }
    }

    /// A new cluster connection, within the timeout, and the number of the
    /// view of the cluster it was made under: the one it learns, or, when
    /// the cluster does not say within a third of the timeout, the latest
    /// when it started to connect (so a change seen meanwhile renews it).
    /// Learns the cluster's nodes for the next one.
    async fn connect(
        &self,
    ) -> Result<(redis::cluster_async::ClusterConnection, Option<u64>), RedisError> {
        let started_under = self.latest_view.load(Ordering::Acquire);
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
        let Some((primaries, replicas)) = cluster_slots(conn.clone(), self.timeout / 3).await
        else {
            return Ok((conn, Some(started_under)));
        };
        if let Seeds::Nodes(seeds) = &self.seeds {
            let nodes = with_settings_of(&seeds[0], &primaries, &replicas);
            if !nodes.is_empty() {
                *lock(&self.known) = nodes;
            }
        }
        Ok((conn, Some(self.saw(primaries))))
    }

    /// Records that a connection saw `primaries`; returns the number of
    /// that view, a new one if they are not the primaries last seen.
    ///
    /// Two connections that ask nodes of different views, while the
    /// cluster agrees on a change, may each start a view; that costs the
    /// blocking store's lanes a reconnection each, not an error.
    fn saw(&self, mut primaries: Vec<(String, u16)>) -> u64 {
        primaries.sort_unstable();
        let mut view = lock(&self.view);
        if primaries.is_empty() {
            // No endpoint given (`?`, or none announced): nothing to tell.
            return view.1;
        }
        if view.0 != primaries {
            if !view.0.is_empty() {
                view.1 += 1;
                self.latest_view.store(view.1, Ordering::Release);
            }
            view.0 = primaries;
        }
        view.1
    }

    /// A connection that starts with `first` (or connects on first use)
    /// and is renewed after a fault.
    fn renewing(
        self: &Arc<Self>,
        first: Option<(redis::cluster_async::ClusterConnection, Option<u64>)>,
    ) -> ClusterConn {
        let source = self.clone();
        let connect: Connect<_> = Arc::new(move || {
            let source = source.clone();
            Box::pin(async move { source.connect().await })
        });
        // A renewal gets half a timeout before the next may start: a
        // frozen seed alone costs it a third.
        Arc::new(Renewing::new(
            first,
            self.timeout / 2,
            connect,
            Some(self.latest_view.clone()),
        ))
    }
}

/// The primaries and the replicas (host and port, each once) of the
/// cluster `conn` is connected to, from
/// `CLUSTER SLOTS`; `None` if the cluster does not answer in time.
async fn cluster_slots(
    mut conn: redis::cluster_async::ClusterConnection,
    timeout: Duration,
) -> Option<(Vec<(String, u16)>, Vec<(String, u16)>)> {
    use redis::Value;
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
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
    Some((primaries, replicas))
}

/// `primaries` then `replicas`, at most [`KNOWN_NODES`] in all, each with
/// `template`'s credentials and TLS settings; none if the template is a
/// Unix socket.
fn with_settings_of(
    template: &redis::ConnectionInfo,
    primaries: &[(String, u16)],
    replicas: &[(String, u16)],
) -> Vec<redis::ConnectionInfo> {
    use redis::ConnectionAddr;
    primaries
        .iter()
        .chain(replicas)
        .take(KNOWN_NODES)
        .filter_map(|(host, port)| {
            let (host, port) = (host.clone(), *port);
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
        .collect()
}

/// A cluster connection that renews itself after a fault, as
/// `AsyncRedisStore` and each [`Lane`] of a blocking [`RedisStore`] hold
/// one.
pub(super) type ClusterConn = Arc<Renewing<redis::cluster_async::ClusterConnection>>;

/// Asks the seed nodes, in turn, whether they are in cluster mode: the
/// first that answers decides. None answering is [`Error::Store`] (or how
/// the last one refused).
pub(super) async fn probe_seeds(urls: &[String], timeout: Duration) -> Result<(), Error> {
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
pub(super) async fn open_cluster(source: &Arc<ClusterSource>) -> Result<ClusterConn, Error> {
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
/// reconnect, a renewal connecting) advances while a call runs on it, so
/// a lane that sat idle while another saw the cluster's primaries change
/// is renewed by its next call, which waits for it (see [`Renewing`]).
pub(super) struct Lane {
    conn: ClusterConn,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Lane {
    /// A lane whose connection is made by its first call, within that
    /// call's timeout.
    pub(super) fn new(source: &Arc<ClusterSource>) -> Result<Lane, Error> {
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
    pub(super) fn open(
        source: &Arc<ClusterSource>,
        probe: Option<Vec<String>>,
    ) -> Result<Lane, Error> {
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
    pub(super) fn call<T: redis::FromRedisValue + Send>(
        &self,
        cmd: &Request,
        timeout: Duration,
    ) -> Result<T, Error> {
        self.block_on(self.conn.run(timeout, |c| cmd.run_cluster(c)))
    }

    /// The lane's cluster connection, for [`Lane::block_on`].
    pub(super) fn conn(&self) -> &ClusterConn {
        &self.conn
    }

    /// Runs `op` to completion on the lane's runtime from this thread, or,
    /// when this thread is already inside an async runtime (whose threads
    /// must not block on another one), from a scoped thread of its own.
    pub(super) fn block_on<T: Send>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ports: &[u16]) -> Vec<(String, u16)> {
        ports.iter().map(|&p| ("10.0.0.1".to_string(), p)).collect()
    }

    #[test]
    fn a_view_is_numbered_anew_only_when_the_primaries_change() {
        let source =
            ClusterSource::from_urls(&["redis://127.0.0.1:7001/"], Duration::from_secs(1)).unwrap();
        let latest = || source.latest_view.load(Ordering::Acquire);
        assert_eq!(source.saw(nodes(&[7001, 7002, 7003])), 0, "the first view");
        // The order CLUSTER SLOTS lists them in does not matter.
        assert_eq!(source.saw(nodes(&[7003, 7001, 7002])), 0);
        assert_eq!(latest(), 0);
        // A replica promoted in place of 7003.
        assert_eq!(source.saw(nodes(&[7001, 7002, 7006])), 1);
        assert_eq!(latest(), 1);
        assert_eq!(source.saw(nodes(&[7006, 7002, 7001])), 1);
        // A node that asked one whose view is behind starts one more.
        assert_eq!(source.saw(nodes(&[7001, 7002, 7003])), 2);
        assert_eq!(latest(), 2);
        // No endpoints given: nothing to tell, nothing recorded.
        assert_eq!(source.saw(Vec::new()), 2);
        assert_eq!(source.saw(nodes(&[7001, 7002, 7003])), 2);
        assert_eq!(latest(), 2);
    }
}
