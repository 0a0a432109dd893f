-- SPDX-License-Identifier: MIT
-- spec/support/oom_bindings.lua -- the body spec/support/oom_lua.c runs
-- with a memory error injected at each of its allocations in turn: every
-- binding that copies a result the core malloc'd (and the others, for
-- good measure). Argument: the URL of a redis-server.
local rs = require "rigatoni_store"
local url = ...
local store = rs.new{ url = url, pool_size = 2 }
store:command("FLUSHALL")
store:save_resume_token("users", { _data = "82aa", n = 1 })
store:save_raw("raw", ("r"):rep(100))
assert(store:try_acquire_lock("lk", "owner-1", 30))
local token = rs.bson.encode{ _data = "82bb" }
-- Log lines queued by the core reach this handler when a method returns.
rs.set_log_level("debug")
local delivered = 0
rs.set_log_handler(function() delivered = delivered + 1 end)

return function()
  store:get_raw("raw")
  store:get_resume_token("users")
  store:command("GET", "rigatoni:resume_token:raw")
  store:command("INFO", "server")
  store:command("MGET", "rigatoni:resume_token:raw", "missing")   -- a reply tree
  store:command("EVAL", "return {1, {'a', false}, redis.error_reply('E x')}", "0")
  store:get_many{ "users", "raw", "missing" }
  store:prometheus()
  store:lock_owner("lk")
  store:stats{ buckets = true }
  store:save_many{ { "batch", token, 60 } }
  store:delete_many{ "batch", "nothing" }
  store:list_resume_tokens()
  for _ in store:resume_tokens{ batch = 10 } do end
  for _ in store:scan_keys("rigatoni:lock:*") do end
  store:save_resume_token("users", { _data = "82aa", n = 1 })
  store:save_resume_token("users", { _data = "82aa" }, { lock = "lk", owner = "owner-1" })
  assert(not pcall(store.delete_resume_token, store, "users", { if_valu = "x" }))   -- unknown option
  -- jobs (store:start): the op copied at start, the results pushed at
  -- wait; a job dropped unwaited is abandoned and frees itself
  store:start("get_raw", "raw"):wait()
  store:start("get_many", { "users", "raw", "missing" }):wait()
  store:start("save_resume_token", "job", { _data = "82cc" }):wait()
  store:start("command", "MGET", "rigatoni:resume_token:raw", "missing"):wait()
  store:start("lock_owner", "lk")
  local walk <close> = store:start("token_batches", { batch = 10 })
  while walk:start_next():wait() do end
  store:start("list_resume_tokens", { counts = {} }):wait()
  assert(not pcall(store.start, store, "expire", "users", "x"))   -- an argument error, as expire's
  do   -- a handler that may yield: its lines wait for rs.flush_log()
    local plain <close> = setmetatable({}, { __close = function()
      rs.set_log_handler(function() delivered = delivered + 1 end)
    end })
    rs.set_log_handler(function() delivered = delivered + 1 end, { yields = true })
    store:start("ping"):wait()
    rs.flush_log()
  end
  -- an open job (rs.start_open): waited for, and one dropped unfinished
  local opened <close> = rs.start_open{ url = url, pool_size = 1 }:wait()
  rs.start_open{ url = url, pool_size = 1 }
  rs.bson.to_json(token)
  rs.bson.decode(token)
  delivered = 0
  local other <close> = rs.new{ url = url }   -- logs "connected to ..."
  other:ping()                                 -- hands the line to the handler
  -- A memory error in an earlier run must not have stopped delivery.
  assert(delivered > 0 or oom_hit(), "a log line did not reach the handler")
end
