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
      local ok, err = coroutine.resume(co)
      if not ok then error(uncaught(co, err), 0) end
    end)
    -- Resumed by the watcher (or by something else: then wait on).
    repeat coroutine.yield() until woken
    poll:close()   -- stopped already: the descriptor may be closed by wait()
  end
  return job:wait()
end

-- wrap(store), open(config), the walks: rigatoni_store.adapter.
return require("rigatoni_store.adapter").new("luv", check_inside, await)
