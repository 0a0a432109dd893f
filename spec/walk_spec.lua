-- SPDX-License-Identifier: MIT
-- A walk over the tokens (resume_tokens, and every script built on it) is
-- complete or it fails: a walk that meets another server process (a
-- restart, a Sentinel failover), a read of values that fails after SCAN
-- moved on, or a slot moved mid-walk in a cluster must never end short
-- with success. Each case counts the unique collections seen; a walk that
-- started over still yields each name once (rows = unique names).
local rs = require "rigatoni_store"
local servers = require "support.servers"
local proxy = require "support.proxy"
local system = require "system"
local helpers = require "support.helpers"

local function token(i) return { _data = ("82%08X%08X"):format(i, i % 97) } end

-- Saves `n` tokens c1..cn in one redis-cli --pipe (fast, exact bytes).
local function load(srv, n, prefix, value)
  local parts = {}
  for i = 1, n do
    parts[i] = servers.resp{ "SET", "rigatoni:resume_token:" .. prefix .. i,
                             value and value(i) or rs.bson.encode(token(i)) }
  end
  srv:pipe(table.concat(parts))
end

-- Drives store:resume_tokens(opts) by hand, calling disrupt() once after
-- `after` rows. A raised error is kept; with `persist`, the walk is called
-- again (as a caller that catches and goes on would) up to 3 more times.
-- Returns the set of collections seen, the number of rows, and the error
-- of the last call when it raised (nil when the walk ended).
local function walk(store, opts, after, disrupt, persist)
  local iter, state, control, closing = store:resume_tokens(opts)
  local scan <close> = closing
  local seen, rows, failures = {}, 0, 0
  local last_err
  while true do
    local ok, collection = pcall(iter, state, control)
    if ok then
      last_err = nil
      if collection == nil then break end
      seen[collection] = true
      rows = rows + 1
      if rows == after then disrupt() end
    else
      last_err = collection
      failures = failures + 1
      if not persist or failures > 3 then break end
      persist()
    end
  end
  return seen, rows, last_err
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

local with_log = helpers.with_log

local wait_until = helpers.wait_until

describe("a walk that meets another server process", function()
  it("after kill -9 and a restart with AOF on the same port, starts over: every token is listed", function()
    local srv = servers.redis{ args = { "--appendonly", "yes", "--appendfsync", "always" } }
    finally(function() srv:stop() end)
    local n = 2000
    load(srv, n, "c")
    local store <close> = rs.new{ url = srv.url, max_retries = 20, retry_max_delay = 0.2 }
    local seen, rows, err
    local log = with_log(function()
      seen, rows, err = walk(store, { batch = 100 }, 500, function()
        srv:kill()
        srv:restart()
      end)
    end)
    assert.is_nil(err)
    assert.are.equal(n, count(seen))
    assert.are.equal(n, rows)                         -- started over, yet each name once
    assert.matches("warn: list: .*from the start", log)
  end)

  it("raises a connection error saying the listing was interrupted after the sixth restart", function()
    local srv = servers.redis{ args = { "--appendonly", "yes", "--appendfsync", "always" } }
    finally(function() srv:stop() end)
    -- Names are yielded once per walk, so each restart needs 100 new ones:
    -- 3000 leave room for six restarts however late the read-ahead meets them.
    load(srv, 3000, "c")
    local store <close> = rs.new{ url = srv.url, max_retries = 20, retry_max_delay = 0.2 }
    local iter, state, control, closing = store:resume_tokens{ batch = 100 }
    local scan <close> = closing
    local rows, restarts = 0, 0
    local err = helpers.catch_object(function()
      while iter(state, control) do
        rows = rows + 1
        if rows % 100 == 0 then         -- each restart sends the walk back to the start
          restarts = restarts + 1
          srv:kill()
          srv:restart()
        end
      end
    end)
    helpers.assert_kind("connection", err)
    assert.matches("listing interrupted", err.message, 1, true)
    -- The walk reads one batch ahead (prefetch), so a batch in hand may
    -- come from the process before the last restart, and a restart while
    -- a step is on the wire is met once with the next: the sixth process
    -- met may take more than 6 restarts, never fewer.
    assert.is_true(restarts >= 6, "restarts: " .. restarts)
    helpers.assert_kind("connection", helpers.catch_object(iter, state, control))   -- and stays failed
  end)

  it("starts over after a restart also for a user that may not run INFO (new connection = new process)", function()
    local srv = servers.redis{ args = { "--appendonly", "yes", "--appendfsync", "always",
                                        "--user", "walker", "on", ">walk-pw", "~*", "+@all", "-info" } }
    finally(function() srv:stop() end)
    local n = 2000
    load(srv, n, "c")
    local url = srv.url:gsub("^redis://", "redis://walker:walk-pw@")
    local store <close> = rs.new{ url = url, max_retries = 20, retry_max_delay = 0.2 }
    assert.matches("NOPERM", helpers.catch_object(store.command, store, "INFO", "server").message)
    local calm_seen, calm_rows, calm_err = walk(store, { batch = 100 }, -1)
    assert.is_nil(calm_err)
    assert.are.equal(n, count(calm_seen))
    assert.are.equal(n, calm_rows)                    -- no restart on a healthy connection
    local seen, rows, err = walk(store, { batch = 100 }, 500, function()
      srv:kill()
      srv:restart()
    end)
    assert.is_nil(err)
    assert.are.equal(n, count(seen))
    assert.are.equal(n, rows)
  end)
end)

describe("a walk over Sentinel during a failover", function()
  local nodes, sentinels, url = {}, {}, nil

  local function master_port()
    return tonumber(sentinels[1]:cli("SENTINEL", "get-master-addr-by-name", "mymaster"):match("(%d+)%s*$"))
  end

  lazy_setup(function()
    nodes[1] = servers.redis{}
    nodes[2] = servers.redis{ args = { "--replicaof", "127.0.0.1", tostring(nodes[1].port) } }
    wait_until("replica online", 10, function()
      return nodes[1]:cli("INFO", "replication"):find("state=online", 1, true)
    end)
    local hosts = {}
    for i = 1, 3 do
      sentinels[i] = servers.sentinel{ master = nodes[1], down_after_ms = 1000, failover_timeout_ms = 3000 }
      hosts[i] = "127.0.0.1:" .. sentinels[i].port
    end
    url = "redis://" .. table.concat(hosts, ",")
    wait_until("sentinels to see the replica and each other", 15, function()
      local info = sentinels[1]:cli("SENTINEL", "master", "mymaster")
      return info:find("num%-slaves%s+1") and info:find("num%-other%-sentinels%s+2")
    end)
  end)

  lazy_teardown(function()
    for _, s in ipairs(sentinels) do s:stop() end
    for _, node in ipairs(nodes) do node:stop() end
  end)

  it("starts over on the new master: every token saved with WAIT is listed", function()
    local n = 2000
    local durable <close> = rs.new{ url = url, wait_replicas = 1, wait_timeout = 3 }
    for first = 1, n, 500 do                 -- acknowledged by the replica: survives the failover
      local items = {}
      for i = first, first + 499 do items[#items + 1] = { "c" .. i, rs.bson.encode(token(i)) } end
      durable:save_many(items)
    end
    local store <close> = rs.new{ url = url, max_retries = 60, retry_max_delay = 0.25 }
    local before = master_port()
    local old = before == nodes[1].port and nodes[1] or nodes[2]
    local seen, rows, err = walk(store, { batch = 100 }, 500, function()
      sentinels[1]:cli("SENTINEL", "FAILOVER", "mymaster")
      wait_until("failover", 15, function() return master_port() ~= before end)
      wait_until("the old master to be a replica", 15, function() return old:cli("ROLE"):match("^slave") end)
    end)
    assert.is_nil(err)
    assert.are.equal(n, count(seen))
    assert.are.equal(n, rows)
  end)
end)

describe("a walk whose read of values fails after SCAN moved on", function()
  it("raises, and raises again on further calls instead of skipping the batch", function()
    local srv = servers.redis{}
    finally(function() srv:stop() end)
    local n = 600
    -- Big values: an MGET reply is many chunks, a SCAN reply one small chunk.
    load(srv, n, "c", function(i) return rs.bson.encode{ _data = ("82%08X"):format(i) .. ("0"):rep(4000) } end)
    local px = proxy.start(srv)
    finally(function() px:stop() end)
    local store <close> = rs.new{ url = px.url, max_retries = 1, retry_base_delay = 0.01 }
    -- Mid-batch, the proxy starts closing each connection after 16000 bytes
    -- of reply: the next SCAN reply passes whole, its MGET cannot.
    local seen, _, err = walk(store, { batch = 100 }, 150, function() px:set("cut", 16000) end,
                              function() px:set("pass") end)
    assert.is_truthy(err, "the walk ended normally after a failed read")
    helpers.assert_kind("connection", err)        -- the fourth call: still failing
    assert.matches("the listing failed earlier", err.message, 1, true)
    assert.is_false(err.retryable)
    assert.is_true(count(seen) < n)
  end)
end)

describe("a cluster walk during a slot migration", function()
  local cluster, store
  after_each(function()
    if store then store:close() end
    if cluster then cluster:stop() end
    cluster, store = nil, nil
  end)

  -- A fresh 3-master cluster with tokens on every master; returns
  -- walk_moving(half) and the number of tokens.
  local function open_cluster()
    cluster = servers.cluster{ masters = 3, replicas = 0 }
    local masters = cluster:masters()
    store = rs.new{ url = cluster.url, cluster_mode = true, max_retries = 20,
                    retry_max_delay = 0.25 }
    local function owner(key)
      for _, m in ipairs(masters) do
        if not m:cli("GET", key):match("^MOVED") then return m end
      end
    end
    -- One hash tag per master, 50 tokens in its slot; 300 more spread out.
    local tags, per_tag = {}, 50
    for c in ("abcdefghijklmnopqrstuvwxyz"):gmatch(".") do
      local m = owner("rigatoni:resume_token:{" .. c .. "}")
      if not tags[m] then tags[m] = c end
    end
    for _, m in ipairs(masters) do
      assert.is_truthy(tags[m], "no tag for a master")
      for i = 1, per_tag do store:save_resume_token("{" .. tags[m] .. "}" .. i, token(i)) end
    end
    for i = 1, 300 do store:save_resume_token("spread" .. i, token(i)) end
    local total = 300 + 3 * per_tag

    -- Moves the slot of `from`'s tag to `to`: SETSLOT IMPORTING/MIGRATING,
    -- MIGRATE, then SETSLOT NODE on every master.
    local function move(from, to, half)
      local slot = to:cli("CLUSTER", "KEYSLOT", "{" .. tags[from] .. "}")
      local to_id, from_id = to:cli("CLUSTER", "MYID"), from:cli("CLUSTER", "MYID")
      assert.are.equal("OK", to:cli("CLUSTER", "SETSLOT", slot, "IMPORTING", from_id))
      assert.are.equal("OK", from:cli("CLUSTER", "SETSLOT", slot, "MIGRATING", to_id))
      local keys = {}
      for k in from:cli("CLUSTER", "GETKEYSINSLOT", slot, "1000"):gmatch("[^\n]+") do keys[#keys + 1] = k end
      assert.are.equal(per_tag, #keys)
      assert.are.equal("OK", from:cli("MIGRATE", "127.0.0.1", tostring(to.port), "", "0", "5000",
                                      "KEYS", table.unpack(keys, 1, half and per_tag // 2 or per_tag)))
      if half then return end          -- the migration stays open
      for _, m in ipairs{ to, from, table.unpack(masters) } do m:cli("CLUSTER", "SETSLOT", slot, "NODE", to_id) end
    end

    -- The first master is walked whole, then the second one begins: the
    -- third one's slot moves to the first (or half of its keys, `half`).
    local function walk_moving(half)
      local first, first_size, seen, rows, moved = nil, nil, {}, 0, false
      local iter, state, control, closing = store:resume_tokens{ batch = 20 }
      local scan <close> = closing
      while true do
        local ok, collection = pcall(iter, state, control)
        if not ok then return seen, moved, collection end
        if collection == nil then return seen, moved end
        seen[collection] = true
        rows = rows + 1
        if not first then
          first = owner("rigatoni:resume_token:" .. collection)
          first_size = tonumber(first:cli("DBSIZE"))
        elseif not moved and rows == first_size + 5 then
          moved = true
          local second = owner("rigatoni:resume_token:" .. collection)
          assert.are_not.equal(first, second)
          for _, m in ipairs(masters) do
            if m ~= first and m ~= second then move(m, first, half) end
          end
        end
      end
    end
    return walk_moving, total
  end

  it("lists every token of a slot moved mid-walk from a master not yet walked to one already walked", function()
    local walk_moving, total = open_cluster()
    local seen, moved, err = walk_moving(false)
    assert.is_true(moved)
    assert.is_nil(err)
    assert.are.equal(total, count(seen))
  end)

  it("raises when a slot is left migrating (half its keys moved) rather than end short", function()
    local walk_moving, total = open_cluster()
    local seen, moved, err = walk_moving(true)
    assert.is_true(moved)
    if err then
      helpers.assert_kind("connection", err)
      assert.matches("listing interrupted", err.message, 1, true)
    else
      assert.are.equal(total, count(seen))
    end
    assert.is_truthy(err, "a walk during an open migration ended as if complete")
  end)
end)
