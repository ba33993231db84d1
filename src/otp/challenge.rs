//! What a caller holds and what it is told: [`ChallengeId`], [`Verdict`],
//! [`Challenge`] and the budgets left ([`Budget`], [`ClientBudget`]).

use core::fmt;
use core::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::{Error, Secret};

/// The public handle of an issued code: 128 random bits, shown as 32
/// lowercase hex characters (URL-safe); on a store that places records by
/// slot (Redis Cluster), 34: the random bits and a masked slot byte.
///
/// A challenge id is not a secret on its own: it cannot verify without the
/// code. But the service can cancel or approve the challenge by its id
/// ([`Otp::cancel`](super::Otp::cancel), [`Otp::approve`](super::Otp::approve))
/// and tell whom it was for ([`Otp::fetch`](super::Otp::fetch)), so hand it
/// only to the user it was issued for (a session, a response to them),
/// keep it out of shared logs (events name challenges by pseudonym), and
/// never fetch, cancel or approve by an id an unauthenticated client
/// sends. With the `serde` feature it serializes as its hex string.
///
/// # Slot byte
///
/// A store that keeps a challenge's index entry in the same hash slot as
/// the subject's record ([`Store::slots_challenges`]: `RedisStore` and
/// `AsyncRedisStore` on a cluster) gets ids with one more byte, from which
/// the service recovers the subject's slot byte (the first byte of its
/// keyed tag): the store then finds the record's slot from the id alone,
/// and a check by id is one request. The byte is masked with a keyed
/// function of the id's random bytes, so to anyone without the key (the
/// pepper) it looks random and differs between ids of the same subject:
/// it neither links ids nor tells a subject's byte, and an id forged with
/// another byte names no challenge.
///
/// [`Store::slots_challenges`]: super::store::Store::slots_challenges
///
/// # Example
///
/// ```
/// use pinseal::otp::ChallengeId;
///
/// let id: ChallengeId = "00112233445566778899aabbccddeeff".parse()?;
/// assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
/// let slotted: ChallengeId = "00112233445566778899aabbccddeeff07".parse()?;
/// assert_eq!(slotted.as_bytes().len(), 17);
/// assert!("short".parse::<ChallengeId>().is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChallengeId {
    /// The random bytes, then the slot byte (0 when there is none).
    bytes: [u8; 17],
    slotted: bool,
}

impl ChallengeId {
    /// The id of `random` bytes and, when given, a (masked) slot byte.
    pub(super) fn from_parts(random: [u8; 16], slot: Option<u8>) -> ChallengeId {
        let mut bytes = [0u8; 17];
        bytes[..16].copy_from_slice(&random);
        bytes[16] = slot.unwrap_or(0);
        ChallengeId {
            bytes,
            slotted: slot.is_some(),
        }
    }

    /// The 16 random bytes.
    pub(super) fn random_bytes(&self) -> &[u8; 16] {
        let [random @ .., _] = &self.bytes;
        random
    }

    /// The slot byte as the id shows it (masked), if the id has one.
    pub(super) fn slot(&self) -> Option<u8> {
        self.slotted.then_some(self.bytes[16])
    }

    /// The id's bytes: 16, or 17 with a slot byte.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..if self.slotted { 17 } else { 16 }]
    }
}

impl fmt::Display for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot() {
            None => crate::hex::write::<16, 32>(f, self.random_bytes()),
            Some(_) => crate::hex::write::<17, 34>(f, &self.bytes),
        }
    }
}

impl fmt::Debug for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChallengeId({self})")
    }
}

impl FromStr for ChallengeId {
    type Err = Error;
    /// Parses 32 hex characters, or 34 (with a slot byte), either case.
    fn from_str(s: &str) -> Result<ChallengeId, Error> {
        let mut bytes = [0u8; 17];
        let slotted = match s.len() {
            32 => false,
            34 => true,
            _ => return Err(Error::InvalidChallengeId),
        };
        crate::hex::decode_exact(s, &mut bytes[..s.len() / 2])
            .map_err(|()| Error::InvalidChallengeId)?;
        Ok(ChallengeId { bytes, slotted })
    }
}

/// The outcome of [`Otp::verify`](super::Otp::verify) and
/// [`Otp::check`](super::Otp::check).
///
/// Each verdict has a status string, [`Verdict::status`], in the vocabulary
/// of Twilio Verify, which is also its `Display` form and, with the `serde`
/// feature, its serialized form: `{"status":"approved"}`,
/// `{"status":"pending","attempts_left":3}`.
///
/// | verdict | status |
/// |---|---|
/// | [`Approved`](Verdict::Approved) | `approved` |
/// | [`Rejected`](Verdict::Rejected) | `pending` |
/// | [`Expired`](Verdict::Expired) | `expired` |
/// | [`Locked`](Verdict::Locked) | `max_attempts_reached` |
/// | [`Canceled`](Verdict::Canceled) | `canceled` |
/// | [`Unknown`](Verdict::Unknown) | `not_found` |
///
/// The enum is `#[non_exhaustive]`: only [`Verdict::Approved`] means yes,
/// so match it and treat every other arm as no.
///
/// # Example
///
/// ```
/// use pinseal::otp::Verdict;
///
/// let v = Verdict::Rejected { attempts_left: 2 };
/// assert_eq!(v.status(), "pending");
/// assert!(!v.is_approved());
/// assert_eq!(Verdict::Locked.to_string(), "max_attempts_reached");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
#[non_exhaustive]
pub enum Verdict {
    /// The code is right. The challenge is consumed: it never verifies again.
    Approved,
    /// The code is wrong (or malformed); `attempts_left` more may be tried.
    /// The challenge stays pending.
    Rejected {
        /// Attempts the subject has left in this window; 0 means the next
        /// verification will answer [`Verdict::Locked`].
        attempts_left: u32,
    },
    /// The challenge's lifetime has passed. Nothing was counted.
    Expired,
    /// No attempts left, for one of two reasons: the subject has spent its
    /// attempts in this window (they come back when the window ends:
    /// [`Budget::retry_after`]), or this code has had `max_attempts` wrong
    /// guesses, which locks the code itself until it expires or a new code
    /// is issued (within the send budget). Nothing was counted.
    Locked,
    /// The challenge was canceled ([`Otp::cancel`](super::Otp::cancel)).
    /// Nothing was counted.
    Canceled,
    /// No such live challenge: never issued, already approved, replaced by a
    /// newer code, or forgotten by the store after expiry.
    Unknown,
}

impl Verdict {
    /// The status string (see the table above).
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected { .. } => "pending",
            Verdict::Expired => "expired",
            Verdict::Locked => "max_attempts_reached",
            Verdict::Canceled => "canceled",
            Verdict::Unknown => "not_found",
        }
    }

    /// Whether this is [`Verdict::Approved`], the only verdict that means
    /// yes.
    pub fn is_approved(&self) -> bool {
        matches!(self, Verdict::Approved)
    }
}

impl fmt::Display for Verdict {
    /// The status string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.status())
    }
}

/// A subject's budgets in its current window, from
/// [`Otp::budget`](super::Otp::budget): how many sends and wrong attempts
/// remain, and when they are restored.
///
/// # Example
///
/// ```
/// use pinseal::Key;
/// use pinseal::otp::{Otp, Policy};
///
/// let otp = Otp::new(&Key::generate(), Policy::default());
/// let _ = otp.issue("+15551234567")?;
/// let budget = otp.budget("+15551234567")?;
/// assert_eq!(budget.sends_left, 4);
/// assert_eq!(budget.attempts_left, 5);
/// assert_eq!(budget.retry_after(), None); // nothing is spent yet
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Budget {
    /// Codes the subject may still be sent in this window.
    pub sends_left: u32,
    /// Wrong attempts the subject may still make in this window.
    pub attempts_left: u32,
    /// Time until the window ends and both budgets are full again; zero
    /// when the subject has no window open (no send or attempt counted in
    /// the last `send_window`).
    pub resets_in: Duration,
}

impl Budget {
    /// When a spent budget lifts: `Some(resets_in)` if no send or no attempt
    /// is left (what a web service puts in `Retry-After` after
    /// [`Error::SendLimit`] or [`Error::Locked`]), `None` otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        (self.sends_left == 0 || self.attempts_left == 0).then_some(self.resets_in)
    }
}

/// A client's send budget in its current window, from
/// [`Otp::client_budget`](super::Otp::client_budget).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientBudget {
    /// Codes that may still be issued on behalf of this client in this
    /// window.
    pub sends_left: u32,
    /// Time until the window ends and the budget is full again; zero when
    /// the client has no window open.
    pub resets_in: Duration,
}

impl ClientBudget {
    /// When the spent budget lifts: `Some(resets_in)` if no send is left
    /// (after [`Error::ClientLimit`]), `None` otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        (self.sends_left == 0).then_some(self.resets_in)
    }
}

/// Where a challenge stands, in Twilio Verify's vocabulary
/// ([`ChallengeStatus::as_str`]).
///
/// | status | string |
/// |---|---|
/// | [`Pending`](ChallengeStatus::Pending) | `pending` |
/// | [`Approved`](ChallengeStatus::Approved) | `approved` |
/// | [`Canceled`](ChallengeStatus::Canceled) | `canceled` |
/// | [`Expired`](ChallengeStatus::Expired) | `expired` |
/// | [`MaxAttemptsReached`](ChallengeStatus::MaxAttemptsReached) | `max_attempts_reached` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChallengeStatus {
    /// Waiting for the right code.
    Pending,
    /// Approved by a right code or by
    /// [`Otp::approve`](super::Otp::approve); spent.
    Approved,
    /// Withdrawn by [`Otp::cancel`](super::Otp::cancel).
    Canceled,
    /// Its lifetime has passed without approval.
    Expired,
    /// The code, or its subject in this window, has no attempts left.
    MaxAttemptsReached,
}

impl ChallengeStatus {
    /// The status string (see the table above).
    pub fn as_str(&self) -> &'static str {
        match self {
            ChallengeStatus::Pending => "pending",
            ChallengeStatus::Approved => "approved",
            ChallengeStatus::Canceled => "canceled",
            ChallengeStatus::Expired => "expired",
            ChallengeStatus::MaxAttemptsReached => "max_attempts_reached",
        }
    }
}

impl fmt::Display for ChallengeStatus {
    /// The status string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Otp::fetch`](super::Otp::fetch) and
/// [`Otp::fetch_subject`](super::Otp::fetch_subject) report about a
/// challenge, without counting an attempt: its id and status, whom it was
/// issued for, and its times. This is Verify's *fetch a verification*.
///
/// The id and subject are stored sealed (AES-256-GCM under a key derived
/// from the pepper, bound to the challenge) and opened only here, the
/// subject into a [`Secret`]; `Debug` prints it redacted.
///
/// # Example
///
/// ```
/// use pinseal::{ExposeSecret, Key};
/// use pinseal::otp::{ChallengeStatus, Otp, Policy};
///
/// let otp = Otp::new(&Key::generate(), Policy::default());
/// let (id, _code) = otp.issue("+15551234567")?;
/// let seen = otp.fetch(&id)?.expect("the challenge is live");
/// assert_eq!(seen.status, ChallengeStatus::Pending);
/// assert_eq!(seen.subject.as_ref().map(|s| s.expose_secret().as_str()), Some("+15551234567"));
/// assert_eq!(seen.attempts_left, 5);
/// assert!(!format!("{seen:?}").contains("5551234567"));
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Challenge {
    /// Its id (`None` for a challenge stored by a release before 0.2).
    pub id: Option<ChallengeId>,
    /// Where it stands now.
    pub status: ChallengeStatus,
    /// The subject it was issued for; `None` for a challenge stored by a
    /// release before 0.2, which did not keep it.
    pub subject: Option<Secret<String>>,
    /// When it was issued (`None` for a challenge stored before 0.2).
    pub created_at: Option<SystemTime>,
    /// When it last changed: issued, a wrong attempt, canceled, approved.
    pub updated_at: Option<SystemTime>,
    /// When its code stops verifying.
    pub expires_at: SystemTime,
    /// Wrong attempts made on this code.
    pub attempts: u32,
    /// Wrong attempts the subject may still make in this window.
    pub attempts_left: u32,
    /// Which send of the subject's window this was: 1 for the first code,
    /// 2 for the first resend, and so on (0 for a challenge stored before
    /// 0.2).
    pub send: u32,
}
