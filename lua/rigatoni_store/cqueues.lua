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
-- Each method of wrap(store) starts the store method as a job of the
-- wrapped store's completion group (group:start(name, ...)) and waits
-- until it is done, so only the calling coroutine waits: the loop's other
-- coroutines and timers go on. One waiting coroutine at a time (the
-- leader) polls the group's descriptor with cqueues.poll; woken, it clears
-- the group and signals the condition of each waiting coroutine whose job
-- is done; a leader whose own job is done hands the role to another
-- waiter. So the loop watches one descriptor whatever the number of jobs,
-- and no coroutine is added to the application's. (A follower also looks
-- at its job every 0.1 s, so that a leader that never comes back -- its
-- coroutine dropped by the application -- cannot strand it; one that
-- finds its job done without a signal takes the lead.) Then it
-- returns job:wait()'s results, or raises its error object in the
-- coroutine, as the blocking method would. Outside a coroutine run by a
-- cqueues controller it raises before anything is started (cqueues.poll
-- there would block the whole thread in a loop of its own).

local cqueues = require "cqueues"
local condition = require "cqueues.condition"

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

-- At most this long the loop is held by a job it waits for alone.
local SPIN = 0.0001

-- The await of the jobs of one group (see the top).
local function group_await(group)
  local waiting = {}        -- job -> the condition its coroutine waits on
  local leader = nil        -- the coroutine polling the group's descriptor
  local inflight = 0        -- coroutines in this await
  local polled = false      -- cqueues has the descriptor registered
  local function lead()
    local me = coroutine.running()
    leader = me
    polled = true
    local ok, err = pcall(cqueues.poll, group)
    if leader == me then leader = nil end   -- not taken over meanwhile
    group:clear()           -- before looking: a job done from now on polls again
    for job, cond in pairs(waiting) do
      if job:ready() then
        waiting[job] = nil
        cond:signal()
      end
    end
    if not ok then error(err, 0) end
  end
  -- The coroutine no longer waits: a waiter takes the lead if none has it.
  local function leave()
    inflight = inflight - 1
    if not leader then
      local _, cond = next(waiting)
      if cond then cond:signal() end
    end
    -- Idle: cqueues forgets the descriptor (as for a job's), so that once
    -- the group is collected and its number reused, no stale registration
    -- remains. Not per job under load: only when no job is waited for.
    if inflight == 0 and polled then
      polled = false
      cqueues.cancel(group:pollfd())
    end
  end
  local function wait_done(job)
    while not job:ready() do
      if leader then
        local cond = condition.new()
        waiting[job] = cond
        local signalled = cond:wait(0.1)
        waiting[job] = nil
        -- Done, yet not told: the leader no longer polls (its coroutine
        -- is not resumed any more: closed, or its controller no longer
        -- stepped). The lead goes to the next waiter.
        if not signalled and job:ready() then leader = nil end
      else
        lead()
      end
    end
  end
  return function(job)
    -- Alone (no other job of the group waited for), look for up to
    -- SPIN seconds before polling: a get on a quiet server ends within
    -- them, and a poll's wake-up costs more than the get.
    inflight = inflight + 1
    if inflight == 1 then job:ready(SPIN) end
    local ok, err = pcall(wait_done, job)
    leave()
    if not ok then error(err, 0) end
    return job:wait()
  end
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
return require("rigatoni_store.adapter").new("cqueues", check_inside, await, timers, group_await)
