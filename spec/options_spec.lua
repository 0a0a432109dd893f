-- SPDX-License-Identifier: MIT
-- spec/options_spec.lua -- options tables are checked before anything is
-- sent: an unknown key (a typo, or an option the function does not have)
-- or a value of the wrong type is an argument error naming the function,
-- the argument and the option, and the server is left exactly as it was.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"

local srv, store
setup(function()
  srv = servers.redis{}
  store = rs.new{ url = srv.url }
end)
teardown(function()
  if store then store:close() end
  servers.stop_all()
end)
before_each(function()
  assert.equal("OK", srv:cli("FLUSHALL"))
  store:save_raw("c", rs.bson.encode{ _data = "82old" }, false)
  store:save_raw("expiring", "bytes", 3600)
  assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "me", 60))
end)

-- Every key with its value and whether it expires.
local function snapshot()
  local out = {}
  for key in srv:cli("KEYS", "*"):gmatch("[^\n]+") do
    out[key] = { value = srv:cli_raw("GET", key), expires = srv:cli("TTL", key) ~= "-1" }
  end
  return out
end

-- The commands the server ran since CONFIG RESETSTAT, but the spec's own.
local function commands_run()
  local names = {}
  for name in srv:cli("INFO", "commandstats"):gmatch("cmdstat_([^:]+):") do
    if name ~= "info" and not name:match("^config") then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- `call` raises exactly `message` (an argument error: a plain string), and
-- sends nothing: the server ran no command and holds what it held.
local function refused(message, call)
  local before = snapshot()
  srv:cli("CONFIG", "RESETSTAT")
  local ok, err = pcall(call)
  assert.is_false(ok, "the call succeeded")
  assert.equal("string", type(err), "not an argument error: " .. tostring(err))
  assert.equal(message, (err:gsub("^[^\n]-:%d+: ", "", 1)))   -- where it was called
  assert.same({}, commands_run())
  assert.same(before, snapshot())
end

local token = { _data = "82new" }

describe("save_resume_token options", function()
  it("refuses an unknown option, naming the known ones", function()
    refused("bad argument #3 to 'save_resume_token' (unknown option 'ttl'; known: lock, owner)",
            function() store:save_resume_token("c", token, { ttl = 100 }) end)
  end)

  it("refuses a lock or owner that is not a string", function()
    refused("bad argument #3 to 'save_resume_token' (option 'lock' must be a string, got number)",
            function() store:save_resume_token("c", token, { lock = 1, owner = "me" }) end)
    refused("bad argument #3 to 'save_resume_token' (option 'owner' must be a string, got boolean)",
            function() store:save_resume_token("c", token, { lock = "rigatoni:lock:db:c", owner = true }) end)
  end)

  it("refuses a lock name with a NUL byte (it would fence on a shorter name)", function()
    refused("bad argument #3 to 'save_resume_token' (option 'lock' must not contain NUL bytes)",
            function()
              store:save_resume_token("c", token, { lock = "rigatoni:lock:db:c\0x", owner = "me" })
            end)
  end)

  it("refuses an option name that is not a string", function()
    refused("bad argument #3 to 'save_resume_token' (option names must be strings, got number)",
            function() store:save_resume_token("c", token, { "rigatoni:lock:db:c", "me" }) end)
  end)
end)

describe("delete_resume_token options", function()
  local bytes = rs.bson.encode{ _data = "82old" }

  it("refuses a misspelt if_value instead of deleting unconditionally", function()
    refused("bad argument #2 to 'delete_resume_token' (unknown option 'if_valu'; known: if_value)",
            function() store:delete_resume_token("c", { if_valu = bytes }) end)
  end)

  it("refuses an if_value that is not a string", function()
    refused("bad argument #2 to 'delete_resume_token' (option 'if_value' must be a string, got number)",
            function() store:delete_resume_token("c", { if_value = 42 }) end)
  end)
end)

describe("save_many options", function()
  local items = { { "c", "new" }, { "d", "new" } }

  it("refuses an unknown option", function()
    refused("bad argument #2 to 'save_many' (unknown option 'nxx'; known: nx)",
            function() store:save_many(items, { nxx = true }) end)
  end)

  it("refuses an nx that is not a boolean", function()
    refused("bad argument #2 to 'save_many' (option 'nx' must be a boolean, got string)",
            function() store:save_many(items, { nx = "yes" }) end)
  end)
end)

describe("listing options", function()
  local listers = {
    list_resume_tokens = function(opts) return store:list_resume_tokens(opts) end,
    resume_tokens = function(opts) for _ in store:resume_tokens(opts) do end end,
  }
  for name, list in pairs(listers) do
    local function bad(what) return "bad argument #1 to '" .. name .. "' (" .. what .. ")" end

    it(name .. " refuses a misspelt match instead of listing everything", function()
      refused(bad("unknown option 'mach'; known: match, batch, raw, ttl, counts"),
              function() list{ mach = "x*" } end)
    end)

    it(name .. " refuses options of the wrong type", function()
      refused(bad("option 'match' must be a string, got table"), function() list{ match = {} } end)
      refused(bad("option 'match' must not contain NUL bytes"), function() list{ match = "c\0*" } end)
      refused(bad("option 'batch' must be an integer, got string"), function() list{ batch = "10" } end)
      refused(bad("option 'batch' must be an integer, got number 2.5"), function() list{ batch = 2.5 } end)
      refused(bad("option 'raw' must be a boolean, got number"), function() list{ raw = 1 } end)
      refused(bad("option 'ttl' must be a boolean, got string"), function() list{ ttl = "no" } end)
    end)
  end

  it("scan_keys refuses the options it does not have", function()
    refused("bad argument #2 to 'scan_keys' (unknown option 'match'; known: batch, ttl, counts)",
            function() for _ in store:scan_keys("rigatoni:*", { match = "x*" }) do end end)
    refused("bad argument #2 to 'scan_keys' (unknown option 'raw'; known: batch, ttl, counts)",
            function() for _ in store:scan_keys("rigatoni:*", { raw = false }) do end end)
  end)

  it("scan_keys refuses a batch that is not an integer", function()
    refused("bad argument #2 to 'scan_keys' (option 'batch' must be an integer, got string)",
            function() for _ in store:scan_keys("rigatoni:*", { batch = "10" }) do end end)
  end)
end)

describe("stats options", function()
  it("refuses an unknown option and a buckets that is not a boolean", function()
    refused("bad argument #1 to 'stats' (unknown option 'bucket'; known: buckets)",
            function() store:stats{ bucket = true } end)
    refused("bad argument #1 to 'stats' (option 'buckets' must be a boolean, got number)",
            function() store:stats{ buckets = 1 } end)
  end)

  it("quotes an unknown name on one line, cut after 64 bytes", function()
    refused("bad argument #1 to 'stats' (unknown option '" .. ("x"):rep(64) .. "...'; known: buckets)",
            function() store:stats{ [("x"):rep(100)] = true } end)
    refused("bad argument #1 to 'stats' (unknown option 'buckets?'; known: buckets)",
            function() store:stats{ ["buckets\n"] = true } end)
  end)
end)

describe("lease options", function()
  it("refuses an unknown option and a ttl that is not a number, taking no lock", function()
    refused("bad argument #3 to 'lease' (unknown option 'tll'; known: ttl)",
            function() store:lease("rigatoni:lock:db:d", "me", { tll = 30 }) end)
    refused("bad argument #3 to 'lease' (option 'ttl' must be a number, got string)",
            function() store:lease("rigatoni:lock:db:d", "me", { ttl = "30" }) end)
  end)
end)

describe("every documented option is still accepted", function()
  it("by each binding", function()
    store:save_resume_token("c", token, { lock = "rigatoni:lock:db:c", owner = "me" })
    assert.same(token, store:get_resume_token("c"))
    assert.same({ false }, store:save_many({ { "c", "x" } }, { nx = true }))
    assert.is_false(store:delete_resume_token("c", { if_value = "x" }))
    local seen = {}
    for coll, bytes, ttl in store:resume_tokens{ match = "c", batch = 10, raw = true, ttl = false } do
      seen[#seen + 1] = { coll, bytes, ttl }
    end
    assert.same({ { "c", rs.bson.encode(token) } }, seen)
    assert.same({ c = token }, (store:list_resume_tokens{ match = "c", batch = 10, raw = false, ttl = true }))
    for key in store:scan_keys("rigatoni:lock:*", { batch = 10, ttl = true }) do seen.lock = key end
    assert.equal("rigatoni:lock:db:c", seen.lock)
    assert.is_table(store:stats{ buckets = false }.ops)
    local lease <close> = store:lease("rigatoni:lock:db:d", "me", { ttl = 30 })
    assert.truthy(lease)
    assert.is_table(store:stats{})
    assert.is_table(store:stats(nil))
  end)
end)

describe("host.open_store options", function()
  local function run(opts_code)
    return helpers.run_host({ "-u", srv.url, "-e", [[
      local ok, err = pcall(function() return host.open_store(]] .. opts_code .. [[) end)
      io.write(tostring(ok), "\n", tostring(err), "\n")
    ]] }, { env = { URL = srv.url } })
  end

  for _, case in ipairs{
    { "{ urll = 'redis://127.0.0.1:1' }", "unknown option 'urll'; known: config, url, key_prefix, set" },
    { "{ url = 6379 }", "option 'url' must be a string, got number" },
    { "{ key_prefix = false }", "option 'key_prefix' must be a string, got boolean" },
    { "{ set = 'redis.pool_size=3' }", "option 'set' must be a table, got string" },
  } do
    it("refuses " .. case[1] .. " without connecting", function()
      srv:cli("CONFIG", "RESETSTAT")
      local code, out, err = run(case[1])
      assert.equal(0, code, err)
      assert.equal("false\n(command line):1: bad argument #1 to 'open_store' (" .. case[2] .. ")\n", out)
      assert.same({}, commands_run())
    end)
  end

  it("accepts every documented option", function()
    local code, out, err = run("{ url = os.getenv('URL'), key_prefix = 'p', set = { 'redis.pool_size=3' } }")
    assert.equal(0, code, err)
    assert.matches("^true\n", out)
  end)
end)

describe("rs.new options (checked by the core config)", function()
  it("an unknown option is a config error naming it", function()
    local err = helpers.catch_object(rs.new, { url = srv.url, urll = "x" })
    helpers.assert_kind("config", err)
    assert.matches("urll", err.message, 1, true)
    err = helpers.catch_object(rs.new, { url = srv.url, tls = { ca_fil = "x" } })
    helpers.assert_kind("config", err)
    assert.matches("ca_fil", err.message, 1, true)
  end)

  it("a value of the wrong type is a config error naming the option", function()
    local err = helpers.catch_object(rs.new, { url = srv.url, pool_size = {} })
    helpers.assert_kind("config", err)
    assert.matches("pool_size", err.message, 1, true)
  end)
end)
