-- SPDX-License-Identifier: MIT
-- spec/failover_tools_spec.lua -- what cleanup --yes and migrate
-- --delete-source count as deleted when a replica stops acknowledging, a
-- signal stops the run, or a Sentinel failover of either side happens in
-- the middle of it. Real servers (a master with a replica; Sentinel set-ups
-- of 1 master, 1 replica and 3 sentinels); the fault is placed at an exact
-- point of the run by a prelude (-e) that wraps the script's stores and
-- acts before or after their N-th call of a method, so each test is
-- deterministic: what a replica acknowledged is known, and nothing else
-- may be counted.
local servers = require "support.servers"
local helpers = require "support.helpers"
local proxy = require "support.proxy"
local rs = require "rigatoni_store"
local system = require "system"

local quote, read_file = helpers.quote, helpers.read_file
local PREFIX = "rigatoni:resume_token:"
local OLD = os.time() - 86400 * 90   -- every token's cluster time: 90 days ago

local wait_until = helpers.wait_until

local function seed(srv, n)
  local resp = {}
  for i = 1, n do
    resp[i] = servers.resp { "SET", PREFIX .. ("t%04d"):format(i),
                             rs.bson.encode { _data = ("82%08X%08X"):format(OLD, i) } }
  end
  srv:pipe(table.concat(resp))
end

local function dbsize(srv) return tonumber(srv:cli("DBSIZE")) end

-- The master's replica is linked and has every byte of it.
local function synced(master)
  local info = master:cli("INFO", "replication") or ""
  local offset = info:match("master_repl_offset:(%d+)")
  local acked = info:match("slave0:[^\n]*offset=(%d+)")
  return info:find("connected_slaves:1", 1, true) and offset and acked == offset
end

-- The prelude: `arg` = script, then the script's own arguments. `store`
-- and every store host.open_store gives are wrapped; ON(label, method,
-- n, phase, real, args, results) runs before ("before") and after
-- ("after", with the call's results) the n-th call of each method (label
-- "source" for `store`, "target" for the others).
-- The test's own part (ON, and the values it needs) comes first.
local PRELUDE = [[
local script = arg[1]
local args = table.move(arg, 2, #arg, 1, {})
args[0] = script
arg = args
local calls = {}
local function wrap(real, label)
  return setmetatable({}, { __index = function(_, name)
    local f = real[name]
    if type(f) ~= "function" then return f end
    return function(_, ...)
      local key = label .. "." .. name
      calls[key] = (calls[key] or 0) + 1
      local n = calls[key]
      local a = table.pack(...)
      ON(label, name, n, "before", real, a)
      local r = table.pack(f(real, ...))
      ON(label, name, n, "after", real, a, r)
      return table.unpack(r, 1, r.n)
    end
  end })
end
function sh(cmd) assert(os.execute(cmd), cmd) end
function sleep(s) os.execute("sleep " .. s) end
function capture(cmd)
  local p = assert(io.popen(cmd)); local out = p:read("a"); p:close(); return out
end
-- SENTINEL FAILOVER; returns once every sentinel names port `to` and the
-- store `real` has seen the switch.
function failover(cli, sentinel_ports, to, real)
  local seen = real:master_changes()
  sh(cli .. " -p " .. sentinel_ports[1] .. " SENTINEL FAILOVER mymaster >/dev/null")
  for _ = 1, 600 do
    local all = true
    for _, p in ipairs(sentinel_ports) do
      local named = capture(cli .. " -p " .. p .. " SENTINEL get-master-addr-by-name mymaster")
      if not named:find("\n" .. to .. "\n", 1, true) then all = false end
    end
    if all and real:master_changes() > seen then return end
    sleep(0.05)
  end
  error("the failover did not happen")
end
store = wrap(store, "source")
local open = host.open_store
host.open_store = function(...)
  local s, c = open(...)
  return wrap(s, "target"), c
end
return require("lib.options").main(dofile(script), arg)   -- the script returns its declaration
]]

-- Runs the host with `prelude` (Lua text defining ON) and PRELUDE on
-- `script` with `args`; SIGINT at its default. Returns status, stdout, stderr.
local function run_with(url, prelude, script, args, extra)
  -- A WAIT no replica answers gives up after 0.5 s: a short test, yet
  -- time enough for a replica on a loaded machine (0.2 s fell short in a
  -- full run with both busted passes at once).
  local argv = { "-u", url, "-s", "durability.wait_timeout=0.5" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  for _, a in ipairs { "-e", prelude .. "\n" .. PRELUDE, "scripts/" .. script .. ".lua" } do argv[#argv + 1] = a end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local words = {}
  for i, a in ipairs(argv) do words[i] = quote(a) end
  local out, err = os.tmpname(), os.tmpname()
  local cmd = ("env -u RIGATONI_STORE_CONFIG -u REDIS_URL --default-signal=INT,TERM %s %s >%s 2>%s </dev/null")
    :format(quote(helpers.BIN), table.concat(words, " "), out, err)
  local _, _, code = os.execute(cmd)
  local o, e = read_file(out) or "", read_file(err) or ""
  os.remove(out); os.remove(err)
  if os.getenv("RS_SPEC_VERBOSE") then io.stderr:write("exit ", tostring(code), ": ", o, e, "\n") end
  return code, o, e
end

-- -----------------------------------------------------------------------
describe("cleanup --yes on a master with a replica", function()
  local master, replica
  local N, BATCH = 100, 20

  setup(function()
    master = servers.redis {}
    replica = servers.redis { args = { "--replicaof", "127.0.0.1", tostring(master.port) } }
  end)
  teardown(function()
    if replica then os.execute("kill -CONT " .. replica.pid); replica:stop() end
    if master then master:stop() end
  end)
  before_each(function()
    os.execute("kill -CONT " .. replica.pid)
    master:cli("FLUSHALL")
    master:cli("ACL", "DELUSER", "tool")
    seed(master, N)
    wait_until("the replica to have every token", 30, function() return synced(master) end)
  end)

  it("is refused before anything is deleted when the user may not send PUBLISH or WAIT (exit 2)", function()
    master:cli("ACL", "SETUSER", "tool", "on", ">pw", "~*", "&*", "+@all", "-wait")
    local code, out, err = helpers.run_host { "-u", "redis://tool:pw@127.0.0.1:" .. master.port, "scripts/cleanup.lua",
                                              "--older-than", "1d", "--yes" }
    assert.equal(2, code, out .. err)
    assert.matches("WAIT", err)
    assert.equal(N, dbsize(master), out .. err)
    master:cli("ACL", "SETUSER", "tool", "+wait", "-publish")
    code, out, err = helpers.run_host { "-u", "redis://tool:pw@127.0.0.1:" .. master.port, "scripts/cleanup.lua",
                                        "--older-than", "1d", "--yes" }
    assert.equal(2, code, out .. err)
    assert.matches("PUBLISH", err)
    assert.equal(N, dbsize(master), out .. err)
  end)

  it("deletes nothing when its first confirmation fails: exit 2 when it never can, exit 1 when no replica answers", function()
    -- A WAIT that cannot be shorter than command_timeout can never confirm.
    local code, out, err = helpers.run_host { "-u", master.url, "-s", "redis.command_timeout=0.5", "scripts/cleanup.lua",
                                              "--older-than", "1d", "--yes" }
    assert.equal(2, code, out .. err)
    assert.matches("cannot confirm deletes", err)
    assert.equal(N, dbsize(master), out .. err)
    -- A replica that does not answer.
    os.execute("kill -STOP " .. replica.pid)
    code, out, err = helpers.run_host { "-u", master.url, "-s", "durability.wait_timeout=0.2", "scripts/cleanup.lua",
                                        "--older-than", "1d", "--yes" }
    os.execute("kill -CONT " .. replica.pid)
    assert.equal(1, code, out .. err)
    assert.matches("no replica acknowledged", err)
    assert.equal(N, dbsize(master), out .. err)
  end)

  it("stops at the first delete no replica confirms, counts only the confirmed ones and deletes nothing more", function()
    -- The replica stops answering after the 2nd walk step: step 3's deletes
    -- are never confirmed.
    local prelude = ([[
function ON(label, name, n, phase)
  if label == "source" and name == "delete_resume_token" and n == %d and phase == "before" then
    os.execute("kill -STOP %d")
  end
end]]):format(2 * BATCH + 1, replica.pid)
    local code, out, err = run_with(master.url, prelude, "cleanup",
                                    { "--older-than", "1d", "--yes", "--batch", tostring(BATCH) })
    os.execute("kill -CONT " .. replica.pid)
    assert.equal(1, code, out .. err)
    local deleted = tonumber(out:match("(%d+) deleted"))
    local unconfirmed = tonumber(out:match("(%d+) deletes? not confirmed")) or 0
    assert.is_true(deleted <= 2 * BATCH, out .. err)
    assert.is_true(unconfirmed >= 1, out .. err)
    -- what it says is what happened, and it stopped: nothing more deleted
    assert.equal(N - deleted - unconfirmed, dbsize(master), out .. err)
    assert.is_true(dbsize(master) > 0, out .. err)
    local scanned = tonumber(out:match("(%d+) scanned"))
    assert.is_true(scanned >= deleted + unconfirmed, out)
  end)

  it("for a user allowed WAIT but not INFO, still counts only what a replica confirmed", function()
    master:cli("ACL", "SETUSER", "tool", "on", ">pw", "~*", "&*", "+@all", "-info")
    local prelude = ([[
function ON(label, name, n, phase)
  if label == "source" and name == "delete_resume_token" and n == %d and phase == "before" then
    os.execute("kill -STOP %d")
  end
end]]):format(2 * BATCH + 1, replica.pid)
    local code, out, err = run_with("redis://tool:pw@127.0.0.1:" .. master.port, prelude, "cleanup",
                                    { "--older-than", "1d", "--yes", "--batch", tostring(BATCH) })
    os.execute("kill -CONT " .. replica.pid)
    local deleted = tonumber(out:match("(%d+) deleted"))
    local unconfirmed = tonumber(out:match("(%d+) deletes? not confirmed")) or 0
    assert.is_truthy(deleted, out .. err)
    assert.is_true(deleted <= 2 * BATCH, out .. err)
    assert.equal(N - deleted - unconfirmed, dbsize(master), out .. err)
    assert.equal(1, code, out .. err)
  end)

  it("stopped by SIGINT, counts only what a replica confirmed, and every token it acted on as scanned", function()
    -- After the 45th delete the replica stops and SIGINT comes: the deletes
    -- since the last walk step's confirmation are not confirmed.
    local prelude = ([[
local pid = io.open("/proc/self/stat"):read("l"):match("^%%d+")
function ON(label, name, n, phase)
  if label ~= "source" or name ~= "delete_resume_token" or phase ~= "after" or n ~= %d then return end
  os.execute("kill -STOP %d")
  os.execute("(sleep 0.2; kill -INT " .. pid .. ") &")
  local t = os.clock() + 10
  while os.clock() < t do end
end]]):format(45, replica.pid)
    local code, out, err = run_with(master.url, prelude, "cleanup",
                                    { "--older-than", "1d", "--yes", "--batch", tostring(BATCH) })
    os.execute("kill -CONT " .. replica.pid)
    assert.equal(130, code, out .. err)
    assert.matches("interrupted by SIGINT", err)
    local deleted = tonumber(out:match("(%d+) deleted"))
    local unconfirmed = tonumber(out:match("(%d+) deletes? not confirmed")) or 0
    assert.is_truthy(deleted, out .. err)
    -- the 45th delete, at least, had no replica's word
    assert.is_true(deleted <= 44, out .. err)
    -- the delete the signal cut short (it ran; the run had not seen it end)
    local doubt = out:find("1 in doubt", 1, true) and 1 or 0
    assert.equal(N - dbsize(master), deleted + unconfirmed + doubt, out .. err)
    local scanned = tonumber(out:match("(%d+) scanned"))
    assert.is_true(scanned >= deleted + unconfirmed + doubt, out)
  end)
end)

describe("migrate --delete-source to a target that gains a replica during the run", function()
  local source, target, spare
  local N, BATCH = 100, 20
  setup(function()
    source, target, spare = servers.redis {}, servers.redis { args = { "--repl-diskless-sync-delay", "0" } }, servers.redis {}
  end)
  teardown(function()
    if spare then os.execute("kill -CONT " .. spare.pid); spare:stop() end
    if target then target:stop() end
    if source then source:stop() end
  end)

  it("deletes no source whose copy the new replica did not acknowledge", function()
    seed(source, N)
    -- Before the 3rd batch is written, `spare` becomes the target's replica
    -- (fully synced), then stops answering.
    local prelude = ([[
function ON(label, name, n, phase, real)
  if label ~= "target" or name ~= "start_save_many" or n ~= 3 or phase ~= "before" then return end
  sh(%q .. " -p %d REPLICAOF 127.0.0.1 %d >/dev/null")
  for _ = 1, 200 do
    if capture(%q .. " -p %d INFO replication"):find("state=online", 1, true) then break end
    sleep(0.05)
  end
  sh("kill -STOP %d")
end]]):format(servers.cli_bin, spare.port, target.port, servers.cli_bin, target.port, spare.pid)
    local code, out, err = run_with(source.url, prelude, "migrate",
                                    { "--to", target.url, "--delete-source", "--batch", tostring(BATCH) })
    os.execute("kill -CONT " .. spare.pid)
    assert.equal(1, code, out .. err)
    -- batch 1 was tallied before the replica came; batch 2 after, unacknowledged
    local deleted = tonumber(out:match("(%d+) deleted from source"))
    assert.equal(BATCH, deleted, out .. err)
    assert.equal(N - BATCH, dbsize(source), out .. err)
  end)
end)

-- -----------------------------------------------------------------------
-- A Sentinel set-up: nodes[1] master, nodes[2] its replica (optionally
-- through a fault proxy), 3 sentinels.
local function sentinel_setup(through_proxy, down_after_ms)
  local s = { nodes = {}, sentinels = {} }
  s.nodes[1] = servers.redis {}
  if through_proxy then s.link = proxy.start(s.nodes[1]) end
  local up = through_proxy and s.link or s.nodes[1]
  s.nodes[2] = servers.redis { args = { "--replicaof", "127.0.0.1", tostring(up.port) } }
  local list, ports = {}, {}
  for i = 1, 3 do
    -- failover_timeout: also how long a sentinel leaves a replica that
    -- names another master address (the proxy) before "fixing" it.
    s.sentinels[i] = servers.sentinel { master = s.nodes[1], down_after_ms = down_after_ms or 1000,
                                      failover_timeout_ms = 60000 }
    list[i] = "127.0.0.1:" .. s.sentinels[i].port
    ports[i] = tostring(s.sentinels[i].port)
  end
  s.url = "redis://" .. table.concat(list, ",")
  s.ports = "{" .. table.concat(ports, ",") .. "}"
  function s.settled()
    for _, sen in ipairs(s.sentinels) do
      local info = sen:cli("SENTINEL", "master", "mymaster") or ""
      if not info:find("num%-slaves%s+1") or not info:find("num%-other%-sentinels%s+2") then return false end
    end
    return synced(s.nodes[1])
  end
  function s.stop()
    for _, n in ipairs(s.nodes) do os.execute("kill -CONT " .. n.pid) end
    for _, sen in ipairs(s.sentinels) do sen:stop() end
    for _, n in ipairs(s.nodes) do n:stop() end
    if s.link then s.link:stop() end
  end
  return s
end

describe("migrate --delete-source through a failover of the target", function()
  local s, source
  local N, BATCH, K = 200, 20, 4
  setup(function()
    s = sentinel_setup(false)
    source = servers.redis {}
  end)
  teardown(function()
    if s then s.stop() end
    if source then source:stop() end
  end)

  it("deletes no source whose copy, read again on the new master, no replica of it acknowledged", function()
    seed(source, N)
    wait_until("the set-up to settle", 60, s.settled)
    -- Before the K-th batch is written: the target fails over to nodes[2],
    -- and the old master (its would-be replica) stops answering.
    local prelude = ([[
function ON(label, name, n, phase, real)
  if label == "target" and name == "start_save_many" and n == %d and phase == "before" then
    failover(%q, %s, %d, real)
    os.execute("kill -STOP %d")
  end
end]]):format(K, servers.cli_bin, s.ports, s.nodes[2].port, s.nodes[1].pid)
    local code, out, err = run_with(source.url, prelude, "migrate",
                                    { "--to", s.url, "--delete-source", "--batch", tostring(BATCH) })
    os.execute("kill -CONT " .. s.nodes[1].pid)
    assert.equal(1, code, out .. err)
    assert.matches("stopped", out .. err)
    -- Batches 1..K-2 were acknowledged by a replica of the master they were
    -- read back from; batch K-1 was read again on the new master, which no
    -- replica backs.
    local deleted = tonumber(out:match("(%d+) deleted from source"))
    assert.equal((K - 2) * BATCH, deleted, out .. err)
    assert.equal(N - deleted, dbsize(source), out .. err)
  end)
end)

describe("migrate --delete-source through a failover of the source", function()
  local s, target
  local N, BATCH = 200, 20
  setup(function()
    s = sentinel_setup(true)
    target = servers.redis {}
  end)
  teardown(function()
    if s then s.stop() end
    if target then target:stop() end
  end)

  it("counts as deleted only what the source's current master lacks, and says so", function()
    seed(s.nodes[1], N)
    wait_until("the set-up to settle", 60, s.settled)
    -- From the 25th source delete on, the replica receives nothing more;
    -- after the 35th the source fails over to it: deletes 26..35 were
    -- acknowledged by a master that is then demoted, and come back.
    local prelude = ([[
function ON(label, name, n, phase, real)
  if label ~= "source" or name ~= "delete_resume_token" or phase ~= "after" then return end
  if n == 25 then local f = assert(io.open(%q, "w")); f:write("stall 0\n"); f:close() end
  if n == 35 then failover(%q, %s, %d, real) end
end]]):format(s.link.control, servers.cli_bin, s.ports, s.nodes[2].port)
    local code, out, err = run_with(s.url, prelude, "migrate",
                                    { "--to", target.url, "--delete-source", "--batch", tostring(BATCH) })
    -- When the run stopped before the failover, the test makes it.
    local named = s.sentinels[1]:cli("SENTINEL", "get-master-addr-by-name", "mymaster")
    if not named:find(tostring(s.nodes[2].port), 1, true) then
      s.sentinels[1]:cli("SENTINEL", "FAILOVER", "mymaster")
      wait_until("the failover", 60, function()
        for _, sen in ipairs(s.sentinels) do
          local p = sen:cli("SENTINEL", "get-master-addr-by-name", "mymaster")
          if not p:find(tostring(s.nodes[2].port), 1, true) then return false end
        end
        return true
      end)
    end
    local remaining = dbsize(s.nodes[2])
    local deleted = tonumber(out:match("(%d+) deleted from source"))
    assert.is_truthy(deleted, out .. err)
    assert.is_true(deleted <= N - remaining,
                   ("reported %d deleted, but %d of %d remain on the source's master: %s"):format(
                     deleted, remaining, N, out .. err))
    assert.equal(1, code, out .. err)
    -- nothing lost: each token on the source's master or on the target
    local src <close> = rs.new { url = "redis://127.0.0.1:" .. s.nodes[2].port }
    local dst <close> = rs.new { url = target.url }
    for i = 1, N do
      local name = ("t%04d"):format(i)
      assert.is_true(src:get_raw(name) ~= nil or dst:get_raw(name) ~= nil, name .. " lost: " .. out .. err)
    end
  end)
end)

-- -----------------------------------------------------------------------
-- A master restarted without persistence in the middle of a run (no
-- replicas): the prelude kills it and starts the same command line again;
-- the spec adopts the new process afterwards (pid from INFO).
local RESTART = [[
function restart(pid, cmdline, cli)
  sh("kill -9 " .. pid .. "; while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.02; done")
  for _ = 1, 200 do
    if os.execute("(" .. cmdline .. " >/dev/null 2>&1 </dev/null &)") then
      for _ = 1, 100 do
        if capture(cli .. " PING 2>/dev/null"):find("PONG", 1, true) then return end
        sleep(0.05)
      end
    end
    sleep(0.1)
  end
  error("the restart failed")
end
]]

-- Reconnects after the restart without the default back-off: a short test.
local FAST_RETRY = { "-s", "redis.retry_base_delay=0.01", "-s", "redis.retry_max_delay=0.05" }

local function adopt(srv)
  local info = srv:cli("INFO", "server") or ""
  srv.pid = assert(tonumber(info:match("process_id:(%d+)")), info)
end

describe("cleanup --yes through a restart of its master without persistence (no replicas)", function()
  local srv
  local N, BATCH = 100, 20
  setup(function() srv = servers.redis {} end)
  teardown(function() if srv then srv:stop() end end)
  before_each(function() srv:cli("FLUSHALL"); seed(srv, N) end)

  it("counts a token a pipeline wrote anew after its delete as deleted, not as 'not deleted after all'", function()
    -- After the 30th delete the server restarts empty and the pipelines
    -- save a new (current) token under every name, the 30 deleted included.
    local fresh = rs.bson.encode { _data = ("82%08X%08X"):format(os.time(), 1) }
    local prelude = RESTART .. ([[
function ON(label, name, n, phase, real)
  if label == "source" and name == "delete_resume_token" and n == 30 and phase == "after" then
    restart(%d, %q, %q)
    for i = 1, %d do real:command("SET", ("%st%%04d"):format(i), %q) end
  end
end]]):format(srv.pid, srv:command_line(), srv:cli_prefix(), N, PREFIX, fresh)
    local code, out, err = run_with(srv.url, prelude, "cleanup",
                                    { "--older-than", "1d", "--yes", "--batch", tostring(BATCH) }, FAST_RETRY)
    adopt(srv)
    -- what is in Redis afterwards: the new tokens only
    assert.equal(N, dbsize(srv), out .. err)
    assert.equal(fresh, srv:cli("GET", PREFIX .. "t0001"))
    assert.not_matches("not deleted after all", out, 1, true)
    assert.equal(30, tonumber(out:match("(%d+) deleted")), out .. err)
    assert.equal(0, code, out .. err)
  end)
end)

describe("migrate --delete-source through a restart of its target without persistence (no replicas)", function()
  local source, target
  local N, BATCH = 60, 20
  setup(function() source, target = servers.redis {}, servers.redis {} end)
  teardown(function()
    if target then target:stop() end
    if source then source:stop() end
  end)
  before_each(function() source:cli("FLUSHALL"); target:cli("FLUSHALL"); seed(source, N) end)

  it("does not report as migrated the copies the restart lost after their sources went (exit 1)", function()
    -- The target restarts empty just before the last batch's sources are
    -- deleted: that batch was read back before, and every copy is gone.
    local prelude = RESTART .. ([[
function ON(label, name, n, phase)
  if label == "source" and name == "delete_resume_token" and n == %d and phase == "before" then
    restart(%d, %q, %q)
  end
end]]):format(N - BATCH + 1, target.pid, target:command_line(), target:cli_prefix())
    local code, out, err = run_with(source.url, prelude, "migrate",
                                    { "--to", target.url, "--delete-source", "--batch", tostring(BATCH) }, FAST_RETRY)
    adopt(target)
    local on_source, on_target = dbsize(source), dbsize(target)
    local copied = tonumber(out:match("(%d+) copied"))
    local deleted = tonumber(out:match("(%d+) deleted from source"))
    assert.is_truthy(copied and deleted, out .. err)
    -- what it says is what is there: no more copies than the target has,
    -- no more deleted than are gone from the source
    assert.is_true(copied <= on_target, out .. err)
    assert.is_true(deleted <= N - on_source, out .. err)
    -- tokens are gone from both sides: it must say so and fail
    assert.is_true(on_source + on_target < N)
    assert.matches("%d+ lost %(deleted from source", out)
    assert.equal(1, code, out .. err)
  end)

  it("does not claim its copies when the restarted target is down at the end (exit 1)", function()
    -- As above, and then the target dies after the last delete: nothing
    -- can show the copies are there.
    local prelude = RESTART .. ([[
function ON(label, name, n, phase)
  if label ~= "source" or name ~= "delete_resume_token" then return end
  if n == %d and phase == "before" then restart(%d, %q, %q) end
  if n == %d and phase == "after" then
    local pid = capture(%q .. " INFO server"):match("process_id:(%%d+)")
    sh("kill -9 " .. pid)
  end
end]]):format(N - BATCH + 1, target.pid, target:command_line(), target:cli_prefix(), N, target:cli_prefix())
    local code, out, err = run_with(source.url, prelude, "migrate",
                                    { "--to", target.url, "--delete-source", "--batch", tostring(BATCH) }, FAST_RETRY)
    target.pid = nil
    target:restart()
    assert.equal(0, dbsize(source), out .. err)
    assert.matches("could not be read again", out)
    assert.equal(1, code, out .. err)
  end)
end)

-- -----------------------------------------------------------------------
-- The Sentinel master restarts without persistence in the middle of a
-- delete run, and then fails over to its replica, which kept the tokens:
-- a delete the empty restarted master answered with 0 is not "already
-- gone", since the current master has the token.
describe("cleanup --yes and migrate --delete-source through a restart, then a failover, of the Sentinel master",
         function()
  local N, BATCH = 100, 20
  for _, tool in ipairs { "cleanup", "migrate" } do
    it(tool .. " counts as deleted or already gone only names the current master lacks", function()
      -- No failover of their own while the master restarts: only ours.
      local s = sentinel_setup(true, 10000)
      local target = tool == "migrate" and servers.redis {} or nil
      local refused_path = os.tmpname()
      local ok, failure = pcall(function()
        seed(s.nodes[1], N)
        wait_until("the set-up to settle", 60, s.settled)
        -- After the 25th delete the replica receives nothing more and the
        -- master restarts empty; after the 35th the sentinels fail over
        -- to the replica: deletes 26..35 found nothing on the empty master.
        local prelude = RESTART .. ([[
local refused = assert(io.open(%q, "w"))
function ON(label, name, n, phase, real, args, results)
  if label ~= "source" or name ~= "delete_resume_token" or phase ~= "after" then return end
  if not results[1] then refused:write(args[1], "\n"); refused:flush() end
  if n == 25 then
    local f = assert(io.open(%q, "w")); f:write("stall 0\n"); f:close()
    restart(%d, %q, %q)
  end
  if n == 35 then failover(%q, %s, %d, real) end
end]]):format(refused_path, s.link.control, s.nodes[1].pid, s.nodes[1]:command_line(), s.nodes[1]:cli_prefix(),
              servers.cli_bin, s.ports, s.nodes[2].port)
        local args = target and { "--to", target.url, "--delete-source", "--batch", tostring(BATCH) }
          or { "--older-than", "1d", "--yes", "--batch", tostring(BATCH) }
        local code, out, err = run_with(s.url, prelude, tool, args, FAST_RETRY)
        adopt(s.nodes[1])
        local named = s.sentinels[1]:cli("SENTINEL", "get-master-addr-by-name", "mymaster")
        assert.truthy(named:find("\n" .. s.nodes[2].port, 1, true), "no failover: " .. named .. out .. err)
        local left = dbsize(s.nodes[2])
        local deleted = tonumber(out:match("(%d+) deleted"))
        local gone = tonumber(out:match("(%d+) already gone")) or 0
        assert.is_truthy(deleted, out .. err)
        assert.is_true(deleted + gone <= N - left,
                       ("%d deleted + %d already gone, but only %d of %d are absent from the current master: %s")
                         :format(deleted, gone, N - left, N, out .. err))
        -- Of the deletes that deleted nothing, only those whose name the
        -- current master lacks may count as already gone.
        local absent, present = 0, 0
        for name in io.lines(refused_path) do
          if s.nodes[2]:cli("EXISTS", PREFIX .. name) == "1" then present = present + 1 else absent = absent + 1 end
        end
        assert.is_true(present > 0, "the restarted master refused no delete the replica could undo: " .. out .. err)
        assert.is_true(gone <= absent, ("%d already gone, but %d of the refused deletes are absent from the " ..
                                        "current master (%d present): %s"):format(gone, absent, present, out .. err))
        assert.matches("present on the.- current master", out)
        assert.equal(1, code, out .. err)
      end)
      s.stop()
      if target then target:stop() end
      os.remove(refused_path)
      assert(ok, failure)
    end)
  end
end)

-- -----------------------------------------------------------------------
-- import through a Sentinel failover to a replica that missed its writes
-- (the proxy stalls the replication link first): what the new master
-- lacks is not reported written. (locks --release: failover_cluster_spec.)
describe("import through a failover to a replica that missed its writes", function()
  local N, BATCH = 100, 20
  local s
  -- No failover of the sentinels' own: only the test's.
  setup(function() s = sentinel_setup(true, 10000) end)
  teardown(function() if s then s.stop() end end)

  it("import counts as written only what the new master has (exit 1)", function()
    wait_until("the set-up to settle", 60, s.settled)
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    for i = 1, N do
      f:write((rs.export_line(("t%04d"):format(i), rs.bson.encode { _data = ("82%08X%08X"):format(OLD, i) })))
    end
    f:close()
    -- From batch 2 on the replica receives nothing; before batch 4 the
    -- sentinels fail over to it: batches 2 and 3 are lost.
    local prelude = ([[
function ON(label, name, n, phase, real)
  if label ~= "source" or name ~= "save_many" or phase ~= "before" then return end
  if n == 2 then local f = assert(io.open(%q, "w")); f:write("stall 0\n"); f:close() end
  if n == 4 then failover(%q, %s, %d, real) end
end]]):format(s.link.control, servers.cli_bin, s.ports, s.nodes[2].port)
    local code, out, err = run_with(s.url, prelude, "import", { "--input", file, "--batch", tostring(BATCH) })
    os.remove(file)
    local present = dbsize(s.nodes[2])
    assert.is_true(present < N, "the failover lost nothing: " .. out .. err)
    local written = tonumber(out:match("(%d+) written"))
    assert.is_truthy(written, out .. err)
    assert.is_true(written <= present, ("%d written, but the new master has %d of %d: %s")
                                         :format(written, present, N, out .. err))
    assert.matches("not on the current master", out)
    assert.equal(1, code, out .. err)
  end)
end)
