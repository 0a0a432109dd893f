-- spec/errors_spec.lua -- bad input gives a clear error and writes nothing;
-- the shape of error objects; the life cycle of a store handle.

local rs = require "rigatoni_store"
local servers = require "support.servers"

local PREFIX = "rigatoni:resume_token"
local TOKEN = { _data = "8265A1B2C3000000012B022C0100" }

local helpers = require "support.helpers"
local catch, assert_kind = helpers.catch, helpers.assert_kind

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
  srv:cli("FLUSHALL")
  srv:cli("SET", "canary", "1")
end)

-- Runs fn, which must raise, and checks that the database did not change.
local function rejects(fn)
  local before = srv:cli("DBSIZE")
  local err = catch(fn)
  assert.equal(before, srv:cli("DBSIZE"), "something was written")
  return err
end

describe("bad collection names", function()
  it("an empty collection name is rejected and nothing is written", function()
    local err = rejects(function() store:save_resume_token("", TOKEN) end)
    assert_kind("serialization", err)
    assert.matches("collection", err.message, 1, true)
    err = rejects(function() store:save_raw("", "x") end)
    assert_kind("serialization", err)
  end)

  it("an empty collection name is rejected by get, delete and ttl too", function()
    assert_kind("serialization", catch(store.get_resume_token, store, ""))
    assert_kind("serialization", catch(store.get_raw, store, ""))
    assert_kind("serialization", catch(store.delete_resume_token, store, ""))
    assert_kind("serialization", catch(store.ttl, store, ""))
  end)

  for _, bad in ipairs{ { "a table", {} }, { "nil", nil }, { "a boolean", true } } do
    it("a collection name that is " .. bad[1] .. " is rejected and nothing is written", function()
      local err = rejects(function() store:save_resume_token(bad[2], TOKEN) end)
      assert.matches("string", tostring(err), 1, true)
    end)
  end
end)

describe("bad tokens", function()
  for _, bad in ipairs{ { "a string", "8263" }, { "a number", 42 }, { "nil", nil }, { "a boolean", false } } do
    it("a token that is " .. bad[1] .. " is rejected and nothing is written", function()
      local err = rejects(function() store:save_resume_token("users", bad[2]) end)
      assert.matches("table", tostring(err), 1, true)
    end)
  end

  it("a string that is not UTF-8 is a serialization error naming the field", function()
    local err = rejects(function() store:save_resume_token("users", { _data = "82\xff\xfe" }) end)
    assert_kind("serialization", err)
    assert.matches("_data", err.message, 1, true)
  end)

  it("a string that is not UTF-8 deep in a nested document is rejected", function()
    local err = rejects(function()
      store:save_resume_token("users", { _data = "82", meta = { list = { "ok", "\xc3" } } })
    end)
    assert_kind("serialization", err)
  end)

  it("a token over 16 MiB is a serialization error", function()
    local big = { _data = string.rep("a", 16 * 1024 * 1024) }
    local err = rejects(function() store:save_resume_token("users", big) end)
    assert_kind("serialization", err)
  end)

  it("a token just under 16 MiB is saved", function()
    local tok = { _data = string.rep("a", 16 * 1024 * 1024 - 100) }
    store:save_resume_token("big", tok)
    assert.equal(#rs.bson.encode(tok), tonumber(srv:cli("STRLEN", PREFIX .. ":big")))
    assert.equal(tok._data, store:get_resume_token("big")._data)
  end)
end)

describe("corrupt values under the prefix", function()
  it("get raises a serialization error naming the key", function()
    srv:set_raw(PREFIX .. ":broken", "not BSON\0\r\n")
    local err = catch(store.get_resume_token, store, "broken")
    assert_kind("serialization", err)
    assert.matches(PREFIX .. ":broken", err.message, 1, true)
  end)

  it("get raises on a truncated document", function()
    srv:set_raw(PREFIX .. ":cut", rs.bson.encode(TOKEN):sub(1, -2))
    local err = catch(store.get_resume_token, store, "cut")
    assert_kind("serialization", err)
    assert.matches(PREFIX .. ":cut", err.message, 1, true)
  end)

  it("get_raw still returns the bytes", function()
    srv:set_raw(PREFIX .. ":broken", "not BSON\0\r\n")
    assert.equal("not BSON\0\r\n", store:get_raw("broken"))
  end)

  it("listing reports them and returns the others", function()
    store:save_resume_token("good1", TOKEN)
    store:save_resume_token("good2", TOKEN)
    srv:set_raw(PREFIX .. ":broken", "not BSON")
    srv:set_raw(PREFIX .. ":cut", rs.bson.encode(TOKEN):sub(1, -2))
    local tokens, errors = store:list_resume_tokens()
    assert.same({ good1 = TOKEN, good2 = TOKEN }, tokens)
    assert.is_table(errors)
    assert.is_string(errors.broken)
    assert.is_string(errors.cut)
    assert.is_nil(errors.good1)
  end)
end)

describe("error objects", function()
  it("carry kind, message, retryable and attempts", function()
    local err = catch(store.save_resume_token, store, "users", { _data = "\xff" })
    assert.equal("serialization", err.kind)
    assert.is_string(err.message)
    assert.is_true(#err.message > 0)
    assert.is_boolean(err.retryable)
    assert.is_false(err.retryable)
    assert.equal("integer", math.type(err.attempts))
    assert.is_true(err.attempts >= 0)
  end)

  it("tostring gives '<kind>: <message>'", function()
    local err = catch(store.get_resume_token, store, "")
    assert.equal(err.kind .. ": " .. err.message, tostring(err))
    err = catch(rs.new, {})
    assert.equal("config: " .. err.message, tostring(err))
    assert.is_false(err.retryable)
  end)

  it("an error reply carries its class as err.reply; other failures have none", function()
    local err = catch(store.command, store, "EVALSHA", string.rep("0", 40), "0")
    assert.equal("server", err.kind)
    assert.equal("noscript", err.reply)
    err = catch(store.command, store, "NOSUCHCOMMAND")
    assert.equal("other", err.reply)
    err = catch(store.save_resume_token, store, "users", { _data = "\xff" })
    assert.is_nil(err.reply)
  end)
end)

describe("store life cycle", function()
  it("using a closed store raises an error mentioning closed", function()
    local s = rs.new{ url = srv.url }
    s:close()
    for _, call in ipairs{
      function() return s:get_resume_token("users") end,
      function() return s:save_resume_token("users", TOKEN) end,
      function() return s:list_resume_tokens() end,
      function() return s:get_raw("users") end,
    } do
      local err = catch(call)
      assert.matches("closed", tostring(err), 1, true)
    end
    assert.equal("1", srv:cli("DBSIZE"))
  end)

  it("closing twice is harmless", function()
    local s = rs.new{ url = srv.url }
    s:close()
    assert.has_no.errors(function() s:close() end)
  end)

  it("tostring of a store says when it is closed", function()
    local s = rs.new{ url = srv.url }
    assert.is_string(tostring(s))
    assert.not_matches("closed", tostring(s), 1, true)
    s:close()
    assert.matches("closed", tostring(s), 1, true)
  end)

  it("a <close> variable closes the store at the end of its scope", function()
    local outside
    do
      local s <close> = rs.new{ url = srv.url }
      s:save_resume_token("scoped", TOKEN)
      outside = s
    end
    assert.matches("closed", tostring(catch(outside.get_resume_token, outside, "scoped")), 1, true)
    assert.same(TOKEN, store:get_resume_token("scoped"))
  end)

  it("a <close> variable closes the store when the scope raises", function()
    local outside
    local ok = pcall(function()
      local s <close> = rs.new{ url = srv.url }
      outside = s
      error("boom")
    end)
    assert.is_false(ok)
    assert.matches("closed", tostring(catch(outside.get_resume_token, outside, "x")), 1, true)
  end)
end)
