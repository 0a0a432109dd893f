-- SPDX-License-Identifier: MIT
-- rigatoni_store.adapter -- what the event-loop adapters share (pure Lua).
--
-- A loop gives two things: check_inside(name), which raises (at the
-- caller's caller: error level 3) outside a coroutine that loop runs, and
-- await(job), which yields to the loop until the job is done and returns
-- job:wait()'s results (or raises its error object). From them, new()
-- makes the adapter: wrap(store), whose methods run the store's methods
-- as jobs (store:start), walks by batch as iterators that wait for each
-- batch in the loop, and open(config) (rs.start_open). The loops are
-- rigatoni_store.cqueues and rigatoni_store.luv.

local rs = require "rigatoni_store"

local M = {}

-- Walks by batch: store:start(name, opts) gives the walk, walk:start_next()
-- the job of its next batch (nil first value at the end).
local walks = { token_batches = true }

-- What the generic for closes when it ends or is left early (a break, an
-- error): the walk, which stops its read-ahead.
local function closer(walk)
  local mt = getmetatable(walk)
  if type(mt) == "table" and mt.__close then return walk end
  return setmetatable({}, { __close = function() walk:close() end })
end

function M.new(loop, check_inside, await, timers)
  local adapter = { await = await }
  local loop_lease = timers and require("rigatoni_store.loop_lease").new(loop, check_inside, await, timers)

  local function walk_iterator(store, name, ...)
    local walk = store:start(name, ...)
    local ended = false
    return function()
      if ended then return nil end
      check_inside(name)
      local first, a, b, c, d = await(walk:start_next())
      if first == nil then ended = true end
      return first, a, b, c, d
    end, nil, nil, closer(walk)
  end

  -- wrap(store) -> an object whose methods are the store's methods run as
  -- jobs. Method names are resolved on first use: a name store:start does
  -- not take raises "not available as a job: <name>" at once.
  function adapter.wrap(store)
    assert(store ~= nil, "rigatoni_store." .. loop .. ".wrap: a store is required")
    local methods = {}
    return setmetatable({ store = store }, {
      __name = "rigatoni_store." .. loop .. ".wrapped",
      __index = function(_, name)
        local fn = methods[name]
        if fn then return fn end
        if name == "lease" and loop_lease then
          fn = function(_, ...)
            check_inside(name)
            return loop_lease(store, ...)
          end
        elseif walks[name] then
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
  function adapter.open(config)
    check_inside("open")
    return await(rs.start_open(config))
  end

  return adapter
end

return M
