-- spec/command_spec.lua -- store:command cannot poison the pool (issue 26):
-- a command that would change the state of the pooled connection it runs
-- on (a transaction, another db, pub/sub, CLIENT REPLY, RESP3, another
-- user, ...) is refused before anything is sent, and a command that ran
-- never raises for the shape of its reply: arrays come back as Lua tables
-- (nested ones too), nil elements as false, error elements as {err = msg}.

local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"
local proxy = require "support.proxy"

local catch, assert_kind = helpers.catch_object, helpers.assert_kind

local srv, store
setup(function()
  srv = servers.redis{}
  -- One connection: whatever a command did to it, the next call gets it.
  store = rs.new{ url = srv.url, pool_size = 1, key_prefix = "cmd:rt" }
end)
teardown(function()
  if store then store:close() end
  servers.stop_all()
end)

local TOKEN = { _data = "8263A1B2C3" }

-- The commands that would change the connection's state, each with
-- arguments that make it valid (so the server would run it).
local REFUSED = {
  { "MULTI" }, { "exec" }, { "Discard" }, { "WATCH", "k" }, { "UNWATCH" },
  { "SELECT", "7" }, { "select", "0" },
  { "SUBSCRIBE", "ch" }, { "psubscribe", "ch*" }, { "SSUBSCRIBE", "ch" },
  { "UNSUBSCRIBE" }, { "PUNSUBSCRIBE" }, { "SUNSUBSCRIBE" },
  { "MONITOR" }, { "RESET" }, { "HELLO", "3" }, { "AUTH", "nobody", "x" },
  { "READONLY" }, { "READWRITE" }, { "QUIT" }, { "SYNC" }, { "PSYNC", "?", "-1" },
  { "ASKING" },
  { "CLIENT", "REPLY", "OFF" }, { "client", "reply", "skip" }, { "CLIENT", "TRACKING", "on" },
  { "Client", "Caching", "yes" }, { "CLIENT", "NO-EVICT", "on" }, { "CLIENT", "NO-TOUCH", "on" },
  { "CLIENT", "SETNAME", "x" }, { "CLIENT", "SETINFO", "LIB-NAME", "x" },
  -- the connection's next EVALSHA (a lock refresh) fails, its next EVAL
  -- starts a debugging session
  { "SCRIPT", "DEBUG", "YES" }, { "script", "debug", "sync" },
}

describe("store:command refuses what would change a pooled connection", function()
  before_each(function() srv:cli("FLUSHALL") end)

  for _, argv in ipairs(REFUSED) do
    local label = table.concat(argv, " ")
    it(("'%s' is a config error naming it, and nothing is sent"):format(label), function()
      srv:cli("CONFIG", "RESETSTAT")
      local err = catch(function() return store:command(table.unpack(argv)) end)
      assert_kind("config", err)
      local name = argv[1]:upper()
      if name == "CLIENT" or name == "SCRIPT" then name = name .. " " .. argv[2]:upper() end
      assert.matches(name, err.message, 1, true)
      assert.matches("pooled connection", err.message, 1, true)
      -- The server never saw it: no command stats for it, no error either.
      local stats = srv:cli("INFO", "commandstats")
      assert.not_matches("cmdstat_" .. argv[1]:lower() .. ":", stats, 1, true)
      assert.not_matches("cmdstat_" .. argv[1]:lower() .. "|", stats, 1, true)
      -- And the connection still answers as configured.
      assert.equal("PONG", store:command("PING"))
    end)
  end

  it("after MULTI, SELECT 7 and SUBSCRIBE were refused, a save lands in db 0 and a lock is real", function()
    for _, argv in ipairs{ { "MULTI" }, { "SELECT", "7" }, { "SUBSCRIBE", "ch" } } do
      assert_kind("config", catch(function() return store:command(table.unpack(argv)) end))
    end
    store:save_resume_token("users", TOKEN)
    assert.equal("1", srv:cli("-n", "0", "EXISTS", "cmd:rt:users"))
    assert.equal("0", srv:cli("-n", "7", "DBSIZE"))
    assert.same(TOKEN, store:get_resume_token("users"))
    assert.is_true(store:try_acquire_lock("cmd:lock", "me", 30))
    assert.equal("me", srv:cli("GET", "cmd:lock"))
    assert.equal("2", srv:cli("-n", "0", "DBSIZE"))
  end)

  it("after SCRIPT DEBUG was refused, a lock's scripts still run", function()
    assert.is_true(store:try_acquire_lock("cmd:lock", "me", 30))
    assert_kind("config", catch(function() return store:command("SCRIPT", "DEBUG", "YES") end))
    assert.is_true(store:refresh_lock("cmd:lock", "me", 30))
    assert.is_true(store:release_lock("cmd:lock", "me"))
    assert.equal("0", srv:cli("EXISTS", "cmd:lock"))
  end)

  it("ordinary CLIENT and SCRIPT subcommands still run", function()
    assert.same({ "0" }, store:command("SCRIPT", "EXISTS", ("0"):rep(40)))
    assert.matches("^%d+$", store:command("CLIENT", "ID"))
    assert.matches("id=", store:command("client", "info"), 1, true)
  end)
end)

describe("store:command returns every reply shape", function()
  before_each(function() srv:cli("FLUSHALL") end)

  it("LPOP with a count returns the values it popped", function()
    srv:cli("RPUSH", "mylist", "a", "b", "c", "d")
    assert.same({ "a", "b", "c" }, store:command("LPOP", "mylist", "3"))
    assert.equal("d", srv:cli("LRANGE", "mylist", "0", "-1"))
  end)

  it("an empty array is an empty table, a nil reply is nil", function()
    assert.same({}, store:command("LRANGE", "nothing", "0", "-1"))
    assert.is_nil(store:command("GET", "nothing"))
  end)

  it("nil elements are false, integers are decimal text as at the top", function()
    store:command("SET", "one", "1")
    assert.same({ "1", false }, store:command("MGET", "one", "missing"))
    srv:cli("RPUSH", "l", "x", "y", "x")
    assert.same({ "0", "2" }, store:command("LPOS", "l", "x", "COUNT", "0"))
  end)

  it("nested arrays (XRANGE) are nested tables", function()
    local id1 = store:command("XADD", "s", "1-1", "f", "v")
    local id2 = store:command("XADD", "s", "2-1", "a", "b", "c", "d")
    assert.same({ { id1, { "f", "v" } }, { id2, { "a", "b", "c", "d" } } },
                store:command("XRANGE", "s", "-", "+"))
  end)

  it("CONFIG GET and COMMAND INFO come back as tables", function()
    local got = store:command("CONFIG", "GET", "maxmemory-policy")
    assert.same({ "maxmemory-policy", srv:cli("CONFIG", "GET", "maxmemory-policy"):match("\n(.*)$") }, got)
    local info = store:command("COMMAND", "INFO", "get")
    assert.equal("table", type(info[1]))
    assert.equal("get", info[1][1])
    assert.equal("2", info[1][2])                -- arity
    assert.equal("table", type(info[1][3]))      -- flags
  end)

  it("error and status elements inside an array do not raise", function()
    local got = store:command("EVAL", "return {1, redis.error_reply('MY failure'), redis.status_reply('FINE'), {false}}", "0")
    assert.same({ "1", { err = "MY failure" }, "FINE", { false } }, got)
  end)

  it("the deepest reply a real server sends (an EVAL's nested tables) comes back whole", function()
    local got = store:command("EVAL", "local t = {} for i = 1, 100000 do t = {t} end return t", "0")
    local depth = 0
    while type(got) == "table" and got[1] do depth, got = depth + 1, got[1] end
    assert.is_true(depth > 5000, "depth " .. depth)
  end)

  it("a reply nested deeper than any server sends raises, and does not crash the process", function()
    -- Through a proxy that wraps one reply in 200000 arrays: hiredis reads
    -- and frees it, our copy must not recurse that deep. In a process of
    -- its own, so that a crash fails this test only.
    local p = proxy.start(srv)
    local code, out, err = helpers.run_host {
      "-u", p.url, "-e", ([[
        store:command("PING")
        local f = assert(io.open(%q, "w")) f:write("nest_once 200000\n") f:close()
        local ok, e = pcall(store.command, store, "INCR", "nested")
        print(ok, e.kind, e.message)
        print(store:command("GET", "nested"))]]):format(p.control) }
    p:stop()
    assert.equal(0, code, err)
    assert.matches("^false\tserver\tcommand INCR ran, but its reply is nested deeper than %d+ levels", out)
    assert.matches("\n1\n$", out)
  end)

  it("an error reply at the top still raises", function()
    assert_kind("server", catch(function() return store:command("LPOP", "mylist", "notanumber") end))
  end)
end)
