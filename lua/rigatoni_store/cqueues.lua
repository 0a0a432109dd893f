-- SPDX-License-Identifier: MIT
-- rigatoni_store.cqueues -- the store inside a cqueues loop (pure Lua).
--
--   local rsq = require "rigatoni_store.cqueues"
--   cq:wrap(function()
--     local store = rsq.open{ url = "redis://127.0.0.1:6379" }   -- rs.start_open
--     local s = rsq.wrap(store)
--     s:save_resume_token("users", token)      -- store:start(...), then yields
--   end)
--
-- Each method of wrap(store) starts the store method as a job
-- (store:start(name, ...)) and polls the job with cqueues.poll, which a
-- job supports directly (pollfd/events/timeout), so only the calling
-- coroutine waits: the loop's other coroutines and timers go on. Then it
-- returns job:wait()'s results, or raises its error object in the
-- coroutine, as the blocking method would. Outside a coroutine run by a
-- cqueues controller it raises before anything is started (cqueues.poll
-- there would block the whole thread in a loop of its own).

local cqueues = require "cqueues"

local function check_inside(name)
  local _, inside = cqueues.running()
  if not inside then
    error(("rigatoni_store.cqueues: %s must be called inside a cqueues coroutine (cq:wrap)"):format(name), 3)
  end
end

-- Waits for a job without blocking the loop; its results or its error.
local function await(job)
  if not job:ready() then
    local fd = job:pollfd()
    -- poll gives back the job once its descriptor is readable (which is
    -- when the job is done); anything else (an interrupted poll) waits on.
    repeat until cqueues.poll(job) == job
    -- cqueues remembers descriptors it polled: forget this one before
    -- wait() closes it (the number is soon another job's).
    cqueues.cancel(fd)
  end
  return job:wait()
end

-- The lease's timers (rigatoni_store.loop_lease): a coroutine of the
-- running controller, and a sleep a condition cuts short.
local timers = {}

function timers.spawn(fn)
  cqueues.running():wrap(fn)
end

function timers.alarm()
  local cond = require("cqueues.condition").new()
  return {
    sleep = function(_, seconds) cond:wait(math.max(seconds, 0)) end,
    wake = function() cond:signal() end,
    close = function() end,
  }
end

-- wrap(store), open(config), the walks: rigatoni_store.adapter.
return require("rigatoni_store.adapter").new("cqueues", check_inside, await, timers)
