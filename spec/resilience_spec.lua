-- spec/resilience_spec.lua -- restarts, killed connections, authentication,
-- refused connections and command timeouts, on real redis-server processes.

local rs = require "rigatoni_store"
local servers = require "support.servers"
local system = require "system"

local TOKEN = { _data = "8265A1B2C3000000012B022C0100" }

local helpers = require "support.helpers"
local catch, assert_kind = helpers.catch, helpers.assert_kind

teardown(function() servers.stop_all() end)

describe("server restart", function()
  local srv
  before_each(function() srv = servers.redis{} end)
  after_each(function() srv:stop() end)

  it("save and get succeed again after the server restarted", function()
    local store <close> = rs.new{ url = srv.url, pool_size = 2 }
    store:save_resume_token("before", TOKEN)
    assert.same(TOKEN, store:get_resume_token("before"))
    local port = srv.port
    srv:restart()
    assert.equal(port, srv.port)
    -- The pooled connections are dead; the store must notice and reconnect.
    store:save_resume_token("after", TOKEN)
    assert.same(TOKEN, store:get_resume_token("after"))
    assert.is_nil(store:get_resume_token("before"))  -- nothing persisted
    assert.equal("1", srv:cli("DBSIZE"))
  end)

  it("survives a crash (SIGKILL) and a start on the same port", function()
    local store <close> = rs.new{ url = srv.url }
    store:save_resume_token("a", TOKEN)
    srv:kill()
    srv:restart()
    assert.is_nil(store:get_resume_token("a"))
    store:save_resume_token("b", TOKEN)
    assert.same(TOKEN, store:get_resume_token("b"))
  end)

  it("with max_retries = 0 a stopped server fails at once: connection, 1 attempt", function()
    local store <close> = rs.new{ url = srv.url, max_retries = 0 }
    store:save_resume_token("a", TOKEN)
    srv:stop()
    local err = catch(store.get_resume_token, store, "a")
    assert_kind("connection", err)
    assert.equal(1, err.attempts)
    assert.is_true(err.retryable)
  end)

  it("with max_retries = 2 a stopped server fails after 3 attempts", function()
    local store <close> = rs.new{ url = srv.url, max_retries = 2 }
    store:save_resume_token("a", TOKEN)
    srv:stop()
    local t0 = system.gettime()
    local err = catch(store.save_resume_token, store, "a", TOKEN)
    local elapsed = system.gettime() - t0
    assert_kind("connection", err)
    assert.equal(3, err.attempts)
    -- Two waits between attempts (about 100 ms and 200 ms, with jitter).
    assert.is_true(elapsed < 3, "took " .. elapsed .. " s")
  end)

  it("rs.new on a stopped server is a connection error after its retries", function()
    srv:stop()
    local err = catch(rs.new, { url = srv.url, max_retries = 1 })
    assert_kind("connection", err)
    assert.equal(2, err.attempts)
  end)
end)

describe("killed connections", function()
  local srv
  setup(function() srv = servers.redis{} end)
  teardown(function() srv:stop() end)

  local function normal_clients()
    local n = 0
    for line in srv:cli("CLIENT", "LIST", "TYPE", "normal"):gmatch("[^\n]+") do
      if line:find("cmd=client", 1, true) == nil then n = n + 1 end
    end
    return n
  end

  it("a pooled connection killed by CLIENT KILL is replaced transparently", function()
    local store <close> = rs.new{ url = srv.url, pool_size = 1 }
    store:save_resume_token("users", TOKEN)
    for _ = 1, 3 do
      assert.is_true(normal_clients() >= 1, "the store holds no connection")
      -- redis-cli's own connection is killed as well; its output is moot.
      srv:cli("CLIENT", "KILL", "TYPE", "normal")
      assert.equal(0, normal_clients())
      assert.same(TOKEN, store:get_resume_token("users"))
    end
    store:save_resume_token("orders", TOKEN)
    assert.same(TOKEN, store:get_resume_token("orders"))
  end)

  it("a killed connection does not break listing", function()
    local store <close> = rs.new{ url = srv.url, pool_size = 1 }
    store:save_resume_token("users", TOKEN)
    srv:cli("CLIENT", "KILL", "TYPE", "normal")
    local tokens = store:list_resume_tokens()
    assert.same(TOKEN, tokens.users)
  end)
end)

describe("authentication", function()
  local PASSWORD = "s3cr3t-Pw_7"
  local srv
  setup(function() srv = servers.redis{ password = PASSWORD } end)
  teardown(function() srv:stop() end)

  local function url(userinfo)
    return "redis://" .. userinfo .. "@127.0.0.1:" .. srv.port
  end

  it("the right password works", function()
    local store <close> = rs.new{ url = url(":" .. PASSWORD) }
    store:save_resume_token("users", TOKEN)
    assert.same(TOKEN, store:get_resume_token("users"))
  end)

  it("the right password with the default user works", function()
    local store <close> = rs.new{ url = url("default:" .. PASSWORD) }
    store:save_resume_token("users", TOKEN)
    assert.same(TOKEN, store:get_resume_token("users"))
  end)

  it("a wrong password is an auth error, not retried, password not shown", function()
    local wrong = "WrongPass-991"
    local err = catch(rs.new, { url = url(":" .. wrong), max_retries = 3 })
    assert_kind("auth", err)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.not_matches(wrong, tostring(err), 1, true)
    assert.not_matches(PASSWORD, tostring(err), 1, true)
  end)

  it("a wrong user and password is an auth error hiding both", function()
    local err = catch(rs.new, { url = url("mallory:Guess-123") })
    assert_kind("auth", err)
    assert.not_matches("Guess-123", tostring(err), 1, true)
    assert.not_matches("mallory", tostring(err), 1, true)
  end)

  it("no password on a server that requires one is an auth error", function()
    local err = catch(rs.new, { url = "redis://127.0.0.1:" .. srv.port })
    assert_kind("auth", err)
    assert.is_false(err.retryable)
  end)

  it("the password appears in no error of a working store", function()
    local store <close> = rs.new{ url = url(":" .. PASSWORD), max_retries = 0 }
    local errs = {
      catch(store.get_resume_token, store, ""),
      catch(store.save_resume_token, store, "users", { _data = "\xff" }),
      catch(store.get_raw, store, {}),
    }
    srv:set_raw("rigatoni:resume_token:broken", "not BSON")
    errs[#errs + 1] = catch(store.get_resume_token, store, "broken")
    srv:stop()
    errs[#errs + 1] = catch(store.get_resume_token, store, "users")
    srv:restart()
    for _, err in ipairs(errs) do
      assert.not_matches(PASSWORD, tostring(err), 1, true)
    end
  end)
end)

describe("connection refused", function()
  it("is a connection error showing the URL masked", function()
    local port = servers.closed_port()
    local err = catch(rs.new, { url = "redis://alice:T0pSecret@127.0.0.1:" .. port, max_retries = 0 })
    assert_kind("connection", err)
    assert.is_true(err.retryable)
    assert.equal(1, err.attempts)
    assert.matches("redis://***:***@127.0.0.1:" .. port, err.message, 1, true)
    assert.not_matches("T0pSecret", tostring(err), 1, true)
    assert.not_matches("alice", tostring(err), 1, true)
  end)
end)

describe("command timeout", function()
  local srv
  setup(function() srv = servers.redis{ debug = true } end)
  teardown(function() srv:stop() end)

  it("a command blocked longer than command_timeout is a timeout error", function()
    local store <close> = rs.new{ url = srv.url, command_timeout = 0.3, max_retries = 0 }
    store:save_resume_token("users", TOKEN)
    -- Block the server for 2 s from another client, in the background.
    os.execute(srv:cli_prefix() .. " DEBUG SLEEP 2 >/dev/null 2>&1 </dev/null &")
    srv:wait_blocked()
    local t0 = system.gettime()
    local err = catch(store.get_resume_token, store, "users")
    local elapsed = system.gettime() - t0
    assert_kind("timeout", err)
    assert.is_true(err.retryable)
    assert.equal(1, err.attempts)
    assert.is_true(elapsed >= 0.2 and elapsed < 1.2, "took " .. elapsed .. " s")
    -- the message says which server and how long, not errno's words
    assert.matches("timed out after 0%.3s waiting for a reply from 127%.0%.0%.1:" .. srv.port, err.message)
    assert.is_nil(err.message:find("temporarily unavailable", 1, true))

    -- Once the server is back, no late reply is mistaken for a new one.
    assert.equal("PONG", srv:cli("PING"))      -- answered when the sleep is over
    store:save_resume_token("orders", { _data = "8299" })
    assert.same(TOKEN, store:get_resume_token("users"))
    assert.same({ _data = "8299" }, store:get_resume_token("orders"))
  end)
end)
