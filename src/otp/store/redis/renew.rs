//! Connections that are replaced by fresh ones after a fault.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::RedisError;

use super::errors::connection_at_fault;
use crate::Error;
use crate::deadline::bounded;

pub(super) type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// Makes a new connection, connected (or, for a connection manager, ready
/// to connect on first use).
pub(super) type Connect<C> = Arc<dyn Fn() -> BoxFuture<Result<C, RedisError>> + Send + Sync>;

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
pub(super) struct Renewing<C> {
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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
    pub(super) fn new(first: Option<C>, min_age: Duration, connect: Connect<C>) -> Renewing<C> {
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
                self.renew(number);
            }
        }
        result.map_err(|_| Error::Store)
    }
}
