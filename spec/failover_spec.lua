-- SPDX-License-Identifier: MIT
-- What the store and the tools promise across a Sentinel failover (1
-- master, 1 replica, 3 sentinels; SENTINEL FAILOVER). The demoted master
-- answers ROLE as master for seconds after the replica took over, and what
-- it takes meanwhile is dropped when it resyncs: only what the sentinels
-- say counts. Each test forces one failover and waits for the set-up to
-- settle before the next. Asserts only what Redis promises: a write that
-- WAIT saw on a replica survives the failover.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"
local system = require "system"

describe("Sentinel failover", function()
  local nodes, sentinels, url, hosts = {}, {}, nil, nil

  local function addr_of(s)
    return tonumber(s:cli("SENTINEL", "get-master-addr-by-name", "mymaster"):match("(%d+)%s*$"))
  end
  local function node_on(port)
    for _, n in ipairs(nodes) do if n.port == port then return n end end
  end
  local wait_until = helpers.wait_until
  -- Every sentinel names `port` (or one port) as the master.
  local function agreed(port)
    for _, s in ipairs(sentinels) do
      local p = addr_of(s)
      if not p or (port and p ~= port) then return false end
      port = p
    end
    return port
  end
  -- Settled: the sentinels agree and see everyone; the master's replica is
  -- linked and has every byte the master had when asked (asked first: the
  -- sentinels' hellos keep adding bytes).
  local function settled()
    local port = agreed()
    if not port then return false end
    for _, s in ipairs(sentinels) do
      local info = s:cli("SENTINEL", "master", "mymaster")
      if not info:find("num%-slaves%s+1") or not info:find("num%-other%-sentinels%s+2")
         or not info:find("flags%s+master%s") then
        return false
      end
    end
    local master, replica = node_on(port), nil
    for _, n in ipairs(nodes) do if n ~= master then replica = n end end
    local m, r = master:cli("INFO", "replication"), replica:cli("INFO", "replication")
    local offset = m:match("master_repl_offset:(%d+)")
    return m:find("role:master", 1, true) and m:find("state=online", 1, true)
      and r:find("master_port:" .. port, 1, true) and r:find("master_link_status:up", 1, true)
      and offset and tonumber(r:match("slave_repl_offset:(%d+)") or -1) >= tonumber(offset)
  end
  -- Waits until the set-up settled. Sentinels turn the demoted master
  -- into a replica 4 hello periods (8 s) after it last said it was master,
  -- and learn of each other again by hellos: while the spec waits, and
  -- only then, their hello and INFO periods are cut (SENTINEL DEBUG), then
  -- put back, so every test runs against Sentinel's own timing.
  local function sentinel_periods(publish, info)
    for _, s in ipairs(sentinels) do
      s:cli("SENTINEL", "DEBUG", "publish-period", tostring(publish), "info-period", tostring(info))
    end
  end
  local function settle(timeout)
    sentinel_periods(200, 1000)
    local ok, err = pcall(wait_until, "the set-up to settle", timeout, settled)
    sentinel_periods(2000, 10000)
    assert(ok, err)
  end
  -- SENTINEL FAILOVER through sentinel `via` (default the first); its
  -- answer is kept for the diagnosis of a failover that never comes.
  local asked = {}
  local function failover(via)
    local old = agreed()
    assert.is_truthy(old)
    asked = { via = via or 1, at = system.gettime() }
    asked.answer = sentinels[asked.via]:cli("SENTINEL", "FAILOVER", "mymaster")
    return old
  end
  -- Until every sentinel names another master than `old` (or `cond()`,
  -- named `what`); returns the node they name. A sentinel may
  -- refuse or drop the failover on a loaded machine (TILT after a stalled
  -- timer, an abort at failover-timeout): asked again, once none is under
  -- way and 15 s passed. A timeout says what the sentinels said.
  local function ask_again_if_dropped(old)
    local s = sentinels[asked.via or 1]
    if asked.at and system.gettime() - asked.at > 15 and addr_of(s) == old
       and s:cli("SENTINEL", "master", "mymaster"):find("flags%s+master%s") then
      failover(asked.via)
    end
  end
  local function wait_switched(old, what, cond)
    local ok, err = pcall(wait_until, what or "every sentinel to name the new master", 60, function()
      local p = agreed()
      if (cond and cond()) or (not cond and p and p ~= old) then return true end
      ask_again_if_dropped(old)
      return false
    end)
    if not ok then
      local why = { err, "asked: " .. tostring(asked.answer) }
      for i, s in ipairs(sentinels) do
        why[#why + 1] = ("sentinel %d: %s, %s"):format(i, tostring(addr_of(s)),
                                                       s:cli("INFO", "sentinel"):match("sentinel_tilt:%d") or "?")
        why[#why + 1] = s:log():sub(-1500)
      end
      error(table.concat(why, "\n"), 0)
    end
    return node_on(agreed())
  end

  setup(function()
    -- A demoted master resyncs in full: at once, not after the 5 s a
    -- diskless sync waits by default for more replicas.
    local quick = { "--repl-diskless-sync-delay", "0" }
    nodes[1] = servers.redis{ args = quick }
    nodes[2] = servers.redis{ args = { quick[1], quick[2], "--replicaof", "127.0.0.1",
                                       tostring(nodes[1].port) } }
    local list = {}
    for i = 1, 3 do
      sentinels[i] = servers.sentinel{ master = nodes[1], down_after_ms = 1000,
                                       failover_timeout_ms = 10000 }
      list[i] = "127.0.0.1:" .. sentinels[i].port
    end
    hosts = table.concat(list, ",")
    url = "redis://" .. hosts
  end)

  teardown(function()
    for _, s in ipairs(sentinels) do s:stop() end
    for _, n in ipairs(nodes) do n:stop() end
  end)

  before_each(function()
    settle(60)
  end)

  it("a store opened before the failover and one opened after do not both hold a lock", function()
    local before <close> = rs.new{ url = url, max_retries = 20, retry_max_delay = 0.2 }
    assert.is_true(before:ping())          -- its pool holds a connection to the old master
    local old = agreed()
    -- Through the sentinel `before` listens to (the URL's second): it
    -- announces the switch while the other two may still name the old
    -- master, which answers ROLE as master for seconds. "At once": both
    -- stores act as soon as the first store heard it.
    failover(2)
    wait_switched(old, "the store to hear the switch", function() return before:master_changes() > 0 end)
    local after <close> = rs.new{ url = url, max_retries = 20, retry_max_delay = 0.2 }
    local key = "failover-lock-" .. math.random(1e9)
    local a = before:try_acquire_lock(key, "before", 30)
    local b = after:try_acquire_lock(key, "after", 30)
    assert.is_false(a and b, "both stores acquired " .. key)
    -- Both went to the master the sentinels name.
    local new = wait_switched(old)
    assert.are.equal(a and "before" or "after", new:cli("GET", key))
  end)

  it("a lease whose key the new master lacks knows it is lost once the master changed", function()
    -- The key is removed from the replica behind replication's back, so
    -- the replica that takes over lacks it (as an unreplicated write).
    local store <close> = rs.new{ url = url, max_retries = 20, retry_max_delay = 0.2 }
    local key = "failover-lease-" .. math.random(1e9)
    local lease = assert(store:lease(key, "me", { ttl = 30 }))
    local old = agreed()
    local replica
    for _, n in ipairs(nodes) do if n.port ~= old then replica = n end end
    wait_until("the key on the replica", 10, function() return replica:cli("EXISTS", key) == "1" end)
    replica:cli("CONFIG", "SET", "replica-read-only", "no")
    replica:cli("DEL", key)
    replica:cli("CONFIG", "SET", "replica-read-only", "yes")
    failover()
    wait_switched(old)
    system.sleep(0.3)
    assert.are.equal(0, lease:remaining())
    assert.is_false(lease:held())
    assert.has_error(function() lease:save_resume_token("x", { _data = "8201" }) end)
  end)

  it("migrate --delete-source through a failover of the target deletes only what the new master has", function()
    local source = servers.redis{}
    finally(function()
      source:stop()
      node_on(agreed()):cli("FLUSHALL")
    end)
    -- Enough that the run outlasts the failover (it stops at the switch,
    -- some 1,000-3,000 tokens in), few enough to check one by one.
    local n, resp, values = 8000, {}, {}
    for i = 1, n do
      local name = ("m%05d"):format(i)
      values[name] = rs.bson.encode{ _data = ("82%08X"):format(i) }
      resp[#resp + 1] = servers.resp{ "SET", "rigatoni:resume_token:" .. name, values[name] }
    end
    source:pipe(table.concat(resp))
    local dir = os.tmpname()
    local cmd = ("%s -u redis://127.0.0.1:%d migrate --to %s --delete-source --batch 200 >%s.out 2>%s.err; echo $? >%s.rc")
      :format(helpers.quote(helpers.BIN), source.port, helpers.quote(url), dir, dir, dir)
    os.execute("(" .. cmd .. ") &")
    system.sleep(0.3)
    failover()
    wait_until("migrate to end", 60, function() return helpers.read_file(dir .. ".rc") ~= nil
                                                  and helpers.read_file(dir .. ".rc") ~= "" end)
    local rc = tonumber(helpers.read_file(dir .. ".rc"))
    local out = helpers.read_file(dir .. ".out") .. helpers.read_file(dir .. ".err")
    for _, ext in ipairs{ ".rc", ".out", ".err", "" } do os.remove(dir .. ext) end
    if os.getenv("RS_SPEC_VERBOSE") then io.stderr:write("exit ", rc, ": ", out, "\n") end
    -- Whichever master the sentinels settle on (a loaded machine may see
    -- the failover aborted), nothing may be lost.
    settle(90)
    local master = node_on(agreed())
    -- Every token is still on the source, or on the new master (same bytes).
    local on_source <close> = rs.new{ url = "redis://127.0.0.1:" .. source.port }
    local on_master <close> = rs.new{ url = "redis://127.0.0.1:" .. master.port }
    local left, lost = 0, {}
    for name, bytes in pairs(values) do
      if on_source:get_raw(name) ~= nil then
        left = left + 1
      elseif on_master:get_raw(name) ~= bytes then
        lost[#lost + 1] = name
      end
    end
    assert.are.equal(0, #lost, #lost .. " tokens gone from both (e.g. " ..
                     table.concat(lost, " ", 1, math.min(5, #lost)) .. "): " .. out)
    local deleted = tonumber(out:match("(%d+) deleted from source"))
    assert.are.equal(n - left, deleted, out)
    assert.is_true(rc == 0 or rc == 1, out)
    if rc == 1 then assert.matches("stopped", out) end
  end)

  it("cleanup --yes through a failover counts as deleted only what the new master lacks", function()
    local master = node_on(agreed())
    finally(function() node_on(agreed()):cli("FLUSHALL") end)
    local n, resp = 8000, {}        -- the run stops at the switch, some 3,000 in
    for i = 1, n do
      resp[#resp + 1] = servers.resp{ "SET", ("rigatoni:resume_token:c%05d"):format(i),
                                      rs.bson.encode{ _data = ("82%08X00000001"):format(1000 + i) } }
    end
    master:pipe(table.concat(resp))
    settle(60)
    local dir = os.tmpname()
    local cmd = ("%s -u %s cleanup --older-than 1d --yes --batch 200 >%s.out 2>%s.err; echo $? >%s.rc")
      :format(helpers.quote(helpers.BIN), helpers.quote(url), dir, dir, dir)
    os.execute("(" .. cmd .. ") &")
    system.sleep(0.3)
    failover()
    wait_until("cleanup to end", 60, function() return helpers.read_file(dir .. ".rc") ~= nil
                                                  and helpers.read_file(dir .. ".rc") ~= "" end)
    local out = helpers.read_file(dir .. ".out") .. helpers.read_file(dir .. ".err")
    for _, ext in ipairs{ ".rc", ".out", ".err", "" } do os.remove(dir .. ext) end
    if os.getenv("RS_SPEC_VERBOSE") then io.stderr:write(out, "\n") end
    settle(90)
    local now = node_on(agreed())
    local remaining = tonumber(now:cli("DBSIZE"))
    local deleted = tonumber(out:match("(%d+) deleted"))
    assert.is_truthy(deleted, out)
    assert.is_true(deleted <= n - remaining,
                   ("reported %d deleted, but %d of %d remain: %s"):format(deleted, remaining, n, out))
  end)
end)

-- A target whose config says wait_policy = warn: migrate --delete-source
-- still needs a replica's acknowledgement before it deletes a source.
describe("migrate --delete-source to a target with a replica that does not answer", function()
  it("deletes no source whose copy no replica acknowledged, whatever wait_policy says", function()
    local source = servers.redis{}
    local master = servers.redis{}
    local replica = servers.redis{ args = { "--replicaof", "127.0.0.1", tostring(master.port) } }
    finally(function()
      os.execute("kill -CONT " .. replica.pid)
      replica:stop(); master:stop(); source:stop()
    end)
    local deadline = system.gettime() + 30
    while not (master:cli("INFO", "replication") or ""):find("connected_slaves:1", 1, true) do
      assert(system.gettime() < deadline, "timed out waiting for the replica's link")
      system.sleep(0.05)
    end
    local resp = {}
    for i = 1, 30 do
      resp[#resp + 1] = servers.resp{ "SET", ("rigatoni:resume_token:w%02d"):format(i),
                                      rs.bson.encode{ _data = ("82%08X"):format(i) } }
    end
    source:pipe(table.concat(resp))
    os.execute("kill -STOP " .. replica.pid)          -- linked, but acknowledges nothing
    local ini = os.tmpname()
    helpers.write_file(ini, ("[redis]\nurl = redis://127.0.0.1:%d\n[durability]\nwait_timeout = 0.2\n" ..
                             "wait_policy = warn\n"):format(master.port))
    local code, out, err = helpers.run_host { "-u", "redis://127.0.0.1:" .. source.port, "migrate",
                                              "--to-config", ini, "--delete-source", "--batch", "10" }
    os.remove(ini)
    assert.equal(1, code, out .. err)
    assert.equal("30", source:cli("DBSIZE"), out .. err)   -- every source kept
  end)
end)
