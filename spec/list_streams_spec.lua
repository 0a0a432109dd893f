-- SPDX-License-Identifier: MIT
-- spec/list_streams_spec.lua -- `list` on what a Rigatoni 0.2 pipeline
-- really keeps: stream keys and their per-batch mirrors, written with
-- redis-cli exactly as the Rust store writes them (not by our save), shown
-- with their streams, aged in the Prometheus output.

local servers = require "support.servers"
local helpers = require "support.helpers"
local run = helpers.run_host

package.path = "scripts/?.lua;" .. package.path
local cli = require "lib.cli"

local P = "rigatoni:resume_token:"
local NOW   -- when before_each wrote the tokens: busted loads every file before it runs one

-- |age - expected| within the seconds since the tokens were written (a busy
-- machine may take several between before_each and the list), plus one.
local function about(age, expected)
  return age ~= nil and age >= expected - 1 and age <= expected + (os.time() - NOW) + 1
end

-- BSON of { _data = "82<seconds><increment>..." }, built by hand.
local function token_bytes(seconds)
  local data = string.format("82%08X%08X2B022C0100296E5A1004", seconds, 1)
  local elem = "\2_data\0" .. string.pack("<i4", #data + 1) .. data .. "\0"
  return string.pack("<i4", 4 + #elem + 1) .. elem .. "\0"
end

local function rows_of(out)
  local rows = {}
  for line in out:gmatch("[^\n]+") do
    local r = assert(cli.json_decode(line))
    rows[r.collection or r.key] = r
  end
  return rows
end

describe("list on a Rigatoni 0.2 pipeline's keys", function()
  local srv
  setup(function()
    srv = servers.redis{}
  end)
  teardown(function() servers.stop_all() end)
  before_each(function()
    NOW = os.time()
    srv:cli("FLUSHALL")
    -- The table of the issue: resume key read at start-up, mirror per batch.
    srv:set_raw(P .. "resume_token:shop:orders", token_bytes(NOW - 600))
    srv:set_raw(P .. "orders", token_bytes(NOW - 30))
    srv:set_raw(P .. "resume_token:database:crm", token_bytes(NOW - 7200))
    srv:set_raw(P .. "__db:crm", token_bytes(NOW - 7000))
    srv:set_raw(P .. "resume_token:deployment", token_bytes(NOW - 5))
    srv:set_raw(P .. "lonely", token_bytes(NOW - 1))     -- a plain name: no stream, no mirror
    srv:set_raw(P .. "__deployment__", "not bson")       -- a mirror that is corrupt
    assert.equal("1", srv:cli("EXPIRE", P .. "orders", "3600"))
  end)

  it("gives stream keys their stream and marks the mirrors (jsonl)", function()
    local code, out, err = run { "-u", srv.url, "list", "--format", "jsonl" }
    assert.equal(0, code, err)
    local rows = rows_of(out)
    assert.same({ level = "collection", database = "shop", collection = "orders" },
                rows["resume_token:shop:orders"].stream)
    assert.same({ level = "database", database = "crm", collection = cli.null },
                rows["resume_token:database:crm"].stream)
    assert.equal("deployment", rows["resume_token:deployment"].stream.level)
    assert.same({ "resume_token:shop:orders" }, rows.orders.mirror_of)
    assert.same({ "resume_token:database:crm" }, rows["__db:crm"].mirror_of)
    assert.same({ "resume_token:deployment" }, rows["__deployment__"].mirror_of)
    assert.is_nil(rows.lonely.stream)
    assert.is_nil(rows.lonely.mirror_of)
  end)

  it("does not call a name a mirror when its stream key is absent", function()
    srv:cli("DEL", P .. "resume_token:shop:orders")
    local code, out = run { "-u", srv.url, "list", "--format", "jsonl" }
    assert.equal(0, code)
    assert.is_nil(rows_of(out).orders.mirror_of)
  end)

  it("shows the stream in table and CSV columns", function()
    local code, out = run { "-u", srv.url, "list" }
    assert.equal(0, code)
    assert.matches("resume_token:shop:orders[^\n]*collection shop%.orders\n", out)
    assert.matches("\norders [^\n]*mirror of resume_token:shop:orders\n", out)
    code, out = run { "-u", srv.url, "list", "--format", "csv" }
    assert.equal(0, code)
    assert.matches("\nresume_token:shop:orders,,%d+,[^,]*,%d+,ok,collection,shop,orders,\n", out)
    assert.matches("\norders,[%d.]+,%d+,[^,]*,%d+,ok,,,,resume_token:shop:orders\n", out)
  end)

  it("--streams gives one row per stream with its mirror's age", function()
    local code, out, err = run { "-u", srv.url, "list", "--streams", "--format", "jsonl" }
    assert.equal(0, code, err)
    local rows = rows_of(out)
    local n = 0
    for _ in pairs(rows) do n = n + 1 end
    assert.equal(3, n)
    local orders = rows["resume_token:shop:orders"]
    assert.equal("orders", orders.mirror)
    assert.is_true(about(orders.age_seconds, 600), tostring(orders.age_seconds))
    assert.is_true(about(orders.mirror_age_seconds, 30), tostring(orders.mirror_age_seconds))
    assert.is_true(rows["resume_token:deployment"].mirror_exists)
    assert.equal(cli.null, rows["resume_token:deployment"].mirror_age_seconds)   -- corrupt mirror
    assert.matches("list: 3 streams", err)
  end)

  it("--format prometheus writes ages, TTLs, the count and the scan errors", function()
    local code, out, err = run { "-u", srv.url, "list", "--format", "prometheus" }
    assert.equal(0, code, err)
    local function sample(name, labels)
      local v = out:match("\n" .. name:gsub("_", "%%_") .. labels:gsub("[%[%]%(%)%.%-%+%*%?%^%$]", "%%%0") .. " ([%d.]+)\n")
      return tonumber(v)
    end
    local age = sample("rigatoni_resume_token_age_seconds", '{level="collection",database="shop",collection="orders"}')
    assert.is_true(about(age, 600), out)
    age = sample("rigatoni_resume_token_age_seconds", '{level="database",database="crm"}')
    assert.is_true(about(age, 7200), out)
    assert.truthy(sample("rigatoni_resume_token_age_seconds", '{level="deployment"}'))
    assert.truthy(sample("rigatoni_resume_token_age_seconds", '{collection="lonely"}'))
    local ttl = sample("rigatoni_resume_token_ttl_seconds", '{collection="orders"}')
    assert.is_true(ttl and ttl > 3500 and ttl <= 3600, out)
    assert.equal(7, sample("rigatoni_resume_tokens", ""))
    assert.equal(1, sample("rigatoni_resume_token_scan_errors", ""))
    -- Each metric's samples stand together after its TYPE line.
    local seen, last = {}, nil
    for name in out:gmatch("\n(rigatoni_[%w_]+)[{ ]") do
      if name ~= last then
        assert.is_nil(seen[name], "samples of " .. name .. " are split")
        seen[name], last = true, name
      end
    end
  end)

  it("escapes label values per the exposition format", function()
    srv:set_raw(P .. 'resume_token:sh"op:a\\b', token_bytes(NOW))
    local code, out = run { "-u", srv.url, "list", "--format", "prometheus" }
    assert.equal(0, code)
    -- the value is the name (UTF-8 text), escaped as the format says: a
    -- backslash reads \\ and a double quote \" (a name's own "\x" would
    -- read \x5cx, so it cannot pass for the \xNN of a byte that is not UTF-8)
    assert.matches('database="sh\\"op",collection="a\\\\b"', out, 1, true)
  end)
end)
