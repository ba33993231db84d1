//! A check or an issue a store makes in the one request that carries it:
//! [`OneStepCheck`], [`OneStepIssue`] and [`OneStepOutcome`], for
//! [`Store::check_in_one_step`](super::Store::check_in_one_step) and
//! [`Store::issue_in_one_step`](super::Store::issue_in_one_step).

use core::fmt;

use crate::mac::MAC_LEN;
use crate::otp::Verdict;

type Mac = [u8; MAC_LEN];

/// Where a [`OneStepCheck`] finds the subject's record.
// Read only by the Redis stores.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) enum Lookup<'a> {
    /// The record's own key.
    Record(&'a str),
    /// A challenge's index entry, whose value names the record.
    Index(&'a str),
}

/// One check of a code, as [`Otp`](crate::otp::Otp) hands it to a store
/// that can decide it in a single request (Redis runs it as one script).
///
/// # About
///
/// It holds store keys, the challenge's id tag, the MAC of the candidate
/// code, the policy's numbers and, for a check on behalf of a client, the
/// key and budget of its counter: never the code, the subject, the client
/// or the id.
/// It is built only by this crate; a store written outside it keeps the
/// default [`Store::check_in_one_step`](super::Store::check_in_one_step),
/// and every check then runs as reads and compare-and-swaps.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub struct OneStepCheck<'a> {
    pub(crate) lookup: Lookup<'a>,
    /// The id tag the challenge must have (a check by id).
    pub(crate) id_tag: Option<Mac>,
    /// The id carries its subject's slot byte: its index entry is in the
    /// slot of the subject's record (see `Store::slots_challenges`).
    pub(crate) slotted: bool,
    /// The candidate's MAC; `None` for malformed input, which never
    /// matches.
    pub(crate) mac: Option<Mac>,
    pub(crate) now_ms: u64,
    pub(crate) max_attempts: u32,
    pub(crate) send_window_ms: u64,
    pub(crate) ttl_ms: u64,
    /// A client's check budget, spent by the check unless it approves:
    /// none left refuses the check before anything is decided. A store
    /// that cannot spend it in the same request answers `None` (the
    /// general path).
    pub(crate) counter: Option<OneStepCounter<'a>>,
    /// With a fraud guard, its prefix window: an approval is credited to
    /// its prefix in the same request where the store can (one Redis
    /// server), and its prefix tag then left out of the outcome.
    pub(crate) credit_window_ms: Option<u64>,
}

impl fmt::Debug for OneStepCheck<'_> {
    /// Only what kind of check it is: keys and MACs are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneStepCheck")
            .field(
                "by",
                &match (self.lookup, self.id_tag) {
                    (Lookup::Index(_), _) => "index",
                    (Lookup::Record(_), Some(_)) => "id",
                    (Lookup::Record(_), None) => "subject",
                },
            )
            .finish_non_exhaustive()
    }
}

/// One issue of a code, as [`Otp`](crate::otp::Otp) hands it to a store
/// that can make it in a single request (one Redis server runs it as one
/// script).
///
/// # About
///
/// It holds the subject's record key, the new challenge's index key, the
/// new challenge as the record will hold it (MACs, the sealed subject,
/// counters and times) and the keys and budgets of the client counters
/// and the fraud guard's prefix it spends: never the code, the subject,
/// the client or the id in clear. Built only by this crate; a store
/// written outside it keeps the default
/// [`Store::issue_in_one_step`](super::Store::issue_in_one_step).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub struct OneStepIssue<'a> {
    pub(crate) record_key: &'a str,
    pub(crate) index_key: &'a str,
    pub(crate) subject_tag: &'a Mac,
    /// The new challenge, encoded as in the record (its send number is
    /// filled in by the step).
    pub(crate) live: &'a [u8],
    pub(crate) expires_ms: u64,
    pub(crate) now_ms: u64,
    pub(crate) max_attempts: u32,
    pub(crate) max_sends: u32,
    pub(crate) send_window_ms: u64,
    pub(crate) ttl_ms: u64,
    /// The client counters the issue spends one use of each of, in order
    /// (a client's send budget, a rate limit's buckets): all spent, or the
    /// first with none left refuses the issue and nothing is written.
    pub(crate) counters: &'a [OneStepCounter<'a>],
    /// With a fraud guard, the send counted to the number's prefix after
    /// the counters (`prefix_reserve`), given back if the subject refuses.
    pub(crate) prefix: Option<OneStepPrefix<'a>>,
}

/// A fraud guard's prefix, as a [`OneStepIssue`] counts a send to it: its
/// store key and the guard's limits.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) struct OneStepPrefix<'a> {
    pub(crate) key: &'a str,
    pub(crate) max: u32,
    pub(crate) window_ms: u64,
    pub(crate) block_ms: u64,
    /// The approval floor: sends in the previous window, percent approved.
    pub(crate) floor: Option<(u32, u8)>,
}

/// A counter a [`OneStepIssue`] spends one use of: its store key, its
/// budget, and the error that refuses when it has no use left.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct OneStepCounter<'a> {
    pub(crate) key: &'a str,
    pub(crate) max: u32,
    pub(crate) window_ms: u64,
    pub(crate) refused: fn(core::time::Duration) -> crate::Error,
}

impl fmt::Debug for OneStepIssue<'_> {
    /// Nothing of the challenge: keys, tags and MACs are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneStepIssue").finish_non_exhaustive()
    }
}

/// What a store made of a [`OneStepCheck`] or a [`OneStepIssue`]. Opaque,
/// as they are.
pub struct OneStepOutcome(pub(crate) Decision);

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Decision {
    /// The store cannot read the index entry in the same step (a cluster,
    /// where it may be on another node than the record): read it, then
    /// ask again by the record's key.
    IndexFirst,
    /// The record is not one the store's step reads (written by an older
    /// version, or damaged): the check runs the general way.
    Fallback,
    /// The issue was made.
    Issued,
    /// The issue was refused (`Error::Locked`, `Error::SendLimit`,
    /// `Error::Contention`, `Error::PrefixBlocked`, or a counter's error),
    /// or the check (its counter's error). Nothing was written but a
    /// fraud guard's prefix record: a block the issue started, or the
    /// record as giving its send back leaves it. (On a Redis Cluster the
    /// counters and the prefix were spent and given back, each by a
    /// request of its own: one whose give-back failed stays spent.)
    Refused(crate::Error),
    Decided {
        verdict: Verdict,
        /// The subject tag, when the check went through the index.
        subject_tag: Option<Mac>,
        /// The challenge decided on, for events.
        challenge: Option<Mac>,
        /// The prefix an approval is credited to.
        prefix: Option<Mac>,
    },
}

impl fmt::Debug for OneStepOutcome {
    /// The verdict, if there is one; no tag.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Decision::IndexFirst => f.write_str("OneStepOutcome(IndexFirst)"),
            Decision::Fallback => f.write_str("OneStepOutcome(Fallback)"),
            Decision::Issued => f.write_str("OneStepOutcome(Issued)"),
            Decision::Refused(e) => write!(f, "OneStepOutcome(Refused({e:?}))"),
            Decision::Decided { verdict, .. } => write!(f, "OneStepOutcome({verdict:?})"),
        }
    }
}
