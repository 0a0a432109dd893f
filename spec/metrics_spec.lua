-- SPDX-License-Identifier: MIT
-- spec/metrics_spec.lua -- observability: store:stats() counters and
-- latencies, reset_stats, the Prometheus text (store:prometheus() and the
-- host's --metrics), and log lines (levels, the Lua handler, masking), on
-- real redis-server processes.

local rs = require "rigatoni_store"
local servers = require "support.servers"

local TOKEN = { _data = "8265A1B2C3000000012B022C0100" }
local PASSWORD = "sp3c-m3trics-pw"
local OPS = { "save", "get", "delete", "list", "lock", "other" }

teardown(function() servers.stop_all() end)

local helpers = require "support.helpers"
local read_file, run = helpers.read_file, helpers.run_host

local function counts(stats)
  local t = {}
  for _, op in ipairs(OPS) do t[op] = stats.ops[op].count end
  return t
end

-- ---------------------------------------------------------------------
-- A strict reader of the Prometheus text exposition format (0.0.4)
-- ---------------------------------------------------------------------

local function parse_labels(text, line)
  local labels = {}
  local rest = text:sub(2, -2)
  while rest ~= "" do
    local k, v, tail = rest:match('^([%a_][%w_]*)="([^"\\\n]*)"(.*)$')
    assert(k, "malformed labels in: " .. line)
    assert(labels[k] == nil, "label given twice in: " .. line)
    labels[k] = v
    if tail == "" then break end
    rest = assert(tail:match("^,(.+)$"), "malformed labels in: " .. line)
  end
  return labels
end

-- Returns {types = {family = type}, samples = {{name, family, labels, value}}};
-- raises on any line that is not a well-formed comment or sample.
local function parse_prometheus(text)
  assert(text:sub(-1) == "\n", "the text must end with a newline")
  local types, helps, samples = {}, {}, {}
  for line in text:gmatch("([^\n]*)\n") do
    assert(line ~= "", "empty line")
    if line:sub(1, 1) == "#" then
      local kind, name, rest = line:match("^# (%u+) ([%a_:][%w_:]*) (.+)$")
      assert(kind == "HELP" or kind == "TYPE", "malformed comment line: " .. line)
      if kind == "TYPE" then
        assert(rest == "counter" or rest == "gauge" or rest == "histogram", "bad type: " .. line)
        assert(not types[name], "TYPE given twice: " .. line)
        types[name] = rest
      else
        helps[name] = rest
      end
    else
      local name, labels, value = line:match("^([%a_:][%w_:]*)(%b{}) (%S+)$")
      if not name then
        name, value = line:match("^([%a_:][%w_:]*) (%S+)$")
        labels = nil
      end
      assert(name, "malformed sample line: " .. line)
      local v = value == "+Inf" and math.huge or tonumber(value)
      assert(v and v == v, "bad sample value: " .. line)
      -- Ours carry the prefix; the lock metrics keep Rigatoni 0.2's own names.
      assert(name:match("^rigatoni_store_") or name:match("^rigatoni_locks?_"),
             "name without the prefix: " .. line)
      local family = name
      for _, suffix in ipairs { "_bucket", "_sum", "_count" } do
        local base = name:sub(1, #name - #suffix)
        if name:sub(-#suffix) == suffix and types[base] == "histogram" then family = base end
      end
      assert(types[family], "sample before its # TYPE: " .. line)
      assert(helps[family], "sample without # HELP: " .. line)
      if types[family] == "counter" then
        assert(name:match("_total$"), "counter not ending in _total: " .. line)
        assert(v >= 0, "negative counter: " .. line)
      end
      samples[#samples + 1] = { name = name, family = family,
                                labels = labels and parse_labels(labels, line) or {}, value = v }
    end
  end
  return { types = types, samples = samples }
end

local function find(parsed, name, labels)
  for _, s in ipairs(parsed.samples) do
    if s.name == name then
      local match = true
      for k, v in pairs(labels or {}) do match = match and s.labels[k] == v end
      if match then return s.value end
    end
  end
end

-- Every histogram: buckets in increasing `le`, cumulative, ending in +Inf,
-- and +Inf == _count. Returns the number of histograms checked.
local function check_histograms(parsed)
  local per = {}
  for _, s in ipairs(parsed.samples) do
    if parsed.types[s.family] == "histogram" then
      local key = s.family .. "|" .. (s.labels.op or "")
      per[key] = per[key] or { buckets = {} }
      if s.name:match("_bucket$") then
        local le = s.labels.le
        assert(le, "bucket without le")
        table.insert(per[key].buckets, { le = le == "+Inf" and math.huge or assert(tonumber(le)), n = s.value })
      elseif s.name:match("_count$") then
        per[key].count = s.value
      else
        per[key].sum = s.value
      end
    end
  end
  local n = 0
  for key, h in pairs(per) do
    n = n + 1
    assert(#h.buckets > 1, key .. ": no buckets")
    for i = 2, #h.buckets do
      assert(h.buckets[i].le > h.buckets[i - 1].le, key .. ": le not increasing")
      assert(h.buckets[i].n >= h.buckets[i - 1].n, key .. ": buckets not cumulative")
    end
    assert(h.buckets[#h.buckets].le == math.huge, key .. ": last bucket is not +Inf")
    assert(h.count, key .. ": no _count")
    assert(h.sum and h.sum >= 0, key .. ": no _sum")
    assert(h.buckets[#h.buckets].n == h.count, key .. ": +Inf bucket differs from _count")
  end
  return n
end

-- ---------------------------------------------------------------------
-- store:stats()
-- ---------------------------------------------------------------------

describe("store:stats()", function()
  local srv
  before_each(function() srv = servers.redis{} end)
  after_each(function() srv:stop() end)

  it("reports every operation kind, the pool, failovers and cluster counters", function()
    local store <close> = rs.new{ url = srv.url }
    local s = store:stats()
    assert.is_true(s.metrics)
    for _, op in ipairs(OPS) do
      local o = s.ops[op]
      assert.is_table(o, op)
      for _, k in ipairs { "count", "failed", "retries" } do
        assert.equal("integer", math.type(o[k]), op .. "." .. k)
      end
      for _, k in ipairs { "p50", "p95", "p99", "max", "sum" } do
        assert.equal("float", math.type(o[k]), op .. "." .. k)
      end
      assert.is_table(o.errors)
    end
    assert.equal(1, s.ops.other.count)       -- the PING of rs.new
    for _, k in ipairs { "size", "open", "in_use", "idle", "created", "closed", "closed_broken",
                         "closed_idle", "waits", "wait_timeouts" } do
      assert.equal("integer", math.type(s.pool[k]), "pool." .. k)
    end
    assert.equal("float", math.type(s.pool.wait_seconds))
    assert.equal(0, s.failovers)
    assert.same({ moved = 0, ask = 0, refreshes = 0 }, s.cluster)
  end)

  it("counts exactly the operations performed, by kind", function()
    local store <close> = rs.new{ url = srv.url }
    store:reset_stats()
    assert.same({ save = 0, get = 0, delete = 0, list = 0, lock = 0, other = 0 }, counts(store:stats()))
    for i = 1, 4 do store:save_resume_token("c" .. i, TOKEN) end
    for i = 1, 6 do store:get_resume_token("c" .. i) end     -- 4 found, 2 absent
    store:get_raw("c1")
    store:ttl("c1")                                          -- a read: counted as get
    for i = 1, 3 do store:delete_resume_token("c" .. i) end
    assert.is_true(store:try_acquire_lock("rigatoni:lock:db:a", "me", 10))
    store:is_locked("rigatoni:lock:db:a")
    -- taken: SET NX, then the owner-checked refresh (EVALSHA, and EVAL after NOSCRIPT,
    -- which is not counted as a failure)
    assert.is_false(store:try_acquire_lock("rigatoni:lock:db:a", "other", 10))
    store:ping()
    store:ping()
    store:command("DBSIZE")
    local s = store:stats()
    assert.same({ save = 4, get = 8, delete = 3, list = 0, lock = 5, other = 3 }, counts(s))
    for _, op in ipairs(OPS) do
      local o = s.ops[op]
      assert.equal(0, o.failed, op)
      assert.equal(0, o.retries, op)
      assert.same({}, o.errors, op)
      assert.is_true(o.p50 <= o.p95 and o.p95 <= o.p99 and o.p99 <= o.max, op)
      if o.count > 0 then
        assert.is_true(o.p50 > 0 and o.max < 5 and o.sum >= o.max, op)
      end
    end
    -- listing goes through the list kind
    store:list_resume_tokens()
    assert.is_true(store:stats().ops.list.count >= 1)
  end)

  it("counts failures by error kind", function()
    local store <close> = rs.new{ url = srv.url, max_retries = 1, retry_base_delay = 0.01 }
    store:reset_stats()
    srv:cli("LPUSH", "rigatoni:resume_token:wrong", "x")
    assert.is_false(pcall(store.get_resume_token, store, "wrong"))        -- WRONGTYPE
    assert.is_false(pcall(store.command, store, "NOSUCHCOMMAND"))
    local s = store:stats()
    assert.same({ server = 1 }, s.ops.get.errors)
    assert.equal(1, s.ops.get.failed)
    assert.equal(1, s.ops.get.count)
    assert.same({ server = 1 }, s.ops.other.errors)
    srv:stop()
    local ok, err = pcall(store.save_resume_token, store, "x", TOKEN)
    assert.is_false(ok)
    assert.equal("connection", err.kind)
    s = store:stats()
    assert.same({ connection = 1 }, s.ops.save.errors)
    assert.equal(1, s.ops.save.retries)      -- max_retries = 1
  end)

  it("counts retries when the server is restarted under the store", function()
    local store <close> = rs.new{ url = srv.url, pool_size = 2, retry_base_delay = 0.01 }
    store:save_resume_token("a", TOKEN)
    store:reset_stats()
    srv:restart()
    store:save_resume_token("b", TOKEN)      -- the pooled connection is dead: one retry
    assert.same(TOKEN, store:get_resume_token("b"))
    local s = store:stats()
    assert.equal(1, s.ops.save.count)
    assert.equal(1, s.ops.save.retries)
    assert.same({}, s.ops.save.errors)
    assert.equal(0, s.ops.get.retries)
    assert.equal(1, s.pool.closed_broken)
    assert.equal(1, s.pool.created)
    assert.equal(1, s.pool.closed)
  end)

  it("counts every retry of a transient reply, and the final error", function()
    local store <close> = rs.new{ url = srv.url, max_retries = 2, retry_base_delay = 0.01 }
    store:reset_stats()
    local ok, err = pcall(store.command, store, "EVAL", "return redis.error_reply('LOADING busy')", "0")
    assert.is_false(ok)
    assert.equal(3, err.attempts)
    local o = store:stats().ops.other
    assert.equal(1, o.count)
    assert.equal(2, o.retries)
    assert.same({ server = 1 }, o.errors)
    assert.is_true(o.max >= 0.01)            -- the waits between attempts are in the latency
  end)

  it("reset_stats zeroes the counters and keeps the gauges", function()
    local store <close> = rs.new{ url = srv.url }
    store:save_resume_token("a", TOKEN)
    store:reset_stats()
    local s = store:stats()
    for _, op in ipairs(OPS) do
      assert.equal(0, s.ops[op].count)
      assert.equal(0.0, s.ops[op].max)
    end
    assert.equal(0, s.pool.created)
    assert.equal(1, s.pool.open)
    assert.equal(1, s.pool.idle)
    assert.equal(10, s.pool.size)
  end)

  it("gives the latency buckets on request", function()
    local store <close> = rs.new{ url = srv.url }
    for i = 1, 5 do store:get_raw("k" .. i) end
    local get = store:stats{ buckets = true }.ops.get
    assert.equal(28, #get.buckets)
    assert.equal(1e-6, get.buckets[1].le)
    assert.equal(math.huge, get.buckets[28].le)
    local total = 0
    for i, b in ipairs(get.buckets) do
      total = total + b.count
      if i > 1 and i < 28 then assert.equal(get.buckets[i - 1].le * 2, b.le) end
    end
    assert.equal(get.count, total)
    assert.is_nil(store:stats().ops.get.buckets)
  end)
end)

-- ---------------------------------------------------------------------
-- Prometheus
-- ---------------------------------------------------------------------

describe("Prometheus text", function()
  local srv
  before_each(function() srv = servers.redis{} end)
  after_each(function() srv:stop() end)

  it("store:prometheus() is well formed and agrees with stats()", function()
    local store <close> = rs.new{ url = srv.url, max_retries = 1, retry_base_delay = 0.01 }
    for i = 1, 3 do store:save_resume_token("c" .. i, TOKEN) end
    store:get_resume_token("c1")
    pcall(store.command, store, "EVAL", "return redis.error_reply('LOADING x')", "0")
    local s = store:stats()
    local p = parse_prometheus(store:prometheus())
    assert.equal(6, check_histograms(p))
    assert.equal("histogram", p.types.rigatoni_store_operation_duration_seconds)
    assert.equal("counter", p.types.rigatoni_store_operations_total)
    assert.equal("gauge", p.types.rigatoni_store_pool_size)
    for _, op in ipairs(OPS) do
      assert.equal(s.ops[op].count, find(p, "rigatoni_store_operations_total", { op = op }), op)
      assert.equal(s.ops[op].count, find(p, "rigatoni_store_operation_duration_seconds_count", { op = op }))
      assert.equal(s.ops[op].retries, find(p, "rigatoni_store_operation_retries_total", { op = op }))
    end
    assert.equal(1, find(p, "rigatoni_store_operation_errors_total", { op = "other", kind = "server" }))
    assert.equal(0, find(p, "rigatoni_store_operation_errors_total", { op = "save", kind = "timeout" }))
    assert.equal(10, find(p, "rigatoni_store_pool_size"))
    assert.equal(s.pool.created, find(p, "rigatoni_store_pool_connections_created_total"))
    assert.equal(0, find(p, "rigatoni_store_cluster_redirections_total", { type = "moved" }))
    assert.equal(0, find(p, "rigatoni_store_sentinel_failovers_total"))
  end)

  it("the host writes it with --metrics FILE when the script ends, even when it fails", function()
    local path = os.tmpname()
    local code = run { "-u", srv.url, "--metrics", path, "-e",
                       "store:save_raw('a', 'x'); store:get_raw('a'); store:get_raw('b')" }
    assert.equal(0, code)
    local p = parse_prometheus(read_file(path))
    check_histograms(p)
    assert.equal(1, find(p, "rigatoni_store_operations_total", { op = "save" }))
    assert.equal(2, find(p, "rigatoni_store_operations_total", { op = "get" }))

    code = run { "-u", srv.url, "--metrics", path, "-e", "store:save_raw('a', 'x'); error('boom')" }
    assert.equal(1, code)
    p = parse_prometheus(read_file(path))
    assert.equal(1, find(p, "rigatoni_store_operations_total", { op = "save" }))
    os.remove(path)
  end)

  it("the host writes it to stdout with --metrics -, and a bundled script's metrics too", function()
    srv:cli("SET", "rigatoni:resume_token:a", "x")
    local code, out = run { "-u", srv.url, "--metrics", "-", "list", "--format", "jsonl" }
    assert.equal(0, code)
    local text = out:sub((out:find("# HELP", 1, true)))
    local p = parse_prometheus(text)
    assert.is_true(find(p, "rigatoni_store_operations_total", { op = "list" }) >= 1)
  end)

  it("without a store, --metrics writes one comment line", function()
    local code, out = run { "-u", srv.url, "--metrics", "-", "-e", "print('no store')" }
    assert.equal(0, code)
    assert.matches("^no store\n# [^\n]*\n$", out)
  end)

  it("an unwritable --metrics file fails the run (exit 1)", function()
    local code, _, err = run { "-u", srv.url, "--metrics", "/nonexistent/dir/m.prom", "-e", "store:ping()" }
    assert.equal(1, code)
    assert.matches("%-%-metrics", err)
  end)
end)

-- ---------------------------------------------------------------------
-- Logging
-- ---------------------------------------------------------------------

describe("logging", function()
  after_each(function()
    rs.set_log_handler(nil)
    rs.set_log_level("warn")
  end)

  it("has levels error, warn, info, debug; warn by default", function()
    assert.equal("warn", rs.log_level())
    for _, level in ipairs { "error", "info", "debug", "warn" } do
      rs.set_log_level(level)
      assert.equal(level, rs.log_level())
    end
    assert.has_error(function() rs.set_log_level("loud") end)
  end)

  it("hands lines to the Lua handler in order, with their level, at the level set", function()
    local srv = servers.redis{}
    local lines = {}
    rs.set_log_handler(function(level, message) lines[#lines + 1] = { level, message } end)
    local store <close> = rs.new{ url = srv.url, retry_base_delay = 0.01 }
    srv:restart()
    store:ping()                      -- one retry: logged at info, not shown at warn
    assert.same({}, lines)
    rs.set_log_level("debug")
    srv:restart()
    store:ping()
    srv:stop()
    assert.is_true(#lines >= 3, #lines)
    local text = {}
    for _, l in ipairs(lines) do
      assert.is_truthy(({ error = 1, warn = 1, info = 1, debug = 1 })[l[1]])
      text[#text + 1] = l[1] .. " " .. l[2]
    end
    text = table.concat(text, "\n")
    -- lost connection, then the retry with its attempt number and delay, then the reconnect
    local lost = text:find("info connection lost", 1, true)
    local retry = text:find("info PING: attempt 1 of 4 failed %(connection: [^\n]*%); retrying in %d+ ms")
    local connected = text:find("debug connected to 127.0.0.1:" .. srv.port, retry or 1, true)
    assert.is_truthy(lost, text)
    assert.is_truthy(retry, text)
    assert.is_truthy(connected, text)
    assert.is_true(lost < retry and retry < connected, text)
  end)

  it("a failing handler does not break store calls", function()
    local srv = servers.redis{}
    rs.set_log_level("debug")
    rs.set_log_handler(function() error("handler bug") end)
    local store <close> = rs.new{ url = srv.url }
    store:save_resume_token("a", TOKEN)
    assert.same(TOKEN, store:get_resume_token("a"))
    srv:stop()
  end)

  it("lines logged before an error is raised reach the handler before the caller sees it", function()
    local srv = servers.redis{}
    local lines = {}
    rs.set_log_level("info")
    rs.set_log_handler(function(_, message) lines[#lines + 1] = message end)
    local store <close> = rs.new{ url = srv.url, max_retries = 2, retry_base_delay = 0.01 }
    srv:stop()
    local ok = pcall(store.get_resume_token, store, "a")
    assert.is_false(ok)
    local retries = 0
    for _, l in ipairs(lines) do
      if l:find("retrying in", 1, true) then retries = retries + 1 end
    end
    assert.equal(2, retries)
  end)

  it("never puts a password in a log line, at any level", function()
    local srv = servers.redis{ password = PASSWORD }
    local url = "redis://:" .. PASSWORD .. "@127.0.0.1:" .. srv.port
    local wrong = "redis://:" .. PASSWORD .. "x@127.0.0.1:" .. srv.port
    local acl = "redis://default:" .. PASSWORD .. "@127.0.0.1:" .. srv.port
    local lines = {}
    rs.set_log_handler(function(level, message) lines[#lines + 1] = level .. " " .. message end)
    for _, level in ipairs { "debug", "info", "warn", "error" } do
      rs.set_log_level(level)
      local store <close> = rs.new{ url = url, retry_base_delay = 0.01 }
      store:save_resume_token("a", TOKEN)
      srv:restart()                                            -- reconnect with AUTH
      store:get_resume_token("a")
      local store2 <close> = rs.new{ url = acl, retry_base_delay = 0.01 }
      store2:ping()
      local ok, err = pcall(rs.new, { url = wrong })          -- authentication failure
      assert.is_false(ok)
      assert.equal("auth", err.kind)
      assert.not_matches(PASSWORD, tostring(err), 1, true)
      rs.flush_log()
    end
    srv:stop()
    rs.set_log_level("debug")
    local ok = pcall(rs.new, { url = url, max_retries = 1, retry_base_delay = 0.01 })  -- refused
    assert.is_false(ok)
    rs.flush_log()
    assert.is_true(#lines >= 5, #lines)
    for _, line in ipairs(lines) do
      assert.is_nil(line:find(PASSWORD, 1, true), line)
    end
  end)

  it("the host's default handler (stderr, its one format) masks too, with -vv", function()
    local srv = servers.redis{ password = PASSWORD }
    local url = "redis://:" .. PASSWORD .. "@127.0.0.1:" .. srv.port
    local code, out, err = run { "-vv", "-u", url, "-e", "store:ping()" }
    assert.equal(0, code)
    assert.matches("\nrigatoni%-store: debug: connected to", "\n" .. err)
    srv:stop()
    local code2, out2, err2 = run { "-vv", "-s", "redis.max_retries=1", "-u", url, "-e", "store:ping()" }
    assert.equal(1, code2)
    assert.matches("\nrigatoni%-store: info: PING: attempt 1 of 2 failed", "\n" .. err2)
    for _, text in ipairs { out, err, out2, err2 } do
      assert.is_nil(text:find(PASSWORD, 1, true), text)
    end
  end)

  it("-v raises the host's level to info, [log] level sets it", function()
    local srv = servers.redis{}
    local code, out, err = run { "-v", "-u", srv.url, "-e", "print(rs.log_level())" }
    assert.equal(0, code)
    assert.equal("info\n", out)
    assert.not_matches("DEBUG", err)
    local ini = os.tmpname()
    local f = assert(io.open(ini, "w"))
    f:write("[log]\nlevel = error\n")
    f:close()
    code, out = run { "-c", ini, "-u", srv.url, "-e", "print(rs.log_level())" }
    assert.equal("error\n", out)
    code, out = run { "-c", ini, "-vv", "-u", srv.url, "-e", "print(rs.log_level())" }
    assert.equal("debug\n", out)
    os.remove(ini)
    srv:stop()
  end)
end)
