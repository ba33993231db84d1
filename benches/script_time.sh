#!/usr/bin/env bash
# Redis's own time for one run of `verify.lua` (a wrong code, which reads
# the record and writes it back), as `INFO commandstats` reports it:
# by id (index entry, then record) and by subject.
#
#   benches/script_time.sh [REV...]   the working tree, then each git REV
#
# Needs `redis-cli` and `redis-benchmark`, and a Redis on
# $REDIS_PORT (6379) whose statistics it resets. Keys start with
# `pinseal-script-time:` and are deleted at the end. N runs per figure
# (50 000).
set -euo pipefail
cd "$(dirname "$0")/.."
port="${REDIS_PORT:-6379}"
n="${N:-50000}"
cli() { redis-cli -p "$port" "$@"; }
p="pinseal-script-time:"
tag_hex="$(printf '54%.0s' {1..32})"  # 'T' x 32, the subject tag the index entry holds
record_key="${p}s:${tag_hex}"

# A pending record (version 4): window start, sends, attempts, state 1,
# id tag 'I'x32, MACs, expiry, code attempts, times, 60 bytes of sealed
# subject, no prefix, no stale entry.
make_record="
local function b(v, n) local lo = v % 4294967296
  if n == 8 then return struct.pack('>I4I4', (v - lo) / 4294967296, lo) end
  return struct.pack('>I4', lo) end
local start = 1700000000000
local r = string.char(4) .. b(start, 8) .. b(0, 4) .. b(0, 4) .. string.char(1)
  .. string.rep('I', 32) .. string.rep('M', 32) .. string.rep('S', 32) .. b(start + 600000, 8)
  .. b(0, 4) .. string.rep('\0', 8) .. b(start, 8) .. string.rep('\0', 4) .. string.char(0, 60)
  .. string.rep('x', 60) .. string.char(0) .. string.char(0)
redis.call('SET', KEYS[1], r)
redis.call('SET', KEYS[2], string.rep('T', 32))
return #r"

measure() { # label, script body
  local sha mode
  sha="$(cli script load "$2")"
  for mode in i s; do
    cli eval "$make_record" 2 "$record_key" "${p}c:idx" >/dev/null
    local key="$record_key" id=""
    if [ "$mode" = i ]; then key="${p}c:idx"; id="$(printf 'I%.0s' {1..32})"; fi
    cli config resetstat >/dev/null
    redis-benchmark -p "$port" -n "$n" -c 1 -q EVALSHA "$sha" 1 "$key" "$mode" "$id" \
      WRONGWRONGWRONGWRONGWRONGWRONGWR 1700000001000 1000000000 6000000 60000 "$p" 0 "" "" "" >/dev/null
    printf '%-12s %-10s %s us\n' "$1" "$( [ "$mode" = i ] && echo "by id" || echo "by subject")" \
      "$(cli info commandstats | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')"
  done
}

dir=src/otp/store/redis
measure "working tree" "$(cat "$dir/fields.lua" "$dir/verify.lua")"
for rev in "$@"; do
  measure "$rev" "$(git show "$rev:$dir/fields.lua"; git show "$rev:$dir/verify.lua")"
done
cli del "$record_key" "${p}c:idx" >/dev/null
