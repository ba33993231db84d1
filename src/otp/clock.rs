//! Where an [`Otp`](super::Otp) service reads the time: [`Clock`], the
//! [`SystemClock`] and, for tests, the [`ManualClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::policy::millis;

/// A source of wall-clock time, injected so tests never sleep.
pub trait Clock: Send + Sync {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The system clock ([`SystemTime::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that moves only when told to. Clones share one time.
///
/// # Example
///
/// ```
/// use pinseal::otp::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Duration::from_secs(1_000));
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(60));
/// assert_eq!(clock.now(), Duration::from_secs(1_060));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing `start` since the Unix epoch (millisecond precision).
    pub fn new(start: Duration) -> ManualClock {
        ManualClock {
            millis: Arc::new(AtomicU64::new(millis(start))),
        }
    }
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.millis.fetch_add(millis(by), Ordering::SeqCst);
    }
    /// Sets the clock to `to` since the Unix epoch (it may go backwards).
    pub fn set(&self, to: Duration) {
        self.millis.store(millis(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}
