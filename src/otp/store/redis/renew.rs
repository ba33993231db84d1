//! Connections that are replaced by fresh ones after a fault.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::RedisError;

use super::errors::connection_at_fault;
use crate::Error;
use crate::deadline::bounded;

pub(super) type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// Makes a new connection, connected (or, for a connection manager, ready
/// to connect on first use), with the number of the view of the servers
/// it was made under (see [`Renewing::new`]; `None` where views are not
/// numbered).
pub(super) type Connect<C> =
    Arc<dyn Fn() -> BoxFuture<Result<(C, Option<u64>), RedisError>> + Send + Sync>;

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
///
/// A fault is seen only by a call that meets it. The blocking store holds
/// one cluster connection per lane, and a lane that sat idle while
/// another renewed after a failover would still send its first calls to a
/// frozen primary. So each generation remembers the view of the cluster
/// it was made under (a number that grows each time a connection finds
/// the cluster's primaries changed, [`ClusterSource`]'s), and a call on
/// one made under an older view than the latest first waits, within its
/// timeout, for a renewal: one already connecting, or one it starts. Only
/// within `min_age` of the last renewal, when none is connecting, does it
/// go ahead on the old generation.
///
/// [`ClusterSource`]: super::cluster::ClusterSource
pub(super) struct Renewing<C> {
    connect: Connect<C>,
    min_age: Duration,
    /// The latest view's number, when views are numbered.
    latest_view: Option<Arc<AtomicU64>>,
    state: Arc<Mutex<RenewState<C>>>,
    /// Woken each time a renewal ends, whether it connected or not.
    ended: Arc<tokio::sync::Notify>,
}

/// A connection in use: the connection, its number among the
/// generations, and the number of the view it was made under.
type Generation<C> = (C, u64, Option<u64>);

struct RenewState<C> {
    /// The generation in use; `None` until the first connects.
    current: Option<Generation<C>>,
    next_number: u64,
    renewing: bool,
    last_renewal: Option<Instant>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C: Clone + redis::aio::ConnectionLike + Send + 'static> RenewState<C> {
    fn install(&mut self, (conn, view): (C, Option<u64>)) -> (C, u64) {
        let number = self.next_number;
        self.next_number += 1;
        self.current = Some((conn.clone(), number, view));
        (conn, number)
    }
}

impl<C: Clone + redis::aio::ConnectionLike + Send + 'static> Renewing<C> {
    /// Starts with `first` (a connection and its view's number), or with
    /// no connection: then the first call connects, within its own
    /// timeout. With `latest_view`, a generation made under a view older
    /// than it is replaced before its next use.
    pub(super) fn new(
        first: Option<(C, Option<u64>)>,
        min_age: Duration,
        connect: Connect<C>,
        latest_view: Option<Arc<AtomicU64>>,
    ) -> Renewing<C> {
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
            latest_view,
            state: Arc::new(Mutex::new(state)),
            ended: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Whether a generation made under `view` is older than the latest
    /// view.
    fn stale(&self, view: Option<u64>) -> bool {
        match (&self.latest_view, view) {
            (Some(latest), Some(view)) => view < latest.load(Ordering::Acquire),
            _ => false,
        }
    }

    /// The current generation (connection and number), connecting one if
    /// there is none yet. One made under an older view of the cluster
    /// than the latest is replaced first: the call waits for a renewal (one
    /// connecting, or one it starts), unless none is connecting and one
    /// started within `min_age`. The caller bounds the wait.
    async fn current(&self) -> Result<(C, u64), RedisError> {
        let current = lock(&self.state).current.clone();
        let Some((conn, number, view)) = current else {
            let fresh = (self.connect)().await?;
            let mut state = lock(&self.state);
            return Ok(match state.current.clone() {
                // Another call connected first: use that one.
                Some((conn, number, _)) => (conn, number),
                None => state.install(fresh),
            });
        };
        if !self.stale(view) {
            return Ok((conn, number));
        }
        // Listening from under the lock: a renewal ends (and wakes its
        // waiters) under it too, so this call is woken by the end of the
        // renewal it waits for, never by the end of an earlier one.
        let (ended, renewal) = {
            let mut state = lock(&self.state);
            match &state.current {
                Some((conn, n, _)) if *n != number => return Ok((conn.clone(), *n)),
                _ => (self.ended.notified(), self.claim(&mut state, number)),
            }
        };
        if self.launch(renewal) {
            // If the caller's timeout ends first, the renewal goes on in
            // the background.
            ended.await;
        }
        let state = lock(&self.state);
        let (conn, number, _) = state.current.clone().unwrap_or((conn, number, view));
        Ok((conn, number))
    }

    /// Claims a renewal of generation `seen`, under the state's lock:
    /// none if one is connecting, one started within `min_age`, `seen`
    /// was replaced already or there is no runtime to connect on.
    fn claim(&self, state: &mut RenewState<C>, seen: u64) -> Renewal<C> {
        if state.renewing {
            return Renewal::UnderWay;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Renewal::NotNow;
        };
        let too_soon = state
            .last_renewal
            .is_some_and(|at| at.elapsed() < self.min_age);
        let replaced = state.current.as_ref().is_some_and(|(_, n, _)| *n != seen);
        if too_soon || replaced {
            return Renewal::NotNow;
        }
        state.renewing = true;
        state.last_renewal = Some(Instant::now());
        let ending = RenewalEnds {
            state: self.state.clone(),
            ended: self.ended.clone(),
        };
        Renewal::Claimed(ending, runtime)
    }

    /// Starts connecting a claimed renewal in the background, outside the
    /// state's lock (a runtime that is shutting down drops the task at
    /// once, and its end takes the lock). Returns whether a renewal is
    /// connecting (started here or before).
    fn launch(&self, renewal: Renewal<C>) -> bool {
        let (ending, runtime) = match renewal {
            Renewal::UnderWay => return true,
            Renewal::NotNow => return false,
            Renewal::Claimed(ending, runtime) => (ending, runtime),
        };
        let connect = self.connect.clone();
        runtime.spawn(async move {
            let fresh = connect().await;
            if let Ok(fresh) = fresh {
                lock(&ending.state).install(fresh);
            }
            drop(ending);
        });
        true
    }

    /// Runs `op` on the current generation within `timeout` (connecting
    /// one first if there is none); a failure of the connection itself
    /// renews it. Every failure is [`Error::Store`].
    pub(super) async fn run<T, F>(
        &self,
        timeout: Duration,
        op: impl FnOnce(C) -> F,
    ) -> Result<T, Error>
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
                let renewal = self.claim(&mut lock(&self.state), number);
                self.launch(renewal);
            }
        }
        result.map_err(|_| Error::Store)
    }
}

/// What [`Renewing::claim`] found.
enum Renewal<C> {
    /// One is connecting already.
    UnderWay,
    /// None now (see `claim`).
    NotNow,
    /// This caller starts one, on this runtime.
    Claimed(RenewalEnds<C>, tokio::runtime::Handle),
}

/// Marks a renewal ended when its task finishes or is dropped (a runtime
/// that shuts down drops its tasks), so that a later fault can start
/// another and no call waits for one that will never end.
struct RenewalEnds<C> {
    state: Arc<Mutex<RenewState<C>>>,
    ended: Arc<tokio::sync::Notify>,
}

impl<C> Drop for RenewalEnds<C> {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.renewing = false;
        self.ended.notify_waiters();
        drop(state);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use redis::{Cmd, Pipeline, RedisFuture, Value};

    use super::*;

    /// A stand-in connection that knows which connection attempt made it.
    #[derive(Clone)]
    struct Made(usize);

    impl redis::aio::ConnectionLike for Made {
        fn req_packed_command<'a>(&'a mut self, _: &'a Cmd) -> RedisFuture<'a, Value> {
            Box::pin(async { Ok(Value::Nil) })
        }
        fn req_packed_commands<'a>(
            &'a mut self,
            _: &'a Pipeline,
            _: usize,
            _: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn get_db(&self) -> i64 {
            0
        }
    }

    /// How the stand-in connections are made: numbered by attempt, each
    /// under the view `view` holds at the time; attempts fail while `fail`
    /// is set, and wait for `gate` while `hold` is set.
    #[derive(Default)]
    struct Servers {
        view: Arc<AtomicU64>,
        fail: AtomicBool,
        hold: AtomicBool,
        gate: tokio::sync::Notify,
        attempts: AtomicUsize,
    }

    fn connect(servers: &Arc<Servers>) -> Connect<Made> {
        let servers = servers.clone();
        Arc::new(move || {
            let servers = servers.clone();
            let n = servers.attempts.fetch_add(1, Ordering::SeqCst);
            let view = Some(servers.view.load(Ordering::SeqCst));
            let (failed, held) = (
                servers.fail.load(Ordering::SeqCst),
                servers.hold.load(Ordering::SeqCst),
            );
            Box::pin(async move {
                if held {
                    servers.gate.notified().await;
                }
                if failed {
                    return Err(RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )));
                }
                Ok((Made(n), view))
            })
        })
    }

    fn renewing(servers: &Arc<Servers>, min_age: Duration, numbered: bool) -> Arc<Renewing<Made>> {
        Arc::new(Renewing::new(
            None,
            min_age,
            connect(servers),
            numbered.then(|| servers.view.clone()),
        ))
    }

    async fn which_within(r: &Renewing<Made>, timeout: Duration) -> Result<usize, Error> {
        r.run(timeout, |c| async move { Ok(c.0) }).await
    }

    async fn which(r: &Renewing<Made>) -> usize {
        which_within(r, Duration::from_secs(5)).await.unwrap()
    }

    fn attempts(servers: &Servers) -> usize {
        servers.attempts.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_connection_made_under_an_older_view_is_replaced_before_it_is_used() {
        let servers = Arc::new(Servers::default());
        let r = renewing(&servers, Duration::ZERO, true);
        assert_eq!(which(&r).await, 0);
        assert_eq!(which(&r).await, 0, "the same view keeps its connection");
        servers.view.store(1, Ordering::SeqCst);
        assert_eq!(
            which(&r).await,
            1,
            "a newer view: the call used a fresh one"
        );
        assert_eq!(which(&r).await, 1);
        assert_eq!(attempts(&servers), 2);
    }

    #[tokio::test]
    async fn without_numbered_views_a_connection_is_kept_until_it_fails() {
        let servers = Arc::new(Servers::default());
        let r = renewing(&servers, Duration::ZERO, false);
        assert_eq!(which(&r).await, 0);
        servers.view.store(1, Ordering::SeqCst);
        assert_eq!(which(&r).await, 0);
        assert_eq!(attempts(&servers), 1);
    }

    #[tokio::test]
    async fn a_replacement_that_cannot_connect_leaves_the_old_one_serving_and_waits_min_age() {
        let servers = Arc::new(Servers::default());
        let r = renewing(&servers, Duration::from_secs(3600), true);
        assert_eq!(which(&r).await, 0);
        servers.view.store(1, Ordering::SeqCst);
        servers.fail.store(true, Ordering::SeqCst);
        assert_eq!(which(&r).await, 0, "the old connection still serves");
        assert_eq!(which(&r).await, 0);
        assert_eq!(
            attempts(&servers),
            2,
            "one attempt within min_age, not one per call"
        );
    }

    #[tokio::test]
    async fn a_call_on_an_older_view_waits_for_the_renewal_under_way() {
        let servers = Arc::new(Servers::default());
        let r = renewing(&servers, Duration::from_secs(3600), true);
        assert_eq!(which(&r).await, 0);
        servers.view.store(1, Ordering::SeqCst);
        servers.hold.store(true, Ordering::SeqCst);
        // The renewal outlives the first call's timeout...
        assert_eq!(
            which_within(&r, Duration::from_millis(20)).await,
            Err(Error::Store)
        );
        // ...and the next call waits for it rather than use the old
        // connection, though it may not start one of its own (min_age).
        let next = tokio::spawn({
            let r = r.clone();
            async move { which(&r).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!next.is_finished(), "the call waits for the renewal");
        servers.gate.notify_one();
        assert_eq!(next.await.unwrap(), 1);
        assert_eq!(attempts(&servers), 2);
    }

    #[test]
    fn a_renewal_launched_on_a_runtime_that_shut_down_ends_at_once() {
        let servers = Arc::new(Servers::default());
        let r = renewing(&servers, Duration::ZERO, true);
        let gone = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = gone.handle().clone();
        drop(gone);
        // Claimed as `claim` would, then launched: the runtime drops the
        // task at once, whose end takes the state's lock (not held here).
        let claimed = {
            let mut state = lock(&r.state);
            state.renewing = true;
            Renewal::Claimed(
                RenewalEnds {
                    state: r.state.clone(),
                    ended: r.ended.clone(),
                },
                handle,
            )
        };
        assert!(r.launch(claimed));
        assert!(
            !lock(&r.state).renewing,
            "the dropped task ended its renewal"
        );
        assert_eq!(attempts(&servers), 0);
    }

    #[test]
    fn a_renewal_dropped_with_its_runtime_does_not_block_the_next() {
        let servers = Arc::new(Servers::default());
        let r = renewing(&servers, Duration::ZERO, true);
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(first.block_on(which(&r)), 0);
        servers.view.store(1, Ordering::SeqCst);
        servers.hold.store(true, Ordering::SeqCst);
        // A renewal that never connects, on a runtime that then shuts
        // down and drops it.
        assert_eq!(
            first.block_on(which_within(&r, Duration::from_millis(20))),
            Err(Error::Store)
        );
        drop(first);
        servers.hold.store(false, Ordering::SeqCst);
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(
            second.block_on(which_within(&r, Duration::from_secs(5))),
            Ok(2),
            "a new renewal started and was waited for"
        );
    }
}
