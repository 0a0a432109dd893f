-- SPDX-License-Identifier: MIT
-- Adversarial checks of the walk's read-ahead threads (core/scan.c): a
-- walk stays complete for users without INFO when the caller uses the
-- store concurrently, closing early stops the threads without leaks, and
-- a store closed inside the loop is met with a clear error.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local system = require "system"
local helpers = require "support.helpers"

local function token(i) return { _data = ("82%08X%08X"):format(i, i % 97) } end

local function load(srv, n, prefix)
  local parts = {}
  for i = 1, n do
    parts[i] = servers.resp{ "SET", "rigatoni:resume_token:" .. prefix .. i, rs.bson.encode(token(i)) }
  end
  srv:pipe(table.concat(parts))
end

local with_log = helpers.with_log

local function proc_status(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s*(%d+)")
    if v then return tonumber(v) end
  end
end

local function fd_count()
  local p = io.popen("ls /proc/" .. proc_status("Pid") .. "/fd | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

describe("read-ahead walks", function()
  local srv, url
  lazy_setup(function()
    srv = servers.redis{ args = { "--user", "walker", "on", ">walk-pw", "~*", "+@all", "-info" } }
    load(srv, 3000, "c")
    url = srv.url:gsub("^redis://", "redis://walker:walk-pw@")
  end)
  lazy_teardown(function() srv:stop() end)

  it("two walks at once on one store (no INFO) list everything without restarting", function()
    local store <close> = rs.new{ url = url, max_retries = 20, retry_base_delay = 0.01, retry_max_delay = 0.05 }
    local outer, inner, err = 0, 0, nil
    local log = with_log(function()
      local ok, e = pcall(function()
        for _ in store:resume_tokens{ batch = 100 } do
          outer = outer + 1
          if outer % 300 == 1 then
            for _ in store:resume_tokens{ batch = 100 } do inner = inner + 1 end
          end
        end
      end)
      err = not ok and e or nil
    end)
    assert.is_nil(err)
    assert.are.equal(3000, outer)
    assert.are.equal(3000 * 10, inner)
    assert.is_nil(log:find("from the start", 1, true), log)
  end)

  it("with pool_size 1 and writes in the loop body, every token is listed once", function()
    local store <close> = rs.new{ url = url, pool_size = 1, connection_timeout = 2 }
    local rows = 0
    local log = with_log(function()
      for collection in store:resume_tokens{ batch = 50 } do
        rows = rows + 1
        store:save_resume_token("w" .. collection, token(rows))
        store:delete_resume_token("w" .. collection)
      end
    end)
    assert.are.equal(3000, rows)
    assert.is_nil(log:find("from the start", 1, true), log)
  end)

  it("breaking out of 1000 walks leaks neither threads nor descriptors", function()
    -- pool_size 3: the pool is full after the first round, so any later
    -- growth of the descriptors is a leak
    local store <close> = rs.new{ url = srv.url, pool_size = 3 }
    local function round()
      for i = 1, 500 do
        for _ in store:resume_tokens{ batch = 10 } do break end
        if i % 3 == 0 then                    -- and some left to the GC, unclosed
          local iter, state = store:resume_tokens{ batch = 10 }
          iter(state)
        end
      end
      collectgarbage(); collectgarbage()
    end
    round()                                   -- the pool grows to what it needs
    local threads, fds = proc_status("Threads"), fd_count()
    round()
    round()
    assert.are.equal(threads, proc_status("Threads"))
    assert.is_true(fd_count() <= fds)        -- a pooled connection may have closed
  end)

  it("store:close() inside the loop body: the next step raises clearly, threads end", function()
    local store = rs.new{ url = srv.url }
    local threads = proc_status("Threads")
    local rows = 0
    local ok, err = pcall(function()
      for _ in store:resume_tokens{ batch = 10 } do
        rows = rows + 1
        if rows == 5 then store:close() end
      end
    end)
    assert.is_false(ok)
    assert.matches("closed store", tostring(err), 1, true)
    assert.are.equal(threads, proc_status("Threads"))
  end)

  it("an error in the loop body closes the walk (threads end)", function()
    local store <close> = rs.new{ url = srv.url }
    local threads = proc_status("Threads")
    for _ = 1, 50 do
      local ok = pcall(function()
        for _ in store:token_batches{ batch = 10 } do error("boom") end
      end)
      assert.is_false(ok)
    end
    assert.are.equal(threads, proc_status("Threads"))
  end)
end)

describe("closing a walk whose read-ahead is on the wire to a frozen server", function()
  it("returns promptly", function()
    local srv = servers.redis{}
    finally(function()
      os.execute("kill -CONT " .. srv.pid)
      srv:stop()
    end)
    local parts, value = {}, ("v"):rep(100)
    for i = 1, 40000 do parts[i] = servers.resp{ "SET", "rigatoni:resume_token:c" .. i, value } end
    srv:pipe(table.concat(parts))
    assert.are.equal("40000", srv:cli("DBSIZE"))
    local store <close> = rs.new{ url = srv.url, command_timeout = 1, max_retries = 3 }
    local iter, state, _, closing = store:token_batches{ batch = 1000 }
    -- The first batch is read by the caller, the threads start at the
    -- second; the read-ahead is full after it; frozen then, the hand-over
    -- of the third batch sets the reader on a MGET that hangs.
    assert.is_not_nil(iter(state))
    assert.is_not_nil(iter(state))
    system.sleep(0.2)
    os.execute("kill -STOP " .. srv.pid)
    assert.is_not_nil(iter(state))
    local t0 = system.gettime()
    do local c <close> = closing end
    local took = system.gettime() - t0
    os.execute("kill -CONT " .. srv.pid)
    assert.is_true(took < 0.5, ("close took %.2fs"):format(took))
  end)
end)
