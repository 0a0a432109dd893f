-- list -- one row per resume token: collection, TTL, size, cluster time
-- (decoded from the token's _data, UTC) and its age; in the JSON formats
-- also the token as relaxed Extended JSON. Streams through SCAN, so memory
-- does not grow with the number of tokens. A value that is not a valid
-- token is listed as corrupt, not fatal.

local cli = require "lib.cli"

local opts = cli.parse(arg, {
  name = "list",
  usage = [[
usage: rigatoni-store [-c FILE] list [--match GLOB] [--format table|json|jsonl|csv] [--batch N]

Lists the resume tokens under the configured key prefix.

  --match GLOB    Redis glob on the collection name (default *)
  --format F      table (default), json (one array), jsonl (one object per
                  line) or csv
  --batch N       SCAN COUNT and MGET batch size (default: scan_count)

Columns: collection, ttl (none = never expires), size in bytes, cluster
time (UTC, ISO 8601) and age. JSON rows: collection, ttl_seconds, size,
cluster_time, cluster_time_seconds, increment, age_seconds, token (relaxed
Extended JSON), error (for corrupt values). The summary goes to stderr.

example: rigatoni-store -c conf/production.ini list --match 'orders*' --format jsonl
]],
  options = { match = "string", format = { "table", "json", "jsonl", "csv" }, batch = "integer" },
  defaults = { match = "*", format = "table" },
})
if not opts then return 0 end

local format = opts.format
local json_wanted = format == "json" or format == "jsonl"
local write = io.write
local fmt = string.format
local json_string, json_number = cli.json_string, cli.json_number
local now = cli.now()

local function json_row(collection, ttl, info)
  local parts = { '{"collection":', json_string(collection),
                  ',"ttl_seconds":', json_number(ttl),
                  ',"size":', tostring(info.size) }
  if info.time then
    parts[#parts + 1] = fmt(',"cluster_time":"%s","cluster_time_seconds":%d,"increment":%d,"age_seconds":%d',
                            cli.iso_time(info.time), info.time, info.increment, math.floor(info.age))
  else
    parts[#parts + 1] = ',"cluster_time":null'
  end
  if info.error then
    parts[#parts + 1] = ',"token":null,"error":' .. json_string(info.error) .. "}"
  else
    parts[#parts + 1] = ',"token":' .. info.json .. "}"
  end
  return table.concat(parts)
end

local count, corrupt, first = 0, 0, true
local progress = cli.progress("list")

if format == "table" then
  write(fmt("%-32s %-10s %8s  %-20s  %s\n", "COLLECTION", "TTL", "SIZE", "CLUSTER TIME", "AGE"))
elseif format == "csv" then
  write("collection,ttl_seconds,size,cluster_time,age_seconds,status\n")
elseif format == "json" then
  write("[")
end

for collection, bytes, ttl in store:resume_tokens { match = opts.match, batch = opts.batch, raw = true } do
  count = count + 1
  local info = cli.describe_token(bytes, json_wanted, now)
  if info.error then corrupt = corrupt + 1 end
  if format == "table" then
    local time, age = "-", "-"
    if info.time then time, age = cli.iso_time(info.time), cli.format_duration(info.age) end
    if info.error then time, age = "CORRUPT", info.error end
    write(fmt("%-32s %-10s %8d  %-20s  %s\n", collection, cli.format_duration(ttl), info.size, time, age))
  elseif format == "csv" then
    write(cli.csv_field(collection), ",", ttl and fmt("%.3f", ttl) or "", ",", info.size, ",",
          info.time and cli.iso_time(info.time) or "", ",",
          info.age and tostring(math.floor(info.age)) or "", ",",
          info.error and cli.csv_field("corrupt: " .. info.error) or "ok", "\n")
  elseif format == "jsonl" then
    write(json_row(collection, ttl, info), "\n")
  else
    write(first and "\n" or ",\n", json_row(collection, ttl, info))
    first = false
  end
  progress.update(count)
end
progress.done()
if format == "json" then write(count > 0 and "\n]\n" or "]\n") end

cli.summary(fmt("list: %d token%s%s in %.2f s", count, count == 1 and "" or "s",
                corrupt > 0 and fmt(" (%d corrupt)", corrupt) or "", progress.elapsed()), true)
return 0
