-- SPDX-License-Identifier: MIT
-- rigatoni_store.adapter -- what the event-loop adapters share (pure Lua).
--
-- A loop gives: check_inside(name), which raises (at the caller's
-- caller: error level 3) outside a coroutine that loop runs, await(job),
-- which yields to the loop until the job is done and returns job:wait()'s
-- results (or raises its error object), timers (a lease's, see
-- rigatoni_store.loop_lease), and group_await(group),
-- an await for the jobs of one completion group (store:job_group()): the
-- loop watches the group's one descriptor for all of them, instead of one
-- descriptor per job (no descriptor made, registered or closed per call).
-- wrap(store) keeps one group per wrapped store. From them, new()
-- makes the adapter: wrap(store), whose methods run the store's methods
-- as jobs (store:start), walks by batch as iterators that wait for each
-- batch in the loop, open(config) (rs.start_open), and flush_log()
-- (rs.flush_log: lines for a log handler that may yield). The loops are
-- rigatoni_store.cqueues and rigatoni_store.luv.

local rs = require "rigatoni_store"

local M = {}

-- Walks by batch: store:start(name, ...) gives the walk, walk:start_next()
-- the job of its next batch (nil first value at the end). "rows": the
-- batch is arrays (names, values, ttls[, errors]) whose rows the iterator
-- gives one at a time, as the blocking walk does.
local walks = { token_batches = "batches", token_lines = "batches",
                resume_tokens = "rows", scan_keys = "rows" }

-- What the generic for closes when it ends or is left early (a break, an
-- error): the walk, which stops its read-ahead.
local function closer(walk)
  local mt = getmetatable(walk)
  if type(mt) == "table" and mt.__close then return walk end
  return setmetatable({}, { __close = function() walk:close() end })
end

-- Lines the store's workers logged reach a handler set with
-- rs.set_log_handler(fn, {yields = true}) here, from the coroutine (so
-- the handler may yield to the loop), after each job and before its
-- results or error are returned; adapter.flush_log() on demand.
local function logged(await)
  local function finish(ok, ...)
    rs.flush_log()
    if not ok then error((...), 0) end
    return ...
  end
  return function(job) return finish(pcall(await, job)) end
end

function M.new(loop, check_inside, await, timers, group_await)
  await = logged(await)
  local adapter = { await = await, flush_log = rs.flush_log }
  local loop_lease = timers and require("rigatoni_store.loop_lease").new(loop, check_inside, await, timers)

  local function walk_iterator(store, name, ...)
    local walk = store:start(name, ...)
    local ended = false
    if walks[name] == "rows" then
      local names, values, ttls, errors, i = {}, nil, nil, nil, 0
      return function()
        if i >= #names then
          if ended then return nil end
          check_inside(name)
          local a, b, c, d = await(walk:start_next())
          if a == nil then ended = true; return nil end
          names, values, ttls, errors, i = a, b, c, type(d) == "table" and d or nil, 0
        end
        i = i + 1
        return names[i], values[i], ttls[i], errors and errors[i]
      end, nil, nil, closer(walk)
    end
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
    local group, await_in                 -- made by the first call
    local function start(name, ...)
      if not group then
        group = store:job_group()
        await_in = logged(group_await(group))
      end
      return await_in(group:start(name, ...))
    end
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
            return start(name, ...)
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
