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
local rs = require "rigatoni_store"

local M = {}

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
M.await = await

-- Walks by batch: store:start(name, opts) gives the walk, walk:start_next()
-- the job of its next batch (nil first value at the end). The iterator
-- waits for each batch's job in the loop, so the loop runs between batches.
local walks = { token_batches = true }

-- What the generic for closes when it ends or is left early (a break, an
-- error): the walk, which stops its read-ahead.
local function closer(walk)
  local mt = getmetatable(walk)
  if type(mt) == "table" and mt.__close then return walk end
  return setmetatable({}, { __close = function() walk:close() end })
end

local function walk_iterator(store, name, ...)
  local walk = store:start(name, ...)
  local ended = false
  return function()
    if ended then return nil end
    check_inside(name)
    local job = walk:start_next()
    local first, a, b, c, d = await(job)
    if first == nil then ended = true end
    return first, a, b, c, d
  end, nil, nil, closer(walk)
end

-- wrap(store) -> an object whose methods are the store's methods run as
-- jobs. Method names are resolved on first use: a name store:start does
-- not take raises "not available as a job: <name>" at once.
function M.wrap(store)
  assert(store ~= nil, "rigatoni_store.cqueues.wrap: a store is required")
  local methods = {}
  return setmetatable({ store = store }, {
    __name = "rigatoni_store.cqueues.wrapped",
    __index = function(_, name)
      local fn = methods[name]
      if fn then return fn end
      if walks[name] then
        fn = function(_, ...)
          check_inside(name)
          return walk_iterator(store, name, ...)
        end
      else
        fn = function(_, ...)
          check_inside(name)
          return await(store:start(name, ...))
        end
      end
      methods[name] = fn
      return fn
    end,
  })
end

-- open(config) -> store: rs.new's open on a thread of its own
-- (rs.start_open), the coroutine waiting in the loop meanwhile.
function M.open(config)
  check_inside("open")
  return await(rs.start_open(config))
end

return M
