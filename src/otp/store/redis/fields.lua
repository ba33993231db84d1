-- Big-endian fields of a record, for `verify.lua` and `issue.lua`: the
-- stores send this text before each of them, as one script. Numbers are
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
