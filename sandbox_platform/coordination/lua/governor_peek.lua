-- governor_peek.lua: the tokens in every limit of one resource now; takes none (writes only
-- the config copy a state hash of 0.1 lacks, see _governor.lua).
--
-- KEYS[1]  config hash  {prefix}:gov:{resource}:cfg
-- KEYS[2]  state hash   {prefix}:gov:{resource}:state
-- ARGV[1]  (none: a read takes no argument)
--
-- Returns {limit name, tokens ("%.17g"), limit name, tokens, ...} (empty: no limit).
-- Time comes from Redis TIME only.

-- @include _common.lua
-- @include _governor.lua

local plan = gov_plan(KEYS[1], KEYS[2], 0, sp_now_us())
local out = {}
for _, e in ipairs(plan.entries) do
  out[#out + 1] = e[1]
  out[#out + 1] = string.format('%.17g', e[2] / e[4])
end
return out
