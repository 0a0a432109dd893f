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
end)
