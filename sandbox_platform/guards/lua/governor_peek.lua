-- governor_peek.lua: the tokens in every limit of one resource now; writes nothing.
--
-- KEYS[1]  config hash  {prefix}:gov:{resource}:cfg
-- KEYS[2]  state hash   {prefix}:gov:{resource}:state
-- ARGV[1]  (none: a read takes no argument)
--
-- Returns {limit name, tokens ("%.17g"), limit name, tokens, ...} (empty: no limit).
-- Time comes from Redis TIME only.

-- @include _common.lua
-- @include _governor.lua

local now = sp_now_us()
local flat = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #flat, 2 do
  local a, b, cap = gov_config(flat[i + 1])
  local units = gov_refill(a, b, cap, redis.call('HGET', KEYS[2], flat[i]), now)
  out[#out + 1] = flat[i]
  out[#out + 1] = string.format('%.17g', units / b)
end
return out
