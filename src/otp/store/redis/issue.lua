-- One issue of a code, as one atomic server-side step on one Redis server:
-- the rule of `issue_step` in `src/otp/record.rs` and the writes the
-- service makes around it (the new index entry, the stale one deleted),
-- byte for byte (a test runs both on the same records and compares).
--
-- KEYS[1]: the subject's record; KEYS[2]: the new challenge's index entry;
-- KEYS[3] on: the client counters the issue spends one use of each of, in
-- order (the rule of `client_reserve`, and the refund of all of them when
-- the issue is refused, which here is writing none); last, when ARGV[11]
-- is '1', the fraud guard's prefix record (`prefix_reserve`, and
-- `prefix_refund` when the subject refuses).
-- ARGV[1]: now (ms); ARGV[2]: max attempts; ARGV[3]: max sends;
-- ARGV[4]: send window (ms); ARGV[5]: TTL (ms)
-- ARGV[6]: the new challenge as the record holds it (state to prefix), its
--          send number left for this script to fill in
-- ARGV[7]: the subject tag (the index entry's value)
-- ARGV[8]: the key prefix (the stale index entry's key is made here)
-- ARGV[9]: when the new challenge expires (ms)
-- ARGV[10]: '1' on a cluster, where the index entries' keys carry the hash
--           tag of their slot byte ('{ab}c:ab...', see `redis_key`)
-- ARGV[11]: '1' with a prefix record, '' without; ARGV[12]: the prefix's
--           budget; ARGV[13]: its window (ms); ARGV[14]: its block (ms);
--           ARGV[15], ARGV[16]: the approval floor's sends and percent
--           ('' without a floor)
-- ARGV[17], ARGV[18], ...: each counter's budget and window (ms), in pairs
--
-- Returns {0} issued (or found issued by this same request, sent again
-- after a lost reply); {1, retry after ms} locked; {2, retry after ms} send
-- limit; {3} the new index entry exists (contention); {4, counter (from 0),
-- retry after ms} a counter has no use left; {5, retry after ms} the
-- prefix is blocked (the block is written when this issue starts it);
-- {-1} when a record or counter
-- is not one this script reads (another version, damaged, or a time of
-- 2^53 ms or more, which a double cannot hold exactly): the caller then
-- issues the general way. Nothing is written unless it returns {0}, but for the prefix record:
-- a block it starts, and on a refusal by the subject the record as
-- `prefix_refund` leaves it (its window rolled; deleted when empty).

-- `num`, `big`, `bytes`, `hex32` and `prefix_helpers` come from
-- `fields.lua`, sent before this script.

local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local max_sends = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local live = ARGV[6]
local new_expires = tonumber(ARGV[9])

local start, sends, attempts = now, 0, 0
local old_id, old_expires, stale_id, stale_expires
local r = redis.call('GET', KEYS[1])
if r then
  if #r < 19 or string.byte(r, 1) ~= 4 then return {-1} end
  local state = string.byte(r, 18)
  local at = 19
  if state >= 1 and state <= 3 then
    if #r < 149 then return {-1} end
    if big(r, 115) then return {-1} end
    old_id = string.sub(r, 19, 50)
    old_expires = num(r, 115, 8)
    at = 149 + num(r, 147, 2)
    if #r < at then return {-1} end
    local flag = string.byte(r, at)
    if flag == 1 then at = at + 33 elseif flag == 0 then at = at + 1 else return {-1} end
  elseif state ~= 0 then
    return {-1}
  end
  if #r < at then return {-1} end
  local stale = string.byte(r, at)
  if stale == 1 and #r == at + 40 then
    if big(r, at + 33) then return {-1} end
    stale_id = string.sub(r, at + 1, at + 32)
    stale_expires = num(r, at + 33, 8)
  elseif not (stale == 0 and #r == at) then
    return {-1}
  end
  if big(r, 2) then return {-1} end
  start, sends, attempts = num(r, 2, 8), num(r, 10, 4), num(r, 14, 4)
  if now >= start + window then
    start, sends, attempts = now, 0, 0
  end
end

-- The record holds this challenge and its index entry names this subject:
-- this same request, sent again after its reply was lost. It was made.
if old_id and old_id == string.sub(live, 2, 33) and redis.call('GET', KEYS[2]) == ARGV[7] then
  return {0}
end

-- The counters, decided before anything is written: the first with no use
-- left refuses the issue.
local has_prefix = ARGV[11] == '1'
local last = #KEYS
if has_prefix then last = #KEYS - 1 end
-- A key named twice (the same limit applied twice) is spent twice, as
-- one reserve after the other would.
local counters, spent = {}, {}
for i = 3, last do
  local budget = tonumber(ARGV[2 * i + 11])
  local span = tonumber(ARGV[2 * i + 12])
  local from, uses = now, 0
  if spent[KEYS[i]] then
    from, uses = spent[KEYS[i]][1], spent[KEYS[i]][2]
  else
    local c = redis.call('GET', KEYS[i])
    if c then
      if #c ~= 13 or string.byte(c, 1) ~= 1 or big(c, 2) then return {-1} end
      from, uses = num(c, 2, 8), num(c, 10, 4)
      if now >= from + span then from, uses = now, 0 end
    end
  end
  if from + span >= 2^53 or from + span - now <= 0 then return {-1} end
  if uses >= budget then return {4, i - 3, from + span - now} end
  spent[KEYS[i]] = {from, uses + 1}
  counters[i] = string.char(1) .. bytes(from, 8) .. bytes(uses + 1, 4)
  counters[-i] = from + span - now
end

-- The prefix, after the counters: blocked, or blocked by this send (too
-- many sends in its window, or too few approved in the previous one).
local prefix, prefix_window, prefix_read, prefix_bytes, prefix_ttl
if has_prefix then
  prefix_read, prefix_bytes, prefix_ttl = prefix_helpers()
  prefix_window = tonumber(ARGV[13])
  prefix = prefix_read(redis.call('GET', KEYS[#KEYS]), now, prefix_window)
  if not prefix then return {-1} end
  if prefix.till > now then return {5, prefix.till - now} end
  local too_few = false
  if ARGV[15] ~= '' then
    too_few = prefix.psends >= tonumber(ARGV[15])
      and prefix.pappr * 100 < prefix.psends * tonumber(ARGV[16])
  end
  if prefix.sends >= tonumber(ARGV[12]) or too_few then
    prefix.till = now + tonumber(ARGV[14])
    redis.call('SET', KEYS[#KEYS], prefix_bytes(prefix), 'PX', prefix_ttl(prefix, prefix_window, now))
    return {5, prefix.till - now}
  end
end

-- A refusal by the subject gives the prefix's send back as
-- `prefix_refund` does: the record stays with its window rolled, or goes
-- when nothing in it is worth keeping.
local function refused(reply)
  if prefix then
    if prefix.sends == 0 and prefix.appr == 0 and prefix.psends == 0 and prefix.till <= now then
      redis.call('DEL', KEYS[#KEYS])
    else
      redis.call('SET', KEYS[#KEYS], prefix_bytes(prefix), 'PX', prefix_ttl(prefix, prefix_window, now))
    end
  end
  return reply
end

local retry = start + window - now
if attempts >= max then return refused({1, retry}) end
if sends >= max_sends then return refused({2, retry}) end
sends = sends + 1

local index_ttl = new_expires + ttl - now
local expiry = math.max(start + window, new_expires + ttl)
if index_ttl <= 0 or expiry - now <= 0 or expiry >= 2^53 then return {-1} end
-- The entry of the challenge replaced two issues ago, if it is still due
-- to be deleted. On a cluster it is in this slot only if it starts with
-- the subject's slot byte; otherwise the general path deletes it.
local stale_key
if stale_id and stale_expires > now then
  local hex = hex32(stale_id, 1)
  if ARGV[10] == '1' then
    if string.byte(stale_id, 1) ~= string.byte(ARGV[7], 1) then return {-1} end
    stale_key = ARGV[8] .. '{' .. string.sub(hex, 1, 2) .. '}c:' .. hex
  else
    stale_key = ARGV[8] .. 'c:' .. hex
  end
end
-- Read now, before any write: whether the stale entry still names this
-- subject (then it goes).
local stale_names = stale_key and redis.call('GET', stale_key) == ARGV[7]
-- The index entry goes in before the record names it.
if not redis.call('SET', KEYS[2], ARGV[7], 'PX', string.format('%.0f', index_ttl), 'NX') then
  return refused({3})
end
for i = 3, last do
  redis.call('SET', KEYS[i], counters[i], 'PX', string.format('%.0f', counters[-i]))
end
if prefix then
  prefix.sends = prefix.sends + 1
  redis.call('SET', KEYS[#KEYS], prefix_bytes(prefix), 'PX', prefix_ttl(prefix, prefix_window, now))
end
if stale_names then redis.call('DEL', stale_key) end
-- The challenge replaced becomes the stale one.
local stale = string.char(0)
if old_id then stale = string.char(1) .. old_id .. bytes(old_expires + ttl, 8) end
local next = string.char(4) .. bytes(start, 8) .. bytes(sends, 4) .. bytes(attempts, 4)
  .. string.sub(live, 1, 125) .. bytes(sends, 4) .. string.sub(live, 130) .. stale
redis.call('SET', KEYS[1], next, 'PX', string.format('%.0f', expiry - now))
return {0}
