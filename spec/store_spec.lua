-- SPDX-License-Identifier: MIT
-- spec/store_spec.lua -- resume token operations against a real redis-server:
-- wire format (exact keys and BSON bytes), TTLs, raw access, listing.

local rs = require "rigatoni_store"
local servers = require "support.servers"
local system = require "system"

local PREFIX = "rigatoni:resume_token"

-- A token the way MongoDB hands them out: `_data` is a hex string that
-- begins with 0x82 and the cluster time.
local function token(n)
  return { _data = string.format("8265%08X000000012B022C0100296E5A1004%08X", n or 1, n or 1) }
end

-- The BSON bytes of { [key] = value } for one string field, built by hand
-- (not by the module) so that the wire format is checked independently.
local function bson_one_string(key, value)
  local elem = "\2" .. key .. "\0" .. string.pack("<i4", #value + 1) .. value .. "\0"
  return string.pack("<i4", 4 + #elem + 1) .. elem .. "\0"
end

local function dbsize(srv)
  return tonumber(srv:cli("DBSIZE"))
end

-- One shared server per file; every test starts from an empty database.
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
end)

describe("save, get and delete", function()
  it("reads back the token that was saved", function()
    local tok = token(7)
    store:save_resume_token("users", tok)
    assert.same(tok, store:get_resume_token("users"))
  end)

  it("returns nil for a collection without token", function()
    assert.is_nil(store:get_resume_token("nobody"))
  end)

  it("overwrites the previous token of the collection", function()
    store:save_resume_token("users", token(1))
    store:save_resume_token("users", token(2))
    assert.same(token(2), store:get_resume_token("users"))
    assert.equal(1, dbsize(srv))
  end)

  it("keeps nested documents, arrays, numbers and booleans", function()
    local tok = { _data = "82AB", meta = { n = 42, f = 1.5, ok = true, list = { "a", "b" } } }
    store:save_resume_token("orders", tok)
    local back = store:get_resume_token("orders")
    assert.same(tok, back)
    assert.equal("integer", math.type(back.meta.n))
    assert.equal("float", math.type(back.meta.f))
  end)

  it("delete returns true when a token was deleted and false when absent", function()
    store:save_resume_token("users", token())
    assert.is_true(store:delete_resume_token("users"))
    assert.is_nil(store:get_resume_token("users"))
    assert.equal("0", srv:cli("EXISTS", PREFIX .. ":users"))
    assert.is_false(store:delete_resume_token("users"))
  end)

  it("deleting one collection leaves the others", function()
    store:save_resume_token("a", token(1))
    store:save_resume_token("b", token(2))
    store:delete_resume_token("a")
    assert.same(token(2), store:get_resume_token("b"))
  end)
end)

describe("wire format", function()
  it("writes the key <key_prefix>:<collection> with the raw BSON bytes", function()
    local tok = { _data = "826553E0F4000000012B022C0100" }
    store:save_resume_token("users", tok)
    local key = PREFIX .. ":users"
    assert.equal(PREFIX .. ":users", srv:cli("KEYS", "*"))
    assert.equal("string", srv:cli("TYPE", key))
    local bytes = srv:cli_raw("GET", key)
    assert.equal(bson_one_string("_data", tok._data), bytes)
    assert.equal(rs.bson.encode(tok), bytes)
  end)

  it("reads a token written by another client in raw BSON", function()
    local bytes = bson_one_string("_data", "8200000001")
    srv:set_raw(PREFIX .. ":legacy", bytes)
    assert.same({ _data = "8200000001" }, store:get_resume_token("legacy"))
  end)

  it("uses a custom key_prefix", function()
    local s <close> = rs.new{ url = srv.url, key_prefix = "myapp:tokens" }
    local tok = token(3)
    s:save_resume_token("users", tok)
    assert.equal("myapp:tokens:users", srv:cli("KEYS", "*"))
    assert.equal(rs.bson.encode(tok), srv:cli_raw("GET", "myapp:tokens:users"))
    assert.same(tok, s:get_resume_token("users"))
    assert.is_nil(store:get_resume_token("users"))
  end)

  it("stores a collection name with CR LF and spaces as one key and runs nothing else", function()
    srv:cli("SET", "canary", "alive")
    local name = "a b\r\nFLUSHALL"
    store:save_resume_token(name, token(9))
    assert.equal(2, dbsize(srv))
    assert.equal("alive", srv:cli("GET", "canary"))
    assert.equal("1", srv:cli("EXISTS", PREFIX .. ":" .. name))
    assert.same(token(9), store:get_resume_token(name))
    assert.is_true(store:delete_resume_token(name))
    assert.equal(1, dbsize(srv))
  end)
end)

describe("TTL", function()
  it("saves with EX when the store has a ttl", function()
    local s <close> = rs.new{ url = srv.url, ttl = 3600 }
    s:save_resume_token("users", token())
    local ttl = tonumber(srv:cli("TTL", PREFIX .. ":users"))
    assert.is_true(ttl > 3590 and ttl <= 3600, "TTL " .. tostring(ttl))
  end)

  it("saves without expiry when the store has no ttl", function()
    store:save_resume_token("users", token())
    assert.equal("-1", srv:cli("TTL", PREFIX .. ":users"))
  end)

  it("get does not refresh the TTL", function()
    local s <close> = rs.new{ url = srv.url, ttl = 3600 }
    local key = PREFIX .. ":users"
    s:save_resume_token("users", token())
    local before = tonumber(srv:cli("PTTL", key))
    system.sleep(1.1)
    assert.same(token(), s:get_resume_token("users"))
    assert.is_string(s:get_raw("users"))
    local after = tonumber(srv:cli("PTTL", key))
    assert.is_true(after > 0, "PTTL " .. tostring(after))
    assert.is_true(after <= before - 1000,
                   string.format("PTTL went from %d to %d across a get", before, after))
  end)

  it("store:ttl returns seconds when the token expires", function()
    local s <close> = rs.new{ url = srv.url, ttl = 3600 }
    s:save_resume_token("users", token())
    local ttl = s:ttl("users")
    assert.is_number(ttl)
    assert.is_true(ttl > 3590 and ttl <= 3600, "ttl " .. tostring(ttl))
  end)

  it("store:ttl returns nil when the token has no expiry", function()
    store:save_resume_token("users", token())
    local ttl = store:ttl("users")
    assert.is_nil(ttl)
    assert.is_not_false(ttl)
  end)

  it("store:ttl returns false when there is no token", function()
    assert.is_false(store:ttl("nobody"))
  end)
end)

describe("raw bytes", function()
  local all_bytes = {}
  for i = 0, 255 do all_bytes[#all_bytes + 1] = string.char(i) end
  local binary = "\0head\0\r\n*1\r\n$4\r\n" .. table.concat(all_bytes) .. "\r\n\0"

  it("save_raw and get_raw are byte exact, NUL and CR LF included", function()
    store:save_raw("bin", binary)
    assert.equal(binary, store:get_raw("bin"))
    assert.equal(binary, srv:cli_raw("GET", PREFIX .. ":bin"))
  end)

  it("get_raw returns the exact bytes of a token saved as a table", function()
    local tok = token(5)
    store:save_resume_token("users", tok)
    assert.equal(rs.bson.encode(tok), store:get_raw("users"))
  end)

  it("get_raw returns nil when there is no token", function()
    assert.is_nil(store:get_raw("nobody"))
  end)

  it("save_raw with a ttl sets that ttl on a store without ttl", function()
    store:save_raw("bin", binary, 60)
    local ttl = tonumber(srv:cli("TTL", PREFIX .. ":bin"))
    assert.is_true(ttl > 55 and ttl <= 60, "TTL " .. tostring(ttl))
  end)

  it("save_raw with a ttl overrides the ttl of the store", function()
    local s <close> = rs.new{ url = srv.url, ttl = 3600 }
    s:save_raw("bin", binary, 60)
    local ttl = tonumber(srv:cli("TTL", PREFIX .. ":bin"))
    assert.is_true(ttl > 55 and ttl <= 60, "TTL " .. tostring(ttl))
    s:save_raw("bin2", binary)
    ttl = tonumber(srv:cli("TTL", PREFIX .. ":bin2"))
    assert.is_true(ttl > 3590 and ttl <= 3600, "TTL " .. tostring(ttl))
  end)

  it("save_raw with a fractional ttl keeps the milliseconds", function()
    store:save_raw("bin", binary, 1.5)
    local pttl = tonumber(srv:cli("PTTL", PREFIX .. ":bin"))
    assert.is_true(pttl > 1000 and pttl <= 1500, "PTTL " .. tostring(pttl))
  end)
end)

describe("list_resume_tokens", function()
  it("returns every token of the prefix by collection", function()
    store:save_resume_token("users", token(1))
    store:save_resume_token("orders", token(2))
    store:save_resume_token("a:b", token(3))
    local tokens, errors = store:list_resume_tokens()
    assert.same({ users = token(1), orders = token(2), ["a:b"] = token(3) }, tokens)
    assert.is_nil(next(errors or {}))
  end)

  it("ignores keys outside the prefix", function()
    store:save_resume_token("users", token(1))
    srv:set_raw("other:users", rs.bson.encode(token(2)))
    srv:set_raw(PREFIX .. "X:users", rs.bson.encode(token(3)))
    srv:set_raw(PREFIX, rs.bson.encode(token(4)))
    local tokens = store:list_resume_tokens()
    assert.same({ users = token(1) }, tokens)
  end)

  it("returns an empty table when there are no tokens", function()
    local tokens, errors = store:list_resume_tokens()
    assert.same({}, tokens)
    assert.is_nil(next(errors or {}))
  end)

  it("reports corrupt values in a second table and returns the others", function()
    store:save_resume_token("good", token(1))
    srv:set_raw(PREFIX .. ":bad", "this is not BSON")
    local tokens, errors = store:list_resume_tokens()
    assert.same({ good = token(1) }, tokens)
    assert.is_table(errors)
    assert.is_string(errors.bad)
    assert.is_nil(next(errors, "bad"))
  end)
end)

describe("streaming resume_tokens", function()
  local function collect(iter_opts, s)
    local seen, count = {}, 0
    for collection, tok, ttl in (s or store):resume_tokens(iter_opts) do
      count = count + 1
      seen[collection] = { token = tok, ttl = ttl }
    end
    return seen, count
  end

  it("lists 10,000 tokens in batches, each once, with their ttl", function()
    local N = 10000
    local cmds = {}
    for i = 1, N do
      local key = string.format("%s:coll_%05d", PREFIX, i)
      local bytes = rs.bson.encode(token(i))
      if i % 1000 == 0 then
        cmds[#cmds + 1] = servers.resp{ "SET", key, bytes, "EX", "1000" }
      else
        cmds[#cmds + 1] = servers.resp{ "SET", key, bytes }
      end
    end
    srv:pipe(table.concat(cmds))
    assert.equal(N, dbsize(srv))

    assert.equal("OK", srv:cli("CONFIG", "RESETSTAT"))
    local seen, count = collect{ match = "*", batch = 1000 }
    -- Listed with SCAN (several cursor steps) and MGET, never KEYS.
    local stats = srv:cli("INFO", "commandstats")
    local scans = tonumber(stats:match("cmdstat_scan:calls=(%d+)"))
    assert.is_true(scans ~= nil and scans >= 2, stats)
    assert.matches("cmdstat_mget:calls=", stats, 1, true)
    assert.not_matches("cmdstat_keys:", stats, 1, true)
    -- SCAN may repeat a key while the table rehashes, never skip one.
    assert.is_true(count >= N, "yielded " .. count)
    local distinct = 0
    for i = 1, N do
      local entry = seen[string.format("coll_%05d", i)]
      assert.is_table(entry, "coll_" .. i .. " missing")
      distinct = distinct + 1
      assert.same(token(i), entry.token)
      if i % 1000 == 0 then
        assert.is_number(entry.ttl)
        assert.is_true(entry.ttl > 990 and entry.ttl <= 1000, "ttl " .. tostring(entry.ttl))
      else
        assert.is_nil(entry.ttl)
      end
    end
    assert.equal(N, distinct)

    local tokens = store:list_resume_tokens()
    local listed = 0
    for _ in pairs(tokens) do listed = listed + 1 end
    assert.equal(N, listed)
    assert.equal(N, dbsize(srv))
  end)

  it("filters collections with the match glob", function()
    store:save_resume_token("orders_1", token(1))
    store:save_resume_token("orders_2", token(2))
    store:save_resume_token("users", token(3))
    local seen = collect{ match = "orders_*" }
    assert.same({ orders_1 = { token = token(1) }, orders_2 = { token = token(2) } }, seen)
  end)

  it("lists everything without options", function()
    store:save_resume_token("users", token(1))
    local seen = {}
    for collection, tok in store:resume_tokens() do seen[collection] = tok end
    assert.same({ users = token(1) }, seen)
  end)

  it("keeps glob characters in collection names exact", function()
    local names = { "a*b", "x[1]", "q?", "back\\slash" }
    for i, name in ipairs(names) do store:save_resume_token(name, token(i)) end
    store:save_resume_token("axxb", token(99))
    store:save_resume_token("x1", token(98))
    for i, name in ipairs(names) do
      assert.same(token(i), store:get_resume_token(name))
      assert.equal("1", srv:cli("EXISTS", PREFIX .. ":" .. name))
    end
    local seen = collect{ match = "*" }
    for i, name in ipairs(names) do
      assert.same(token(i), seen[name] and seen[name].token, name)
    end
    assert.is_true(store:delete_resume_token("a*b"))
    assert.same(token(99), store:get_resume_token("axxb"))
    assert.is_true(store:delete_resume_token("x[1]"))
    assert.same(token(98), store:get_resume_token("x1"))
  end)

  it("matches the key prefix literally even when it holds glob characters", function()
    local s <close> = rs.new{ url = srv.url, key_prefix = "t[1]*" }
    s:save_resume_token("c", token(1))
    srv:set_raw("t1x:c", rs.bson.encode(token(2)))
    srv:set_raw("t[1]*X:c", rs.bson.encode(token(3)))
    local seen = collect({ match = "*" }, s)
    assert.same({ c = { token = token(1) } }, seen)
    assert.same({ c = token(1) }, (s:list_resume_tokens()))
  end)

  it("yields raw bytes with raw = true", function()
    local tok = token(4)
    store:save_resume_token("users", tok)
    srv:set_raw(PREFIX .. ":blob", "\0not bson\r\n")
    local seen = {}
    for collection, bytes in store:resume_tokens{ raw = true } do seen[collection] = bytes end
    assert.same({ users = rs.bson.encode(tok), blob = "\0not bson\r\n" }, seen)
  end)
end)
