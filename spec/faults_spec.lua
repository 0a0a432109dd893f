-- SPDX-License-Identifier: MIT
-- spec/faults_spec.lua -- the fault matrix (issue 8): what the store promises
-- when the server or the network misbehaves, on real redis-server processes.
--
-- For every fault: no crash, no leaked connection (the server's client count
-- and store:stats().pool agree afterwards), no token lost or half-written
-- (every token is read back byte for byte), and errors of the right kind
-- within the configured time bounds. Pool exhaustion by slow callers needs
-- threads: it is spec/c/test_pool_exhaust.c.

local rs = require "rigatoni_store"
local servers = require "support.servers"
local proxy = require "support.proxy"

local now, sleep = servers.now, servers.sleep

teardown(function() servers.stop_all() end)

-- ---------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------

-- A token of about `size` bytes whose bytes depend on `i`.
local function token(i, size)
  local hex = string.format("82%08X%08X", 1700000000 + i, i)
  local pad = size and string.rep(string.format("%02X", i % 256), size // 2) or ""
  return { _data = hex .. pad, n = i }
end

local catch = require("support.helpers").catch_object

-- Runs fn and returns its results and the seconds it took.
local function timed(fn, ...)
  local t0 = now()
  local r = table.pack(pcall(fn, ...))
  return now() - t0, table.unpack(r, 1, r.n)
end

-- Normal clients connected to `srv`, without the redis-cli asking.
local function normal_clients(srv)
  local n = 0
  for line in srv:cli("CLIENT", "LIST", "TYPE", "normal"):gmatch("[^\n]+") do
    if not line:find("cmd=client", 1, true) then n = n + 1 end
  end
  return n
end

-- No leaked connection: nothing lent out, and the server sees exactly the
-- connections the pool says are open (it may take the server a moment to
-- notice closed sockets).
local function assert_no_leak(store, srv, extra)
  local pool = store:stats().pool
  assert.equal(0, pool.in_use, "connections still lent out")
  assert.is_true(pool.open <= pool.size, "more open than pool_size")
  local want = pool.open + (extra or 0)
  local deadline = now() + 2
  local got = normal_clients(srv)
  while got ~= want and now() < deadline do
    sleep(0.05)
    got = normal_clients(srv)
  end
  assert.equal(want, got, "server-side connections vs store:stats().pool.open")
end

-- Every token in `saved` (collection -> raw bytes) reads back exactly.
local function assert_all_present(store, saved)
  for coll, bytes in pairs(saved) do
    assert.equal(bytes, store:get_raw(coll), "token " .. coll .. " lost or changed")
  end
end

-- A value is either absent or exactly one of the expected byte strings.
local function assert_absent_or_exact(store, coll, bytes)
  local got = store:get_raw(coll)
  assert.is_true(got == nil or got == bytes, "token " .. coll .. " half-written")
  return got ~= nil
end

-- ---------------------------------------------------------------------
-- Server killed and restarted mid-loop
-- ---------------------------------------------------------------------

describe("fault: server killed (SIGKILL) in the middle of a save loop", function()
  local function kill_loop(srv, store, n)
    local saved, failed, errors = {}, {}, {}
    -- The kill lands while saves are running: a background shell, not us.
    os.execute(("(sleep 0.15; kill -9 %d) >/dev/null 2>&1 &"):format(srv.pid))
    local restarted, i, deadline = false, 0, now() + 60
    -- n saves at least, and on until the kill has hit one (a busy machine
    -- may start the background shell late).
    while i < n or not restarted do
      i = i + 1
      assert.is_true(now() < deadline, "the kill never hit the loop")
      local coll, bytes = "loop" .. i, rs.bson.encode(token(i))
      local elapsed, ok, err = timed(store.save_raw, store, coll, bytes)
      if ok then
        saved[coll] = bytes
      else
        failed[coll] = bytes
        errors[#errors + 1] = { err = err, elapsed = elapsed }
      end
      if not ok and not restarted then
        srv.pid = nil           -- dead already; restart on the same port and dir
        srv:restart()
        restarted = true
      end
      if not restarted then sleep(0.005) end
    end
    return saved, failed, errors
  end

  local function check_errors(errors, max_attempts)
    assert.is_true(#errors >= 1)
    for _, e in ipairs(errors) do
      assert.equal("connection", e.err.kind, tostring(e.err))
      assert.is_true(e.err.retryable)
      assert.equal(max_attempts, e.err.attempts)
      -- 3 attempts with 50 + 100 ms (jittered) between them, each refused at once.
      assert.is_true(e.elapsed < 1.0, "a failed save took " .. e.elapsed .. " s")
    end
  end

  it("without persistence: saves fail as retryable connection errors, then succeed after the restart; tokens saved after it all read back", function()
    local srv = servers.redis{}
    local store <close> = rs.new{ url = srv.url, pool_size = 4, max_retries = 2,
                                 retry_base_delay = 0.05, connection_timeout = 1 }
    local saved, failed, errors = kill_loop(srv, store, 120)
    check_errors(errors, 3)
    -- Nothing persisted: what was saved before the kill is gone, whatever was
    -- saved after the restart is there byte for byte.
    local present = 0
    for coll, bytes in pairs(saved) do
      if assert_absent_or_exact(store, coll, bytes) then present = present + 1 end
    end
    for coll, bytes in pairs(failed) do assert_absent_or_exact(store, coll, bytes) end
    assert.is_true(present >= 1, "no save succeeded after the restart")
    assert.equal(tostring(present), srv:cli("DBSIZE"))
    assert_no_leak(store, srv)
    srv:stop()
  end)

  it("with appendonly + appendfsync always: every acknowledged save survives the kill, none is half-written", function()
    local srv = servers.redis{ args = { "--appendonly", "yes", "--appendfsync", "always" } }
    local store <close> = rs.new{ url = srv.url, pool_size = 4, max_retries = 2,
                                 retry_base_delay = 0.05, connection_timeout = 1 }
    local saved, failed, errors = kill_loop(srv, store, 120)
    check_errors(errors, 3)
    assert_all_present(store, saved)
    -- A save that failed may or may not have reached the AOF; never in part.
    for coll, bytes in pairs(failed) do assert_absent_or_exact(store, coll, bytes) end
    assert_no_leak(store, srv)
    srv:stop()
  end)
end)

-- ---------------------------------------------------------------------
-- CLIENT KILL of every pooled connection
-- ---------------------------------------------------------------------

describe("fault: CLIENT KILL TYPE normal of every pooled connection", function()
  local srv
  setup(function() srv = servers.redis{} end)
  teardown(function() srv:stop() end)

  it("with retries, every call succeeds and every token reads back; the pool reconnects", function()
    local store <close> = rs.new{ url = srv.url, pool_size = 3, max_retries = 2,
                                 retry_base_delay = 0.01 }
    local saved = {}
    for i = 1, 100 do
      if i % 10 == 0 then srv:cli("CLIENT", "KILL", "TYPE", "normal") end
      local coll, bytes = "killed" .. i, rs.bson.encode(token(i, 64))
      store:save_raw(coll, bytes)
      saved[coll] = bytes
      assert.equal(bytes, store:get_raw(coll))
    end
    assert_all_present(store, saved)
    local pool = store:stats().pool
    assert.is_true(pool.closed_broken >= 9, "closed_broken = " .. pool.closed_broken)
    assert.is_true(pool.created >= 10, "created = " .. pool.created)
    assert_no_leak(store, srv)
  end)

  it("with max_retries = 0, the one call that meets the dead socket fails as a retryable connection error; the next succeeds", function()
    local store <close> = rs.new{ url = srv.url, pool_size = 2, max_retries = 0 }
    store:save_raw("k0", "\5\0\0\0\0")
    srv:cli("CLIENT", "KILL", "TYPE", "normal")
    local elapsed, ok, err = timed(store.get_raw, store, "k0")
    assert.is_false(ok)
    assert.equal("connection", err.kind, tostring(err))
    assert.is_true(err.retryable)
    assert.equal(1, err.attempts)
    assert.is_true(elapsed < 0.5)
    assert.equal("\5\0\0\0\0", store:get_raw("k0"))
    assert_no_leak(store, srv)
  end)
end)

-- ---------------------------------------------------------------------
-- Server stalled past command_timeout
-- ---------------------------------------------------------------------

describe("fault: server stalled past command_timeout", function()
  local srv
  setup(function() srv = servers.redis{ debug = true } end)
  teardown(function() srv:stop() end)

  it("DEBUG SLEEP: calls fail with a retryable timeout after (max_retries + 1) x command_timeout, then work; no late reply is taken for a new one", function()
    local store <close> = rs.new{ url = srv.url, pool_size = 2, command_timeout = 0.25,
                                 max_retries = 1, retry_base_delay = 0.05 }
    local before = rs.bson.encode(token(1))
    store:save_raw("stall", before)
    os.execute(srv:cli_prefix() .. " DEBUG SLEEP 3 >/dev/null 2>&1 </dev/null &")
    srv:wait_blocked()
    local elapsed, ok, err = timed(store.save_raw, store, "stall", rs.bson.encode(token(2)))
    assert.is_false(ok)
    assert.equal("timeout", err.kind, tostring(err))
    assert.is_true(err.retryable)
    assert.equal(2, err.attempts)
    assert.is_true(elapsed >= 0.45 and elapsed < 2.0, "took " .. elapsed .. " s")
    assert.equal("PONG", srv:cli("PING"))      -- answered when the sleep is over
    -- The timed-out SET may have run once the server woke up: old or new
    -- bytes, never a mix; later calls get their own replies.
    local got = store:get_raw("stall")
    assert.is_true(got == before or got == rs.bson.encode(token(2)))
    store:save_raw("after", before)
    assert.equal(before, store:get_raw("after"))
    assert_no_leak(store, srv)
  end)

  it("CLIENT PAUSE WRITE: saves time out within the bound, reads keep working, nothing half-written", function()
    local store <close> = rs.new{ url = srv.url, pool_size = 2, command_timeout = 0.25,
                                 max_retries = 0 }
    local bytes = rs.bson.encode(token(7, 100))
    store:save_raw("paused", bytes)
    srv:cli("CLIENT", "PAUSE", "1000", "WRITE")
    local elapsed, ok, err = timed(store.save_raw, store, "paused", rs.bson.encode(token(8, 100)))
    assert.is_false(ok)
    assert.equal("timeout", err.kind, tostring(err))
    assert.equal(1, err.attempts)
    assert.is_true(elapsed >= 0.2 and elapsed < 0.6, "took " .. elapsed .. " s")
    assert.equal(bytes, store:get_raw("paused"))      -- reads are not paused
    sleep(1.0)
    local got = store:get_raw("paused")
    assert.is_true(got == bytes or got == rs.bson.encode(token(8, 100)))
    assert_no_leak(store, srv)
  end)
end)

-- ---------------------------------------------------------------------
-- maxclients reached
-- ---------------------------------------------------------------------

describe("fault: maxclients reached", function()
  it("a store needing a new connection retries (a retryable server error naming the limit), gets one once a slot frees; an open connection keeps working", function()
    local srv = servers.redis{}
    local store <close> = rs.new{ url = srv.url, pool_size = 2, max_retries = 2,
                                 retry_base_delay = 0.05 }
    store:save_raw("mc", "\5\0\0\0\0")
    -- Two clients blocked for 1.5 s hold the slots left.
    for i = 1, 2 do
      os.execute(srv:cli_prefix() .. " BLPOP never" .. i .. " 1.5 >/dev/null 2>&1 </dev/null &")
    end
    local deadline = now() + 2
    while not srv:cli("CLIENT", "LIST"):find("cmd=blpop.*cmd=blpop") do
      assert.is_true(now() < deadline, "blockers did not connect")
      sleep(0.02)
    end
    srv:cli("CONFIG", "SET", "maxclients", "3")       -- the store and the blockers
    -- Refused connections are closed by the server while we write to them:
    -- this also shows that no SIGPIPE ends the process (core/nosigpipe.c).
    local started = now()
    local elapsed, ok, err = timed(rs.new, { url = srv.url, max_retries = 2, retry_base_delay = 0.05,
                                            retry_max_delay = 0.05 })
    assert.is_false(ok)
    assert.equal("server", err.kind, tostring(err))
    assert.is_true(err.retryable)
    assert.matches("max number of clients", err.message, 1, true)
    assert.equal(3, err.attempts)
    assert.is_true(elapsed < 0.5)
    assert.equal("\5\0\0\0\0", store:get_raw("mc"))   -- its pooled connection survives
    -- Patient enough to outlast the blockers (1.5 s): the slot they free is taken.
    local other <close> = rs.new{ url = srv.url, max_retries = 40, retry_base_delay = 0.05,
                                  retry_max_delay = 0.1 }
    assert.is_true(now() - started > 1, "connected while the blockers held every slot")
    assert.equal("\5\0\0\0\0", other:get_raw("mc"))
    srv:cli("CONFIG", "SET", "maxclients", "10000")
    assert.equal(0, store:stats().pool.in_use)
    assert.equal(2, normal_clients(srv))               -- one each, nothing leaked
    srv:stop()
  end)
end)

-- ---------------------------------------------------------------------
-- maxmemory with noeviction
-- ---------------------------------------------------------------------

describe("fault: maxmemory reached with noeviction", function()
  local srv
  setup(function()
    srv = servers.redis{ debug = true, args = { "--maxmemory-policy", "noeviction" } }
  end)
  teardown(function() srv:stop() end)

  it("saves fail with a non-retryable server error (OOM) after exactly 1 attempt, nothing partial is written, reads keep working", function()
    local store <close> = rs.new{ url = srv.url, max_retries = 3, retry_base_delay = 0.2 }
    local old = rs.bson.encode(token(1))
    store:save_raw("oom", old)
    srv:cli("DEBUG", "POPULATE", "4000", "filler", "1000")
    srv:cli("CONFIG", "SET", "maxmemory", "1mb")
    local dbsize = srv:cli("DBSIZE")

    local elapsed, ok, err = timed(store.save_resume_token, store, "oom", token(2))
    assert.is_false(ok)
    assert.equal("server", err.kind, tostring(err))
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.matches("OOM", err.message, 1, true)
    assert.is_true(elapsed < 0.15, "an OOM reply was retried (" .. elapsed .. " s)")

    -- A batch (import) fails as a whole; a new lock is refused too.
    err = catch(store.save_many, store, { { "oom_a", old }, { "oom_b", old } })
    assert.equal("server", err.kind, tostring(err))
    assert.equal(1, err.attempts)
    err = catch(store.try_acquire_lock, store, "rigatoni:lock:db:oom", "me", 10)
    assert.equal("server", err.kind, tostring(err))

    assert.equal(dbsize, srv:cli("DBSIZE"))            -- nothing written
    assert.equal(old, store:get_raw("oom"))            -- old token intact
    assert.is_nil(store:get_raw("oom_a"))
    assert.is_nil(store:get_raw("oom_b"))

    srv:cli("CONFIG", "SET", "maxmemory", "0")
    store:save_resume_token("oom", token(2))
    assert.same(token(2), store:get_resume_token("oom"))
    assert_no_leak(store, srv)
  end)
end)

-- ---------------------------------------------------------------------
-- A TCP proxy that drops or delays traffic mid-reply
-- ---------------------------------------------------------------------

describe("fault: proxy dropping or delaying traffic mid-reply", function()
  local srv, px
  local big = rs.bson.encode(token(42, 200000))     -- a reply of many chunks
  setup(function()
    srv = servers.redis{}
    px = proxy.start(srv)
    srv:set_raw("rigatoni:resume_token:big", big)
  end)
  teardown(function()
    px:stop()
    srv:stop()
  end)
  before_each(function() px:set("pass") end)

  local function open(opts)
    opts.url = px.url
    return rs.new(opts)
  end

  it("a connection cut half-way through a reply is a retryable connection error after every attempt; the next call reads the whole token", function()
    local store <close> = open{ pool_size = 2, max_retries = 2, retry_base_delay = 0.01 }
    assert.equal(big, store:get_raw("big"))
    px:set("cut", 1000)
    local elapsed, ok, err = timed(store.get_raw, store, "big")
    assert.is_false(ok)
    assert.equal("connection", err.kind, tostring(err))
    assert.is_true(err.retryable)
    assert.equal(3, err.attempts)
    assert.is_true(elapsed < 1.0, "took " .. elapsed .. " s")
    px:set("pass")
    assert.equal(big, store:get_raw("big"))
    assert.is_true(store:stats().pool.closed_broken >= 3)
    assert.equal(store:stats().pool.open, px:conns())
    assert_no_leak(store, srv, 0)
  end)

  it("a reply that stalls half-way is a timeout within command_timeout per attempt; the late bytes never reach a later call", function()
    local store <close> = open{ pool_size = 2, command_timeout = 0.3, max_retries = 1,
                               retry_base_delay = 0.01 }
    assert.equal(big, store:get_raw("big"))
    px:set("stall", 5000)
    local elapsed, ok, err = timed(store.get_raw, store, "big")
    assert.is_false(ok)
    assert.equal("timeout", err.kind, tostring(err))
    assert.equal(2, err.attempts)
    assert.is_true(elapsed >= 0.55 and elapsed < 1.2, "took " .. elapsed .. " s")
    px:set("pass")
    store:save_raw("small", "\5\0\0\0\0")
    assert.equal("\5\0\0\0\0", store:get_raw("small"))
    assert.equal(big, store:get_raw("big"))
    assert.equal(store:stats().pool.open, px:conns())
  end)

  it("a delay shorter than command_timeout is only slower; a longer one is a timeout, and the token is intact afterwards", function()
    local store <close> = open{ pool_size = 1, command_timeout = 0.5, max_retries = 0 }
    px:set("delay", 0.1)
    assert.equal(big, store:get_raw("big"))
    px:set("delay", 0.8)
    local elapsed, ok, err = timed(store.save_raw, store, "delayed", "\5\0\0\0\0")
    assert.is_false(ok)
    assert.equal("timeout", err.kind, tostring(err))
    assert.is_true(elapsed >= 0.45 and elapsed < 1.0, "took " .. elapsed .. " s")
    px:set("pass")
    sleep(0.9)                  -- the proxy relays the late reply into a closed socket
    -- The SET itself reached the server: it is there, whole.
    assert.equal("\5\0\0\0\0", store:get_raw("delayed"))
    assert.equal(big, store:get_raw("big"))
    assert.equal(store:stats().pool.open, px:conns())
  end)
end)
