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
/// it was made under (see [`Renewing::new`]; 0 where there is none).
pub(super) type Connect<C> = Arc<dyn Fn() -> BoxFuture<Result<(C, u64), RedisError>> + Send + Sync>;

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
/// the cluster's primaries changed, [`ClusterSource`]'s), and one made
/// under an older view than the latest is replaced before it is used.
///
/// [`ClusterSource`]: super::cluster::ClusterSource
pub(super) struct Renewing<C> {
    connect: Connect<C>,
    min_age: Duration,
    /// The latest view's number, when views are numbered.
    latest_view: Option<Arc<AtomicU64>>,
    state: Arc<Mutex<RenewState<C>>>,
}

/// A connection in use: the connection, its number among the
/// generations, and the number of the view it was made under.
type Generation<C> = (C, u64, u64);

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
    fn install(&mut self, (conn, view): (C, u64)) -> (C, u64) {
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
        first: Option<(C, u64)>,
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
        }
    }

    /// The current generation (connection and number), connecting one if
    /// there is none yet; one made under an older view of the cluster
    /// than the latest is first replaced (waiting for its renewal, within
    /// the caller's timeout), unless a renewal started within `min_age`.
    async fn current(&self) -> Result<(C, u64), RedisError> {
        let current = lock(&self.state).current.clone();
        if let Some((conn, number, view)) = current {
            let latest = self.latest_view.as_ref().map(|v| v.load(Ordering::Acquire));
            if latest.is_none_or(|latest| view >= latest) {
                return Ok((conn, number));
            }
            if let Some(renewal) = self.renew(number) {
                // If the caller's timeout ends first, the renewal goes on
                // in the background.
                let _ = renewal.await;
            }
            let state = lock(&self.state);
            let (conn, number, _) = state.current.clone().unwrap_or((conn, number, view));
            return Ok((conn, number));
        }
        let fresh = (self.connect)().await?;
        let mut state = lock(&self.state);
        Ok(match state.current.clone() {
            // Another call connected first: use that one.
            Some((conn, number, _)) => (conn, number),
            None => state.install(fresh),
        })
    }

    /// Starts connecting a replacement for generation `seen` in the
    /// background, unless one is connecting, one started within
    /// `min_age`, or `seen` was replaced already; returns its task.
    fn renew(&self, seen: u64) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        {
            let mut state = lock(&self.state);
            let too_soon = state
                .last_renewal
                .is_some_and(|at| at.elapsed() < self.min_age);
            let replaced = state.current.as_ref().is_some_and(|(_, n, _)| *n != seen);
            if state.renewing || too_soon || replaced {
                return None;
            }
            state.renewing = true;
            state.last_renewal = Some(Instant::now());
        }
        let (connect, state) = (self.connect.clone(), self.state.clone());
        Some(runtime.spawn(async move {
            let fresh = connect().await;
            let mut state = lock(&state);
            state.renewing = false;
            if let Ok(fresh) = fresh {
                state.install(fresh);
            }
        }))
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
                let _ = self.renew(number);
            }
        }
        result.map_err(|_| Error::Store)
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

    /// Connections numbered by attempt, each made under the view `view`
    /// holds at the time; attempts while `fail` is set fail.
    fn numbered(
        view: &Arc<AtomicU64>,
        fail: &Arc<AtomicBool>,
    ) -> (Connect<Made>, Arc<AtomicUsize>) {
        let attempts = Arc::new(AtomicUsize::new(0));
        let (view, fail, counted) = (view.clone(), fail.clone(), attempts.clone());
        let connect: Connect<Made> = Arc::new(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let made = (Made(n), view.load(Ordering::SeqCst));
            let failed = fail.load(Ordering::SeqCst);
            Box::pin(async move {
                if failed {
                    Err(RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )))
                } else {
                    Ok(made)
                }
            })
        });
        (connect, attempts)
    }

    async fn which(r: &Renewing<Made>) -> usize {
        r.run(Duration::from_secs(1), |c| async move { Ok(c.0) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_connection_made_under_an_older_view_is_replaced_before_it_is_used() {
        let view = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let (connect, attempts) = numbered(&view, &fail);
        let r = Renewing::new(None, Duration::ZERO, connect, Some(view.clone()));
        assert_eq!(which(&r).await, 0);
        assert_eq!(which(&r).await, 0, "the same view keeps its connection");
        view.store(1, Ordering::SeqCst);
        assert_eq!(
            which(&r).await,
            1,
            "a newer view: the call used a fresh one"
        );
        assert_eq!(which(&r).await, 1);
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn without_numbered_views_a_connection_is_kept_until_it_fails() {
        let view = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let (connect, attempts) = numbered(&view, &fail);
        let r = Renewing::new(None, Duration::ZERO, connect, None);
        assert_eq!(which(&r).await, 0);
        view.store(1, Ordering::SeqCst);
        assert_eq!(which(&r).await, 0);
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_replacement_that_cannot_connect_leaves_the_old_one_serving_and_waits_min_age() {
        let view = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let (connect, attempts) = numbered(&view, &fail);
        let r = Renewing::new(None, Duration::from_secs(3600), connect, Some(view.clone()));
        assert_eq!(which(&r).await, 0);
        view.store(1, Ordering::SeqCst);
        fail.store(true, Ordering::SeqCst);
        assert_eq!(which(&r).await, 0, "the old connection still serves");
        assert_eq!(which(&r).await, 0);
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            2,
            "one attempt within min_age, not one per call"
        );
    }
}
