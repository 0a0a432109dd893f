-- SPDX-License-Identifier: MIT
-- spec/loop_errors_spec.lua -- an error a coroutine does not catch after
-- the luv adapter's watcher resumed it reaches the application the way luv
-- reports a callback's error (on stderr, "Uncaught Error: ...", and the
-- process exits), with the application's own message first and the
-- coroutine's traceback (where the application raised it) rather than
-- only the adapter's callback.

local servers = require "support.servers"
local helpers = require "support.helpers"

describe("the luv adapter", function()
  local srv
  setup(function() srv = servers.redis() end)
  teardown(function() if srv then srv:stop() end end)

  it("reports an error raised in the coroutine after an await with the application's message and traceback", function()
    local app = os.tmpname()
    helpers.write_file(app, ([[
      package.path = "lua/?.lua;" .. package.path
      local uv = require "luv"
      local rs = require "rigatoni_store"
      local rsuv = require "rigatoni_store.luv"
      local store = rs.new { url = %q }
      local function application_step(s)
        s:command("BLPOP", "nothing", "0.1")   -- 100 ms: resumed by the watcher
        error("boom from the application")
      end
      coroutine.wrap(function() application_step(rsuv.wrap(store)) end)()
      uv.run()
    ]]):format(srv.url))
    local err = os.tmpname()
    local ok = os.execute(("LUA_PATH=%s LUA_CPATH=%s lua5.4 %s 2>%s >/dev/null"):format(
      helpers.quote(package.path), helpers.quote(package.cpath), helpers.quote(app), helpers.quote(err)))
    local text = helpers.read_file(err)
    os.remove(app)
    os.remove(err)
    assert.is_not_true(ok)                              -- luv exits on an uncaught callback error
    local first = text:match("^[^\n]*")
    assert.matches("Uncaught Error: " .. app:gsub("%p", "%%%0") .. ":8: boom from the application$", first)
    -- the coroutine's traceback: the application's function, where it raised
    local trace = text:match("stack traceback:\n(.*)$") or ""
    assert.matches("in %a* ?'?application_step'?", trace)
    assert.matches(app:gsub("%p", "%%%0") .. ":8:", trace)
  end)

  it("does not resume a waiting coroutine the application closed: the others go on, the loop ends", function()
    local app = os.tmpname()
    helpers.write_file(app, ([[
      package.path = "lua/?.lua;" .. package.path
      local uv = require "luv"
      local rs = require "rigatoni_store"
      local rsuv = require "rigatoni_store.luv"
      local store = rs.new { url = %q, workers = 2 }
      store:save_raw("k", "v")
      local s = rsuv.wrap(store)
      -- both wait on the server (BLPOP: 100 ms), in one group, then the
      -- application cancels one (Lua 5.4's coroutine.close)
      local victim = coroutine.create(function() s:command("BLPOP", "none", "0.1"); print("victim resumed") end)
      assert(coroutine.resume(victim))
      local other = coroutine.create(function()
        s:command("BLPOP", "none2", "0.1")
        print("other done", s:get_raw("k"))
      end)
      assert(coroutine.resume(other))
      assert(coroutine.close(victim))
      -- a walk's batch waits on its job's own watcher: cancelled too
      local walker = coroutine.create(function()
        for _ in s:scan_keys("*") do print("walker resumed") end
      end)
      assert(coroutine.resume(walker))
      assert(coroutine.close(walker))
      uv.run()
      print("loop ended")
      store:close()
    ]]):format(srv.url))
    local out = os.tmpname()
    local _, how, code = os.execute(("LUA_PATH=%s LUA_CPATH=%s lua5.4 %s >%s 2>&1"):format(
      helpers.quote(package.path), helpers.quote(package.cpath), helpers.quote(app), helpers.quote(out)))
    local text = helpers.read_file(out)
    os.remove(app)
    os.remove(out)
    assert.equal("other done\tv\nloop ended\n", text)
    assert.same({ "exit", 0 }, { how, code }, text)
  end)

  it("leaves no handle behind: a wrapped store collected after the loop ended, then the exit, is clean", function()
    -- A watcher closed by a finalizer after the loop's last run made luv
    -- crash at exit (SIGSEGV in uv_run from its loop's finalizer).
    local app = os.tmpname()
    helpers.write_file(app, ([[
      package.path = "lua/?.lua;" .. package.path
      local uv = require "luv"
      local rs = require "rigatoni_store"
      local rsuv = require "rigatoni_store.luv"
      local store = rs.new { url = %q }
      local s = rsuv.wrap(store)
      coroutine.wrap(function()
        s:save_resume_token("exit", { _data = "8200" })
        print(s:get_resume_token("exit")._data)
      end)()
      uv.run()
      s = nil
      collectgarbage()
      collectgarbage()
      print("collected")
    ]]):format(srv.url))
    local out = os.tmpname()
    local _, how, code = os.execute(("LUA_PATH=%s LUA_CPATH=%s lua5.4 %s >%s 2>&1"):format(
      helpers.quote(package.path), helpers.quote(package.cpath), helpers.quote(app), helpers.quote(out)))
    local text = helpers.read_file(out)
    os.remove(app)
    os.remove(out)
    assert.equal("8200\ncollected\n", text)
    assert.same({ "exit", 0 }, { how, code }, text)
  end)
end)
