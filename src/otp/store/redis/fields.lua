-- Big-endian fields of a record, for `verify.lua`, `issue.lua` and
-- `count.lua`: the stores send this text before each of them, as one
-- script. Numbers are
-- Lua doubles, exact below 2^53.

-- The `n`-byte big-endian integer at `at` in `s`.
local function num(s, at, n)
  local v = 0
  for i = at, at + n - 1 do v = v * 256 + string.byte(s, i) end
  return v
end

-- Whether the 8-byte field at `at` is 2^53 or more: not exact in a double.
local function big(s, at)
  return string.byte(s, at) ~= 0 or string.byte(s, at + 1) >= 32
end

local function bytes(v, n)
  local out = {}
  for i = n, 1, -1 do
    out[i] = v % 256
    v = (v - out[i]) / 256
  end
  return string.char(unpack(out, 1, n))
end

-- A fraud guard's prefix record (`PrefixRecord` in `src/otp/limits.rs`):
-- version 1, window start (8 bytes), sends, approvals, the previous
-- window's sends and approvals (4 each), blocked until (8); 33 bytes.
-- Its fields as of `now`, the window rolled as `PrefixRecord::current`
-- rolls it (`w`: the guard's window, ms); a fresh record for none; nil
-- for a record this does not read (damaged, or a time of 2^53 ms or more).
local function prefix_read(p, now, w)
  local r = {start = now, sends = 0, appr = 0, psends = 0, pappr = 0, till = 0}
  if p then
    if #p ~= 33 or string.byte(p, 1) ~= 1 or big(p, 2) or big(p, 26) then return nil end
    r.start, r.sends, r.appr = num(p, 2, 8), num(p, 10, 4), num(p, 14, 4)
    r.psends, r.pappr, r.till = num(p, 18, 4), num(p, 22, 4), num(p, 26, 8)
  end
  local stop = r.start + w
  if stop + w >= 2^53 then return nil end
  if now >= stop then
    -- The window that ended becomes the previous one; after a gap of a
    -- whole window there is none.
    if now < stop + w then
      r.psends, r.pappr = r.sends, r.appr
    else
      r.psends, r.pappr = 0, 0
    end
    r.start, r.sends, r.appr = now, 0, 0
  end
  return r
end

-- A prefix record's bytes, and its time to live from `now`: kept through
-- the next window, which judges this one, or to the end of its block.
local function prefix_bytes(r)
  return string.char(1) .. bytes(r.start, 8) .. bytes(r.sends, 4) .. bytes(r.appr, 4)
    .. bytes(r.psends, 4) .. bytes(r.pappr, 4) .. bytes(r.till, 8)
end

local function prefix_ttl(r, w, now)
  return string.format('%.0f', math.max(r.start + 2 * w, r.till) - now)
end
