//! What a caller holds and what it is told: [`ChallengeId`], [`Verdict`],
//! [`Challenge`] and the budgets left ([`Budget`], [`ClientBudget`]).

use core::fmt;
use core::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::{Error, Secret};

/// The public handle of an issued code: 128 random bits, shown as 32
/// lowercase hex characters (URL-safe).
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
/// # Example
///
/// ```
/// use pinseal::otp::ChallengeId;
///
/// let id: ChallengeId = "00112233445566778899aabbccddeeff".parse()?;
/// assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
/// assert!("short".parse::<ChallengeId>().is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChallengeId(pub(super) [u8; 16]);

impl ChallengeId {
    pub(super) fn random() -> ChallengeId {
        let mut id = [0u8; 16];
        crate::rand::fill(&mut id);
        ChallengeId(id)
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::hex::write::<16, 32>(f, &self.0)
    }
}

impl fmt::Debug for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChallengeId({self})")
    }
}

impl FromStr for ChallengeId {
    type Err = Error;
    /// Parses 32 hex characters (either case).
    fn from_str(s: &str) -> Result<ChallengeId, Error> {
        let mut id = [0u8; 16];
        crate::hex::decode_exact(s, &mut id).map_err(|()| Error::InvalidChallengeId)?;
        Ok(ChallengeId(id))
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
