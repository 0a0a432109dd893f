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
-- Each method of wrap(store) starts the store method as a job
-- (store:start(name, ...)), watches the job's descriptor with a
-- uv.new_poll readable watcher and yields; the watcher's callback resumes
-- the coroutine once the job is done, and the watcher is closed. Then it
-- returns job:wait()'s results, or raises its error object in the
-- coroutine, as the blocking method would. Outside a coroutine it raises
-- before anything is started (the main thread cannot yield to the loop).
--
-- An error the coroutine raises after being resumed by the watcher is
-- raised again from the callback, so luv reports it, rather than lost.

local uv = require "luv"
local rs = require "rigatoni_store"

local M = {}

local function check_inside(name)
  local _, main = coroutine.running()
  if main or not coroutine.isyieldable() then
    error(("rigatoni_store.luv: %s must be called inside a coroutine run by the luv loop"):format(name), 3)
  end
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
      local ok, err = coroutine.resume(co)
      if not ok then error(err, 0) end
    end)
    -- Resumed by the watcher (or by something else: then wait on).
    repeat coroutine.yield() until woken
    poll:close()   -- stopped already: the descriptor may be closed by wait()
  end
  return job:wait()
end
M.await = await

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
  assert(store ~= nil, "rigatoni_store.luv.wrap: a store is required")
  local methods = {}
  return setmetatable({ store = store }, {
    __name = "rigatoni_store.luv.wrapped",
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
