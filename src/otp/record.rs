//! What the store holds for a subject and a client, and how each operation
//! changes it. Every step here is pure: it is shown the value read from
//! one key and returns a [`Step`], which the driver writes back with a
//! compare-and-swap.

use std::time::Duration;

use subtle::{Choice, ConstantTimeEq};

use super::challenge::{Budget, Challenge, ChallengeId, ChallengeStatus, ClientBudget, Verdict};
use super::driver::{Delete, Step};
use super::limits::Bucket;
use super::policy::Policy;
use super::store::{Decision, OneStepCheck};
use crate::mac::{KeyedMac, MAC_LEN};
use crate::secret::ExposeSecret;
use crate::{Error, Key};

/// An HMAC-SHA256 output: what the store holds in place of every subject,
/// client, challenge id and code.
pub(super) type Mac = [u8; MAC_LEN];

/// A derived key, keyed into HMAC-SHA256 once.
fn keyed(pepper: &Key, label: &str) -> KeyedMac {
    KeyedMac::new(pepper.derive(label).expose_secret())
}

/// The keys derived from the pepper: four MAC keys, and the key that seals
/// a challenge's subject so that a lookup by id can say whom it was for.
pub(super) struct Keys {
    code: KeyedMac,
    subject: KeyedMac,
    index: KeyedMac,
    client: KeyedMac,
    to: Box<crate::Sealer>,
}

/// The associated data of a sealed subject: the challenge and subject it
/// belongs to, so a sealed subject cannot be moved to another record.
fn to_aad(id_tag: &Mac, subject_tag: &Mac) -> [u8; 2 * MAC_LEN + 16] {
    let mut aad = [0u8; 2 * MAC_LEN + 16];
    aad[..16].copy_from_slice(b"pinseal/otp/to/1");
    aad[16..16 + MAC_LEN].copy_from_slice(id_tag);
    aad[16 + MAC_LEN..].copy_from_slice(subject_tag);
    aad
}

/// The longest subject a challenge is issued for, in bytes: a phone number,
/// an e-mail address (at most 254), a user id.
pub(super) const MAX_SUBJECT_LEN: usize = 256;

impl Keys {
    pub(super) fn new(pepper: &Key) -> Keys {
        Keys {
            code: keyed(pepper, "otp/v1/code"),
            subject: keyed(pepper, "otp/v1/subject"),
            index: keyed(pepper, "otp/v1/index"),
            client: keyed(pepper, "otp/v1/client"),
            to: Box::new(crate::Sealer::new(&pepper.derive("otp/v1/to"))),
        }
    }

    /// The challenge id and subject, sealed for the record of challenge
    /// `id_tag`.
    pub(super) fn seal_subject(
        &self,
        id: &ChallengeId,
        id_tag: &Mac,
        subject_tag: &Mac,
        subject: &str,
    ) -> Vec<u8> {
        use crate::Seal;
        let mut plain = crate::Secret::new(Vec::with_capacity(16 + subject.len()));
        let p = crate::secret::ExposeSecretMut::expose_secret_mut(&mut plain);
        // The slot byte, if any, comes back from the subject tag: not sealed.
        p.extend_from_slice(id.random_bytes());
        p.extend_from_slice(subject.as_bytes());
        self.to
            .seal(plain.expose_secret(), &to_aad(id_tag, subject_tag))
            .into_bytes()
    }

    /// The challenge id and subject a record's challenge was issued for.
    pub(super) fn open_subject(
        &self,
        id_tag: &Mac,
        subject_tag: &Mac,
        sealed: &[u8],
    ) -> Result<(ChallengeId, crate::Secret<String>), Error> {
        use crate::Seal;
        let bytes = self
            .to
            .open(sealed, &to_aad(id_tag, subject_tag))
            .map_err(|_| Error::StoreCorrupt)?;
        let (id, subject) = bytes
            .expose_secret()
            .split_first_chunk::<16>()
            .ok_or(Error::StoreCorrupt)?;
        let text = core::str::from_utf8(subject).map_err(|_| Error::StoreCorrupt)?;
        // With a slot byte (the subject tag's first, masked) if the
        // challenge was issued with one: its tag tells.
        let mut slotted_tag = self.slot_mac(id);
        let mask = slotted_tag[0];
        slotted_tag[0] = subject_tag[0];
        let id = if slotted_tag == *id_tag {
            ChallengeId::from_parts(*id, Some(subject_tag[0] ^ mask))
        } else {
            ChallengeId::from_parts(*id, None)
        };
        Ok((id, crate::Secret::new(text.to_owned())))
    }

    /// The tag of a rate-limit counter: `kind` and the `parts` it counts
    /// under, length-prefixed so that no two spellings meet.
    pub(super) fn counter_tag(&self, kind: &[u8], parts: &[&[u8]]) -> Mac {
        let mut input: Vec<&[u8]> = Vec::with_capacity(2 + 2 * parts.len());
        let lens: Vec<[u8; 8]> = parts
            .iter()
            .map(|p| (p.len() as u64).to_be_bytes())
            .collect();
        input.push(kind);
        input.push(b"\0");
        for (part, len) in parts.iter().zip(&lens) {
            input.push(len);
            input.push(part);
        }
        self.client.mac(&input)
    }

    pub(super) fn subject_tag(&self, subject: &str) -> Mac {
        self.subject.mac(&[subject.as_bytes()])
    }

    /// The tag of challenge `id`: its HMAC under the index key. With a
    /// slot byte, the HMAC of its random bytes and `0x01`, whose first
    /// byte masks the slot byte in the id and is replaced in the tag by
    /// the slot itself, so that the index entry's key starts as the
    /// subject record's does (see [`ChallengeId`]'s slot byte).
    pub(super) fn id_tag(&self, id: &ChallengeId) -> Mac {
        match id.slot() {
            None => self.index.mac(&[id.random_bytes()]),
            Some(masked) => {
                let mut tag = self.slot_mac(id.random_bytes());
                tag[0] ^= masked;
                tag
            }
        }
    }

    /// HMAC(index key, random bytes || 0x01): its first byte masks a slot
    /// byte, the rest is the id tag's.
    fn slot_mac(&self, random: &[u8; 16]) -> Mac {
        self.index.mac(&[random, &[1]])
    }

    /// A new challenge id, and its tag: 16 random bytes and, with `slot`
    /// (the subject tag's first byte), that byte masked.
    pub(super) fn new_id(&self, slot: Option<u8>) -> (ChallengeId, Mac) {
        let mut random = [0u8; 16];
        crate::rand::fill(&mut random);
        match slot {
            None => {
                let id = ChallengeId::from_parts(random, None);
                (id, self.id_tag(&id))
            }
            Some(slot) => {
                let mut tag = self.slot_mac(&random);
                let id = ChallengeId::from_parts(random, Some(slot ^ tag[0]));
                tag[0] = slot;
                (id, tag)
            }
        }
    }

    pub(super) fn client_tag(&self, client: &str) -> Mac {
        self.client.mac(&[client.as_bytes()])
    }

    /// The MAC of a code in records before version 4: HMAC(code key, id
    /// tag || subject tag || code).
    pub(super) fn code_mac(&self, id_tag: &Mac, subject_tag: &Mac, code: &[u8]) -> Mac {
        self.code.mac(&[id_tag, subject_tag, code])
    }

    /// The MAC a check by id compares (version 4): HMAC(code key, "id" ||
    /// id tag || code). It needs nothing from the record, so a store can
    /// be sent it with the request.
    pub(super) fn code_mac_by_id(&self, id_tag: &Mac, code: &[u8]) -> Mac {
        self.code.mac(&[b"id", id_tag, code])
    }

    /// The MAC a check by subject compares (version 4): HMAC(code key, "to"
    /// || subject tag || code).
    pub(super) fn code_mac_by_subject(&self, subject_tag: &Mac, code: &[u8]) -> Mac {
        self.code.mac(&[b"to", subject_tag, code])
    }
}

/// The store key of a subject's record.
pub(super) fn subject_key(tag: &Mac) -> String {
    crate::hex::prefixed("s:", tag)
}

/// [`subject_key`], written into `buf` rather than allocated: for the
/// memory store's check by id, which looks the record up under the lock.
pub(super) fn subject_key_in<'a>(
    tag: &Mac,
    buf: &'a mut [u8; 2 + 2 * MAC_LEN],
) -> std::borrow::Cow<'a, str> {
    buf[..2].copy_from_slice(b"s:");
    // Neither step fails (twice the input, ASCII); if one did, the
    // allocated spelling gives the same key.
    if const_hex::encode_to_slice(tag, &mut buf[2..]).is_ok() {
        if let Ok(key) = core::str::from_utf8(buf) {
            return std::borrow::Cow::Borrowed(key);
        }
    }
    std::borrow::Cow::Owned(subject_key(tag))
}

/// The store key of a challenge's index entry.
pub(super) fn index_key(id_tag: &Mac) -> String {
    crate::hex::prefixed("c:", id_tag)
}

/// The store key of a client's record.
pub(super) fn client_key(tag: &Mac) -> String {
    crate::hex::prefixed("k:", tag)
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
    /// What the code is checked against (all zero once spent).
    pub(super) macs: Macs,
    pub(super) expires_ms: u64,
    pub(super) state: State,
    /// Wrong attempts on this code, whatever window they fell in: a code
    /// never takes more than `max_attempts` guesses.
    pub(super) attempts: u32,
    /// When the challenge was issued, and when it last changed (an attempt,
    /// a cancel, an approval). Zero in records written before version 3.
    pub(super) created_ms: u64,
    pub(super) updated_ms: u64,
    /// Which send of the subject's window this challenge was (1 for the
    /// first).
    pub(super) send: u32,
    /// The subject, sealed under the `otp/v1/to` key (empty in records
    /// written before version 3).
    pub(super) to: Vec<u8>,
    /// The tag of the phone-number prefix the fraud guard counted this send
    /// under, if it counted one: an approval is credited to it.
    pub(super) prefix: Option<Mac>,
}

impl Live {
    /// The challenge as the record holds it, from its state byte to its
    /// prefix (see [`Record::encode`]).
    pub(super) fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(match self.state {
            State::Pending => 1,
            State::Canceled => 2,
            State::Approved => 3,
        });
        out.extend_from_slice(&self.id_tag);
        match &self.macs {
            Macs::Joint(mac) => out.extend_from_slice(mac),
            Macs::Split { by_id, by_subject } => {
                out.extend_from_slice(by_id);
                out.extend_from_slice(by_subject);
            }
        }
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out.extend_from_slice(&self.attempts.to_be_bytes());
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.updated_ms.to_be_bytes());
        out.extend_from_slice(&self.send.to_be_bytes());
        // At most 16 + MAX_SUBJECT_LEN + OVERHEAD bytes: issue refuses
        // longer subjects.
        const _: () = assert!(16 + MAX_SUBJECT_LEN + crate::envelope::OVERHEAD <= 0xffff);
        debug_assert!(self.to.len() <= 0xffff);
        let len = u16::try_from(self.to.len()).unwrap_or(0);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.to[..usize::from(len)]);
        match &self.prefix {
            None => out.push(0),
            Some(tag) => {
                out.push(1);
                out.extend_from_slice(tag);
            }
        }
    }
}

/// What a challenge's code is checked against.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Macs {
    /// Records before version 4: HMAC(code key, id tag || subject tag ||
    /// code), which a check by id cannot compute before it has read the
    /// index, nor a check by subject before it has read the record.
    Joint(Mac),
    /// Version 4: one MAC for a check by id ([`Keys::code_mac_by_id`]) and
    /// one for a check by subject ([`Keys::code_mac_by_subject`]). Each is
    /// computed from what the caller holds, so a store can decide a check
    /// in the one request that carries it. The challenge is still bound:
    /// a check by id also compares the record's id tag, and a check by
    /// subject reaches only the subject's newest challenge.
    Split { by_id: Mac, by_subject: Mac },
}

impl Macs {
    /// The same kind, all zero: a spent or canceled code.
    fn spent(&self) -> Macs {
        match self {
            Macs::Joint(_) => Macs::Joint([0; MAC_LEN]),
            Macs::Split { .. } => Macs::Split {
                by_id: [0; MAC_LEN],
                by_subject: [0; MAC_LEN],
            },
        }
    }
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
/// challenge id) are read for their counters only; version 2 records have
/// no times, send number, sealed subject or prefix; version 3 records have
/// one joint MAC ([`Macs::Joint`]); version 4 records two
/// ([`Macs::Split`]), in the one place the server-side check
/// (`store/redis/verify.lua`) reads them.
const RECORD_V1: u8 = 1;
#[cfg(test)]
const RECORD_V2: u8 = 2;
const RECORD_V3: u8 = 3;
pub(super) const RECORD_VERSION: u8 = 4;
/// A record's size without its sealed subject.
#[cfg(test)]
const RECORD_MAX: usize = 1
    + 8
    + 4
    + 4
    + 1
    + (MAC_LEN + 2 * MAC_LEN + 8 + 4 + 8 + 8 + 4 + 2 + 1 + MAC_LEN)
    + 1
    + (MAC_LEN + 8);

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
        let mut out = Vec::with_capacity(256);
        // A record whose challenge has a joint MAC stays version 3: its
        // code cannot be MACed the new way without the code.
        let joint = matches!(
            &self.live,
            Some(Live {
                macs: Macs::Joint(_),
                ..
            })
        );
        out.push(if joint { RECORD_V3 } else { RECORD_VERSION });
        out.extend_from_slice(&self.window_start_ms.to_be_bytes());
        out.extend_from_slice(&self.sends.to_be_bytes());
        out.extend_from_slice(&self.attempts.to_be_bytes());
        match &self.live {
            None => out.push(0),
            Some(live) => live.encode_into(&mut out),
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
        if !(RECORD_V1..=RECORD_VERSION).contains(&version) {
            return Err(Error::StoreCorrupt);
        }
        let window_start_ms = u64::from_be_bytes(take(&mut b)?);
        let sends = u32::from_be_bytes(take(&mut b)?);
        let attempts = u32::from_be_bytes(take(&mut b)?);
        let state = match take::<1>(&mut b)? {
            [0] => None,
            [1] => Some(State::Pending),
            [2] if version != RECORD_V1 => Some(State::Canceled),
            [3] if version != RECORD_V1 => Some(State::Approved),
            _ => return Err(Error::StoreCorrupt),
        };
        let live = match state {
            None => None,
            Some(state) => {
                let id_tag = take(&mut b)?;
                let macs = if version == RECORD_VERSION {
                    Macs::Split {
                        by_id: take(&mut b)?,
                        by_subject: take(&mut b)?,
                    }
                } else {
                    Macs::Joint(take(&mut b)?)
                };
                let mut live = Live {
                    id_tag,
                    macs,
                    expires_ms: u64::from_be_bytes(take(&mut b)?),
                    state,
                    attempts: 0,
                    created_ms: 0,
                    updated_ms: 0,
                    send: 0,
                    to: Vec::new(),
                    prefix: None,
                };
                if version != RECORD_V1 {
                    live.attempts = u32::from_be_bytes(take(&mut b)?);
                }
                if version >= RECORD_V3 {
                    live.created_ms = u64::from_be_bytes(take(&mut b)?);
                    live.updated_ms = u64::from_be_bytes(take(&mut b)?);
                    live.send = u32::from_be_bytes(take(&mut b)?);
                    let len = usize::from(u16::from_be_bytes(take(&mut b)?));
                    if b.len() < len {
                        return Err(Error::StoreCorrupt);
                    }
                    let (to, rest) = b.split_at(len);
                    live.to = to.to_vec();
                    b = rest;
                    live.prefix = match take::<1>(&mut b)? {
                        [0] => None,
                        [1] => Some(take(&mut b)?),
                        _ => return Err(Error::StoreCorrupt),
                    };
                }
                Some(live)
            }
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
    next.live = Some(Live {
        send: next.sends,
        ..live.clone()
    });
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

    /// The MAC a version 4 record holds for this attempt's code, if it is
    /// the right one: by id when the attempt names a challenge, by subject
    /// otherwise. Computable before the record is read; `subject_tag` is
    /// not used for a check by id.
    pub(super) fn split_mac(&self, keys: &Keys, subject_tag: &Mac) -> Mac {
        match &self.id_tag {
            Some(id_tag) => keys.code_mac_by_id(id_tag, self.candidate),
            None => keys.code_mac_by_subject(subject_tag, self.candidate),
        }
    }

    /// The HMAC of the candidate for `live` (exactly one, whatever `live`
    /// is), compared in constant time with the one it holds.
    fn matches(&self, keys: &Keys, live: Option<&Live>, subject_tag: &Mac) -> Choice {
        let (computed, stored) = match live {
            Some(Live {
                macs: Macs::Joint(mac),
                id_tag,
                ..
            }) => (keys.code_mac(id_tag, subject_tag, self.candidate), *mac),
            Some(Live {
                macs: Macs::Split { by_id, by_subject },
                ..
            }) => (
                self.split_mac(keys, subject_tag),
                if self.id_tag.is_some() {
                    *by_id
                } else {
                    *by_subject
                },
            ),
            None => (self.split_mac(keys, subject_tag), [0; MAC_LEN]),
        };
        computed.ct_eq(&stored) & self.valid
    }

    /// The verdict when there is no record to look at, after the same HMAC
    /// and comparison a real check costs.
    pub(super) fn unknown(&self, keys: &Keys) -> Verdict {
        let _ = self.matches(keys, None, &[0; MAC_LEN]);
        Verdict::Unknown
    }
}

/// What a verification or a settlement decided, and what the service does
/// after it: the prefix tag an approval is credited to, and the tag of the
/// challenge decided on (for events).
pub(super) struct Outcome<T> {
    pub(super) value: T,
    pub(super) prefix: Option<Mac>,
    pub(super) challenge: Option<Mac>,
}

impl<T> Outcome<T> {
    /// A decision with nothing to follow up.
    fn only(value: T) -> Outcome<T> {
        Outcome {
            value,
            prefix: None,
            challenge: None,
        }
    }
}

/// One verification round against the subject record as read, with the
/// prefix tag an approval is credited to (if its send was counted under
/// one) and the tag of the challenge it decided on (for events).
pub(super) fn verify_step(
    keys: &Keys,
    policy: &Policy,
    attempt: &Attempt<'_>,
    subject_tag: &Mac,
    current: Option<&[u8]>,
) -> Result<Step<Outcome<Verdict>>, Error> {
    let record = current.map(Record::decode).transpose()?;
    let live = record
        .as_ref()
        .and_then(|r| r.live.as_ref())
        .filter(|l| attempt.id_tag.is_none_or(|want| l.id_tag == want));
    // Exactly one HMAC and one comparison, whatever the state.
    let matched: bool = attempt.matches(keys, live, subject_tag).into();
    decide(policy, attempt.now, record.as_ref(), live, matched)
}

/// A record to write back, and when it expires.
pub(crate) type Write = (Vec<u8>, u64);

/// The one-step check ([`OneStepCheck`]) against the record as read, for
/// a store that decides in Rust (the memory store): what `verify.lua`
/// does on Redis. The candidate's MAC comes with the check, so no key is
/// needed. [`Decision::Fallback`] for a record before version 4.
pub(crate) fn one_step(
    check: &OneStepCheck<'_>,
    current: Option<&[u8]>,
) -> Result<(Decision, Option<Write>), Error> {
    let record = current.map(Record::decode).transpose()?;
    let live = record
        .as_ref()
        .and_then(|r| r.live.as_ref())
        .filter(|l| check.id_tag.is_none_or(|want| l.id_tag == want));
    let stored = match live.map(|l| &l.macs) {
        Some(Macs::Joint(_)) => return Ok((Decision::Fallback, None)),
        Some(Macs::Split { by_id, by_subject }) => {
            if check.id_tag.is_some() {
                by_id
            } else {
                by_subject
            }
        }
        None => &[0; MAC_LEN],
    };
    let matched: bool = check
        .mac
        .as_ref()
        .map_or(Choice::from(0), |mac| mac.ct_eq(stored))
        .into();
    let policy = Policy {
        max_attempts: check.max_attempts,
        send_window_ms: check.send_window_ms,
        ttl_ms: check.ttl_ms,
        ..Policy::default()
    };
    let (outcome, write) = match decide(&policy, check.now_ms, record.as_ref(), live, matched)? {
        Step::Done(outcome) => (outcome, None),
        Step::Write {
            next,
            expires_ms,
            then,
            ..
        } => (then, next.map(|n| (n, expires_ms))),
    };
    Ok((
        Decision::Decided {
            verdict: outcome.value,
            subject_tag: None,
            challenge: outcome.challenge,
            prefix: outcome.prefix,
        },
        write,
    ))
}

/// A record whose challenge a store can approve in one conditional write
/// that does not read it first (DynamoDB, see `store/dynamo.rs`): the
/// record as [`one_step`] leaves it on an approval within the subject's
/// send window, and what that write's condition compares.
///
/// The approved record has its challenge's time of change left at zero:
/// the approval's time is not known until it happens, so the store keeps
/// it apart and puts it in on reading ([`approved_at`]).
#[cfg_attr(not(feature = "dynamodb"), allow(dead_code))]
pub(crate) struct Approvable {
    /// The record approved: the challenge spent (both MACs zero), the
    /// subject's attempts forgiven, the challenge's `updated_ms` zero.
    pub(crate) approved: Vec<u8>,
    pub(crate) id_tag: Mac,
    pub(crate) by_id: Mac,
    pub(crate) by_subject: Mac,
    /// When the challenge expires.
    pub(crate) expires_ms: u64,
    /// When the subject's send window started: the approval is made this
    /// way only before that window ends (after it, the window restarts at
    /// the approval, which the record does not know yet).
    pub(crate) window_start_ms: u64,
    /// The subject's attempts in its window or the code's, the larger:
    /// the code is locked at `max_attempts`.
    pub(crate) attempts: u32,
}

#[cfg_attr(not(feature = "dynamodb"), allow(dead_code))]
impl Approvable {
    /// For a record (version 4) whose challenge is pending; `None` for
    /// any other value.
    pub(crate) fn of(bytes: &[u8]) -> Option<Approvable> {
        let record = Record::decode(bytes).ok()?;
        let live = record.live.as_ref().filter(|l| l.state == State::Pending)?;
        let Macs::Split { by_id, by_subject } = live.macs else {
            return None;
        };
        let mut approved = record.clone();
        approved.attempts = 0;
        approved.live = Some(Live {
            macs: live.macs.spent(),
            state: State::Approved,
            updated_ms: 0,
            ..live.clone()
        });
        Some(Approvable {
            approved: approved.encode(),
            id_tag: live.id_tag,
            by_id,
            by_subject,
            expires_ms: live.expires_ms,
            window_start_ms: record.window_start_ms,
            attempts: record.attempts.max(live.attempts),
        })
    }
}

/// An [`Approvable::approved`] record, approved at `at_ms`.
#[cfg_attr(not(feature = "dynamodb"), allow(dead_code))]
pub(crate) fn approved_at(approved: &[u8], at_ms: u64) -> Result<Vec<u8>, Error> {
    let mut record = Record::decode(approved)?;
    let live = record.live.as_mut().ok_or(Error::StoreCorrupt)?;
    live.updated_ms = at_ms;
    Ok(record.encode())
}

/// The reverse of [`approved_at`] for a record whose challenge is
/// approved: the record with the challenge's time of change zeroed, and
/// that time. `None` for any other value.
#[cfg_attr(not(feature = "dynamodb"), allow(dead_code))]
pub(crate) fn approval_of(bytes: &[u8]) -> Option<(Vec<u8>, u64)> {
    let mut record = Record::decode(bytes).ok()?;
    let live = record
        .live
        .as_mut()
        .filter(|l| l.state == State::Approved && matches!(l.macs, Macs::Split { .. }))?;
    let at = live.updated_ms;
    live.updated_ms = 0;
    Some((record.encode(), at))
}

/// The challenge a record holds: its id tag and the prefix it was counted
/// under.
#[cfg_attr(not(feature = "dynamodb"), allow(dead_code))]
pub(crate) fn challenge_of(bytes: &[u8]) -> Result<(Mac, Option<Mac>), Error> {
    let record = Record::decode(bytes)?;
    let live = record.live.as_ref().ok_or(Error::StoreCorrupt)?;
    Ok((live.id_tag, live.prefix))
}

/// What a check decides, given the record as read, its challenge (if it
/// is the one asked about) and whether the code matched.
fn decide(
    policy: &Policy,
    now: u64,
    record: Option<&Record>,
    live: Option<&Live>,
    matched: bool,
) -> Result<Step<Outcome<Verdict>>, Error> {
    let (Some(record), Some(live)) = (record, live) else {
        return Ok(Step::Done(Outcome::only(Verdict::Unknown)));
    };
    match live.state {
        State::Pending => {}
        State::Canceled => return Ok(Step::Done(Outcome::only(Verdict::Canceled))),
        State::Approved => return Ok(Step::Done(Outcome::only(Verdict::Unknown))),
    }
    // The record as of now: a window that has ended no longer locks.
    let mut next = record.clone();
    next.roll(policy, now);
    if next.attempts >= policy.max_attempts || live.attempts >= policy.max_attempts {
        return Ok(Step::Done(Outcome::only(Verdict::Locked)));
    }
    if now >= live.expires_ms {
        return Ok(Step::Done(Outcome {
            value: Verdict::Expired,
            prefix: None,
            challenge: Some(live.id_tag),
        }));
    }
    let verdict = if matched {
        // The challenge stays in the record, spent, until the next issue
        // replaces it and deletes its index entry.
        next.live = Some(Live {
            macs: live.macs.spent(),
            state: State::Approved,
            updated_ms: now,
            ..live.clone()
        });
        next.attempts = 0;
        Outcome {
            value: Verdict::Approved,
            prefix: live.prefix,
            challenge: Some(live.id_tag),
        }
    } else {
        next.attempts += 1;
        let code_attempts = live.attempts + 1;
        if let Some(l) = next.live.as_mut() {
            l.attempts = code_attempts;
            l.updated_ms = now;
        }
        let attempts_left = policy
            .max_attempts
            .saturating_sub(next.attempts.max(code_attempts));
        Outcome {
            value: Verdict::Rejected { attempts_left },
            prefix: None,
            challenge: Some(live.id_tag),
        }
    };
    Ok(Step::write(next.encode(), next.expiry(policy), verdict))
}

/// The record with its pending challenge canceled (or approved, for
/// `approve`), if it has one that has not expired or been locked (and, for
/// `id_tag: Some`, if it is that one).
pub(super) fn settle_step(
    policy: &Policy,
    id_tag: Option<&Mac>,
    approve: bool,
    current: Option<&[u8]>,
    now: u64,
) -> Result<Step<Outcome<bool>>, Error> {
    let Some(bytes) = current else {
        return Ok(Step::Done(Outcome::only(false)));
    };
    let mut next = Record::current(Some(bytes), policy, now)?;
    let Some(live) = next.live.as_mut() else {
        return Ok(Step::Done(Outcome::only(false)));
    };
    if live.state != State::Pending
        || now >= live.expires_ms
        || id_tag.is_some_and(|want| *want != live.id_tag)
    {
        return Ok(Step::Done(Outcome::only(false)));
    }
    let locked = live.attempts >= policy.max_attempts || next.attempts >= policy.max_attempts;
    if approve && locked {
        // A locked code is not approved out of band either: that would
        // undo the attempt budget.
        return Ok(Step::Done(Outcome::only(false)));
    }
    // An approval is credited to the prefix the send was counted under.
    let prefix = if approve { live.prefix } else { None };
    let decided = live.id_tag;
    live.state = if approve {
        State::Approved
    } else {
        State::Canceled
    };
    live.macs = live.macs.spent();
    live.updated_ms = now;
    if approve {
        next.attempts = 0;
    }
    Ok(Step::write(
        next.encode(),
        next.expiry(policy),
        Outcome {
            value: true,
            prefix,
            challenge: Some(decided),
        },
    ))
}

/// Where a challenge stands, as [`Otp::fetch`](super::Otp::fetch) reports
/// it; `None` when the record holds another challenge (or none). With
/// `id_tag: None`, the record's newest challenge.
pub(super) fn view(
    keys: &Keys,
    policy: &Policy,
    id_tag: Option<&Mac>,
    subject_tag: &Mac,
    current: Option<&[u8]>,
    now: u64,
) -> Result<Option<Challenge>, Error> {
    let Some(bytes) = current else {
        return Ok(None);
    };
    let mut record = Record::decode(bytes)?;
    record.roll(policy, now);
    let Some(live) = record
        .live
        .as_ref()
        .filter(|l| id_tag.is_none_or(|want| l.id_tag == *want))
    else {
        return Ok(None);
    };
    let locked = live.attempts >= policy.max_attempts || record.attempts >= policy.max_attempts;
    let status = match live.state {
        State::Approved => ChallengeStatus::Approved,
        State::Canceled => ChallengeStatus::Canceled,
        State::Pending if locked => ChallengeStatus::MaxAttemptsReached,
        State::Pending if now >= live.expires_ms => ChallengeStatus::Expired,
        State::Pending => ChallengeStatus::Pending,
    };
    let (id, subject) = if live.to.is_empty() {
        (None, None)
    } else {
        let (id, subject) = keys.open_subject(&live.id_tag, subject_tag, &live.to)?;
        (Some(id), Some(subject))
    };
    let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
    Ok(Some(Challenge {
        id,
        status,
        subject,
        created_at: (live.created_ms != 0).then(|| at(live.created_ms)),
        updated_at: (live.updated_ms != 0).then(|| at(live.updated_ms)),
        expires_at: at(live.expires_ms),
        attempts: live.attempts,
        attempts_left: policy
            .max_attempts
            .saturating_sub(record.attempts.max(live.attempts)),
        send: live.send,
    }))
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

/// A counter's sends in its window, as stored under `k:` + hex(client tag)
/// for a client's send budget, and under the other counter keys
/// (see [`super::limits`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct ClientRecord {
    pub(super) window_start_ms: u64,
    pub(super) sends: u32,
}

const CLIENT_VERSION: u8 = 1;

impl ClientRecord {
    fn current(bytes: Option<&[u8]>, bucket: Bucket, now: u64) -> Result<ClientRecord, Error> {
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
        if now >= r.end(bucket) {
            return Ok(fresh);
        }
        Ok(r)
    }

    fn end(&self, bucket: Bucket) -> u64 {
        self.window_start_ms.saturating_add(bucket.window_ms)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13);
        out.push(CLIENT_VERSION);
        out.extend_from_slice(&self.window_start_ms.to_be_bytes());
        out.extend_from_slice(&self.sends.to_be_bytes());
        out
    }
}

/// The counter's record with one more use, or `refused(retry_after)`;
/// the write's outcome is the window it was counted in, for
/// [`client_refund`].
pub(super) fn client_reserve(
    bucket: Bucket,
    refused: fn(Duration) -> Error,
    current: Option<&[u8]>,
    now: u64,
) -> Result<Step<u64>, Error> {
    let mut r = ClientRecord::current(current, bucket, now)?;
    if r.sends >= bucket.max {
        return Err(refused(Duration::from_millis(
            r.end(bucket).saturating_sub(now),
        )));
    }
    r.sends += 1;
    Ok(Step::write(r.encode(), r.end(bucket), r.window_start_ms))
}

/// The counter's record with the use counted in `window_start_ms` given
/// back; nothing to write if that window is over or nothing is counted.
pub(super) fn client_refund(
    bucket: Bucket,
    current: Option<&[u8]>,
    window_start_ms: u64,
    now: u64,
) -> Result<Step<()>, Error> {
    let mut r = ClientRecord::current(current, bucket, now)?;
    if current.is_none() || r.window_start_ms != window_start_ms || r.sends == 0 {
        return Ok(Step::Done(()));
    }
    r.sends -= 1;
    if r.sends == 0 {
        // Nothing counted: a refused request leaves no entry behind.
        return Ok(Step::delete(()));
    }
    Ok(Step::write(r.encode(), r.end(bucket), ()))
}

/// A counter's budget as of `now`.
pub(super) fn client_budget(
    bucket: Bucket,
    current: Option<&[u8]>,
    now: u64,
) -> Result<ClientBudget, Error> {
    let r = ClientRecord::current(current, bucket, now)?;
    Ok(ClientBudget {
        sends_left: bucket.max.saturating_sub(r.sends),
        resets_in: if r.sends == 0 {
            Duration::ZERO
        } else {
            remaining(r.end(bucket), now)
        },
    })
}

/// Records and attempts of every shape, for the tests that hold the
/// one-step checks (in Rust here, in Lua on Redis) to [`verify_step`].
#[cfg(test)]
pub(crate) mod cases {
    use super::*;

    pub(crate) const NOW: u64 = 1_800_000_000_000;

    /// A small deterministic generator: the cases are the same every run.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn pick<T: Copy>(&mut self, of: &[T]) -> T {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            of[(self.0 % of.len() as u64) as usize]
        }
    }

    pub(crate) struct Case {
        pub(crate) record: Record,
        pub(crate) tag: Mac,
        pub(crate) id_tag: Mac,
    }

    pub(crate) fn case(rng: &mut Rng, keys: &Keys, policy: &Policy) -> Case {
        case_of(rng, keys, policy, false)
    }

    /// A case whose challenge has a slot byte: its id tag starts with the
    /// subject tag's first byte (see `ChallengeId`).
    #[cfg(feature = "redis")]
    pub(crate) fn slotted_case(rng: &mut Rng, keys: &Keys, policy: &Policy) -> Case {
        case_of(rng, keys, policy, true)
    }

    fn case_of(rng: &mut Rng, keys: &Keys, policy: &Policy, slotted: bool) -> Case {
        let window = policy.send_window_ms;
        let tag = [rng.pick(&[1u8, 2, 3]); 32];
        let mut id_tag = [rng.pick(&[4u8, 5]); 32];
        if slotted {
            id_tag[0] = tag[0];
        }
        let live = rng.pick(&[false, true, true, true]).then(|| Live {
            id_tag,
            macs: Macs::Split {
                by_id: keys.code_mac_by_id(&id_tag, b"123456"),
                by_subject: keys.code_mac_by_subject(&tag, b"123456"),
            },
            expires_ms: NOW - 30_001 + rng.pick(&[0, 1, 2, 30_000, 30_001, 30_002]),
            state: rng.pick(&[
                State::Pending,
                State::Pending,
                State::Canceled,
                State::Approved,
            ]),
            attempts: rng.pick(&[0, 1, 4, 5, 6]),
            created_ms: NOW - 30_000,
            updated_ms: NOW - 20_000,
            send: rng.pick(&[1, 2, 5]),
            to: vec![9; rng.pick(&[0usize, 1, 45, 300])],
            prefix: rng.pick(&[None, Some([7; 32])]),
        });
        let record = Record {
            window_start_ms: NOW
                - rng.pick(&[0, 1_000, window - 1, window, window + 1, 3 * window]),
            sends: rng.pick(&[0, 1, 5]),
            attempts: rng.pick(&[0, 1, 3, 4, 5, 6]),
            live,
            stale: rng.pick(&[false, true]).then_some(Stale {
                id_tag: [6; 32],
                index_expires_ms: rng.pick(&[NOW - 5, NOW, NOW + 5]),
            }),
        };
        let mut record = record;
        if let Some(stale) = record.stale.as_mut().filter(|_| slotted) {
            // Issued with the slot byte, or (before ids had one) without.
            if rng.pick(&[true, true, false]) {
                stale.id_tag[0] = tag[0];
            }
        }
        Case {
            record,
            tag,
            id_tag,
        }
    }
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
                macs: Macs::Split {
                    by_id: [5; 32],
                    by_subject: [15; 32],
                },
                expires_ms: 6,
                state: State::Canceled,
                attempts: 9,
                created_ms: 10,
                updated_ms: 11,
                send: 12,
                to: vec![13; 40],
                prefix: Some([14; 32]),
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
        assert_eq!(bytes.len(), RECORD_MAX + 40);
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
        for bad in [0, 5, 9] {
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

    #[test]
    fn version_2_records_read_without_times_subject_or_prefix() {
        let mut v2 = vec![RECORD_V2];
        v2.extend_from_slice(&1u64.to_be_bytes());
        v2.extend_from_slice(&2u32.to_be_bytes());
        v2.extend_from_slice(&3u32.to_be_bytes());
        v2.push(1);
        v2.extend_from_slice(&[4; 64]);
        v2.extend_from_slice(&6u64.to_be_bytes());
        v2.extend_from_slice(&9u32.to_be_bytes());
        v2.push(0);
        let r = Record::decode(&v2).unwrap();
        let live = r.live.unwrap();
        assert_eq!((live.expires_ms, live.attempts), (6, 9));
        assert_eq!((live.created_ms, live.send), (0, 0));
        assert!(live.to.is_empty() && live.prefix.is_none());
        // Written back, it is a version 3 record (its MAC is joint), and
        // reads back the same.
        let again = Record {
            live: Some(live),
            ..r
        };
        let bytes = again.encode();
        assert_eq!(bytes[0], RECORD_V3);
        assert!(Record::decode(&bytes).unwrap() == again);
    }

    /// A version 3 record (one joint MAC) keeps its layout through a
    /// wrong attempt, and a version 4 record's MACs sit where the
    /// server-side check reads them: the id tag at byte 18, the MAC by id
    /// at 50, the MAC by subject at 82, the expiry at 114.
    #[test]
    fn version_3_and_4_layouts() {
        let mut r = sample();
        let v4 = r.encode();
        assert_eq!(v4[0], RECORD_VERSION);
        assert_eq!(&v4[18..50], &[4; 32]);
        assert_eq!(&v4[50..82], &[5; 32]);
        assert_eq!(&v4[82..114], &[15; 32]);
        assert_eq!(&v4[114..122], &6u64.to_be_bytes());
        if let Some(live) = r.live.as_mut() {
            live.macs = Macs::Joint([5; 32]);
        }
        let v3 = r.encode();
        assert_eq!(v3[0], RECORD_V3);
        assert_eq!(v3.len(), v4.len() - 32);
        assert!(Record::decode(&v3).unwrap() == r);
    }

    /// The Rust one-step check (the memory store's) decides as
    /// `verify_step` does, over records and attempts of every shape.
    /// An id with a slot byte shows it masked: the tag starts with the
    /// slot, the ids of one subject show different bytes, a byte changed
    /// in the id names another slot, and the sealed subject gives the
    /// same id back.
    #[test]
    fn slot_bytes_are_masked_in_ids() {
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let subject_tag = [0x42; 32];
        let mut shown = std::collections::HashSet::new();
        for _ in 0..64 {
            let (id, id_tag) = keys.new_id(Some(0x42));
            assert_eq!(id_tag, keys.id_tag(&id));
            assert_eq!(id_tag[0], 0x42);
            assert_eq!(id.as_bytes().len(), 17);
            shown.insert(id.as_bytes()[16]);
            let mut forged = id.as_bytes().to_vec();
            forged[16] ^= 1;
            let forged = ChallengeId::from_parts(*id.random_bytes(), Some(forged[16]));
            assert_ne!(keys.id_tag(&forged)[0], 0x42);
            assert_eq!(keys.id_tag(&forged)[1..], id_tag[1..]);
            let sealed = keys.seal_subject(&id, &id_tag, &subject_tag, "+15550001234");
            let (opened, subject) = keys.open_subject(&id_tag, &subject_tag, &sealed).unwrap();
            assert_eq!(opened, id);
            assert_eq!(subject.expose_secret(), "+15550001234");
        }
        assert!(shown.len() > 16, "{} bytes shown", shown.len());
        // Without a slot byte: the HMAC of the 16 bytes, as before.
        let (id, id_tag) = keys.new_id(None);
        assert_eq!(id.as_bytes().len(), 16);
        assert_eq!(id_tag, keys.index.mac(&[id.as_bytes()]));
        let sealed = keys.seal_subject(&id, &id_tag, &subject_tag, "+15550001234");
        assert_eq!(
            keys.open_subject(&id_tag, &subject_tag, &sealed).unwrap().0,
            id
        );
    }

    #[test]
    fn one_step_decides_as_verify_step_does() {
        use super::cases::{Case, NOW, Rng, case};
        use crate::otp::store::Lookup;
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, Duration::from_secs(60), 5).unwrap();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut verdicts = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let Case {
                record,
                tag,
                id_tag,
            } = case(&mut rng, &keys, &policy);
            let bytes = record.encode();
            let want_id = rng.pick(&[None, Some(id_tag), Some([id_tag[0] ^ 1; 32])]);
            let input = rng.pick(&["123456", "123457", "12345x", "1234"]);
            let attempt = Attempt::new(&policy, want_id, input, NOW);
            let (want, written) =
                match verify_step(&keys, &policy, &attempt, &tag, Some(&bytes)).unwrap() {
                    Step::Done(outcome) => (outcome, None),
                    Step::Write {
                        next,
                        expires_ms,
                        then,
                        ..
                    } => (then, next.map(|n| (n, expires_ms))),
                };
            let check = OneStepCheck {
                lookup: Lookup::Record("unused"),
                id_tag: want_id,
                slotted: false,
                mac: bool::from(attempt.valid).then(|| attempt.split_mac(&keys, &tag)),
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counter: None,
                credit_window_ms: None,
            };
            let (decision, write) = one_step(&check, Some(&bytes)).unwrap();
            let Decision::Decided {
                verdict,
                challenge,
                prefix,
                ..
            } = decision
            else {
                panic!("a version 4 record fell back");
            };
            verdicts.insert(format!("{verdict:?}"));
            assert_eq!(verdict, want.value);
            assert_eq!(challenge, want.challenge);
            assert_eq!(prefix, want.prefix);
            assert!(write == written);
        }
        assert!(verdicts.len() >= 6, "{verdicts:?}");
        // No record: unknown, nothing written. A version 3 record: the
        // general path.
        let check = OneStepCheck {
            lookup: Lookup::Record("unused"),
            id_tag: None,
            slotted: false,
            mac: None,
            now_ms: NOW,
            max_attempts: 5,
            send_window_ms: 1,
            ttl_ms: 1,
            counter: None,
            credit_window_ms: None,
        };
        assert!(matches!(
            one_step(&check, None).unwrap(),
            (
                Decision::Decided {
                    verdict: Verdict::Unknown,
                    ..
                },
                None
            )
        ));
        let mut v3 = sample();
        if let Some(live) = v3.live.as_mut() {
            live.macs = Macs::Joint([1; 32]);
        }
        assert!(matches!(
            one_step(&check, Some(&v3.encode())).unwrap(),
            (Decision::Fallback, None)
        ));
    }

    /// The approval a store makes in one conditional write
    /// ([`Approvable`], DynamoDB) is the approval [`one_step`] makes: where
    /// the write's condition holds, `one_step` approves and writes the same
    /// bytes, with the same expiry as before (so the write leaves it); and
    /// `one_step` approves where the condition does not hold only when the
    /// subject's window has ended (the write is then left to the general
    /// path). [`approval_of`] takes the time back out.
    #[test]
    fn an_approval_in_one_write_is_the_approval_one_step_makes() {
        use super::cases::{Case, NOW, Rng, case};
        use crate::otp::store::Lookup;
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, Duration::from_secs(60), 5).unwrap();
        let mut rng = Rng(0x0a99_50ab_1e00);
        let (mut in_one, mut past_window) = (0, 0);
        for _ in 0..20_000 {
            let Case {
                record,
                tag,
                id_tag,
            } = case(&mut rng, &keys, &policy);
            let bytes = record.encode();
            let want_id = rng.pick(&[None, Some(id_tag), Some([id_tag[0] ^ 1; 32])]);
            let input = rng.pick(&["123456", "123456", "123457", "12345x"]);
            let attempt = Attempt::new(&policy, want_id, input, NOW);
            let mac = bool::from(attempt.valid).then(|| attempt.split_mac(&keys, &tag));
            let check = OneStepCheck {
                lookup: Lookup::Record("unused"),
                id_tag: want_id,
                slotted: false,
                mac,
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counter: None,
                credit_window_ms: None,
            };
            let (decision, write) = one_step(&check, Some(&bytes)).unwrap();
            let approved = matches!(
                decision,
                Decision::Decided {
                    verdict: Verdict::Approved,
                    ..
                }
            );
            // The write's condition, as `DynamoStore` sends it.
            let from = (NOW + 1).saturating_sub(policy.send_window_ms);
            let holds = Approvable::of(&bytes).filter(|a| {
                let mac_matches = match want_id {
                    Some(id) => a.id_tag == id && mac == Some(a.by_id),
                    None => mac == Some(a.by_subject),
                };
                mac_matches
                    && a.expires_ms > NOW
                    && a.attempts < policy.max_attempts
                    && a.window_start_ms >= from
            });
            match holds {
                Some(a) => {
                    in_one += 1;
                    assert!(approved, "the write approves what one_step does not");
                    let (next, expires_ms) = write.unwrap();
                    assert_eq!(approved_at(&a.approved, NOW).unwrap(), next);
                    assert_eq!(expires_ms, record.expiry(&policy));
                    assert_eq!(approval_of(&next), Some((a.approved.clone(), NOW)));
                    assert_eq!(challenge_of(&bytes).unwrap().0, a.id_tag);
                }
                None if approved => {
                    past_window += 1;
                    assert!(record.window_start_ms < from, "an approval left out");
                }
                None => {}
            }
        }
        assert!(in_one > 50 && past_window > 50, "{in_one} {past_window}");
        // Nothing else reads as an approval made this way.
        assert!(approval_of(&sample().encode()).is_none());
        assert!(approval_of(&[1; 13]).is_none());
        assert!(Approvable::of(&sample().encode()).is_none());
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
        let bucket = policy.client_bucket();
        let limit = |retry_after| Error::ClientLimit { retry_after };
        let (bytes, end, start) =
            written(client_reserve(bucket, limit, None, 1_000).unwrap()).unwrap();
        assert_eq!((start, end), (1_000, 1_000 + policy.client_window_ms));
        let (bytes, ..) =
            written(client_reserve(bucket, limit, Some(&bytes), 2_000).unwrap()).unwrap();
        let r = ClientRecord::current(Some(&bytes), bucket, 2_000).unwrap();
        assert_eq!(r.sends, 2);
        assert!(written(client_refund(bucket, Some(&bytes), 999, 2_000).unwrap()).is_none());
        let (refunded, ..) =
            written(client_refund(bucket, Some(&bytes), 1_000, 2_000).unwrap()).unwrap();
        assert_eq!(
            ClientRecord::current(Some(&refunded), bucket, 2_000)
                .unwrap()
                .sends,
            1
        );
        // The last use given back deletes the entry.
        assert!(matches!(
            client_refund(bucket, Some(&refunded), 1_000, 2_000).unwrap(),
            Step::Write { next: None, .. }
        ));
        // After the window, the count starts again and nothing is refunded.
        let later = 1_000 + policy.client_window_ms;
        assert!(written(client_refund(bucket, Some(&bytes), 1_000, later).unwrap()).is_none());
        let mut corrupt = bytes.clone();
        corrupt.push(0);
        assert_eq!(
            client_reserve(bucket, limit, Some(&corrupt), 2_000).err(),
            Some(Error::StoreCorrupt)
        );
    }
}
