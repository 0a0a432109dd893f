-- SPDX-License-Identifier: MIT
-- spec/token_batches_spec.lua -- store:token_batches (the walk of
-- resume_tokens, a batch per step as arrays, cluster times read in C),
-- store:get_many{ttl = false}, and the walk's read-ahead threads: the
-- same rows as the per-token walk, and nothing kept or left running by a
-- walk abandoned half-way.

local servers = require "support.servers"
local helpers = require "support.helpers"
local rs = require "rigatoni_store"

local fmt = string.format

local function token(seconds, n)
  return rs.bson.encode { _data = fmt("82%08X%08X2B022C0100296E5A1004", seconds, n) }
end

describe("store:token_batches", function()
  local srv
  local N = 250

  setup(function()
    srv = servers.redis {}
    local store <close> = rs.new { url = srv.url }
    for i = 1, N do
      local ttl = i % 3 == 0 and 1000 + i or false
      store:save_raw(fmt("c%04d", i), token(1700000000 + i, i), ttl)
    end
    store:save_raw("no time", rs.bson.encode { _data = "zz" }, false)
    store:save_raw("not bson", "\1\2\3", 50)
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  -- name -> {bytes, ttl} of the per-token walk
  local function per_token(store, opts)
    local rows = {}
    for name, bytes, ttl in store:resume_tokens(opts) do rows[name] = { bytes, ttl } end
    return rows
  end

  it("gives the rows of resume_tokens{raw = true}, with each token's cluster time, in batches", function()
    local store <close> = rs.new { url = srv.url }
    local want = per_token(store, { raw = true, batch = 40 })
    local seen, steps = 0, 0
    for names, values, ttls, times, n in store:token_batches { batch = 40 } do
      steps = steps + 1
      assert.is_true(n > 0)
      for i = 1, n do
        local w = assert(want[names[i]], names[i])
        assert.are.equal(w[1], values[i])
        if w[2] then assert.is_true(math.abs(ttls[i] - w[2]) < 5) else assert.is_nil(ttls[i]) end
        local seconds = rs.token_time(values[i])
        assert.are.equal(seconds or false, times[i])
        want[names[i]] = nil
        seen = seen + 1
      end
      assert.is_nil(names[n + 1])
    end
    assert.are.equal(N + 2, seen)
    assert.is_nil(next(want))                  -- every row, once
    assert.is_true(steps > 1)
  end)

  it("with ttl = false reads no PTTL: every TTL is nil", function()
    local store <close> = rs.new { url = srv.url }
    local rows = 0
    for _, _, ttls, _, n in store:token_batches { match = "c*", ttl = false } do
      rows = rows + n
      assert.is_nil(next(ttls))
    end
    assert.are.equal(N, rows)
  end)

  it("refuses an unknown option, naming it", function()
    local store <close> = rs.new { url = srv.url }
    local ok, err = pcall(store.token_batches, store, { raw = true })
    assert.is_false(ok)
    assert.matches("raw", tostring(err), 1, true)
  end)

  it("raises when the server is gone, and keeps raising", function()
    local own = servers.redis {}
    finally(function() own:stop() end)
    local store <close> = rs.new { url = own.url, max_retries = 1, retry_base_delay = 0.01, retry_max_delay = 0.01 }
    for i = 1, 30 do store:save_raw(fmt("g%02d", i), token(1700000000, i), false) end
    local iter, state, control, closing = store:token_batches { batch = 5 }
    local scan <close> = closing
    assert.is_truthy(iter(state, control))
    own:kill()
    local err = helpers.catch_object(function()
      while iter(state, control) do end
    end)
    assert.is_truthy(err)
    assert.are_not.equal("config", err.kind)
    assert.is_truthy(helpers.catch_object(iter, state, control))   -- and stays failed
  end)
end)

describe("a walk abandoned half-way", function()
  it("is closed with its read-ahead threads, many times over, and the store goes on", function()
    local srv = servers.redis {}
    finally(function() srv:stop() end)
    local store <close> = rs.new { url = srv.url, pool_size = 1 }
    for i = 1, 200 do store:save_raw(fmt("a%03d", i), token(1700000000, i), false) end
    for _ = 1, 50 do
      local iter, state, control, closing = store:resume_tokens { batch = 10, raw = true }
      assert.is_truthy(iter(state, control))
      -- pool_size 1: the walk's threads lend the one connection between steps
      assert.is_truthy(store:get_raw("a001"))
      do local scan <close> = closing end
    end
    local values, ttls = store:get_many({ "a001", "a002", "none" }, { ttl = false })
    assert.are.equal(token(1700000000, 1), values[1])
    assert.is_false(values[3])
    assert.is_false(ttls[1])
  end)

  it("raises, and leaves nothing running, when its store is closed under it", function()
    local srv = servers.redis {}
    finally(function() srv:stop() end)
    local store = rs.new { url = srv.url }
    for i = 1, 100 do store:save_raw(fmt("s%03d", i), token(1700000000, i), false) end
    local iters = {}
    for _, open in ipairs { function() return store:resume_tokens { batch = 5 } end,
                            function() return store:token_batches { batch = 5 } end,
                            function() return store:token_lines { format = "export", batch = 5 } end } do
      local iter, state, control = open()
      assert.is_truthy(iter(state, control))
      iters[#iters + 1] = { iter, state, control }
    end
    store:close()
    for _, it in ipairs(iters) do
      local ok, err = pcall(it[1], it[2], it[3])
      assert.is_false(ok)
      assert.matches("closed store", tostring(err), 1, true)
    end
  end)
end)
