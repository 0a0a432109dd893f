-- SPDX-License-Identifier: MIT
-- spec/bench/failover.lua -- time from a killed master to the first save
-- that succeeds through the store, with Sentinel.
--
--   lua5.4 spec/bench/failover.lua ROUNDS
--
-- Topology (spec/support/servers.lua, loopback, random ports): a master, one
-- replica and three redis-sentinel processes (quorum 2,
-- down-after-milliseconds 1000, failover-timeout 3000). The store is opened
-- on the Sentinel URL with max_retries = 100, retry_max_delay = 0.1.
--
-- Each round: wait until the topology is settled (all sentinels agree on the
-- master, know each other, and see the replica up and linked; the master
-- has it online; at least 2 x failover-timeout since the last kill, after
-- which Sentinel allows a new failover), save once (pooled connection to the
-- master), SIGKILL the master, then call save_resume_token until it returns
-- (a call that raises after its retries is counted and repeated, up to
-- 30 s). The killed node is then restarted as a replica of the new master.
-- Sentinel log timestamps give the phases: +sdown (first sentinel),
-- +odown, +promoted-slave, +switch-master, all relative to the kill.
--
-- Output, one line per round, then a summary line:
--   round R total S sdown S odown S promoted S switch S client S raised N
--         master P->Q settle S
-- (client = first save after +promoted-slave, when the leader sentinel
-- starts to hand out the new address; settle = wait before the round)
--   down_after 1.000
-- Servers are stopped on exit; pid files live under $RS_TEST_ROOT so that
-- the calling shell can kill whatever an interrupted run left.
package.path = "spec/?.lua;spec/bench/?.lua;" .. package.path
local rs = require "rigatoni_store"
local servers = require "support.servers"
local system = require "system"
local tok = require "token"

local ROUNDS = tonumber(arg[1] or "5")
local DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS = 1000, 3000
local SAVE_DEADLINE = 30         -- s after the kill before a round is failed
local SETTLE_TIMEOUT = 60        -- s for the topology to settle

local now, sleep = system.gettime, system.sleep

local nodes, sentinels = {}, {}

local function wait_until(what, timeout, cond)
  local deadline = now() + timeout
  while true do
    local v = cond()
    if v then return v end
    if now() > deadline then error("timed out waiting for " .. what, 2) end
    sleep(0.1)
  end
end

local function node_on(port)
  for _, n in ipairs(nodes) do if n.port == port then return n end end
end

-- The master port every sentinel reports, or nil when they disagree.
local function agreed_master()
  local port
  for _, s in ipairs(sentinels) do
    local p = tonumber(s:cli("SENTINEL", "get-master-addr-by-name", "mymaster"):match("(%d+)%s*$"))
    if not p or (port and p ~= port) then return nil end
    port = p
  end
  return port
end

-- Fields of the flat key/value lists of SENTINEL master / SENTINEL replicas.
local function fields(text)
  local t, list, key = {}, {}, nil
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if key == nil then
      key = line
    else
      if key == "name" and t.name then list[#list + 1] = t; t = {} end
      t[key] = line
      key = nil
    end
  end
  if next(t) then list[#list + 1] = t end
  return list
end

local function settled()
  local mport = agreed_master()
  if not mport then return false end
  local master = node_on(mport)
  if not master then return false end
  local info = master:cli("INFO", "replication")
  if not (info:find("role:master", 1, true) and info:find("connected_slaves:1", 1, true)
          and info:find("state=online", 1, true)) then
    return false
  end
  for _, s in ipairs(sentinels) do
    local m = fields(s:cli("SENTINEL", "master", "mymaster"))[1] or {}
    if m.flags ~= "master" or m["num-other-sentinels"] ~= "2" then return false end
    local up = 0
    for _, r in ipairs(fields(s:cli("SENTINEL", "replicas", "mymaster"))) do
      if r.flags == "slave" and r["master-link-status"] == "ok"
         and tonumber(r["master-port"]) == mport then
        up = up + 1
      end
    end
    if up < 1 then return false end
  end
  return mport
end

-- Sentinel log times are local wall-clock times with milliseconds:
-- "<pid>:X 26 Nov 2026 05:55:01.123 # +sdown master mymaster 127.0.0.1 P"
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                 Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

local function log_time(line)
  local d, mon, y, h, mi, s, ms = line:match("^%d+:%a (%d+) (%a+) (%d+) (%d+):(%d+):(%d+)%.(%d+)")
  if not d or not MONTHS[mon] then return nil end
  return os.time{ year = tonumber(y), month = MONTHS[mon], day = tonumber(d), hour = tonumber(h),
                  min = tonumber(mi), sec = tonumber(s), isdst = false } + tonumber(ms) / 1000
end

-- Earliest time (absolute), over all sentinels and since t0, of a log
-- line containing both `event` and `about` (plain text).
local function first_event(event, about, t0)
  local best
  for _, s in ipairs(sentinels) do
    for line in s:log():gmatch("[^\n]+") do
      if line:find(event, 1, true) and line:find(about, 1, true) then
        local t = log_time(line)
        -- the log has ms precision: allow 1 ms before the kill
        if t and t >= t0 - 0.001 and (not best or t < best) then best = t end
      end
    end
  end
  return best
end

local function stop_all()
  for _, s in ipairs(sentinels) do s:stop() end
  for _, n in ipairs(nodes) do n:stop() end
end

local function main()
  nodes[1] = servers.redis{}
  nodes[2] = servers.redis{ args = { "--replicaof", "127.0.0.1", tostring(nodes[1].port) } }
  local hosts = {}
  for i = 1, 3 do
    sentinels[i] = servers.sentinel{ master = nodes[1], quorum = 2, down_after_ms = DOWN_AFTER_MS,
                                     failover_timeout_ms = FAILOVER_TIMEOUT_MS }
    hosts[i] = "127.0.0.1:" .. sentinels[i].port
  end
  local url = "redis://" .. table.concat(hosts, ",")

  -- The wall clock of os.time and of luasystem must agree for log times.
  local skew = os.time() - now()
  assert(math.abs(skew) < 1.5, "os.time and system.gettime disagree")

  local last_kill = -math.huge
  for r = 1, ROUNDS do
    local t_wait = now()
    local mport = wait_until("the topology to settle", SETTLE_TIMEOUT, settled)
    local gap = 2 * FAILOVER_TIMEOUT_MS / 1000 - (now() - last_kill)
    if gap > 0 then sleep(gap + 0.2) end
    mport = wait_until("the topology to settle", SETTLE_TIMEOUT, settled)
    local settle_s = now() - t_wait

    local store <close> = rs.new{ url = url, max_retries = 100, retry_max_delay = 0.1 }
    local token = tok.token(1700000000 + r, 1)
    store:save_resume_token("failover", token)        -- connection to the master in the pool
    local victim = node_on(mport)

    token = tok.token(1700000000 + r, 2)
    local t0 = now()
    victim:kill()                                       -- SIGKILL, waits until gone
    last_kill = t0
    local raised = 0
    while true do
      local ok, err = pcall(store.save_resume_token, store, "failover", token)
      if ok then break end
      raised = raised + 1
      if now() - t0 > SAVE_DEADLINE then
        error(("round %d: no save succeeded within %d s after the kill (%d raised, last: %s)")
              :format(r, SAVE_DEADLINE, raised, tostring(err)))
      end
    end
    local t1 = now()

    -- The token is on the new master, which is not the victim.
    local newport = wait_until("sentinels to agree on the new master", 10, agreed_master)
    assert(newport ~= mport, "the master did not change")
    local got = node_on(newport):cli_raw("GET", "rigatoni:resume_token:failover")
    assert(got == rs.bson.encode(token), "the saved token is not on the new master")

    local function rel(t) return t and string.format("%.3f", t - t0) or "nan" end
    local old = "mymaster 127.0.0.1 " .. mport
    local sdown = first_event("# +sdown master ", old, t0)
    local odown = first_event("# +odown master ", old, t0)
    local promoted = first_event(" +promoted-slave ", "@ " .. old, t0)
    local switch = first_event(" +switch-master ", old .. " ", t0)
    io.write(("round %d total %.3f sdown %s odown %s promoted %s switch %s client %s raised %d master %d->%d settle %.1f\n")
             :format(r, t1 - t0, rel(sdown), rel(odown), rel(promoted), rel(switch),
                     promoted and string.format("%.3f", t1 - promoted) or "nan", raised, mport, newport,
                     settle_s))
    io.flush()

    -- The killed node comes back as a replica of the new master.
    victim.args = { "--replicaof", "127.0.0.1", tostring(newport) }
    victim:restart()
  end
  io.write(("down_after %.3f\n"):format(DOWN_AFTER_MS / 1000))
end

local ok, err = xpcall(main, debug.traceback)
stop_all()
servers.stop_all()
if not ok then
  io.stderr:write("failover: ", tostring(err), "\n")
  os.exit(1)
end
