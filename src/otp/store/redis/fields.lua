-- Big-endian fields of a record, for `verify.lua`, `issue.lua` and
-- `count.lua`: the stores send this text before each of them, as one
-- script. Numbers are Lua doubles, exact below 2^53.
--
-- Fields are read and written with the `struct` library every Redis (and
-- Valkey) script can use, a few times faster than byte by byte in Lua,
-- and 4 bytes at a time: an 8-byte field is two, since `struct` holds an
-- integer in a C `long`, 32 bits on some platforms.

-- The `n`-byte (2, 4 or 8) big-endian integer at `at` in `s`.
local function num(s, at, n)
  if n == 8 then
    local hi, lo = struct.unpack('>I4I4', s, at)
    return hi * 4294967296 + lo
  elseif n == 4 then
    return (struct.unpack('>I4', s, at))
  end
  return (struct.unpack('>I2', s, at))
end

-- Whether the 8-byte field at `at` is 2^53 or more: not exact in a double.
local function big(s, at)
  return string.byte(s, at) ~= 0 or string.byte(s, at + 1) >= 32
end

-- `v` (a whole number, 0 <= v < 2^53) as `n` (4 or 8) big-endian bytes;
-- for 4, its low 32 bits.
local function bytes(v, n)
  local lo = v % 4294967296
  if n == 8 then
    return struct.pack('>I4I4', (v - lo) / 4294967296, lo)
  end
  return struct.pack('>I4', lo)
end

-- The 32 bytes at `at` in `s` as 64 lowercase hex characters. `%x`
-- takes a C `long`: where it holds 2^32 - 1 (64-bit builds), 4 bytes at
-- a time, eight conversions after the one that checks; elsewhere (a
-- 32-bit `long`, which a 4-byte piece of 2^31 or more would not fit) 2
-- bytes at a time, sixteen. Each conversion costs Redis about 0.1 us.
local function hex32(s, at)
  if string.format('%x', 4294967295) == 'ffffffff' then
    return string.format('%08x%08x%08x%08x%08x%08x%08x%08x',
      struct.unpack('>I4I4I4I4I4I4I4I4', s, at))
  end
  return string.format('%04x%04x%04x%04x%04x%04x%04x%04x%04x%04x%04x%04x%04x%04x%04x%04x',
    struct.unpack('>I2I2I2I2I2I2I2I2I2I2I2I2I2I2I2I2', s, at))
end

-- A fraud guard's prefix record (`PrefixRecord` in `src/otp/limits.rs`):
-- version 1, window start (8 bytes), sends, approvals, the previous
-- window's sends and approvals (4 each), blocked until (8); 33 bytes.
--
-- Its three helpers are made by `prefix_helpers()`, only by the runs that
-- use them: made on every run of every script, they cost each run about
-- half a microsecond of Redis's time.
--
--   read(p, now, w): the fields as of `now`, the window rolled as
--     `PrefixRecord::current` rolls it (`w`: the guard's window, ms); a
--     fresh record for none; nil for a record this does not read (damaged,
--     or a time of 2^53 ms or more).
--   to_bytes(r): a prefix record's bytes.
--   ttl(r, w, now): its time to live from `now`: kept through the next
--     window, which judges this one, or to the end of its block.
local function prefix_helpers()
  local function read(p, now, w)
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

  local function to_bytes(r)
    return string.char(1) .. bytes(r.start, 8) .. bytes(r.sends, 4) .. bytes(r.appr, 4)
      .. bytes(r.psends, 4) .. bytes(r.pappr, 4) .. bytes(r.till, 8)
  end

  local function ttl(r, w, now)
    return string.format('%.0f', math.max(r.start + 2 * w, r.till) - now)
  end

  return read, to_bytes, ttl
end
