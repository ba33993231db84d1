//! The [`Otp`] service: issue, verify, check, cancel and budgets, over a
//! blocking [`Store`] or an [`AsyncStore`].
//!
//! Each operation is written once, as an `async fn` over an [`AsyncStore`];
//! the blocking methods run it over [`Blocking`], whose futures are ready
//! when first polled.

use core::fmt;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use super::challenge::{Budget, ChallengeId, ClientBudget, Verdict};
use super::clock::{Clock, SystemClock};
use super::policy::{Policy, millis, random_code};
use super::record::{
    self, Attempt, IssueStep, Keys, Live, MAX_RETRIES, State, Step, Tag, client_key, index_expiry,
    index_key, subject_key,
};
use super::store::{AsyncStore, MemoryStore, Store};
use crate::secret::ExposeSecret;
use crate::{Error, Key, Secret};

/// The OTP service: issues codes and verifies them against a store.
///
/// `Otp` is `Send + Sync`; share one instance (for example in an `Arc`)
/// across a service. See the [module documentation](super) for the rules,
/// what is stored and the security notes.
///
/// Every operation comes twice: a blocking method for a [`Store`]
/// ([`MemoryStore`], `RedisStore`) and an `_async` twin for an
/// [`AsyncStore`] ([`MemoryStore`], `AsyncRedisStore`,
/// [`DynStore`](super::DynStore)), with the same rules and errors.
///
/// # Example
///
/// A manual clock and an explicit store, as in tests:
///
/// ```
/// use pinseal::{ExposeSecret, Key};
/// use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy, Verdict};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
/// let policy = Policy::new(6, Duration::from_secs(60), 5)?;
/// let otp = Otp::with_parts(&Key::generate(), policy, MemoryStore::new(), clock.clone());
/// let (id, code) = otp.issue("user-42")?;
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(otp.verify(&id, code.expose_secret())?, Verdict::Expired);
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Otp<S = MemoryStore, C = SystemClock> {
    keys: Keys,
    policy: Policy,
    store: S,
    clock: C,
}

impl Otp {
    /// An OTP service with an in-memory store and the system clock.
    pub fn new(pepper: &Key, policy: Policy) -> Otp {
        Otp::with_parts(pepper, policy, MemoryStore::new(), SystemClock)
    }
}

/// Which challenge an operation is about.
#[derive(Clone, Copy)]
enum Target<'a> {
    Id(&'a ChallengeId),
    Subject(&'a str),
}

impl<S, C> Otp<S, C> {
    /// An OTP service over any store and clock: a [`Store`] for the
    /// blocking methods, an [`AsyncStore`] for the `_async` ones.
    pub fn with_parts(pepper: &Key, policy: Policy, store: S, clock: C) -> Self {
        Otp {
            keys: Keys::new(pepper),
            policy,
            store,
            clock,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S, C: Clock> Otp<S, C> {
    fn now(&self) -> u64 {
        millis(self.clock.now())
    }

    async fn issue_in<T: AsyncStore>(
        &self,
        store: &T,
        subject: &str,
        client: Option<&str>,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        let now = self.now();
        let Some(client) = client else {
            return self.issue_subject(store, subject, now).await;
        };
        let key = client_key(&self.keys.client_tag(client));
        let window = self.client_reserve(store, &key, now).await?;
        let issued = self.issue_subject(store, subject, now).await;
        if issued.is_err() {
            // Give the client its send back. If this fails too, the client
            // has lost one send of its window; the subject has lost nothing.
            let _ = self.client_refund(store, &key, window, now).await;
        }
        issued
    }

    /// Counts one send against the client; returns the window it counted in.
    async fn client_reserve<T: AsyncStore>(
        &self,
        store: &T,
        key: &str,
        now: u64,
    ) -> Result<u64, Error> {
        for _ in 0..MAX_RETRIES {
            let current = store.get(key, now).await?;
            let (next, expires, window) =
                record::client_reserve(&self.policy, current.as_deref(), now)?;
            if store
                .compare_and_swap(key, current.as_deref(), Some(&next), expires, now)
                .await?
            {
                return Ok(window);
            }
        }
        Err(Error::Contention)
    }

    async fn client_refund<T: AsyncStore>(
        &self,
        store: &T,
        key: &str,
        window: u64,
        now: u64,
    ) -> Result<(), Error> {
        for _ in 0..MAX_RETRIES {
            let current = store.get(key, now).await?;
            let Some((next, expires)) =
                record::client_refund(&self.policy, current.as_deref(), window, now)?
            else {
                return Ok(());
            };
            if store
                .compare_and_swap(key, current.as_deref(), Some(&next), expires, now)
                .await?
            {
                return Ok(());
            }
        }
        Err(Error::Contention)
    }

    async fn issue_subject<T: AsyncStore>(
        &self,
        store: &T,
        subject: &str,
        now: u64,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        let tag = self.keys.subject_tag(subject);
        let key = subject_key(&tag);
        let id = ChallengeId::random();
        let code = random_code(self.policy.digits)?;
        let id_tag = self.keys.id_tag(&id.0);
        let live = Live {
            id_tag,
            mac: self
                .keys
                .code_mac(&id_tag, &tag, code.expose_secret().as_bytes()),
            expires_ms: now.saturating_add(self.policy.ttl_ms),
            state: State::Pending,
            attempts: 0,
        };
        let index = index_key(&id_tag);
        let mut index_written = false;
        let issued = self
            .issue_rounds(store, &key, &tag, &live, &index, now, &mut index_written)
            .await;
        if issued.is_err() && index_written {
            // The new entry names a challenge no record holds: remove it
            // now rather than let it wait out its TTL.
            let _ = store
                .compare_and_swap(&index, Some(&tag), None, 0, now)
                .await;
        }
        issued.map(|()| (id, code))
    }

    /// The compare-and-swap rounds of an issue; sets `index_written` once
    /// the new index entry is in the store.
    #[allow(clippy::too_many_arguments)]
    async fn issue_rounds<T: AsyncStore>(
        &self,
        store: &T,
        key: &str,
        tag: &Tag,
        live: &Live,
        index: &str,
        now: u64,
        index_written: &mut bool,
    ) -> Result<(), Error> {
        let mut deleted: Option<Tag> = None;
        for _ in 0..MAX_RETRIES {
            let current = store.get(key, now).await?;
            let IssueStep {
                next,
                expires_ms,
                delete_first,
            } = record::issue_step(&self.policy, live, current.as_deref(), now)?;
            // Until the record swap below lands, the subject's live code and
            // send count are untouched (see "Failure" on `issue`): the new
            // index entry names a challenge no record holds yet, and the
            // entry deleted is one no pending challenge uses.
            if !*index_written {
                let expires = index_expiry(&self.policy, live.expires_ms);
                if !store
                    .compare_and_swap(index, None, Some(tag), expires, now)
                    .await?
                {
                    return Err(Error::Contention);
                }
                *index_written = true;
            }
            if let Some(stale) = delete_first.filter(|s| deleted != Some(s.id_tag)) {
                // Whoever else holds it, the entry is stale: a failure here
                // only leaves it to expire.
                let _ = store
                    .compare_and_swap(&index_key(&stale.id_tag), Some(tag), None, 0, now)
                    .await;
                deleted = Some(stale.id_tag);
            }
            if store
                .compare_and_swap(key, current.as_deref(), Some(&next), expires_ms, now)
                .await?
            {
                return Ok(());
            }
        }
        Err(Error::Contention)
    }

    /// The subject tag a challenge id's index entry holds, if any.
    async fn subject_of<T: AsyncStore>(
        &self,
        store: &T,
        id_tag: &Tag,
        now: u64,
    ) -> Result<Option<Tag>, Error> {
        store
            .get(&index_key(id_tag), now)
            .await?
            .map(|bytes| bytes.try_into().map_err(|_| Error::StoreCorrupt))
            .transpose()
    }

    /// The subject tag and, for an id, its tag; `None` when the id is
    /// unknown.
    async fn locate<T: AsyncStore>(
        &self,
        store: &T,
        target: Target<'_>,
        now: u64,
    ) -> Result<Option<(Tag, Option<Tag>)>, Error> {
        Ok(match target {
            Target::Subject(subject) => Some((self.keys.subject_tag(subject), None)),
            Target::Id(id) => {
                let id_tag = self.keys.id_tag(&id.0);
                self.subject_of(store, &id_tag, now)
                    .await?
                    .map(|tag| (tag, Some(id_tag)))
            }
        })
    }

    async fn verify_in<T: AsyncStore>(
        &self,
        store: &T,
        target: Target<'_>,
        input: &str,
    ) -> Result<Verdict, Error> {
        let now = self.now();
        let located = self.locate(store, target, now).await?;
        let want = located.and_then(|(_, id_tag)| id_tag);
        let attempt = Attempt::new(&self.policy, want, input, now);
        let Some((tag, _)) = located else {
            return Ok(attempt.unknown(&self.keys));
        };
        let key = subject_key(&tag);
        for _ in 0..MAX_RETRIES {
            let current = store.get(&key, now).await?;
            match record::verify_step(&self.keys, &self.policy, &attempt, &tag, current.as_deref())?
            {
                Step::Done(verdict) => return Ok(verdict),
                Step::Swap {
                    next,
                    expires_ms,
                    verdict,
                } => {
                    if store
                        .compare_and_swap(&key, current.as_deref(), Some(&next), expires_ms, now)
                        .await?
                    {
                        return Ok(verdict);
                    }
                }
            }
        }
        Err(Error::Contention)
    }

    async fn cancel_in<T: AsyncStore>(&self, store: &T, target: Target<'_>) -> Result<bool, Error> {
        let now = self.now();
        let Some((tag, id_tag)) = self.locate(store, target, now).await? else {
            return Ok(false);
        };
        let key = subject_key(&tag);
        for _ in 0..MAX_RETRIES {
            let current = store.get(&key, now).await?;
            let Some((next, expires)) =
                record::cancel_step(&self.policy, id_tag.as_ref(), current.as_deref(), now)?
            else {
                return Ok(false);
            };
            if store
                .compare_and_swap(&key, current.as_deref(), Some(&next), expires, now)
                .await?
            {
                return Ok(true);
            }
        }
        Err(Error::Contention)
    }

    async fn budget_in<T: AsyncStore>(&self, store: &T, subject: &str) -> Result<Budget, Error> {
        let now = self.now();
        let key = subject_key(&self.keys.subject_tag(subject));
        let current = store.get(&key, now).await?;
        record::budget(&self.policy, current.as_deref(), now)
    }

    async fn client_budget_in<T: AsyncStore>(
        &self,
        store: &T,
        client: &str,
    ) -> Result<ClientBudget, Error> {
        let now = self.now();
        let key = client_key(&self.keys.client_tag(client));
        let current = store.get(&key, now).await?;
        record::client_budget(&self.policy, current.as_deref(), now)
    }
}

/// A blocking [`Store`] seen as an [`AsyncStore`]: each future does its
/// work when first polled and is then ready.
struct Blocking<'a, S: ?Sized>(&'a S);

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
}

/// Runs a future that awaits nothing but [`Blocking`] store calls: one poll
/// completes it.
fn run_blocking<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        // Every await point in this module is a store call; over
        // `Blocking` each is ready at once.
        Poll::Pending => unreachable!("a blocking store operation did not complete"),
    }
}

impl<S: Store, C: Clock> Otp<S, C> {
    /// Issues a new code for `subject` (a phone number in E.164 form, a user
    /// id, ...; see [`canonical_phone`](super::canonical_phone)).
    ///
    /// Returns the challenge id to keep (in the session, a URL) and the code
    /// to send. A previous code for the subject stops working at once.
    ///
    /// # Errors
    ///
    /// [`Error::SendLimit`] when the subject's send budget for the window is
    /// spent; [`Error::Locked`] when its attempt budget is ([`Otp::budget`]
    /// tells when they lift); store errors ([`Error::Store`],
    /// [`Error::StoreFull`], [`Error::StoreCorrupt`],
    /// [`Error::Contention`]). On any error no usable code has been issued.
    ///
    /// # Failure
    ///
    /// A refused or failed issue leaves the subject as it was: the code sent
    /// before still works and no send is spent. The challenge index is
    /// written first and the subject's record last, in one compare-and-swap;
    /// when anything fails before that swap, the new index entry is deleted
    /// again (or, if that fails too, names a challenge no record holds,
    /// verifies [`Verdict::Unknown`] and expires on its own). The one
    /// exception is a store that applies the final swap and then fails to
    /// say so (a timeout): then the new code replaced the old one although
    /// `issue` returned an error, and the caller should offer a resend.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub fn issue(&self, subject: &str) -> Result<(ChallengeId, Secret<String>), Error> {
        run_blocking(self.issue_in(&Blocking(&self.store), subject, None))
    }

    /// [`Otp::issue`] on behalf of `client` (the caller's IP address, device
    /// id or account: whatever identifies who asks for codes), counted
    /// against the client's own send budget
    /// ([`Policy::with_client_budget`]) as well as the subject's.
    ///
    /// This is the defence against SMS pumping: one client cycling through
    /// many numbers is cut off after its budget while every other client
    /// still gets codes. The client key is stored only as an HMAC.
    ///
    /// # Errors
    ///
    /// [`Error::ClientLimit`] when the client's budget is spent
    /// ([`Otp::client_budget`] tells when it lifts), then nothing else was
    /// read or written; otherwise as [`Otp::issue`].
    ///
    /// # Failure
    ///
    /// The client's send is counted first and given back if the subject's
    /// issue then fails or is refused. Only if that refund fails too does
    /// the client lose one send of its window; the subject never does.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{Error, Key};
    /// use pinseal::otp::{Otp, Policy};
    /// use std::time::Duration;
    ///
    /// let policy = Policy::default().with_client_budget(2, Duration::from_secs(3600))?;
    /// let otp = Otp::new(&Key::generate(), policy);
    /// otp.issue_from("+15550100001", "203.0.113.7")?;
    /// otp.issue_from("+15550100002", "203.0.113.7")?;
    /// assert_eq!(otp.issue_from("+15550100003", "203.0.113.7").err(), Some(Error::ClientLimit));
    /// assert!(otp.issue_from("+15550100003", "198.51.100.4").is_ok()); // another client
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn issue_from(
        &self,
        subject: &str,
        client: &str,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        run_blocking(self.issue_in(&Blocking(&self.store), subject, Some(client)))
    }

    /// Checks `input` against the challenge `id`.
    ///
    /// Input that is not exactly `digits` ASCII digits is a wrong attempt.
    /// Counting the attempt and consuming the challenge happen in one
    /// compare-and-swap on the store, so among concurrent verifications of
    /// one challenge at most one is approved, and no code ever takes more
    /// than `max_attempts` wrong guesses (nor a subject per window, unless
    /// it approves a code in between).
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`],
    /// [`Error::Contention`]); then nothing was decided, and the caller
    /// must treat the code as not verified.
    pub fn verify(&self, id: &ChallengeId, input: &str) -> Result<Verdict, Error> {
        run_blocking(self.verify_in(&Blocking(&self.store), Target::Id(id), input))
    }

    /// Checks `input` against the subject's newest challenge, without its
    /// id (as Twilio Verify's check by phone number): one store read fewer
    /// than [`Otp::verify`].
    ///
    /// Same rules as [`Otp::verify`]; a subject with no pending challenge
    /// gets [`Verdict::Unknown`] (after the same cryptographic work).
    ///
    /// # Errors
    ///
    /// As [`Otp::verify`].
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{ExposeSecret, Key};
    /// use pinseal::otp::{Otp, Policy, Verdict};
    ///
    /// let otp = Otp::new(&Key::generate(), Policy::default());
    /// let (_id, code) = otp.issue("+15551234567")?;
    /// assert_eq!(otp.check("+15551234567", code.expose_secret())?, Verdict::Approved);
    /// assert_eq!(otp.check("+15551234567", code.expose_secret())?.status(), "not_found");
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn check(&self, subject: &str, input: &str) -> Result<Verdict, Error> {
        run_blocking(self.verify_in(&Blocking(&self.store), Target::Subject(subject), input))
    }

    /// Cancels the challenge `id` if it is still pending: it then verifies
    /// [`Verdict::Canceled`]. Budgets are unchanged. Returns whether a
    /// pending challenge was canceled (`false`: unknown, expired, approved,
    /// replaced or already canceled).
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`],
    /// [`Error::Contention`]); then the challenge may still be pending.
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{ExposeSecret, Key};
    /// use pinseal::otp::{Otp, Policy, Verdict};
    ///
    /// let otp = Otp::new(&Key::generate(), Policy::default());
    /// let (id, code) = otp.issue("+15551234567")?;
    /// assert!(otp.cancel(&id)?);
    /// assert_eq!(otp.verify(&id, code.expose_secret())?, Verdict::Canceled);
    /// assert!(!otp.cancel(&id)?);
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn cancel(&self, id: &ChallengeId) -> Result<bool, Error> {
        run_blocking(self.cancel_in(&Blocking(&self.store), Target::Id(id)))
    }

    /// Cancels the subject's pending challenge, whichever it is; as
    /// [`Otp::cancel`].
    ///
    /// # Errors
    ///
    /// As [`Otp::cancel`].
    pub fn cancel_subject(&self, subject: &str) -> Result<bool, Error> {
        run_blocking(self.cancel_in(&Blocking(&self.store), Target::Subject(subject)))
    }

    /// The subject's budgets now: sends and attempts left, and when they
    /// reset ([`Budget::retry_after`] for a `Retry-After` header).
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`]).
    pub fn budget(&self, subject: &str) -> Result<Budget, Error> {
        run_blocking(self.budget_in(&Blocking(&self.store), subject))
    }

    /// The client's send budget now (see [`Otp::issue_from`]).
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`]).
    pub fn client_budget(&self, client: &str) -> Result<ClientBudget, Error> {
        run_blocking(self.client_budget_in(&Blocking(&self.store), client))
    }
}

impl<S: AsyncStore, C: Clock> Otp<S, C> {
    /// [`Otp::issue`] for an asynchronous store; same rules, same errors.
    ///
    /// Dropping the future before its last await leaves the subject as a
    /// failed issue does: the previous code still works and no send is
    /// spent. The record is written by that last await; dropped while it
    /// is in flight (a request timeout, a client that disconnects), the
    /// write may still land, as with a store that applies a swap and fails
    /// to say so (see [`Otp::issue`]).
    ///
    /// # Errors
    ///
    /// As [`Otp::issue`].
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub async fn issue_async(&self, subject: &str) -> Result<(ChallengeId, Secret<String>), Error> {
        self.issue_in(&self.store, subject, None).await
    }

    /// [`Otp::issue_from`] for an asynchronous store.
    ///
    /// Dropped before it completes, it leaves the subject as
    /// [`Otp::issue_async`] does; the client may have spent one send.
    ///
    /// # Errors
    ///
    /// As [`Otp::issue_from`].
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub async fn issue_from_async(
        &self,
        subject: &str,
        client: &str,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        self.issue_in(&self.store, subject, Some(client)).await
    }

    /// [`Otp::verify`] for an asynchronous store.
    ///
    /// # Errors
    ///
    /// As [`Otp::verify`].
    pub async fn verify_async(&self, id: &ChallengeId, input: &str) -> Result<Verdict, Error> {
        self.verify_in(&self.store, Target::Id(id), input).await
    }

    /// [`Otp::check`] for an asynchronous store.
    ///
    /// # Errors
    ///
    /// As [`Otp::check`].
    pub async fn check_async(&self, subject: &str, input: &str) -> Result<Verdict, Error> {
        self.verify_in(&self.store, Target::Subject(subject), input)
            .await
    }

    /// [`Otp::cancel`] for an asynchronous store.
    ///
    /// # Errors
    ///
    /// As [`Otp::cancel`].
    pub async fn cancel_async(&self, id: &ChallengeId) -> Result<bool, Error> {
        self.cancel_in(&self.store, Target::Id(id)).await
    }

    /// [`Otp::cancel_subject`] for an asynchronous store.
    ///
    /// # Errors
    ///
    /// As [`Otp::cancel`].
    pub async fn cancel_subject_async(&self, subject: &str) -> Result<bool, Error> {
        self.cancel_in(&self.store, Target::Subject(subject)).await
    }

    /// [`Otp::budget`] for an asynchronous store.
    ///
    /// # Errors
    ///
    /// As [`Otp::budget`].
    pub async fn budget_async(&self, subject: &str) -> Result<Budget, Error> {
        self.budget_in(&self.store, subject).await
    }

    /// [`Otp::client_budget`] for an asynchronous store.
    ///
    /// # Errors
    ///
    /// As [`Otp::client_budget`].
    pub async fn client_budget_async(&self, client: &str) -> Result<ClientBudget, Error> {
        self.client_budget_in(&self.store, client).await
    }
}

/// The derived keys are wiped on drop; the store and clock hold no secret.
impl<S, C> zeroize::ZeroizeOnDrop for Otp<S, C> {}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Otp<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otp")
            .field("pepper", &crate::secret::REDACTED)
            .field("policy", &self.policy)
            .field("store", &self.store)
            .field("clock", &self.clock)
            .finish()
    }
}
