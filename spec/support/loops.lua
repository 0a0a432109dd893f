-- SPDX-License-Identifier: MIT
-- spec/support/loops.lua -- drivers of the real event loops (cqueues, luv)
-- for specs that run the store's adapters, and a ticker that measures the
-- loop's worst gap. (loops_spec.lua keeps its own copy of the drivers.)
--
--   local d = loops.driver("cqueues")   -- or "luv"
--   d.spawn(fn)   fn runs in a coroutine of the loop; its error is kept
--   d.sleep(s)    inside such a coroutine
--   d.run(limit)  runs the loop until every coroutine ended; raises the
--                 first coroutine error (a spec never raises in a callback)
--   d.now()       monotonic seconds
--   d.adapter     rigatoni_store.cqueues or rigatoni_store.luv

package.path = "lua/?.lua;" .. package.path

local M = { TICK = 0.010, BOUND = 0.250 }

-- luv must be loaded once per Lua state: once the first module table it
-- gave is collected, a second require "luv" crashes at its first handle
-- (its loop went with the first). Busted drops package.loaded between
-- spec files, so the first one is kept in the registry for the whole run.
local KEEP = "rigatoni_store.spec.luv"
local function luv()
  local reg = debug.getregistry()
  reg[KEEP] = reg[KEEP] or package.loaded.luv or require "luv"
  package.loaded.luv = reg[KEEP]    -- the adapter's require gets it too
  return reg[KEEP]
end
M.luv = luv

local function traceback(e)
  return type(e) == "string" and debug.traceback(e, 2) or e
end

local function cqueues_driver()
  local cqueues = require "cqueues"
  local cq = cqueues.new()
  local d = { name = "cqueues", adapter = require "rigatoni_store.cqueues", errors = {} }
  d.now = cqueues.monotime
  d.sleep = cqueues.sleep
  function d.spawn(fn)
    cq:wrap(function()
      local ok, err = xpcall(fn, traceback)
      if not ok then d.errors[#d.errors + 1] = err end
    end)
  end
  function d.run(limit)
    local deadline = d.now() + limit
    while not cq:empty() do
      assert(d.now() < deadline, "the cqueues loop did not end within " .. limit .. " s")
      assert(cq:step(0.05))
    end
    if d.errors[1] then error(d.errors[1], 0) end
  end
  return d
end

local function luv_driver()
  local uv = luv()
  local d = { name = "luv", adapter = require "rigatoni_store.luv", errors = {} }
  local live = 0
  function d.now() return uv.hrtime() / 1e9 end
  function d.sleep(s)
    local co = coroutine.running()
    local t = uv.new_timer()
    uv.update_time()   -- the loop's clock stands still between runs
    t:start(math.floor(s * 1000 + 0.5), 0, function()
      t:close()
      assert(coroutine.resume(co))
    end)
    coroutine.yield()
  end
  function d.spawn(fn)
    live = live + 1
    local co = coroutine.create(function()
      local ok, err = xpcall(fn, traceback)
      if not ok then d.errors[#d.errors + 1] = err end
      live = live - 1
    end)
    assert(coroutine.resume(co))
  end
  function d.run(limit)
    uv.update_time()
    local guard = uv.new_timer()
    local timed_out = false
    guard:start(math.floor(limit * 1000), 0, function() timed_out = true; uv.stop() end)
    uv.unref(guard)   -- the guard alone does not keep the loop running
    uv.run()
    if not guard:is_closing() then guard:close() end
    uv.run("nowait")  -- the close callback
    assert(not timed_out, "the luv loop did not end within " .. limit .. " s")
    assert(live == 0, live .. " coroutines never ended (nothing left for the loop to wait on)")
    if d.errors[1] then error(d.errors[1], 0) end
  end
  return d
end

function M.driver(loop)
  if loop == "cqueues" then return cqueues_driver() end
  assert(loop == "luv", loop)
  return luv_driver()
end

-- A ticker coroutine: sleeps TICK at a time until stop() and keeps the
-- worst gap between two wake-ups and the tick count.
function M.ticker(d)
  local t = { worst = 0, ticks = 0, running = true }
  d.spawn(function()
    local last = d.now()
    while t.running do
      d.sleep(M.TICK)
      local now = d.now()
      if now - last > t.worst then t.worst = now - last end
      last = now
      t.ticks = t.ticks + 1
    end
  end)
  function t.stop() t.running = false end
  return t
end

-- Sends a signal by pid without forking.
function M.signal(pid, name)
  luv().kill(pid, name)
end

return M
