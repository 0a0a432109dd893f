-- stats -- what the token store holds: number of tokens, with and without
-- TTL, corrupt values, bytes, oldest and newest cluster time; the server
-- (version, keys, memory) and the client pool. One streaming pass.

local cli = require "lib.cli"

local opts = cli.parse(arg, {
  name = "stats",
  usage = [[
usage: rigatoni-store [-c FILE] stats [--match GLOB] [--batch N]

Counts tokens (with/without TTL, corrupt), their total size and the range
of their cluster times, and shows the server version, key count, memory
use and the PING round trip.

example: rigatoni-store -c conf/production.ini stats
]],
  options = { match = "string", batch = "integer" },
  defaults = { match = "*" },
})
if not opts then return 0 end

local t0 = cli.clock()
store:ping()
local ping_ms = (cli.clock() - t0) * 1000

local n, with_ttl, corrupt, bytes = 0, 0, 0, 0
local oldest, newest
local progress = cli.progress("stats")
for _, value, ttl in store:resume_tokens { match = opts.match, batch = opts.batch, raw = true } do
  n = n + 1
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
progress.done()

local function info_field(section, field)
  local text = store:command("INFO", section) or ""
  return text:match(field .. ":([^\r\n]*)")
end

local now = cli.now()
local function line(k, v) io.write(string.format("%-22s %s\n", k, v)) end
line("url", config.url)
line("key_prefix", config.key_prefix)
line("match", opts.match)
line("tokens", n)
line("with_ttl", with_ttl)
line("without_ttl", n - with_ttl)
line("corrupt", corrupt)
line("bytes", bytes)
line("oldest_cluster_time", oldest and (cli.iso_time(oldest) .. " (" .. cli.format_duration(now - oldest) .. " ago)") or "-")
line("newest_cluster_time", newest and (cli.iso_time(newest) .. " (" .. cli.format_duration(now - newest) .. " ago)") or "-")
line("redis_version", info_field("server", "redis_version") or "?")
line("dbsize", store:command("DBSIZE") or "?")
line("used_memory", info_field("memory", "used_memory_human") or "?")
line("ping_ms", string.format("%.2f", ping_ms))
local pool = store:stats().pool
line("pool", string.format("size=%d open=%d created=%d waits=%d", pool.size, pool.open, pool.created, pool.waits))

cli.summary(string.format("stats: %d token%s, %d without TTL (never expire), %d corrupt",
                          n, n == 1 and "" or "s", n - with_ttl, corrupt))
return 0
