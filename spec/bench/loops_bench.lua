-- SPDX-License-Identifier: MIT
-- spec/bench/loops_bench.lua -- one measurement of spec/bench/loops_bench.sh
-- (not part of make test); prints one number.
--
--   lua5.4 loops_bench.lua URL PID ticker cqueues|luv   worst tick gap (ms) of a
--        10 ms ticker while a coroutine saves and gets every 5 ms and the
--        server (PID) is frozen 2 s with SIGSTOP (SIGCONT always sent)
--   lua5.4 loops_bench.lua URL - get16 SECONDS   get_resume_token/s of 16
--        coroutines through rigatoni_store.cqueues (pool_size and workers 16)
--   lua5.4 loops_bench.lua URL - get1 SECONDS    the same, one coroutine
--   lua5.4 loops_bench.lua URL - blocking SECONDS   blocking get_resume_token/s

package.path = "lua/?.lua;" .. package.path
local rs = require "rigatoni_store"
local uv = require "luv"
local cqueues = require "cqueues"

local url, pid, what, arg1 = arg[1], tonumber(arg[2]), arg[3], arg[4]
local TOKEN = { _data = "8263A5F0C2000000012B022C0100296E5A1004" }

local function ticker_cqueues()
  local rsq = require "rigatoni_store.cqueues"
  local cq = cqueues.new()
  local s = rsq.wrap(rs.new { url = url })
  local worst, done = 0, false
  cq:wrap(function()
    local last = cqueues.monotime()
    while not done do
      cqueues.sleep(0.010)
      local now = cqueues.monotime()
      worst = math.max(worst, now - last)
      last = now
    end
  end)
  cq:wrap(function()
    local i = 0
    while not done do
      i = i + 1
      pcall(s.save_resume_token, s, "bench:loop", TOKEN)
      pcall(s.get_resume_token, s, "bench:loop")
      cqueues.sleep(0.005)
    end
  end)
  cq:wrap(function()
    cqueues.sleep(0.3)
    uv.kill(pid, "sigstop")
    cqueues.sleep(2.0)
    uv.kill(pid, "sigcont")
    cqueues.sleep(0.3)
    done = true
  end)
  local ok, err = cq:loop()
  uv.kill(pid, "sigcont")
  assert(ok, err)
  return worst * 1000
end

local function ticker_luv()
  local rsuv = require "rigatoni_store.luv"
  local s = rsuv.wrap(rs.new { url = url })
  local worst, done = 0, false
  local function sleep(ms)
    local co = coroutine.running()
    local t = uv.new_timer()
    t:start(ms, 0, function() t:close(); assert(coroutine.resume(co)) end)
    coroutine.yield()
  end
  local last = uv.hrtime()
  local tick = uv.new_timer()
  tick:start(10, 10, function()
    local now = uv.hrtime()
    worst = math.max(worst, (now - last) / 1e6)
    last = now
    if done then tick:close() end
  end)
  coroutine.wrap(function()
    while not done do
      pcall(s.save_resume_token, s, "bench:loop", TOKEN)
      pcall(s.get_resume_token, s, "bench:loop")
      sleep(5)
    end
  end)()
  coroutine.wrap(function()
    sleep(300)
    uv.kill(pid, "sigstop")
    sleep(2000)
    uv.kill(pid, "sigcont")
    sleep(300)
    done = true
  end)()
  local ok, err = pcall(uv.run)
  uv.kill(pid, "sigcont")
  assert(ok, err)
  return worst
end

local function gets(n_co, seconds)
  local rsq = require "rigatoni_store.cqueues"
  local store = rs.new { url = url, pool_size = math.max(n_co, 1), workers = math.max(n_co, 1) }
  store:save_resume_token("bench:get", TOKEN)
  local s = rsq.wrap(store)
  local cq = cqueues.new()
  local count, deadline = 0, cqueues.monotime() + seconds
  for _ = 1, n_co do
    cq:wrap(function()
      while cqueues.monotime() < deadline do
        s:get_resume_token("bench:get")
        count = count + 1
      end
    end)
  end
  local t0 = cqueues.monotime()
  assert(cq:loop())
  return count / (cqueues.monotime() - t0)
end

local function blocking(seconds)
  local store = rs.new { url = url }
  store:save_resume_token("bench:get", TOKEN)
  local count, t0 = 0, cqueues.monotime()
  local deadline = t0 + seconds
  while cqueues.monotime() < deadline do
    for _ = 1, 100 do store:get_resume_token("bench:get") end
    count = count + 100
  end
  return count / (cqueues.monotime() - t0)
end

local result
if what == "ticker" then
  result = arg1 == "luv" and ticker_luv() or ticker_cqueues()
elseif what == "get16" then
  result = gets(16, tonumber(arg1))
elseif what == "get1" then
  result = gets(1, tonumber(arg1))
elseif what == "blocking" then
  result = blocking(tonumber(arg1))
else
  io.stderr:write("loops_bench.lua: unknown measurement ", tostring(what), "\n")
  os.exit(2)
end
print(("%.1f"):format(result))
