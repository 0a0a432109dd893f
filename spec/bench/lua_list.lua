-- SPDX-License-Identifier: MIT
-- spec/bench/lua_list.lua -- streaming listing through the Lua iterator.
--
--   lua5.4 spec/bench/lua_list.lua URL list EXPECTED [BATCH]
--       iterates store:resume_tokens{batch = BATCH}; prints
--       "<count> <seconds> <VmHWM KiB>"; fails unless count >= EXPECTED
--   lua5.4 spec/bench/lua_list.lua URL idle
--       opens the store and PINGs only: the fixed memory of a process
--       that loads the module (the RSS baseline); prints the same line
package.path = "spec/bench/?.lua;" .. package.path
local rs = require "rigatoni_store"
local system = require "system"

local url, mode = arg[1], arg[2]
local expected = tonumber(arg[3] or "0")
local batch = tonumber(arg[4] or "1000")
assert(url and mode, "usage: lua_list.lua URL list|idle [EXPECTED] [BATCH]")

local function vmhwm()
  local f = io.open("/proc/self/status", "r")
  if not f then return -1 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or -1
end

local store <close> = rs.new{ url = url, pool_size = 1 }
local count, t0, t1 = 0, 0, 0
if mode == "list" then
  local bad = 0
  t0 = system.gettime()
  for coll, token, _, err in store:resume_tokens{ batch = batch } do
    if err or type(token) ~= "table" or not token._data then
      bad = bad + 1
    end
    count = count + 1
    local _ = coll
  end
  t1 = system.gettime()
  assert(bad == 0, bad .. " tokens failed to decode")
  assert(count >= expected, ("listed %d tokens, expected %d"):format(count, expected))
elseif mode == "idle" then
  store:ping()
else
  error("unknown mode " .. tostring(mode))
end
io.write(string.format("%d %.3f %d\n", count, t1 - t0, vmhwm()))
