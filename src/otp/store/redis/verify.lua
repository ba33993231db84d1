-- One check of a code against a subject's record (version 4), as one
-- atomic server-side step: the rule of `verify_step` in `src/otp/record.rs`,
-- byte for byte (a test runs both on the same records and compares).
--
-- KEYS[1]: the subject's record, or (ARGV[1] == 'i') the challenge's index
--          entry, whose value is the subject tag the record's key is made of.
-- ARGV[1]: 's' (KEYS[1] is the record) or 'i' (KEYS[1] is the index entry)
-- ARGV[2]: the id tag the challenge must have ('' for a check by subject)
-- ARGV[3]: the MAC of the candidate code: by id when ARGV[2] is set, by
--          subject otherwise ('' for malformed input, which never matches)
-- ARGV[4]: now (ms since the epoch)
-- ARGV[5]: max attempts; ARGV[6]: send window (ms); ARGV[7]: TTL (ms)
-- ARGV[8]: the key prefix (for ARGV[1] == 'i')
-- ARGV[9]: '1' on a cluster, where a record's key carries the hash tag of
--          its slot byte ('{ab}s:ab...', see `redis_key`), which a check by
--          index can only follow when the index entry is in the same slot
-- KEYS[2], ARGV[10], ARGV[11], when sent: a client's check budget, its
--          budget and window (ms): the rule of `client_reserve`, spent
--          unless the check approves (the service's refund on approval)
--          (ARGV[10] and ARGV[11] are '' without)
-- ARGV[12]: the fraud guard's prefix window (ms), or '': an approval is
--          credited to its prefix's record (`prefix_credit`) by a key made
--          here, and its prefix tag then left out of the reply
--
-- Returns {kind, attempts left, subject tag, challenge id tag, prefix tag}:
-- kind 0 unknown, 1 canceled, 2 locked, 3 expired, 4 approved, 5 rejected;
-- {6, retry after ms} when the client's check budget is spent (nothing
-- decided, nothing written);
-- {-1} when the record or counter is not one this script reads (another version, or
-- damaged): the caller then decides the check the general way, and reports
-- what is wrong with it. So does a record holding a time of 2^53 ms or
-- more, which a double cannot hold exactly.

-- `num`, `big`, `bytes`, `hex32` and `prefix_helpers` come from
-- `fields.lua`, sent before this script.

-- The client's check budget, decided before the check: none left refuses.
local spent, spent_ttl
if #KEYS > 1 then
  local now = tonumber(ARGV[4])
  local budget, span = tonumber(ARGV[10]), tonumber(ARGV[11])
  local from, uses = now, 0
  local c = redis.call('GET', KEYS[2])
  if c then
    if #c ~= 13 or string.byte(c, 1) ~= 1 or big(c, 2) then return {-1} end
    from, uses = num(c, 2, 8), num(c, 10, 4)
    if now >= from + span then from, uses = now, 0 end
  end
  if from + span >= 2^53 or from + span - now <= 0 then return {-1} end
  if uses >= budget then return {6, from + span - now} end
  spent, spent_ttl = string.char(1) .. bytes(from, 8) .. bytes(uses + 1, 4), from + span - now
end

local function check()
local key = KEYS[1]
local subject = ''
if ARGV[1] == 'i' then
  subject = redis.call('GET', KEYS[1])
  if not subject then return {0, 0, ''} end
  if #subject ~= 32 then return {-1} end
  local hex = hex32(subject, 1)
  if ARGV[9] == '1' then
    -- The record is in this slot only if it starts with the id's slot byte.
    if string.byte(subject, 1) ~= string.byte(ARGV[2], 1) then return {-1} end
    key = ARGV[8] .. '{' .. string.sub(hex, 1, 2) .. '}s:' .. hex
  else
    key = ARGV[8] .. 's:' .. hex
  end
end

local r = redis.call('GET', key)
if not r then return {0, 0, subject} end
if #r < 18 or string.byte(r, 1) ~= 4 then return {-1} end
local state = string.byte(r, 18)
if state == 0 then
  local stale = string.byte(r, 19)
  if (stale == 0 and #r == 19) or (stale == 1 and #r == 59) then
    return {0, 0, subject}
  end
  return {-1}
end
-- The live challenge is whole, up to its sealed subject, and the record
-- ends where its prefix and stale entry say.
if #r < 149 then return {-1} end
local at = 149 + num(r, 147, 2)
if #r < at + 1 then return {-1} end
local prefix = ''
local flag = string.byte(r, at)
if flag == 1 then
  prefix = string.sub(r, at + 1, at + 32)
  at = at + 33
elseif flag == 0 then
  at = at + 1
else
  return {-1}
end
if #r < at then return {-1} end
local stale = string.byte(r, at)
if not ((stale == 0 and #r == at) or (stale == 1 and #r == at + 40)) then
  return {-1}
end
-- The header (window start, sends, attempts), then the code's expiry and
-- attempts, each read in one call; an 8-byte time as two halves (see
-- `num`), whose high half is 2^21 or more from 2^53 ms on.
local start_hi, start_lo, sends, attempts = struct.unpack('>I4I4I4I4', r, 2)
local expires_hi, expires_lo, code_attempts = struct.unpack('>I4I4I4', r, 115)
if state > 3 or start_hi >= 2097152 or expires_hi >= 2097152 then return {-1} end

local id_tag = string.sub(r, 19, 50)
if ARGV[2] ~= '' and ARGV[2] ~= id_tag then return {0, 0, subject} end
if state == 2 then return {1, 0, subject} end
if state == 3 then return {0, 0, subject} end

local now = tonumber(ARGV[4])
local max = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local start = start_hi * 4294967296 + start_lo
if now >= start + window then
  start, sends, attempts = now, 0, 0
  start_lo = now % 4294967296
  start_hi = (now - start_lo) / 4294967296
end
if attempts >= max or code_attempts >= max then return {2, 0, subject} end
local expires = expires_hi * 4294967296 + expires_lo
if now >= expires then return {3, 0, subject, id_tag} end

local stored
if ARGV[2] ~= '' then stored = string.sub(r, 51, 82) else stored = string.sub(r, 83, 114) end
local now_lo = now % 4294967296
local now_hi = (now - now_lo) / 4294967296
local next, kind, left
if ARGV[3] ~= '' and ARGV[3] == stored then
  -- Spent: both MACs zeroed, the subject's attempts forgiven.
  next = struct.pack('>BI4I4I4I4B', 4, start_hi, start_lo, sends, 0, 3) .. id_tag
    .. string.rep('\0', 64) .. string.sub(r, 115, 134) .. struct.pack('>I4I4', now_hi, now_lo)
    .. string.sub(r, 143)
  kind, left = 4, 0
else
  attempts = attempts + 1
  code_attempts = code_attempts + 1
  next = struct.pack('>BI4I4I4I4', 4, start_hi, start_lo, sends, attempts % 4294967296)
    .. string.sub(r, 18, 122) .. struct.pack('>I4', code_attempts % 4294967296)
    .. string.sub(r, 127, 134) .. struct.pack('>I4I4', now_hi, now_lo) .. string.sub(r, 143)
  kind, left, prefix = 5, math.max(0, max - math.max(attempts, code_attempts)), ''
end
local expiry = math.max(start + window, expires + ttl)
redis.call('SET', key, next, 'PX', string.format('%.0f', expiry - now))
return {kind, left, subject, id_tag, prefix}
end

local reply = check()
-- Every decision but an approval spends one check of the client's budget.
if spent and reply[1] ~= -1 and reply[1] ~= 4 then
  redis.call('SET', KEYS[2], spent, 'PX', string.format('%.0f', spent_ttl))
end
-- An approval counts for its prefix: the approval rate the guard judges.
-- A prefix record this does not read is left to the caller, with the tag.
if reply[1] == 4 and reply[5] ~= '' and ARGV[12] ~= '' then
  local now, w = tonumber(ARGV[4]), tonumber(ARGV[12])
  local key = ARGV[8] .. 'p:' .. hex32(reply[5], 1)
  local prefix_read, prefix_bytes, prefix_ttl = prefix_helpers()
  local p = redis.call('GET', key)
  local r = p and prefix_read(p, now, w)
  if r then
    r.appr = math.min(r.appr + 1, 4294967295)
    redis.call('SET', key, prefix_bytes(r), 'PX', prefix_ttl(r, w, now))
  end
  if r or not p then reply[5] = '' end
end
return reply
