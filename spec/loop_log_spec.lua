-- SPDX-License-Identifier: MIT
-- spec/loop_log_spec.lua -- log lines inside an event loop (issue 23,
-- "Logging"): a handler set with rs.set_log_handler(fn, {yields = true})
-- is never called from inside a C function (where a yield fails with
-- "attempt to yield across a C-call boundary"); its lines wait in the
-- bounded queue until rs.flush_log() runs in a coroutine, which the
-- adapters do after every job (and adapter.flush_log() on demand). So the
-- handler may yield (a socket write, a sleep), gets the lines in order,
-- and the loop keeps running meanwhile. A plain handler works as before.

local servers = require "support.servers"
local helpers = require "support.helpers"
local loops = require "support.loops"
local rs = require "rigatoni_store"

local signal = loops.signal

-- The attempt numbers of the retry lines, in the order they arrived.
local function attempts(lines)
  local got = {}
  for _, line in ipairs(lines) do
    local n = line:match("attempt (%d+) of 3 failed")
    if n then got[#got + 1] = tonumber(n) end
  end
  return got
end

describe("logging in a loop", function()
  local srv

  setup(function() srv = servers.redis() end)
  teardown(function()
    if srv then
      signal(srv.pid, "sigcont")
      srv:stop()
    end
  end)
  after_each(function()
    signal(srv.pid, "sigcont")
    rs.set_log_handler(nil)
    rs.set_log_level("warn")
  end)

  it("set_log_handler checks its options", function()
    local f = function() end
    assert.matches("unknown option 'yield'", helpers.catch(rs.set_log_handler, f, { yield = true }), 1, true)
    assert.matches("yields", helpers.catch(rs.set_log_handler, f, { yields = "yes" }), 1, true)
    assert.matches("table expected", helpers.catch(rs.set_log_handler, f, 5), 1, true)
  end)

  it("a {yields = true} handler is not called by blocking calls; rs.flush_log() hands it the lines", function()
    local lines = {}
    rs.set_log_level("info")
    rs.set_log_handler(function(level, message) lines[#lines + 1] = level .. " " .. message end,
                       { yields = true })
    local store <close> = rs.new { url = srv.url, retry_base_delay = 0.01 }
    srv:cli("CLIENT", "KILL", "TYPE", "normal")
    assert.is_true(store:ping())          -- reconnects and logs: the lines wait
    assert.same({}, lines)
    rs.flush_log()                        -- the main thread: fine while the handler does not yield
    assert.is_true(#lines > 0)
    local n = #lines
    rs.flush_log()
    assert.equal(n, #lines)               -- each line once
  end)

  for _, loop in ipairs { "cqueues", "luv" } do
    it("(" .. loop .. ") a handler replaced while a flush is suspended in it: each line reaches one handler once", function()
      local d = loops.driver(loop)
      local got, seen, twice = {}, {}, {}
      local function note(who, message)     -- an error here would be the handler's: counted instead
        got[#got + 1] = who .. " " .. message
        if message:find("^connected to") then return end   -- one per connection: not unique
        if seen[message] then twice[#twice + 1] = who .. " " .. message end
        seen[message] = true
      end
      rs.set_log_level("debug")
      rs.set_log_handler(function(_, message)
        note("old", message)
        if coroutine.isyieldable() then d.sleep(0) end   -- not when the replacement hands it the rest
      end, { yields = true })
      local store <close> = rs.new { url = srv.url, retry_base_delay = 0.01 }
      srv:cli("CLIENT", "KILL", "TYPE", "normal")
      store:ping()                                  -- lost, retry, connected: queued
      local other <close> = rs.new { url = srv.url } -- connected: queued
      d.spawn(function() d.adapter.flush_log() end) -- delivers the first line, suspended in it
      d.spawn(function()
        rs.set_log_handler(function(_, message) note("new", message) end)
      end)
      d.run(5)
      rs.flush_log()
      assert.same({}, twice)
      assert.is_true(#got >= 3, table.concat(got, "\n"))
      assert.matches("^old ", got[1])
    end)

    describe("(" .. loop .. ")", function()
      -- A job that fails against the frozen server after two retries,
      -- with `handler` set; returns the error, the lines seen when the
      -- coroutine got the error, and the ticker.
      local function failed_job(d, handler, opts)
        local store = rs.new { url = srv.url, command_timeout = 0.1, max_retries = 2, retry_base_delay = 0.01 }
        local s = d.adapter.wrap(store)
        rs.set_log_level("info")
        rs.set_log_handler(handler, opts)
        local tick = loops.ticker(d)
        local out = {}
        d.spawn(function()
          signal(srv.pid, "sigstop")
          local ok, e = pcall(s.get_resume_token, s, "log:" .. loop)
          signal(srv.pid, "sigcont")
          assert(not ok, "a get on a frozen server returned")
          out.err = e
          out.handled = handler("probe", "")   -- the count when the error arrived
          tick.stop()
        end)
        d.run(10)
        store:close()
        return out, tick
      end

      it("a handler that yields gets a failed job's retry lines, in order, before the error; the loop ticks",
         function()
        local d = loops.driver(loop)
        local lines, yields = {}, 0
        local out, tick = failed_job(d, function(level, message)
          if level == "probe" then return #lines end
          d.sleep(0)                       -- a yield to the loop (a socket write would do the same)
          yields = yields + 1
          lines[#lines + 1] = message
        end, { yields = true })
        helpers.assert_kind("timeout", out.err)
        assert.same({ 1, 2 }, attempts(lines))
        assert.equal(#lines, out.handled, "lines came after the error")
        assert.is_true(yields >= 2)
        assert.is_true(tick.ticks > 0)
        assert.is_true(tick.worst <= loops.BOUND, ("worst tick gap %.1f ms"):format(tick.worst * 1000))
      end)

      it("a plain handler still gets them, in order, before the error", function()
        local d = loops.driver(loop)
        local lines = {}
        local out = failed_job(d, function(level, message)
          if level == "probe" then return #lines end
          lines[#lines + 1] = message
        end)
        helpers.assert_kind("timeout", out.err)
        assert.same({ 1, 2 }, attempts(lines))
        assert.equal(#lines, out.handled)
      end)

      it("a yielding handler that fails, logs, flushes and runs jobs itself breaks nothing", function()
        local d = loops.driver(loop)
        local store = rs.new { url = srv.url, retry_base_delay = 0.01 }
        local s = d.adapter.wrap(store)
        local lines, calls = {}, 0
        rs.set_log_level("debug")
        rs.set_log_handler(function(_, message)
          calls = calls + 1
          if calls == 1 then error("handler bug") end
          rs.flush_log()                   -- re-entered: returns (this drain goes on)
          assert(store:ping())             -- a blocking call from the handler (logs nothing new here)
          assert(s:ping())                 -- a job from the handler: yields, flushes (re-entered)
          lines[#lines + 1] = message
        end, { yields = true })
        local got
        d.spawn(function()
          srv:cli("CLIENT", "KILL", "TYPE", "normal")   -- the next call reconnects, and says so
          s:save_raw("k", "v")
          got = s:get_raw("k")
          d.adapter.flush_log()
        end)
        d.run(10)
        assert.equal("v", got)
        assert.is_true(calls >= 2, "the handler was called " .. calls .. " times")
        assert.equal(calls - 1, #lines)      -- every line after the failing one arrived
        store:close()
      end)
    end)
  end
end)
