//! One-time passcodes: issue, send budget, verify once.
//!
//! # Use case
//!
//! Sign-in and step-up flows that send a short numeric code by SMS or chat
//! (or read it out on a call) and ask the user to type it back; and
//! authenticator-app codes ([`totp`]).
//!
//! # What is in this module
//!
//! | item | for |
//! |---|---|
//! | [`Otp`] | the whole life of a sent code, on a blocking store |
//! | [`aio::Otp`] | the same on an async store (tokio Redis, DynamoDB), awaited |
//! | [`Policy`] | digits, TTL, attempt and send budgets |
//! | [`ChallengeId`], [`Verdict`], [`Challenge`], [`ChallengeStatus`], [`Budget`], [`ClientBudget`] | what a caller keeps and is told |
//! | [`RateLimit`], [`RateKey`] | several buckets (velocities) per key: per IP address, per account |
//! | [`Event`], [`EventKind`], [`EventSink`] | lifecycle events (pending, approved, canceled, expired, max attempts) as the provider's CloudEvents |
//! | [`FraudGuard`], [`PrefixStats`] | SMS pumping: per-prefix velocity and blocks, country permissions, the approval rate |
//! | [`Clock`], [`SystemClock`], [`ManualClock`] | where time comes from (tests never sleep) |
//! | [`store`] | the store traits and the stores: memory, Redis, DynamoDB |
//! | [`totp`] | HOTP/TOTP, enrollment URIs, and the guard that accepts each step once |
//! | [`AcceptOnce`], [`aio::AcceptOnce`] | admit a key once per TTL on a shared store: webhook replays, one-time envelopes |
//! | [`canonical_phone`] | one spelling per phone number, so budgets count people |
//!
//! # About
//!
//! [`Otp`] is sans-IO at its core: the rules live here, time comes from a
//! [`Clock`], and state lives in a [`Store`](store::Store)
//! ([`MemoryStore`] by default; Redis or DynamoDB for services on several
//! machines). Blocking and async services differ by type, not by method
//! name: [`Otp::issue`] and [`aio::Otp::issue`] run the same code, and a
//! store of the wrong kind is refused when the service is made, with a
//! message naming the type to use.
//!
//! - [`Otp::issue`] draws a code uniformly from all `10^digits` values
//!   (rejection sampling from the OS generator, leading zeros kept) and a
//!   128-bit [`ChallengeId`], and returns both; the caller sends the code.
//!   Issuing again for the same subject replaces the previous code at once,
//!   counts against the subject's send budget, and keeps the subject's
//!   attempt count.
//! - [`Otp::verify`] (by challenge id) and [`Otp::check`] (by subject, as
//!   Twilio Verify's check) return a [`Verdict`]: approved (the challenge
//!   is consumed), rejected with attempts left, expired, locked, canceled
//!   or unknown; each has a status string in Verify's vocabulary
//!   ([`Verdict::status`]).
//! - [`Otp::cancel`] withdraws a pending code and [`Otp::approve`]
//!   approves one verified another way; [`Otp::fetch`] reports where a
//!   challenge stands (status, subject, times) without counting an
//!   attempt; [`Otp::budget`] and [`Otp::client_budget`] say what is left
//!   and when a spent budget lifts.
//!
//! ## Subjects
//!
//! The subject is the key every budget is counted under, so it must be
//! canonical: one spelling per person. Pass phone numbers in E.164 form
//! ([`canonical_phone`] turns `+1 (555) 010-0199` into `+15550100199`),
//! e-mail addresses and user names trimmed and case-folded. Eight spellings
//! of one number would otherwise get eight send and attempt budgets.
//!
//! ## Clients
//!
//! [`Otp::issue_from`] also names the client asking (an IP address, a
//! device id) and counts the issue against the client's own send budget,
//! so that one caller cycling through many numbers (SMS pumping) is cut
//! off while other callers still get codes.
//!
//! ## Budgets and time
//!
//! - A code is valid while `now < issued_at + ttl`: at exactly
//!   `issued_at + ttl` it is expired.
//! - A subject's send window starts with its first send (or attempt) after
//!   the previous window ended and lasts `send_window`; at most `max_sends` codes are issued in it, and the next
//!   issue is refused with [`Error::SendLimit`].
//! - Wrong attempts are counted per subject and carried over when a code is
//!   re-sent, so resending never buys more guesses. When they reach
//!   `max_attempts`, verification answers [`Verdict::Locked`] and issuing
//!   answers [`Error::Locked`] until the send window ends. Approval resets
//!   the count. Each code also counts its own wrong attempts, never reset:
//!   a code that has taken `max_attempts` wrong guesses is locked for good,
//!   even across the end of a window. A wrong code never extends a TTL.
//! - An expired challenge is reported as [`Verdict::Expired`] for one more
//!   TTL, and as [`Verdict::Unknown`] after; a replaced or approved one as
//!   [`Verdict::Unknown`]; a canceled one as [`Verdict::Canceled`] while
//!   it is the subject's newest.
//!
//! ## What is stored
//!
//! From the pepper key four keys are derived with [`Key::derive`]:
//! `otp/v1/code`, `otp/v1/subject`, `otp/v1/index` and `otp/v1/client`.
//! The store holds:
//!
//! - under `s:` + hex(subject tag), where the subject tag is
//!   HMAC-SHA256(subject key, subject), the subject's record: window start,
//!   send and attempt counters; for its newest challenge the id tag
//!   HMAC-SHA256(index key, challenge id), its expiry, its state (pending,
//!   canceled or approved), and while pending `mac` = HMAC-SHA256(code
//!   key, id tag (32 bytes) || subject tag (32 bytes) || code (ASCII
//!   digits)); and the id tag of the challenge it replaced, whose index
//!   entry the next issue deletes;
//! - under `c:` + hex(id tag), the subject tag, until one TTL after the
//!   challenge expires;
//! - under `k:` + hex(HMAC-SHA256(client key, client)), a client's window
//!   start and send count ([`Otp::issue_from`] only);
//! - under `q:`, `r:` and `p:` + hex(HMAC-SHA256(client key, kind and
//!   length-prefixed parts)), a client's check count
//!   ([`Otp::check_from`]), a rate-limit bucket's count
//!   ([`Otp::issue_limited`]), and a phone-number prefix's sends, approvals
//!   and block ([`FraudGuard`]).
//!
//! Since 0.2 the subject's record also holds, for its newest challenge, the
//! times it was issued and last changed, which send of the window it was,
//! and the subject itself sealed with AES-256-GCM under the derived key
//! `otp/v1/to`, bound to the challenge and subject tags, so that
//! [`Otp::fetch`] can say whom a challenge was for. Records written by 0.1
//! are read, without those fields.
//!
//! Neither the code, the subject, the client nor the challenge id is ever
//! stored in clear, and the code cannot be recovered from the store without
//! the pepper. A subject holds at most three entries (its record, the index
//! of its newest challenge, and one earlier index entry not yet deleted)
//! however often it is re-sent.
//!
//! # Errors
//!
//! An `Err` from [`Otp::issue`] or [`Otp::verify`] means the service could
//! not decide: the store is down or full, a budget is spent, or contention
//! did not settle. A verdict is never [`Verdict::Approved`] by default.
//! [`Error::class`] sorts errors into what a web service answers: a spent
//! budget (429, with [`Budget::retry_after`]), an unavailable store (503,
//! retry), bad input (400).
//!
//! # Security
//!
//! - Verification compares HMACs with [`subtle`], and the code HMACs it
//!   computes do not depend on the outcome: unknown, expired and locked
//!   challenges and malformed input cost the same cryptographic work as a
//!   real check (one code HMAC where the store decides in one step; on
//!   the other stores that one and one more per compare-and-swap round).
//!   (The store round trips differ: on the memory store and DynamoDB an
//!   unknown id needs one lookup, a known one two; on Redis a check is
//!   one request whatever the outcome, except by an id without a slot byte
//!   on a cluster, where a known id takes two, and on a record written
//!   before version 4, which is checked the general way. On Redis the script compares the MAC it
//!   is sent with the stored one as Lua strings, not with `subtle`: see
//!   SECURITY.md.)
//! - Attempts are counted per subject, across resends, so resending never
//!   buys guesses. The price is that anyone who knows a subject can spend
//!   its attempts and lock it out until the window ends; SECURITY.md lists
//!   the settings that bound this.
//! - With the defaults (6 digits, 5 attempts per 10-minute window) an online
//!   guesser succeeds with probability at most 5 / 10^6 per code, and per
//!   window per subject unless the subject approves a code in between.
//! - Use a pepper [`Key`] dedicated to OTP (for example
//!   `root.derive("otp/pepper")`). Rotating it invalidates codes in flight.
//!
//! # Example
//!
//! ```
//! use pinseal::{ExposeSecret, Key};
//! use pinseal::otp::{Otp, Policy, Verdict};
//! use std::time::Duration;
//!
//! let otp = Otp::new(&Key::generate(), Policy::new(6, Duration::from_secs(60), 5)?);
//! let (challenge, code) = otp.issue("+15551234567")?;
//! // send `code.expose_secret()` by SMS; keep `challenge` in the session
//! assert_eq!(otp.verify(&challenge, "not it")?, Verdict::Rejected { attempts_left: 4 });
//! assert_eq!(otp.verify(&challenge, code.expose_secret())?, Verdict::Approved);
//! assert_eq!(otp.verify(&challenge, code.expose_secret())?, Verdict::Unknown); // spent
//! # Ok::<(), pinseal::Error>(())
//! ```

pub mod aio;
mod challenge;
mod clock;
mod driver;
mod events;
mod limits;
mod once;
mod policy;
mod record;
mod service;
pub mod store;
mod subject;
pub mod totp;

pub use challenge::{Budget, Challenge, ChallengeId, ChallengeStatus, ClientBudget, Verdict};
pub use clock::{Clock, ManualClock, SystemClock};
pub use events::{Event, EventKind, EventSink};
pub use limits::{FraudGuard, PrefixStats, RateKey, RateLimit};
pub use once::AcceptOnce;
pub use policy::{Policy, random_code};
pub use service::Otp;
pub use store::MemoryStore;
pub use subject::canonical_phone;
#[cfg(feature = "phonenumber")]
pub use subject::canonical_phone_in;

#[cfg(doc)]
use crate::{Error, Key};
