-- SPDX-License-Identifier: MIT
-- spec/outcomes_spec.lua -- no retry that lies (issue 12): an attempt whose
-- reply is lost may have run on the server, so the store either learns the
-- outcome from the server's state or raises `unknown`; it never reports
-- the opposite of what happened. The fault proxy forwards the request and
-- drops its reply once (stall_once), or holds requests (hold) to stand for
-- bytes still queued in the client's kernel.

local rs = require "rigatoni_store"
local servers = require "support.servers"
local proxy = require "support.proxy"
local helpers = require "support.helpers"

local catch, assert_kind = helpers.catch_object, helpers.assert_kind
local now, sleep = servers.now, servers.sleep

teardown(function() servers.stop_all() end)

-- A server behind a proxy and a store that talks through it, with a short
-- command timeout so that a dropped reply costs 0.3 s.
local function start(opts)
  local srv = servers.redis{}
  local p = proxy.start(srv)
  local cfg = { url = p.url, command_timeout = 0.3, max_retries = 2, retry_base_delay = 0.01,
                retry_max_delay = 0.02 }
  for k, v in pairs(opts or {}) do cfg[k] = v end
  local store = rs.new(cfg)
  return srv, p, store
end

local function teardown_all(srv, p, store)
  store:close()
  p:stop()
  srv:stop()
end

-- Runs fn(srv, p, store) and always stops what setup started.
local function with_proxy(opts, fn)
  if not fn then opts, fn = nil, opts end
  local srv, p, store = start(opts)
  local ok, err = pcall(fn, srv, p, store)
  teardown_all(srv, p, store)
  if not ok then error(err, 0) end
end

local token_key = "rigatoni:resume_token:"
local bytes1 = rs.bson.encode{ _data = "8265000001" }
local bytes2 = rs.bson.encode{ _data = "8265000002" }

-- Scripts go by EVALSHA: one call first, so that the lost reply is the
-- script's own and not a NOSCRIPT.
local function load_scripts(store)
  assert.is_true(store:try_acquire_lock("warm", "me", 30))
  store:save_resume_token("warm", rs.bson.decode(bytes1), { lock = "warm", owner = "me" })
  store:delete_resume_token("warm", { if_value = bytes1 })
  assert.is_true(store:release_lock("warm", "me"))
end

local function assert_unknown(err)
  assert_kind("unknown", err)
  assert.is_false(err.retryable)
  assert.is_true(err.attempts >= 1, "attempts: " .. tostring(err.attempts))
end

describe("a lost reply after the command ran", function()
  it("release_lock reports released, not 'was not ours'", function()
    with_proxy(function(srv, p, store)
      load_scripts(store)
      assert.is_true(store:try_acquire_lock("lk", "me", 30))
      p:set("stall_once", 0)
      assert.is_true(store:release_lock("lk", "me"))
      assert.equal("0", srv:cli("EXISTS", "lk"))
    end)
  end)

  it("release_lock raises unknown when another owner holds the lock afterwards", function()
    with_proxy(function(srv, p, store)
      load_scripts(store)
      assert.is_true(store:try_acquire_lock("lk", "me", 30))
      p:set("stall_once", 0)
      -- While our release waits for its lost reply, somebody takes the lock.
      os.execute(("(sleep 0.1; %s SET lk other >/dev/null) &"):format(srv:cli_prefix()))
      assert_unknown(catch(store.release_lock, store, "lk", "me"))
      assert.equal("other", srv:cli("GET", "lk"))
    end)
  end)

  it("save_many{nx=true} reports the tokens it wrote as written, not skipped", function()
    with_proxy(function(srv, p, store)
      p:set("stall_once", 0)
      local w = store:save_many({ { "a", bytes1 }, { "b", bytes2 } }, { nx = true })
      assert.same({ true, true }, w)
      assert.equal(bytes1, store:get_raw("a"))
      assert.equal(bytes2, store:get_raw("b"))
    end)
  end)

  it("save_many{nx=true} keeps the replies read before the loss, checks only the rest", function()
    with_proxy(function(srv, p, store)
      srv:set_raw(token_key .. "c", bytes2)          -- really skipped: another value
      -- The first reply (":...", "+OK\r\n" is 5 bytes) passes, the rest is lost.
      p:set("stall_once", 5)
      local w = store:save_many({ { "a", bytes1 }, { "b", bytes1 } }, { nx = true })
      assert.same({ true, true }, w)
      assert.same({ false }, store:save_many({ { "c", bytes1 } }, { nx = true }))
      assert.equal(bytes2, store:get_raw("c"))
    end)
  end)

  it("a fenced save whose lock expired before the retry reports written, not not_owner", function()
    with_proxy({ command_timeout = 0.4 }, function(srv, p, store)
      load_scripts(store)
      assert.is_true(store:try_acquire_lock("lk", "me", 0.2))
      p:set("stall_once", 0)
      store:save_resume_token("f", rs.bson.decode(bytes1), { lock = "lk", owner = "me" })
      assert.equal(bytes1, store:get_raw("f"))
      assert.equal("0", srv:cli("EXISTS", "lk"))    -- expired meanwhile
    end)
  end)

  it("delete_resume_token raises unknown instead of 'was not there'", function()
    with_proxy(function(srv, p, store)
      store:save_raw("d", bytes1)
      p:set("stall_once", 0)
      assert_unknown(catch(store.delete_resume_token, store, "d"))
      assert.is_nil(store:get_raw("d"))
    end)
  end)

  it("delete_resume_token{if_value=} raises unknown instead of 'changed'", function()
    with_proxy(function(srv, p, store)
      load_scripts(store)
      store:save_raw("d", bytes1)
      p:set("stall_once", 0)
      assert_unknown(catch(store.delete_resume_token, store, "d", { if_value = bytes1 }))
      assert.is_nil(store:get_raw("d"))
    end)
  end)

  it("expire (NX) raises unknown instead of 'already had a TTL'", function()
    with_proxy(function(srv, p, store)
      store:save_raw("e", bytes1)
      p:set("stall_once", 0)
      assert_unknown(catch(store.expire, store, "e", 100))
      assert.is_true(tonumber(srv:cli("PTTL", token_key .. "e")) > 0)
    end)
  end)

  it("store:command INCR is not applied twice: it raises unknown", function()
    with_proxy(function(srv, p, store)
      p:set("stall_once", 0)
      local err = catch(store.command, store, "INCR", "n")
      assert_unknown(err)
      assert.equal(1, err.attempts)
      assert.equal("1", srv:cli("GET", "n"))
    end)
  end)

  it("store:command{idempotent=true} is retried after a lost reply", function()
    with_proxy(function(srv, p, store)
      p:set("stall_once", 0)
      assert.equal("OK", store:command({ idempotent = true }, "SET", "k", "v"))
      assert.equal("v", srv:cli("GET", "k"))
    end)
  end)

  it("store:command refuses unknown options", function()
    with_proxy(function(srv, p, store)
      local ok, err = pcall(store.command, store, { idempotant = true }, "PING")
      assert.is_false(ok)
      assert.matches("unknown option", tostring(err))
    end)
  end)

  it("idempotent operations still retry: a plain save and a read", function()
    with_proxy(function(srv, p, store)
      p:set("stall_once", 0)
      store:save_raw("s", bytes1)
      p:set("stall_once", 0)
      assert.equal(bytes1, store:get_raw("s"))
    end)
  end)
end)

describe("a pooled connection the server closed", function()
  it("fails before sending, so even store:command is retried after a restart", function()
    local srv = servers.redis{}
    local store <close> = rs.new{ url = srv.url, max_retries = 2, retry_base_delay = 0.01 }
    finally(function() srv:stop() end)
    assert.equal("PONG", store:command("PING"))
    srv:restart()                 -- the pooled connection is dead now
    assert.equal("1", store:command("INCR", "n"))
    assert.equal("1", srv:cli("GET", "n"))
  end)
end)

describe("an abandoned connection", function()
  it("is reset, so a SET still queued on it never lands after a later save", function()
    with_proxy({ max_retries = 0 }, function(srv, p, store)
      p:set("hold", 1.0)
      local err = catch(store.save_raw, store, "t", bytes1)
      assert_kind("timeout", err)
      p:set("pass")
      store:save_raw("t", bytes2)
      local t0 = now()
      while now() - t0 < 1.5 do
        assert.equal(bytes2, srv:cli_raw("GET", token_key .. "t"), "the old SET landed late")
        sleep(0.1)
      end
    end)
  end)
end)

describe("wait_timeout", function()
  local srv
  setup(function() srv = servers.redis{} end)
  teardown(function() srv:stop() end)

  for _, case in ipairs{
    { wait_timeout = 0, command_timeout = 5 },
    { wait_timeout = 5, command_timeout = 5 },
    { wait_timeout = 6, command_timeout = 5 },
  } do
    it(("%gs with command_timeout %gs is a config error naming both"):format(case.wait_timeout,
       case.command_timeout), function()
      local err = catch(rs.new, { url = srv.url, wait_replicas = 1,
                                  wait_timeout = case.wait_timeout,
                                  command_timeout = case.command_timeout })
      assert_kind("config", err)
      assert.matches("wait_timeout", err.message)
      assert.matches("command_timeout", err.message)
    end)
  end

  it("is not checked without wait_replicas", function()
    local store <close> = rs.new{ url = srv.url, wait_timeout = 0, command_timeout = 0.5 }
    assert.is_true(store:ping())
  end)
end)

describe("a TLS handshake", function()
  local certs = require "support.certs"
  local pki, srv, p

  setup(function()
    local dir = os.getenv("RS_TEST_ROOT") or "/tmp"
    pki = certs.make(io.popen("mktemp -d " .. servers.quote(dir .. "/pki.XXXXXX")):read("l"))
    srv = servers.redis{ tls = { cert = pki.server_cert, key = pki.server_key, ca = pki.ca } }
    p = proxy.start(srv)
  end)
  teardown(function()
    p:stop()
    srv:stop()
  end)

  local function url() return "rediss://127.0.0.1:" .. p.port end

  it("cut by a reset is retried as a connection error", function()
    p:set("reset_once")
    local store <close> = rs.new{ url = url(), tls = { ca_file = pki.ca }, max_retries = 2,
                                  retry_base_delay = 0.01 }
    assert.is_true(store:ping())
    p:set("reset_once")
    local err = catch(rs.new, { url = url(), tls = { ca_file = pki.ca }, max_retries = 0 })
    assert_kind("connection", err)
    assert.is_true(err.retryable, tostring(err))
    assert.matches("TLS handshake", err.message, 1, true)
  end)

  it("refused by the certificate stays final", function()
    local err = catch(rs.new, { url = url(), tls = { ca_file = pki.other_ca }, max_retries = 2 })
    assert_kind("connection", err)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
  end)
end)

describe("an error reply, which says the command did not run", function()
  local master, replica
  setup(function()
    master = servers.redis{}
    replica = servers.redis{ args = { "--replicaof", "127.0.0.1", tostring(master.port) } }
  end)
  teardown(function()
    replica:stop()
    master:stop()
  end)

  it("is retried like any transient error, also for a durable NX save", function()
    -- READONLY (a failover in progress) on every write: nothing ran, so
    -- repeating is safe, WAIT or not.
    local store <close> = rs.new{ url = replica.url, wait_replicas = 1, wait_timeout = 0.1,
                                  max_retries = 2, retry_base_delay = 0.01 }
    local err = catch(store.save_many, store, { { "a", bytes1 }, { "b", bytes2 } }, { nx = true })
    assert_kind("server", err)
    assert.matches("READONLY", err.message, 1, true)
    assert.is_true(err.retryable)
    assert.equal(3, err.attempts)
  end)
end)
