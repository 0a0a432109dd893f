-- SPDX-License-Identifier: MIT
-- spec/bench/lua_ops.lua -- sequential Lua module throughput.
--
--   lua5.4 spec/bench/lua_ops.lua URL size        -> BSON size of the token
--   lua5.4 spec/bench/lua_ops.lua URL set N       -> save_resume_token ops/s
--   lua5.4 spec/bench/lua_ops.lua URL get N       -> get_resume_token ops/s
--
-- With BENCH_TLS_CA set (a CA file), the store connects with
-- tls = { ca_file = BENCH_TLS_CA } (for rediss:// URLs). BENCH_SPIN_WAIT
-- sets the spin_wait option (default: the store's default).
--
-- One store with pool_size 1, one collection, one small token: the same
-- shape of work as `redis-benchmark -c 1 -t set,get -d <size>`. Wall time
-- from luasystem's gettime (os.clock would count CPU time only).
package.path = "spec/bench/?.lua;" .. package.path
local rs = require "rigatoni_store"
local system = require "system"
local tok = require "token"

local url, mode, n = arg[1], arg[2], tonumber(arg[3] or "50000")
assert(url and mode, "usage: lua_ops.lua URL size|set|get [N]")

local token = tok.token()

if mode == "size" then
  print(#rs.bson.encode(token))
  return
end

local ca = os.getenv("BENCH_TLS_CA")
local spin = os.getenv("BENCH_SPIN_WAIT")
local store <close> = rs.new{ url = url, pool_size = 1,
                              spin_wait = (spin and spin ~= "") and spin or nil,
                              tls = (ca and ca ~= "") and { ca_file = ca } or nil }
local coll = "bench_lua_ops"
local WARMUP = 500

-- Make sure the key exists for `get`, and warm the connection either way.
for _ = 1, WARMUP do store:save_resume_token(coll, token) end

local t0, t1
if mode == "set" then
  local save = store.save_resume_token
  t0 = system.gettime()
  for _ = 1, n do save(store, coll, token) end
  t1 = system.gettime()
elseif mode == "get" then
  local get = store.get_resume_token
  for _ = 1, WARMUP do get(store, coll) end
  local last
  t0 = system.gettime()
  for _ = 1, n do last = get(store, coll) end
  t1 = system.gettime()
  assert(last and last._data == token._data, "get_resume_token returned a wrong token")
else
  error("unknown mode " .. tostring(mode))
end

io.write(string.format("%.1f\n", n / (t1 - t0)))
