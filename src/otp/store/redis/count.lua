-- One counter, as one atomic server-side step on its own key: a client
-- counter or a fraud guard's prefix record that an issue or a check spends
-- on a Redis Cluster, where it is in a slot of its own (on one server,
-- `issue.lua` and `verify.lua` spend them with the subject's record).
-- The rules of `client_reserve` and `client_refund` (src/otp/record.rs),
-- `prefix_reserve`, `prefix_refund` and `prefix_credit`
-- (src/otp/limits.rs), byte for byte (a test runs both on the same records
-- and compares).
--
-- KEYS[1]: the counter or the prefix record.
-- ARGV[1]: what to do; ARGV[2]: now (ms); ARGV[3]: the window (ms)
--   'spend'    a client counter's use; ARGV[4]: its budget. Returns
--              {0, the window's start} spent, {4, retry after ms} none left.
--   'give'     a use given back; ARGV[4]: the start of the window it was
--              spent in. Returns {0}.
--   'prefix'   a send counted to a prefix; ARGV[4]: its budget; ARGV[5]:
--              its block (ms); ARGV[6], ARGV[7]: the approval floor's sends
--              and percent ('' without). Returns {0, the window's start}
--              counted, {5, retry after ms} blocked (the block written when
--              this send starts it).
--   'unprefix' a send given back to its prefix; ARGV[4]: the start of the
--              window it was counted in. Returns {0}.
--   'credit'   an approval credited to its prefix. Returns {0}.
-- Returns {-1}, having written nothing, for a record this script does not
-- read (another version, damaged, or a time of 2^53 ms or more, which a
-- double cannot hold exactly).

-- `num`, `big`, `bytes` and `prefix_helpers` come from `fields.lua`,
-- sent before this script.

local what = ARGV[1]
local now = tonumber(ARGV[2])
local span = tonumber(ARGV[3])
local held = KEYS[1]
local raw = redis.call('GET', held)

if what == 'spend' or what == 'give' then
  local from, uses = now, 0
  if raw then
    if #raw ~= 13 or string.byte(raw, 1) ~= 1 or big(raw, 2) then return {-1} end
    from, uses = num(raw, 2, 8), num(raw, 10, 4)
    if now >= from + span then from, uses = now, 0 end
  end
  if from + span >= 2^53 or from + span - now <= 0 then return {-1} end
  local ttl = string.format('%.0f', from + span - now)
  if what == 'spend' then
    if uses >= tonumber(ARGV[4]) then return {4, from + span - now} end
    redis.call('SET', held, string.char(1) .. bytes(from, 8) .. bytes(uses + 1, 4), 'PX', ttl)
    return {0, from}
  end
  -- Only a use of the window it was spent in, and only one counted.
  if not raw or from ~= tonumber(ARGV[4]) or uses == 0 then return {0} end
  if uses == 1 then
    -- Nothing counted: a refused request leaves no entry behind.
    redis.call('DEL', held)
  else
    redis.call('SET', held, string.char(1) .. bytes(from, 8) .. bytes(uses - 1, 4), 'PX', ttl)
  end
  return {0}
end

if what ~= 'prefix' and what ~= 'unprefix' and what ~= 'credit' then return {-1} end
if not raw and what ~= 'prefix' then return {0} end
local prefix_read, prefix_bytes, prefix_ttl = prefix_helpers()
local p = prefix_read(raw, now, span)
if not p then return {-1} end

if what == 'prefix' then
  if p.till > now then return {5, p.till - now} end
  local too_few = false
  if ARGV[6] ~= '' then
    too_few = p.psends >= tonumber(ARGV[6]) and p.pappr * 100 < p.psends * tonumber(ARGV[7])
  end
  if p.sends >= tonumber(ARGV[4]) or too_few then
    p.till = now + tonumber(ARGV[5])
    redis.call('SET', held, prefix_bytes(p), 'PX', prefix_ttl(p, span, now))
    return {5, p.till - now}
  end
  p.sends = p.sends + 1
  redis.call('SET', held, prefix_bytes(p), 'PX', prefix_ttl(p, span, now))
  return {0, p.start}
end

if what == 'unprefix' then
  if p.start ~= tonumber(ARGV[4]) or p.sends == 0 then return {0} end
  p.sends = p.sends - 1
  if p.sends == 0 and p.appr == 0 and p.psends == 0 and p.till <= now then
    -- Nothing counted: a refused issue leaves no entry behind.
    redis.call('DEL', held)
    return {0}
  end
else
  p.appr = math.min(p.appr + 1, 4294967295)
end
redis.call('SET', held, prefix_bytes(p), 'PX', prefix_ttl(p, span, now))
return {0}
