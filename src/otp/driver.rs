//! The one compare-and-swap driver every OTP and TOTP operation runs on,
//! and the adapter that runs it over a blocking [`Store`].
//!
//! An operation is a pure *step* (in `record.rs` or the TOTP guard) that
//! looks at the value read from one key and says what to do: nothing
//! ([`Step::Done`]), or write a new value ([`Step::Write`]). [`drive`]
//! reads, asks the step, and writes with a compare-and-swap, reading again
//! when another writer got there first. It is written once, as an `async
//! fn` over [`AsyncStore`]; a blocking [`Store`] goes through [`Blocking`],
//! whose futures are ready when first polled, and [`run_blocking`] polls
//! once.

use core::pin::pin;
use core::task::{Context, Poll, Waker};

use super::store::{AsyncStore, OneStepCheck, OneStepIssue, OneStepOutcome, Store};
use crate::Error;

/// How often a compare-and-swap is retried before [`Error::Contention`].
pub(super) const MAX_RETRIES: usize = 64;

/// What a step decided about the value it was shown.
pub(super) enum Step<T> {
    /// Nothing to write: `T` stands.
    Done(T),
    /// Replace the value read with `next` (delete it when `None`), expiring
    /// at `expires_ms`; once that lands, `then` stands. `first`, if any, is
    /// deleted (best effort) just before.
    Write {
        next: Option<Vec<u8>>,
        expires_ms: u64,
        then: T,
        first: Option<Delete>,
    },
}

impl<T> Step<T> {
    /// A write with nothing to delete first.
    pub(super) fn write(next: Vec<u8>, expires_ms: u64, then: T) -> Step<T> {
        Step::Write {
            next: Some(next),
            expires_ms,
            then,
            first: None,
        }
    }

    /// Deletes the value read (if it is still that value).
    pub(super) fn delete(then: T) -> Step<T> {
        Step::Write {
            next: None,
            expires_ms: 0,
            then,
            first: None,
        }
    }
}

/// A key to delete if it still holds `expected`: an entry the write makes
/// stale. Failing to delete it only leaves it to expire.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Delete {
    pub(super) key: String,
    pub(super) expected: Vec<u8>,
}

/// Runs `step` against `key` until its decision stands: reads the value
/// (or uses `read`, a value the caller has just read), asks the step, and
/// writes with a compare-and-swap, reading again when the value changed
/// under it. The write, when there is one, is the last store call.
///
/// # Errors
///
/// The step's errors; the store's; [`Error::Contention`] after
/// [`MAX_RETRIES`] lost swaps.
pub(super) async fn drive<S, T>(
    store: &S,
    key: &str,
    now: u64,
    mut read: Option<Option<Vec<u8>>>,
    mut step: impl FnMut(Option<&[u8]>) -> Result<Step<T>, Error>,
) -> Result<T, Error>
where
    S: AsyncStore + ?Sized,
{
    let mut deleted: Option<Delete> = None;
    for _ in 0..MAX_RETRIES {
        let current = match read.take() {
            Some(value) => value,
            None => store.get(key, now).await?,
        };
        let (next, expires_ms, then, first) = match step(current.as_deref())? {
            Step::Done(outcome) => return Ok(outcome),
            Step::Write {
                next,
                expires_ms,
                then,
                first,
            } => (next, expires_ms, then, first),
        };
        if let Some(stale) = first.filter(|d| deleted.as_ref() != Some(d)) {
            let _ = store
                .compare_and_swap(&stale.key, Some(&stale.expected), None, 0, now)
                .await;
            deleted = Some(stale);
        }
        if store
            .compare_and_swap(key, current.as_deref(), next.as_deref(), expires_ms, now)
            .await?
        {
            return Ok(then);
        }
    }
    Err(Error::Contention)
}

/// A blocking [`Store`] seen as an [`AsyncStore`]: each future does its
/// work when first polled and is then ready.
pub(super) struct Blocking<'a, S: ?Sized>(pub(super) &'a S);

impl<S: Store + ?Sized> AsyncStore for Blocking<'_, S> {
    async fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(key, now_ms)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        self.0
            .compare_and_swap(key, expected, new, expires_ms, now_ms)
    }

    async fn check_in_one_step(
        &self,
        check: &OneStepCheck<'_>,
    ) -> Result<Option<OneStepOutcome>, Error> {
        self.0.check_in_one_step(check)
    }

    async fn issue_in_one_step(
        &self,
        issue: &OneStepIssue<'_>,
    ) -> Result<Option<OneStepOutcome>, Error> {
        self.0.issue_in_one_step(issue)
    }

    fn slots_challenges(&self) -> bool {
        self.0.slots_challenges()
    }
}

/// Runs a future that awaits nothing but [`Blocking`] store calls: one poll
/// completes it.
pub(super) fn run_blocking<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        // Every await point of an operation is a store call; over
        // `Blocking` each is ready at once.
        Poll::Pending => unreachable!("a blocking store operation did not complete"),
    }
}
