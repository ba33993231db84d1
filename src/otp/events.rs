//! Lifecycle events of challenges: [`Event`], [`EventKind`] and the
//! [`EventSink`] hook, shaped like the provider's Verify events
//! (CloudEvents, with its type names).

use core::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::pseudonym::Pseudonym;

/// What happened to a challenge.
///
/// | kind | when | CloudEvents type |
/// |---|---|---|
/// | [`Pending`](EventKind::Pending) | a code was issued | `com.twilio.accountsecurity.verify.verification.pending` |
/// | [`Approved`](EventKind::Approved) | a right code, or [`Otp::approve`](super::Otp::approve) | `….verification.approved` |
/// | [`Canceled`](EventKind::Canceled) | [`Otp::cancel`](super::Otp::cancel) | `….verification.canceled` |
/// | [`Expired`](EventKind::Expired) | a check found the code expired | `….verification.expired` |
/// | [`MaxAttemptsReached`](EventKind::MaxAttemptsReached) | the wrong attempt that spent the last one | `….verification.max-attempts-reached` |
///
/// The store has no timers: an expiry is reported when a check finds it,
/// once per such check (so possibly more than once), and a code nobody
/// checks after its lifetime expires without an event. Max attempts is
/// reported by the wrong attempt that spends the last one; a code whose
/// lifetime outlasts its subject's window can report it again in the next
/// window. Count events by kind and pseudonym, not as a state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A code was issued and is waiting.
    Pending,
    /// The challenge was approved.
    Approved,
    /// The challenge was canceled.
    Canceled,
    /// A check found the code expired.
    Expired,
    /// The last attempt was spent on a wrong code.
    MaxAttemptsReached,
}

impl EventKind {
    /// The CloudEvents `type` the provider's Verify events use.
    pub fn cloudevents_type(&self) -> &'static str {
        match self {
            EventKind::Pending => "com.twilio.accountsecurity.verify.verification.pending",
            EventKind::Approved => "com.twilio.accountsecurity.verify.verification.approved",
            EventKind::Canceled => "com.twilio.accountsecurity.verify.verification.canceled",
            EventKind::Expired => "com.twilio.accountsecurity.verify.verification.expired",
            EventKind::MaxAttemptsReached => {
                "com.twilio.accountsecurity.verify.verification.max-attempts-reached"
            }
        }
    }

    /// The status the provider's events carry: `PENDING`, `APPROVED`,
    /// `CANCELED`, `EXPIRED`, `MAX_ATTEMPTS_REACHED`.
    pub fn status(&self) -> &'static str {
        match self {
            EventKind::Pending => "PENDING",
            EventKind::Approved => "APPROVED",
            EventKind::Canceled => "CANCELED",
            EventKind::Expired => "EXPIRED",
            EventKind::MaxAttemptsReached => "MAX_ATTEMPTS_REACHED",
        }
    }
}

/// One lifecycle event, handed to the [`EventSink`] set with
/// [`Otp::with_events`](super::Otp::with_events).
///
/// The subject and the challenge are keyed pseudonyms ([`Pseudonym`],
/// `ps1.…`) under a key derived from the pepper: the same subject (or
/// challenge) always gets the same token, so events can be joined and
/// counted, and without the pepper a token cannot be traced back by trying
/// phone numbers. The challenge id itself is not in an event: with
/// [`Otp::fetch`](super::Otp::fetch) it would give the subject back to
/// whoever reads the event stream. A service that keeps ids joins them with
/// [`Otp::challenge_pseudonym`](super::Otp::challenge_pseudonym). No event
/// holds a code, a subject or an id in clear; `Debug` and
/// [`Event::to_cloudevent`] show only what is here.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The challenge's keyed pseudonym, whether the operation named it by
    /// id or by subject.
    pub challenge: Option<Pseudonym>,
    /// The subject's keyed pseudonym.
    pub subject: Pseudonym,
    /// When, by the service's clock.
    pub time: SystemTime,
}

impl Event {
    /// The event as a CloudEvents 1.0 JSON object (structured mode), with
    /// `source` as its source (a URI naming the service) and a random id:
    /// `{"specversion":"1.0","type":"com.twilio.accountsecurity.verify.verification.approved",
    /// "source":…,"id":"EV…","time":"2026-01-02T03:04:05.678Z",
    /// "datacontenttype":"application/json","data":{"challenge":"ps1.…",
    /// "subject":"ps1.…","verification_status":"APPROVED"}}`.
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::Key;
    /// use pinseal::otp::{Event, Otp, Policy};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    /// let sink = seen.clone();
    /// let otp = Otp::new(&Key::generate(), Policy::default()).with_events(move |e: &Event| {
    ///     sink.lock().unwrap().push(e.to_cloudevent("urn:example:verify"));
    /// });
    /// let (id, _code) = otp.issue("+15551234567")?;
    /// otp.cancel(&id)?;
    /// let seen = seen.lock().unwrap();
    /// assert!(seen[0].contains(r#""type":"com.twilio.accountsecurity.verify.verification.pending""#));
    /// assert!(seen[1].contains(r#""verification_status":"CANCELED""#));
    /// assert!(!seen.iter().any(|e| e.contains("5551234567")));
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn to_cloudevent(&self, source: &str) -> String {
        let mut id = [0u8; 16];
        crate::rand::fill(&mut id);
        let challenge = self
            .challenge
            .as_ref()
            .map_or_else(|| "null".to_string(), |c| format!("\"{c}\""));
        format!(
            concat!(
                r#"{{"specversion":"1.0","type":"{}","source":"{}","id":"EV{}","time":"{}","#,
                r#""datacontenttype":"application/json","data":{{"challenge":{},"#,
                r#""subject":"{}","verification_status":"{}"}}}}"#
            ),
            self.kind.cloudevents_type(),
            JsonText(source),
            crate::hex::encode(id),
            Rfc3339(self.time),
            challenge,
            self.subject,
            self.kind.status(),
        )
    }
}

/// Where a service's [`Event`]s go: a log, a queue, a metrics counter.
///
/// It is called on the thread (or task) that ran the operation, after the
/// store has decided, and must not block: hand the event to a channel for
/// anything slow. A closure `Fn(&Event) + Send + Sync` is a sink.
pub trait EventSink: Send + Sync {
    /// Receives one event.
    fn on_event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> EventSink for F {
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// A string written as the inside of a JSON string.
struct JsonText<'a>(&'a str);

impl fmt::Display for JsonText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// A time as RFC 3339 in UTC with milliseconds: `2026-01-02T03:04:05.678Z`.
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // The civil date of a day count (H. Hinnant's algorithm).
        let z = i64::try_from(days).unwrap_or(0) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3_600,
            rem % 3_600 / 60,
            rem % 60,
            since.subsec_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_matches_known_dates() {
        let at = |s: u64, ms: u64| {
            Rfc3339(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms)).to_string()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // From `date -u -d @...`.
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn json_text_escapes() {
        assert_eq!(JsonText("a\"b\\c\n").to_string(), "a\\\"b\\\\c\\u000a");
    }
}
