-- SPDX-License-Identifier: MIT
-- spec/serve_spec.lua -- `rigatoni-store serve`, the Prometheus exporter,
-- run as a user would: a background process against a real redis-server,
-- scraped over HTTP with curl, its text checked by `promtool check
-- metrics`, ingested by a real Prometheus server whose alert rule fires;
-- then Redis frozen (SIGSTOP), killed and restarted under it.
--
-- Walks run every 0.5 s here (2 s in the fault specs, whose stall bound
-- is 1 s), so the file takes seconds. Only 127.0.0.1 is used.

local servers = require "support.servers"
local helpers = require "support.helpers"
local quote, capture, read_file, write_file = helpers.quote, helpers.capture, helpers.read_file,
                                              helpers.write_file
local BIN = helpers.BIN
local sleep, now = servers.sleep, servers.now

local P = "rigatoni:resume_token:"
local NOW = os.time()

-- BSON of { _data = "82<seconds><increment>..." }, built by hand.
local function token_bytes(seconds)
  local data = string.format("82%08X%08X2B022C0100296E5A1004", seconds, 1)
  local elem = "\2_data\0" .. string.pack("<i4", #data + 1) .. data .. "\0"
  return string.pack("<i4", 4 + #elem + 1) .. elem .. "\0"
end

-- Names for the --max-series spec: 20 collection streams of database "bulk".
local function rs_name(i) return ("resume_token:bulk:c%02d"):format(i) end

local tmpdir
local function tmp(name) return tmpdir .. "/" .. name end

-- ---------------------------------------------------------------------
-- The exporter process
-- ---------------------------------------------------------------------

local Exporter = {}
Exporter.__index = Exporter

-- (env --default-signal=INT: sh starts background jobs with SIGINT ignored,
-- and the host leaves a signal ignored at its start ignored.)

-- Starts `rigatoni-store [host args] serve [args]` in the background on
-- a free port: a random port may be taken meanwhile (by a client's
-- ephemeral port of another process), so "address already in use" means
-- another try, as servers.lua does for redis-server.
local function start(host_args, args)
  for _ = 1, 10 do
    local port = servers.closed_port()
    local self = setmetatable({ port = port, log = tmp("serve." .. port .. ".log") }, Exporter)
    local cmd = { "env --default-signal=INT -u RIGATONI_STORE_CONFIG -u REDIS_URL", quote(BIN) }
    for _, a in ipairs(host_args) do cmd[#cmd + 1] = quote(a) end
    cmd[#cmd + 1] = "serve --listen " .. quote("127.0.0.1:" .. port)
    for _, a in ipairs(args or {}) do cmd[#cmd + 1] = quote(a) end
    -- exec: $! is the exporter itself, so signals reach it.
    local line = "exec " .. table.concat(cmd, " ")
    local out = capture("sh -c " .. quote(line) .. " >" .. quote(self.log) .. " 2>&1 </dev/null & echo $!")
    self.pid = assert(tonumber(out:match("%d+")), out)
    local deadline = now() + 10
    while now() < deadline do
      if not servers.alive(self.pid) then break end
      if self:get("/healthz") == 200 then return self end
      sleep(0.02)
    end
    if not self:log_text():find("address already in use", 1, true) then return self end
  end
  error("no free port for serve")
end

-- curl: status code, body, seconds taken (nil code when it failed).
function Exporter:get(path, opts)
  opts = opts or {}
  local body = tmp("body." .. self.port)
  os.remove(body)
  local out = capture("curl -s -o " .. quote(body) .. " -w '%{http_code} %{time_total}' --max-time "
                      .. (opts.max_time or 5) .. " " .. (opts.curl or "") .. " "
                      .. quote("http://127.0.0.1:" .. self.port .. path) .. " 2>/dev/null")
  local code, secs = out:match("^(%d+) ([%d.]+)")
  code = tonumber(code)
  return code ~= 0 and code or nil, read_file(body) or "", tonumber(secs)
end

-- The value of the sample whose line starts with `series` (exact name and labels).
local function sample(body, series)
  for line in body:gmatch("[^\n]+") do
    if line:sub(1, #series + 1) == series .. " " then return tonumber(line:sub(#series + 2)) end
  end
  return nil
end

-- Waits until /metrics answers with rigatoni_up == want; returns the body.
function Exporter:wait_up(want, timeout)
  local deadline = now() + (timeout or 10)
  local body
  repeat
    local code
    code, body = self:get("/metrics")
    if code == 200 and sample(body, "rigatoni_up") == want then return body end
    sleep(0.05)
  until now() > deadline
  error(("rigatoni_up never became %d; last body:\n%s\nlog:\n%s"):format(want, body, self:log_text()), 2)
end

function Exporter:log_text() return read_file(self.log) or "" end

function Exporter:stop()
  if self.pid and servers.alive(self.pid) then
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  end
  self.pid = nil
end

local run_and_signal_once

-- Runs serve in the foreground under `timeout`, sending `sig` after
-- `after` seconds; returns the exit status and the log.
local function run_and_signal(host_args, args, sig, after)
  for _ = 1, 10 do
    local code, log, port = run_and_signal_once(host_args, args, sig, after)
    if not log:find("address already in use", 1, true) then return code, log, port end
  end
  error("no free port for serve")
end

function run_and_signal_once(host_args, args, sig, after)
  local port = servers.closed_port()
  local log = tmp("fg." .. port .. ".log")
  local cmd = { "env --default-signal=INT -u RIGATONI_STORE_CONFIG -u REDIS_URL", quote(BIN) }
  for _, a in ipairs(host_args) do cmd[#cmd + 1] = quote(a) end
  cmd[#cmd + 1] = "serve --listen " .. quote("127.0.0.1:" .. port)
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = quote(a) end
  local script = table.concat(cmd, " ") .. " >" .. quote(log) .. " 2>&1 </dev/null & p=$!; sleep "
                 .. after .. "; kill -" .. sig .. " $p; (sleep 10; kill -9 $p) >/dev/null 2>&1 & w=$!; wait $p; rc=$?;"
                 .. " kill $w 2>/dev/null; echo $rc"   -- never wait forever: SIGKILL after 10 s
  local out = capture("sh -c " .. quote(script))
  return tonumber(out:match("(%d+)%s*$")), read_file(log) or "", port
end

-- promtool check metrics on `body`: "rc=0" when it passes, lints
-- included (the store's rigatoni_locks_held_total, a Rigatoni gauge named
-- like a counter, is not served: the exporter holds no lock).
local function promtool_check(body)
  local path = write_file(tmp("check.prom"), body)
  return capture("promtool check metrics < " .. quote(path) .. " 2>&1; echo \"rc=$?\"")
end

-- ---------------------------------------------------------------------

describe("rigatoni-store serve", function()
  local srv
  local running = {}
  local function serve(host_args, args)
    local e = start(host_args, args)
    running[#running + 1] = e
    return e
  end

  setup(function()
    srv = servers.redis {}
    tmpdir = capture("mktemp -d"):match("[^\n]+")
  end)
  teardown(function()
    for _, e in ipairs(running) do e:stop() end
    servers.stop_all()
    os.execute("rm -rf " .. quote(tmpdir))
  end)
  after_each(function()
    for _, e in ipairs(running) do e:stop() end
    running = {}
  end)
  before_each(function()
    srv:cli("FLUSHALL")
    -- Two streams of a Rigatoni 0.2 pipeline, a database watch, a mirror,
    -- a plain collection name, a corrupt value and a lock.
    srv:set_raw(P .. "resume_token:shop:orders", token_bytes(NOW - 3000))        -- 50 min old
    srv:cli("EXPIRE", P .. "resume_token:shop:orders", "86400")
    srv:set_raw(P .. "resume_token:shop:users", token_bytes(NOW - 30))           -- fresh
    srv:set_raw(P .. "resume_token:database:billing", token_bytes(NOW - 7200))   -- 2 h old
    srv:set_raw(P .. "orders", token_bytes(NOW - 10))                            -- mirror
    srv:set_raw(P .. "legacy", token_bytes(NOW - 86400 * 3))                     -- 3 d old
    srv:set_raw(P .. "broken", "not bson at all")
    srv:cli("SET", "rigatoni:lock:shop:orders", "host-1234", "EX", "60")
  end)

  describe("/metrics", function()
    it("serves the walk's figures, and promtool accepts the text", function()
      local e = serve({ "-u", srv.url }, { "--interval", "0.5" })
      local body = e:wait_up(1)
      -- per stream: the cluster time (age = time() - it) and the TTL
      assert.equal(NOW - 3000, sample(body,
        'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}'))
      assert.equal(NOW - 7200, sample(body,
        'rigatoni_stream_cluster_time_seconds{level="database",database="billing"}'))
      local ttl = sample(body, 'rigatoni_stream_ttl_seconds{level="collection",database="shop",collection="orders"}')
      assert.truthy(ttl and ttl > 86000 and ttl <= 86400, tostring(ttl))
      assert.is_nil(sample(body, 'rigatoni_stream_ttl_seconds{level="collection",database="shop",collection="users"}'))
      -- every token: count, histogram, oldest, corrupt, without TTL
      assert.equal(6, sample(body, "rigatoni_resume_tokens"))
      assert.equal(1, sample(body, "rigatoni_resume_tokens_corrupt"))
      assert.equal(5, sample(body, "rigatoni_resume_tokens_without_ttl"))
      assert.equal(3, sample(body, "rigatoni_streams"), body)
      assert.equal(NOW - 86400 * 3, sample(body, "rigatoni_resume_tokens_oldest_cluster_time_seconds"))
      assert.equal(5, sample(body, 'rigatoni_resume_tokens_age_seconds_bucket{le="+Inf"}'))
      assert.equal(5, sample(body, "rigatoni_resume_tokens_age_seconds_count"))
      assert.equal(2, sample(body, 'rigatoni_resume_tokens_age_seconds_bucket{le="60"}'))     -- users, orders mirror
      assert.equal(3, sample(body, 'rigatoni_resume_tokens_age_seconds_bucket{le="3600"}'))
      assert.equal(3, sample(body, 'rigatoni_resume_tokens_age_seconds_bucket{le="7200"}'))   -- billing: 2 h + the walk's delay
      assert.equal(4, sample(body, 'rigatoni_resume_tokens_age_seconds_bucket{le="21600"}'))
      assert.equal(4, sample(body, 'rigatoni_resume_tokens_age_seconds_bucket{le="259200"}'))
      assert.equal(5, sample(body, 'rigatoni_resume_tokens_age_seconds_bucket{le="604800"}'))
      -- locks, Redis, the exporter and the store's own metrics
      assert.equal(1, sample(body, "rigatoni_locks"))
      local lttl = sample(body, 'rigatoni_lock_ttl_seconds{lock="shop:orders",owner="host-1234"}')
      assert.truthy(lttl and lttl > 0 and lttl <= 60, tostring(lttl))
      assert.truthy(sample(body, "rigatoni_redis_used_memory_bytes") > 0)
      assert.equal(0, sample(body, "rigatoni_redis_evicted_keys_total"))
      assert.truthy(sample(body, "rigatoni_redis_connected_clients") >= 1)
      assert.truthy(sample(body, "rigatoni_redis_keyspace_hits_total"))
      assert.truthy(sample(body, "rigatoni_redis_keyspace_misses_total"))
      assert.equal(1, sample(body, 'rigatoni_redis_role{role="master"}'))
      assert.equal(0, sample(body, "rigatoni_redis_run_id_changes_total"))
      assert.truthy(sample(body, "rigatoni_exporter_last_success_timestamp_seconds") >= NOW)
      assert.truthy(sample(body, "rigatoni_exporter_walk_duration_seconds") >= 0)
      assert.matches("\nrigatoni_store_operations_total{", body)
      local out = promtool_check(body)
      assert.matches("rc=0", out, out)
    end)

    it("keeps the per-stream series to --max-series, oldest first", function()
      local cmds = {}
      for i = 1, 20 do cmds[i] = servers.resp { "SET", P .. rs_name(i), token_bytes(NOW - 100000 - i) } end
      srv:pipe(table.concat(cmds))
      local e = serve({ "-u", srv.url }, { "--interval", "0.5", "--max-series", "5" })
      local body = e:wait_up(1)
      local n = 0
      for _ in body:gmatch("\nrigatoni_stream_cluster_time_seconds{") do n = n + 1 end
      assert.equal(5, n)
      for i = 16, 20 do   -- the five oldest
        assert.equal(NOW - 100000 - i, sample(body,
          ('rigatoni_stream_cluster_time_seconds{level="collection",database="bulk",collection="c%02d"}'):format(i)))
      end
      assert.equal(23, sample(body, "rigatoni_streams"))
    end)

    it("stays under --max-size (default 200 KiB) with 1,200 streams: the youngest are left out, and counted", function()
      -- the bench's names (spec/bench/serve_bench.sh) and TTL: 1,000 of
      -- them would take about 205 KiB
      local want, cmds = {}, {}
      for i = 1, 1200 do
        local db, coll = ("db_%02d"):format(i % 100), ("coll_%07d"):format(i)
        local t = NOW - 60 - (i * 7919) % 864000
        cmds[i] = servers.resp { "SET", P .. "resume_token:" .. db .. ":" .. coll, token_bytes(t), "EX", "604800" }
        want[i] = { t = t, series = ('{level="collection",database="%s",collection="%s"}'):format(db, coll) }
      end
      srv:pipe(table.concat(cmds))
      want[#want + 1] = { t = NOW - 3000, series = '{level="collection",database="shop",collection="orders"}' }
      want[#want + 1] = { t = NOW - 30, series = '{level="collection",database="shop",collection="users"}' }
      want[#want + 1] = { t = NOW - 7200, series = '{level="database",database="billing"}' }
      table.sort(want, function(a, b) return a.t < b.t end)
      for _, args in ipairs { { "--interval", "0.5" }, { "--interval", "0.5", "--max-size", "16" } } do
        local e = serve({ "-u", srv.url }, args)
        local body = e:wait_up(1)
        local bound = (args[4] and tonumber(args[4]) or 200) * 1024
        assert.truthy(#body <= bound, ("%d bytes, over %d"):format(#body, bound))
        local n = select(2, body:gsub("\nrigatoni_stream_cluster_time_seconds{", ""))
        -- what the bound allows, within two streams' samples (the scrape's own gauges vary)
        assert.truthy(#body > bound - 2 * 2048 and n > 0 and n < 1000, ("%d streams, %d bytes"):format(n, #body))
        for i, w in ipairs(want) do   -- the oldest n streams, and no other
          local v = sample(body, "rigatoni_stream_cluster_time_seconds" .. w.series)
          assert.equal(i <= n and w.t or nil, v, w.series)
        end
        assert.equal(#want - n, sample(body, 'rigatoni_exporter_series_omitted{kind="stream"}'))
        assert.equal(0, sample(body, 'rigatoni_exporter_series_omitted{kind="lock"}'))
        -- the store's own metrics: only the operations an exporter runs
        assert.is_nil(body:find('rigatoni_store_operations_total{op="save"}', 1, true))
        assert.truthy(sample(body, 'rigatoni_store_operations_total{op="list"}') > 0)
        local out = promtool_check(body)
        assert.matches("rc=0", out, out)
        e:stop()
      end
    end)

    -- A name no MongoDB namespace can have (Redis keys take 512 MB) is
    -- left out and counted: were it served, the oldest stream's or a
    -- lock's 200 KB name would take the whole --max-size from every real one.
    it("a stream or lock whose series alone would be over 4 KiB is left out, not every one after it", function()
      local long = string.rep("L", 100000)
      srv:set_raw(P .. "resume_token:" .. long .. ":c", token_bytes(NOW - 999999))
      srv:set_raw(P .. "resume_token:shop:orders", token_bytes(NOW - 60))
      srv:cli("SET", "rigatoni:lock:" .. long, "owner", "EX", "60")
      srv:cli("SET", "rigatoni:lock:shop:orders", "me", "EX", "60")
      local e = serve({ "-u", srv.url }, { "--interval", "0.5" })
      local body = e:wait_up(1)
      assert.equal(NOW - 60, sample(body,
        'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}'))
      assert.truthy(sample(body, 'rigatoni_lock_ttl_seconds{lock="shop:orders",owner="me"}'))
      assert.is_nil(body:find("LLLL", 1, true))
      assert.equal(1, sample(body, 'rigatoni_exporter_series_omitted{kind="stream"}'))
      assert.equal(1, sample(body, 'rigatoni_exporter_series_omitted{kind="lock"}'))
      e:stop()
    end)

    it("escapes label values and keeps them valid UTF-8", function()
      srv:set_raw(P .. 'resume_token:we"ird:co\\ll\nx\u{e9}', token_bytes(NOW - 999999))
      srv:cli("SET", "rigatoni:lock:odd", "owner\255\"x", "EX", "60")
      local e = serve({ "-u", srv.url }, { "--interval", "0.5" })
      local body = e:wait_up(1)
      assert.equal(NOW - 999999, sample(body,
        'rigatoni_stream_cluster_time_seconds{level="collection",database="we\\"ird",collection="co\\\\ll\\nx\u{e9}"}'))
      -- a byte that is not UTF-8 reads \xff in the value (lib.output prom_label, as list's)
      assert.matches('rigatoni_lock_ttl_seconds{lock="odd",owner="owner\\\\xff\\"x"} ', body, 1, true)
      local out = promtool_check(body)
      assert.matches("rc=0", out, out)
    end)
  end)

  describe("HTTP", function()
    it("answers /healthz, 404 elsewhere, 405 to other methods, HEAD without a body", function()
      local e = serve({ "-u", srv.url }, { "--interval", "0.5" })
      e:wait_up(1)
      local code, body = e:get("/healthz")
      assert.equal(200, code)
      assert.equal("ok\n", body)
      assert.equal(404, (e:get("/")))
      assert.equal(404, (e:get("/metrics/x")))
      assert.equal(405, (e:get("/metrics", { curl = "-X POST -d x=1" })))
      assert.equal(405, (e:get("/metrics", { curl = "-X DELETE" })))
      code, body = e:get("/metrics", { curl = "-I" })
      assert.equal(200, code)
      assert.matches("text/plain; version=0.0.4", body)   -- -I: the headers are the output
      assert.not_matches("rigatoni_up", body)
    end)
  end)

  describe("command line", function()
    it("rejects bad options before listening (exit 2)", function()
      for _, args in ipairs {
        { "--listen", "nohost" }, { "--listen", "127.0.0.1:99999" }, { "--listen", "127.0.0.1:" },
        { "--interval", "0" }, { "--interval", "soon" }, { "--max-series", "0" }, { "--frob" },
        -- under what the figures other than per-stream series take: not a bound it can keep
        { "--max-size", "8" }, { "--max-size", "0" },
      } do
        local code, _, err = helpers.run_host({ "-u", srv.url, "serve", table.unpack(args) })
        assert.equal(2, code, table.concat(args, " ") .. ": " .. err)
        assert.matches("serve: ", err)
      end
      -- 1ms where 1m was meant would walk the whole keyspace back to back
      local code, _, err = helpers.run_host({ "-u", srv.url, "serve", "--interval", "1ms" })
      assert.equal(2, code, err)
      assert.matches("serve: %-%-interval: 1ms is below the minimum 100ms", err)
    end)

    it("a port in use is a runtime failure (exit 1) naming the address", function()
      local e = serve({ "-u", srv.url }, { "--interval", "0.5" })
      e:wait_up(1)
      local code, _, err = helpers.run_host({ "-u", srv.url, "serve", "--listen", "127.0.0.1:" .. e.port })
      assert.equal(1, code, err)
      assert.matches("127%.0%.0%.1:" .. e.port, err)
      assert.matches("in use", err)
    end)

    it("--help shows the usage", function()
      local code, out = helpers.run_host({ "serve", "--help" })
      assert.equal(0, code)
      assert.matches("usage: rigatoni%-store .* serve", out)
    end)

    it("SIGTERM and SIGINT stop it (exit 143, 130) as they stop every script", function()
      for sig, want in pairs { TERM = 143, INT = 130 } do
        local code, log = run_and_signal({ "-u", srv.url }, { "--interval", "0.5" }, sig, 1.5)
        assert.equal(want, code, log)
        assert.matches("interrupted by SIG" .. sig, log)
      end
    end)
  end)

  describe("as the README's exporter ACL user", function()
    it("serves everything with SCAN MGET PTTL PING INFO, and all but the Redis figures without INFO", function()
      srv:cli("ACL", "SETUSER", "exporter", "on", ">exporterpw", "~rigatoni:*", "resetchannels", "-@all",
              "+scan", "+mget", "+pttl", "+ping", "+auth", "+select", "+info")
      srv:cli("ACL", "SETUSER", "noinfo", "on", ">noinfopw", "~rigatoni:*", "resetchannels", "-@all",
              "+scan", "+mget", "+pttl", "+ping", "+auth", "+select")
      local url = srv.url:gsub("^redis://", "redis://exporter:exporterpw@")
      local e = serve({ "-u", url }, { "--interval", "0.5" })
      local body = e:wait_up(1)
      assert.equal(NOW - 3000, sample(body,
        'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}'))
      assert.truthy(sample(body, "rigatoni_redis_used_memory_bytes"))
      assert.equal(1, sample(body, "rigatoni_locks"))
      e:stop()
      url = srv.url:gsub("^redis://", "redis://noinfo:noinfopw@")
      e = serve({ "-u", url }, { "--interval", "0.5" })
      body = e:wait_up(1)
      assert.equal(6, sample(body, "rigatoni_resume_tokens"))
      assert.is_nil(sample(body, "rigatoni_redis_used_memory_bytes"))
      assert.matches("INFO refused", e:log_text())
      e:stop()
      srv:cli("ACL", "DELUSER", "exporter", "noinfo")
    end)
  end)

  describe("with a real Prometheus", function()
    -- The README's own rules, their durations cut from minutes to seconds
    -- (for: 2m -> 0s, offset 5m -> 3s) so that they fire within the spec.
    local function readme_rules_fast()
      local readme = assert(read_file("README.md"))
      local rules = assert(readme:match("```yaml\n(groups:\n.-)```"), "README has no rules block")
      local fast = rules:gsub("for: %d+m", "for: 0s"):gsub("offset 5m", "offset 3s")
      assert.truthy(fast:find("offset 3s", 1, true) and not fast:find("%dm\n"), fast)
      return fast
    end

    it("ingests the series and fires the README's lag and not-moving alerts for a stale token", function()
      local e = serve({ "-u", srv.url }, { "--interval", "0.5" })
      e:wait_up(1)
      local rules = write_file(tmp("rules.yml"), readme_rules_fast())
      local conf = write_file(tmp("prometheus.yml"), ([[
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: rigatoni
    static_configs:
      - targets: ['127.0.0.1:%d']
]]):format(rules, e.port))
      local data = tmp("prom-data")
      local plog = tmp("prometheus.log")
      local ppid, pport
      for _ = 1, 10 do   -- a random port may be taken meanwhile: another one
        pport = servers.closed_port()
        ppid = tonumber(capture("prometheus --config.file=" .. quote(conf) .. " --storage.tsdb.path="
                                .. quote(data) .. " --web.listen-address=127.0.0.1:" .. pport
                                .. " >" .. quote(plog) .. " 2>&1 </dev/null & echo $!"):match("%d+"))
        local deadline = now() + 20
        while servers.alive(ppid) and now() < deadline
              and not capture("curl -s --max-time 1 http://127.0.0.1:" .. pport .. "/-/ready"):find("Ready") do
          sleep(0.1)
        end
        if servers.alive(ppid) then break end
      end
      local ok, err = pcall(function()
        local function api(q)
          return capture("curl -s --max-time 5 " .. quote("http://127.0.0.1:" .. pport .. q))
        end
        -- The firing alerts as "alertname database.collection" (or database).
        local function firing()
          local set = {}
          for alert in api("/api/v1/alerts"):gmatch("{[^{}]*{[^{}]*}[^{}]*{[^{}]*}[^{}]*}") do
            if alert:find('"state":"firing"', 1, true) then
              local name = alert:match('"alertname":"([^"]+)"')
              local db, coll = alert:match('"database":"([^"]+)"'), alert:match('"collection":"([^"]+)"')
              set[name .. " " .. tostring(db) .. (coll and ("." .. coll) or "")] = true
            end
          end
          return set
        end
        -- shop.users keeps moving: its pipeline saves a new cluster time
        -- every half second; shop.orders and billing stay where they are.
        local deadline, t, got = now() + 40, NOW, {}
        repeat
          t = t + 1
          srv:set_raw(P .. "resume_token:shop:users", token_bytes(t))
          sleep(0.5)
          got = firing()
        until (got["RigatoniPipelineLag shop.orders"] and got["RigatoniResumeTokenNotMoving shop.orders"]
               and got["RigatoniResumeTokenNotMoving billing"]) or now() > deadline
        local list = {}
        for k in pairs(got) do list[#list + 1] = k end
        table.sort(list)
        local seen = table.concat(list, ", ")
        assert.truthy(got["RigatoniPipelineLag shop.orders"], seen)
        assert.truthy(got["RigatoniPipelineLag billing"], seen)
        assert.truthy(got["RigatoniResumeTokenNotMoving shop.orders"], seen)
        assert.truthy(got["RigatoniResumeTokenNotMoving billing"], seen)
        -- the moving, current stream fires neither; the exporter is up
        assert.is_nil(got["RigatoniResumeTokenNotMoving shop.users"], seen)
        assert.is_nil(got["RigatoniPipelineLag shop.users"], seen)
        assert.is_nil(seen:find("RigatoniExporterDown", 1, true), seen)
        local series = api("/api/v1/query?query=rigatoni_stream_cluster_time_seconds")
        assert.matches('"database":"shop"', series)
        assert.matches('"collection":"orders"', series)
        local up = api("/api/v1/query?query=rigatoni_up")
        assert.matches('"value":%[[%d.]+,"1"%]', up)
      end)
      os.execute("kill " .. ppid .. " 2>/dev/null")
      for _ = 1, 100 do
        if not servers.alive(ppid) then break end
        sleep(0.05)
      end
      if not ok then error(tostring(err) .. "\nprometheus log:\n" .. (read_file(plog) or ""):sub(-3000), 0) end
    end)

    it("the sample rules of the README pass promtool test rules", function()
      local readme = assert(read_file("README.md"))
      local rules = readme:match("```yaml\n(groups:\n.-)```")
      assert.truthy(rules, "README has no rules block starting with groups:")
      write_file(tmp("readme_rules.yml"), rules)
      -- one stream stuck (cluster time constant), one moving but 20 min
      -- behind, one moving and current; the test clock starts at 0
      write_file(tmp("rules_test.yml"), [[
rule_files:
  - readme_rules.yml
evaluation_interval: 30s
tests:
  - interval: 30s
    input_series:
      - series: 'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="stuck"}'
        values: '0x40'
      - series: 'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="behind"}'
        values: '-1200+30x40'
      - series: 'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="current"}'
        values: '0+30x40'
      - series: 'rigatoni_up'
        values: '1x40'
    alert_rule_test:
      - eval_time: 15m
        alertname: RigatoniResumeTokenNotMoving
        exp_alerts:
          - exp_labels:
              severity: warning
              level: collection
              database: shop
              collection: stuck
            exp_annotations:
              summary: "shop.stuck: resume token not moving for 5 minutes"
      - eval_time: 15m
        alertname: RigatoniPipelineLag
        exp_alerts:
          - exp_labels:
              severity: page
              level: collection
              database: shop
              collection: stuck
            exp_annotations:
              summary: "shop.stuck: pipeline lag over 10 minutes"
          - exp_labels:
              severity: page
              level: collection
              database: shop
              collection: behind
            exp_annotations:
              summary: "shop.behind: pipeline lag over 10 minutes"
      - eval_time: 15m
        alertname: RigatoniExporterDown
        exp_alerts: []
]])
      local out = capture("cd " .. quote(tmpdir) .. " && promtool test rules rules_test.yml 2>&1; echo \"rc=$?\"")
      assert.matches("rc=0", out, out)
    end)
  end)

  describe("against a cluster", function()
    it("walks every master and labels each node's Redis figures with node", function()
      local cluster = servers.cluster { masters = 3, replicas = 0 }
      local ok, err = pcall(function()
        local names = { "resume_token:shop:orders", "resume_token:shop:users", "resume_token:a:b",
                        "resume_token:c:d", "resume_token:database:e" }
        for i, name in ipairs(names) do
          -- redis-cli -c follows MOVED to the node that owns the slot
          local key = P .. name
          local path = write_file(tmp("v" .. i), token_bytes(NOW - 100 * i))
          capture(servers.cli_bin .. " -c -p " .. cluster.nodes[1].port .. " -x SET " .. quote(key)
                  .. " < " .. quote(path))
        end
        local e = serve({ "-u", cluster.url, "-s", "redis.cluster_mode=true" }, { "--interval", "0.5" })
        local body = e:wait_up(1)
        assert.equal(5, sample(body, "rigatoni_resume_tokens"))
        assert.equal(NOW - 100, sample(body,
          'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}'))
        for _, n in ipairs(cluster.nodes) do
          local series = 'rigatoni_redis_used_memory_bytes{node="127.0.0.1:' .. n.port .. '"}'
          assert.truthy(sample(body, series), series .. " missing:\n" .. body)
          assert.equal(1, sample(body, 'rigatoni_redis_role{node="127.0.0.1:' .. n.port .. '",role="master"}'))
        end
        local out = promtool_check(body)
        assert.matches("rc=0", out, out)
        e:stop()
      end)
      cluster:stop()
      if not ok then error(err, 0) end
    end)
  end)

  describe("through Sentinel", function()
    it("walks the master the sentinel names", function()
      local sentinel = servers.sentinel { master = srv }
      local ok, err = pcall(function()
        -- several hosts mean Sentinel nodes; the second one is down
        local url = "redis://127.0.0.1:" .. sentinel.port .. ",127.0.0.1:" .. servers.closed_port()
        local e = serve({ "-u", url, "-s", "sentinel.master=mymaster" }, { "--interval", "0.5" })
        local body = e:wait_up(1)
        assert.equal(NOW - 3000, sample(body,
          'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}'))
        assert.equal(1, sample(body, 'rigatoni_redis_role{role="master"}'))
        e:stop()
      end)
      sentinel:stop()
      if not ok then error(err, 0) end
    end)
  end)

  describe("over TLS", function()
    it("walks a TLS-only server through a rediss:// URL", function()
      local certs = require "support.certs"
      local pki = certs.make(tmpdir)
      local tls = servers.redis { tls = { cert = pki.server_cert, key = pki.server_key, ca = pki.ca } }
      local ok, err = pcall(function()
        local path = write_file(tmp("tls_v"), token_bytes(NOW - 42))
        capture(tls:cli_prefix() .. " -x SET " .. quote(P .. "resume_token:shop:tls") .. " < " .. quote(path))
        local e = serve({ "-u", tls.url, "-s", "tls.ca_file=" .. pki.ca }, { "--interval", "0.5" })
        local body = e:wait_up(1)
        assert.equal(NOW - 42, sample(body,
          'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="tls"}'))
        assert.truthy(sample(body, "rigatoni_redis_used_memory_bytes"))
        e:stop()
      end)
      tls:stop()
      if not ok then error(err, 0) end
    end)
  end)

  describe("faults", function()
    -- Stall bound 1 s at --interval 2 (max(1, interval / 2)); PINGs every 0.5 s.
    it("Redis frozen: rigatoni_up falls to 0 within one interval, scrapes stay fast, then recovers", function()
      local victim = servers.redis {}
      victim:set_raw(P .. "resume_token:shop:orders", token_bytes(NOW - 60))
      local e = serve({ "-u", victim.url }, { "--interval", "2" })
      e:wait_up(1)
      os.execute("kill -STOP " .. victim.pid)
      local frozen_at = now()
      local ok, err = pcall(function()
        local slowest, fell = 0, nil
        while now() - frozen_at < 3 do
          local code, body, secs = e:get("/metrics", { max_time = 3 })
          assert.equal(200, code)
          slowest = math.max(slowest, secs)
          if not fell and sample(body, "rigatoni_up") == 0 then fell = now() - frozen_at end
          sleep(0.1)
        end
        assert.truthy(fell, "rigatoni_up stayed 1 while Redis was frozen")
        assert.truthy(fell <= 2.0, ("rigatoni_up fell after %.2f s"):format(fell))
        assert.truthy(slowest < 1, ("a scrape took %.3f s"):format(slowest))
      end)
      os.execute("kill -CONT " .. victim.pid)
      if not ok then error(tostring(err) .. "\nlog:\n" .. e:log_text(), 0) end
      local body = e:wait_up(1, 15)
      assert.equal(NOW - 60, sample(body,
        'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}'))
      assert.truthy(servers.alive(e.pid))
      victim:stop()
    end)

    -- The host's rule: the stop waits for the Redis call in flight (its
    -- command timeout), a second signal stops at once.
    it("SIGTERM while a Redis call is stuck: a second SIGTERM ends it at once (exit 143)", function()
      local victim = servers.redis {}
      local log = tmp("stuck." .. victim.port .. ".log")
      -- up after 1.5 s, Redis frozen, a PING blocks; TERM, then TERM again
      local script = "env -u RIGATONI_STORE_CONFIG -u REDIS_URL " .. quote(BIN) .. " -u " .. quote(victim.url)
                     .. " serve --interval 0.5 --listen 127.0.0.1:0 >" .. quote(log)   -- port 0: any free one
                     .. " 2>&1 </dev/null & p=$!; sleep 1.5; kill -STOP " .. victim.pid
                     .. "; sleep 1; kill -TERM $p; sleep 0.5; alive=0; kill -0 $p 2>/dev/null && alive=1;"
                     .. " t0=$(date +%s.%N); kill -TERM $p; (sleep 10; kill -9 $p) >/dev/null 2>&1 & w=$!;"
                     .. " wait $p; rc=$?; t1=$(date +%s.%N); kill $w 2>/dev/null;"
                     .. " echo \"$alive $rc $(echo \"$t1 - $t0\" | bc)\""
      local out = capture("sh -c " .. quote(script) .. " 2>/dev/null")
      os.execute("kill -CONT " .. victim.pid)
      victim:stop()
      local _, rc, secs = out:match("(%d) (%d+) ([%d.]+)")
      assert.equal("143", rc, out .. (read_file(log) or ""))
      assert.truthy(tonumber(secs) < 1, out)
    end)

    it("Redis killed and restarted: up 0, the old figures kept, then recovers and counts the restart", function()
      local victim = servers.redis {}
      victim:set_raw(P .. "resume_token:shop:orders", token_bytes(NOW - 60))
      local e = serve({ "-u", victim.url }, { "--interval", "0.5" })
      e:wait_up(1)
      victim:kill()
      local body = e:wait_up(0, 5)
      -- the last complete walk is still served, marked stale
      assert.equal(NOW - 60, sample(body,
        'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}'))
      local code = e:get("/metrics", { max_time = 1 })
      assert.equal(200, code)
      victim:restart()
      victim:set_raw(P .. "resume_token:shop:orders", token_bytes(NOW - 5))
      local deadline = now() + 15
      repeat
        body = e:wait_up(1, 15)
        if sample(body, 'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}')
           == NOW - 5 then break end
        sleep(0.1)
      until now() > deadline
      assert.equal(NOW - 5, sample(body,
        'rigatoni_stream_cluster_time_seconds{level="collection",database="shop",collection="orders"}'))
      assert.equal(1, sample(body, "rigatoni_redis_run_id_changes_total"))
      victim:stop()
    end)
  end)
end)
