//! [`RedisStore`]: the blocking store.

use core::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{Client, Connection, ConnectionLike};

use super::cluster::{ClusterSource, Lane};
use super::errors::classify;
use super::script::{
    Request, cas_cmd, get_cmd, issue_cmd, issue_reply, one_step_cmd, one_step_reply, redis_key,
};
use super::slots;
use super::url::{client, install_tls_provider};
use super::{RedisBuilder, Target};
use crate::Error;
use crate::otp::store::{Decision, OneStepCheck, OneStepIssue, OneStepOutcome, Store};

impl RedisBuilder<RedisStore> {
    /// Connects a blocking store: to one server, it connects once to check
    /// that the server answers and is not a cluster node; to a cluster, it
    /// asks the seed nodes whether they are in cluster mode, then learns
    /// the slot map.
    ///
    /// # Errors
    ///
    /// See [Errors](RedisStore#errors). No error holds the URL.
    pub fn connect(self) -> Result<RedisStore, Error> {
        let store = match self.target {
            None => return Err(Error::StoreConfig),
            Some(Target::Url(url)) => RedisStore::single(client(&url)?, self.timeout)?,
            Some(Target::Client(c)) => RedisStore::single(c, self.timeout)?,
            Some(Target::Cluster(seeds)) => {
                let urls: Vec<&str> = seeds.iter().map(String::as_str).collect();
                let source = ClusterSource::from_urls(&urls, self.timeout)?;
                RedisStore::cluster(source, Some(seeds))?
            }
            Some(Target::ClusterClient(c)) => {
                RedisStore::cluster(ClusterSource::from_client(c, self.timeout), None)?
            }
        };
        Ok(RedisStore {
            prefix: self.prefix,
            ..store
        })
    }
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
/// Redis on the one key it touches, and a check of a code
/// ([`Store::check_in_one_step`]) is another, which reads the subject's
/// record, decides and writes it back: verify-and-consume is a single
/// server-side step, one round trip by subject or by id, and two instances
/// verifying the same code approve it exactly once. An issue
/// ([`Store::issue_in_one_step`]) is one script as well, on one server
/// with the client's send and rate-limit counters it spends and the fraud
/// guard's prefix it counts (and a check credits on approval). On a cluster
/// the store keeps a challenge's index entry in the hash slot of its
/// subject's record ([`Store::slots_challenges`]): both keys carry the
/// hash tag of the subject's slot byte (`{ab}s:ab...`, `{ab}c:ab...`), and
/// challenge ids carry that byte (34 hex characters, see
/// [`ChallengeId`](crate::otp::ChallengeId)), so a check by id and an
/// issue are one script there too. Client counters and a fraud guard's
/// prefix record are in slots of their own there: each is one script
/// (`count.lua`), the client counters all sent at once before the issue,
/// the prefix after them, a check's budget before the check, and a
/// give-back or a prefix's credit after it. Scripts are sent by their SHA-1 (`EVALSHA`); a
/// node that does not hold one (after a restart or a failover) is sent its
/// body, once. On one server the check script reaches the record through
/// the index entry, and the issue script deletes a stale index entry, by
/// keys they build rather than receive, which Redis allows on one server;
/// a Redis-compatible server that requires every key to be declared
/// refuses these scripts, and every check by id and issue then fails with
/// [`Error::Store`]. The scripts read and write records with the `struct`
/// library every Redis script has (Redis 2.6 and later, Valkey); a server
/// without it fails them the same way. On a cluster the script runs on the node that owns the
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
/// store works again on the first call after Redis is back. (A request
/// that landed just before its connection failed is then sent again. A
/// swap fails its compare, and the operation runs once more on what it
/// wrote; a check script runs on what it wrote. A correct code is then
/// answered [`Verdict::Unknown`](crate::otp::Verdict::Unknown), a wrong
/// guess counts twice, a TOTP code is refused. An issue script finds its
/// own challenge in the record and its index entry, and reports the issue
/// made without writing again. Every such outcome fails closed; nothing is
/// approved twice. On a cluster, where the client retries on its own, a
/// give-back of a counter's use or a prefix's credit sent twice this way
/// counts twice: one use more for that window, one approval more for the
/// prefix.)
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
/// the replica's promotion, without a restart. Each thread's connection
/// (one per thread in use at once) notices a fault by itself; so that one
/// that sat idle through the failover does not send its first calls to
/// the frozen node, once one connection finds the cluster's primaries
/// changed, a call on any connection made before that first waits
/// (within its timeout) for that connection to be replaced. (If a
/// replacement failed within the last half timeout and none is under
/// way, the call goes ahead on the old connection.) It reconnects
/// through the
/// seed nodes and, for a store opened from URLs, the nodes the cluster
/// last reported, so one seed that fails is not fatal; a store on a
/// caller's [`ClusterClient`](RedisBuilder::cluster_client) reconnects
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
/// One timeout (2 s by default, [`RedisBuilder::timeout`]) bounds
/// opening (connect, authenticate, first command). On one server it bounds
/// every read and write on every pooled connection: a Redis that is down,
/// refuses the connection or stops answering turns into [`Error::Store`]
/// within about twice that (connecting and one command), never a hang. On
/// a cluster it bounds each request as a whole, whatever the connection is
/// doing inside: the client's own tries (redirections included) get a
/// third of it each. A check or an issue that spends client counters or a
/// prefix on a cluster is up to three requests in a row (counters,
/// prefix, subject), and a give-back, each bounded so.
///
/// # Errors
///
/// When opening: [`Error::Store`] if Redis is unreachable or timed out;
/// [`Error::StoreConfig`] if no target was set, the URL is not a Redis URL,
/// `rediss://` without the `redis-tls` feature, an empty seed list, or a
/// single-node store opened on a cluster node (or the reverse); [`Error::StoreAuth`] if the server
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
/// let store = RedisStore::builder()
///     .url("redis://127.0.0.1:6379/")
///     .prefix("myapp:otp:")
///     .connect()?;
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
    /// A builder for a blocking Redis store: see [`RedisBuilder`].
    pub fn builder() -> RedisBuilder<RedisStore> {
        RedisBuilder::new()
    }

    /// A store on one server, through `client`: connects once to check the
    /// server answers and is not a cluster node.
    fn single(client: Client, timeout: Duration) -> Result<RedisStore, Error> {
        install_tls_provider();
        let store = RedisStore {
            node: Node::Single {
                client,
                idle: Mutex::new(Vec::new()),
            },
            prefix: String::new(),
            timeout,
        };
        let mut conn = store.connect_single()?;
        check_single(&mut conn)?;
        store.put_back(conn);
        Ok(store)
    }

    /// A store on a cluster: its first lane connects now.
    fn cluster(source: ClusterSource, probe: Option<Vec<String>>) -> Result<RedisStore, Error> {
        let source = Arc::new(source);
        let lane = Lane::open(&source, probe)?;
        Ok(RedisStore {
            timeout: source.timeout,
            node: Node::Cluster {
                source,
                lanes: Mutex::new(vec![lane]),
            },
            prefix: String::new(),
        })
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
    fn query<T: redis::FromRedisValue + Send>(&self, cmd: Request) -> Result<T, Error> {
        match &self.node {
            Node::Single { idle, .. } => {
                let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                self.query_single(pooled, &cmd)
            }
            Node::Cluster { .. } => self.on_lane(|lane| lane.call(&cmd, self.timeout)),
        }
    }

    /// Runs `op` on a pooled lane (a cluster), made when none is idle.
    fn on_lane<T>(&self, op: impl FnOnce(&Lane) -> Result<T, Error>) -> Result<T, Error> {
        let Node::Cluster { source, lanes } = &self.node else {
            return Err(Error::StoreConfig);
        };
        let pooled = lanes.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let lane = match pooled {
            Some(lane) => lane,
            // Connects within the call's own timeout.
            None => Lane::new(source)?,
        };
        let result = op(&lane);
        // A lane renews its connection on its own after a fault.
        lanes.lock().unwrap_or_else(|e| e.into_inner()).push(lane);
        result
    }

    /// Runs `cmd` on `pooled` (or a new connection); a connection that
    /// failed is dropped.
    ///
    /// A pooled connection that fails on I/O (Redis restarted, an idle
    /// connection dropped by the network) is replaced by a fresh one and
    /// the command sent once more: a compare-and-swap that did land the
    /// first time then fails its compare, and a script runs on what it
    /// wrote (see the store's docs): each fails closed.
    fn query_single<T: redis::FromRedisValue>(
        &self,
        pooled: Option<Connection>,
        cmd: &Request,
    ) -> Result<T, Error> {
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect_single().map_err(|_| Error::Store)?,
        };
        let result = match cmd.run(&mut conn) {
            Err(e) if reused && e.is_io_error() && !e.is_timeout() => {
                conn = self.connect_single().map_err(|_| Error::Store)?;
                cmd.run(&mut conn)
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
        self.query(get_cmd(&redis_key(
            &self.prefix,
            key,
            matches!(self.node, Node::Cluster { .. }),
        )))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let key = redis_key(&self.prefix, key, matches!(self.node, Node::Cluster { .. }));
        self.query::<i64>(cas_cmd(&key, expected, new, expires_ms, now_ms))
            .map(|swapped| swapped == 1)
    }

    /// One script (see [`Store::check_in_one_step`]); on a cluster one per
    /// slot: the client's check budget, the subject, then the budget's
    /// give-back and the prefix's credit at once. By an id without a slot
    /// byte on a cluster, the caller reads the index entry first.
    fn check_in_one_step(&self, check: &OneStepCheck<'_>) -> Result<Option<OneStepOutcome>, Error> {
        if matches!(self.node, Node::Cluster { .. }) {
            return self.on_lane(|lane| {
                lane.block_on(slots::check(lane.conn(), self.timeout, check, &self.prefix))
            });
        }
        match one_step_cmd(check, &self.prefix, false) {
            None => Ok(Some(OneStepOutcome(Decision::IndexFirst))),
            Some(cmd) => one_step_reply(self.query(cmd)?, check).map(Some),
        }
    }

    /// One script on one server (see [`Store::issue_in_one_step`]); on a
    /// cluster one per slot: the client counters at once, the fraud
    /// guard's prefix, then the subject.
    fn issue_in_one_step(&self, issue: &OneStepIssue<'_>) -> Result<Option<OneStepOutcome>, Error> {
        if matches!(self.node, Node::Cluster { .. }) {
            return self.on_lane(|lane| {
                lane.block_on(slots::issue(lane.conn(), self.timeout, issue, &self.prefix))
            });
        }
        match issue_cmd(issue, &self.prefix, false) {
            None => Ok(None),
            Some(cmd) => issue_reply(self.query(cmd)?, issue).map(Some),
        }
    }

    /// On a cluster: a challenge's index entry goes in the slot of its
    /// subject's record (see [`Store::slots_challenges`]).
    fn slots_challenges(&self) -> bool {
        matches!(self.node, Node::Cluster { .. })
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
