-- SPDX-License-Identifier: MIT
-- spec/stream_tools_spec.lua -- `cleanup` and `export` on what a Rigatoni
-- 0.2 pipeline really keeps: a stream key and its per-batch mirror are one
-- unit for cleanup --older-than (aged by the stream key, both go or
-- neither, a shared mirror stays while another stream key uses it), and
-- --stream DB[:COLL] / --stream :deployment select streams. Keys are
-- written with redis-cli exactly as the Rust store writes them (SET of the
-- BSON bytes), never by our own save.

local servers = require "support.servers"
local helpers = require "support.helpers"
local run = helpers.run_host

package.path = "scripts/?.lua;" .. package.path
local cli = require "lib.cli"

local P = "rigatoni:resume_token:"
local DAY = 86400
local NOW = os.time()
local OLD, FRESH = NOW - 60 * DAY, NOW - 3600

-- BSON of { _data = "82<seconds><increment>..." }, built by hand.
local function token_bytes(seconds, n)
  local data = string.format("82%08X%08X2B022C0100296E5A1004", seconds, n or 1)
  local elem = "\2_data\0" .. string.pack("<i4", #data + 1) .. data .. "\0"
  return string.pack("<i4", 4 + #elem + 1) .. elem .. "\0"
end

-- Runs a script through `-e` with `store` wrapped: right before the
-- delete of collection BEFORE, a live pipeline rewrites collection REWRITE
-- (a race between the walk and the delete, made deterministic).
local RACE_HOOK = [[
local script, before, rewrite = arg[1], arg[2], arg[3]
local args = table.move(arg, 4, #arg, 1, {})
args[0] = script
arg = args
local real = store
store = setmetatable({}, { __index = function(_, name)
  local f = real[name]
  return function(_, c, ...)
    if name == "delete_resume_token" and c == before then
      real:save_raw(rewrite, rs.bson.encode { _data = "82FFFFFFF0000000012B022C0100296E5A1004" }, false)
    end
    return f(real, c, ...)
  end
end })
return require("lib.options").main(dofile(script), arg)   -- the script returns its declaration
]]

describe("cleanup and export on Rigatoni 0.2 streams", function()
  local srv

  setup(function() srv = servers.redis {} end)
  teardown(function() servers.stop_all() end)
  before_each(function() srv:cli("FLUSHALL") end)

  -- name -> seconds of its token, written as the Rust store writes them.
  local function seed(keys)
    for name, seconds in pairs(keys) do srv:set_raw(P .. name, token_bytes(seconds)) end
  end
  local function exists(name) return srv:cli("EXISTS", P .. name) == "1" end
  local function assert_kept(names)
    for _, n in ipairs(names) do assert.is_true(exists(n), n .. " was deleted") end
  end
  local function assert_gone(names)
    for _, n in ipairs(names) do assert.is_false(exists(n), n .. " is still there") end
  end
  local function cleanup(...)
    return run { "-u", srv.url, "cleanup", ... }
  end

  -- The keys of three pipelines (collection, database, deployment watch)
  -- and a plain token, all stale; plus a fresh stream with an old mirror.
  local function seed_all_levels()
    seed {
      ["resume_token:shop:orders"] = OLD, orders = FRESH,
      ["resume_token:shop:users"] = FRESH, users = OLD,
      ["resume_token:database:shop"] = OLD, ["__db:shop"] = OLD,
      ["resume_token:crm:leads"] = OLD, leads = OLD,
      ["resume_token:database:crm"] = OLD, ["__db:crm"] = OLD,
      ["resume_token:deployment"] = OLD, ["__deployment__"] = OLD,
      lonely = OLD,
    }
  end

  describe("cleanup --older-than", function()
    it("deletes a stale stream key with its mirror, and keeps a fresh one with its old mirror", function()
      seed_all_levels()
      local code, out, err = cleanup("--older-than", "30d", "--yes")
      assert.equal(0, code, out .. err)
      -- age is the stream key's: a fresh mirror goes with its stale key ...
      assert_gone { "resume_token:shop:orders", "orders", "resume_token:database:shop", "__db:shop",
                    "resume_token:crm:leads", "leads", "resume_token:database:crm", "__db:crm",
                    "resume_token:deployment", "__deployment__", "lonely" }
      -- ... and an old mirror stays with its fresh key
      assert_kept { "resume_token:shop:users", "users" }
      assert.matches("cleanup: 6 deleted %(older than 30d%) %+ 5 mirrors", out)
    end)

    it("plans each stream key with its mirror and changes nothing without --yes", function()
      seed_all_levels()
      local code, out = cleanup("--older-than", "30d")
      assert.equal(0, code)
      assert.matches("would delete resume_token:shop:orders (+ mirror orders) (cluster time", out, 1, true)
      assert.matches("would delete resume_token:database:shop (+ mirror __db:shop) (", out, 1, true)
      assert.matches("would delete resume_token:deployment (+ mirror __deployment__) (", out, 1, true)
      assert.matches("would delete lonely (", out, 1, true)
      assert.not_matches("would delete users", out)
      assert.not_matches("would delete orders", out)   -- a mirror has no line of its own
      assert.matches("would delete 6 (older than 30d) + 5 mirrors", out, 1, true)
      assert.equal("13", srv:cli("DBSIZE"))
    end)

    it("keeps a mirror without its stream key as an ordinary token, aged by itself", function()
      seed { orders = OLD, ["__db:gone"] = OLD }
      local code, out = cleanup("--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "orders", "__db:gone" }
    end)

    it("keeps a stream key of unknown age together with its mirror", function()
      srv:set_raw(P .. "resume_token:shop:orders", "not bson")
      seed { orders = OLD }
      local code, out = cleanup("--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_kept { "resume_token:shop:orders", "orders" }
      assert.matches("1 of unknown age kept", out)
    end)

    it("keeps a shared mirror while another stream key it mirrors is kept", function()
      -- {coll} is the mirror of that collection name in every database
      seed { ["resume_token:a:items"] = OLD, ["resume_token:b:items"] = FRESH, items = OLD }
      local code, out = cleanup("--older-than", "30d")
      assert.equal(0, code)
      assert.matches("would delete resume_token:a:items %(cluster time [^\n]*; mirror items stays "
                     .. "%(resume_token:b:items still uses it%)", out)
      code, out = cleanup("--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:a:items" }
      assert_kept { "resume_token:b:items", "items" }
      assert.matches("cleanup: 1 deleted %(older than 30d%);", out)
    end)

    it("deletes a shared mirror with the last of its stream keys", function()
      seed { ["resume_token:a:items"] = OLD, ["resume_token:b:items"] = OLD, items = FRESH }
      local code, out = cleanup("--older-than", "30d")
      assert.matches("would delete resume_token:a:items (+ mirror items, shared with resume_token:b:items)",
                     out, 1, true)
      assert.matches("would delete 2 (older than 30d) + 1 mirror", out, 1, true)
      code, out = cleanup("--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:a:items", "resume_token:b:items", "items" }
      assert.matches("2 deleted (older than 30d) + 1 mirror", out, 1, true)
    end)

    it("keeps a mirror that changed after the walk read it, and says so", function()
      seed { ["resume_token:shop:orders"] = OLD, orders = OLD }
      local code, out, err = run { "-u", srv.url, "-e", RACE_HOOK, "scripts/cleanup.lua",
                                   "resume_token:shop:orders", "orders", "--older-than", "30d", "--yes" }
      assert.equal(0, code, out .. err)
      assert_gone { "resume_token:shop:orders" }
      assert_kept { "orders" }
      assert.matches("mirror orders not deleted: it changed after the walk read it", out, 1, true)
      assert.matches("1 deleted (older than 30d), 1 mirror not deleted (changed meanwhile)", out, 1, true)
    end)

    it("keeps both when the stream key was refreshed after the walk", function()
      seed { ["resume_token:shop:orders"] = OLD, orders = OLD }
      local code, out, err = run { "-u", srv.url, "-e", RACE_HOOK, "scripts/cleanup.lua",
                                   "resume_token:shop:orders", "resume_token:shop:orders",
                                   "--older-than", "30d", "--yes" }
      assert.equal(0, code, out .. err)
      assert_kept { "resume_token:shop:orders", "orders" }
      assert.matches("0 deleted (older than 30d), 1 kept (refreshed meanwhile)", out, 1, true)
    end)

    it("--match selects stream keys; their mirrors follow them", function()
      seed { ["resume_token:shop:orders"] = OLD, orders = OLD, ["resume_token:crm:leads"] = OLD, leads = OLD }
      local code, out = cleanup("--older-than", "30d", "--match", "resume_token:shop:*", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:shop:orders", "orders" }
      assert_kept { "resume_token:crm:leads", "leads" }
      -- a mirror matched alone follows its stream key, which is not selected
      code, out = cleanup("--older-than", "30d", "--match", "leads", "--yes")
      assert.equal(0, code, out)
      assert_kept { "resume_token:crm:leads", "leads" }
    end)
  end)

  -- A plan of every token tries one walk; it must not survive a stream key.
  describe("the one-walk plan", function()
    -- `store` wrapped: each walk is counted (on stderr at the end), and
    -- token_batches hands out every row it read with the stream keys last
    -- (so each mirror is listed before its stream key).
    local ORDER_HOOK = [[
local script = arg[1]
local args = table.move(arg, 2, #arg, 1, {})
args[0] = script
arg = args
local real, walks = store, { resume_tokens = 0, token_batches = 0 }
store = setmetatable({}, { __index = function(_, name)
  local f = real[name]
  if name == "resume_tokens" then
    return function(_, ...) walks.resume_tokens = walks.resume_tokens + 1 return f(real, ...) end
  end
  if name ~= "token_batches" then return function(_, ...) return f(real, ...) end end
  return function(_, o)
    walks.token_batches = walks.token_batches + 1
    local plain, streams = {}, {}
    for names, values, ttls, times, n in f(real, o) do
      for i = 1, n do
        local row = { names[i], values[i], ttls[i], times[i] }
        local into = rs.parse_stream_key(names[i]) and streams or plain
        into[#into + 1] = row
      end
    end
    table.move(streams, 1, #streams, #plain + 1, plain)
    local at = 0
    return function()
      if at >= #plain then return nil end
      local names, values, ttls, times, n = {}, {}, {}, {}, 0
      while at < #plain and n < 3 do
        at, n = at + 1, n + 1
        names[n], values[n], ttls[n], times[n] = table.unpack(plain[at], 1, 4)
      end
      return names, values, ttls, times, n
    end
  end
end })
local rc = require("lib.options").main(dofile(script), arg)   -- the script returns its declaration
io.stderr:write(string.format("walks: resume_tokens %d, token_batches %d\n", walks.resume_tokens,
                              walks.token_batches))
return rc
]]
    local function plan(...)
      return run { "-u", srv.url, "-e", ORDER_HOOK, "scripts/cleanup.lua", ... }
    end

    it("walks a store without stream keys once", function()
      local keys = {}
      for i = 1, 20 do keys["c" .. i] = i % 2 == 0 and OLD or FRESH end
      seed(keys)
      local code, out, err = plan("--older-than", "30d")
      assert.equal(0, code, out .. err)
      assert.matches("walks: resume_tokens 0, token_batches 1", err, 1, true)
      assert.matches("would delete 10 (older than 30d); 20 scanned", out, 1, true)
    end)

    it("drops its plan at the first stream key: a mirror listed first is no plain token", function()
      local keys = { ["resume_token:shop:c3"] = OLD, ["resume_token:crm:c4"] = FRESH }
      for i = 1, 20 do keys["c" .. i] = OLD end
      seed(keys)
      local code, out, err = plan("--older-than", "30d", "--set-ttl", "7d")
      assert.equal(0, code, out .. err)
      assert.matches("walks: resume_tokens 1, token_batches 2", err, 1, true)
      -- c3 goes with its stale stream key, c4 stays with its fresh one
      assert.matches("would delete 19 (older than 30d) + 1 mirror, would set TTL on 2; 22 scanned", out, 1, true)
      assert.matches("would delete resume_token:shop:c3 (+ mirror c3) (", out, 1, true)
      assert.not_matches("would delete c3 ", out)
      assert.not_matches("would delete c4 ", out)
      assert.equal("22", srv:cli("DBSIZE"))
    end)

    it("is not used by --yes, which knows the stream keys before it acts", function()
      seed { ["resume_token:shop:c1"] = FRESH, c1 = OLD, c2 = OLD }
      local code, out, err = plan("--older-than", "30d", "--yes")
      assert.equal(0, code, out .. err)
      assert.matches("walks: resume_tokens 1, token_batches 1", err, 1, true)
      assert.matches("cleanup: 1 deleted (older than 30d)", out, 1, true)
      assert_kept { "resume_token:shop:c1", "c1" }
      assert_gone { "c2" }
    end)
  end)

  describe("cleanup --stream", function()
    it("DB:COLL selects one collection stream and its mirror", function()
      seed_all_levels()
      local code, out = cleanup("--stream", "shop:orders", "--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:shop:orders", "orders" }
      assert_kept { "resume_token:database:shop", "__db:shop", "resume_token:crm:leads", "leads",
                    "resume_token:deployment", "__deployment__", "lonely", "users" }
      assert.matches("cleanup: 1 deleted (older than 30d) + 1 mirror", out, 1, true)
    end)

    it("DB selects the database stream and every collection stream of that database", function()
      seed_all_levels()
      local code, out = cleanup("--stream", "shop", "--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:database:shop", "__db:shop", "resume_token:shop:orders", "orders" }
      assert_kept { "resume_token:shop:users", "users",   -- selected, but fresh
                    "resume_token:database:crm", "__db:crm", "resume_token:crm:leads", "leads",
                    "resume_token:deployment", "__deployment__", "lonely" }
    end)

    it(":deployment selects the deployment stream; --stream repeats", function()
      seed_all_levels()
      local code, out = cleanup("--stream", ":deployment", "--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:deployment", "__deployment__" }
      assert_kept { "resume_token:shop:orders", "orders", "resume_token:database:shop", "lonely" }
      code, out = cleanup("--stream", "crm:leads", "--stream=shop:orders", "--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:crm:leads", "leads", "resume_token:shop:orders", "orders" }
      assert_kept { "resume_token:database:crm", "__db:crm", "resume_token:database:shop", "lonely" }
    end)

    it("cleaning one database keeps the mirror it shares with another database's stream", function()
      seed { ["resume_token:a:items"] = OLD, ["resume_token:b:items"] = OLD, items = OLD }
      local code, out = cleanup("--stream", "a", "--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:a:items" }
      assert_kept { "resume_token:b:items", "items" }
      code, out = cleanup("--stream", "b", "--older-than", "30d", "--yes")
      assert.equal(0, code, out)
      assert_gone { "resume_token:b:items", "items" }
    end)

    it("--set-ttl gives the TTL to the stream key and its mirror, not to a mirror shared outside", function()
      seed { ["resume_token:shop:orders"] = FRESH, orders = FRESH,
             ["resume_token:a:items"] = FRESH, ["resume_token:b:items"] = FRESH, items = FRESH }
      local code, out = cleanup("--stream", "shop", "--stream", "a", "--set-ttl", "1h", "--yes")
      assert.equal(0, code, out)
      for _, n in ipairs { "resume_token:shop:orders", "orders", "resume_token:a:items" } do
        local ttl = tonumber(srv:cli("TTL", P .. n))
        assert.is_true(ttl > 3500 and ttl <= 3600, n .. ": TTL " .. ttl)
      end
      assert.equal("-1", srv:cli("TTL", P .. "items"))
      assert.equal("-1", srv:cli("TTL", P .. "resume_token:b:items"))
      assert.matches("TTL set on 3", out, 1, true)
    end)
  end)

  describe("--stream selections that are wrong", function()
    local bad = {
      [""] = "empty",
      [":"] = "database name is empty",
      [":orders"] = "database name is empty",
      ["shop:"] = "collection name is empty",
      [":deploy"] = ":deployment",
      ["database:orders"] = "ambiguous",
      ["sh\255op"] = "not UTF%-8",
    }
    for _, script in ipairs { "cleanup", "export" } do
      it(script .. " refuses them with exit 2, naming the problem", function()
        seed { ["resume_token:shop:orders"] = OLD, orders = OLD }
        for text, why in pairs(bad) do
          local argv = { "-u", srv.url, script, "--stream", text }
          if script == "cleanup" then argv[#argv + 1] = "--older-than"; argv[#argv + 1] = "1d" end
          local code, out, err = run(argv)
          assert.equal(2, code, text .. ": " .. out .. err)
          assert.matches("--stream", err, 1, true)
          assert.matches(why, err, nil, false)
        end
        local code, _, err = run { "-u", srv.url, script, "--stream", "shop", "--match", "x*" }
        assert.equal(2, code)
        assert.matches("--stream and --match", err, 1, true)
        assert.equal("2", srv:cli("DBSIZE"))
      end)
    end
  end)

  describe("export --stream", function()
    local function exported(...)
      local code, out, err = run { "-u", srv.url, "export", ... }
      assert.equal(0, code, err)
      local rows = {}
      for line in out:gmatch("[^\n]+") do
        local r = assert(cli.json_decode(line))
        assert.is_nil(rows[r.collection], "written twice: " .. r.collection)
        rows[r.collection] = r
      end
      return rows, err
    end
    local function names(rows)
      local list = {}
      for n in pairs(rows) do list[#list + 1] = n end
      table.sort(list)
      return list
    end

    it("DB:COLL writes exactly the stream key and its mirror, byte for byte", function()
      seed_all_levels()
      local rows, err = exported("--stream", "shop:orders")
      assert.same({ "orders", "resume_token:shop:orders" }, names(rows))
      assert.equal(token_bytes(OLD), cli.base64_decode(rows["resume_token:shop:orders"].bson_base64))
      assert.equal(token_bytes(FRESH), cli.base64_decode(rows.orders.bson_base64))
      assert.matches("export: 2 tokens to stdout", err)
    end)

    it("DB writes the database stream and the collection streams of that database", function()
      seed_all_levels()
      assert.same({ "__db:shop", "orders", "resume_token:database:shop", "resume_token:shop:orders",
                    "resume_token:shop:users", "users" }, names(exported("--stream", "shop")))
    end)

    it(":deployment writes the deployment stream; selections add up", function()
      seed_all_levels()
      assert.same({ "__deployment__", "resume_token:deployment" }, names(exported("--stream", ":deployment")))
      assert.same({ "__deployment__", "leads", "resume_token:crm:leads", "resume_token:deployment" },
                  names(exported("--stream", ":deployment", "--stream", "crm:leads")))
    end)

    it("writes a shared mirror once, with the stream that was selected", function()
      seed { ["resume_token:a:items"] = OLD, ["resume_token:b:items"] = OLD, items = OLD }
      assert.same({ "items", "resume_token:a:items" }, names(exported("--stream", "a")))
      assert.same({ "items", "resume_token:a:items", "resume_token:b:items" },
                  names(exported("--stream", "a", "--stream", "b:items")))
    end)

    it("keeps the TTL of each key it writes", function()
      seed { ["resume_token:shop:orders"] = OLD, orders = OLD }
      assert.equal("1", srv:cli("EXPIRE", P .. "orders", "3600"))
      local rows = exported("--stream", "shop:orders")
      assert.equal(cli.null, rows["resume_token:shop:orders"].ttl_ms)
      assert.is_true(rows.orders.ttl_ms > 3500000 and rows.orders.ttl_ms <= 3600000)
    end)
  end)
end)
