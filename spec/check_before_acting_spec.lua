-- SPDX-License-Identifier: MIT
-- spec/check_before_acting_spec.lua -- every tool checks its inputs, its
-- options and the permissions it will need before its first write or
-- delete (issue 21, items 2 to 4): a bad one is a usage error (exit 2)
-- that names the option, the file:line or the refused command, and the
-- server is left as it was. The TTL range is Redis's own (what EXPIRE and
-- PEXPIRE accept: the expiry instant, in Unix milliseconds, fits in a
-- signed 64-bit integer), so any TTL a server holds can be copied.
-- Real redis-servers and ACL users, through the built `rigatoni-store`.

package.path = "scripts/?.lua;" .. package.path
local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"
local cli = dofile("scripts/lib/cli.lua")

local run, quote = helpers.run_host, helpers.quote
local PREFIX = "rigatoni:resume_token:"
local OLD = os.time() - 86400 * 90   -- stale: 90 days ago
local NOW = os.time()

-- The README's ACL lines (spec/acl_spec.lua has them verbatim).
local PIPELINE = { "~rigatoni:*", "resetchannels", "-@all", "+get", "+set", "+setex", "+del", "+exists",
                   "+scan", "+mget", "+evalsha", "+script|load", "+expire", "+ping", "+auth", "+select" }
local MAINTENANCE = { "~rigatoni:*", "resetchannels", "-@all", "+get", "+set", "+setex", "+del",
                      "+exists", "+scan", "+mget", "+evalsha", "+script|load", "+expire", "+pexpire",
                      "+pttl", "+ping", "+auth", "+select", "+info", "+dbsize", "+memory|usage" }

local function token(seconds, n)
  return rs.bson.encode { _data = string.format("82%08X%08X2B022C0100296E5A1004", seconds, n) }
end

local function dbsize(srv) return tonumber(srv:cli("DBSIZE")) end

-- The TTL of token `name` is `want` seconds, less the time since it was set
-- (a loaded machine may take seconds).
local function assert_ttl(srv, name, want)
  local ttl = tonumber(srv:cli("TTL", PREFIX .. name))
  assert.is_true(ttl and ttl <= want and ttl > want - 30, name .. ": TTL " .. tostring(ttl) .. ", not " .. want)
end

-- The longest TTL (whole seconds) the server accepts now: Redis refuses
-- an expiry past 2^63-1 ms since 1970 (expireGenericCommand).
local function server_max_seconds(srv)
  local s, us = srv:cli("TIME"):match("(%d+)%s+(%d+)")
  return (math.maxinteger - (tonumber(s) * 1000 + tonumber(us) // 1000)) // 1000
end

local function user(srv, name, rules)
  local args = { "ACL", "SETUSER", name, "reset", "on", ">" .. name .. "-pw" }
  for _, r in ipairs(rules) do args[#args + 1] = r end
  assert.equal("OK", srv:cli(table.unpack(args)))
  return "redis://" .. name .. ":" .. name .. "-pw@127.0.0.1:" .. srv.port
end

local function without(rules, drop)
  local out = {}
  for _, r in ipairs(rules) do if r ~= drop then out[#out + 1] = r end end
  return out
end

local function line(collection, bytes, ttl_ms)
  return string.format('{"collection":"%s","bson_base64":"%s","ttl_ms":%s}\n', collection,
                       cli.base64_encode(bytes), ttl_ms or "null")
end

describe("check before acting", function()
  local a, b, tmpdir

  setup(function()
    a = servers.redis {}
    b = servers.redis {}
    tmpdir = helpers.capture("mktemp -d"):gsub("%s+$", "")
  end)
  teardown(function()
    if a then a:stop() end
    if b then b:stop() end
    if tmpdir then os.execute("rm -rf " .. quote(tmpdir)) end
  end)

  -- 5 stale plain tokens, 3 fresh ones, a stale Rigatoni 0.2 stream key
  -- and its mirror: 10 keys.
  before_each(function()
    a:cli("FLUSHALL")
    b:cli("FLUSHALL")
    local store <close> = rs.new { url = a.url }
    for i = 1, 5 do store:save_raw("c" .. i, token(OLD, i), false) end
    for i = 1, 3 do store:save_raw("f" .. i, token(NOW, i), false) end
    store:save_raw("resume_token:shop:orders", token(OLD, 9), false)
    store:save_raw("orders", token(OLD, 9), false)
  end)

  describe("the TTL range is Redis's own", function()
    it("rs.check_ttl accepts what EXPIRE accepts and names the limit of what it refuses", function()
      local max = server_max_seconds(a)
      -- the real server: this side of the limit is taken, the other refused
      assert.equal("1", a:cli("EXPIRE", PREFIX .. "c1", tostring(max - 1000)))
      assert.matches("invalid expire time", a:cli("EXPIRE", PREFIX .. "c2", tostring(max + 1000)))
      for _, ttl in ipairs { 0.001, 1, 2000000000, 3456000000, max - 1000 } do
        assert.is_true(rs.check_ttl(ttl), tostring(ttl))
      end
      for _, ttl in ipairs { 0, -1, 0 / 0, math.huge, max + 1000, 1e300 } do
        local ok, why = rs.check_ttl(ttl)
        assert.is_nil(ok, tostring(ttl))
        assert.is_string(why)
      end
      local _, why = rs.check_ttl(max + 1000)
      assert.matches("2^63-1 ms", why, 1, true)
      assert.matches(tostring(max // 1000000), why, 1, true)   -- the limit in seconds, from now
      -- the refused TTL is shown in full, not rounded to 6 digits (a TTL
      -- near the limit then read as equal to it)
      -- (even: a double holds whole seconds this large only in steps of 2)
      local over = (max + 2000) // 2 * 2
      _, why = rs.check_ttl(over)
      assert.matches("ttl " .. string.format("%d", over) .. " s is over", why, 1, true)
    end)

    it("the store saves a TTL over 1e9 seconds (save_raw, save_many, expire)", function()
      local store <close> = rs.new { url = a.url }
      store:save_raw("x", token(NOW, 1), 2000000000)
      assert_ttl(a, "x", 2000000000)
      store:save_many({ { "y", token(NOW, 2), 2000000000 } })
      assert_ttl(a, "y", 2000000000)
      assert.is_true(store:expire("f1", 3456000000))
      assert_ttl(a, "f1", 3456000000)
      local err = helpers.catch(store.save_raw, store, "z", token(NOW, 3), 1e300)
      assert.equal("config", err.kind)
      assert.matches("2^63-1 ms", err.message, 1, true)
    end)

    it("migrate copies a token the source holds with EXPIRE 2000000000", function()
      assert.equal("1", a:cli("EXPIRE", PREFIX .. "c3", "2000000000"))
      local code, out, err = run { "-u", a.url, "migrate", "--to", b.url }
      assert.equal(0, code, out .. err)
      assert.matches("10 copied", out)
      assert.equal(10, dbsize(b))
      local ttl = tonumber(b:cli("TTL", PREFIX .. "c3"))
      assert.is_true(ttl > 1999999000 and ttl <= 2000000000, tostring(ttl))
    end)

    it("import writes a ttl_ms over 1e12, and refuses one past the limit at its file:line, writing nothing", function()
      a:cli("FLUSHALL")
      local good = {}
      for i = 1, 25 do good[i] = line("t" .. i, token(NOW, i), i == 7 and 2000000000000 or nil) end
      local code, out, err = run({ "-u", a.url, "import", "--batch", "10" }, { stdin = table.concat(good) })
      assert.equal(0, code, out .. err)
      assert.matches("25 written", out)
      assert_ttl(a, "t7", 2000000000)

      a:cli("FLUSHALL")
      local bad = table.move(good, 1, 25, 1, {})
      bad[23] = line("t23", token(NOW, 23), "10000000000000000000")
      local path = tmpdir .. "/bad.jsonl"
      helpers.write_file(path, table.concat(bad))
      code, out, err = run { "-u", a.url, "import", "--batch", "10", "--input", path }
      assert.equal(2, code, out .. err)
      assert.matches(path .. ":23: 'ttl_ms'", err, 1, true)
      assert.matches("2^63-1 ms", err, 1, true)
      assert.matches("nothing was written", err)
      assert.equal(0, dbsize(a))
    end)

    it("cleanup --set-ttl past the limit is refused before the plan, and --yes deletes nothing", function()
      for _, yes in ipairs { false, true } do
        local argv = { "-u", a.url, "cleanup", "--older-than", "30d", "--set-ttl", "200000000000000d" }
        if yes then argv[#argv + 1] = "--yes" end
        local code, out, err = run(argv)
        assert.equal(2, code, out .. err)
        assert.matches("--set-ttl", err, 1, true)
        assert.matches("2^63-1 ms", err, 1, true)
        assert.equal("", out)
        assert.equal(10, dbsize(a))
      end
    end)

    it("cleanup --set-ttl 40000d is within Redis's range: stale tokens go, the rest get the TTL", function()
      local code, out, err = run { "-u", a.url, "cleanup", "--older-than", "30d", "--set-ttl", "40000d", "--yes" }
      assert.equal(0, code, out .. err)
      assert.matches("6 deleted", out)
      assert.matches("TTL set on 3", out)
      assert.equal(3, dbsize(a))
      assert_ttl(a, "f2", 40000 * 86400)
    end)

    it("import --ttl past the limit and a duration too long for a number are usage errors", function()
      local code, _, err = run({ "-u", a.url, "import", "--ttl", "200000000000000d" },
                               { stdin = line("n1", token(NOW, 1)) })
      assert.equal(2, code, err)
      assert.matches("--ttl", err, 1, true)
      assert.matches("2^63-1 ms", err, 1, true)
      code, _, err = run { "-u", a.url, "cleanup", "--older-than", string.rep("9", 400) .. "s", "--yes" }
      assert.equal(2, code, err)
      assert.matches("--older-than", err, 1, true)
      assert.equal(10, dbsize(a))
    end)
  end)

  it("options that only make sense with another are refused, naming both", function()
    for _, case in ipairs {
      { { "migrate", "--to-config", "/nonexistent.ini", "--to-cluster" }, "--to-cluster goes with --to" },
      { { "locks", "--yes" }, "--yes goes with --release" },
      { { "locks", "--release", "shop:orders", "--owner", "" }, "--owner: empty value" },
      -- a bad word after the destructive flag: nothing is deleted either
      { { "cleanup", "--yes", "--older-than", "1d", "--bogus" }, "unknown option --bogus" },
      { { "cleanup", "--yes", "--older-than", "1d", "--match", "--dry-run" }, "--match needs a value" },
      { { "cleanup", "--older-than", "30d", "--batch", "1000001", "--yes" }, "--batch: an integer from 1 to 1000000" },
      { { "import", "--input", tmpdir .. "/absent.jsonl" }, "--input " .. tmpdir .. "/absent.jsonl: cannot read it" },
    } do
      local argv = { "-u", a.url }
      for _, x in ipairs(case[1]) do argv[#argv + 1] = x end
      local code, out, err = run(argv)
      assert.equal(2, code, table.concat(case[1], " ") .. ": " .. out .. err)
      assert.matches(case[2], err, 1, true)
      assert.equal(10, dbsize(a))
    end
  end)

  describe("permissions are checked before acting", function()
    it("cleanup --yes as the README's pipeline user (no PTTL) needs none and deletes every stale token", function()
      local url = user(a, "pipeline", PIPELINE)
      local code, out, err = run { "-u", url, "cleanup", "--older-than", "30d", "--yes" }
      assert.equal(0, code, out .. err)
      assert.matches("6 deleted", out)
      assert.matches("1 mirror", out)
      assert.equal(3, dbsize(a))
    end)

    it("cleanup --set-ttl as the pipeline user is refused naming PTTL before any delete", function()
      local url = user(a, "pipeline", PIPELINE)
      local code, out, err = run { "-u", url, "cleanup", "--older-than", "30d", "--set-ttl", "30d", "--yes" }
      assert.equal(2, code, out .. err)
      assert.matches("PTTL", err, 1, true)
      assert.equal(10, dbsize(a))
    end)

    it("cleanup --yes as a user without DEL is refused, found by ACL DRYRUN", function()
      local url = user(a, "nodel", { "~*", "&*", "+@all", "-del" })
      local code, out, err = run { "-u", url, "cleanup", "--older-than", "30d", "--yes" }
      assert.equal(2, code, out .. err)
      assert.matches("DEL", err, 1, true)
      assert.matches("ACL DRYRUN", err, 1, true)
      assert.equal(10, dbsize(a))
    end)

    it("cleanup --yes as a user without DEL nor ACL is refused, found by trying DEL on a probe key", function()
      local url = user(a, "opsnodel", without(MAINTENANCE, "+del"))
      local code, out, err = run { "-u", url, "cleanup", "--older-than", "30d", "--yes" }
      assert.equal(2, code, out .. err)
      assert.matches("DEL", err, 1, true)
      assert.not_matches("ACL DRYRUN", err, 1, true)
      assert.equal(10, dbsize(a))
    end)

    it("export as the pipeline user is refused naming PTTL and creates no file", function()
      local url = user(a, "pipeline", PIPELINE)
      local path = tmpdir .. "/out.jsonl"
      os.remove(path)
      local code, out, err = run { "-u", url, "export", "--output", path }
      assert.equal(2, code, out .. err)
      assert.matches("PTTL", err, 1, true)
      assert.is_nil(io.open(path))
    end)

    it("migrate to a target user without SET is refused naming SET; nothing is written", function()
      local url = user(b, "noset", without(MAINTENANCE, "+set"))
      local code, out, err = run { "-u", a.url, "migrate", "--to", url, "--delete-source" }
      assert.equal(2, code, out .. err)
      assert.matches("SET", err, 1, true)
      assert.equal(0, dbsize(b))
      assert.equal(10, dbsize(a))
    end)

    it("migrate --delete-source from a source user without DEL is refused before copying", function()
      local url = user(a, "opsnodel", without(MAINTENANCE, "+del"))
      local code, out, err = run { "-u", url, "migrate", "--to", b.url, "--delete-source" }
      assert.equal(2, code, out .. err)
      assert.matches("DEL", err, 1, true)
      assert.equal(0, dbsize(b))
    end)

    it("import as a user without SET is refused naming SET; nothing is written", function()
      local url = user(b, "noset", without(MAINTENANCE, "+set"))
      local code, out, err = run({ "-u", url, "import" }, { stdin = line("n1", token(NOW, 1)) })
      assert.equal(2, code, out .. err)
      assert.matches("SET", err, 1, true)
      assert.equal(0, dbsize(b))
    end)

    it("locks --release --yes as a user without EVALSHA is refused; the lock stays", function()
      a:cli("SET", "rigatoni:lock:shop:orders", "host-1", "EX", "300")
      local url = user(a, "noeval", without(MAINTENANCE, "+evalsha"))
      local code, out, err = run { "-u", url, "locks", "--release", "shop:orders", "--yes" }
      assert.equal(2, code, out .. err)
      assert.matches("EVALSHA", err, 1, true)
      assert.equal("host-1", a:cli("GET", "rigatoni:lock:shop:orders"))
    end)
  end)
end)

-- A command the server does not have (renamed away, or an option it lacks)
-- is refused up front like a forbidden one: ACL DRYRUN answers "not found"
-- with an error, and the probe's "unknown command" reply means the tool's
-- own command would fail the same way, after its deletes.
describe("check before acting on a server without PEXPIRE and SCRIPT", function()
  local srv
  setup(function()
    srv = servers.redis { args = { "--rename-command", "PEXPIRE", "", "--rename-command", "SCRIPT", "" } }
  end)
  teardown(function() if srv then srv:stop() end end)
  before_each(function()
    srv:cli("FLUSHALL")
    local store <close> = rs.new { url = srv.url }
    for i = 1, 20 do store:save_raw("c" .. i, token(OLD, i), false) end
    for i = 1, 3 do store:save_raw("f" .. i, token(NOW, i), false) end
  end)

  it("cleanup --set-ttl --yes is refused naming PEXPIRE before any delete", function()
    local code, out, err = run { "-u", srv.url, "cleanup", "--older-than", "30d", "--set-ttl", "40d",
                                 "--yes", "--batch", "2" }
    assert.equal(2, code, out .. err)
    assert.matches("unknown command 'PEXPIRE'", err, 1, true)
    assert.matches("nothing changed", err, 1, true)
    assert.equal(23, dbsize(srv))
  end)

  it("cleanup --yes is refused naming SCRIPT LOAD; the plan without --yes needs neither", function()
    local code, out, err = run { "-u", srv.url, "cleanup", "--older-than", "30d", "--yes" }
    assert.equal(2, code, out .. err)
    assert.matches("SCRIPT LOAD", err, 1, true)
    assert.equal(23, dbsize(srv))
    code, out, err = run { "-u", srv.url, "cleanup", "--older-than", "30d", "--set-ttl", "40d" }
    assert.equal(0, code, out .. err)
    assert.equal(23, dbsize(srv))
  end)
end)
