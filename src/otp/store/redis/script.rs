//! The compare-and-swap script and the two commands the stores send.

use redis::Cmd;

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

/// The compare-and-swap command for `key`. `EVAL` carries the script each
/// time, so a node that never saw it (after a failover, a restart or a
/// resharding) runs it without a `NOSCRIPT` round trip.
pub(super) fn cas_cmd(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
    expires_ms: u64,
    now_ms: u64,
) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(CAS_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(if expected.is_some() { "1" } else { "0" })
        .arg(expected.unwrap_or_default())
        .arg(if new.is_some() { "1" } else { "0" })
        .arg(new.unwrap_or_default())
        .arg(expires_ms.saturating_sub(now_ms));
    cmd
}

pub(super) fn get_cmd(key: &str) -> Cmd {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    cmd
}
