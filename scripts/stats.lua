-- SPDX-License-Identifier: MIT
-- stats -- what the token store holds: number of tokens, with and without
-- TTL, corrupt values, bytes, oldest and newest cluster time; the server
-- (version, keys, used_memory -- summed over a cluster's masters and shown
-- per master --, MEMORY USAGE of a random sample of token keys); and the
-- client's own metrics for this run (calls, errors, retries, latency
-- percentiles per operation, pool). One streaming pass.

local cli = require "lib.cli"

local script = {
  name = "stats",
  summary = [[Counts tokens (with/without TTL, corrupt; keys under the prefix that are
not strings are counted as not_tokens), their total size and the range of
their cluster times, and shows the server version, key count and memory
use (in a cluster: summed over every master, then each master's own
line), the MEMORY USAGE of a random sample of token keys and the PING
round trip.]],
  options = {
    { "match", "string", arg = "GLOB", default = "*", help = "Redis glob on the collection name" },
    { "batch", "integer", help = "SCAN COUNT and MGET batch size (default: scan_count)" },
    { "sample", "integer", default = 100,
      help = "the number of token keys whose MEMORY USAGE is read (reservoir sampling over the scan)" },
  },
  description = [[
Then the client metrics of this run: calls, errors, retries and latency
per operation kind, and the connection pool. When the listing fails, stats
prints no figures and exits 1.]],
  examples = { "rigatoni-store -c conf/production.ini stats" },
}

-- The run (the host calls it with the options read by the declaration):
-- its globals (store, config, host, rs) are env's. The body is left unindented.
function script.run(opts, _ENV)
-- Its figures need the TTLs (PTTL), INFO and DBSIZE besides the walk.
require("lib.check").require_commands(store, { "scan", "mget", "pttl", "info", "dbsize" }, config.key_prefix,
                                      "stats", "stats")

local t0 = cli.clock()
store:ping()
local ping_ms = (cli.clock() - t0) * 1000

local n, with_ttl, corrupt, bytes = 0, 0, 0, 0
local oldest, newest
local sample = {}   -- reservoir of collection names
local counts = {}   -- the walk's: not_strings
local progress = cli.progress("stats")
-- Figures from a walk that stopped would be wrong: none are printed.
local ran, why = pcall(function()
  for collection, value, ttl in store:resume_tokens { match = opts.match, batch = opts.batch, raw = true, counts = counts } do
    n = n + 1
    if #sample < opts.sample then
      sample[#sample + 1] = collection
    else
      local j = math.random(n)
      if j <= opts.sample then sample[j] = collection end
    end
    bytes = bytes + #value
    if ttl then with_ttl = with_ttl + 1 end
    local ok = pcall(rs.bson.to_json, value)
    if not ok then
      corrupt = corrupt + 1
    else
      local t = rs.token_time(value)
      if t then
        if not oldest or t < oldest then oldest = t end
        if not newest or t > newest then newest = t end
      end
    end
    progress.update(n)
  end
end)
progress.done()
if not ran then cli.walk_failed("stats", why, n .. " tokens seen; no figures printed") end

-- Every master's own figures: in a cluster the keys and the memory are
-- spread over the masters, so they are summed, and shown per master too.
local nodes = store:server_figures()
local function sum(field)   -- nil when a master did not say (refused)
  local total = 0
  for _, f in ipairs(nodes) do
    if not f[field] then return nil end
    total = total + f[field]
  end
  return total
end
local over = #nodes > 1 and string.format("sum over %d masters", #nodes) or nil

local now = cli.now()
local function line(k, v) io.write(string.format("%-22s %s\n", k, v)) end
line("url", config.url)
line("key_prefix", config.key_prefix)
line("match", opts.match)
line("tokens", n)
line("with_ttl", with_ttl)
line("without_ttl", n - with_ttl)
line("corrupt", corrupt)
line("not_tokens", counts.not_strings)
line("bytes", bytes)
line("oldest_cluster_time", oldest and (cli.iso_time(oldest) .. " (" .. cli.format_duration(now - oldest) .. " ago)") or "-")
line("newest_cluster_time", newest and (cli.iso_time(newest) .. " (" .. cli.format_duration(now - newest) .. " ago)") or "-")
line("redis_version", nodes[1].redis_version or "?")
local keys, used = sum("dbsize"), sum("used_memory")
line("dbsize", keys and (over and string.format("%d (%s)", keys, over) or keys) or "?")
line("used_memory", used and (over and string.format("%d (%.2fM; %s)", used, used / 1048576, over)
                              or string.format("%d (%s)", used, nodes[1].used_memory_human or "?")) or "?")
for _, f in ipairs(nodes) do
  if f.node then
    line("node " .. f.node, string.format("dbsize=%s used_memory=%s (%s) redis_version=%s", f.dbsize or "?",
                                          f.used_memory or "?", f.used_memory_human or "?", f.redis_version or "?"))
  end
end

-- MEMORY USAGE of the sampled keys; the total is an estimate for all n.
local sampled, usage_sum, usage_max = 0, 0, 0
for _, collection in ipairs(sample) do
  local ok, bytes = pcall(store.command, store, "MEMORY", "USAGE", config.key_prefix .. ":" .. collection)
  bytes = ok and tonumber(bytes)
  if bytes then   -- nil: deleted since the scan, or MEMORY not allowed
    sampled = sampled + 1
    usage_sum = usage_sum + bytes
    if bytes > usage_max then usage_max = bytes end
  end
end
if sampled > 0 then
  local avg = usage_sum / sampled
  line("memory_usage_sample", string.format("%d key%s: avg %.0f B, max %d B, est. total %.0f B for %d tokens",
                                             sampled, sampled == 1 and "" or "s", avg, usage_max, avg * n, n))
else
  line("memory_usage_sample", "-")
end
line("ping_ms", string.format("%.2f", ping_ms))

-- The client's metrics for this run.
local stats = store:stats()
local pool = stats.pool
line("pool", string.format("size=%d open=%d in_use=%d idle=%d created=%d closed=%d", pool.size,
                           pool.open, pool.in_use, pool.idle, pool.created, pool.closed))
line("pool_waits", string.format("%d (%.3f s waited, %d timed out)", pool.waits, pool.wait_seconds,
                                 pool.wait_timeouts))
if stats.failovers > 0 then line("sentinel_failovers", stats.failovers) end
local c = stats.cluster
if c.moved + c.ask + c.refreshes > 0 then
  line("cluster", string.format("moved=%d ask=%d slot_map_refreshes=%d", c.moved, c.ask, c.refreshes))
end
if stats.metrics then
  io.write(string.format("%-22s %7s %7s %7s %9s %9s %9s %9s\n", "client_ops", "calls", "errors",
                         "retries", "p50_ms", "p95_ms", "p99_ms", "max_ms"))
  for _, op in ipairs { "save", "get", "delete", "list", "lock", "other" } do
    local o = stats.ops[op]
    if o.count > 0 then
      io.write(string.format("  %-20s %7d %7d %7d %9.3f %9.3f %9.3f %9.3f\n", op, o.count, o.failed,
                             o.retries, o.p50 * 1000, o.p95 * 1000, o.p99 * 1000, o.max * 1000))
      local kinds = {}
      for kind, count in pairs(o.errors) do kinds[#kinds + 1] = kind .. "=" .. count end
      table.sort(kinds)
      if #kinds > 0 then io.write(string.format("  %-20s %s\n", "", table.concat(kinds, " "))) end
    end
  end
end

cli.summary(string.format("stats: %d token%s, %d without TTL (never expire), %d corrupt%s",
                          n, n == 1 and "" or "s", n - with_ttl, corrupt, cli.not_tokens(counts)))
return 0
end

return script
