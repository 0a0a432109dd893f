-- SPDX-License-Identifier: MIT
-- spec/startable_spec.lua -- store:start for the methods issue 23 left
-- refusing: list_resume_tokens, stats and server_figures as one job each
-- (job:wait() gives what the blocking call returns, or raises its error
-- kind); resume_tokens, scan_keys and token_lines as walks by job
-- (walk:start_next() gives the job of the next batch, as token_batches),
-- which the loop adapters turn into iterators that yield between batches.
-- Also: argument errors at start name the argument as the blocking method
-- does.

local servers = require "support.servers"
local helpers = require "support.helpers"
local loops = require "support.loops"
local rs = require "rigatoni_store"

-- Results made comparable: floats rounded, error objects as their fields.
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

local token = { _data = "8263a1b2c3", n = 1 }

-- The error of store:name(...) called with method syntax, as an
-- application calls it (argument errors are numbered from that call),
-- without its position (a job's has none).
local function method_error(store, name, ...)
  local call = load("local store = ...; return function(...) local r = store:" .. name .. "(...) return r end")(store)
  local err = helpers.catch(call, ...)
  if type(err) == "string" then err = err:gsub("^.-:%d+: ", "") end
  return err
end

-- Rows of a walk, keyed by their first value (collection or key).
local function blocking_rows(store, name, ...)
  local rows = {}
  for first, a, b, c in store[name](store, ...) do
    assert(rows[first] == nil, "twice: " .. first)
    rows[first] = normal { a, b, c and c.kind }
  end
  return rows
end

-- The same through store:start(name, ...): a batch per job.
local function job_rows(store, name, ...)
  local rows, jobs = {}, 0
  local walk = store:start(name, ...)
  while true do
    local names, values, ttls, errors = walk:start_next():wait()
    if not names then break end
    jobs = jobs + 1
    if type(errors) ~= "table" then errors = {} end
    for i = 1, #names do
      assert(rows[names[i]] == nil, "twice: " .. names[i])
      rows[names[i]] = normal { values[i], ttls[i], errors[i] and errors[i].kind }
    end
  end
  walk:close()
  return rows, jobs
end

describe("store:start of", function()
  local srv, down

  setup(function()
    srv = servers.redis()
    down = servers.redis()                        -- stopped by the case that needs it gone
  end)
  teardown(function() if srv then srv:stop() end end)

  local function seeded()
    srv:cli("FLUSHALL")
    local store = rs.new { url = srv.url }
    for i = 1, 23 do store:save_resume_token(("t%02d"):format(i), token) end
    store:save_raw("corrupt", "not bson")
    store:save_raw("ttl1", "\5\0\0\0\0", 100)
    store:command("HSET", "rigatoni:resume_token:hash", "f", "1")   -- not a token
    store:command("SET", "rigatoni:lock:x", "me")
    return store
  end

  it("list_resume_tokens: one job, the blocking call's tables and counts", function()
    local store <close> = seeded()
    for _, opts in ipairs { {}, { match = "t1*", batch = 5 }, { raw = true }, { ttl = false } } do
      local want = outcome(pcall(store.list_resume_tokens, store, opts))
      local job = store:start("list_resume_tokens", opts)
      assert.same(want, outcome(pcall(job.wait, job)))
    end
    local a, b = {}, {}
    store:list_resume_tokens { counts = a }
    store:start("list_resume_tokens", { counts = b }):wait()
    assert.same({ not_strings = 1 }, a)
    assert.same(a, b)
    local want = helpers.catch_object(store.list_resume_tokens, store, { batch = -1 })
    assert.same(normal(want), normal(helpers.catch_object(store.start, store, "list_resume_tokens", { batch = -1 })))
    assert.equal(method_error(store, "list_resume_tokens", { bogus = 1 }),
                 helpers.catch(store.start, store, "list_resume_tokens", { bogus = 1 }))
  end)

  it("stats: one job, the blocking call's table", function()
    local store <close> = seeded()
    for _, opts in ipairs { {}, { buckets = true } } do
      local job = store:start("stats", opts)
      local got = job:wait()
      local want = store:stats(opts)
      want.pool.in_use, got.pool.in_use, want.pool.idle, got.pool.idle = nil, nil, nil, nil
      assert.same(normal(want), normal(got))
    end
    assert.equal(method_error(store, "stats", { bucket = true }),
                 helpers.catch(store.start, store, "stats", { bucket = true }))
  end)

  it("server_figures: one job, the blocking call's figures", function()
    local store <close> = seeded()
    local function figures(list)
      for _, f in ipairs(list) do f.used_memory, f.used_memory_human = nil, nil end
      return list
    end
    local got = figures(store:start("server_figures"):wait())
    assert.same(figures(store:server_figures()), got)
    assert.equal(27, got[1].dbsize)
  end)

  it("server_identity, node_info, confirm_writes: one job each, the blocking call's results", function()
    local store <close> = seeded()
    assert.same(store:server_identity(), store:start("server_identity"):wait())
    local want, got = store:node_info(), store:start("node_info"):wait()
    assert.equal(#want, #got)
    for i, n in ipairs(got) do
      assert.equal(want[i].node, n.node)
      assert.matches("redis_version:", n.info, 1, true)
    end
    assert.equal(store:confirm_writes(1, 0.05), store:start("confirm_writes", 1, 0.05):wait())
  end)

  it("list_resume_tokens and server_figures against a server that is gone: the blocking call's error kind", function()
    local gone <close> = rs.new { url = down.url, max_retries = 0, connection_timeout = 0.5 }
    down:stop()
    for _, name in ipairs { "list_resume_tokens", "server_figures", "server_identity", "node_info" } do
      local want = helpers.catch_object(gone[name], gone)
      local job = gone:start(name)
      local got = helpers.catch_object(job.wait, job)
      assert.equal(want.kind, got.kind, name)
    end
  end)

  it("resume_tokens, scan_keys, token_lines: walks by job, the blocking walk's rows", function()
    local store <close> = seeded()
    for _, case in ipairs {
      { "resume_tokens", { batch = 5 } }, { "resume_tokens", { raw = true, match = "t*" } },
      { "resume_tokens" }, { "scan_keys", "rigatoni:*", { batch = 4 } }, { "scan_keys", "rigatoni:lock:*" },
    } do
      local want = blocking_rows(store, table.unpack(case))
      local got, jobs = job_rows(store, table.unpack(case))
      assert.same(want, got, case[1])
      assert.is_true(jobs >= 1)
    end
    -- token_lines: the same text (rows in another order: compared sorted)
    for _, format in ipairs { "list", "export" } do
      local function lines(iter_text)
        local all, rows, bad = {}, 0, 0
        for _, t in ipairs(iter_text) do
          for line in t[1]:gmatch("[^\n]+") do
            all[#all + 1] = line:gsub('"ttl_seconds":[%d.]+', "T"):gsub('"ttl_ms":%d+', "T")   -- counting down
          end
          rows, bad = rows + t[2], bad + t[3]
        end
        table.sort(all)
        return { all, rows, bad }
      end
      local opts = { format = format, batch = 6, now = 1700000000 }
      local want = {}
      for text, rows, bad in store:token_lines(opts) do want[#want + 1] = { text, rows, bad } end
      local got = {}
      local walk = store:start("token_lines", opts)
      while true do
        local text, rows, bad = walk:start_next():wait()
        if not text then break end
        got[#got + 1] = { text, rows, bad }
      end
      assert.same(lines(want), lines(got), format)
    end
    -- counts, and the options checked at start as the blocking walk checks them
    local a, b = {}, {}
    for _ in store:resume_tokens { counts = a } do end
    job_rows(store, "resume_tokens", { counts = b })
    assert.same(a, b)
    assert.equal(1, b.not_strings)
    for _, case in ipairs {
      { "resume_tokens", { bogus = 1 } }, { "scan_keys", {} }, { "scan_keys", "x", { match = "y" } },
      { "token_lines", { format = "csv" } }, { "token_lines" }, { "resume_tokens", { batch = -1 } },
    } do
      local want = method_error(store, table.unpack(case))
      local got = helpers.catch(store.start, store, table.unpack(case))
      if type(want) == "table" then
        assert.same(normal(want), normal(got), case[1])
      else
        assert.equal(want, got, case[1])
      end
    end
  end)

  it("argument errors name the argument as the blocking method does", function()
    local store <close> = rs.new { url = srv.url }
    for _, case in ipairs {
      { "expire", "a", "x" }, { "command", { bogus = 1 }, "GET" }, { "get_many", 5 },
      { "try_acquire_lock", "k", "me", "x" }, { "delete_resume_token", "a", 7 },
      { "stats", 5 }, { "list_resume_tokens", 5 }, { "confirm_writes", 0 }, { "confirm_writes", 1, "x" },
    } do
      local want = method_error(store, table.unpack(case))
      local got = select(2, pcall(function() local job = store:start(table.unpack(case)) return job end))
      local n = want:match("bad argument #(%d+)")
      assert.is_truthy(n, want)
      assert.equal(want, got)
      assert.matches("^bad argument #" .. n .. " to '" .. case[1] .. "'", got)
    end
  end)

  it("keeps no reference to the store once its jobs are waited for (a dropped store is collected)", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local store = rs.new { url = srv.url }
      weak[1] = store
      store:start("ping"):wait()
      assert.is_false(pcall(store.start, store, "expire", "a", "x"))
      local walk = store:start("scan_keys", "x")
      walk:start_next():wait()
      walk:close()
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)

  for _, loop in ipairs { "cqueues", "luv" } do
    it("in a " .. loop .. " loop: wrapped resume_tokens, scan_keys and token_lines yield between batches", function()
      local store <close> = seeded()
      local items = {}
      for i = 1, 200 do items[i] = { ("w%03d"):format(i), rs.bson.encode(token) } end
      store:save_many(items)        -- 45 batches of 5 per walk: the walks take several ms
      local d = loops.driver(loop)
      local s = d.adapter.wrap(store)
      local got, others, between = {}, 0, {}
      local walking = true
      d.spawn(function()
        while walking do others = others + 1; d.sleep(0.001) end
      end)
      d.spawn(function()
        local ok, err = pcall(function()
        for _, case in ipairs { { "resume_tokens", { batch = 5 } }, { "scan_keys", "rigatoni:*", { batch = 5 } } } do
          local rows = {}
          local first = others
          for k, a, b, c in s[case[1]](s, table.unpack(case, 2)) do
            assert(rows[k] == nil, "twice: " .. k)
            rows[k] = normal { a, b, c and c.kind }
          end
          between[case[1]] = others - first
          got[case[1]] = rows
        end
        local n = 0
        local first = others
        for _, rows in s:token_lines { format = "list", batch = 5 } do n = n + rows end
        between.token_lines = others - first
        got.token_lines = n
        local items = s:list_resume_tokens()
        got.list = items
        end)
        walking = false
        if not ok then error(err, 0) end
      end)
      d.run(10)
      assert.same(blocking_rows(store, "resume_tokens", { batch = 5 }), got.resume_tokens)
      assert.same(blocking_rows(store, "scan_keys", "rigatoni:*", { batch = 5 }), got.scan_keys)
      assert.equal(225, got.token_lines)
      assert.same(store:list_resume_tokens(), got.list)
      for name, n in pairs(between) do assert.is_true(n > 0, name .. ": the other coroutine never ran") end
    end)
  end
end)
