-- SPDX-License-Identifier: MIT
-- spec/bench/lua_locks.lua -- Rigatoni locks through the Lua module.
--
--   lua5.4 spec/bench/lua_locks.lua URL N
--   -> "pairs <per s>\nplain <ops/s>\nfenced <ops/s>\n"
--
-- One store with pool_size 1, sequential calls:
--   pairs   try_acquire_lock(key, owner, 30) + release_lock(key, owner),
--           each pair counted once (two round trips)
--   plain   save_resume_token(c, token)
--   fenced  save_resume_token(c, token, {lock = key, owner = owner}) with
--           the lock held (an owner-checked script on the server)
-- Plain and fenced run in four alternating chunks (plain, fenced, fenced,
-- plain) so that a drift of the machine during the run hits both alike.
-- Every call is checked: a failed acquire or release raises.
package.path = "spec/bench/?.lua;" .. package.path
local rs = require "rigatoni_store"
local system = require "system"
local tok = require "token"

local url, n = arg[1], tonumber(arg[2] or "20000")
assert(url and n and n >= 4, "usage: lua_locks.lua URL N")

local store <close> = rs.new{ url = url, pool_size = 1 }
local token = tok.token()
local coll = "bench_lua_locks"
local key = store:lock_key("bench", coll)
local owner = rs.owner_id()
local WARMUP = 500

local acquire, release = store.try_acquire_lock, store.release_lock
local save = store.save_resume_token

-- ---- pairs ----------------------------------------------------------------
for _ = 1, WARMUP do
  assert(acquire(store, key, owner, 30) and release(store, key, owner))
end
local t0 = system.gettime()
for _ = 1, n do
  if not acquire(store, key, owner, 30) then error("lock taken by someone else") end
  if not release(store, key, owner) then error("lock lost before release") end
end
local pairs_rate = n / (system.gettime() - t0)

-- ---- plain vs fenced saves --------------------------------------------------
assert(acquire(store, key, owner, 600), "could not take the lock for fenced saves")
local fence = { lock = key, owner = owner }
for _ = 1, WARMUP do
  save(store, coll, token)
  save(store, coll, token, fence)
end

local function plain(count)
  local s = system.gettime()
  for _ = 1, count do save(store, coll, token) end
  return system.gettime() - s
end

local function fenced(count)
  local s = system.gettime()
  for _ = 1, count do save(store, coll, token, fence) end
  return system.gettime() - s
end

local chunk = n // 4
local tp = plain(chunk)
local tf = fenced(chunk)
tf = tf + fenced(chunk)
tp = tp + plain(chunk)
assert(release(store, key, owner), "lock lost during the fenced saves")

io.write(string.format("pairs %.1f\nplain %.1f\nfenced %.1f\n",
                       pairs_rate, 2 * chunk / tp, 2 * chunk / tf))
