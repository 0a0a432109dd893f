-- SPDX-License-Identifier: MIT
-- spec/save_job_spec.lua -- store:start_save_many: save_many (and an MGET
-- read-back) on a thread, as migrate writes one batch while it reads the
-- next. The answers are save_many's and get_many's; bad items raise before
-- anything is sent; a job outlives the strings it was given, a closed
-- store, and being dropped without a wait.

local servers = require "support.servers"
local rs = require "rigatoni_store"

local P = "rigatoni:resume_token:"

describe("store:start_save_many", function()
  local srv

  setup(function() srv = servers.redis {} end)
  teardown(function() if srv then srv:stop() end end)
  before_each(function() srv:cli("FLUSHALL") end)

  it("gives what save_many and get_many give: written (nx skips), and the bytes read back", function()
    local store <close> = rs.new { url = srv.url }
    store:save_raw("there", "old bytes", false)
    local job = store:start_save_many({ { "a", "\0binary\r\n" }, { "there", "new bytes" }, { "b", "x", 90 } },
                                      { nx = true, read_back = true })
    local written, values = job:wait()
    assert.same({ true, false, true }, written)
    assert.same({ "\0binary\r\n", "old bytes", "x" }, values)
    assert.equal("\0binary\r\n", srv:cli_raw("GET", P .. "a"))
    local ttl = tonumber(srv:cli("TTL", P .. "b"))
    assert.is_true(ttl > 80 and ttl <= 90, tostring(ttl))
    assert.equal("-1", srv:cli("TTL", P .. "a"))
  end)

  it("without read_back gives written only; without nx overwrites", function()
    local store <close> = rs.new { url = srv.url }
    store:save_raw("there", "old bytes", false)
    local written, values = store:start_save_many({ { "there", "new bytes" } }):wait()
    assert.same({ true }, written)
    assert.is_nil(values)
    assert.equal("new bytes", srv:cli_raw("GET", P .. "there"))
  end)

  it("copies the items: strings collected while the job runs do not matter", function()
    local store <close> = rs.new { url = srv.url }
    local items = {}
    for i = 1, 500 do items[i] = { "c" .. i, string.rep(string.char(i % 256), 200 + i) } end
    local job = store:start_save_many(items, { read_back = true })
    items = nil   -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local written, values = job:wait()
    assert.equal(500, #written)
    for i = 1, 500 do assert.equal(string.rep(string.char(i % 256), 200 + i), values[i], "c" .. i) end
    assert.equal("500", srv:cli("DBSIZE"))
  end)

  it("raises on bad items and options before anything is sent", function()
    local store <close> = rs.new { url = srv.url }
    local cases = {
      { { { "a", "x" }, { "b", 5 } }, nil, "start_save_many: item 2: bytes must be a string" },
      { { { "a", "x" }, "b" }, nil, "start_save_many: item 2 must be a table" },
      { { { "", "x" } }, nil, "empty" },
      { { { "a", "x" } }, { nx = true, readback = true }, "readback" },
      { { { "a", "x" } }, { read_back = 1 }, "read_back" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(store.start_save_many, store, case[1], case[2])
      assert.is_false(ok)
      assert.matches(case[3], tostring(type(err) == "table" and err.message or err), 1, true)
    end
    assert.equal("0", srv:cli("DBSIZE"))
  end)

  it("is waited for once", function()
    local store <close> = rs.new { url = srv.url }
    local job = store:start_save_many({ { "a", "x" } })
    job:wait()
    local ok, err = pcall(job.wait, job)
    assert.is_false(ok)
    assert.matches("already waited for", tostring(err))
  end)

  it("raises the server's failure from wait, and writes nothing more", function()
    local down = servers.redis {}
    local store <close> = rs.new { url = down.url, max_retries = 0 }
    down:stop()
    local job = store:start_save_many({ { "a", "x" } }, { read_back = true })
    local ok, err = pcall(job.wait, job)
    assert.is_false(ok)
    assert.equal("connection", err.kind)
  end)

  it("delivers the lines its thread logged to the Lua handler before wait raises", function()
    local lines, level = {}, rs.log_level()
    rs.set_log_handler(function(at, message) lines[#lines + 1] = at .. ": " .. message end)
    rs.set_log_level("info")   -- retries are logged at info
    local ok, err = pcall(function()
      local down = servers.redis {}
      local store <close> = rs.new { url = down.url, max_retries = 1 }
      down:stop()
      local job = store:start_save_many({ { "a", "x" } }, { read_back = true })
      local waited, why = pcall(job.wait, job)
      assert.is_false(waited)
      assert.equal("connection", why.kind)
      assert.matches("save_many of 1 tokens: attempt 1 of 2 failed", table.concat(lines, "\n"), 1, true)
    end)
    rs.set_log_handler(nil)
    rs.set_log_level(level)
    assert(ok, err)
  end)

  it("survives store:close() before wait, and a job dropped without a wait", function()
    local store = rs.new { url = srv.url }
    local job = store:start_save_many({ { "a", "x" } }, { read_back = true })
    store:start_save_many({ { "b", "y" } }, { read_back = true })   -- dropped at once
    store:close()
    local written, values = job:wait()
    assert.same({ true }, written)
    assert.same({ "x" }, values)
    collectgarbage()
    collectgarbage()
    assert.equal("2", srv:cli("DBSIZE"))
  end)
end)
