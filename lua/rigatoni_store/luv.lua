-- SPDX-License-Identifier: MIT
-- rigatoni_store.luv -- the store inside a libuv loop (luv; pure Lua).
--
--   local uv = require "luv"
--   local rsuv = require "rigatoni_store.luv"
--   coroutine.wrap(function()
--     local store = rsuv.open{ url = "redis://127.0.0.1:6379" }   -- rs.start_open
--     local s = rsuv.wrap(store)
--     s:save_resume_token("users", token)      -- store:start(...), then yields
--   end)()
--   uv.run()
--
-- Each method of wrap(store) starts the store method as a job of the
-- wrapped store's completion group (group:start(name, ...)) and yields.
-- One uv poll watcher on the group's descriptor serves every waiting
-- coroutine: its callback clears the group and resumes each coroutine
-- whose job is done. The watcher lives while some coroutine waits and is
-- closed when none does (so uv.run() ends when the application is done,
-- and no handle outlives the loop's last run).
-- The walks' batches and open(), one job at a time, each have a watcher
-- of their own on the job's descriptor, closed once it is done. Then it
-- returns job:wait()'s results, or raises its error object in the
-- coroutine, as the blocking method would. Outside a coroutine it raises
-- before anything is started (the main thread cannot yield to the loop).
--
-- An error the coroutine raises after being resumed by the watcher is
-- raised again from the callback, so luv reports it, rather than lost:
-- its message, then the coroutine's traceback (see uncaught).

local uv = require "luv"

local function check_inside(name)
  local _, main = coroutine.running()
  if main or not coroutine.isyieldable() then
    error(("rigatoni_store.luv: %s must be called inside a coroutine run by the luv loop"):format(name), 3)
  end
end

-- An error the coroutine did not catch, raised again from the watcher's
-- callback so that luv reports it (stderr, then exit): the application's
-- message first, then the coroutine's own traceback (where it was raised;
-- the callback's frames say nothing about it). An error object becomes
-- its text.
local function uncaught(co, err)
  return debug.traceback(co, type(err) == "string" and err or tostring(err))
end

-- Waits for a job without blocking the loop; its results or its error.
local function await(job)
  if not job:ready() then
    local co = coroutine.running()
    local poll = assert(uv.new_poll(job:pollfd()))
    local woken = false
    poll:start("r", function()
      poll:stop()
      if woken then return end
      woken = true
      -- Closed by the application meanwhile (coroutine.close): nothing
      -- waits for the job any more (kept alive until now by this
      -- callback, so its descriptor was not closed under the watcher).
      if coroutine.status(co) ~= "suspended" then
        local _ = job
        return poll:close()
      end
      local ok, err = coroutine.resume(co)
      if not ok then error(uncaught(co, err), 0) end
    end)
    -- Resumed by the watcher (or by something else: then wait on).
    repeat coroutine.yield() until woken
    poll:close()   -- stopped already: the descriptor may be closed by wait()
  end
  return job:wait()
end

-- The await of the jobs of one group (see the top).
local function group_await(group)
  local waiting = {}        -- job -> its coroutine
  local count = 0
  -- Open while some coroutine waits, closed (from its own callback, the
  -- loop running) once none does: no handle is left for a finalizer to
  -- close (luv crashes at exit on a handle closed by a __gc after the
  -- loop's last run), and the loop ends when the application is done.
  local watcher
  local function on_readable()
    group:clear()           -- before looking: a job done from now on polls again
    local done = {}
    for job, co in pairs(waiting) do
      if job:ready() then done[#done + 1] = co; waiting[job] = nil; count = count - 1 end
    end
    if count == 0 then
      watcher:close()
      watcher = nil
    end
    -- Resumed after the walk (they may start jobs of the group); an
    -- error a coroutine raises is raised again once all are resumed, so
    -- luv reports it rather than lose it.
    local failed
    for _, co in ipairs(done) do
      -- A coroutine the application closed meanwhile is not resumed.
      if coroutine.status(co) == "suspended" then
        local ok, err = coroutine.resume(co)
        if not ok and failed == nil then failed = uncaught(co, err) end
      end
    end
    if failed ~= nil then error(failed, 0) end
  end
  return function(job)
    if not job:ready() then
      if count == 0 then
        watcher = assert(uv.new_poll(group:pollfd()))
        watcher:start("r", on_readable)
      end
      waiting[job] = coroutine.running()
      count = count + 1
      -- Resumed by the watcher (or by something else: then wait on).
      repeat coroutine.yield() until waiting[job] == nil
    end
    return job:wait()
  end
end

-- The lease's timers (rigatoni_store.loop_lease): a coroutine started at
-- once, and a sleep on a uv timer that wake() fires at the next turn of
-- the loop; close() closes the timer so that uv.run can end.
local timers = {}

local function resume(co)
  local ok, err = coroutine.resume(co)
  if not ok then error(err, 0) end
end

function timers.spawn(fn)
  resume(coroutine.create(fn))
end

function timers.alarm()
  local t = assert(uv.new_timer())
  local sleeper
  local function fire()
    t:stop()
    local co = sleeper
    sleeper = nil
    if co then resume(co) end
  end
  return {
    sleep = function(_, seconds)
      sleeper = coroutine.running()
      uv.update_time()   -- the loop's clock stands still between its turns
      t:start(math.max(0, math.ceil(seconds * 1000)), 0, fire)
      repeat coroutine.yield() until sleeper == nil
    end,
    wake = function()
      if sleeper then t:start(0, 0, fire) end
    end,
    close = function()
      if not t:is_closing() then t:close() end
    end,
  }
end

-- wrap(store), open(config), the walks: rigatoni_store.adapter.
return require("rigatoni_store.adapter").new("luv", check_inside, await, timers, group_await)
