//! Failover under load on a Redis Cluster with replicas: three primaries
//! with a replica each, started by this test on six free ports. The stores
//! get one seed node, the primary that is frozen last, so that they must
//! reconnect through the nodes the cluster told them of.
//!
//! Blocking threads and async tasks issue and verify codes without pause
//! while one primary is failed over gracefully (`CLUSTER FAILOVER`), one is
//! killed (`SIGKILL`) and one is frozen (`SIGSTOP`, resumed later). Eight
//! more blocking threads run for a while before each fault and again once
//! the recovery bound has passed (before a frozen primary is resumed), so
//! the blocking store has connections that sat idle through the fault and
//! must serve at once when used again. For each fault, on both stores:
//!
//! - every store call returns within the store's timeout (plus scheduling
//!   slack), so an operation (up to four calls) within four;
//! - operations fail, with `Error::Store` only, between the fault and
//!   twice the store's timeout after the replica's promotion, never outside;
//! - no code is approved twice, and no key admitted twice by
//!   `AcceptOnce` (each approved code's id is admitted once, then again);
//! - after the run, 200 issue-and-check rounds on each store all succeed,
//!   without reopening either store.
//!
//! Needs `redis-server` and `redis-cli`. Under CI their absence fails the
//! test; elsewhere it says "SKIPPED" and returns. Set
//! `PINSEAL_FAILOVER_REPORT=1` to print each scenario's timeline.
#![cfg(feature = "redis-tokio")]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use pinseal::otp::store::{AsyncRedisStore, AsyncStore, RedisStore, Store};
use pinseal::otp::{AcceptOnce, ChallengeId, Otp, Policy, SystemClock, Verdict, aio};
use pinseal::{Error, ExposeSecret, Key, Secret};

/// The cluster's `cluster-node-timeout`: how long a silent primary is
/// waited for before its replica takes over (2 s;
/// `PINSEAL_FAILOVER_NODE_TIMEOUT_MS` sets another).
static NODE_TIMEOUT: LazyLock<Duration> =
    LazyLock::new(|| millis_from_env("PINSEAL_FAILOVER_NODE_TIMEOUT_MS", 2000));
/// The stores' timeout (1 s; `PINSEAL_FAILOVER_STORE_TIMEOUT_MS` sets
/// another).
static STORE_TIMEOUT: LazyLock<Duration> =
    LazyLock::new(|| millis_from_env("PINSEAL_FAILOVER_STORE_TIMEOUT_MS", 1000));

/// How long after a promotion calls may still start and fail: the bound
/// the stores document, twice their timeout.
fn recovery_bound() -> Duration {
    2 * *STORE_TIMEOUT
}

fn millis_from_env(var: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}
/// Slack over the timeout for one call: thread scheduling on a loaded
/// two-core machine running six Redis processes and the load.
const SLACK: Duration = Duration::from_millis(500);
const NODES: u16 = 6;
const BLOCKING_THREADS: usize = 4;
const ASYNC_TASKS: usize = 16;
/// Blocking threads that run for [`BURST`] before the fault and again
/// after the recovery bound.
const BURST_THREADS: usize = 8;
const BURST: Duration = Duration::from_millis(1200);

fn report() -> bool {
    std::env::var_os("PINSEAL_FAILOVER_REPORT").is_some()
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

/// A short-timeout admin connection to one node, or `None` if it does not
/// answer.
fn admin(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(url(port)).ok()?;
    let conn = client
        .get_connection_with_timeout(Duration::from_millis(300))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    conn.set_write_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    Some(conn)
}

fn query(port: u16, args: &[&str]) -> Option<String> {
    let mut conn = admin(port)?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<String>(&mut conn).ok()
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    primary: bool,
    failed: bool,
    primary_id: String,
    slots: bool,
}

fn nodes_seen_by(port: u16) -> Option<Vec<NodeLine>> {
    let text = query(port, &["CLUSTER", "NODES"])?;
    Some(
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                let addr = f.get(1)?.split('@').next()?;
                let port = addr.rsplit(':').next()?.parse().ok()?;
                let flags = f.get(2)?;
                Some(NodeLine {
                    id: f[0].to_string(),
                    port,
                    primary: flags.contains("master"),
                    failed: flags.contains("fail") && !flags.contains("fail?"),
                    primary_id: f.get(3)?.to_string(),
                    slots: f.len() > 8,
                })
            })
            .collect(),
    )
}

struct Cluster {
    dir: PathBuf,
    ports: Vec<u16>,
    children: HashMap<u16, Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = signal(child.id(), "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Six consecutive free ports whose cluster bus ports (+10000) are free
/// too.
fn free_ports() -> Vec<u16> {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..100 {
        let mut r = [0u8; 2];
        getrandom::fill(&mut r).unwrap();
        let base = 20_000 + u16::from_le_bytes(r) % 20_000;
        let ports: Vec<u16> = (base..base + NODES).collect();
        if ports.iter().all(|&p| free(p) && free(p + 10_000)) {
            return ports;
        }
    }
    panic!("no six free ports");
}

/// Stops the servers of an earlier run that was killed before it could
/// (a frozen one would otherwise stay frozen): each run lists its servers'
/// process ids in `pids` in its directory.
fn stop_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pinseal-failover-"))
        {
            continue;
        }
        let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
        for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            // Only a process that is still one of that run's servers.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                signal(pid, "CONT");
                signal(pid, "KILL");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Cluster {
    fn start() -> Option<Cluster> {
        stop_leftovers();
        let dir = std::env::temp_dir().join(format!(
            "pinseal-failover-{}",
            common::unique_prefix().replace(':', "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster {
            dir,
            ports: free_ports(),
            children: HashMap::new(),
        };
        for port in cluster.ports.clone() {
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--cluster-enabled", "yes"])
                .args([
                    "--cluster-node-timeout",
                    &NODE_TIMEOUT.as_millis().to_string(),
                ])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .arg("--logfile")
                .arg(node_dir.join("redis.log"))
                .stdout(Stdio::null())
                .spawn();
            let Ok(child) = child else {
                common::unavailable("the redis-server binary");
                return None;
            };
            cluster.children.insert(port, child);
            let pids: Vec<String> = cluster
                .children
                .values()
                .map(|c| c.id().to_string())
                .collect();
            std::fs::write(cluster.dir.join("pids"), pids.join("\n")).unwrap();
        }
        for &port in &cluster.ports {
            wait_for("redis-server to start", Duration::from_secs(10), || {
                query(port, &["PING"]).is_some()
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let created = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match created {
            Ok(status) => assert!(status.success(), "redis-cli --cluster create failed"),
            Err(_) => {
                common::unavailable("the redis-cli binary");
                return None;
            }
        }
        cluster.wait_healthy();
        Some(cluster)
    }

    /// Waits until every live node sees the cluster as ok, every primary
    /// has a replica whose link is up, and no node is flagged failed.
    fn wait_healthy(&self) {
        wait_for("a healthy cluster", Duration::from_secs(30), || {
            let live: Vec<u16> = self.children.keys().copied().collect();
            live.iter().all(|&port| {
                query(port, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok"))
                    && nodes_seen_by(port).is_some_and(|nodes| {
                        let primaries: Vec<&NodeLine> =
                            nodes.iter().filter(|n| n.primary && n.slots).collect();
                        primaries.len() == 3
                            && nodes.iter().all(|n| !n.failed)
                            && primaries.iter().all(|p| {
                                nodes.iter().any(|r| {
                                    r.primary_id == p.id
                                        && query(r.port, &["INFO", "replication"])
                                            .is_some_and(|i| i.contains("master_link_status:up"))
                                })
                            })
                    })
            })
        });
    }

    /// The (primary, replica) port pairs, as the first live node sees them.
    fn shards(&self) -> Vec<(u16, u16)> {
        let port = *self.children.keys().next().unwrap();
        let nodes = nodes_seen_by(port).unwrap();
        let mut shards: Vec<(u16, u16)> = nodes
            .iter()
            .filter(|n| n.primary && n.slots && !n.failed)
            .filter_map(|p| {
                nodes
                    .iter()
                    .find(|r| r.primary_id == p.id && !r.failed)
                    .map(|r| (p.port, r.port))
            })
            .collect();
        shards.sort_unstable();
        shards
    }

    fn pid(&self, port: u16) -> u32 {
        self.children[&port].id()
    }

    /// Whether `port` is a primary in the eyes of `observer`.
    fn is_primary(observer: u16, port: u16) -> bool {
        nodes_seen_by(observer).is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n.port == port && n.primary && n.slots && !n.failed)
        })
    }
}

/// A store that keeps the longest time one of its calls took.
struct Timed<S> {
    inner: S,
    slowest: Arc<Mutex<Duration>>,
}

impl<S> Timed<S> {
    fn new(inner: S) -> Self {
        Timed {
            inner,
            slowest: Arc::default(),
        }
    }
    fn time<T>(&self, start: Instant, r: T) -> T {
        let took = start.elapsed();
        let mut slowest = self.slowest.lock().unwrap();
        *slowest = (*slowest).max(took);
        r
    }
    /// The longest call since the last `take_slowest`.
    fn take_slowest(&self) -> Duration {
        std::mem::take(&mut *self.slowest.lock().unwrap())
    }
}

impl<S: Store> Store for Timed<S> {
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        self.time(Instant::now(), self.inner.get(key, now_ms))
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let start = Instant::now();
        let r = self
            .inner
            .compare_and_swap(key, expected, new, expires_ms, now_ms);
        self.time(start, r)
    }
}

impl<S: AsyncStore> AsyncStore for Timed<S> {
    async fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        let start = Instant::now();
        let r = self.inner.get(key, now_ms).await;
        self.time(start, r)
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let start = Instant::now();
        let r = self
            .inner
            .compare_and_swap(key, expected, new, expires_ms, now_ms)
            .await;
        self.time(start, r)
    }
}

/// What one call did.
#[derive(Debug, Clone, Copy)]
struct Event {
    store: &'static str,
    op: &'static str,
    /// When the call started, from the start of the load.
    at: Duration,
    took: Duration,
    error: Option<Error>,
}

#[derive(Default)]
struct Log {
    events: Mutex<Vec<Event>>,
    /// Approved codes, with when their approving call started.
    approved: Mutex<Vec<(Duration, ChallengeId, Secret<String>)>>,
    /// Codes answered `Approved` a second time.
    twice: AtomicU64,
    /// Right codes answered `Unknown`: spent by a try whose answer was
    /// lost.
    lost: AtomicU64,
    /// Keys admitted, with when their admitting call started.
    admitted: Mutex<Vec<(Duration, String)>>,
    /// Keys admitted a second time.
    admitted_twice: AtomicU64,
}

impl Log {
    fn record<T>(
        &self,
        t0: Instant,
        store: &'static str,
        op: &'static str,
        start: Instant,
        r: &Result<T, Error>,
    ) {
        self.events.lock().unwrap().push(Event {
            store,
            op,
            at: start - t0,
            took: start.elapsed(),
            error: r.as_ref().err().copied(),
        });
    }
}

fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(120), 5)
        .unwrap()
        .with_send_budget(1000, Duration::from_secs(600))
        .unwrap()
}

fn blocking_service(
    seed: &str,
    prefix: &str,
) -> (Otp<Arc<Timed<RedisStore>>, SystemClock>, BlockingOnce) {
    let seeds = [seed];
    let store = RedisStore::builder()
        .cluster(seeds)
        .timeout(*STORE_TIMEOUT)
        .prefix(prefix)
        .connect()
        .unwrap();
    let store = Arc::new(Timed::new(store));
    (
        Otp::with_parts(
            &Key::from_bytes([9; 32]),
            policy(),
            store.clone(),
            SystemClock,
        ),
        AcceptOnce::with_parts(&Key::from_bytes([10; 32]), store, SystemClock),
    )
}

/// The accept-once set every round admits its approved code's id in, on
/// the OTP service's own store (one connection for both, as a service
/// would have).
type BlockingOnce = AcceptOnce<Arc<Timed<RedisStore>>, SystemClock>;
type AsyncOnce = aio::AcceptOnce<Arc<Timed<AsyncRedisStore>>, SystemClock>;
const ADMIT_TTL: Duration = Duration::from_secs(600);

async fn async_service(
    seed: &str,
    prefix: &str,
) -> (
    aio::Otp<Arc<Timed<AsyncRedisStore>>, SystemClock>,
    AsyncOnce,
) {
    let seeds = [seed];
    let store = AsyncRedisStore::builder()
        .cluster(seeds)
        .timeout(*STORE_TIMEOUT)
        .prefix(prefix)
        .connect()
        .await
        .unwrap();
    let store = Arc::new(Timed::new(store));
    (
        aio::Otp::with_parts(
            &Key::from_bytes([9; 32]),
            policy(),
            store.clone(),
            SystemClock,
        ),
        aio::AcceptOnce::with_parts(&Key::from_bytes([10; 32]), store, SystemClock),
    )
}

/// One worker's round: issue, verify until decided (retrying a failed
/// verify), then verify once more, which must not approve.
fn blocking_round(
    otp: &Otp<Arc<Timed<RedisStore>>, SystemClock>,
    once: &BlockingOnce,
    subject: &str,
    log: &Log,
    t0: Instant,
    stop: &AtomicBool,
) {
    let start = Instant::now();
    let issued = otp.issue(subject);
    log.record(t0, "blocking", "issue", start, &issued);
    let Ok((id, code)) = issued else { return };
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let verdict = otp.verify(&id, code.expose_secret());
        log.record(t0, "blocking", "verify", start, &verdict);
        match verdict {
            Ok(Verdict::Approved) => {
                if otp.verify(&id, code.expose_secret()) == Ok(Verdict::Approved) {
                    log.twice.fetch_add(1, Ordering::Relaxed);
                }
                log.approved.lock().unwrap().push((start - t0, id, code));
                let key = id.to_string();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let admitted = once.admit(&[key.as_str()], ADMIT_TTL);
                    log.record(t0, "blocking", "admit", start, &admitted);
                    match admitted {
                        Ok(true) => {
                            if once.admit(&[key.as_str()], ADMIT_TTL) == Ok(true) {
                                log.admitted_twice.fetch_add(1, Ordering::Relaxed);
                            }
                            log.admitted.lock().unwrap().push((start - t0, key));
                            return;
                        }
                        // An earlier try landed and its answer was lost:
                        // refused, which fails closed.
                        Ok(false) => return,
                        Err(_) => {}
                    }
                }
                return;
            }
            // An earlier try whose answer was lost (a failed call, or a
            // try inside the client that timed out after landing) may
            // have consumed the code: that fails closed.
            Ok(Verdict::Unknown) => {
                log.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(other) => panic!("blocking: the right code answered {other:?}"),
            Err(_) => {}
        }
    }
}

async fn async_round(
    otp: &aio::Otp<Arc<Timed<AsyncRedisStore>>, SystemClock>,
    once: &AsyncOnce,
    subject: &str,
    log: &Log,
    t0: Instant,
    stop: &AtomicBool,
) {
    let start = Instant::now();
    let issued = otp.issue(subject).await;
    log.record(t0, "async", "issue", start, &issued);
    let Ok((id, code)) = issued else { return };
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let verdict = otp.verify(&id, code.expose_secret()).await;
        log.record(t0, "async", "verify", start, &verdict);
        match verdict {
            Ok(Verdict::Approved) => {
                if otp.verify(&id, code.expose_secret()).await == Ok(Verdict::Approved) {
                    log.twice.fetch_add(1, Ordering::Relaxed);
                }
                log.approved.lock().unwrap().push((start - t0, id, code));
                let key = id.to_string();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let admitted = once.admit(&[key.as_str()], ADMIT_TTL).await;
                    log.record(t0, "async", "admit", start, &admitted);
                    match admitted {
                        Ok(true) => {
                            if once.admit(&[key.as_str()], ADMIT_TTL).await == Ok(true) {
                                log.admitted_twice.fetch_add(1, Ordering::Relaxed);
                            }
                            log.admitted.lock().unwrap().push((start - t0, key));
                            return;
                        }
                        Ok(false) => return,
                        Err(_) => {}
                    }
                }
                return;
            }
            // An earlier try whose answer was lost (a failed call, or a
            // try inside the client that timed out after landing) may
            // have consumed the code: that fails closed.
            Ok(Verdict::Unknown) => {
                log.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(other) => panic!("async: the right code answered {other:?}"),
            Err(_) => {}
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Graceful,
    Kill,
    Freeze,
}

/// Runs the load while `fault` hits the primary of shard `shard`, then
/// checks the timeline.
fn scenario(
    cluster: &mut Cluster,
    fault: Fault,
    shard: (u16, u16),
    blocking: &Arc<Otp<Arc<Timed<RedisStore>>, SystemClock>>,
    aio: &Arc<aio::Otp<Arc<Timed<AsyncRedisStore>>, SystemClock>>,
    (blocking_once, async_once): (&Arc<BlockingOnce>, &Arc<AsyncOnce>),
    rt: &tokio::runtime::Runtime,
) {
    let (primary, replica) = shard;
    let observer = *cluster
        .ports
        .iter()
        .find(|&&p| p != primary && p != replica && cluster.children.contains_key(&p))
        .unwrap();
    let log = Arc::new(Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let round = Arc::new(AtomicU64::new(0));
    let label = format!("{fault:?}");

    let spawn = |w: usize, stop: &Arc<AtomicBool>| {
        let (otp, once, log, stop, round, label) = (
            blocking.clone(),
            blocking_once.clone(),
            log.clone(),
            stop.clone(),
            round.clone(),
            label.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = round.fetch_add(1, Ordering::Relaxed);
                blocking_round(&otp, &once, &format!("{label}-b{w}-{n}"), &log, t0, &stop);
            }
        })
    };
    let worker = |w: usize| spawn(w, &stop);
    // A burst of `BURST_THREADS` more blocking threads for `BURST`: the
    // store makes a lane for each thread that finds none idle, and the
    // steady load afterwards takes only the lanes it needs, so the rest
    // sit idle until the next burst.
    let burst = || {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..BURST_THREADS)
            .map(|w| spawn(BLOCKING_THREADS + 1 + w, &stop))
            .collect();
        std::thread::sleep(BURST);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
    };
    let mut threads: Vec<_> = (0..BLOCKING_THREADS).map(worker).collect();
    burst();
    let tasks: Vec<_> = (0..ASYNC_TASKS)
        .map(|w| {
            let (otp, once, log, stop, round, label) = (
                aio.clone(),
                async_once.clone(),
                log.clone(),
                stop.clone(),
                round.clone(),
                label.clone(),
            );
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = round.fetch_add(1, Ordering::Relaxed);
                    async_round(&otp, &once, &format!("{label}-a{w}-{n}"), &log, t0, &stop).await;
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500).saturating_sub(BURST));
    let fault_at = t0.elapsed();
    // One more blocking thread from the fault on: it needs a lane of its
    // own, whose connection is made in the middle of the fault.
    threads.push(worker(BLOCKING_THREADS));
    match fault {
        Fault::Graceful => {
            query(replica, &["CLUSTER", "FAILOVER"]).expect("CLUSTER FAILOVER");
        }
        Fault::Kill => {
            let mut child = cluster.children.remove(&primary).unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
        }
        Fault::Freeze => assert!(signal(cluster.pid(primary), "STOP")),
    }
    wait_for("the replica's promotion", Duration::from_secs(30), || {
        Cluster::is_primary(observer, replica)
    });
    let promoted_at = t0.elapsed();
    // Past the recovery bound, and while a frozen primary is still
    // frozen, the lanes that sat idle through the fault are used again:
    // they too must have recovered.
    std::thread::sleep(recovery_bound() + Duration::from_millis(100));
    burst();
    std::thread::sleep(Duration::from_millis(1400).saturating_sub(BURST));
    let mut resumed_at = None;
    if fault == Fault::Freeze {
        assert!(signal(cluster.pid(primary), "CONT"));
        resumed_at = Some(t0.elapsed());
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    rt.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });

    let slowest_store_call = [
        ("blocking", blocking.store().take_slowest()),
        ("async", aio.store().take_slowest()),
    ];
    let events = log.events.lock().unwrap().clone();
    let recovered_at = promoted_at + recovery_bound();
    let mut failures = Vec::new();
    for store in ["blocking", "async"] {
        let mine: Vec<&Event> = events.iter().filter(|e| e.store == store).collect();
        let errors: Vec<&&Event> = mine.iter().filter(|e| e.error.is_some()).collect();
        let slowest = mine.iter().map(|e| e.took).max().unwrap_or_default();
        let last_error_end = errors.iter().map(|e| e.at + e.took).max();
        let first_error = errors.iter().map(|e| e.at).min();
        if report() {
            let fmt = |d: Option<Duration>| {
                d.map_or("-".to_string(), |d| {
                    format!("{:+.2}s", d.as_secs_f64() - promoted_at.as_secs_f64())
                })
            };
            eprintln!(
                "{label:8} {store:8}: {} operations ({} ok), {} errors {:?}; slowest operation {:.2}s, store call {:.2}s; fault at {}, \
                 promotion at {:.2}s after the fault, first error {}, last error ended {} (relative to the promotion){}",
                mine.len(),
                mine.len() - errors.len(),
                errors.len(),
                errors
                    .iter()
                    .fold(HashMap::<String, usize>::new(), |mut m, e| {
                        *m.entry(format!("{}:{:?}", e.op, e.error.unwrap()))
                            .or_default() += 1;
                        m
                    }),
                slowest.as_secs_f64(),
                slowest_store_call
                    .iter()
                    .find(|(s, _)| *s == store)
                    .unwrap()
                    .1
                    .as_secs_f64(),
                fmt(Some(fault_at)),
                (promoted_at - fault_at).as_secs_f64(),
                fmt(first_error),
                fmt(last_error_end),
                resumed_at.map_or(String::new(), |r| format!(", resumed {}", fmt(Some(r)))),
            );
        }
        let (_, slowest_call) = slowest_store_call
            .iter()
            .find(|(s, _)| *s == store)
            .unwrap();
        if *slowest_call > *STORE_TIMEOUT + SLACK {
            failures.push(format!("{store}: a store call took {slowest_call:?}"));
        }
        // An operation makes at most four store calls in a row.
        if slowest > 4 * (*STORE_TIMEOUT + SLACK) {
            failures.push(format!("{store}: an operation took {slowest:?}"));
        }
        for e in &errors {
            if e.error != Some(Error::Store) {
                failures.push(format!("{store}: {:?} is not Error::Store", e.error));
            }
            if e.at + e.took < fault_at {
                failures.push(format!("{store}: an error before the fault, at {:?}", e.at));
            }
            if e.at > recovered_at {
                failures.push(format!(
                    "{store}: a {} failed {:?} after the promotion",
                    e.op,
                    e.at - promoted_at
                ));
            }
        }
        let ok_after = mine
            .iter()
            .filter(|e| e.at > recovered_at && e.error.is_none())
            .count();
        if ok_after == 0 {
            failures.push(format!(
                "{store}: no call succeeded after the recovery bound"
            ));
        }
    }
    if report() {
        eprintln!(
            "{label:8} right codes answered not_found after a lost answer: {}",
            log.lost.load(Ordering::Relaxed)
        );
    }
    let twice = log.twice.load(Ordering::Relaxed);
    if twice != 0 {
        failures.push(format!("{twice} codes approved twice"));
    }
    let admitted_twice = log.admitted_twice.load(Ordering::Relaxed);
    if admitted_twice != 0 {
        failures.push(format!("{admitted_twice} keys admitted twice"));
    }
    // Every key admitted from a second before the fault to the promotion
    // stays admitted after it.
    let admitted = log.admitted.lock().unwrap();
    if admitted.is_empty() {
        failures.push("no key was admitted".into());
    }
    for (_, key) in admitted
        .iter()
        .filter(|(at, _)| *at + Duration::from_secs(1) >= fault_at && *at <= promoted_at)
    {
        if blocking_once.admit(&[key.as_str()], ADMIT_TTL) == Ok(true) {
            failures.push("a key admitted during the run was admitted again after it".into());
        }
    }
    // Every code approved from a second before the fault to the promotion
    // stays spent after it (an approval the old primary acknowledged and
    // did not pass on to its replica would be pending again).
    let approved = log.approved.lock().unwrap();
    let around_fault = approved
        .iter()
        .filter(|(at, _, _)| *at + Duration::from_secs(1) >= fault_at && *at <= promoted_at);
    for (_, id, code) in around_fault {
        if blocking.verify(id, code.expose_secret()) == Ok(Verdict::Approved) {
            failures.push("a code approved during the run was approved again after it".into());
        }
    }
    assert!(failures.is_empty(), "{label}: {failures:#?}");
}

#[test]
fn stores_recover_from_failover_kill_and_freeze_without_a_restart() {
    let started = Instant::now();
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    if report() {
        eprintln!("cluster up in {:.1}s", started.elapsed().as_secs_f64());
    }
    let prefix = common::unique_prefix();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let shards = cluster.shards();
    assert_eq!(shards.len(), 3, "{shards:?}");
    // One seed, the primary that will be frozen: after that, the stores
    // reconnect through the nodes the cluster told them of.
    let seed = url(shards[2].0);
    let (blocking, blocking_once) = blocking_service(&seed, &prefix);
    let (aio, async_once) = rt.block_on(async_service(&seed, &prefix));
    let (blocking, aio) = (Arc::new(blocking), Arc::new(aio));
    let onces = (Arc::new(blocking_once), Arc::new(async_once));
    let onces = (&onces.0, &onces.1);

    scenario(
        &mut cluster,
        Fault::Graceful,
        shards[0],
        &blocking,
        &aio,
        onces,
        &rt,
    );
    scenario(
        &mut cluster,
        Fault::Kill,
        shards[1],
        &blocking,
        &aio,
        onces,
        &rt,
    );
    scenario(
        &mut cluster,
        Fault::Freeze,
        shards[2],
        &blocking,
        &aio,
        onces,
        &rt,
    );

    if report() {
        eprintln!("scenarios done at {:.1}s", started.elapsed().as_secs_f64());
    }
    // Without reopening either store: 200 rounds each, all approved.
    for i in 0..200 {
        let subject = format!("after-b{i}");
        let (_, code) = blocking
            .issue(&subject)
            .expect("blocking issue after the run");
        assert_eq!(
            blocking.check(&subject, code.expose_secret()),
            Ok(Verdict::Approved),
            "blocking check {i} after the run"
        );
    }
    rt.block_on(async {
        for i in 0..200 {
            let subject = format!("after-a{i}");
            let (_, code) = aio
                .issue(&subject)
                .await
                .expect("async issue after the run");
            assert_eq!(
                aio.check(&subject, code.expose_secret()).await,
                Ok(Verdict::Approved),
                "async check {i} after the run"
            );
        }
    });
}
