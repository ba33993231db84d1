//! The compare-and-swap script, the one-step check (`verify.lua`), and
//! the requests the stores send.

use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

use super::cluster::cluster_query;
use crate::Error;
use crate::otp::Verdict;
use crate::otp::store::{
    Decision, Lookup, OneStepCheck, OneStepIssue, OneStepOutcome, OneStepPrefix,
};

/// Compare-and-swap as one server-side step. KEYS[1] = key; ARGV = has
/// expected ("0"/"1"), expected, has new ("0"/"1"), new, time to live (ms).
/// It touches one key, so on a cluster it runs on the node of that key's
/// slot.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' and tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// A script and its SHA-1 digest, the name Redis caches it under.
pub(super) struct Script {
    body: String,
    sha1: String,
}

impl Script {
    /// `source` without its comment lines and indentation.
    fn new(source: &str) -> Script {
        use sha1::Digest;
        let body = source
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let sha1 = crate::hex::encode(sha1::Sha1::digest(body.as_bytes()));
        Script { body, sha1 }
    }

    /// The request that runs the script on one key with `args`.
    fn request(&'static self, key: &str, args: impl FnOnce(&mut Cmd)) -> Request {
        self.request_on(&[key], args)
    }

    /// The request that runs the script on `keys` with `args`.
    fn request_on(&'static self, keys: &[&str], args: impl FnOnce(&mut Cmd)) -> Request {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha1).arg(keys.len()).arg(keys);
        args(&mut cmd);
        Request {
            cmd,
            script: Some(self),
        }
    }

    /// `sha`, an `EVALSHA` of this script, as an `EVAL` that carries it.
    fn eval(&self, sha: &Cmd) -> Cmd {
        let mut eval = redis::cmd("EVAL");
        eval.arg(&self.body);
        // Past the command's name and the digest: the key count, the keys
        // and the arguments.
        for arg in sha.args_iter().skip(2) {
            if let redis::Arg::Simple(bytes) = arg {
                eval.arg(bytes);
            }
        }
        eval
    }
}

static CAS: LazyLock<Script> = LazyLock::new(|| Script::new(CAS_SCRIPT));
/// The record's field helpers, sent before each script that reads a record.
const FIELDS: &str = include_str!("fields.lua");
static VERIFY: LazyLock<Script> =
    LazyLock::new(|| Script::new(&[FIELDS, include_str!("verify.lua")].concat()));
static ISSUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&[FIELDS, include_str!("issue.lua")].concat()));
static COUNT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&[FIELDS, include_str!("count.lua")].concat()));

/// What a store sends: one command and, for a script, the `EVAL` that
/// carries its body. Scripts are sent by digest (`EVALSHA`, a few dozen
/// bytes); a node that does not hold the script (after a restart, a
/// failover or `SCRIPT FLUSH`) answers `NOSCRIPT` and is then sent the
/// body, which it keeps: one extra round trip per node and script, once.
pub(super) struct Request {
    cmd: Cmd,
    script: Option<&'static Script>,
}

fn no_script(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

impl Request {
    /// Sends the request on a blocking connection.
    pub(super) fn run<T: redis::FromRedisValue>(
        &self,
        conn: &mut dyn redis::ConnectionLike,
    ) -> RedisResult<T> {
        match (self.cmd.query(conn), self.script) {
            (Err(e), Some(script)) if no_script(&e) => script.eval(&self.cmd).query(conn),
            (result, _) => result,
        }
    }

    /// Sends the request on an async connection.
    #[cfg(feature = "redis-tokio")]
    pub(super) async fn run_async<T, C>(&self, conn: &mut C) -> RedisResult<T>
    where
        T: redis::FromRedisValue,
        C: redis::aio::ConnectionLike + Send,
    {
        match (self.cmd.query_async(conn).await, self.script) {
            (Err(e), Some(script)) if no_script(&e) => {
                script.eval(&self.cmd).query_async(conn).await
            }
            (result, _) => result,
        }
    }

    /// Sends the request on a cluster connection.
    pub(super) async fn run_cluster<T: redis::FromRedisValue>(
        &self,
        conn: redis::cluster_async::ClusterConnection,
    ) -> RedisResult<T> {
        match (cluster_query(conn.clone(), &self.cmd).await, self.script) {
            (Err(e), Some(script)) if no_script(&e) => {
                cluster_query(conn, &script.eval(&self.cmd)).await
            }
            (result, _) => result,
        }
    }
}

/// The compare-and-swap request for `key`.
pub(super) fn cas_cmd(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
    expires_ms: u64,
    now_ms: u64,
) -> Request {
    CAS.request(key, |cmd| {
        cmd.arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.unwrap_or_default())
            .arg(expires_ms.saturating_sub(now_ms));
    })
}

/// The Redis key of the store key `key`: `prefix`, then `key`. On a
/// cluster a subject's record (`s:` and its tag's hex) and a challenge's
/// index entry (`c:` and its tag's hex) go under the hash tag of their
/// first byte, `{ab}`: a record's and its challenge's index entry, whose
/// tag starts with the same slot byte (see `ChallengeId`), share a slot,
/// so one script reaches both.
pub(super) fn redis_key(prefix: &str, key: &str, cluster: bool) -> String {
    let slotted = cluster && (key.starts_with("s:") || key.starts_with("c:"));
    match key.get(2..4) {
        Some(slot) if slotted => format!("{prefix}{{{slot}}}{key}"),
        _ => format!("{prefix}{key}"),
    }
}

/// What `count.lua` does to one counter or prefix record.
#[derive(Clone, Copy)]
pub(super) enum Count<'a> {
    /// One use of a client counter (`client_reserve`).
    Spend { max: u32, window_ms: u64 },
    /// The use spent in the window that started at `held`, given back
    /// (`client_refund`).
    Give { window_ms: u64, held: u64 },
    /// One send counted to a fraud guard's prefix (`prefix_reserve`).
    Prefix(&'a OneStepPrefix<'a>),
    /// The send counted in the window that started at `held`, given back
    /// (`prefix_refund`).
    Unprefix { window_ms: u64, held: u64 },
    /// An approval credited to a prefix (`prefix_credit`).
    Credit { window_ms: u64 },
}

/// The request that runs `count.lua` on `key` (a Redis key).
pub(super) fn count_cmd(key: &str, count: Count<'_>, now_ms: u64) -> Request {
    COUNT.request(key, |cmd| {
        match count {
            Count::Spend { max, window_ms } => cmd.arg("spend").arg(now_ms).arg(window_ms).arg(max),
            Count::Give { window_ms, held } => cmd.arg("give").arg(now_ms).arg(window_ms).arg(held),
            Count::Prefix(p) => {
                cmd.arg("prefix")
                    .arg(now_ms)
                    .arg(p.window_ms)
                    .arg(p.max)
                    .arg(p.block_ms);
                match p.floor {
                    Some((sends, percent)) => cmd.arg(sends).arg(percent),
                    None => cmd.arg("").arg(""),
                }
            }
            Count::Unprefix { window_ms, held } => {
                cmd.arg("unprefix").arg(now_ms).arg(window_ms).arg(held)
            }
            Count::Credit { window_ms } => cmd.arg("credit").arg(now_ms).arg(window_ms),
        };
    })
}

pub(super) fn get_cmd(key: &str) -> Request {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    Request { cmd, script: None }
}

/// The request that runs `check` as one script (`verify.lua`), or `None`
/// when it needs a lookup the script cannot make here: on a cluster, a
/// check by an id without a slot byte, whose index entry and record may be
/// on different nodes.
pub(super) fn one_step_cmd(
    check: &OneStepCheck<'_>,
    prefix: &str,
    cluster: bool,
) -> Option<Request> {
    let (mode, key) = match check.lookup {
        Lookup::Record(key) => ("s", key),
        Lookup::Index(key) if !cluster || check.slotted => ("i", key),
        Lookup::Index(_) => return None,
    };
    let mut keys = vec![redis_key(prefix, key, cluster)];
    if let Some(counter) = &check.counter {
        keys.push(redis_key(prefix, counter.key, cluster));
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    Some(VERIFY.request_on(&keys, |cmd| {
        cmd.arg(mode)
            .arg(check.id_tag.as_ref().map_or(&[][..], |t| &t[..]))
            .arg(check.mac.as_ref().map_or(&[][..], |m| &m[..]))
            .arg(check.now_ms)
            .arg(check.max_attempts)
            .arg(check.send_window_ms)
            .arg(check.ttl_ms)
            .arg(prefix)
            .arg(if cluster { "1" } else { "0" });
        match &check.counter {
            Some(counter) => cmd.arg(counter.max).arg(counter.window_ms),
            None => cmd.arg("").arg(""),
        };
        // The prefix record is in a slot of its own on a cluster: there the
        // caller credits it.
        match check.credit_window_ms.filter(|_| !cluster) {
            Some(window) => cmd.arg(window),
            None => cmd.arg(""),
        };
    }))
}

/// Reads the script's reply to `check` (see `verify.lua`). A reply of
/// another shape is [`Error::StoreCorrupt`].
pub(super) fn one_step_reply(
    reply: Vec<Value>,
    check: &OneStepCheck<'_>,
) -> Result<OneStepOutcome, Error> {
    fn tag(value: Option<&Value>) -> Result<Option<[u8; 32]>, Error> {
        match value {
            None => Ok(None),
            Some(Value::BulkString(b)) if b.is_empty() => Ok(None),
            Some(Value::BulkString(b)) => <[u8; 32]>::try_from(b.as_slice())
                .map(Some)
                .map_err(|_| Error::StoreCorrupt),
            Some(_) => Err(Error::StoreCorrupt),
        }
    }
    let number = |i: usize| match reply.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        _ => Err(Error::StoreCorrupt),
    };
    let kind = number(0)?;
    if kind == -1 {
        return Ok(OneStepOutcome(Decision::Fallback));
    }
    if kind == 6 {
        let counter = check.counter.as_ref().ok_or(Error::StoreCorrupt)?;
        let ms = u64::try_from(number(1)?).map_err(|_| Error::StoreCorrupt)?;
        return Ok(OneStepOutcome(Decision::Refused((counter.refused)(
            std::time::Duration::from_millis(ms),
        ))));
    }
    let left = u32::try_from(number(1)?).map_err(|_| Error::StoreCorrupt)?;
    let verdict = match kind {
        0 => Verdict::Unknown,
        1 => Verdict::Canceled,
        2 => Verdict::Locked,
        3 => Verdict::Expired,
        4 => Verdict::Approved,
        5 => Verdict::Rejected {
            attempts_left: left,
        },
        _ => return Err(Error::StoreCorrupt),
    };
    Ok(OneStepOutcome(Decision::Decided {
        verdict,
        subject_tag: tag(reply.get(2))?,
        challenge: tag(reply.get(3))?,
        prefix: tag(reply.get(4))?,
    }))
}

/// The request that makes `issue` as one script (`issue.lua`), or `None`
/// when its keys are not in one slot on a cluster: client counters (in
/// slots of their own), or an id without the subject's slot byte.
pub(super) fn issue_cmd(issue: &OneStepIssue<'_>, prefix: &str, cluster: bool) -> Option<Request> {
    if cluster
        && (!issue.counters.is_empty()
            || issue.prefix.is_some()
            || issue.record_key.get(2..4) != issue.index_key.get(2..4))
    {
        return None;
    }
    let keys: Vec<String> = [issue.record_key, issue.index_key]
        .into_iter()
        .chain(issue.counters.iter().map(|c| c.key))
        .chain(issue.prefix.as_ref().map(|p| p.key))
        .map(|key| redis_key(prefix, key, cluster))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    Some(ISSUE.request_on(&keys, |cmd| {
        cmd.arg(issue.now_ms)
            .arg(issue.max_attempts)
            .arg(issue.max_sends)
            .arg(issue.send_window_ms)
            .arg(issue.ttl_ms)
            .arg(issue.live)
            .arg(&issue.subject_tag[..])
            .arg(prefix)
            .arg(issue.expires_ms)
            .arg(if cluster { "1" } else { "0" });
        match &issue.prefix {
            Some(p) => {
                cmd.arg("1").arg(p.max).arg(p.window_ms).arg(p.block_ms);
                match p.floor {
                    Some((sends, percent)) => cmd.arg(sends).arg(percent),
                    None => cmd.arg("").arg(""),
                }
            }
            None => cmd.arg("").arg("").arg("").arg("").arg("").arg(""),
        };
        for c in issue.counters {
            cmd.arg(c.max).arg(c.window_ms);
        }
    }))
}

/// Reads `issue.lua`'s reply to `issue`. A reply of another shape is
/// [`Error::StoreCorrupt`].
pub(super) fn issue_reply(
    reply: Vec<i64>,
    issue: &OneStepIssue<'_>,
) -> Result<OneStepOutcome, Error> {
    let ms = |at: usize| {
        reply
            .get(at)
            .and_then(|ms| u64::try_from(*ms).ok())
            .map(std::time::Duration::from_millis)
            .ok_or(Error::StoreCorrupt)
    };
    Ok(OneStepOutcome(match reply.first() {
        Some(0) => Decision::Issued,
        Some(1) => Decision::Refused(Error::Locked {
            retry_after: ms(1)?,
        }),
        Some(2) => Decision::Refused(Error::SendLimit {
            retry_after: ms(1)?,
        }),
        Some(3) => Decision::Refused(Error::Contention),
        Some(4) => {
            let counter = reply
                .get(1)
                .and_then(|i| usize::try_from(*i).ok())
                .and_then(|i| issue.counters.get(i))
                .ok_or(Error::StoreCorrupt)?;
            Decision::Refused((counter.refused)(ms(2)?))
        }
        Some(5) if issue.prefix.is_some() => Decision::Refused(Error::PrefixBlocked {
            retry_after: ms(1)?,
        }),
        Some(-1) => Decision::Fallback,
        _ => return Err(Error::StoreCorrupt),
    }))
}

/// `verify.lua` against `verify_step`, the rule it ports: the same records
/// and attempts through both, the same verdicts, and the same bytes
/// written with the same expiry.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;
    use crate::otp::Policy;
    use crate::otp::driver::Step;
    use crate::otp::record::cases::{Case, NOW, Rng, case};
    use crate::otp::record::{
        Attempt, Keys, Macs, Outcome, State, client_reserve, index_key, subject_key, verify_step,
    };
    use crate::otp::store::{OneStepCounter, OneStepPrefix};
    const PREFIX: &str = "pinseal-test:lua:";
    /// The keys of a cluster (see [`redis_key`]), on one server.
    const SLOTTED: &str = "pinseal-test:lua-slotted:";
    /// The other test's prefix: the two run at once.
    const DAMAGED: &str = "pinseal-test:lua-damaged:";

    fn connection() -> Option<redis::Connection> {
        let url = std::env::var("PINSEAL_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_string());
        match redis::Client::open(url).and_then(|c| c.get_connection()) {
            Ok(conn) => Some(conn),
            Err(_) => {
                let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
                assert!(!ci, "Redis is required under CI");
                eprintln!("SKIPPED: no Redis at PINSEAL_REDIS_URL");
                None
            }
        }
    }

    /// What the script made of the check: verdict, subject, challenge and
    /// prefix tags, and the record and its time to live after it.
    fn run_script(
        conn: &mut redis::Connection,
        check: &OneStepCheck<'_>,
        prefix: &str,
        record_key: &str,
    ) -> (Decision, Option<Vec<u8>>, i64) {
        run_script_on(conn, check, prefix, record_key, false)
    }

    /// As [`run_script`], with the keys of a cluster (`cluster`): the
    /// scripts run on one server all the same.
    fn run_script_on(
        conn: &mut redis::Connection,
        check: &OneStepCheck<'_>,
        prefix: &str,
        record_key: &str,
        cluster: bool,
    ) -> (Decision, Option<Vec<u8>>, i64) {
        let request = one_step_cmd(check, prefix, cluster).unwrap();
        let reply: Vec<Value> = request.run(conn).unwrap();
        let OneStepOutcome(decision) = one_step_reply(reply, check).unwrap();
        let after: Option<Vec<u8>> = redis::cmd("GET").arg(record_key).query(conn).unwrap();
        let ttl: i64 = redis::cmd("PTTL").arg(record_key).query(conn).unwrap();
        (decision, after, ttl)
    }

    fn set(conn: &mut redis::Connection, key: &str, value: &[u8]) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(3_600_000)
            .query(conn)
            .unwrap();
    }

    /// A client counter, stored under `key`: absent, with uses left, at its
    /// budget (3), from a window that has ended, or damaged.
    fn counter_case(
        rng: &mut Rng,
        conn: &mut redis::Connection,
        key: &str,
    ) -> (crate::otp::limits::Bucket, Option<Vec<u8>>) {
        let bucket = crate::otp::limits::Bucket {
            max: 3,
            window_ms: rng.pick(&[60_000, 3_600_000]),
        };
        let counter = |start: u64, uses: u32| {
            [&[1u8][..], &start.to_be_bytes(), &uses.to_be_bytes()].concat()
        };
        let held = match rng.pick(&[0u8, 1, 1, 2, 3, 4]) {
            0 => None,
            // (At least a second left: a key with a millisecond to live
            // may be gone before the test reads it.)
            1 => Some(counter(
                NOW - rng.pick(&[0, 1_000, 59_000]),
                rng.pick(&[1, 2]),
            )),
            2 => Some(counter(NOW - rng.pick(&[0, 59_000]), 3)),
            3 => Some(counter(NOW - bucket.window_ms - rng.pick(&[0, 1_000]), 3)),
            // Too short, or another version.
            _ => Some(if rng.pick(&[false, true]) {
                vec![1u8; 12]
            } else {
                let mut c = counter(NOW, 1);
                c[0] = 2;
                c
            }),
        };
        let _: () = redis::cmd("DEL").arg(key).query(conn).unwrap();
        if let Some(bytes) = &held {
            set(conn, key, bytes);
        }
        (bucket, held)
    }

    #[test]
    fn the_script_decides_as_verify_step_does() {
        let Some(mut conn) = connection() else { return };
        decides_as_verify_step_does(&mut conn, false);
    }

    /// As above, with a cluster's keys (hash-tagged by slot byte) and ids
    /// with a slot byte, through the index entry in the record's slot.
    #[test]
    fn the_script_decides_as_verify_step_does_with_a_clusters_keys() {
        let Some(mut conn) = connection() else { return };
        decides_as_verify_step_does(&mut conn, true);
    }

    fn decides_as_verify_step_does(conn: &mut redis::Connection, cluster: bool) {
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, std::time::Duration::from_secs(60), 5).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seen = std::collections::HashSet::new();
        let key_prefix = if cluster { SLOTTED } else { PREFIX };
        for _ in 0..if cluster { 1500 } else { 3000 } {
            let Case {
                record,
                tag,
                id_tag,
            } = if cluster {
                crate::otp::record::cases::slotted_case(&mut rng, &keys, &policy)
            } else {
                case(&mut rng, &keys, &policy)
            };
            let bytes = record.encode();
            let mut want_id = rng.pick(&[None, Some(id_tag), Some([5 ^ 4 ^ id_tag[1]; 32])]);
            if let Some(id) = want_id.as_mut().filter(|_| cluster) {
                // Another challenge of the same subject has its slot byte.
                id[0] = tag[0];
            }
            let input = rng.pick(&["123456", "123457", "12345x", "1234"]);
            let attempt = Attempt::new(&policy, want_id, input, NOW);
            let expected = verify_step(&keys, &policy, &attempt, &tag, Some(&bytes)).unwrap();
            let (want, written) = match expected {
                Step::Done(outcome) => (outcome, None),
                Step::Write {
                    next,
                    expires_ms,
                    then,
                    ..
                } => (then, Some((next.unwrap(), expires_ms))),
            };
            let Outcome {
                value: verdict,
                prefix,
                challenge,
            } = want;
            seen.insert(format!("{verdict:?}"));
            let mac = bool::from(attempt.valid).then(|| attempt.split_mac(&keys, &tag));
            let subject = subject_key(&tag);
            let record_key = redis_key(key_prefix, &subject, cluster);
            let index = index_key(&want_id.unwrap_or(id_tag));
            // By the record's key, and (for a check by id) through the
            // index entry, as on one server.
            let mut lookups = vec![Lookup::Record(&subject)];
            if want_id.is_some() {
                lookups.push(Lookup::Index(&index));
            }
            for lookup in lookups {
                set(conn, &record_key, &bytes);
                set(conn, &redis_key(key_prefix, &index, cluster), &tag);
                let check = OneStepCheck {
                    lookup,
                    id_tag: want_id,
                    slotted: cluster,
                    mac,
                    now_ms: NOW,
                    max_attempts: policy.max_attempts,
                    send_window_ms: policy.send_window_ms,
                    ttl_ms: policy.ttl_ms,
                    counter: None,
                    credit_window_ms: None,
                };
                let (decision, after, ttl) =
                    run_script_on(conn, &check, key_prefix, &record_key, cluster);
                let Decision::Decided {
                    verdict: got,
                    subject_tag,
                    challenge: got_challenge,
                    prefix: got_prefix,
                } = decision
                else {
                    panic!("a version 4 record fell back");
                };
                let what = format!("{verdict:?} by {:?} of {input}", check);
                assert_eq!(got, verdict, "{what}");
                assert_eq!(got_challenge, challenge, "{what}");
                assert_eq!(got_prefix, prefix, "{what}");
                let by_index = matches!(lookup, Lookup::Index(_));
                assert_eq!(subject_tag, by_index.then_some(tag), "{what}");
                match &written {
                    None => {
                        assert_eq!(after.as_deref(), Some(&bytes[..]), "{what}");
                        assert!(ttl > 3_500_000, "{what}: {ttl}");
                    }
                    Some((next, expires_ms)) => {
                        assert_eq!(after.as_deref(), Some(&next[..]), "{what}");
                        let want_ttl = (expires_ms - NOW) as i64;
                        assert!(ttl <= want_ttl && ttl > want_ttl - 1_000, "{what}: {ttl}");
                    }
                }
            }
        }
        // The cases reached every verdict.
        for v in ["Approved", "Unknown", "Canceled", "Locked", "Expired"] {
            assert!(seen.contains(v), "{v} never came up");
        }
        assert!(seen.iter().any(|v| v.starts_with("Rejected")));
    }

    /// A check on behalf of a client (`check_from`, `verify_from`) against
    /// what the service does the general way: its check budget reserved
    /// first (`client_reserve`), the check (`verify_step`), and the budget
    /// given back on approval. The same refusals, verdicts and bytes.
    #[test]
    fn the_script_spends_a_check_budget_as_the_service_does() {
        let Some(mut conn) = connection() else { return };
        const BUDGETS: &str = "pinseal-test:lua-budget:";
        fn limit(retry_after: std::time::Duration) -> Error {
            Error::ClientCheckLimit { retry_after }
        }
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, std::time::Duration::from_secs(60), 5).unwrap();
        let mut rng = Rng(0x0ddb_1a5e_5ca1_ab1e);
        let mut seen = std::collections::HashSet::new();
        for round in 0..1500 {
            let Case {
                record,
                tag,
                id_tag,
            } = case(&mut rng, &keys, &policy);
            let bytes = record.encode();
            let want_id = rng.pick(&[None, Some(id_tag)]);
            let input = rng.pick(&["123456", "123457", "1234"]);
            let attempt = Attempt::new(&policy, want_id, input, NOW);
            let record_key = format!("{BUDGETS}{}", subject_key(&tag));
            let index = index_key(&id_tag);
            set(&mut conn, &record_key, &bytes);
            set(&mut conn, &format!("{BUDGETS}{index}"), &tag);
            let counter_key = format!("q:{round:04}");
            let (bucket, held) =
                counter_case(&mut rng, &mut conn, &format!("{BUDGETS}{counter_key}"));
            let check = OneStepCheck {
                lookup: match want_id {
                    Some(_) => Lookup::Index(&index),
                    None => Lookup::Record(&record_key[BUDGETS.len()..]),
                },
                id_tag: want_id,
                slotted: false,
                mac: bool::from(attempt.valid).then(|| attempt.split_mac(&keys, &tag)),
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counter: Some(OneStepCounter {
                    key: &counter_key,
                    max: bucket.max,
                    window_ms: bucket.window_ms,
                    refused: limit,
                }),
                credit_window_ms: None,
            };
            let (decision, after, _) = run_script(&mut conn, &check, BUDGETS, &record_key);
            let counter_after: Option<Vec<u8>> = redis::cmd("GET")
                .arg(format!("{BUDGETS}{counter_key}"))
                .query(&mut conn)
                .unwrap();
            let what = format!("round {round}");
            match client_reserve(bucket, limit, held.as_deref(), NOW) {
                Err(Error::StoreCorrupt) => {
                    seen.insert("a damaged counter".to_string());
                    assert!(matches!(decision, Decision::Fallback), "{what}");
                    assert_eq!(after.as_deref(), Some(&bytes[..]), "{what}");
                    assert_eq!(counter_after, held, "{what}");
                }
                Err(e) => {
                    seen.insert("refused".to_string());
                    let Decision::Refused(got) = decision else {
                        panic!("{what}: not refused");
                    };
                    assert_eq!(got, e, "{what}");
                    assert_eq!(after.as_deref(), Some(&bytes[..]), "{what}");
                    assert_eq!(counter_after, held, "{what}");
                }
                Ok(Step::Write {
                    next: spent,
                    expires_ms,
                    ..
                }) => {
                    let step = verify_step(&keys, &policy, &attempt, &tag, Some(&bytes)).unwrap();
                    let (verdict, written) = match step {
                        Step::Done(outcome) => (outcome.value, None),
                        Step::Write { next, then, .. } => (then.value, next),
                    };
                    let Decision::Decided { verdict: got, .. } = decision else {
                        panic!("{what}: not decided");
                    };
                    seen.insert(format!("{verdict:?}"));
                    assert_eq!(got, verdict, "{what}");
                    assert_eq!(
                        after.as_deref(),
                        Some(written.as_deref().unwrap_or(&bytes)),
                        "{what}"
                    );
                    if verdict == Verdict::Approved {
                        assert_eq!(counter_after, held, "{what}: an approval is not counted");
                    } else {
                        assert_eq!(counter_after, spent, "{what}");
                        let ttl: i64 = redis::cmd("PTTL")
                            .arg(format!("{BUDGETS}{counter_key}"))
                            .query(&mut conn)
                            .unwrap();
                        let want_ttl = (expires_ms - NOW) as i64;
                        assert!(ttl <= want_ttl && ttl > want_ttl - 1_000, "{what}");
                    }
                }
                Ok(Step::Done(_)) => panic!("a reserve always writes"),
            }
        }
        for v in [
            "Approved",
            "Unknown",
            "Locked",
            "refused",
            "a damaged counter",
        ] {
            assert!(seen.contains(v), "{v} never came up: {seen:?}");
        }
        assert!(seen.iter().any(|v| v.starts_with("Rejected")));
    }

    /// A fraud guard's prefix record for a test, stored under `key`: absent,
    /// in its window (with or without a block), its window just ended or
    /// ended a window ago, damaged, or holding a time a double cannot hold
    /// exactly.
    fn prefix_case(
        rng: &mut Rng,
        conn: &mut redis::Connection,
        key: &str,
        window: u64,
    ) -> Option<Vec<u8>> {
        let record = |start: u64, rng: &mut Rng| {
            let mut r = vec![1u8];
            r.extend_from_slice(&start.to_be_bytes());
            for n in [
                rng.pick(&[0u32, 1, 2, 3]),
                rng.pick(&[0u32, 1, 2]),
                rng.pick(&[0u32, 2, 5]),
                rng.pick(&[0u32, 1, 3]),
            ] {
                r.extend_from_slice(&n.to_be_bytes());
            }
            r.extend_from_slice(&rng.pick(&[0, 0, NOW - 1, NOW + 60_000]).to_be_bytes());
            r
        };
        let held = match rng.pick(&[0u8, 1, 1, 1, 2, 3, 4, 5]) {
            0 => None,
            1 => Some(record(NOW - rng.pick(&[0, 1_000, window - 1_000]), rng)),
            2 => Some(record(NOW - window - rng.pick(&[0, 1_000]), rng)),
            3 => Some(record(NOW - 2 * window - rng.pick(&[0, 1_000]), rng)),
            4 => Some(if rng.pick(&[false, true]) {
                vec![1u8; 32]
            } else {
                let mut r = record(NOW, rng);
                r[0] = 2;
                r
            }),
            _ => Some(record(1 << 53, rng)),
        };
        let _: () = redis::cmd("DEL").arg(key).query(conn).unwrap();
        if let Some(bytes) = &held {
            set(conn, key, bytes);
        }
        held
    }

    /// A value written, and when it expires (ms).
    type Written = (Vec<u8>, u64);

    /// Whether the scripts read a prefix record: times below 2^53 ms, the
    /// window's end a window ahead included.
    fn prefix_readable(held: Option<&[u8]>, window: u64) -> bool {
        let Some(r) = held.filter(|r| r.len() == 33) else {
            return true;
        };
        let at = |i: usize| u64::from_be_bytes(r[i..i + 8].try_into().unwrap());
        at(1) + 2 * window < 1 << 53 && at(25) < 1 << 53
    }

    fn guards() -> [crate::otp::FraudGuard; 2] {
        let guard = crate::otp::FraudGuard::new()
            .with_prefix_limit(3, 3, std::time::Duration::from_secs(3600))
            .unwrap()
            .with_block(std::time::Duration::from_secs(600))
            .unwrap();
        [guard.clone(), guard.with_approval_floor(2, 50).unwrap()]
    }

    /// `issue.lua` with a fraud guard's prefix against what the service
    /// does the general way: `prefix_reserve`, then `issue_step`, then
    /// `prefix_refund` when the subject refuses. The same refusals, and the
    /// same bytes in the record and the prefix's record.
    #[test]
    fn the_issue_script_counts_a_prefix_as_the_service_does() {
        use crate::otp::limits::{prefix_refund, prefix_reserve};
        use crate::otp::record::issue_step;
        let Some(mut conn) = connection() else { return };
        const GUARDED: &str = "pinseal-test:lua-prefix:";
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, std::time::Duration::from_secs(60), 5)
            .unwrap()
            .with_send_budget(3, std::time::Duration::from_secs(600))
            .unwrap();
        let guards = guards();
        let mut rng = Rng(0x005e_ed0f_9a1d);
        let mut seen = std::collections::HashSet::new();
        for round in 0..1500u32 {
            let Case {
                mut record, tag, ..
            } = case(&mut rng, &keys, &policy);
            record.sends = rng.pick(&[0, 1, 2, 3, 4]);
            let guard = &guards[usize::from(rng.pick(&[false, true]))];
            let window = guard.prefix.window_ms;
            let prefix_key = format!("p:{round:04}");
            let held = prefix_case(
                &mut rng,
                &mut conn,
                &format!("{GUARDED}{prefix_key}"),
                window,
            );
            let mut live = case(&mut Rng(11), &keys, &policy).record.live.unwrap();
            live.id_tag = [0x70 + (round % 8) as u8; 32];
            live.state = State::Pending;
            live.attempts = 0;
            live.expires_ms = NOW + 60_000;
            let current = record.encode();
            let subject = subject_key(&tag);
            let index = index_key(&live.id_tag);
            let _: () = redis::cmd("DEL")
                .arg(format!("{GUARDED}{index}"))
                .query(&mut conn)
                .unwrap();
            set(&mut conn, &format!("{GUARDED}{subject}"), &current);
            let mut encoded = Vec::new();
            live.encode_into(&mut encoded);
            let issue = OneStepIssue {
                record_key: &subject,
                index_key: &index,
                subject_tag: &tag,
                live: &encoded,
                expires_ms: live.expires_ms,
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                max_sends: policy.max_sends,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counters: &[],
                prefix: Some(OneStepPrefix {
                    key: &prefix_key,
                    max: guard.prefix.max,
                    window_ms: window,
                    block_ms: guard.block_ms,
                    floor: guard.floor,
                }),
            };
            let reply: Vec<i64> = issue_cmd(&issue, GUARDED, false)
                .unwrap()
                .run(&mut conn)
                .unwrap();
            let OneStepOutcome(got) = issue_reply(reply, &issue).unwrap();
            let get = |conn: &mut redis::Connection, key: &str| -> (Option<Vec<u8>>, i64) {
                let value = redis::cmd("GET").arg(key).query(conn).unwrap();
                (value, redis::cmd("PTTL").arg(key).query(conn).unwrap())
            };
            let (after, _) = get(&mut conn, &format!("{GUARDED}{subject}"));
            let (prefix_after, prefix_ttl) = get(&mut conn, &format!("{GUARDED}{prefix_key}"));
            let what = format!("round {round}");
            // The prefix's record as the general path leaves it, and the
            // outcome.
            // (The outcome: issued, or the refusal.)
            let (want_prefix, want): (Option<Written>, Result<(), Error>) =
                match prefix_reserve(guard, held.as_deref(), NOW) {
                    _ if !prefix_readable(held.as_deref(), window) => {
                        seen.insert("unreadable".to_string());
                        assert!(matches!(got, Decision::Fallback), "{what}");
                        assert_eq!(after.as_deref(), Some(&current[..]), "{what}");
                        assert_eq!(prefix_after, held, "{what}");
                        continue;
                    }
                    Err(e) => {
                        assert_eq!(e, Error::StoreCorrupt);
                        seen.insert("damaged".to_string());
                        assert!(matches!(got, Decision::Fallback), "{what}");
                        assert_eq!(prefix_after, held, "{what}");
                        continue;
                    }
                    Ok(Step::Done(Err(e))) => (held.clone().map(|h| (h, 0)), Err(e)),
                    Ok(Step::Done(Ok(_))) => panic!("a counted send writes"),
                    Ok(Step::Write {
                        next,
                        expires_ms,
                        then: Err(e),
                        ..
                    }) => (next.map(|n| (n, expires_ms)), Err(e)),
                    Ok(Step::Write {
                        next,
                        expires_ms,
                        then: Ok(window_start),
                        ..
                    }) => {
                        let reserved = next.unwrap();
                        match issue_step(&policy, &live, &tag, Some(&current), NOW) {
                            Ok(_) => (Some((reserved, expires_ms)), Ok(())),
                            Err(e) => {
                                let refunded =
                                    prefix_refund(guard, Some(&reserved), window_start, NOW)
                                        .unwrap();
                                let kept = match refunded {
                                    Step::Write {
                                        next, expires_ms, ..
                                    } => next.map(|n| (n, expires_ms)),
                                    Step::Done(()) => Some((reserved, expires_ms)),
                                };
                                (kept, Err(e))
                            }
                        }
                    }
                };
            match want {
                Ok(_) => {
                    seen.insert("Issued".to_string());
                    assert!(matches!(got, Decision::Issued), "{what}");
                }
                Err(e) => {
                    seen.insert(format!("{e:?}").split(' ').next().unwrap().to_string());
                    let Decision::Refused(got) = got else {
                        panic!("{what}: not refused ({e:?})");
                    };
                    assert_eq!(got, e, "{what}");
                    assert_eq!(
                        after.as_deref(),
                        Some(&current[..]),
                        "{what}: a refusal wrote"
                    );
                }
            }
            assert_eq!(
                prefix_after.as_deref(),
                want_prefix.as_ref().map(|(p, _)| &p[..]),
                "{what}"
            );
            if let Some((_, expires_ms)) = want_prefix.filter(|(_, e)| *e != 0) {
                let want_ttl = (expires_ms - NOW) as i64;
                assert!(
                    prefix_ttl <= want_ttl && prefix_ttl > want_ttl - 1_000,
                    "{what}: {prefix_ttl}"
                );
            }
        }
        for o in [
            "Issued",
            "PrefixBlocked",
            "Locked",
            "SendLimit",
            "damaged",
            "unreadable",
        ] {
            assert!(seen.contains(o), "{o} never came up: {seen:?}");
        }
    }

    /// `count.lua` against the rules it ports, one key at a time:
    /// `client_reserve` and `client_refund` on client counters,
    /// `prefix_reserve`, `prefix_refund` and `prefix_credit` on prefix
    /// records; the same outcomes, the same bytes written, the same time
    /// to live, and nothing written where the script does not read.
    #[test]
    fn the_count_script_counts_as_the_service_does() {
        use crate::otp::limits::{prefix_credit, prefix_refund, prefix_reserve};
        use crate::otp::record::client_refund;
        let Some(mut conn) = connection() else { return };
        const COUNTS: &str = "pinseal-test:lua-count:";
        fn limit(retry_after: std::time::Duration) -> Error {
            Error::ClientLimit { retry_after }
        }
        /// What the Rust rule leaves under the key, and when it expires
        /// (`None` for "as it was").
        type Left = Option<Option<Written>>;
        fn left<T>(step: &Step<T>) -> Left {
            match step {
                Step::Done(_) => None,
                Step::Write {
                    next, expires_ms, ..
                } => Some(next.clone().map(|n| (n, *expires_ms))),
            }
        }
        let guards = guards();
        let mut rng = Rng(0x00c0_417e);
        let mut seen = std::collections::HashSet::new();
        for round in 0..2500u32 {
            let key = format!("{COUNTS}{round:04}");
            let what = format!("round {round}");
            let op = rng.pick(&["spend", "give", "prefix", "unprefix", "credit"]);
            let start_of = |held: &Option<Vec<u8>>| {
                held.as_ref()
                    .filter(|h| h.len() >= 9)
                    .map_or(NOW, |h| u64::from_be_bytes(h[1..9].try_into().unwrap()))
            };
            // The Rust rule's outcome (`Ok(window start)`, `Ok(0)` for none,
            // or the refusal), what it leaves, and the request.
            let (want, want_left, request, held): (Result<u64, Error>, Left, Request, _) =
                if op == "spend" || op == "give" {
                    let (bucket, mut held) = counter_case(&mut rng, &mut conn, &key);
                    // Starts the scripts do not read (2^53 ms or more, at
                    // the start or the end), and one in the future.
                    let odd = rng.pick(&[0u8, 0, 0, 0, 0, 1, 2, 3]);
                    if odd > 0 {
                        let start: u64 = match odd {
                            1 => NOW + 10_000,
                            2 => (1 << 53) - 1_000,
                            _ => 1 << 53,
                        };
                        let bytes =
                            [&[1u8][..], &start.to_be_bytes(), &2u32.to_be_bytes()].concat();
                        set(&mut conn, &key, &bytes);
                        held = Some(bytes);
                    }
                    let unread = held.as_ref().is_some_and(|h| {
                        h.len() == 13
                            && h[0] == 1
                            && u64::from_be_bytes(h[1..9].try_into().unwrap()) + bucket.window_ms
                                >= 1 << 53
                    });
                    let (want, left, request) = if op == "spend" {
                        let spend = Count::Spend {
                            max: bucket.max,
                            window_ms: bucket.window_ms,
                        };
                        let request = count_cmd(&key, spend, NOW);
                        match client_reserve(bucket, limit, held.as_deref(), NOW) {
                            Ok(step) => {
                                let l = left(&step);
                                let Step::Write { then, .. } = step else {
                                    panic!("a spent use writes");
                                };
                                (Ok(then), l, request)
                            }
                            Err(e) => (Err(e), None, request),
                        }
                    } else {
                        let window = rng.pick(&[start_of(&held), start_of(&held), NOW, 7]);
                        let give = Count::Give {
                            window_ms: bucket.window_ms,
                            held: window,
                        };
                        let request = count_cmd(&key, give, NOW);
                        match client_refund(bucket, held.as_deref(), window, NOW) {
                            Ok(step) => (Ok(0), left(&step), request),
                            Err(e) => (Err(e), None, request),
                        }
                    };
                    if unread {
                        seen.insert("unreadable counter".to_string());
                        (Err(Error::StoreCorrupt), None, request, held)
                    } else {
                        (want, left, request, held)
                    }
                } else {
                    let guard = &guards[usize::from(rng.pick(&[false, true]))];
                    let window = guard.prefix.window_ms;
                    let mut held = prefix_case(&mut rng, &mut conn, &key, window);
                    // Approvals at the top of a u32, where a credit stops.
                    if let Some(h) = held.as_mut().filter(|h| h.len() == 33 && h[0] == 1) {
                        if rng.pick(&[false, false, false, true]) {
                            h[13..17].copy_from_slice(&u32::MAX.to_be_bytes());
                            set(&mut conn, &key, h);
                            seen.insert(format!("{op} at u32::MAX"));
                        }
                    }
                    let (want, left, request, held) = if op == "prefix" {
                        let counted = OneStepPrefix {
                            key: "",
                            max: guard.prefix.max,
                            window_ms: window,
                            block_ms: guard.block_ms,
                            floor: guard.floor,
                        };
                        let request = count_cmd(&key, Count::Prefix(&counted), NOW);
                        match prefix_reserve(guard, held.as_deref(), NOW) {
                            Ok(step) => {
                                let l = left(&step);
                                let then = match step {
                                    Step::Done(then) | Step::Write { then, .. } => then,
                                };
                                (then, l, request, held)
                            }
                            Err(e) => (Err(e), None, request, held),
                        }
                    } else if op == "unprefix" {
                        let from = rng.pick(&[start_of(&held), start_of(&held), NOW, 7]);
                        let give = Count::Unprefix {
                            window_ms: window,
                            held: from,
                        };
                        let request = count_cmd(&key, give, NOW);
                        match prefix_refund(guard, held.as_deref(), from, NOW) {
                            Ok(step) => (Ok(0), left(&step), request, held),
                            Err(e) => (Err(e), None, request, held),
                        }
                    } else {
                        let request = count_cmd(&key, Count::Credit { window_ms: window }, NOW);
                        match prefix_credit(guard, held.as_deref(), NOW) {
                            Ok(step) => (Ok(0), left(&step), request, held),
                            Err(e) => (Err(e), None, request, held),
                        }
                    };
                    // Times of 2^53 ms or more: the script does not read
                    // the record, and writes nothing.
                    if prefix_readable(held.as_deref(), window) {
                        (want, left, request, held)
                    } else {
                        seen.insert("unreadable".to_string());
                        (Err(Error::StoreCorrupt), None, request, held)
                    }
                };
            let reply: Vec<i64> = request.run(&mut conn).unwrap();
            let after: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
            match &want {
                Ok(0) if op != "spend" && op != "prefix" => {
                    assert_eq!(reply, [0], "{what}: {op}");
                }
                Ok(start) => assert_eq!(reply, [0, *start as i64], "{what}: {op}"),
                Err(Error::StoreCorrupt) => assert_eq!(reply, [-1], "{what}: {op}"),
                Err(Error::ClientLimit { retry_after }) => {
                    assert_eq!(reply, [4, retry_after.as_millis() as i64], "{what}")
                }
                Err(Error::PrefixBlocked { retry_after }) => {
                    assert_eq!(reply, [5, retry_after.as_millis() as i64], "{what}")
                }
                Err(e) => panic!("{what}: {e:?}"),
            }
            let outcome = match &want {
                Ok(_) => "counted".to_string(),
                Err(e) => format!("{e:?}").split(' ').next().unwrap().to_string(),
            };
            let change = match &want_left {
                None => "kept",
                Some(None) => "deleted",
                Some(Some(_)) => "written",
            };
            seen.insert(format!("{op} {outcome} {change}"));
            match want_left {
                None => assert_eq!(after, held, "{what}: {op} wrote"),
                Some(None) => assert_eq!(after, None, "{what}: {op} did not delete"),
                Some(Some((bytes, expires_ms))) => {
                    assert_eq!(after.as_deref(), Some(&bytes[..]), "{what}: {op}");
                    let want_ttl = (expires_ms - NOW) as i64;
                    assert!(
                        ttl <= want_ttl && ttl > want_ttl - 1_000,
                        "{what}: {op}: {ttl}, not {want_ttl}"
                    );
                }
            }
        }
        for o in [
            "spend counted written",
            "spend ClientLimit kept",
            "spend StoreCorrupt kept",
            "give counted kept",
            "give counted written",
            "give counted deleted",
            "prefix counted written",
            "prefix PrefixBlocked kept",
            "prefix PrefixBlocked written",
            "prefix StoreCorrupt kept",
            "unprefix counted kept",
            "unprefix counted written",
            "unprefix counted deleted",
            "credit counted kept",
            "credit counted written",
            "unreadable",
            "unreadable counter",
            "credit at u32::MAX",
        ] {
            assert!(seen.contains(o), "{o} never came up: {seen:?}");
        }
    }

    /// `verify.lua` with a fraud guard: an approval credited to its
    /// prefix as `prefix_credit` does it, in the same script, whose reply
    /// then leaves the prefix out; a prefix record the script does not
    /// read is left to the caller, with the tag.
    #[test]
    fn the_script_credits_an_approval_as_prefix_credit_does() {
        use crate::otp::limits::prefix_credit;
        let Some(mut conn) = connection() else { return };
        const CREDITS: &str = "pinseal-test:lua-credit:";
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, std::time::Duration::from_secs(60), 5).unwrap();
        let guard = &guards()[0];
        let window = guard.prefix.window_ms;
        let mut rng = Rng(0x0c4e_d175);
        let mut seen = std::collections::HashSet::new();
        for round in 0..1500u32 {
            let Case {
                mut record, tag, ..
            } = case(&mut rng, &keys, &policy);
            // Each round's own prefix tag, so rounds do not share a record.
            let prefix_tag = [[0x50, (round >> 8) as u8, round as u8], [0; 3]].concat();
            let prefix_tag: [u8; 32] = [&prefix_tag[..], &[0x5a; 26]].concat().try_into().unwrap();
            if let Some(live) = record.live.as_mut().filter(|l| l.prefix.is_some()) {
                live.prefix = Some(prefix_tag);
            }
            let bytes = record.encode();
            let subject = subject_key(&tag);
            set(&mut conn, &format!("{CREDITS}{subject}"), &bytes);
            let prefix_key = format!("{CREDITS}{}", crate::hex::prefixed("p:", &prefix_tag));
            let held = prefix_case(&mut rng, &mut conn, &prefix_key, window);
            let attempt = Attempt::new(&policy, None, "123456", NOW);
            let check = OneStepCheck {
                lookup: Lookup::Record(&subject),
                id_tag: None,
                slotted: false,
                mac: Some(attempt.split_mac(&keys, &tag)),
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counter: None,
                credit_window_ms: Some(window),
            };
            let (decision, _, _) =
                run_script(&mut conn, &check, CREDITS, &format!("{CREDITS}{subject}"));
            let Decision::Decided {
                verdict,
                prefix: got_prefix,
                ..
            } = decision
            else {
                panic!("round {round}: not decided");
            };
            let prefix_after: Option<Vec<u8>> =
                redis::cmd("GET").arg(&prefix_key).query(&mut conn).unwrap();
            let what = format!("round {round}");
            let credited = verdict == Verdict::Approved
                && record.live.as_ref().is_some_and(|l| l.prefix.is_some());
            if !credited {
                assert_eq!(got_prefix, None, "{what}");
                assert_eq!(prefix_after, held, "{what}: nothing credited");
                continue;
            }
            if !prefix_readable(held.as_deref(), window) {
                seen.insert("unreadable");
                assert_eq!(got_prefix, Some(prefix_tag), "{what}: left to the caller");
                assert_eq!(prefix_after, held, "{what}");
                continue;
            }
            match prefix_credit(guard, held.as_deref(), NOW) {
                Err(_) => {
                    seen.insert("damaged");
                    // The caller's credit would fail the same way.
                    assert_eq!(got_prefix, Some(prefix_tag), "{what}");
                    assert_eq!(prefix_after, held, "{what}");
                }
                Ok(Step::Done(())) => {
                    seen.insert("absent");
                    assert_eq!(got_prefix, None, "{what}");
                    assert_eq!(prefix_after, None, "{what}");
                }
                Ok(Step::Write {
                    next, expires_ms, ..
                }) => {
                    seen.insert("credited");
                    assert_eq!(got_prefix, None, "{what}");
                    assert_eq!(prefix_after, next, "{what}");
                    let ttl: i64 = redis::cmd("PTTL")
                        .arg(&prefix_key)
                        .query(&mut conn)
                        .unwrap();
                    let want_ttl = (expires_ms - NOW) as i64;
                    assert!(ttl <= want_ttl && ttl > want_ttl - 1_000, "{what}: {ttl}");
                }
            }
        }
        for o in ["credited", "absent", "damaged", "unreadable"] {
            assert!(seen.contains(o), "{o} never came up: {seen:?}");
        }
    }

    /// `issue.lua` against `issue_step` and the writes the service makes
    /// around it: the same refusals, the same record written with the same
    /// expiry, the new index entry, and the stale one deleted only when
    /// the step says so and it still names the subject.
    #[test]
    fn the_issue_script_issues_as_issue_step_does() {
        let Some(mut conn) = connection() else { return };
        issues_as_issue_step_does(&mut conn, false);
    }

    /// As above, with a cluster's keys and ids with a slot byte: the stale
    /// entry of an id without one is in another slot, and the issue falls
    /// back to the general path when it is due to be deleted.
    #[test]
    fn the_issue_script_issues_as_issue_step_does_with_a_clusters_keys() {
        let Some(mut conn) = connection() else { return };
        issues_as_issue_step_does(&mut conn, true);
    }

    fn issues_as_issue_step_does(conn: &mut redis::Connection, cluster: bool) {
        use crate::otp::record::{Live, issue_step};
        let issues = if cluster {
            "pinseal-test:lua-issue-slotted:"
        } else {
            "pinseal-test:lua-issue:"
        };
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, std::time::Duration::from_secs(60), 5)
            .unwrap()
            .with_send_budget(3, std::time::Duration::from_secs(600))
            .unwrap();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut outcomes = std::collections::HashSet::new();
        for round in 0..if cluster { 1000 } else { 2000u32 } {
            let Case {
                mut record, tag, ..
            } = if cluster {
                crate::otp::record::cases::slotted_case(&mut rng, &keys, &policy)
            } else {
                case(&mut rng, &keys, &policy)
            };
            record.sends = rng.pick(&[0, 1, 2, 3, 4]);
            let absent = rng.pick(&[false, false, false, true]);
            // Never one of the cases' id tags (4, 5, 6).
            let mut new_id = [0x70 + (round % 8) as u8; 32];
            if cluster {
                new_id[0] = tag[0];
            }
            let live = Live {
                id_tag: new_id,
                macs: Macs::Split {
                    by_id: [0x11; 32],
                    by_subject: [0x22; 32],
                },
                expires_ms: NOW + 60_000,
                state: State::Pending,
                attempts: 0,
                created_ms: NOW,
                updated_ms: NOW,
                send: 0,
                to: vec![0x33; rng.pick(&[0usize, 45])],
                prefix: rng.pick(&[None, Some([0x44; 32])]),
            };
            let current = (!absent).then(|| record.encode());
            let subject = subject_key(&tag);
            let record_key = redis_key(issues, &subject, cluster);
            let index = index_key(&new_id);
            let stale_key = record
                .stale
                .as_ref()
                .map(|s| redis_key(issues, &index_key(&s.id_tag), cluster));
            // The stale entry names this subject, or (a reused id) another.
            let stale_value = rng.pick(&[tag, tag, [0x99; 32]]);
            let _: () = redis::cmd("DEL")
                .arg(&record_key)
                .arg(redis_key(issues, &index, cluster))
                .query(conn)
                .unwrap();
            if let Some(bytes) = &current {
                set(conn, &record_key, bytes);
            }
            if let Some(key) = &stale_key {
                set(conn, key, &stale_value);
            }
            // Up to three client counters, each absent, with uses left, at
            // its budget, from a window that has ended, or damaged; the
            // last may name the first's key again (a limit applied twice).
            let mut counters: Vec<(String, crate::otp::limits::Bucket, Option<Vec<u8>>)> =
                Vec::new();
            // (None on a cluster: they are in slots of their own.)
            for j in 0..if cluster {
                0
            } else {
                rng.pick(&[0usize, 0, 1, 2, 3])
            } {
                if j == 2 && rng.pick(&[false, true]) {
                    let again = counters[0].clone();
                    counters.push(again);
                    continue;
                }
                let key = format!("k:{round:04}:{j}");
                let (bucket, held) =
                    counter_case(&mut rng, conn, &redis_key(issues, &key, cluster));
                counters.push((key, bucket, held));
            }
            fn limit(retry_after: std::time::Duration) -> Error {
                Error::ClientLimit { retry_after }
            }
            // What the service's reserve makes of them, one after the
            // other: each one's write, or the first refusal.
            let mut spent = Ok(Vec::new());
            let mut now_held: std::collections::HashMap<&str, Option<Vec<u8>>> = counters
                .iter()
                .map(|(key, _, held)| (key.as_str(), held.clone()))
                .collect();
            for (key, bucket, _) in &counters {
                let held = now_held[key.as_str()].clone();
                match client_reserve(*bucket, limit, held.as_deref(), NOW) {
                    Ok(Step::Write {
                        next, expires_ms, ..
                    }) => {
                        now_held.insert(key, next.clone());
                        if let Ok(spent) = &mut spent {
                            spent.push((next.unwrap(), expires_ms));
                        }
                    }
                    Ok(Step::Done(_)) => panic!("a reserve always writes"),
                    Err(e) => {
                        spent = Err(e);
                        break;
                    }
                }
            }
            let want = match &spent {
                Err(Error::StoreCorrupt) => None,
                Err(e) => Some(Err(*e)),
                Ok(_) => Some(issue_step(&policy, &live, &tag, current.as_deref(), NOW)),
            };
            let one_step_counters: Vec<OneStepCounter<'_>> = counters
                .iter()
                .map(|(key, bucket, _)| OneStepCounter {
                    key,
                    max: bucket.max,
                    window_ms: bucket.window_ms,
                    refused: limit,
                })
                .collect();
            let mut encoded = Vec::new();
            live.encode_into(&mut encoded);
            let issue = OneStepIssue {
                record_key: &subject,
                index_key: &index,
                subject_tag: &tag,
                live: &encoded,
                expires_ms: live.expires_ms,
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                max_sends: policy.max_sends,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counters: &one_step_counters,
                prefix: None,
            };
            let reply: Vec<i64> = issue_cmd(&issue, issues, cluster)
                .unwrap()
                .run(conn)
                .unwrap();
            let OneStepOutcome(got) = issue_reply(reply, &issue).unwrap();
            let counters_after: Vec<Option<Vec<u8>>> = counters
                .iter()
                .map(|(key, ..)| {
                    redis::cmd("GET")
                        .arg(redis_key(issues, key, cluster))
                        .query(conn)
                        .unwrap()
                })
                .collect();
            let counters_held: Vec<Option<Vec<u8>>> =
                counters.iter().map(|(_, _, held)| held.clone()).collect();
            let after: Option<Vec<u8>> = redis::cmd("GET").arg(&record_key).query(conn).unwrap();
            let new_index: Option<Vec<u8>> = redis::cmd("GET")
                .arg(redis_key(issues, &index, cluster))
                .query(conn)
                .unwrap();
            let stale_after: Option<Vec<u8>> = match &stale_key {
                Some(key) => redis::cmd("GET").arg(key).query(conn).unwrap(),
                None => None,
            };
            match want {
                None => {
                    outcomes.insert("a damaged counter".into());
                    assert!(matches!(got, Decision::Fallback), "round {round}");
                    assert_eq!(after, current, "round {round}: a fallback wrote");
                    assert_eq!(new_index, None, "round {round}");
                    assert_eq!(counters_after, counters_held, "round {round}");
                }
                Some(Err(e)) => {
                    outcomes.insert(format!("{e:?}").split(' ').next().unwrap().to_string());
                    let Decision::Refused(got) = got else {
                        panic!("round {round}: the script did not refuse ({e:?})");
                    };
                    assert_eq!(got, e, "round {round}");
                    assert_eq!(after, current, "round {round}: a refusal wrote");
                    assert_eq!(
                        counters_after, counters_held,
                        "round {round}: a counter moved"
                    );
                    assert_eq!(new_index, None, "round {round}");
                    if stale_key.is_some() {
                        assert_eq!(stale_after.as_deref(), Some(&stale_value[..]));
                    }
                }
                Some(Ok(step))
                    if cluster
                        && matches!(step, Step::Write { first: Some(_), .. })
                        && record.stale.as_ref().is_some_and(|s| s.id_tag[0] != tag[0]) =>
                {
                    outcomes.insert("a stale entry in another slot".into());
                    assert!(matches!(got, Decision::Fallback), "round {round}");
                    assert_eq!(after, current, "round {round}: a fallback wrote");
                    assert_eq!(new_index, None, "round {round}");
                    assert_eq!(stale_after.as_deref(), Some(&stale_value[..]));
                }
                Some(Ok(step)) => {
                    outcomes.insert("Issued".into());
                    let Ok(spent) = &spent else {
                        unreachable!("a refused counter refuses the issue")
                    };
                    if counters.len() == 3 && counters[2].0 == counters[0].0 {
                        outcomes.insert("a key named twice".into());
                    }
                    for (((key, ..), after), (_, expires_ms)) in
                        counters.iter().zip(&counters_after).zip(spent)
                    {
                        // A key named twice holds what the second wrote.
                        assert_eq!(after, &now_held[key.as_str()], "round {round}: {key}");
                        let ttl: i64 = redis::cmd("PTTL")
                            .arg(redis_key(issues, key, cluster))
                            .query(conn)
                            .unwrap();
                        let want_ttl = (expires_ms - NOW) as i64;
                        assert!(ttl <= want_ttl && ttl > want_ttl - 1_000, "round {round}");
                    }
                    assert!(matches!(got, Decision::Issued), "round {round}");
                    let Step::Write {
                        next,
                        expires_ms,
                        first,
                        ..
                    } = step
                    else {
                        panic!("issue_step always writes");
                    };
                    assert_eq!(after, next, "round {round}");
                    let ttl: i64 = redis::cmd("PTTL").arg(&record_key).query(conn).unwrap();
                    let want_ttl = (expires_ms - NOW) as i64;
                    assert!(ttl <= want_ttl && ttl > want_ttl - 1_000, "round {round}");
                    assert_eq!(new_index.as_deref(), Some(&tag[..]), "round {round}");
                    let ttl: i64 = redis::cmd("PTTL")
                        .arg(redis_key(issues, &index, cluster))
                        .query(conn)
                        .unwrap();
                    let want_ttl = (live.expires_ms + policy.ttl_ms - NOW) as i64;
                    assert!(ttl <= want_ttl && ttl > want_ttl - 1_000, "round {round}");
                    if let Some(key) = &stale_key {
                        // Deleted when the step names it and it holds the
                        // subject; kept otherwise.
                        let deleted = first.is_some() && stale_value == tag;
                        assert_eq!(stale_after.is_none(), deleted, "round {round}: {key}");
                    }
                }
            }
        }
        let expected: &[&str] = if cluster {
            &[
                "Issued",
                "Locked",
                "SendLimit",
                "a stale entry in another slot",
            ]
        } else {
            &[
                "Issued",
                "Locked",
                "SendLimit",
                "ClientLimit",
                "a damaged counter",
                "a key named twice",
            ]
        };
        for o in expected {
            assert!(outcomes.contains(*o), "{o} never came up: {outcomes:?}");
        }
    }

    #[test]
    fn records_the_script_does_not_read_fall_back() {
        let Some(mut conn) = connection() else { return };
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, std::time::Duration::from_secs(60), 5).unwrap();
        let mut rng = Rng(7);
        let Case {
            mut record, tag, ..
        } = case(&mut rng, &keys, &policy);
        record.live = case(&mut Rng(11), &keys, &policy).record.live;
        let live = record.live.as_mut().expect("this seed has a challenge");
        live.state = State::Pending;
        live.prefix = Some([7; 32]);
        let v4 = record.encode();
        let mut damaged = Vec::new();
        // Every cut, one byte more, a state that does not exist, flags
        // that do not exist, another version.
        for cut in 1..v4.len() {
            damaged.push(v4[..cut].to_vec());
        }
        let mut longer = v4.clone();
        longer.push(0);
        damaged.push(longer);
        for (at, bad) in [(17, 4u8), (17, 9), (0, 5), (0, 2)] {
            let mut b = v4.clone();
            b[at] = bad;
            damaged.push(b);
        }
        if let Some(live) = record.live.as_mut() {
            live.macs = Macs::Joint([1; 32]);
        }
        let v3 = record.encode();
        assert_eq!(v3[0], 3);
        damaged.push(v3);
        // Times a double cannot hold exactly: the window's start, and the
        // challenge's expiry.
        for at in [1, 114] {
            let mut b = v4.clone();
            b[at + 1] = 0x20;
            damaged.push(b);
        }
        let record_key = format!("{DAMAGED}{}", subject_key(&tag));
        let index = index_key(&[0x71; 32]);
        let mut encoded = Vec::new();
        if let Some(live) = &record.live {
            live.encode_into(&mut encoded);
        }
        for bytes in damaged {
            // The issue script writes nothing either.
            set(&mut conn, &record_key, &bytes);
            let _: () = redis::cmd("DEL")
                .arg(format!("{DAMAGED}{index}"))
                .query(&mut conn)
                .unwrap();
            let issue = OneStepIssue {
                record_key: &record_key[DAMAGED.len()..],
                index_key: &index,
                subject_tag: &tag,
                live: &encoded,
                expires_ms: NOW + 60_000,
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                max_sends: 1_000,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counters: &[],
                prefix: None,
            };
            let reply: Vec<i64> = issue_cmd(&issue, DAMAGED, false)
                .unwrap()
                .run(&mut conn)
                .unwrap();
            let OneStepOutcome(decision) = issue_reply(reply, &issue).unwrap();
            assert!(
                matches!(decision, Decision::Fallback),
                "issue, {} bytes: {:?}",
                bytes.len(),
                OneStepOutcome(decision)
            );
            let new_index: Option<Vec<u8>> = redis::cmd("GET")
                .arg(format!("{DAMAGED}{index}"))
                .query(&mut conn)
                .unwrap();
            assert_eq!(
                new_index,
                None,
                "issue, {} bytes: nothing written",
                bytes.len()
            );
            set(&mut conn, &record_key, &bytes);
            let check = OneStepCheck {
                lookup: Lookup::Record(&record_key[DAMAGED.len()..]),
                id_tag: None,
                slotted: false,
                mac: Some(keys.code_mac_by_subject(&tag, b"123456")),
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counter: None,
                credit_window_ms: None,
            };
            let (decision, after, _) = run_script(&mut conn, &check, DAMAGED, &record_key);
            assert!(
                matches!(decision, Decision::Fallback),
                "{} bytes: {:?}",
                bytes.len(),
                OneStepOutcome(decision)
            );
            assert_eq!(after.as_deref(), Some(&bytes[..]), "nothing written");
        }
        // An index entry that is not a subject tag.
        let index = index_key(&[0x72; 32]);
        set(&mut conn, &format!("{DAMAGED}{index}"), b"short");
        let check = OneStepCheck {
            lookup: Lookup::Index(&index),
            id_tag: Some([0x72; 32]),
            slotted: false,
            mac: None,
            now_ms: NOW,
            max_attempts: policy.max_attempts,
            send_window_ms: policy.send_window_ms,
            ttl_ms: policy.ttl_ms,
            counter: None,
            credit_window_ms: None,
        };
        let request = one_step_cmd(&check, DAMAGED, false).unwrap();
        let reply: Vec<Value> = request.run(&mut conn).unwrap();
        assert!(matches!(
            one_step_reply(reply, &check).unwrap(),
            OneStepOutcome(Decision::Fallback)
        ));
        // With a cluster's keys, an index entry naming a subject whose
        // record is in another slot (its tag starts with another byte than
        // the id's slot byte): the script does not follow it.
        set(&mut conn, &redis_key(DAMAGED, &index, true), &[0x73; 32]);
        let elsewhere = redis_key(DAMAGED, &subject_key(&[0x73; 32]), true);
        set(&mut conn, &elsewhere, b"not read");
        let check = OneStepCheck {
            slotted: true,
            ..check
        };
        let request = one_step_cmd(&check, DAMAGED, true).unwrap();
        let reply: Vec<Value> = request.run(&mut conn).unwrap();
        assert!(matches!(
            one_step_reply(reply, &check).unwrap(),
            OneStepOutcome(Decision::Fallback)
        ));
        // An id without a slot byte is not sent by index on a cluster.
        let check = OneStepCheck {
            slotted: false,
            ..check
        };
        assert!(one_step_cmd(&check, DAMAGED, true).is_none());
    }

    #[test]
    fn on_a_cluster_records_and_index_entries_go_under_their_slot_byte() {
        assert_eq!(redis_key("p:", "s:ab12", true), "p:{ab}s:ab12");
        assert_eq!(redis_key("p:", "c:ab34", true), "p:{ab}c:ab34");
        assert_eq!(redis_key("p:", "s:ab12", false), "p:s:ab12");
        // Counters and other keys keep their own slots.
        assert_eq!(redis_key("p:", "k:ab12", true), "p:k:ab12");
        assert_eq!(redis_key("p:", "s:", true), "p:s:");
        // Any key the `Store` trait is given stays whole and consistent.
        assert_eq!(redis_key("p:", "s:é", true), "p:{é}s:é");
    }

    /// The same issue sent twice (its first reply lost, the request sent
    /// again on a new connection) is reported made, and changes nothing
    /// the second time; another issue for the subject still goes through.
    #[test]
    fn an_issue_sent_twice_is_made_once() {
        let Some(mut conn) = connection() else { return };
        const TWICE: &str = "pinseal-test:lua-twice:";
        let keys = Keys::new(&Key::from_bytes([8; 32]));
        let policy = Policy::new(6, std::time::Duration::from_secs(60), 5).unwrap();
        let Case { record, tag, .. } = case(&mut Rng(99), &keys, &policy);
        let record_key = format!("{TWICE}{}", subject_key(&tag));
        // What an earlier run left (index entries live two minutes).
        let _: () = redis::cmd("DEL")
            .arg(&record_key)
            .arg(format!("{TWICE}{}", index_key(&[0x73; 32])))
            .arg(format!("{TWICE}{}", index_key(&[0x74; 32])))
            .query(&mut conn)
            .unwrap();
        let issue_once = |conn: &mut redis::Connection, id: [u8; 32]| {
            let mut live = record
                .live
                .clone()
                .unwrap_or_else(|| case(&mut Rng(11), &keys, &policy).record.live.unwrap());
            live.id_tag = id;
            live.state = State::Pending;
            let mut encoded = Vec::new();
            live.encode_into(&mut encoded);
            let index = index_key(&id);
            let issue = OneStepIssue {
                record_key: &record_key[TWICE.len()..],
                index_key: &index,
                subject_tag: &tag,
                live: &encoded,
                expires_ms: NOW + 60_000,
                now_ms: NOW,
                max_attempts: policy.max_attempts,
                max_sends: policy.max_sends,
                send_window_ms: policy.send_window_ms,
                ttl_ms: policy.ttl_ms,
                counters: &[],
                prefix: None,
            };
            let reply: Vec<i64> = issue_cmd(&issue, TWICE, false).unwrap().run(conn).unwrap();
            let after: Option<Vec<u8>> = redis::cmd("GET").arg(&record_key).query(conn).unwrap();
            (issue_reply(reply, &issue).unwrap().0, after)
        };
        let (first, after_first) = issue_once(&mut conn, [0x73; 32]);
        assert!(matches!(first, Decision::Issued));
        let (again, after_again) = issue_once(&mut conn, [0x73; 32]);
        assert!(matches!(again, Decision::Issued));
        assert_eq!(after_again, after_first, "the repeat wrote nothing");
        let sends = |r: &Option<Vec<u8>>| {
            u32::from_be_bytes(r.as_ref().unwrap()[9..13].try_into().unwrap())
        };
        assert_eq!(sends(&after_first), 1);
        let (next, after_next) = issue_once(&mut conn, [0x74; 32]);
        assert!(matches!(next, Decision::Issued));
        assert_eq!(sends(&after_next), 2);
    }
}
