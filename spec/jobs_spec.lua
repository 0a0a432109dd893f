-- SPDX-License-Identifier: MIT
-- spec/jobs_spec.lua -- store:start(method, ...): the store's methods as
-- jobs run by the store's workers, for event loops. A job gives exactly
-- what the blocking call gives (results, or the same error object); bad
-- input raises at start, before anything is sent; job:ready() never
-- blocks and job:pollfd() polls readable once the job is done; a job
-- dropped or a store closed with jobs in flight leaks nothing, hangs
-- nothing (the ASan pass checks the leaks).

local servers = require "support.servers"
local helpers = require "support.helpers"
local rs = require "rigatoni_store"
local system = require "system"

local P = "rigatoni:resume_token:"

-- A frozen server answers nothing until SIGCONT (always sent: finally).
local function freeze(srv, fn)
  os.execute("kill -STOP " .. srv.pid)
  local ok, err = pcall(fn)
  os.execute("kill -CONT " .. srv.pid)
  if not ok then error(err, 0) end
end

-- Whether `job` polls readable within `timeout` seconds, through cqueues
-- (which polls job:pollfd() for job:events()).
local function polls_ready(job, timeout)
  local cqueues = require "cqueues"
  local cq = cqueues.new()
  local got
  cq:wrap(function() got = cqueues.poll(job, timeout) end)
  assert(cq:loop())
  return got == job
end

-- Results and errors made comparable: TTL seconds rounded, error objects
-- as their fields.
local function normal(v)
  if type(v) == "number" and math.type(v) == "float" then return math.floor(v + 0.5) end
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = normal(x) end
  return t
end

local function outcome(ok, ...)
  return normal(table.pack(ok, ...))
end

local function blocking(store, method, ...)
  return outcome(pcall(store[method], store, ...))
end

local function as_job(store, method, ...)
  local job = store:start(method, ...)
  return outcome(pcall(job.wait, job))
end

describe("store:start", function()
  local srv

  setup(function() srv = servers.redis {} end)
  teardown(function() if srv then srv:stop() end end)
  before_each(function() srv:cli("FLUSHALL") end)

  -- Each case: data set before the call, the method and its arguments,
  -- and what the server holds afterwards (compared too).
  local token = { _data = "8263a1b2c3", nested = { n = 1, ok = true } }
  local function seed(store)
    store:save_resume_token("a", token)
    store:save_raw("b", "\0raw\r\nbytes", 100)
    store:command("SET", "plain", "v")
    store:command("HSET", "h", "f", "1")
  end
  local cases = {
    { "get_resume_token", "a" }, { "get_resume_token", "none" },
    { "save_resume_token", "c", token },
    { "save_resume_token", "a", token, { lock = "L", owner = "me" } },
    { "delete_resume_token", "a" }, { "delete_resume_token", "none" },
    { "delete_resume_token", "b", { if_value = "\0raw\r\nbytes" } },
    { "delete_resume_token", "b", { if_value = "other" } },
    { "get_raw", "b" }, { "get_raw", "none" },
    { "save_raw", "r", "\0x\r\n" }, { "save_raw", "r", "y", 50 },
    { "ttl", "a" }, { "ttl", "b" }, { "ttl", "none" },
    { "expire", "a", 70 }, { "expire", "none", 70 },
    { "ping" },
    { "command", "GET", "plain" }, { "command", "HGETALL", "h" }, { "command", "GET", "nothing" },
    { "command", { idempotent = true }, "SET", "plain", "w" },
    { "command", "INCR", "plain" },                       -- a server error: not an integer
    { "command", "HGET", "plain", "f" },                  -- WRONGTYPE
    { "get_many", { "a", "b", "none" } }, { "get_many", { "a", "b" }, { ttl = false } },
    { "save_many", { { "x", "1" }, { "a", "2", 30 } }, { nx = true } },
    { "save_many", { { "x", "1" }, { "y", "2", 30 } } },
    { "delete_many", { "a", "b", "none" } },
    { "try_acquire_lock", "L", "me", 30 }, { "try_acquire_lock", "K", "me", 30 },
    { "refresh_lock", "L", "me", 40 }, { "refresh_lock", "L", "you", 40 },
    { "release_lock", "L", "you" }, { "release_lock", "L", "me" },
    { "is_locked", "L" }, { "is_locked", "K" },
    { "lock_owner", "L" }, { "lock_owner", "K" },
  }

  it("gives every converted method's results or error object, as the blocking call does", function()
    local store <close> = rs.new { url = srv.url }
    -- every key, its type, value (strings) and whether it expires; read
    -- through a second store (blocking calls: quicker than redis-cli)
    local look <close> = rs.new { url = srv.url }
    local function state()
      local keys = {}
      for _, key in ipairs(look:command("KEYS", "*")) do
        local ttl = tonumber(look:command("TTL", key))
        local kind = look:command("TYPE", key)
        keys[key] = { kind, kind == "string" and look:command("GET", key) or "",
                      ttl > 0 and "expires" or tostring(ttl) }
      end
      return keys
    end
    for _, case in ipairs(cases) do
      local name = case[1] .. " #" .. _
      look:command("FLUSHALL")
      seed(store)
      store:try_acquire_lock("L", "me", 30)
      local want = blocking(store, table.unpack(case))
      local want_state = state()
      look:command("FLUSHALL")
      seed(store)
      store:try_acquire_lock("L", "me", 30)
      local got = as_job(store, table.unpack(case))
      assert.same(want, got, name)
      assert.same(want_state, state(), name)
    end
  end)

  it("raises the blocking call's error for bad input at start, before anything is sent", function()
    local store <close> = rs.new { url = srv.url }
    local bad = {
      { "get_resume_token", 5 }, { "get_resume_token", "" },
      { "save_resume_token", "a", "not a table" },
      { "save_resume_token", "a", { f = function() end } },
      { "save_resume_token", "a", {}, { lock = "k" } },
      { "save_raw", "a", 5 }, { "save_raw", "a", "x", -1 },
      { "delete_resume_token", {} },
      { "ttl", 1 }, { "expire", false, 1 },
      { "save_many", { { "a", 5 } } }, { "save_many", { 5 } },
      { "get_many", { "a", 7 } }, { "delete_many", { "" } },
      { "try_acquire_lock", "", "me", 1 }, { "try_acquire_lock", "k", "me", 0 },
      { "refresh_lock", "k", "", 1 }, { "release_lock", "k\0x", "me" },
      { "is_locked", "" }, { "lock_owner", "" },
    }
    local before = srv:cli("INFO", "commandstats")
    for i, case in ipairs(bad) do
      local want = helpers.catch_object(store[case[1]], store, table.unpack(case, 2))
      local got = helpers.catch_object(store.start, store, table.unpack(case))
      assert.same(normal(want), normal(got), case[1] .. " #" .. i)
      assert.equal(getmetatable(want), getmetatable(got))
      assert.is_string(got.kind)
    end
    -- nothing reached the server: no command ran (INFO itself is not counted before it runs)
    local after = srv:cli("INFO", "commandstats")
    local function calls(text, cmd) return tonumber(text:match("cmdstat_" .. cmd .. ":calls=(%d+)") or 0) end
    for _, cmd in ipairs({ "get", "set", "del", "mget", "pttl", "expire", "eval", "evalsha" }) do
      assert.equal(calls(before, cmd), calls(after, cmd), cmd)
    end
  end)

  it("names a method that is not available as a job, and refuses a closed store", function()
    local store = rs.new { url = srv.url }
    for _, name in ipairs({ "close", "no_such_method", "start" }) do   -- lease is: loops_spec
      local err = helpers.catch_object(store.start, store, name)
      assert.equal("config", err.kind)
      assert.equal("not available as a job: " .. name, err.message)
    end
    store:close()
    assert.matches("closed store", helpers.catch(store.start, store, "ping"))
  end)

  it("job:ready() is false while the server is frozen and true once done; pollfd polls readable then",
     function()
    local store <close> = rs.new { url = srv.url }
    store:save_raw("k", "v")
    local job
    freeze(srv, function()
      job = store:start("get_raw", "k")
      assert.equal("r", job:events())
      assert.is_nil(job:timeout())
      assert.is_true(math.type(job:pollfd()) == "integer" and job:pollfd() >= 0)
      assert.is_false(job:ready())
      assert.is_false(polls_ready(job, 0.2))
      assert.is_false(job:ready())
    end)
    assert.is_true(polls_ready(job, 10))
    assert.is_true(job:ready())
    assert.equal("v", job:wait())
    assert.is_true(job:ready())
    assert.matches("already waited for", helpers.catch(job.wait, job))
    assert.matches("already waited for", helpers.catch(job.pollfd, job))
  end)

  it("job:ready() hands the lines logged on a worker to the Lua log handler", function()
    local store <close> = rs.new { url = srv.url }
    local lines = {}
    local level = rs.log_level()
    rs.set_log_level("debug")
    rs.set_log_handler(function(lvl, message) lines[#lines + 1] = lvl .. ": " .. message end)
    local ok, err = pcall(function()
      srv:cli("CLIENT", "KILL", "TYPE", "normal")      -- the job connects again, and says so
      local job = store:start("ping")
      local deadline = system.gettime() + 10
      while not job:ready() do
        assert(system.gettime() < deadline, "the job did not end")
        system.sleep(0.01)
      end
      assert.is_true(#lines > 0, "no line reached the handler before wait")
      assert.is_true(job:wait())
    end)
    rs.set_log_handler(nil)
    rs.set_log_level(level)
    if not ok then error(err, 0) end
  end)

  it("copies its arguments: strings collected while the job runs do not matter", function()
    local store <close> = rs.new { url = srv.url }
    local job
    freeze(srv, function()
      local items = {}
      for i = 1, 200 do items[i] = { "c" .. i, ("%d"):format(i):rep(100) } end
      job = store:start("save_many", items)
      items = nil   -- luacheck: ignore
      collectgarbage()
      collectgarbage()
    end)
    assert.equal(200, #job:wait())
    local values = store:get_many({ "c1", "c200" }, { ttl = false })
    assert.same({ ("1"):rep(100), ("200"):rep(100) }, values)
  end)

  it("a job dropped before it is done is abandoned: no leak, the store goes on", function()
    local store <close> = rs.new { url = srv.url }
    freeze(srv, function()
      for i = 1, 5 do
        store:start("save_raw", "dropped" .. i, "x")
        store:start("get_many", { "a", "b" })
      end
      do local job <close> = store:start("ping") end      -- closed before done
      collectgarbage()
      collectgarbage()
    end)
    helpers.wait_until("the dropped saves", 10, function() return srv:cli("DBSIZE") == "5" end)
    assert.is_true(store:ping())
  end)

  it("store:close() with jobs in flight on a frozen server returns; wait raises the jobs' errors",
     function()
    local store = rs.new { url = srv.url, command_timeout = 0.3, max_retries = 1,
                           retry_base_delay = 0.05, pool_size = 2 }
    local jobs, took = {}, nil
    freeze(srv, function()
      for i = 1, 4 do jobs[i] = store:start("get_raw", "k" .. i) end
      jobs[5] = store:start("save_raw", "w", "x")
      local t0 = system.gettime()
      store:close()
      took = system.gettime() - t0
      for _, job in ipairs(jobs) do assert.is_true(job:ready()) end
    end)
    assert.is_true(took < 5, "close took " .. took .. " s")
    for i, job in ipairs(jobs) do
      local err = helpers.catch_object(job.wait, job)
      assert.is_truthy(err.kind == "connection" or err.kind == "timeout" or err.kind == "unknown",
                       i .. ": " .. tostring(err))
    end
  end)

  it("a job done before store:close() keeps its outcome: wait gives it after the close", function()
    local store = rs.new { url = srv.url }
    store:save_raw("k", "v")
    store:save_raw("bad", "not bson")
    local got, corrupt = store:start("get_raw", "k"), store:start("get_resume_token", "bad")
    helpers.wait_until("the jobs", 10, function() return got:ready() and corrupt:ready() end)
    store:close()
    assert.equal("v", got:wait())
    local err = helpers.catch_object(corrupt.wait, corrupt)
    assert.equal("serialization", err.kind)
    assert.matches("'<key_prefix>:bad' is not a valid token", err.message, 1, true)
  end)

  describe("job groups", function()
    -- Whether the group's descriptor polls readable within `timeout` s.
    local function group_polls(group, timeout)
      local cqueues = require "cqueues"
      local cq = cqueues.new()
      local got
      cq:wrap(function() got = cqueues.poll(group, timeout) end)
      assert(cq:loop())
      return got == group
    end

    it("one descriptor for many jobs: readable once one is done, until clear", function()
      local store <close> = rs.new { url = srv.url }
      store:save_raw("g1", "v1")
      local group <close> = store:job_group()
      assert.equal("r", group:events())
      assert.is_nil(group:timeout())
      assert.is_false(group_polls(group, 0))
      local jobs
      freeze(srv, function()
        jobs = { group:start("get_raw", "g1"), group:start("save_raw", "g2", "v2"),
                 group:start("get_resume_token", "absent") }
        assert.is_false(group_polls(group, 0.1))
        for _, job in ipairs(jobs) do assert.is_false(job:ready()) end
      end)
      local t0 = system.gettime()
      while not (jobs[1]:ready() and jobs[2]:ready() and jobs[3]:ready()) do
        assert.is_true(group_polls(group, 5))
        group:clear()
        assert.is_true(system.gettime() - t0 < 10)
      end
      group:clear()
      assert.is_false(group_polls(group, 0))          -- cleared, nothing done since
      assert.is_true(polls_ready(jobs[1], 0))         -- a group job's own fd, made now
      assert.equal("v1", jobs[1]:wait())
      jobs[2]:wait()                                  -- raises on failure
      assert.equal("v2", store:get_raw("g2"))
      assert.is_nil(jobs[3]:wait())
      local late = group:start("ping")
      assert.is_true(group_polls(group, 5))           -- again for a job done after the clear
      assert.is_true(late:wait())
    end)

    it("gets started together keep their own outcomes (a WRONGTYPE key, a corrupt token)", function()
      local store <close> = rs.new { url = srv.url, workers = 1 }
      store:save_resume_token("ok", { _data = "82" })
      srv:cli("HSET", P .. "hash", "f", "v")
      store:save_raw("corrupt", "not bson")
      local names = { "ok", "hash", "corrupt", "absent" }
      local want = {}
      for _, name in ipairs(names) do want[name] = blocking(store, "get_resume_token", name) end
      local group = store:job_group()
      local jobs = {}
      freeze(srv, function()                          -- queued together, sent together
        for i = 1, 16 do jobs[i] = group:start("get_resume_token", names[i % 4 + 1]) end
      end)
      for i = 1, 16 do
        assert.same(want[names[i % 4 + 1]], outcome(pcall(jobs[i].wait, jobs[i])), names[i % 4 + 1])
      end
    end)

    it("a group closed or collected with jobs in flight: the jobs go on, nothing leaks", function()
      local store <close> = rs.new { url = srv.url }
      store:save_raw("c1", "v")
      local group = store:job_group()
      local kept
      freeze(srv, function()
        kept = group:start("get_raw", "c1")
        group:start("get_raw", "c1")                  -- dropped
        group:close()
        assert.has_error(function() group:start("ping") end, "this job group is closed")
        local other = store:job_group()
        other:start("get_raw", "c1")
        other = nil
        collectgarbage()
        collectgarbage()
      end)
      assert.equal("v", kept:wait())
      assert.is_true(store:ping())
    end)
  end)

  describe("token_batches by jobs", function()
    it("gives the batches of store:token_batches, one job each, then nil", function()
      local store <close> = rs.new { url = srv.url }
      for i = 1, 25 do store:save_raw("t" .. i, "v" .. i, i % 2 == 0 and 100 or false) end
      local want = {}
      for names, values, ttls, _, n in store:token_batches { batch = 10 } do
        for i = 1, n do want[names[i]] = { values[i], normal(ttls[i]) } end
      end
      local got, jobs = {}, 0
      local walk = store:start("token_batches", { batch = 10 })
      while true do
        local job = walk:start_next()
        assert.matches("one at a time", helpers.catch(walk.start_next, walk))
        local names, values, ttls, times, n = job:wait()
        if not names then break end
        jobs = jobs + 1
        assert.equal(#names, n)
        assert.equal(n, #times)
        for i = 1, n do
          assert.is_nil(got[names[i]], "twice: " .. names[i])
          got[names[i]] = { values[i], normal(ttls[i]) }
        end
      end
      assert.same(want, got)
      assert.is_true(jobs >= 1)
      assert.is_nil(walk:start_next():wait())           -- at the end it stays there
      walk:close()
      assert.matches("closed walk", helpers.catch(walk.start_next, walk))
    end)

    it("checks its options at start", function()
      local store <close> = rs.new { url = srv.url }
      assert.matches("unknown option 'count'", helpers.catch(store.start, store, "token_batches", { count = 1 }))
      assert.equal("config", helpers.catch_object(store.start, store, "token_batches", { batch = -1 }).kind)
    end)

    it("a batch job dropped unwaited loses the walk's place: the walk says so", function()
      local store <close> = rs.new { url = srv.url }
      for i = 1, 5 do store:save_raw("t" .. i, "v") end
      local walk = store:start("token_batches", {})
      local job = walk:start_next()
      helpers.wait_until("the batch", 10, function() return job:ready() end)
      job = nil   -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.matches("lost its place", helpers.catch(walk.start_next, walk))
    end)

    it("store:close() with a batch fetched but not waited for returns (its read-ahead stops)", function()
      -- the read-ahead has the next batch ready and waits for the walk to
      -- take it: the close must stop it rather than wait (this hung)
      local store = rs.new { url = srv.url }
      local items = {}
      for i = 1, 2000 do items[i] = { "t" .. i, "v" } end
      store:save_many(items)
      local walk = store:start("token_batches", { batch = 10 })
      for _ = 1, 3 do assert.is_truthy(walk:start_next():wait()) end
      local job = walk:start_next()
      helpers.wait_until("the batch", 10, function() return job:ready() end)
      system.sleep(0.1)
      store:close()
      assert.matches("closed store", helpers.catch(job.wait, job))
      assert.matches("closed store", helpers.catch(walk.start_next, walk))
    end)

    it("store:close() during a batch job on a frozen server returns; the walk then raises", function()
      local store = rs.new { url = srv.url, command_timeout = 0.3, max_retries = 1, retry_base_delay = 0.05 }
      for i = 1, 5 do store:save_raw("t" .. i, "v") end
      local walk, job
      freeze(srv, function()
        walk = store:start("token_batches", {})
        job = walk:start_next()
        store:close()
      end)
      local err = helpers.catch(job.wait, job)
      assert.is_truthy(err)
      assert.matches("closed store", helpers.catch(walk.start_next, walk))
      walk = nil   -- luacheck: ignore
      job = nil    -- luacheck: ignore
      collectgarbage()
      collectgarbage()
    end)
  end)
end)

-- A get started alone as a job still goes out in a (one-get) pipeline
-- (core/get_coalesced.c): when that pipeline fails, it was the get's
-- first attempt, which the get's own retries follow as the blocking
-- call's would (backoff, counted, limited by max_retries).
describe("a coalesced get whose pipeline fails", function()
  local proxy = require "support.proxy"
  local psrv, p
  setup(function() psrv = servers.redis(); p = proxy.start(psrv) end)
  teardown(function()
    if p then p:stop() end
    if psrv then psrv:stop() end
  end)

  -- The get's counters in the metrics (calls, errors by kind, retries).
  local function get_counters(store)
    local t = {}
    for line in store:prometheus():gmatch("[^\n]+") do
      if line:match('op="get"') and not line:match("_bucket") and not line:match("_sum") then
        t[#t + 1] = line
      end
    end
    table.sort(t)
    return t
  end

  -- What `run` gives, and the get's counters after it, from reset stats;
  -- `fault` arms the proxy (or the server) before it.
  local function run_counted(store, fault, run)
    store:reset_stats()
    fault()
    local got = outcome(pcall(run))
    return got, get_counters(store)
  end

  local function cut_once() p:set("cut_lines_once", "0") end

  it("counts the cut pipeline as the get's first attempt: one retry, as blocking", function()
    local store <close> = rs.new { url = p.url, workers = 2, max_retries = 3, retry_base_delay = 0.01 }
    store:save_raw("k", "v")
    local bgot, bcount = run_counted(store, cut_once, function() return store:get_raw("k") end)
    local jgot, jcount = run_counted(store, cut_once, function() return store:start("get_raw", "k"):wait() end)
    assert.same(outcome(true, "v"), bgot)
    assert.same(bgot, jgot)
    local retried = false
    for _, line in ipairs(bcount) do
      retried = retried or line == 'rigatoni_store_operation_retries_total{op="get"} 1'
    end
    assert.is_true(retried)
    assert.same(bcount, jcount)
  end)

  it("with max_retries = 0 fails as the blocking call fails, after 1 attempt", function()
    local store <close> = rs.new { url = p.url, workers = 2, max_retries = 0 }
    store:save_raw("k", "v")
    local bgot, bcount = run_counted(store, cut_once, function() return store:get_raw("k") end)
    local jgot, jcount = run_counted(store, cut_once, function() return store:start("get_raw", "k"):wait() end)
    assert.is_false(bgot[1])
    assert.equal("connection", bgot[2].kind)
    assert.matches("failed after 1 attempt:", bgot[2].message, 1, true)
    assert.same(bgot, jgot)
    assert.same(bcount, jcount)
    assert.equal("v", store:start("get_raw", "k"):wait())   -- the next get goes on
  end)

  it("a store closed while the pipeline waits on a frozen server: the get failed after 1 attempt, not 'not sent'",
     function()
    local store = rs.new { url = psrv.url, workers = 2, command_timeout = 0.3, max_retries = 3 }
    store:save_raw("k", "v")
    local job
    freeze(psrv, function()
      job = store:start("get_raw", "k")
      system.sleep(0.1)                                 -- the pipeline is on the wire
      store:close()
    end)
    local err = helpers.catch_object(job.wait, job)
    assert.equal("timeout", err.kind)
    assert.matches("get of 'k' failed after 1 attempt:", err.message, 1, true)
    assert.equal(1, err.attempts)
  end)

  it("a get refused by an error reply (WRONGTYPE) fails once, not retried, counted as blocking", function()
    local store <close> = rs.new { url = p.url, workers = 2, max_retries = 3, retry_base_delay = 0.01 }
    psrv:cli("HSET", P .. "hash", "f", "v")
    local none = function() end
    local bgot, bcount = run_counted(store, none, function() return store:get_raw("hash") end)
    local jgot, jcount = run_counted(store, none, function() return store:start("get_raw", "hash"):wait() end)
    assert.is_false(bgot[1])
    assert.equal("server", bgot[2].kind)
    assert.same(bgot, jgot)
    assert.same(bcount, jcount)
  end)
end)
