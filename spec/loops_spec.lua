-- SPDX-License-Identifier: MIT
-- spec/loops_spec.lua -- the store inside real event loops: cqueues and luv,
-- through the adapters rigatoni_store.cqueues and rigatoni_store.luv
-- (lua/rigatoni_store/), on store:start's jobs and rs.start_open.
--
-- Every case runs once per loop through a small driver (spawn a coroutine,
-- sleep in it, run the loop until every coroutine ended). The timing cases
-- measure the worst gap of a 10 ms ticker while the store waits on a frozen
-- server (kill -STOP, 2 s) or on a listener that accepts and never answers;
-- the bound is issue 23's for a busy machine (250 ms), the figure is printed.
-- A spec body never raises inside a loop callback: each coroutine's error
-- is collected and raised after the loop ran.

package.path = "lua/?.lua;" .. package.path

local servers = require "support.servers"
local helpers = require "support.helpers"
local rs = require "rigatoni_store"
local cqueues = require "cqueues"
local cq_socket = require "cqueues.socket"
-- The loops' drivers, the ticker and luv (one module per Lua state):
-- spec/support/loops.lua, shared with the other loop specs.
local loops = require "support.loops"
local uv = loops.luv()

local TICK = loops.TICK
local BOUND = loops.BOUND  -- worst tick gap allowed (issue 23, busy machine)
local signal, ticker = loops.signal, loops.ticker
local DRIVERS = { cqueues = function() return loops.driver("cqueues") end,
                  luv = function() return loops.driver("luv") end }

local function token(i) return { _data = ("826%013d"):format(i) } end

for _, loop in ipairs { "cqueues", "luv" } do
  local new_driver = DRIVERS[loop]

  describe("the store in a " .. loop .. " loop", function()
    local srv

    setup(function()
      srv = servers.redis()
    end)

    teardown(function()
      if srv then
        signal(srv.pid, "sigcont")
        srv:stop()
      end
    end)

    it("a 10 ms ticker keeps ticking while a coroutine saves and gets every 5 ms and the server is frozen for 2 s", function()
      local d = new_driver()
      local store = rs.new { url = srv.url }
      local s = d.adapter.wrap(store)
      local tick = ticker(d)
      local done, ops, failed, slowest, frozen = false, 0, 0, 0, nil
      finally(function() signal(srv.pid, "sigcont") end)
      d.spawn(function()            -- the app
        local i = 0
        while not done do
          i = i + 1
          local t0 = d.now()
          local ok, err = pcall(function()
            s:save_resume_token("loop:" .. loop, token(i))
            local got = s:get_resume_token("loop:" .. loop)
            assert(got and got._data == token(i)._data, "read back another token")
          end)
          if ok then ops = ops + 1 else failed = failed + 1; assert(type(err) == "table", err) end
          slowest = math.max(slowest, d.now() - t0)
          d.sleep(0.005)
        end
      end)
      d.spawn(function()            -- the freeze
        d.sleep(0.3)
        frozen = ops
        signal(srv.pid, "sigstop")
        d.sleep(2.0)
        signal(srv.pid, "sigcont")
        d.sleep(0.3)
        done = true
        tick.stop()
      end)
      d.run(15)
      print(("%s: worst tick gap %.1f ms over %d ticks (server frozen 2 s); %d ops, %d failed, slowest op %.0f ms")
        :format(loop, tick.worst * 1000, tick.ticks, ops, failed, slowest * 1000))
      assert.is_true(frozen > 0, "no operation before the freeze")
      assert.is_true(ops > frozen, "no operation after the freeze")
      assert.is_true(slowest > 1.0, "no operation waited on the frozen server (the freeze did not bite)")
      assert.is_true(tick.worst <= BOUND, ("worst tick gap %.1f ms > %d ms"):format(tick.worst * 1000, BOUND * 1000))
      store:close()
    end)

    it("a 10 ms ticker keeps ticking while a store opens to a listener that accepts and never answers", function()
      local d = new_driver()
      local port, cleanup
      if loop == "cqueues" then
        local l = cq_socket.listen("127.0.0.1", 0)
        assert(l:listen())   -- bound now; the kernel accepts, nobody reads
        local _, _, p = l:localname()
        port, cleanup = p, function() l:close() end
      else
        local l = uv.new_tcp()
        assert(l:bind("127.0.0.1", 0))
        local held = {}
        assert(l:listen(16, function()
          local c = uv.new_tcp()
          l:accept(c)
          held[#held + 1] = c  -- accepted, never read, never answered
        end))
        port = l:getsockname().port
        cleanup = function()
          for _, c in ipairs(held) do c:close() end
          l:close()
        end
      end
      local tick = ticker(d)
      local err, took
      d.spawn(function()
        d.sleep(0.05)
        local t0 = d.now()
        local ok, e = pcall(d.adapter.open, { url = "redis://127.0.0.1:" .. port,
          connection_timeout = 0.5, command_timeout = 0.5, max_retries = 1 })
        took = d.now() - t0
        assert(not ok, "the open succeeded on a server that never answers")
        err = e
        cleanup()
        tick.stop()
      end)
      d.run(15)
      print(("%s: worst tick gap %.1f ms over %d ticks while opening (%.0f ms, then %s)")
        :format(loop, tick.worst * 1000, tick.ticks, took * 1000, tostring(err and err.kind)))
      helpers.assert_kind("timeout", err)
      assert.is_true(took > 0.4, "the open did not wait on the listener")
      assert.is_true(tick.worst <= BOUND, ("worst tick gap %.1f ms > %d ms"):format(tick.worst * 1000, BOUND * 1000))
    end)

    it("open gives a store that works; errors are raised in the coroutine with their kind", function()
      local d = new_driver()
      local key = "rigatoni:lock:loops:" .. loop
      local blocking = rs.new { url = srv.url }
      assert.is_true(blocking:try_acquire_lock(key, "somebody-else", 30))
      d.spawn(function()
        local store = d.adapter.open { url = srv.url }
        local s = d.adapter.wrap(store)
        s:save_resume_token("errors:" .. loop, token(1))
        assert.same(token(1), s:get_resume_token("errors:" .. loop))
        assert.same(token(1), blocking:get_resume_token("errors:" .. loop))
        -- a fenced save under a lock held by another owner
        local e = helpers.catch_object(s.save_resume_token, s, "errors:" .. loop, token(2),
          { lock = key, owner = "me" })
        helpers.assert_kind("not_owner", e)
        -- an empty collection name
        e = helpers.catch_object(s.save_resume_token, s, "", token(3))
        helpers.assert_kind("serialization", e)
        -- the same error object as the blocking method's
        local be = helpers.catch_object(blocking.save_resume_token, blocking, "", token(3))
        assert.equal(be.kind, e.kind)
        assert.equal(be.message, e.message)
        assert.same(token(1), s:get_resume_token("errors:" .. loop))
        store:close()
      end)
      d.run(10)
      blocking:close()
    end)

    it("a command against a frozen server raises timeout in the coroutine (command_timeout), the loop ticking", function()
      local d = new_driver()
      local store = rs.new { url = srv.url, command_timeout = 0.2, max_retries = 0 }
      local s = d.adapter.wrap(store)
      local tick = ticker(d)
      local err
      finally(function() signal(srv.pid, "sigcont") end)
      d.spawn(function()
        signal(srv.pid, "sigstop")
        local ok, e = pcall(s.get_resume_token, s, "timeout:" .. loop)
        signal(srv.pid, "sigcont")
        assert(not ok, "a get on a frozen server returned")
        err = e
        tick.stop()
      end)
      d.run(10)
      helpers.assert_kind("timeout", err)
      assert.is_true(tick.worst <= BOUND, ("worst tick gap %.1f ms"):format(tick.worst * 1000))
      store:close()
    end)

    it("a wrapped method or open called outside a coroutine of the loop raises a clear error, starting nothing", function()
      local d = new_driver()
      local store = rs.new { url = srv.url }
      local s = d.adapter.wrap(store)
      local want = loop == "cqueues" and "must be called inside a cqueues coroutine"
        or "inside a coroutine run by the luv loop"
      local e = helpers.catch(s.save_resume_token, s, "outside:" .. loop, token(1))
      assert.matches(want, e, 1, true)
      assert.matches("save_resume_token", e, 1, true)
      e = helpers.catch(d.adapter.open, { url = srv.url })
      assert.matches(want, e, 1, true)
      assert.is_nil(store:get_resume_token("outside:" .. loop))   -- nothing was started
      if loop == "cqueues" then
        -- a plain coroutine that no cqueues controller runs
        local ok, ce = coroutine.resume(coroutine.create(function()
          return s:get_resume_token("outside")
        end))
        assert.is_false(ok)
        assert.matches(want, ce, 1, true)
      end
      store:close()
    end)

    it("a method that is not available as a job raises at once, in the coroutine", function()
      local d = new_driver()
      local store = rs.new { url = srv.url }
      local s = d.adapter.wrap(store)
      local e
      d.spawn(function()
        e = helpers.catch(s.close, s)
      end)
      d.run(5)
      assert.matches("not available as a job: close", tostring(type(e) == "table" and e.message or e), 1, true)
      store:close()
    end)

    it("16 coroutines share one store: every result is its own", function()
      local d = new_driver()
      local store = rs.new { url = srv.url, pool_size = 4 }
      local s = d.adapter.wrap(store)
      local got = {}
      for c = 1, 16 do
        d.spawn(function()
          for i = 1, 20 do
            local name = ("many:%s:%d:%d"):format(loop, c, i)
            s:save_resume_token(name, token(c * 1000 + i))
            local back = s:get_resume_token(name)
            assert(back and back._data == token(c * 1000 + i)._data, "another coroutine's token: " .. name)
          end
          got[c] = true
        end)
      end
      d.run(20)
      for c = 1, 16 do assert.is_true(got[c], "coroutine " .. c .. " did not finish") end
      for c = 1, 16 do
        assert.same(token(c * 1000 + 20), store:get_resume_token(("many:%s:%d:20"):format(loop, c)))
      end
      store:close()
    end)

    -- An outcome made comparable: the value, or the error's kind and message.
    local function outcome(ok, v)
      if ok then return { ok = true, v = v } end
      if type(v) == "table" then return { ok = false, kind = v.kind, message = v.message } end
      return { ok = false, message = tostring(v) }
    end

    -- 16 coroutines get at once (their jobs go out together in one
    -- pipeline); each outcome must be the blocking call's for its name.
    local function gets_at_once(d, store, names, rounds)
      local s = d.adapter.wrap(store)
      local got = {}
      for c = 1, 16 do
        d.spawn(function()
          got[c] = {}
          for r = 1, rounds do
            local name = names[(c + r) % #names + 1]
            got[c][r] = { name = name, out = outcome(pcall(s.get_resume_token, s, name)) }
          end
        end)
      end
      return got
    end

    it("16 coroutines' gets coalesced: a WRONGTYPE key, a corrupt token, an absent one each keep the blocking call's outcome", function()
      local d = new_driver()
      local store = rs.new { url = srv.url, workers = 2 }
      local names = {}
      for i = 1, 5 do
        names[i] = ("mix:%s:tok%d"):format(loop, i)
        store:save_resume_token(names[i], token(i))
      end
      names[6] = ("mix:%s:hash"):format(loop)
      store:command("DEL", "rigatoni:resume_token:" .. names[6])
      store:command("HSET", "rigatoni:resume_token:" .. names[6], "f", "v")
      names[7] = ("mix:%s:corrupt"):format(loop)
      store:save_raw(names[7], "\5\0\0\0not bson")
      names[8] = ("mix:%s:absent"):format(loop)
      store:delete_resume_token(names[8])
      local want = {}
      for _, name in ipairs(names) do want[name] = outcome(pcall(store.get_resume_token, store, name)) end
      assert.equal("server", want[names[6]].kind)
      assert.equal("serialization", want[names[7]].kind)
      assert.same({ ok = true }, want[names[8]])
      local got = gets_at_once(d, store, names, 10)
      d.run(20)
      for c = 1, 16 do
        for r = 1, 10 do
          local g = got[c][r]
          assert.same(want[g.name], g.out, ("coroutine %d, get %d of %s"):format(c, r, g.name))
        end
      end
      store:close()
    end)

    it("16 coroutines' gets coalesced while the server is frozen: each fails as the blocking call does", function()
      local d = new_driver()
      local store = rs.new { url = srv.url, workers = 16, command_timeout = 0.2, max_retries = 0 }
      local names = {}
      for i = 1, 2 do
        names[i] = ("frozen-mix:%s:%d"):format(loop, i)
        store:save_resume_token(names[i], token(i))
      end
      signal(srv.pid, "sigstop")
      local ok, err = pcall(function()
        local want = {}
        for _, name in ipairs(names) do
          want[name] = outcome(pcall(store.get_resume_token, store, name))
          assert.equal("timeout", want[name].kind)
        end
        local got = gets_at_once(d, store, names, 1)
        d.run(20)
        for c = 1, 16 do
          local g = got[c][1]
          assert.same(want[g.name], g.out, ("coroutine %d, get of %s"):format(c, g.name))
        end
      end)
      signal(srv.pid, "sigcont")
      store:close()
      if not ok then error(err, 0) end
    end)

    it("token_batches yields to the loop between batches and walks every token once", function()
      local d = new_driver()
      local store = rs.new { url = srv.url }
      for i = 1, 45 do store:save_resume_token(("walk:%s:%02d"):format(loop, i), token(i)) end
      local s = d.adapter.wrap(store)
      local seen, batches, others, between = {}, 0, 0, {}
      local walking = true
      d.spawn(function()
        while walking do others = others + 1; d.sleep(0.001) end
      end)
      d.spawn(function()
        for names, values, _, _, n in s:token_batches { match = "walk:" .. loop .. ":*", batch = 10 } do
          batches = batches + 1
          between[#between + 1] = others
          for j = 1, n do
            assert(not seen[names[j]], "listed twice: " .. names[j])
            seen[names[j]] = values[j]
          end
        end
        walking = false
      end)
      d.run(10)
      local count = 0
      for _ in pairs(seen) do count = count + 1 end
      assert.equal(45, count)
      assert.is_true(batches >= 5, "batches: " .. batches)
      assert.is_true(between[#between] > between[1], "the loop's other coroutine never ran during the walk")
      store:close()
    end)

    it("token_batches left early closes its walk; the store goes on", function()
      local d = new_driver()
      local store = rs.new { url = srv.url }
      for i = 1, 30 do store:save_resume_token(("early:%s:%02d"):format(loop, i), token(i)) end
      local s = d.adapter.wrap(store)
      local first, after, closed
      d.spawn(function()
        local iter, state, control, closing = s:token_batches { match = "early:" .. loop .. ":*", batch = 10 }
        for names, _, _, _, n in iter, state, control, closing do
          first = n
          assert(names[1])
          break
        end
        closed = helpers.catch(closing.start_next, closing)     -- the walk itself
        after = s:get_resume_token(("early:%s:07"):format(loop))
      end)
      d.run(10)
      assert.is_true(first > 0)
      assert.matches("closed walk", tostring(closed), 1, true)
      assert.same(token(7), after)
      store:close()
    end)
  end)
end

describe("rs.start_open left unfinished", function()
  it("does not hold the script's exit while its open waits on a listener that never answers", function()
    -- The open's default timeouts and retries take about 20 s there; the
    -- script let go of it, so its end must not wait for them.
    local l = cq_socket.listen("127.0.0.1", 0)
    assert(l:listen())                     -- the kernel accepts, nobody answers
    local _, _, port = l:localname()
    finally(function() l:close() end)
    local child = [[
      local rs = require "rigatoni_store"
      local job = rs.start_open { url = "redis://127.0.0.1:%d" }
      assert(not job:ready())
      job = nil
      collectgarbage()                     -- abandoned here, or at lua_close
    ]]
    local t0 = cqueues.monotime()
    local ok = os.execute(("LUA_PATH=%s LUA_CPATH=%s lua5.4 -e %s"):format(
      helpers.quote(package.path), helpers.quote(package.cpath), helpers.quote(child:format(port))))
    local took = cqueues.monotime() - t0
    assert.is_true(ok, "the child script failed")
    assert.is_true(took < 3, ("the script took %.1f s to exit"):format(took))
  end)
end)

-- ---- leases in a loop (issue 23) ----------------------------------------
-- wrap(store):lease(key, owner, {ttl, on_lost}) refreshes itself in the loop
-- (lease:start_refresh jobs) and calls on_lost in the loop once, from a loop
-- timer at the validity's end, whatever the server does. The lateness of
-- on_lost after the validity's end is printed; the bound is generous for a
-- busy machine (the target is 50 ms).
local LOSS_BOUND = 0.250

-- fn in a coroutine of the loop; whatever it does, the ticker stops then
-- (so that the loop ends and fn's error is what the case reports).
local function app(d, tick, fn)
  d.spawn(function()
    local ok, err = xpcall(fn, function(e) return type(e) == "string" and debug.traceback(e, 2) or e end)
    if tick then tick.stop() end
    if not ok then error(err, 0) end
  end)
end

for _, loop in ipairs { "cqueues", "luv" } do
  local new_driver = DRIVERS[loop]

  describe("a lease in a " .. loop .. " loop", function()
    local srv

    setup(function()
      srv = servers.redis()
    end)

    teardown(function()
      if srv then
        signal(srv.pid, "sigcont")
        srv:stop()
      end
    end)

    before_each(function()
      srv:cli("FLUSHDB")
    end)

    it("is reported lost in the loop within 50 ms of its validity's end while the server is frozen", function()
      local d = new_driver()
      -- The store's own timeouts are far longer than the lease: only the
      -- lease's cap ends its refresh.
      local store = rs.new { url = srv.url, command_timeout = 5, connection_timeout = 5 }
      local s = d.adapter.wrap(store)
      local key = "rigatoni:lock:lease:" .. loop
      local tick = ticker(d)
      local lost, lost_at, valid_end, in_loop, after = 0, nil, nil, nil, nil
      finally(function() signal(srv.pid, "sigcont") end)
      app(d, tick, function()
        local lease = s:lease(key, "me", { ttl = 0.6, on_lost = function(l)
          lost = lost + 1
          lost_at = d.now()
          local _, main = coroutine.running()
          in_loop = not main and coroutine.isyieldable()
          assert(l.lost, "on_lost before the lease says lost")
        end })
        assert(lease, "not acquired")
        d.sleep(0.3)                 -- at least one refresh in the loop (at 0.2 s)
        signal(srv.pid, "sigstop")
        valid_end = d.now() + lease:remaining()
        while lost == 0 and d.now() < valid_end + 3 do d.sleep(0.01) end
        d.sleep(0.2)                 -- no second call
        signal(srv.pid, "sigcont")
        d.sleep(0.3)                 -- a late refresh reply must not revive it
        after = lease:remaining()
        lease:release()
        store:close()
      end)
      d.run(15)
      assert.is_truthy(lost_at, "on_lost was never called")
      local late = lost_at - valid_end
      print(("%s: lease lost %.1f ms after its validity's end (server frozen); worst tick gap %.1f ms")
        :format(loop, late * 1000, tick.worst * 1000))
      assert.equal(1, lost)
      assert.is_true(in_loop, "on_lost did not run in a coroutine of the loop")
      assert.is_true(late >= -0.005, ("reported %.1f ms before the validity's end"):format(-late * 1000))
      assert.is_true(late <= LOSS_BOUND, ("reported %.1f ms after the validity's end"):format(late * 1000))
      assert.equal(0, after)
      assert.is_true(tick.worst <= BOUND, ("worst tick gap %.1f ms"):format(tick.worst * 1000))
    end)

    it("is held across several ttls, refreshed in the loop, and released on close; the loop then ends", function()
      local d = new_driver()
      local store = rs.new { url = srv.url }
      local s = d.adapter.wrap(store)
      local key = "rigatoni:lock:held:" .. loop
      local tick = ticker(d)
      local lost, lows, released = 0, {}, nil
      app(d, tick, function()
        do
          local lease <close> = s:lease(key, "me", { ttl = 0.5, on_lost = function() lost = lost + 1 end })
          assert(lease, "not acquired")
          for i = 1, 8 do              -- 1.6 s: over three ttls
            d.sleep(0.2)
            lows[i] = lease:remaining()
            assert(store:lock_owner(key) == "me", "the key is not ours on the server")
            lease:save_resume_token("held:" .. loop, token(i))   -- fenced, as a job
          end
          assert(store:get_resume_token("held:" .. loop)._data == token(8)._data)
        end
        released = srv:cli("EXISTS", key)
        -- release() after close: false, nothing sent
        local lease2 = s:lease(key, "me", { ttl = 0.6 })
        assert(lease2:release() == true)
        assert(lease2:release() == false)
        store:close()
      end)
      d.run(10)                        -- ends: the lease's timers are gone
      assert.equal(0, lost)
      for i, left in ipairs(lows) do assert.is_true(left > 0, "remaining 0 at check " .. i) end
      assert.equal("0", released)
      assert.is_true(tick.worst <= BOUND, ("worst tick gap %.1f ms"):format(tick.worst * 1000))
    end)

    it("is reported lost at its next refresh when another owner took the key", function()
      local d = new_driver()
      local store = rs.new { url = srv.url }
      local s = d.adapter.wrap(store)
      local key = "rigatoni:lock:taken:" .. loop
      local lost, lost_after, left_then, released
      local t0
      app(d, nil, function()
        local lease = s:lease(key, "me", { ttl = 1.5, on_lost = function(l)
          lost_after = d.now() - t0
          left_then = l:remaining()
        end })
        assert(lease, "not acquired")
        assert(s:lease(key, "thief", { ttl = 1.5 }) == nil, "taken twice")
        srv:cli("SET", key, "thief")
        t0 = d.now()
        while not lost_after and d.now() - t0 < 3 do d.sleep(0.02) end
        lost = lease.lost
        -- refused without a call once lost
        local e = helpers.catch_object(lease.save_resume_token, lease, "taken:" .. loop, token(1))
        assert(e.kind == "not_owner", tostring(e))
        released = lease:release()
        store:close()
      end)
      d.run(10)
      assert.is_truthy(lost_after, "on_lost was never called")
      -- the next refresh (a third of the ttl after the last) found it
      assert.is_true(lost_after <= 0.5 + LOSS_BOUND, ("lost after %.2f s"):format(lost_after))
      assert.is_true(lost)
      assert.equal(0, left_then)
      assert.is_false(released)
      assert.equal("thief", srv:cli("GET", key))
    end)

    it("is reported lost at its validity's end when its store is closed under it; nothing escapes the loop", function()
      local d = new_driver()
      local store = rs.new { url = srv.url }
      local s = d.adapter.wrap(store)
      local key = "rigatoni:lock:closed:" .. loop
      local lost, valid_end, lost_at, err = 0, nil, nil, nil
      app(d, nil, function()
        do
          local lease <close> = s:lease(key, "me", { ttl = 0.3, on_lost = function()
            lost = lost + 1
            lost_at = d.now()
          end })
          valid_end = d.now() + lease:remaining()
          store:close()
          while lost == 0 and d.now() < valid_end + 2 do d.sleep(0.01) end
          err = lease.last_error
        end                            -- the close's release fails quietly
      end)
      d.run(10)
      assert.equal(1, lost)
      assert.is_true(lost_at - valid_end <= LOSS_BOUND, ("lost %.0f ms late"):format((lost_at - valid_end) * 1000))
      assert.matches("closed", tostring(err))
    end)
  end)
end

describe("lease jobs give what the blocking lease calls give", function()
  local srv, store
  local key = "rigatoni:lock:jobs:lease"

  setup(function()
    srv = servers.redis()
    store = rs.new { url = srv.url, command_timeout = 5, connection_timeout = 5 }
  end)

  teardown(function()
    if store then store:close() end
    if srv then
      signal(srv.pid, "sigcont")
      srv:stop()
    end
  end)

  before_each(function()
    srv:cli("FLUSHDB")
  end)

  it("store:start('lease'): the lease, or nil when taken; bad input raised as store:lease raises it", function()
    local lease = store:start("lease", key, "me", { ttl = 5 }):wait()
    assert.is_truthy(lease)
    assert.matches("rigatoni_store.lease", tostring(lease), 1, true)
    local left = lease:remaining()
    assert.is_true(left > 4.5 and left <= 5, "remaining " .. left)
    assert.equal("me", lease.owner)
    assert.is_nil(store:start("lease", key, "other", { ttl = 5 }):wait())
    assert.is_nil(store:lease(key, "other", { ttl = 5 }))
    for _, args in ipairs { { "", "me" }, { key, "" }, { key, "me", { ttl = -1 } } } do
      local be = helpers.catch_object(store.lease, store, table.unpack(args))
      local je = helpers.catch_object(store.start, store, "lease", table.unpack(args))
      assert.equal(be.kind, je.kind)
      assert.equal(be.message, je.message)
    end
    -- an unknown option: the same argument error
    assert.matches("unknown option 'tll'", helpers.catch(store.lease, store, key, "me", { tll = 1 }), 1, true)
    assert.matches("unknown option 'tll'", helpers.catch(store.start, store, "lease", key, "me", { tll = 1 }), 1, true)
    assert.is_true(lease:release())
  end)

  it("lease:start_refresh(): renewed from its start, false once taken, false without a call once lost", function()
    local lease = store:lease(key, "me", { ttl = 2 })
    uv.sleep(300)
    assert.is_true(lease:start_refresh():wait())
    local left = lease:remaining()
    assert.is_true(left > 1.9, "remaining " .. left)
    srv:cli("SET", key, "thief")
    assert.is_false(lease:start_refresh():wait())
    assert.equal(0, lease:remaining())
    assert.is_false(lease:refresh())
    assert.is_false(lease:start_refresh():wait())
    assert.is_false(lease:release())
  end)

  it("a refresh on a frozen server ends within the lease's validity (blocking and as a job)", function()
    local lease = store:lease(key, "me", { ttl = 0.5 })
    local took = {}
    for _, how in ipairs { "job", "blocking" } do
      local l = how == "job" and lease or store:lease(key .. ":b", "me", { ttl = 0.5 })
      signal(srv.pid, "sigstop")
      local t0 = uv.hrtime() / 1e9
      local ok, err = pcall(function()
        if how == "job" then return l:start_refresh():wait() end
        return l:refresh()
      end)
      took[how] = uv.hrtime() / 1e9 - t0
      signal(srv.pid, "sigcont")
      assert.is_false(ok, how .. ": refreshed on a frozen server")
      helpers.assert_kind("timeout", err)
      -- (a socket timeout ends some 20 ms after the time it was given)
      assert.is_true(took[how] <= 0.6, ("%s: the refresh took %.2f s, longer than the lease"):format(how, took[how]))
      assert.equal(0, l:remaining())
    end
    print(("refresh on a frozen server: job %.0f ms, blocking %.0f ms (ttl 0.5 s, command_timeout 5 s)")
      :format(took.job * 1000, took.blocking * 1000))
  end)

  it("lease:start_release(): what release() gives; the lease is released", function()
    local lease = store:lease(key, "me", { ttl = 5 })
    assert.is_true(lease:start_release():wait())
    assert.equal("0", srv:cli("EXISTS", key))
    assert.matches("released", tostring(lease), 1, true)
    assert.is_false(lease:release())
    lease = store:lease(key, "me", { ttl = 5 })
    srv:cli("SET", key, "thief")
    assert.is_false(lease:start_release():wait())
    assert.equal("thief", srv:cli("GET", key))
  end)
end)

-- A loop lease lost at its validity's end (server frozen) is counted once:
-- locks_lost_total +1, locks_held_total -1, and the release after the key
-- expired finds nothing to count (review of issue 23).
for _, loop in ipairs { "cqueues", "luv" } do
  describe("loop lease metrics after a loss while frozen (" .. loop .. ")", function()
    local srv
    setup(function() srv = servers.redis() end)
    teardown(function() if srv then signal(srv.pid, "sigcont"); srv:stop() end end)

    local function metric(store, name)
      return tonumber(store:prometheus():match("\n" .. name .. " (%d+)"))
    end

    it("counts the loss and no longer counts the lock held", function()
      local d = loops.driver(loop)
      local store = rs.new { url = srv.url, command_timeout = 5, connection_timeout = 5 }
      local s = d.adapter.wrap(store)
      local lost, released = 0, nil
      d.spawn(function()
        local lease = assert(s:lease("rigatoni:lock:metrics:" .. loop, "me",
          { ttl = 0.3, on_lost = function() lost = lost + 1 end }))
        signal(srv.pid, "sigstop")
        while lost == 0 do d.sleep(0.01) end
        signal(srv.pid, "sigcont")
        d.sleep(0.35)                      -- the key expired on the server too
        released = lease:release()
      end)
      d.run(10)
      local held, lost_total = metric(store, "rigatoni_locks_held_total"),
                               metric(store, "rigatoni_locks_lost_total")
      store:close()
      assert.equal(1, lost)
      assert.is_false(released)
      assert.equal(0, held)
      assert.equal(1, lost_total)
    end)
  end)
end

describe("the cqueues adapter's job group", function()
  local srv
  setup(function() srv = servers.redis() end)
  teardown(function()
    if srv then
      signal(srv.pid, "sigcont")
      srv:stop()
    end
  end)

  it("gives the lead on: a leading coroutine never resumed again does not slow later calls", function()
    local store = rs.new { url = srv.url, workers = 2 }
    store:save_raw("k", "v")
    local s = require("rigatoni_store.cqueues").wrap(store)
    -- The leader's get waits on a frozen server; its controller is
    -- stepped once (the coroutine polls the group) and never again.
    local cq1 = cqueues.new()
    signal(srv.pid, "sigstop")
    cq1:wrap(function() s:get_raw("k") end)
    assert(cq1:step(0))
    signal(srv.pid, "sigcont")
    -- Another controller: 20 gets one after another.
    local cq2 = cqueues.new()
    local took, got
    cq2:wrap(function()
      local t0 = cqueues.monotime()
      for _ = 1, 20 do got = s:get_raw("k") end
      took = cqueues.monotime() - t0
    end)
    local deadline = cqueues.monotime() + 10
    while not cq2:empty() and cqueues.monotime() < deadline do assert(cq2:step(0.05)) end
    assert.equal("v", got)
    -- was 2.0 s: every call waited in 0.1 s steps for a leader gone
    assert.is_true(took < 0.5, ("20 gets took %.3f s"):format(took))
    store:close()
  end)
end)
