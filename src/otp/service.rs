//! The [`Otp`] service over a blocking [`Store`], and the operations it
//! shares with [`aio::Otp`](super::aio::Otp).
//!
//! Each operation is written once, as an `async fn` of [`Service`] over any
//! [`AsyncStore`], on the one compare-and-swap driver; the blocking
//! [`Otp`] runs it over [`Blocking`], whose futures are ready when first
//! polled, and the async one awaits it.

use core::fmt;

use std::time::Duration;

use super::challenge::{Budget, Challenge, ChallengeId, ClientBudget, Verdict};
use super::clock::{Clock, SystemClock, unix_millis};
use super::driver::{Blocking, drive, run_blocking};
use super::events::{Event, EventKind, EventSink};
use super::limits::{self, Bucket, FraudGuard, PrefixStats, RateKey, counter_key};
use super::policy::{Policy, random_code};
use super::record::{
    self, Attempt, Keys, Live, MAX_SUBJECT_LEN, Mac, Macs, Outcome, State, client_key,
    index_expiry, index_key, subject_key,
};
use super::store::{
    AsyncStore, Decision, Lookup, MemoryStore, OneStepCheck, OneStepCounter, OneStepIssue,
    OneStepOutcome, OneStepPrefix, Store,
};
use crate::mac::MAC_LEN;
use crate::secret::ExposeSecret;
use crate::{Error, Key, Secret};

/// Which challenge an operation is about.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    Id(&'a ChallengeId),
    Subject(&'a str),
}

/// What a check computes from its target and input before any request:
/// the store key it starts from, the tags, and the candidate's MAC.
struct Prepared {
    /// The subject's record (by subject) or the challenge's index entry
    /// (by id).
    key: String,
    id_tag: Option<Mac>,
    subject_tag: Option<Mac>,
    /// The candidate's MAC as a record holds it (by id or by subject).
    mac: Mac,
}

/// The subject tag an index entry at `key` holds, if there is one.
async fn read_index<T: AsyncStore + ?Sized>(
    store: &T,
    key: &str,
    now: u64,
) -> Result<Option<Mac>, Error> {
    store
        .get(key, now)
        .await?
        .map(|bytes| Mac::try_from(bytes.as_slice()).map_err(|_| Error::StoreCorrupt))
        .transpose()
}

/// The keys, policy and clock of an OTP service, and its operations over
/// any [`AsyncStore`]: what the blocking and the async `Otp` share.
pub(super) struct Service<C> {
    keys: Keys,
    policy: Policy,
    guard: Option<FraudGuard>,
    events: Option<std::sync::Arc<dyn EventSink>>,
    /// How events name subjects: keyed pseudonyms of their tags.
    names: crate::pseudonym::Pseudonymizer,
    clock: C,
}

/// A new challenge, before it is stored: its id and code, and what the
/// store is sent (the record's key, the index entry's key, the subject tag,
/// the challenge as the record holds it, and encoded).
struct Fresh {
    key: String,
    index: String,
    tag: Mac,
    id: ChallengeId,
    code: Secret<String>,
    live: Live,
    encoded: Vec<u8>,
}

/// A counter an issue or a check spends: its store key, budget, and the
/// error that refuses.
struct Counter {
    key: String,
    bucket: Bucket,
    refused: fn(Duration) -> Error,
}

fn client_limit(retry_after: Duration) -> Error {
    Error::ClientLimit { retry_after }
}

fn client_check_limit(retry_after: Duration) -> Error {
    Error::ClientCheckLimit { retry_after }
}

impl<C> Service<C> {
    pub(super) fn new(pepper: &Key, policy: Policy, clock: C) -> Self {
        Service {
            keys: Keys::new(pepper),
            policy,
            guard: None,
            events: None,
            names: crate::pseudonym::Pseudonymizer::new(pepper, "otp/v1/events"),
            clock,
        }
    }

    pub(super) fn set_events(&mut self, sink: std::sync::Arc<dyn EventSink>) {
        self.events = Some(sink);
    }

    /// The keyed pseudonym events name a challenge by.
    pub(super) fn challenge_pseudonym(&self, id: &ChallengeId) -> crate::pseudonym::Pseudonym {
        self.tag_pseudonym(&self.keys.id_tag(id))
    }

    /// The keyed pseudonym of the challenge whose id tag is `id_tag`: what
    /// every operation can name, by id or by subject.
    fn tag_pseudonym(&self, id_tag: &Mac) -> crate::pseudonym::Pseudonym {
        self.names
            .pseudonym([b"challenge\0".as_slice(), id_tag].concat())
    }

    /// Hands an event about the subject tagged `tag` to the sink, if any.
    fn emit(&self, kind: EventKind, id_tag: Option<&Mac>, tag: &Mac, now: u64) {
        if let Some(sink) = &self.events {
            sink.on_event(&Event {
                kind,
                challenge: id_tag.map(|t| self.tag_pseudonym(t)),
                subject: self.names.pseudonym(tag),
                time: std::time::UNIX_EPOCH + Duration::from_millis(now),
            });
        }
    }

    pub(super) fn set_guard(&mut self, guard: FraudGuard) {
        self.guard = Some(guard);
    }

    pub(super) fn guard(&self) -> Option<&FraudGuard> {
        self.guard.as_ref()
    }

    pub(super) fn policy(&self) -> &Policy {
        &self.policy
    }

    pub(super) fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C: Clock> Service<C> {
    fn now(&self) -> u64 {
        unix_millis(self.clock.now())
    }

    /// Issues a code for `subject`, counted against `client`'s budget and
    /// each rate-limit key's buckets too, and against the fraud guard.
    pub(super) async fn issue<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        subject: &str,
        client: Option<&str>,
        limits: &[RateKey<'_>],
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        if subject.len() > MAX_SUBJECT_LEN {
            return Err(Error::InvalidParameter);
        }
        let now = self.now();
        let phone = match &self.guard {
            Some(guard) => guard.phone(subject)?.map(|digits| (guard, digits)),
            None => None,
        };
        if let Some((guard, digits)) = phone {
            if !guard.country_allowed(digits) {
                return Err(Error::CountryBlocked);
            }
        }
        let mut counters = Vec::new();
        if let Some(client) = client {
            counters.push(Counter {
                key: client_key(&self.keys.client_tag(client)),
                bucket: self.policy.client_bucket(),
                refused: client_limit,
            });
        }
        for limit in limits {
            for bucket in limit.limit.buckets() {
                let window = bucket.window_ms.to_be_bytes();
                let tag = self.keys.counter_tag(
                    b"rate",
                    &[
                        limit.limit.name().as_bytes(),
                        &window,
                        limit.value.as_bytes(),
                    ],
                );
                counters.push(Counter {
                    key: counter_key("r:", &tag),
                    bucket: *bucket,
                    refused: client_limit,
                });
            }
        }
        // The fraud guard's prefix of a phone number: its tag, kept with
        // the challenge so that an approval is credited to it.
        let prefix = phone.map(|(guard, digits)| {
            let tag = self
                .keys
                .counter_tag(b"prefix", &[guard.prefix(digits).as_bytes()]);
            (guard, tag, counter_key("p:", &tag))
        });
        // The counters, the prefix and the subject's record in one request
        // where the store can make it (one Redis server).
        let spent: Vec<OneStepCounter<'_>> = counters
            .iter()
            .map(|c| OneStepCounter {
                key: &c.key,
                max: c.bucket.max,
                window_ms: c.bucket.window_ms,
                refused: c.refused,
            })
            .collect();
        let counted = prefix.as_ref().map(|(guard, _, key)| OneStepPrefix {
            key,
            max: guard.prefix.max,
            window_ms: guard.prefix.window_ms,
            block_ms: guard.block_ms,
            floor: guard.floor,
        });
        let fresh = self.fresh(
            subject,
            prefix.as_ref().map(|(_, tag, _)| *tag),
            store.slots_challenges(),
            now,
        )?;
        let fresh = match self
            .issue_one_step(store, fresh, &spent, counted.as_ref(), now)
            .await?
        {
            Ok(made) => return Ok(made),
            Err(fresh) => fresh,
        };
        // A store that did not spend the counters or the prefix with the
        // issue (the memory store and DynamoDB, which make no issue in one
        // request; a Redis store that met a counter, prefix or record its
        // scripts do not read) may still make the subject's part in one
        // request, after them.
        let again = !counters.is_empty() || counted.is_some();
        let held = self.reserve(store, &counters, now).await?;
        let issued = self
            .issue_guarded(store, prefix.as_ref(), fresh, again, now)
            .await;
        if issued.is_err() {
            self.refund(store, &counters, &held, now).await;
        }
        issued
    }

    /// Spends one use of each counter, in order; when one refuses, gives
    /// back those already spent. The windows the uses were counted in, for
    /// [`Service::refund`].
    async fn reserve<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        counters: &[Counter],
        now: u64,
    ) -> Result<Vec<u64>, Error> {
        let mut held = Vec::with_capacity(counters.len());
        for c in counters {
            let spent = drive(store, &c.key, now, None, |current| {
                record::client_reserve(c.bucket, c.refused, current, now)
            })
            .await;
            match spent {
                Ok(window) => held.push(window),
                Err(e) => {
                    self.refund(store, counters, &held, now).await;
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// Gives back the uses [`Service::reserve`] spent. If a refund fails,
    /// that counter has lost one use of its window; the subject has lost
    /// nothing.
    async fn refund<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        counters: &[Counter],
        held: &[u64],
        now: u64,
    ) {
        for (c, window) in counters.iter().zip(held) {
            let _ = drive(store, &c.key, now, None, |current| {
                record::client_refund(c.bucket, current, *window, now)
            })
            .await;
        }
    }

    /// The issue of `fresh` after the client counters, the general way:
    /// the fraud guard's prefix count first (`prefix`: the guard, the
    /// prefix's tag and key), then the subject's, in one request if
    /// `again` (the store declined the request with the counters or the
    /// prefix, and may make the subject's part alone).
    async fn issue_guarded<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        prefix: Option<&(&FraudGuard, Mac, String)>,
        fresh: Fresh,
        again: bool,
        now: u64,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        let Some((guard, _, key)) = prefix else {
            return self.issue_rest(store, fresh, again, now).await;
        };
        let window = drive(store, key, now, None, |current| {
            limits::prefix_reserve(guard, current, now)
        })
        .await??;
        let issued = self.issue_rest(store, fresh, again, now).await;
        if issued.is_err() {
            let _ = drive(store, key, now, None, |current| {
                limits::prefix_refund(guard, current, window, now)
            })
            .await;
        }
        issued
    }

    /// The subject's part of the issue of `fresh`: in one request if
    /// `again` and the store makes it so, the general way otherwise.
    async fn issue_rest<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        fresh: Fresh,
        again: bool,
        now: u64,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        if !again {
            return self.issue_subject(store, fresh, now).await;
        }
        match self.issue_one_step(store, fresh, &[], None, now).await? {
            Ok(made) => Ok(made),
            Err(fresh) => self.issue_subject(store, fresh, now).await,
        }
    }

    /// A new challenge for `subject`: its id and code, and everything the
    /// store is sent for it. `slotted`: the id carries the subject's slot byte (the store says
    /// so, [`AsyncStore::slots_challenges`]).
    fn fresh(
        &self,
        subject: &str,
        prefix: Option<Mac>,
        slotted: bool,
        now: u64,
    ) -> Result<Fresh, Error> {
        let tag = self.keys.subject_tag(subject);
        let (id, id_tag) = self.keys.new_id(slotted.then_some(tag[0]));
        let code = random_code(self.policy.digits)?;
        let live = Live {
            id_tag,
            macs: Macs::Split {
                by_id: self
                    .keys
                    .code_mac_by_id(&id_tag, code.expose_secret().as_bytes()),
                by_subject: self
                    .keys
                    .code_mac_by_subject(&tag, code.expose_secret().as_bytes()),
            },
            expires_ms: now.saturating_add(self.policy.ttl_ms),
            state: State::Pending,
            attempts: 0,
            created_ms: now,
            updated_ms: now,
            send: 0,
            to: self.keys.seal_subject(&id, &id_tag, &tag, subject),
            prefix,
        };
        let mut encoded = Vec::with_capacity(256);
        live.encode_into(&mut encoded);
        Ok(Fresh {
            key: subject_key(&tag),
            index: index_key(&id_tag),
            tag,
            id,
            code,
            live,
            encoded,
        })
    }

    /// The issue of `fresh`, with one use of each of `counters`, as one
    /// store request ([`AsyncStore::issue_in_one_step`]). `Err(fresh)`
    /// back when the store does not make it so: nothing was written, and
    /// the caller issues it the general way.
    async fn issue_one_step<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        fresh: Fresh,
        counters: &[OneStepCounter<'_>],
        prefix: Option<&OneStepPrefix<'_>>,
        now: u64,
    ) -> Result<Result<(ChallengeId, Secret<String>), Fresh>, Error> {
        let policy = &self.policy;
        let one = OneStepIssue {
            record_key: &fresh.key,
            index_key: &fresh.index,
            subject_tag: &fresh.tag,
            live: &fresh.encoded,
            expires_ms: fresh.live.expires_ms,
            now_ms: now,
            max_attempts: policy.max_attempts,
            max_sends: policy.max_sends,
            send_window_ms: policy.send_window_ms,
            ttl_ms: policy.ttl_ms,
            counters,
            prefix: prefix.copied(),
        };
        match store.issue_in_one_step(&one).await? {
            Some(OneStepOutcome(Decision::Issued)) => {
                self.emit(
                    EventKind::Pending,
                    Some(&fresh.live.id_tag),
                    &fresh.tag,
                    now,
                );
                Ok(Ok((fresh.id, fresh.code)))
            }
            Some(OneStepOutcome(Decision::Refused(e))) => Err(e),
            _ => Ok(Err(fresh)),
        }
    }

    /// The issue of `fresh` as reads and compare-and-swaps.
    async fn issue_subject<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        fresh: Fresh,
        now: u64,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        let Fresh {
            key,
            index,
            tag,
            id,
            code,
            live,
            ..
        } = fresh;
        let id_tag = live.id_tag;
        let policy = &self.policy;
        let step = |current: Option<&[u8]>| record::issue_step(policy, &live, &tag, current, now);
        // A refused issue writes nothing: decide on the record first.
        let current = store.get(&key, now).await?;
        step(current.as_deref())?;
        // The index entry goes in before the record names it; until the
        // record's swap (the last store call) lands, the subject's live
        // code and send count are untouched (see "Failure" on `issue`).
        let index_expires = index_expiry(policy, live.expires_ms);
        if !store
            .compare_and_swap(&index, None, Some(&tag), index_expires, now)
            .await?
        {
            return Err(Error::Contention);
        }
        match drive(store, &key, now, Some(current), step).await {
            Ok(()) => {
                self.emit(EventKind::Pending, Some(&id_tag), &tag, now);
                Ok((id, code))
            }
            Err(e) => {
                // The new entry names a challenge no record holds: remove
                // it now rather than let it wait out its TTL.
                let _ = store
                    .compare_and_swap(&index, Some(&tag), None, 0, now)
                    .await;
                Err(e)
            }
        }
    }

    /// The subject tag and, for an id, its tag; `None` when the id is
    /// unknown.
    async fn locate<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        target: Target<'_>,
        now: u64,
    ) -> Result<Option<(Mac, Option<Mac>)>, Error> {
        Ok(match target {
            Target::Subject(subject) => Some((self.keys.subject_tag(subject), None)),
            Target::Id(id) => {
                let id_tag = self.keys.id_tag(id);
                read_index(store, &index_key(&id_tag), now)
                    .await?
                    .map(|tag| (tag, Some(id_tag)))
            }
        })
    }

    /// Checks `input`, on behalf of `client` when one is named: its check
    /// budget is spent first, and given back on approval (or, on the
    /// general path, when nothing was decided; a Redis store keeps it
    /// spent after a store error, which may hide a counted guess).
    pub(super) async fn verify<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        target: Target<'_>,
        input: &str,
        client: Option<&str>,
    ) -> Result<Verdict, Error> {
        let prepared = self.prepare(target, input);
        let Some(client) = client else {
            return self.verify_target(store, target, &prepared, input).await;
        };
        let now = self.now();
        let counters = [Counter {
            key: counter_key("q:", &self.keys.counter_tag(b"check", &[client.as_bytes()])),
            bucket: self.policy.client_check_bucket(),
            refused: client_check_limit,
        }];
        // The budget spent in the same request as the check, where the
        // store can (one Redis server); the general way otherwise.
        let counter = OneStepCounter {
            key: &counters[0].key,
            max: counters[0].bucket.max,
            window_ms: counters[0].bucket.window_ms,
            refused: client_check_limit,
        };
        if let Some(verdict) = self
            .verify_one_step(store, target, &prepared, input, Some(counter), now)
            .await?
        {
            return Ok(verdict);
        }
        let held = self.reserve(store, &counters, now).await?;
        let verdict = self.verify_target(store, target, &prepared, input).await;
        if !matches!(verdict, Ok(ref v) if !v.is_approved()) {
            self.refund(store, &counters, &held, now).await;
        }
        verdict
    }

    async fn verify_target<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        target: Target<'_>,
        prepared: &Prepared,
        input: &str,
    ) -> Result<Verdict, Error> {
        let now = self.now();
        if let Some(verdict) = self
            .verify_one_step(store, target, prepared, input, None, now)
            .await?
        {
            return Ok(verdict);
        }
        let located = match (prepared.subject_tag, prepared.id_tag) {
            (Some(tag), _) => Some((tag, None)),
            (None, id_tag) => read_index(store, &prepared.key, now)
                .await?
                .map(|tag| (tag, id_tag)),
        };
        let want = located.and_then(|(_, id_tag)| id_tag);
        let attempt = Attempt::new(&self.policy, want, input, now);
        let Some((tag, _)) = located else {
            return Ok(attempt.unknown(&self.keys));
        };
        let Outcome {
            value: verdict,
            prefix,
            challenge: decided,
        } = drive(store, &subject_key(&tag), now, None, |current| {
            record::verify_step(&self.keys, &self.policy, &attempt, &tag, current)
        })
        .await?;
        self.decided(store, verdict, decided.as_ref(), Some(&tag), prefix, now)
            .await;
        Ok(verdict)
    }

    /// What follows a verdict: its event, if it has one, and an approval's
    /// credit to the prefix its send was counted under.
    async fn decided<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        verdict: Verdict,
        challenge: Option<&Mac>,
        subject_tag: Option<&Mac>,
        prefix: Option<Mac>,
        now: u64,
    ) {
        if let Some(tag) = subject_tag {
            match verdict {
                Verdict::Approved => self.emit(EventKind::Approved, challenge, tag, now),
                Verdict::Rejected { attempts_left: 0 } => {
                    self.emit(EventKind::MaxAttemptsReached, challenge, tag, now)
                }
                Verdict::Expired => self.emit(EventKind::Expired, challenge, tag, now),
                _ => {}
            }
        }
        if let Some(prefix) = prefix {
            self.credit(store, &prefix, now).await;
        }
    }

    /// The tags and the candidate's MAC of a check (two HMACs), computed
    /// once before any request, whichever path the check then takes.
    fn prepare(&self, target: Target<'_>, input: &str) -> Prepared {
        let (key, id_tag, subject_tag) = match target {
            Target::Subject(subject) => {
                let tag = self.keys.subject_tag(subject);
                (subject_key(&tag), None, Some(tag))
            }
            Target::Id(id) => {
                let id_tag = self.keys.id_tag(id);
                (index_key(&id_tag), Some(id_tag), None)
            }
        };
        // One HMAC, whatever comes back (`now` plays no part in it).
        let mac = Attempt::new(&self.policy, id_tag, input, 0)
            .split_mac(&self.keys, subject_tag.as_ref().unwrap_or(&[0; MAC_LEN]));
        Prepared {
            key,
            id_tag,
            subject_tag,
            mac,
        }
    }

    /// The check as one store request ([`AsyncStore::check_in_one_step`]),
    /// when the store makes it: one round trip on Redis, by subject or by
    /// id (two by an id without a slot byte on a cluster, where the index
    /// entry is read first).
    /// `None` when the store does not, or the record is one it does not
    /// read: the check then runs as reads and compare-and-swaps.
    async fn verify_one_step<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        target: Target<'_>,
        prepared: &Prepared,
        input: &str,
        counter: Option<OneStepCounter<'_>>,
        now: u64,
    ) -> Result<Option<Verdict>, Error> {
        let (key, id_tag, mac) = (&prepared.key, prepared.id_tag, prepared.mac);
        let mut subject_tag = prepared.subject_tag;
        let attempt = Attempt::new(&self.policy, id_tag, input, now);
        // Malformed input is sent as no MAC.
        let mut check = OneStepCheck {
            lookup: match target {
                Target::Subject(_) => Lookup::Record(key),
                Target::Id(_) => Lookup::Index(key),
            },
            id_tag,
            slotted: matches!(target, Target::Id(id) if id.slot().is_some()),
            mac: bool::from(attempt.valid).then_some(mac),
            now_ms: now,
            max_attempts: self.policy.max_attempts,
            send_window_ms: self.policy.send_window_ms,
            ttl_ms: self.policy.ttl_ms,
            counter,
            credit_window_ms: self.guard.as_ref().map(|g| g.prefix.window_ms),
        };
        let mut outcome = store.check_in_one_step(&check).await?;
        let record_key;
        if let Some(OneStepOutcome(Decision::IndexFirst)) = outcome {
            if check.counter.is_some() {
                // An unknown id found here would leave the budget unspent:
                // the general path spends it.
                return Ok(None);
            }
            let Some(tag) = read_index(store, key, now).await? else {
                return Ok(Some(Verdict::Unknown));
            };
            record_key = subject_key(&tag);
            check.lookup = Lookup::Record(&record_key);
            subject_tag = Some(tag);
            outcome = store.check_in_one_step(&check).await?;
        }
        if let Some(OneStepOutcome(Decision::Refused(e))) = outcome {
            return Err(e);
        }
        let Some(OneStepOutcome(Decision::Decided {
            verdict,
            subject_tag: found,
            challenge,
            prefix,
        })) = outcome
        else {
            return Ok(None);
        };
        let tag = found.or(subject_tag);
        self.decided(
            store,
            verdict,
            challenge.as_ref(),
            tag.as_ref(),
            prefix,
            now,
        )
        .await;
        Ok(Some(verdict))
    }

    /// Credits an approval to the prefix tagged `prefix`: the approval-rate
    /// signal, best effort (the decision stands whatever happens here).
    async fn credit<T: AsyncStore + ?Sized>(&self, store: &T, prefix: &Mac, now: u64) {
        if let Some(guard) = &self.guard {
            let _ = drive(store, &counter_key("p:", prefix), now, None, |current| {
                limits::prefix_credit(guard, current, now)
            })
            .await;
        }
    }

    /// Where the challenge `id` stands, without counting an attempt.
    pub(super) async fn fetch<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        id: &ChallengeId,
    ) -> Result<Option<Challenge>, Error> {
        let now = self.now();
        let Some((tag, Some(id_tag))) = self.locate(store, Target::Id(id), now).await? else {
            return Ok(None);
        };
        let current = store.get(&subject_key(&tag), now).await?;
        let seen = record::view(
            &self.keys,
            &self.policy,
            Some(&id_tag),
            &tag,
            current.as_deref(),
            now,
        )?;
        // A record written before 0.2 keeps no id: the caller named it.
        Ok(seen.map(|c| Challenge {
            id: Some(c.id.unwrap_or(*id)),
            ..c
        }))
    }

    /// Where the subject's newest challenge stands.
    pub(super) async fn fetch_subject<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        subject: &str,
    ) -> Result<Option<Challenge>, Error> {
        let now = self.now();
        let tag = self.keys.subject_tag(subject);
        let current = store.get(&subject_key(&tag), now).await?;
        record::view(
            &self.keys,
            &self.policy,
            None,
            &tag,
            current.as_deref(),
            now,
        )
    }

    /// A prefix's counters, for a subject in E.164 form under a fraud guard.
    pub(super) async fn prefix_stats<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        number: &str,
    ) -> Result<Option<PrefixStats>, Error> {
        let Some(guard) = &self.guard else {
            return Ok(None);
        };
        let Some(digits) = guard.phone(number)? else {
            return Ok(None);
        };
        let now = self.now();
        let tag = self
            .keys
            .counter_tag(b"prefix", &[guard.prefix(digits).as_bytes()]);
        let current = store.get(&counter_key("p:", &tag), now).await?;
        limits::prefix_stats(guard, current.as_deref(), now).map(Some)
    }

    /// Cancels (or, with `approve`, approves) the target's pending
    /// challenge.
    pub(super) async fn settle<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        target: Target<'_>,
        approve: bool,
    ) -> Result<bool, Error> {
        let now = self.now();
        let Some((tag, id_tag)) = self.locate(store, target, now).await? else {
            return Ok(false);
        };
        let Outcome {
            value: done,
            prefix,
            challenge: decided,
        } = drive(store, &subject_key(&tag), now, None, |current| {
            record::settle_step(&self.policy, id_tag.as_ref(), approve, current, now)
        })
        .await?;
        if let Some(prefix) = prefix {
            self.credit(store, &prefix, now).await;
        }
        if done {
            let kind = if approve {
                EventKind::Approved
            } else {
                EventKind::Canceled
            };
            self.emit(kind, decided.as_ref(), &tag, now);
        }
        Ok(done)
    }

    pub(super) async fn budget<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        subject: &str,
    ) -> Result<Budget, Error> {
        let now = self.now();
        let key = subject_key(&self.keys.subject_tag(subject));
        let current = store.get(&key, now).await?;
        record::budget(&self.policy, current.as_deref(), now)
    }

    pub(super) async fn client_budget<T: AsyncStore + ?Sized>(
        &self,
        store: &T,
        client: &str,
    ) -> Result<ClientBudget, Error> {
        let now = self.now();
        let key = client_key(&self.keys.client_tag(client));
        let current = store.get(&key, now).await?;
        record::client_budget(self.policy.client_bucket(), current.as_deref(), now)
    }
}

/// The OTP service on a blocking store: issues codes and verifies them.
///
/// `Otp` is `Send + Sync`; share one instance (for example in an `Arc`)
/// across a service. See the [module documentation](super) for the rules,
/// what is stored and the security notes. Services on an async runtime use
/// [`aio::Otp`](super::aio::Otp), which has the same operations, rules and
/// errors, awaited.
///
/// A store that is not a blocking [`Store`] is refused when the service is
/// made:
///
/// ```compile_fail,E0277
/// use pinseal::Key;
/// use pinseal::otp::{Otp, Policy, SystemClock};
/// use pinseal::otp::store::{DynStore, MemoryStore};
///
/// // DynStore is async: this is `pinseal::otp::aio::Otp`'s store.
/// let otp = Otp::with_parts(&Key::generate(), Policy::default(), DynStore::new(MemoryStore::new()), SystemClock);
/// ```
///
/// # Example
///
/// A manual clock and an explicit store, as in tests:
///
/// ```
/// use pinseal::{ExposeSecret, Key};
/// use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy, Verdict};
/// use std::time::{Duration, SystemTime};
///
/// let clock = ManualClock::new(SystemTime::now());
/// let policy = Policy::new(6, Duration::from_secs(60), 5)?;
/// let otp = Otp::with_parts(&Key::generate(), policy, MemoryStore::new(), clock.clone());
/// let (id, code) = otp.issue("user-42")?;
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(otp.verify(&id, code.expose_secret())?, Verdict::Expired);
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct Otp<S = MemoryStore, C = SystemClock> {
    service: Service<C>,
    store: S,
}

impl Otp {
    /// An OTP service with an in-memory store and the system clock.
    pub fn new(pepper: &Key, policy: Policy) -> Otp {
        Otp::with_parts(pepper, policy, MemoryStore::new(), SystemClock)
    }
}

impl<S: Store> Otp<S, SystemClock> {
    /// An OTP service over `store` and the system clock.
    pub fn with_store(pepper: &Key, policy: Policy, store: S) -> Self {
        Otp::with_parts(pepper, policy, store, SystemClock)
    }
}

impl<S, C> Otp<S, C> {
    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        self.service.policy()
    }

    /// The service with `guard` against SMS pumping: per-prefix velocity
    /// and blocks, country permissions (see [`FraudGuard`]). It applies to
    /// every issue to an E.164 subject.
    ///
    /// [`FraudGuard`]: super::FraudGuard
    pub fn with_fraud_guard(mut self, guard: FraudGuard) -> Self {
        self.service.set_guard(guard);
        self
    }

    /// The fraud guard in force, if any.
    pub fn fraud_guard(&self) -> Option<&FraudGuard> {
        self.service.guard()
    }

    /// The keyed pseudonym by which [`Event`]s name the challenge `id`, for
    /// a service that keeps ids to join its events with.
    ///
    /// [`Event`]: super::Event
    pub fn challenge_pseudonym(&self, id: &ChallengeId) -> crate::pseudonym::Pseudonym {
        self.service.challenge_pseudonym(id)
    }

    /// The service with `sink` receiving its lifecycle events (see
    /// [`Event`]): pending on issue, approved, canceled, expired (when a
    /// check finds it) and max attempts reached. Subjects appear as keyed
    /// pseudonyms under a key derived from the pepper.
    ///
    /// [`Event`]: super::Event
    pub fn with_events(mut self, sink: impl EventSink + 'static) -> Self {
        self.service.set_events(std::sync::Arc::new(sink));
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: Store, C: Clock> Otp<S, C> {
    /// An OTP service over a blocking [`Store`] and a [`Clock`].
    pub fn with_parts(pepper: &Key, policy: Policy, store: S, clock: C) -> Self {
        Otp {
            service: Service::new(pepper, policy, clock),
            store,
        }
    }

    /// Issues a new code for `subject` (a phone number in E.164 form, a user
    /// id, ...; see [`canonical_phone`](super::canonical_phone)).
    ///
    /// Returns the challenge id to keep (in the session, a URL) and the code
    /// to send. A previous code for the subject stops working at once.
    ///
    /// # Errors
    ///
    /// [`Error::SendLimit`] when the subject's send budget for the window is
    /// spent; [`Error::Locked`] when its attempt budget is (each carries the
    /// wait until the window ends, [`Error::retry_after`]);
    /// [`Error::InvalidParameter`] for a subject over 256 bytes; with a
    /// [fraud guard](Otp::with_fraud_guard), [`Error::CountryBlocked`],
    /// [`Error::PrefixBlocked`], and [`Error::InvalidPhoneNumber`] for a
    /// subject that starts with `+` but is not in E.164 form; store errors
    /// ([`Error::Store`], [`Error::StoreFull`], [`Error::StoreCorrupt`],
    /// [`Error::Contention`]). On any error no usable code has been issued.
    ///
    /// # Failure
    ///
    /// A refused or failed issue leaves the subject as it was: the code sent
    /// before still works and no send is spent. On one Redis server the
    /// issue is one script, which writes nothing unless it issues. Elsewhere
    /// the challenge index is written first and the subject's record last,
    /// in one compare-and-swap;
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
        run_blocking(
            self.service
                .issue(&Blocking(&self.store), subject, None, &[]),
        )
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
    /// [`Error::ClientLimit`] when the client's budget is spent (with the
    /// wait until it lifts, [`Error::retry_after`]), then nothing else was
    /// read or written; otherwise as [`Otp::issue`].
    ///
    /// # Failure
    ///
    /// On one Redis server the client's send and the subject's issue are
    /// one script: both are written, or (refused, failed) neither.
    /// Elsewhere the client's send is counted first and given back if the
    /// subject's issue then fails or is refused. Only if that refund fails
    /// too does the client lose one send of its window; the subject never
    /// does. With a [`FraudGuard`](super::FraudGuard) the prefix's send
    /// is counted after the client's, in the same script on one Redis
    /// server, the same way (counted, then given back) elsewhere.
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
    /// let refused = otp.issue_from("+15550100003", "203.0.113.7").unwrap_err();
    /// assert!(matches!(refused, Error::ClientLimit { .. }));
    /// assert!(refused.retry_after() <= Some(Duration::from_secs(3600)));
    /// assert!(otp.issue_from("+15550100003", "198.51.100.4").is_ok()); // another client
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn issue_from(
        &self,
        subject: &str,
        client: &str,
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        run_blocking(
            self.service
                .issue(&Blocking(&self.store), subject, Some(client), &[]),
        )
    }

    /// [`Otp::issue`], counted against every bucket of each rate-limit key
    /// in `limits` (per IP address, per account, ...: see [`RateLimit`])
    /// as well as the subject's budget.
    ///
    /// # Errors
    ///
    /// [`Error::ClientLimit`] when a bucket is spent, with the wait until
    /// it lifts; then the uses already counted in other buckets are given
    /// back and nothing else was written. Otherwise as [`Otp::issue`].
    ///
    /// # Failure
    ///
    /// As [`Otp::issue_from`]: each bucket's use is given back if the issue
    /// fails.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    ///
    /// [`RateLimit`]: super::RateLimit
    pub fn issue_limited(
        &self,
        subject: &str,
        limits: &[RateKey<'_>],
    ) -> Result<(ChallengeId, Secret<String>), Error> {
        run_blocking(
            self.service
                .issue(&Blocking(&self.store), subject, None, limits),
        )
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
        run_blocking(
            self.service
                .verify(&Blocking(&self.store), Target::Id(id), input, None),
        )
    }

    /// [`Otp::verify`] on behalf of `client` (an IP address, a device id),
    /// counted against the client's check budget
    /// ([`Policy::with_client_check_budget`]): a check that is not an
    /// approval spends one check of the client's window. On one Redis
    /// server the budget is spent in the check's own request (one
    /// script); on other stores it is spent before the check and given
    /// back on an approval or an error.
    ///
    /// # Errors
    ///
    /// [`Error::ClientCheckLimit`] when the client's check budget is spent;
    /// then the code was not checked and nothing was counted against the
    /// subject. Otherwise as [`Otp::verify`].
    pub fn verify_from(
        &self,
        id: &ChallengeId,
        client: &str,
        input: &str,
    ) -> Result<Verdict, Error> {
        run_blocking(self.service.verify(
            &Blocking(&self.store),
            Target::Id(id),
            input,
            Some(client),
        ))
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
        run_blocking(self.service.verify(
            &Blocking(&self.store),
            Target::Subject(subject),
            input,
            None,
        ))
    }

    /// [`Otp::check`] on behalf of `client`, counted against its check
    /// budget as [`Otp::verify_from`] is.
    ///
    /// # Errors
    ///
    /// As [`Otp::verify_from`].
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{Error, Key};
    /// use pinseal::otp::{Otp, Policy};
    /// use std::time::Duration;
    ///
    /// let policy = Policy::default().with_client_check_budget(2, Duration::from_secs(600))?;
    /// let otp = Otp::new(&Key::generate(), policy);
    /// for n in 1..=3 {
    ///     otp.issue(&format!("+1555010000{n}"))?;
    /// }
    /// // A stranger guessing at other people's codes is cut off...
    /// otp.check_from("+15550100001", "203.0.113.7", "000000")?;
    /// otp.check_from("+15550100002", "203.0.113.7", "000000")?;
    /// let refused = otp.check_from("+15550100003", "203.0.113.7", "000000");
    /// assert!(matches!(refused, Err(Error::ClientCheckLimit { .. })));
    /// // ...before the third subject lost an attempt.
    /// assert_eq!(otp.budget("+15550100003")?.attempts_left, 5);
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn check_from(&self, subject: &str, client: &str, input: &str) -> Result<Verdict, Error> {
        run_blocking(self.service.verify(
            &Blocking(&self.store),
            Target::Subject(subject),
            input,
            Some(client),
        ))
    }

    /// Where the challenge `id` stands (Verify's *fetch a verification*),
    /// without counting an attempt: its status, the subject it was issued
    /// for (opened from its sealed copy), its times and attempts. `None`
    /// when the id is unknown, replaced by a newer code, or forgotten by
    /// the store.
    ///
    /// # Security
    ///
    /// Whoever can have `fetch` called with an id learns the subject (a
    /// phone number) until the challenge is replaced or forgotten: treat
    /// ids as bearer tokens for that. Call `fetch` on ids the service
    /// itself issued and kept (a session, its own records), or behind the
    /// same authentication as the rest of the service; never on an id an
    /// unauthenticated client sends.
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`], also for a
    /// sealed subject that does not open under this pepper).
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::{ExposeSecret, Key};
    /// use pinseal::otp::{ChallengeStatus, Otp, Policy};
    ///
    /// let otp = Otp::new(&Key::generate(), Policy::default());
    /// let (id, code) = otp.issue("+15551234567")?;
    /// otp.verify(&id, "000000")?; // one wrong attempt (unless it was the code)
    /// otp.verify(&id, code.expose_secret())?;
    /// let seen = otp.fetch(&id)?.expect("kept until replaced");
    /// assert_eq!(seen.status, ChallengeStatus::Approved);
    /// assert_eq!(seen.subject.unwrap().expose_secret(), "+15551234567");
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn fetch(&self, id: &ChallengeId) -> Result<Option<Challenge>, Error> {
        run_blocking(self.service.fetch(&Blocking(&self.store), id))
    }

    /// Where the subject's newest challenge stands, as [`Otp::fetch`]
    /// reports it, with its id: what a service that checks by subject
    /// ([`Otp::check`]) answers with. `None` when the subject has no
    /// challenge the store remembers.
    ///
    /// # Errors
    ///
    /// As [`Otp::fetch`].
    pub fn fetch_subject(&self, subject: &str) -> Result<Option<Challenge>, Error> {
        run_blocking(self.service.fetch_subject(&Blocking(&self.store), subject))
    }

    /// Approves the challenge `id` without a code (Verify's update to
    /// `approved`), for a subject verified another way. Only a pending
    /// challenge that has not expired or been locked is approved; it is
    /// then spent, as by a right code, and the subject's attempt count is
    /// reset. Returns whether it was approved.
    ///
    /// # Errors
    ///
    /// As [`Otp::cancel`].
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::Key;
    /// use pinseal::otp::{ChallengeStatus, Otp, Policy};
    ///
    /// let otp = Otp::new(&Key::generate(), Policy::default());
    /// let (id, _code) = otp.issue("+15551234567")?;
    /// assert!(otp.approve(&id)?);
    /// assert_eq!(otp.fetch(&id)?.unwrap().status, ChallengeStatus::Approved);
    /// assert!(!otp.approve(&id)?);
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn approve(&self, id: &ChallengeId) -> Result<bool, Error> {
        run_blocking(
            self.service
                .settle(&Blocking(&self.store), Target::Id(id), true),
        )
    }

    /// The fraud guard's counters for the prefix of `number` (an E.164
    /// number): sends, approvals and any block ([`PrefixStats`]). `None`
    /// without a fraud guard or for a subject that is not an E.164 number.
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`]).
    ///
    /// [`PrefixStats`]: super::PrefixStats
    pub fn prefix_stats(&self, number: &str) -> Result<Option<PrefixStats>, Error> {
        run_blocking(self.service.prefix_stats(&Blocking(&self.store), number))
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
        run_blocking(
            self.service
                .settle(&Blocking(&self.store), Target::Id(id), false),
        )
    }

    /// Cancels the subject's pending challenge, whichever it is; as
    /// [`Otp::cancel`].
    ///
    /// # Errors
    ///
    /// As [`Otp::cancel`].
    pub fn cancel_subject(&self, subject: &str) -> Result<bool, Error> {
        run_blocking(
            self.service
                .settle(&Blocking(&self.store), Target::Subject(subject), false),
        )
    }

    /// The subject's budgets now: sends and attempts left, and when they
    /// reset ([`Budget::retry_after`] for a `Retry-After` header).
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`]).
    pub fn budget(&self, subject: &str) -> Result<Budget, Error> {
        run_blocking(self.service.budget(&Blocking(&self.store), subject))
    }

    /// The client's send budget now (see [`Otp::issue_from`]).
    ///
    /// # Errors
    ///
    /// Store errors ([`Error::Store`], [`Error::StoreCorrupt`]).
    pub fn client_budget(&self, client: &str) -> Result<ClientBudget, Error> {
        run_blocking(self.service.client_budget(&Blocking(&self.store), client))
    }
}

/// The derived keys are wiped on drop, and a [`MemoryStore`] holds no secret
/// (MACs under those keys, counters and times). A store that holds
/// credentials (a Redis password, AWS credentials) does not promise to wipe
/// them, so a service over it is not `ZeroizeOnDrop`.
impl<C> zeroize::ZeroizeOnDrop for Otp<MemoryStore, C> {}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Otp<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otp")
            .field("pepper", &crate::secret::REDACTED)
            .field("policy", self.service.policy())
            .field("store", &self.store)
            .field("clock", self.service.clock())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use crate::mac::COMPUTED;
    use crate::otp::store::MemoryStore;
    use crate::otp::{ManualClock, Otp, Policy, Verdict};
    use crate::{ExposeSecret, Key};

    /// The MACs `op` computes on this thread.
    fn macs<T>(op: impl FnOnce() -> T) -> (T, usize) {
        let before = COMPUTED.with(|n| n.get());
        let out = op();
        (out, COMPUTED.with(|n| n.get()) - before)
    }

    #[test]
    fn a_check_from_a_client_computes_its_tags_and_mac_once() {
        let otp = Otp::with_parts(
            &Key::from_bytes([3; 32]),
            Policy::default(),
            MemoryStore::new(),
            ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        );
        let (id, code) = otp.issue("+15551234567").unwrap();
        // The subject's tag and the code's MAC.
        let (verdict, n) = macs(|| otp.check("+15551234567", "000000"));
        assert!(matches!(verdict, Ok(Verdict::Rejected { .. })));
        assert_eq!(n, 2);
        // The same and the client's counter tag: the memory store spends
        // the budget the general way, then decides in one step, and no
        // MAC is computed again on the second path.
        let (verdict, n) = macs(|| otp.check_from("+15551234567", "203.0.113.7", "000000"));
        assert!(matches!(verdict, Ok(Verdict::Rejected { .. })));
        assert_eq!(n, 3);
        // By id: the id's tag and the code's MAC (and the counter's).
        let (verdict, n) = macs(|| otp.verify_from(&id, "203.0.113.7", code.expose_secret()));
        assert_eq!(verdict, Ok(Verdict::Approved));
        assert_eq!(n, 3);
    }
}
