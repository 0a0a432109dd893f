-- SPDX-License-Identifier: MIT
-- spec/stream_spec.lua -- Rigatoni 0.2 stream keys: the collection names a
-- Rust pipeline resumes from (WatchLevel::resume_token_key) and the
-- per-batch mirror it also writes, built and parsed by rs.stream_key,
-- rs.stream_mirror_key and rs.parse_stream_key.

local rs = require "rigatoni_store"
local servers = require "support.servers"

local function bson_one_string(key, value)
  local elem = "\2" .. key .. "\0" .. string.pack("<i4", #value + 1) .. value .. "\0"
  return string.pack("<i4", 4 + #elem + 1) .. elem .. "\0"
end

local function kind_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return err.kind, err.message
end

describe("rs.stream_key", function()
  it("names a collection watch resume_token:{db}:{coll}", function()
    assert.equal("resume_token:shop:orders", rs.stream_key("shop", "orders"))
  end)

  it("names a database watch resume_token:database:{db}", function()
    assert.equal("resume_token:database:shop", rs.stream_key("shop"))
  end)

  it("names the deployment watch resume_token:deployment", function()
    assert.equal("resume_token:deployment", rs.stream_key())
  end)

  it("keeps ':' inside a collection name (it is the last part)", function()
    assert.equal("resume_token:shop:a:b", rs.stream_key("shop", "a:b"))
  end)

  it("refuses an empty or ':'-containing database and an empty collection", function()
    local kind, msg = kind_of(rs.stream_key, "", "orders")
    assert.equal("config", kind)
    assert.matches("database name is empty", msg)
    kind, msg = kind_of(rs.stream_key, "a:b", "orders")
    assert.equal("config", kind)
    assert.matches("contains ':'", msg)
    kind, msg = kind_of(rs.stream_key, "a:b")
    assert.equal("config", kind)
    kind, msg = kind_of(rs.stream_key, "shop", "")
    assert.equal("config", kind)
    assert.matches("collection name is empty", msg)
  end)

  it("refuses names that are not UTF-8 text, and a collection without database", function()
    assert.equal("config", (kind_of(rs.stream_key, "sh\255op", "orders")))
    assert.equal("config", (kind_of(rs.stream_key, "shop", "or\0ders")))
    assert.equal("config", (kind_of(rs.stream_key, nil, "orders")))
  end)
end)

describe("rs.stream_mirror_key", function()
  it("names the per-batch keys {coll}, __db:{db} and __deployment__", function()
    assert.equal("orders", rs.stream_mirror_key("shop", "orders"))
    assert.equal("__db:shop", rs.stream_mirror_key("shop"))
    assert.equal("__deployment__", rs.stream_mirror_key())
  end)

  it("checks its names like stream_key", function()
    assert.equal("config", (kind_of(rs.stream_mirror_key, "a:b", "orders")))
  end)
end)

describe("rs.parse_stream_key", function()
  it("parses each level back", function()
    assert.same({ "collection", "shop", "orders" }, { rs.parse_stream_key("resume_token:shop:orders") })
    assert.same({ "collection", "shop", "a:b" }, { rs.parse_stream_key("resume_token:shop:a:b") })
    local level, db, coll = rs.parse_stream_key("resume_token:database:shop")
    assert.equal("database", level)
    assert.equal("shop", db)
    assert.is_nil(coll)
    level, db, coll = rs.parse_stream_key("resume_token:deployment")
    assert.equal("deployment", level)
    assert.is_nil(db)
    assert.is_nil(coll)
  end)

  it("reads a collection of database 'database' with ':' in its name as a collection watch", function()
    assert.same({ "collection", "database", "a:b" }, { rs.parse_stream_key("resume_token:database:a:b") })
  end)

  it("returns nil for names that are not stream keys", function()
    for _, name in ipairs{ "orders", "__db:shop", "__deployment__", "resume_token:",
                           "resume_token:shop", "resume_token:shop:", "resume_token::orders",
                           "Resume_token:shop:orders",
                           "resume_token:sh\255op:orders" } do
      assert.is_nil(rs.parse_stream_key(name), name)
    end
  end)

  it("round-trips every name stream_key builds", function()
    for _, case in ipairs{ { "shop", "orders" }, { "db-1", "coll.with.dots" }, { "münchen", "a:b:c" },
                           { "shop" }, { "x" }, {} } do
      local level, db, coll = rs.parse_stream_key(rs.stream_key(case[1], case[2]))
      assert.equal(case[2] and "collection" or case[1] and "database" or "deployment", level)
      assert.equal(case[1], db)
      assert.equal(case[2], coll)
    end
  end)
end)

describe("stream keys against a Rust pipeline's keys", function()
  local srv, store
  setup(function()
    srv = servers.redis{}
    store = rs.new{ url = srv.url }
  end)
  teardown(function()
    if store then store:close() end
    servers.stop_all()
  end)

  it("reads the token a Rust pipeline wrote, by its stream key", function()
    local bytes = bson_one_string("_data", "8265000000010000000000")
    -- Written the way Rigatoni 0.2 does, without our module.
    srv:set_raw("rigatoni:resume_token:resume_token:shop:orders", bytes)
    srv:set_raw("rigatoni:resume_token:resume_token:database:shop", bytes)
    srv:set_raw("rigatoni:resume_token:resume_token:deployment", bytes)
    assert.equal(bytes, store:get_raw(rs.stream_key("shop", "orders")))
    assert.equal(bytes, store:get_raw(rs.stream_key("shop")))
    assert.equal(bytes, store:get_raw(rs.stream_key()))
    assert.same({ _data = "8265000000010000000000" }, store:get_resume_token(rs.stream_key("shop", "orders")))
  end)

  it("saves under the exact key a Rust pipeline resumes from", function()
    store:save_resume_token(rs.stream_key("shop", "users"), { _data = "82650000000200000000" })
    assert.equal(bson_one_string("_data", "82650000000200000000"),
                 srv:cli_raw("GET", "rigatoni:resume_token:resume_token:shop:users"))
  end)
end)
