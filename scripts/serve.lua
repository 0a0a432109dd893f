-- SPDX-License-Identifier: MIT
-- serve -- a Prometheus exporter for pipeline lag: HTTP /metrics served by
-- the host (lua/host_http.c, libmicrohttpd) from the last complete walk.
--
-- Design. This script is the walker: every --interval it walks the tokens
-- (store:token_batches) and the locks (store:scan_keys), reads INFO, builds
-- the whole exposition text and publishes it in one piece; the HTTP thread
-- serves the last published text and never waits on Redis or on this
-- loop. A failed walk publishes nothing: the previous text stays, and
-- rigatoni_up (computed by the server at scrape time) is 0. Between walks
-- the loop PINGs Redis (at most every second), and every Redis call is
-- marked busy/idle, so a frozen Redis turns rigatoni_up to 0 after the
-- stall bound even while this thread still waits for its command timeout.
--
-- Bounded cardinality: per-stream series only for Rigatoni 0.2 stream keys
-- (rs.parse_stream_key), at most --max-series of them, the oldest cluster
-- times first (a bounded heap, so memory does not grow with the number of
-- tokens); every token goes into the counts and the age histogram. Bounded
-- size: a stream's samples cost what its names cost, so --max-size (KiB)
-- caps the text; locks, then the oldest streams, get series while it
-- lasts, and rigatoni_exporter_series_omitted says how many did not. Per
-- stream the cluster time is exported as a timestamp, not as an age: the
-- Prometheus instrumentation guidelines ask for the time something
-- happened, so `time() - x` stays right while a walk is late.
--
-- A walk that met another server process (its run_id changed between the
-- INFO before and after it: a restart or failover) may have listed names
-- twice; it is not published but walked again at once, so duplicates
-- never reach the counts.

local cli = require "lib.cli"

local script = {
  name = "serve",
  summary = [[A long-running Prometheus exporter: walks the tokens and locks every
--interval and serves the last complete result over HTTP (GET or HEAD):
/metrics in the text exposition format, /healthz ("ok"). A scrape never
waits on Redis. SIGTERM or SIGINT stop it (exit 143 or 130).]],
  options = {
    { "listen", "string", arg = "ADDR:PORT", default = "127.0.0.1:9393",
      complete = { words = { "127.0.0.1:9393" } },
      help = "where to listen ([::1]:9393 for IPv6, 0.0.0.0:9393 for every interface)" },
    { "interval", "duration", arg = "D", default = "30s", min = "100ms",
      help = "time between walks (at least 100ms: 30s, 1m ...)" },
    { "max-series", "integer", default = 1000,
      help = "per-stream and per-lock series at most, the oldest streams and the locks nearest expiry first" },
    { "max-size", "integer", arg = "KIB", default = 200, min = 16,
      help = "the exposition's size at most, in KiB (16 or more: the figures without per-stream and per-lock"
             .. " series take about 15 KiB, more in cluster mode): locks, then streams (oldest first) get series while it"
             .. " lasts. 1,000 streams named like db_42.coll_0000042 need about 205 KiB: the defaults keep"
             .. " the oldest ~900 (rigatoni_exporter_series_omitted counts the others; it also counts a"
             .. " stream or lock left out because its series alone would take over 4 KiB: no MongoDB"
             .. " namespace is that long)" },
    { "batch", "integer", help = "SCAN COUNT and MGET batch size (default: scan_count)" },
  },
  description = [[
Metrics: rigatoni_up (1 when the last walk and PING succeeded and no Redis
call has been waiting longer than max(1s, min(interval/2, 5s))),
rigatoni_exporter_last_success_timestamp_seconds,
rigatoni_exporter_walk_duration_seconds,
rigatoni_exporter_series_omitted{kind} (streams and locks left out by the
two bounds); per stream (labels level,
database, collection) rigatoni_stream_cluster_time_seconds and
rigatoni_stream_ttl_seconds; rigatoni_resume_tokens (and _corrupt,
_without_ttl), the rigatoni_resume_tokens_age_seconds histogram (1 min to
30 d), rigatoni_resume_tokens_oldest_cluster_time_seconds,
rigatoni_streams; rigatoni_locks and rigatoni_lock_ttl_seconds{lock,
owner}; rigatoni_redis_* from INFO (memory, evicted keys, hits, misses,
clients, role, run_id changes); the store's own rigatoni_store_* metrics.]],
  examples = { "rigatoni-store -c /etc/rigatoni/production.ini serve --listen 127.0.0.1:9393" },
}

-- The run (the host calls it with the options read by the declaration):
-- its globals (store, config, host, rs) are env's. The body is left unindented.
function script.run(opts, _ENV)

local fmt = string.format
local interval, max_series = opts.interval, opts.max_series
local stall = math.max(1, math.min(interval / 2, 5))
local ping_every = math.max(0.1, math.min(interval / 4, 1))

local srv, kind, why = host.http_server { listen = opts.listen, stall = stall }
if not srv then
  if kind == "usage" then cli.usage_error("serve: " .. why .. " (serve --help for usage)") end
  cli.fail("serve: " .. why)
end

-- ---------------------------------------------------------------------
-- Exposition text
-- ---------------------------------------------------------------------

-- Label values: lib.output's escaper, the one of every exposition (the
-- format's escapes; \xNN for bytes that are not UTF-8 and control characters).
local label = require("lib.output").prom_label

local function family(out, name, kind_, help)
  out[#out + 1] = "# HELP " .. name .. " " .. help .. "\n# TYPE " .. name .. " " .. kind_ .. "\n"
end

local function value_text(v)
  if v == math.huge then return "+Inf" end
  if math.type(v) == "integer" then return tostring(v) end
  return fmt("%.3f", v)
end

local function gauge(out, name, help, v, kind_)
  family(out, name, kind_ or "gauge", help)
  out[#out + 1] = name .. " " .. value_text(v) .. "\n"
end

-- ---------------------------------------------------------------------
-- A bounded heap: the n entries with the smallest `key`
-- ---------------------------------------------------------------------

-- Max-heap on key: the root is the largest kept, the first to go.
local function keeper(n)
  local heap, size = {}, 0
  local self = {}
  local function swap(i, j) heap[i], heap[j] = heap[j], heap[i] end
  local function up(i)
    while i > 1 do
      local p = i // 2
      if heap[p].key >= heap[i].key then return end
      swap(i, p)
      i = p
    end
  end
  local function down(i)
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if l <= size and heap[l].key > heap[m].key then m = l end
      if r <= size and heap[r].key > heap[m].key then m = r end
      if m == i then return end
      swap(i, m)
      i = m
    end
  end
  -- Would an entry with `key` be kept?
  function self.wants(key) return size < n or key < heap[1].key end
  function self.add(entry)
    if size < n then
      size = size + 1
      heap[size] = entry
      up(size)
    elseif entry.key < heap[1].key then
      heap[1] = entry
      down(1)
    end
  end
  -- The entries, smallest key first (ties by name).
  function self.sorted()
    local list = table.move(heap, 1, size, 1, {})
    table.sort(list, function(a, b)
      if a.key ~= b.key then return a.key < b.key end
      return a.name < b.name
    end)
    return list
  end
  return self
end

-- ---------------------------------------------------------------------
-- Redis INFO
-- ---------------------------------------------------------------------

local info_refused_logged = false

-- INFO of every master (store:node_info: one for standalone and Sentinel,
-- each master with its "host:port" in a cluster) as a list of
-- { node = address or nil, fields = { name = text } }, or nil when the
-- server refuses INFO (an ACL without +info); other errors raise (the
-- walk fails).
local function read_info()
  srv:busy()
  local ok, nodes = pcall(store.node_info, store)
  srv:busy()
  if not ok then
    -- NOPERM comes as kind auth (an ACL without +info), other refusals as server
    if type(nodes) == "table" and (nodes.kind == "auth" or nodes.kind == "server") then
      if not info_refused_logged then
        host.log("warn", "serve: INFO refused (" .. cli.reason(nodes) .. "): no rigatoni_redis_* figures")
        info_refused_logged = true
      end
      return nil
    end
    error(nodes, 0)
  end
  local list = {}
  for i, n in ipairs(nodes) do
    local fields = {}
    for k, v in n.info:gmatch("([%w_]+):([^\r\n]*)") do fields[k] = v end
    list[i] = { node = n.node, fields = fields }
  end
  table.sort(list, function(a, b) return (a.node or "") < (b.node or "") end)
  return list
end

-- run_id changes per node ("" for standalone), counted from the first walk.
local last_run_ids, run_id_changes = {}, {}

-- Notes each node's run_id; returns them as one text ("" when unknown), so
-- that a walk can tell whether it met another server process.
local function note_run_ids(nodes)
  if not nodes then return "" end
  local ids = {}
  for _, n in ipairs(nodes) do
    local key, id = n.node or "", n.fields.run_id
    if id then
      if last_run_ids[key] and last_run_ids[key] ~= id then
        run_id_changes[key] = (run_id_changes[key] or 0) + 1
      end
      run_id_changes[key] = run_id_changes[key] or 0
      last_run_ids[key] = id
      ids[#ids + 1] = key .. "=" .. id
    end
  end
  return table.concat(ids, ",")
end

local function redis_figures(out, nodes)
  if not nodes then return end
  -- {node="h:p"} in a cluster, nothing for a single server; `extra` adds labels.
  local function labels(n, extra)
    local parts = {}
    if n.node then parts[1] = 'node="' .. label(n.node) .. '"' end
    if extra then parts[#parts + 1] = extra end
    return #parts > 0 and ("{" .. table.concat(parts, ",") .. "}") or ""
  end
  local function put(name, kind_, help, field)
    local lines = {}
    for _, n in ipairs(nodes) do
      local v = tonumber(n.fields[field])
      if v then lines[#lines + 1] = name .. labels(n) .. " " .. value_text(math.tointeger(v) or v) .. "\n" end
    end
    if #lines > 0 then
      family(out, name, kind_, help)
      out[#out + 1] = table.concat(lines)
    end
  end
  put("rigatoni_redis_used_memory_bytes", "gauge", "Redis used_memory.", "used_memory")
  put("rigatoni_redis_maxmemory_bytes", "gauge", "Redis maxmemory (0: no limit).", "maxmemory")
  put("rigatoni_redis_evicted_keys_total", "counter", "Keys Redis evicted under maxmemory (0 expected).",
      "evicted_keys")
  put("rigatoni_redis_expired_keys_total", "counter", "Keys Redis expired by TTL.", "expired_keys")
  put("rigatoni_redis_keyspace_hits_total", "counter", "Redis keyspace hits.", "keyspace_hits")
  put("rigatoni_redis_keyspace_misses_total", "counter", "Redis keyspace misses.", "keyspace_misses")
  put("rigatoni_redis_connected_clients", "gauge", "Clients connected to Redis.", "connected_clients")
  put("rigatoni_redis_uptime_seconds", "gauge", "Seconds since the Redis process started.", "uptime_in_seconds")
  family(out, "rigatoni_redis_role", "gauge", "The Redis server's role (value 1).")
  for _, n in ipairs(nodes) do
    if n.fields.role then out[#out + 1] = "rigatoni_redis_role" .. labels(n, 'role="' .. label(n.fields.role) .. '"') .. " 1\n" end
  end
  family(out, "rigatoni_redis_run_id_changes_total", "counter",
         "Times the Redis run_id changed since the exporter started (restarts, failovers).")
  for _, n in ipairs(nodes) do
    out[#out + 1] = "rigatoni_redis_run_id_changes_total" .. labels(n) .. " " .. (run_id_changes[n.node or ""] or 0) .. "\n"
  end
end

-- ---------------------------------------------------------------------
-- The walk
-- ---------------------------------------------------------------------

-- Histogram bounds of token ages: 1 min to 30 d.
local BOUNDS = { 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 259200, 604800, 1209600, 2592000 }
local NB = #BOUNDS

local lock_prefix = config.lock_prefix ~= "none" and config.lock_prefix or "rigatoni:lock"
local parse_stream_key, to_json = rs.parse_stream_key, rs.bson.to_json

-- The size bound: what the scrape adds in front (host_http.c's own gauges,
-- under 2 KB) is kept free.
local max_bytes, HEAD_BYTES = opts.max_size * 1024, 2048
-- A stream's or lock's samples longer than this have a name no Rigatoni
-- pipeline writes (a MongoDB namespace is at most 255 bytes); they are left
-- out, and counted, rather than take the bound from every stream after them.
local SERIES_BYTES = 4096
local over_warned = false

-- What the bounds left out shows, so a stream without series is not taken
-- for a stream that is gone.
local function omitted_text(streams_left, locks_left)
  return "# HELP rigatoni_exporter_series_omitted Streams and locks seen without series of their own"
         .. " (over --max-series or --max-size).\n# TYPE rigatoni_exporter_series_omitted gauge\n"
         .. fmt('rigatoni_exporter_series_omitted{kind="stream"} %d\nrigatoni_exporter_series_omitted{kind="lock"} %d\n',
                streams_left, locks_left)
end

-- The store's own metrics, less what this process never does: operation
-- series of the kinds it never runs (it lists and PINGs; the others, all
-- zeros, were 13 of its 22 KB) and Rigatoni's lock metrics (it holds no
-- lock; a 0 would sit beside the pipelines' own rigatoni_locks_held_total).
local function store_metrics()
  local text = store:prometheus()
  local used = { list = true, other = true }
  for op, n in text:gmatch('\nrigatoni_store_operations_total{op="([%w_]+)"} (%d+)') do
    if n ~= "0" then used[op] = true end
  end
  local out = {}
  for line in text:gmatch("[^\n]*\n") do
    local op = line:match('^rigatoni_store_operation[%w_]*{op="([%w_]+)"')
    local lock = line:find("^rigatoni_lock") or line:find("^# %u+ rigatoni_lock")
    if not lock and (not op or used[op]) then out[#out + 1] = line end
  end
  return table.concat(out)
end

-- One walk: the exposition text, or nil when it met another server
-- process (walk again). Raises when Redis fails.
local function walk()
  local started = cli.clock()
  local now = cli.now()
  local info = read_info()
  local run_ids = note_run_ids(info)

  local count, corrupt, no_time, no_ttl, ttl_unknown, streams = 0, 0, 0, 0, 0, 0
  local buckets, inf, age_sum = {}, 0, 0.0
  for i = 1, NB do buckets[i] = 0 end
  local oldest
  local top = keeper(max_series)
  for names, values, ttls, times, n in store:token_batches { batch = opts.batch } do
    srv:busy()
    for i = 1, n do
      count = count + 1
      local ttl = ttls[i]
      if ttl == nil then no_ttl = no_ttl + 1 elseif ttl == false then ttl_unknown = ttl_unknown + 1 end
      local t = times[i]
      if t then
        local age = now - t
        age_sum = age_sum + age
        if age > BOUNDS[NB] then
          inf = inf + 1
        else
          local b = 1
          while age > BOUNDS[b] do b = b + 1 end
          buckets[b] = buckets[b] + 1
        end
        if not oldest or t < oldest then oldest = t end
        local name = names[i]
        local level, database, collection = parse_stream_key(name)
        if level then
          streams = streams + 1
          if top.wants(t) then
            top.add { key = t, name = name, ttl = ttl, level = level, database = database, collection = collection }
          end
        end
      elseif pcall(to_json, values[i]) then
        no_time = no_time + 1                     -- BSON, but no cluster time in it
        if parse_stream_key(names[i]) then streams = streams + 1 end
      else
        corrupt = corrupt + 1
      end
    end
  end

  local locks, lock_ttl_unknown = 0, false
  local top_locks = keeper(max_series)
  local plen = #lock_prefix + 2
  for key, owner, ttl in store:scan_keys(lock_prefix .. ":*", { batch = opts.batch }) do
    srv:busy()
    locks = locks + 1
    if ttl == false then lock_ttl_unknown = true end
    -- Locks that never expire first, then those nearest expiry.
    local k = ttl == nil and -1 or (ttl or math.huge)
    if top_locks.wants(k) then
      top_locks.add { key = k, name = key:sub(plen), owner = owner, ttl = ttl }
    end
  end

  local info_after = read_info()
  srv:idle()
  local run_ids_after = note_run_ids(info_after)
  if run_ids ~= "" and run_ids_after ~= "" and run_ids ~= run_ids_after then return nil end

  -- The text: the per-lock and per-stream samples take what the size
  -- bound leaves after everything else (locks nearest expiry first, then
  -- the oldest streams).
  local mid, tail = {}, {}
  gauge(mid, "rigatoni_streams", "Rigatoni 0.2 stream keys seen (series are kept for --max-series of them).", streams)
  gauge(mid, "rigatoni_resume_tokens", "Values under the key prefix.", count)
  gauge(mid, "rigatoni_resume_tokens_corrupt", "Values under the key prefix that are not BSON.", corrupt)
  gauge(mid, "rigatoni_resume_tokens_without_cluster_time", "BSON values without a resume token's cluster time.", no_time)
  if ttl_unknown == 0 then
    gauge(mid, "rigatoni_resume_tokens_without_ttl", "Values that never expire.", no_ttl)
  end
  family(mid, "rigatoni_resume_tokens_age_seconds", "histogram", "Now minus the cluster time of every token, at the walk.")
  local cum = 0
  for b = 1, NB do
    cum = cum + buckets[b]
    mid[#mid + 1] = fmt('rigatoni_resume_tokens_age_seconds_bucket{le="%d"} %d\n', BOUNDS[b], cum)
  end
  cum = cum + inf
  mid[#mid + 1] = fmt('rigatoni_resume_tokens_age_seconds_bucket{le="+Inf"} %d\n', cum)
  mid[#mid + 1] = fmt("rigatoni_resume_tokens_age_seconds_sum %.3f\nrigatoni_resume_tokens_age_seconds_count %d\n",
                      age_sum, cum)
  if oldest then
    gauge(mid, "rigatoni_resume_tokens_oldest_cluster_time_seconds", "The oldest cluster time of any token.", oldest)
  end
  gauge(mid, "rigatoni_locks", "Rigatoni 0.2 locks held (keys under the lock prefix).", locks)
  redis_figures(tail, info_after or info)
  tail[#tail + 1] = store_metrics()

  local CT, TTL, LOCK = "rigatoni_stream_cluster_time_seconds", "rigatoni_stream_ttl_seconds", "rigatoni_lock_ttl_seconds"
  local ct_head, ttl_head, lock_head = {}, {}, {}
  family(ct_head, CT, "gauge",
         "Cluster time in the stream's resume token (lag: time() minus it), the oldest --max-series streams.")
  family(ttl_head, TTL, "gauge", "Seconds until the stream's resume token expires (tokens with a TTL).")
  if not lock_ttl_unknown then
    family(lock_head, LOCK, "gauge",
           "Seconds until the lock expires (+Inf: never), per holder; --max-series of them, nearest expiry first.")
  end
  mid[#mid + 1] = lock_head[1]
  local mid_text, tail_text = table.concat(mid), table.concat(tail)
  -- (the omitted counts are at most the counts seen: their text is no longer)
  local left = max_bytes - HEAD_BYTES - #ct_head[1] - #ttl_head[1] - #mid_text - #tail_text
               - #omitted_text(streams, locks)

  if left < 0 and not over_warned then   -- (cluster mode: each node's figures)
    host.log("warn", fmt("serve: the figures without per-stream series take %d KiB, over --max-size %d:"
                         .. " they are served whole", (max_bytes - left) // 1024, opts.max_size))
    over_warned = true
  end
  local ct_lines, ttl_lines, lock_lines = {}, {}, {}
  local streams_out, locks_out = 0, 0
  if not lock_ttl_unknown then   -- locks first: one per pipeline, small, and a lost one is news
    for _, e in ipairs(top_locks.sorted()) do
      local line = LOCK .. '{lock="' .. label(e.name) .. '",owner="' .. label(e.owner) .. '"} '
                   .. (e.ttl and fmt("%.3f", e.ttl) or "+Inf") .. "\n"
      if #line > SERIES_BYTES then goto next_lock end
      if #line > left then break end
      left = left - #line
      locks_out = locks_out + 1
      lock_lines[locks_out] = line
      ::next_lock::
    end
  end
  for _, e in ipairs(top.sorted()) do
    local labels = '{level="' .. e.level .. '"'
    if e.database then labels = labels .. ',database="' .. label(e.database) .. '"' end
    if e.collection then labels = labels .. ',collection="' .. label(e.collection) .. '"' end
    labels = labels .. "}"
    local ct = CT .. labels .. " " .. e.key .. "\n"
    local ttl = e.ttl and (TTL .. labels .. " " .. fmt("%.0f", e.ttl) .. "\n") or ""
    if #ct + #ttl > SERIES_BYTES then goto next_stream end
    if #ct + #ttl > left then break end
    left = left - #ct - #ttl
    streams_out = streams_out + 1
    ct_lines[streams_out] = ct
    if e.ttl then ttl_lines[#ttl_lines + 1] = ttl end
    ::next_stream::
  end
  return ct_head[1] .. table.concat(ct_lines) .. ttl_head[1] .. table.concat(ttl_lines)
         .. mid_text .. table.concat(lock_lines) .. omitted_text(streams - streams_out, locks - locks_out)
         .. tail_text, cli.clock() - started, count
end

-- ---------------------------------------------------------------------
-- The loop
-- ---------------------------------------------------------------------

if not host.quiet then
  io.stderr:write(fmt("serve: http://%s/metrics, a walk every %s, at most %d series per kind\n",
                      srv:address(), cli.format_duration(interval), max_series))
end

local failing = false
local function ping()
  srv:busy()
  local ok, err = pcall(store.ping, store)
  srv:idle()
  srv:ping_result(ok)
  return ok, err
end

-- SIGTERM or SIGINT ends the loop wherever it is (the host's hook raises
-- at the next instruction, even inside a pcall) and the host exits 143 or
-- 130; the server closes with the Lua state.
while true do
  local next_walk = cli.clock() + interval
  local ok, body, seconds, count
  for _ = 1, 3 do   -- a walk that met a restart is walked again at once
    ok, body, seconds, count = pcall(walk)
    srv:idle()
    if not ok or body then break end
    host.log("info", "serve: the server process changed during the walk; walking again")
  end
  if ok and body then
    srv:publish(body, seconds)
    srv:ping_result(true)
    if failing then host.log("warn", "serve: walks succeed again") end
    failing = false
    host.log("info", fmt("serve: walked %d tokens in %.3f s", count, seconds))
  else
    srv:walk_failed()
    if not failing then
      host.log("warn", "serve: the walk failed (the last complete result is served, rigatoni_up 0): "
                       .. (ok and "the server process kept changing" or cli.reason(body)))
    end
    failing = true
  end
  -- PING until the next walk is due.
  while true do
    local left = next_walk - cli.clock()
    if left <= 0 then break end
    if not srv:wait(math.min(left, ping_every)) then break end
    if next_walk - cli.clock() > 0 then ping() end
  end
end
end

return script
