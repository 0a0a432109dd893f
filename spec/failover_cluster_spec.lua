-- SPDX-License-Identifier: MIT
-- spec/failover_cluster_spec.lua -- what import and locks --release (--force) say
-- when a cluster master that acknowledged their writes dies before its
-- replica had them, and the replica takes over (asynchronous replication
-- loses the writes). One cluster of 3 masters with a replica each, shared
-- by the tests: each test fails over a master of its own (by hash tag), so
-- no test needs a fresh cluster. The fault lands at an exact point of the
-- run: a prelude (-e) wraps the script's store and acts before or after
-- its n-th call of a method (as in failover_tools_spec.lua). The replica
-- is cut off first (SIGSTOP, and the master drops its link), so what the
-- master takes from then on is what the takeover loses.
local servers = require "support.servers"
local helpers = require "support.helpers"
local rs = require "rigatoni_store"

local quote, read_file = helpers.quote, helpers.read_file
local PREFIX = "rigatoni:resume_token:"
local CLI = servers.cli_bin

-- `arg` = script, then its arguments; `store` is wrapped: ON(name, n,
-- phase, args) runs before and after its n-th call of method `name`.
local PRELUDE = [[
local script = arg[1]
local args = table.move(arg, 2, #arg, 1, {})
args[0] = script
arg = args
local calls = {}
local real = store
store = setmetatable({}, { __index = function(_, name)
  local f = real[name]
  if type(f) ~= "function" then return f end
  return function(_, ...)
    calls[name] = (calls[name] or 0) + 1
    local n, a = calls[name], table.pack(...)
    ON(name, n, "before", a)
    local r = table.pack(f(real, ...))
    ON(name, n, "after", a)
    return table.unpack(r, 1, r.n)
  end
end })
local function sh(cmd) assert(os.execute(cmd), cmd) end
local function capture(cmd)
  local p = assert(io.popen(cmd)); local out = p:read("a"); p:close(); return out
end
-- The replica stops, and the master drops its link: from now on the
-- master takes writes its replica never gets.
function detach(cli, master_port, replica_pid)
  sh("kill -STOP " .. replica_pid)
  sh(cli .. " -p " .. master_port .. " CLIENT KILL TYPE replica >/dev/null")
end
-- The master dies; its replica (without the writes since detach) takes
-- its slots over.
function takeover(cli, master_pid, replica_pid, replica_port)
  sh("kill -9 " .. master_pid .. "; while kill -0 " .. master_pid .. " 2>/dev/null; do sleep 0.02; done")
  sh("kill -CONT " .. replica_pid)
  sh(cli .. " -p " .. replica_port .. " CLUSTER FAILOVER TAKEOVER >/dev/null")
  for _ = 1, 200 do
    if capture(cli .. " -p " .. replica_port .. " ROLE"):match("^master") then return end
    os.execute("sleep 0.05")
  end
  error("the takeover did not happen")
end
return require("lib.options").main(dofile(script), arg)
]]

local function run_with(url, prelude, script, args)
  local argv = { "-u", url, "-s", "redis.cluster_mode=true", "-s", "redis.retry_base_delay=0.05",
                 "-s", "redis.retry_max_delay=0.3", "-e", prelude .. "\n" .. PRELUDE, "scripts/" .. script .. ".lua" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local words = {}
  for i, a in ipairs(argv) do words[i] = quote(a) end
  local out, err = os.tmpname(), os.tmpname()
  local cmd = ("env -u RIGATONI_STORE_CONFIG -u REDIS_URL %s %s >%s 2>%s </dev/null")
    :format(quote(helpers.BIN), table.concat(words, " "), out, err)
  local _, _, code = os.execute(cmd)
  local o, e = read_file(out) or "", read_file(err) or ""
  os.remove(out); os.remove(err)
  return code, o, e
end

-- The prelude that detaches `m`'s replica before the `first`-th call of
-- `method` and fails `m` over to it before (or after) the `last`-th.
local function lossy(m, method, first, last, phase)
  return ([[
function ON(name, n, phase)
  if name ~= %q then return end
  if n == %d and phase == "before" then detach(%q, %d, %d) end
  if n == %d and phase == %q then takeover(%q, %d, %d, %d) end
end]]):format(method, first, CLI, m.master.port, m.replica.pid, last, phase, CLI, m.master.pid, m.replica.pid,
              m.replica.port)
end

describe("tools through a cluster failover that loses acknowledged writes", function()
  local cluster
  local shards = {}   -- one per master: { master, replica, tag }

  setup(function()
    cluster = servers.cluster { masters = 3, replicas = 1 }
    for _, m in ipairs(cluster:masters()) do
      local id = m:cli("CLUSTER", "MYID")
      local shard = { master = m }
      for _, n in ipairs(cluster.nodes) do
        if n:cli("CLUSTER", "NODES"):find("myself,slave " .. id, 1, true) then shard.replica = n end
      end
      for c in ("abcdefghijklmnopqrstuvwxyz"):gmatch(".") do
        if not m:cli("GET", PREFIX .. "{" .. c .. "}"):match("^MOVED") then shard.tag = "{" .. c .. "}"; break end
      end
      assert.is_truthy(shard.replica and shard.tag, cluster:describe())
      shards[#shards + 1] = shard
    end
  end)
  teardown(function()
    for _, s in ipairs(shards) do os.execute("kill -CONT " .. s.replica.pid .. " 2>/dev/null") end
    if cluster then cluster:stop() end
  end)

  -- Waits until the replica has every byte of its master.
  local function synced(shard)
    helpers.wait_until("the replica to catch up", 30, function()
      local info = shard.master:cli("INFO", "replication")
      local offset = info:match("master_repl_offset:(%d+)")
      return offset and info:match("slave0:[^\n]*offset=(%d+)") == offset
    end)
  end

  it("import does not count writes the new master lacks as written (exit 1)", function()
    local shard, N, BATCH = shards[1], 200, 20
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    for i = 1, N do
      f:write((rs.export_line(shard.tag .. i, rs.bson.encode { _data = ("82%08X%08X"):format(1700000000, i) })))
    end
    f:close()
    synced(shard)
    -- Batches 3 and 4 reach the master only; before batch 5 it dies.
    local code, out, err = run_with(cluster.url, lossy(shard, "save_many", 3, 5, "before"), "import",
                                    { "--input", file, "--batch", tostring(BATCH) })
    os.remove(file)
    shard.master.pid = nil
    local present = tonumber(shard.replica:cli("DBSIZE"))
    assert.is_true(present < N, "the takeover lost nothing: " .. out .. err)
    local written = tonumber(out:match("(%d+) written") or err:match("(%d+) written"))
    assert.is_truthy(written, out .. err)
    assert.is_true(written <= present, ("%d written, but the current master has %d of %d: %s")
                                         :format(written, present, N, out .. err))
    assert.matches("not on the current master", out .. err)
    assert.equal(1, code, out .. err)
  end)

  it("locks --release does not say released when the lock is back after the failover (exit 1)", function()
    local shard = shards[2]
    local key = "rigatoni:lock:" .. shard.tag .. "shop:orders"
    assert.equal("OK", shard.master:cli("SET", key, "host-1-owner"))
    synced(shard)
    -- The release reaches the master only; right after it, the master dies.
    local code, out, err = run_with(cluster.url, lossy(shard, "release_lock", 1, 1, "after"), "locks",
                                    { "--release", shard.tag .. "shop:orders", "--yes" })
    shard.master.pid = nil
    assert.equal("host-1-owner", shard.replica:cli("GET", key), out .. err)
    assert.not_matches("released %(owner", out)
    assert.matches("back", out .. err)
    assert.equal(1, code, out .. err)
  end)

  it("locks --release --force does not say deleted when the lock is back after the failover (exit 1)", function()
    local shard = shards[3]
    local key = "rigatoni:lock:" .. shard.tag .. "shop:users"
    assert.equal("OK", shard.master:cli("SET", key, "host-2-owner"))
    synced(shard)
    -- The forced DEL (not the permission checks, which also go through
    -- store:command) reaches the master only; right after it, the master dies.
    local prelude = ([[
function ON(name, n, phase, args)
  if name ~= "command" or args[1] ~= "DEL" or args[2] ~= %q then return end
  if phase == "before" then detach(%q, %d, %d) else takeover(%q, %d, %d, %d) end
end]]):format(key, CLI, shard.master.port, shard.replica.pid, CLI, shard.master.pid, shard.replica.pid,
              shard.replica.port)
    local code, out, err = run_with(cluster.url, prelude, "locks",
                                    { "--release", shard.tag .. "shop:users", "--force", "--yes" })
    shard.master.pid = nil
    assert.equal("host-2-owner", shard.replica:cli("GET", key), out .. err)
    assert.not_matches("deleted %(forced", out)
    assert.matches("back", out .. err)
    assert.equal(1, code, out .. err)
  end)
end)
