-- SPDX-License-Identifier: MIT
-- spec/bench/luaredis_ops.lua -- the lua-redis client (Debian `lua-redis`,
-- redis-lua 2.0.5 by nrk, over LuaSocket) doing the work of
-- spec/bench/lua_ops.lua: a baseline for its sequential rows.
--
--   lua5.4 spec/bench/luaredis_ops.lua URL set N  -> SET ops/s
--   lua5.4 spec/bench/luaredis_ops.lua URL get N  -> GET ops/s
--   lua5.4 spec/bench/luaredis_ops.lua - check    -> exit 0 when lua-redis loads
--
-- The same key (the store's key of collection bench_lua_ops), the same
-- value bytes (the token's BSON, encoded once here: the client sends what
-- it is given), the same warm-up and op count. URL: redis://HOST:PORT.
--
-- Debian installs redis.lua for Lua 5.1-5.3 only (/usr/share/lua/5.1, the
-- 5.2/5.3 paths are links to it). It is plain Lua that runs unchanged on
-- 5.4 (it takes `_G.unpack or table.unpack`), so that directory goes at the
-- END of the search path: only `redis` is found there, LuaSocket and the
-- rest still come from the 5.4 paths.
package.path = "spec/bench/?.lua;" .. package.path .. ";/usr/share/lua/5.1/?.lua"
local found, redis = pcall(require, "redis")
if arg[2] == "check" then os.exit(found and 0 or 1) end
assert(found, redis)
local rs = require "rigatoni_store"
local system = require "system"
local tok = require "token"

local url, mode, n = arg[1], arg[2], tonumber(arg[3] or "50000")
assert(url and (mode == "set" or mode == "get") and n, "usage: luaredis_ops.lua URL set|get [N]")

local value = rs.bson.encode(tok.token())
local key = "rigatoni:resume_token:bench_lua_ops"
local client = redis.connect(url)
local WARMUP = 500

for _ = 1, WARMUP do client:set(key, value) end

local t0, t1
if mode == "set" then
  t0 = system.gettime()
  for _ = 1, n do client:set(key, value) end
  t1 = system.gettime()
else
  for _ = 1, WARMUP do client:get(key) end
  local last
  t0 = system.gettime()
  for _ = 1, n do last = client:get(key) end
  t1 = system.gettime()
  assert(last == value, "lua-redis GET returned other bytes than were SET")
end
client:quit()

io.write(string.format("%.1f\n", n / (t1 - t0)))
