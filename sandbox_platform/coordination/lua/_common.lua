-- _common.lua: helpers shared by every script (included with "-- @include _common.lua").
--
-- Lua numbers are doubles: every integer we keep is below 2^53 and is written back with
-- sp_fmt ('%.0f'), never tostring() (which keeps only 14 significant digits).

local function sp_fmt(x)
  return string.format('%.0f', x)
end

-- Redis server time in microseconds (an integer below 2^53 until the year 2255).
local function sp_now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The text of an error caught by pcall: a failed redis.call gives a table {err = ...}.
local function sp_error_text(e)
  if type(e) == 'table' and e['err'] then
    return tostring(e['err'])
  end
  return tostring(e)
end
