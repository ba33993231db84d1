//! What the store holds for a subject and a client, and how each operation
//! changes it. Every step here is pure: it is shown the value read from
//! one key and returns a [`Step`], which the driver writes back with a
//! compare-and-swap.

use std::time::Duration;

use subtle::{Choice, ConstantTimeEq};

use super::challenge::{Budget, ClientBudget, Verdict};
use super::driver::{Delete, Step};
use super::policy::Policy;
use crate::mac::MAC_LEN;
use crate::secret::ExposeSecret;
use crate::{Error, Key};

/// An HMAC-SHA256 output: what the store holds in place of every subject,
/// client, challenge id and code.
pub(super) type Mac = [u8; MAC_LEN];

pub(super) fn hmac(key: &Key, parts: &[&[u8]]) -> Mac {
    crate::mac::hmac_sha256(key.expose_secret(), parts)
}

/// The four keys derived from the pepper.
pub(super) struct Keys {
    code: Key,
    subject: Key,
    index: Key,
    client: Key,
}

impl Keys {
    pub(super) fn new(pepper: &Key) -> Keys {
        Keys {
            code: pepper.derive("otp/v1/code"),
            subject: pepper.derive("otp/v1/subject"),
            index: pepper.derive("otp/v1/index"),
            client: pepper.derive("otp/v1/client"),
        }
    }

    pub(super) fn subject_tag(&self, subject: &str) -> Mac {
        hmac(&self.subject, &[subject.as_bytes()])
    }

    pub(super) fn id_tag(&self, id: &[u8; 16]) -> Mac {
        hmac(&self.index, &[id])
    }

    pub(super) fn client_tag(&self, client: &str) -> Mac {
        hmac(&self.client, &[client.as_bytes()])
    }

    /// The stored MAC of a code: HMAC(code key, id tag || subject tag ||
    /// code).
    pub(super) fn code_mac(&self, id_tag: &Mac, subject_tag: &Mac, code: &[u8]) -> Mac {
        hmac(&self.code, &[id_tag, subject_tag, code])
    }
}

/// The store key of a subject's record.
pub(super) fn subject_key(tag: &Mac) -> String {
    format!("s:{}", crate::hex::encode(tag))
}

/// The store key of a challenge's index entry.
pub(super) fn index_key(id_tag: &Mac) -> String {
    format!("c:{}", crate::hex::encode(id_tag))
}

/// The store key of a client's record.
pub(super) fn client_key(tag: &Mac) -> String {
    format!("k:{}", crate::hex::encode(tag))
}

/// When a challenge's index entry expires: one TTL after the challenge, so
/// that a late answer is told [`Verdict::Expired`] rather than
/// [`Verdict::Unknown`].
pub(super) fn index_expiry(policy: &Policy, challenge_expires_ms: u64) -> u64 {
    challenge_expires_ms.saturating_add(policy.ttl_ms)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Pending,
    Canceled,
    /// Approved, and so spent: it verifies as unknown.
    Approved,
}

/// The newest challenge inside a subject's record. No `Debug`: it holds a
/// code's MAC.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Live {
    /// HMAC(index key, challenge id): the id itself is not stored.
    pub(super) id_tag: Mac,
    pub(super) mac: Mac,
    pub(super) expires_ms: u64,
    pub(super) state: State,
    /// Wrong attempts on this code, whatever window they fell in: a code
    /// never takes more than `max_attempts` guesses.
    pub(super) attempts: u32,
}

/// The index entry of a replaced challenge, which may still be in the
/// store: the next issue deletes it.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Stale {
    pub(super) id_tag: Mac,
    pub(super) index_expires_ms: u64,
}

/// A subject's state, as stored (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) window_start_ms: u64,
    pub(super) sends: u32,
    pub(super) attempts: u32,
    pub(super) live: Option<Live>,
    pub(super) stale: Option<Stale>,
}

/// Version 1 records (no challenge state, no stale entry, MACs over the
/// challenge id) are read for their counters only.
const RECORD_V1: u8 = 1;
const RECORD_VERSION: u8 = 2;
#[cfg(test)]
const RECORD_MAX: usize = 1 + 8 + 4 + 4 + 1 + (MAC_LEN + MAC_LEN + 8 + 4) + 1 + (MAC_LEN + 8);

fn take<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], Error> {
    let (head, rest) = b.split_first_chunk::<N>().ok_or(Error::StoreCorrupt)?;
    *b = rest;
    Ok(*head)
}

impl Record {
    fn fresh(now: u64) -> Record {
        Record {
            window_start_ms: now,
            sends: 0,
            attempts: 0,
            live: None,
            stale: None,
        }
    }

    /// The record as read, or a fresh one; with its window restarted if the
    /// old one has ended.
    fn current(bytes: Option<&[u8]>, policy: &Policy, now: u64) -> Result<Record, Error> {
        let mut r = bytes.map_or(Ok(Record::fresh(now)), Record::decode)?;
        r.roll(policy, now);
        Ok(r)
    }

    /// Starts a new window, with full budgets, if the current one has ended.
    fn roll(&mut self, policy: &Policy, now: u64) {
        if now >= self.window_start_ms.saturating_add(policy.send_window_ms) {
            self.window_start_ms = now;
            self.sends = 0;
            self.attempts = 0;
        }
    }

    /// When the record can be forgotten: after its window, and after its
    /// challenge's index entry (so that a late answer is still told
    /// [`Verdict::Expired`]).
    fn expiry(&self, policy: &Policy) -> u64 {
        let window_end = self.window_start_ms.saturating_add(policy.send_window_ms);
        self.live.as_ref().map_or(window_end, |l| {
            index_expiry(policy, l.expires_ms).max(window_end)
        })
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.window_start_ms.to_be_bytes());
        out.extend_from_slice(&self.sends.to_be_bytes());
        out.extend_from_slice(&self.attempts.to_be_bytes());
        match &self.live {
            None => out.push(0),
            Some(live) => {
                out.push(match live.state {
                    State::Pending => 1,
                    State::Canceled => 2,
                    State::Approved => 3,
                });
                out.extend_from_slice(&live.id_tag);
                out.extend_from_slice(&live.mac);
                out.extend_from_slice(&live.expires_ms.to_be_bytes());
                out.extend_from_slice(&live.attempts.to_be_bytes());
            }
        }
        match &self.stale {
            None => out.push(0),
            Some(stale) => {
                out.push(1);
                out.extend_from_slice(&stale.id_tag);
                out.extend_from_slice(&stale.index_expires_ms.to_be_bytes());
            }
        }
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Record, Error> {
        let mut b = bytes;
        let [version] = take::<1>(&mut b)?;
        if version != RECORD_VERSION && version != RECORD_V1 {
            return Err(Error::StoreCorrupt);
        }
        let window_start_ms = u64::from_be_bytes(take(&mut b)?);
        let sends = u32::from_be_bytes(take(&mut b)?);
        let attempts = u32::from_be_bytes(take(&mut b)?);
        let state = match take::<1>(&mut b)? {
            [0] => None,
            [1] => Some(State::Pending),
            [2] if version == RECORD_VERSION => Some(State::Canceled),
            [3] if version == RECORD_VERSION => Some(State::Approved),
            _ => return Err(Error::StoreCorrupt),
        };
        let live = match state {
            None => None,
            Some(state) => Some(Live {
                id_tag: take(&mut b)?,
                mac: take(&mut b)?,
                expires_ms: u64::from_be_bytes(take(&mut b)?),
                state,
                attempts: if version == RECORD_V1 {
                    0
                } else {
                    u32::from_be_bytes(take(&mut b)?)
                },
            }),
        };
        let (live, stale) = if version == RECORD_V1 {
            (None, None)
        } else {
            let stale = match take::<1>(&mut b)? {
                [0] => None,
                [1] => Some(Stale {
                    id_tag: take(&mut b)?,
                    index_expires_ms: u64::from_be_bytes(take(&mut b)?),
                }),
                _ => return Err(Error::StoreCorrupt),
            };
            (live, stale)
        };
        if !b.is_empty() {
            return Err(Error::StoreCorrupt);
        }
        Ok(Record {
            window_start_ms,
            sends,
            attempts,
            live,
            stale,
        })
    }
}

/// The subject's record after issuing `live`, or why the issue is refused.
/// The index entry of a challenge the record already held as stale is
/// deleted just before the write; the challenge being replaced becomes the
/// stale one.
pub(super) fn issue_step(
    policy: &Policy,
    live: &Live,
    subject_tag: &Mac,
    current: Option<&[u8]>,
    now: u64,
) -> Result<Step<()>, Error> {
    let mut next = Record::current(current, policy, now)?;
    let retry_after = Duration::from_millis(
        next.window_start_ms
            .saturating_add(policy.send_window_ms)
            .saturating_sub(now),
    );
    if next.attempts >= policy.max_attempts {
        return Err(Error::Locked { retry_after });
    }
    if next.sends >= policy.max_sends {
        return Err(Error::SendLimit { retry_after });
    }
    next.sends += 1;
    let first = next
        .stale
        .take()
        .filter(|s| s.index_expires_ms > now)
        .map(|s| Delete {
            key: index_key(&s.id_tag),
            expected: subject_tag.to_vec(),
        });
    next.stale = next.live.take().map(|old| Stale {
        id_tag: old.id_tag,
        index_expires_ms: index_expiry(policy, old.expires_ms),
    });
    next.live = Some(live.clone());
    Ok(Step::Write {
        expires_ms: next.expiry(policy),
        next: Some(next.encode()),
        then: (),
        first,
    })
}

/// A code to check, and which challenge it answers.
pub(super) struct Attempt<'a> {
    pub(super) now: u64,
    /// `Some`: only this challenge (verification by id); `None`: the
    /// subject's newest challenge (check by subject).
    pub(super) id_tag: Option<Mac>,
    /// The input, or a same-length placeholder when it is malformed.
    pub(super) candidate: &'a [u8],
    /// Whether the input was well formed.
    pub(super) valid: Choice,
}

impl<'a> Attempt<'a> {
    pub(super) fn new(policy: &Policy, id_tag: Option<Mac>, input: &'a str, now: u64) -> Self {
        let digits = usize::from(policy.digits);
        let well_formed = input.len() == digits && input.bytes().all(|b| b.is_ascii_digit());
        // Malformed input is replaced by a same-length placeholder so the
        // HMAC does the same work; it can never match (see `valid`).
        let candidate: &[u8] = if well_formed {
            input.as_bytes()
        } else {
            &b"0000000000"[..digits]
        };
        Attempt {
            now,
            id_tag,
            candidate,
            valid: Choice::from(u8::from(well_formed)),
        }
    }

    /// The HMAC of the candidate for `id_tag`, compared in constant time
    /// with `stored`.
    fn matches(&self, keys: &Keys, id_tag: &Mac, subject_tag: &Mac, stored: &Mac) -> Choice {
        keys.code_mac(id_tag, subject_tag, self.candidate)
            .ct_eq(stored)
            & self.valid
    }

    /// The verdict when there is no record to look at, after the same HMAC
    /// and comparison a real check costs.
    pub(super) fn unknown(&self, keys: &Keys) -> Verdict {
        let _ = self.matches(keys, &[0; MAC_LEN], &[0; MAC_LEN], &[0; MAC_LEN]);
        Verdict::Unknown
    }
}

/// One verification round against the subject record as read.
pub(super) fn verify_step(
    keys: &Keys,
    policy: &Policy,
    attempt: &Attempt<'_>,
    subject_tag: &Mac,
    current: Option<&[u8]>,
) -> Result<Step<Verdict>, Error> {
    let record = current.map(Record::decode).transpose()?;
    let live = record
        .as_ref()
        .and_then(|r| r.live.as_ref())
        .filter(|l| attempt.id_tag.is_none_or(|want| l.id_tag == want));
    // Exactly one HMAC and one comparison, whatever the state.
    let (id_tag, stored) = live.map_or(([0; MAC_LEN], [0; MAC_LEN]), |l| (l.id_tag, l.mac));
    let matched: bool = attempt.matches(keys, &id_tag, subject_tag, &stored).into();
    let (Some(record), Some(live)) = (&record, live) else {
        return Ok(Step::Done(Verdict::Unknown));
    };
    match live.state {
        State::Pending => {}
        State::Canceled => return Ok(Step::Done(Verdict::Canceled)),
        State::Approved => return Ok(Step::Done(Verdict::Unknown)),
    }
    let now = attempt.now;
    // The record as of now: a window that has ended no longer locks.
    let mut next = record.clone();
    next.roll(policy, now);
    if next.attempts >= policy.max_attempts || live.attempts >= policy.max_attempts {
        return Ok(Step::Done(Verdict::Locked));
    }
    if now >= live.expires_ms {
        return Ok(Step::Done(Verdict::Expired));
    }
    let verdict = if matched {
        // The challenge stays in the record, spent, until the next issue
        // replaces it and deletes its index entry.
        next.live = Some(Live {
            mac: [0; MAC_LEN],
            state: State::Approved,
            ..live.clone()
        });
        next.attempts = 0;
        Verdict::Approved
    } else {
        next.attempts += 1;
        let code_attempts = live.attempts + 1;
        if let Some(l) = next.live.as_mut() {
            l.attempts = code_attempts;
        }
        Verdict::Rejected {
            attempts_left: policy
                .max_attempts
                .saturating_sub(next.attempts.max(code_attempts)),
        }
    };
    Ok(Step::write(next.encode(), next.expiry(policy), verdict))
}

/// The record with its pending challenge canceled, if it has one (and, for
/// `id_tag: Some`, if it is that one).
pub(super) fn cancel_step(
    policy: &Policy,
    id_tag: Option<&Mac>,
    current: Option<&[u8]>,
    now: u64,
) -> Result<Step<bool>, Error> {
    let Some(bytes) = current else {
        return Ok(Step::Done(false));
    };
    let mut next = Record::current(Some(bytes), policy, now)?;
    let Some(live) = next.live.as_mut() else {
        return Ok(Step::Done(false));
    };
    if live.state != State::Pending
        || now >= live.expires_ms
        || id_tag.is_some_and(|want| *want != live.id_tag)
    {
        return Ok(Step::Done(false));
    }
    live.state = State::Canceled;
    live.mac = [0; MAC_LEN];
    Ok(Step::write(next.encode(), next.expiry(policy), true))
}

fn remaining(end_ms: u64, now: u64) -> Duration {
    Duration::from_millis(end_ms.saturating_sub(now))
}

/// A subject's budgets as of `now`.
pub(super) fn budget(policy: &Policy, current: Option<&[u8]>, now: u64) -> Result<Budget, Error> {
    let Some(bytes) = current else {
        return Ok(Budget {
            sends_left: policy.max_sends,
            attempts_left: policy.max_attempts,
            resets_in: Duration::ZERO,
        });
    };
    let r = Record::decode(bytes)?;
    let end = r.window_start_ms.saturating_add(policy.send_window_ms);
    if now >= end {
        return budget(policy, None, now);
    }
    Ok(Budget {
        sends_left: policy.max_sends.saturating_sub(r.sends),
        attempts_left: policy.max_attempts.saturating_sub(r.attempts),
        resets_in: remaining(end, now),
    })
}

/// A client's sends in its window, as stored under `k:` + hex(client tag).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct ClientRecord {
    pub(super) window_start_ms: u64,
    pub(super) sends: u32,
}

const CLIENT_VERSION: u8 = 1;

impl ClientRecord {
    fn current(bytes: Option<&[u8]>, policy: &Policy, now: u64) -> Result<ClientRecord, Error> {
        let fresh = ClientRecord {
            window_start_ms: now,
            sends: 0,
        };
        let Some(bytes) = bytes else {
            return Ok(fresh);
        };
        let mut b = bytes;
        let [version] = take::<1>(&mut b)?;
        let r = ClientRecord {
            window_start_ms: u64::from_be_bytes(take(&mut b)?),
            sends: u32::from_be_bytes(take(&mut b)?),
        };
        if version != CLIENT_VERSION || !b.is_empty() {
            return Err(Error::StoreCorrupt);
        }
        if now >= r.end(policy) {
            return Ok(fresh);
        }
        Ok(r)
    }

    fn end(&self, policy: &Policy) -> u64 {
        self.window_start_ms.saturating_add(policy.client_window_ms)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13);
        out.push(CLIENT_VERSION);
        out.extend_from_slice(&self.window_start_ms.to_be_bytes());
        out.extend_from_slice(&self.sends.to_be_bytes());
        out
    }
}

/// The client's record with one more send, or [`Error::ClientLimit`]; the
/// write's outcome is the window it was counted in, for [`client_refund`].
pub(super) fn client_reserve(
    policy: &Policy,
    current: Option<&[u8]>,
    now: u64,
) -> Result<Step<u64>, Error> {
    let mut r = ClientRecord::current(current, policy, now)?;
    if r.sends >= policy.client_max_sends {
        return Err(Error::ClientLimit {
            retry_after: Duration::from_millis(r.end(policy).saturating_sub(now)),
        });
    }
    r.sends += 1;
    Ok(Step::write(r.encode(), r.end(policy), r.window_start_ms))
}

/// The client's record with the send counted in `window_start_ms` given
/// back; nothing to write if that window is over or nothing is counted.
pub(super) fn client_refund(
    policy: &Policy,
    current: Option<&[u8]>,
    window_start_ms: u64,
    now: u64,
) -> Result<Step<()>, Error> {
    let mut r = ClientRecord::current(current, policy, now)?;
    if current.is_none() || r.window_start_ms != window_start_ms || r.sends == 0 {
        return Ok(Step::Done(()));
    }
    r.sends -= 1;
    Ok(Step::write(r.encode(), r.end(policy), ()))
}

/// A client's budget as of `now`.
pub(super) fn client_budget(
    policy: &Policy,
    current: Option<&[u8]>,
    now: u64,
) -> Result<ClientBudget, Error> {
    let r = ClientRecord::current(current, policy, now)?;
    Ok(ClientBudget {
        sends_left: policy.client_max_sends.saturating_sub(r.sends),
        resets_in: if r.sends == 0 {
            Duration::ZERO
        } else {
            remaining(r.end(policy), now)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            window_start_ms: 1,
            sends: 2,
            attempts: 3,
            live: Some(Live {
                id_tag: [4; 32],
                mac: [5; 32],
                expires_ms: 6,
                state: State::Canceled,
                attempts: 9,
            }),
            stale: Some(Stale {
                id_tag: [7; 32],
                index_expires_ms: 8,
            }),
        }
    }

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(bytes.len(), RECORD_MAX);
        assert!(Record::decode(&bytes).unwrap() == r);
        for cut in 0..bytes.len() {
            assert_eq!(
                Record::decode(&bytes[..cut]).err(),
                Some(Error::StoreCorrupt)
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Record::decode(&extra).is_err());
        for bad in [0, 3, 9] {
            let mut bad_version = bytes.clone();
            bad_version[0] = bad;
            assert!(Record::decode(&bad_version).is_err());
        }
        let mut bad_state = bytes;
        bad_state[17] = 4;
        assert!(Record::decode(&bad_state).is_err());
    }

    #[test]
    fn version_1_records_keep_their_counters_only() {
        // window start 1, 2 sends, 3 attempts, a live challenge.
        let mut v1 = vec![1];
        v1.extend_from_slice(&1u64.to_be_bytes());
        v1.extend_from_slice(&2u32.to_be_bytes());
        v1.extend_from_slice(&3u32.to_be_bytes());
        v1.push(1);
        v1.extend_from_slice(&[4; 64]);
        v1.extend_from_slice(&6u64.to_be_bytes());
        let r = Record::decode(&v1).unwrap();
        assert_eq!((r.window_start_ms, r.sends, r.attempts), (1, 2, 3));
        assert!(r.live.is_none() && r.stale.is_none());
        // A v1 record cannot hold the canceled state.
        v1[17] = 2;
        assert!(Record::decode(&v1).is_err());
    }

    /// What a step writes, if anything.
    fn written<T>(step: Step<T>) -> Option<(Vec<u8>, u64, T)> {
        match step {
            Step::Done(_) => None,
            Step::Write {
                next,
                expires_ms,
                then,
                ..
            } => Some((next.unwrap(), expires_ms, then)),
        }
    }

    #[test]
    fn client_records_round_trip_and_refund_only_their_window() {
        let policy = Policy::default();
        let (bytes, end, start) = written(client_reserve(&policy, None, 1_000).unwrap()).unwrap();
        assert_eq!((start, end), (1_000, 1_000 + policy.client_window_ms));
        let (bytes, ..) = written(client_reserve(&policy, Some(&bytes), 2_000).unwrap()).unwrap();
        let r = ClientRecord::current(Some(&bytes), &policy, 2_000).unwrap();
        assert_eq!(r.sends, 2);
        assert!(written(client_refund(&policy, Some(&bytes), 999, 2_000).unwrap()).is_none());
        let (refunded, ..) =
            written(client_refund(&policy, Some(&bytes), 1_000, 2_000).unwrap()).unwrap();
        assert_eq!(
            ClientRecord::current(Some(&refunded), &policy, 2_000)
                .unwrap()
                .sends,
            1
        );
        // After the window, the count starts again and nothing is refunded.
        let later = 1_000 + policy.client_window_ms;
        assert!(written(client_refund(&policy, Some(&bytes), 1_000, later).unwrap()).is_none());
        let mut corrupt = bytes.clone();
        corrupt.push(0);
        assert_eq!(
            client_reserve(&policy, Some(&corrupt), 2_000).err(),
            Some(Error::StoreCorrupt)
        );
    }
}
