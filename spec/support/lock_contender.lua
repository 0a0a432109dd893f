-- SPDX-License-Identifier: MIT
-- lock_contender.lua -- one competitor of the lock contention spec.
-- usage: lua5.4 lock_contender.lua URL ID NKEYS SECONDS OUTFILE
-- Repeatedly takes a random key among NKEYS, holds it a moment, releases
-- it, and writes one line per hold: key, owner, start, end (wall clock,
-- taken after the acquire returned and before the release was sent, so
-- the recorded span lies inside the real hold).
local rs = require "rigatoni_store"
local system = require "system"

local url, id, nkeys, seconds, outfile = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5]
local store <close> = rs.new{ url = url, pool_size = 1 }
local owner = rs.owner_id() .. "-" .. id
local out = assert(io.open(outfile, "w"))
math.randomseed(os.time() + tonumber(id))

local deadline = system.gettime() + seconds
local holds = 0
while system.gettime() < deadline do
  local key = "rigatoni:lock:contention:c" .. math.random(nkeys)
  if store:try_acquire_lock(key, owner, 10) then
    local t0 = system.gettime()
    system.sleep(math.random() * 0.004)
    local t1 = system.gettime()
    out:write(("%s %s %.6f %.6f\n"):format(key, owner, t0, t1))
    holds = holds + 1
    assert(store:release_lock(key, owner), "release refused for " .. key)
  end
end
out:close()
io.write(holds, "\n")
