-- SPDX-License-Identifier: MIT
-- list -- one row per resume token: collection, TTL, size, cluster time
-- (decoded from the token's _data, UTC) and its age; in the JSON formats
-- also the token as relaxed Extended JSON. Streams through SCAN, so memory
-- does not grow with the number of tokens. A value that is not a valid
-- token is listed as corrupt, not fatal.
--
-- Rigatoni 0.2 streams: a name that parses as a stream key
-- (rs.parse_stream_key) gets its level, database and collection, and a
-- per-batch mirror key ({coll}, __db:{db}, __deployment__) is marked as the
-- mirror of the stream keys that exist. For that, the stream keys are
-- walked first (SCAN MATCH <prefix>:resume_token:*, lib/streams.lua): one
-- more pass over the keyspace, holding only the stream keys. --streams
-- shows one row per stream; --format prometheus writes token ages for
-- alerting.

local cli = require "lib.cli"

local script = {
  name = "list",
  summary = "Lists the resume tokens under the configured key prefix.",
  options = {
    { "match", "string", arg = "GLOB", default = "*", help = "Redis glob on the collection name" },
    { "format", "choice", choices = { "table", "json", "jsonl", "csv", "prometheus" }, arg = "F",
      default = "table",
      help = "the output: table, json (one array), jsonl (one object per line), csv, or prometheus (token ages, for alerting)" },
    { "streams", "flag",
      help = "one row per Rigatoni 0.2 stream: its resume key and, beside it, the age of the per-batch mirror key" },
    { "batch", "integer", help = "SCAN COUNT and MGET batch size (default: scan_count)" },
  },
  description = [[
Columns: collection, ttl (none = never expires), size in bytes, cluster
time (UTC, ISO 8601), age, and the stream (level database.collection, or
"mirror of" the stream keys a per-batch key mirrors). JSON rows:
collection, ttl_seconds, size, cluster_time, cluster_time_seconds,
increment, age_seconds, token (relaxed Extended JSON), error (for corrupt
values), and for stream keys "stream": {level, database, collection}, for
mirrors "mirror_of": [names]. CSV adds stream_level, stream_database,
stream_collection and mirror_of (names joined by spaces). The summary goes
to stderr; on a terminal, a progress line too (with the total and an ETA
for --match '*': DBSIZE, every key of the database), never when stdout is
that same terminal.

Names are anyone's data, so each format escapes them. table: control
characters, backslash and bytes that are not UTF-8 as \n \t \\ \xNN (a
name cannot forge a row or drive the terminal). csv: a cell starting with
= + - @, a tab or a carriage return (after any blanks) gets a leading '
and is quoted (the OWASP advice against spreadsheet formula injection);
strip the ' to get the name back. A cell holding ; is quoted too (the
separator in some locales). prometheus: label values are the name when it
is UTF-8 text (\\ \" \n escaped as the format says); other bytes and
control characters (NUL too) read \xNN in the value, and a name's \x
reads \x5cx, so two names never share a series.

prometheus: rigatoni_resume_token_age_seconds{level,database,collection}
(labels from the stream; collection alone for other names) = now - the
token's cluster time, rigatoni_resume_token_ttl_seconds for tokens with a
TTL, rigatoni_resume_tokens (count) and rigatoni_resume_token_scan_errors
(values that are not tokens).]],
  examples = {
    "rigatoni-store -c conf/production.ini list --match 'orders*' --format jsonl",
    "rigatoni-store list --streams",
    "rigatoni-store -q list --format prometheus > /var/lib/node_exporter/rigatoni.prom.$$",
  },
}

-- The run (the host calls it with the options read by the declaration):
-- its globals (store, config, host, rs) are env's. The body is left unindented.
function script.run(opts, _ENV)
local streams_lib = require "lib.streams"
-- PTTL is not needed: a TTL the server does not tell is shown as unknown.
require("lib.check").require_commands(store, { "scan", "mget" }, config.key_prefix, "list", "list")
local output = require "lib.output"
local text = output.text   -- a name in the table format: control characters escaped

local format = opts.format
local write = io.write
local fmt = string.format
local json_string, json_number = cli.json_string, cli.json_number
local now = cli.now()

-- ---------------------------------------------------------------------
-- Streams: the stream keys that exist, and which names mirror them
-- ---------------------------------------------------------------------

-- "collection shop.orders", "database shop" or "deployment".
local function stream_label(level, database, collection)
  if level == "collection" then return level .. " " .. text(database) .. "." .. text(collection) end
  return database and (level .. " " .. text(database)) or level
end

-- ---------------------------------------------------------------------
-- --streams: one row per stream
-- ---------------------------------------------------------------------

if opts.streams then
  if format == "prometheus" then cli.usage_error("list: --streams has no prometheus format (use --format prometheus alone)") end
  local streams = streams_lib.walk(store, opts.batch)
  local names = {}
  for i, st in ipairs(streams) do names[i] = st.mirror end
  local mirror_values = #names > 0 and store:get_many(names) or {}
  local function age_of(bytes)
    if not bytes then return nil end
    return cli.describe_token(bytes, false, now).age
  end
  if format == "table" then
    write(fmt("%-40s %-10s %-20s  %-10s %s\n", "STREAM", "TTL", "CLUSTER TIME", "AGE", "MIRROR AGE"))
  elseif format == "csv" then
    write("level,database,collection,key,ttl_seconds,cluster_time,age_seconds,mirror,mirror_age_seconds\n")
  elseif format == "json" then
    write("[")
  end
  for i, st in ipairs(streams) do
    local info = cli.describe_token(st.bytes, false, now)
    local mirror_age = age_of(mirror_values[i] or nil)
    if format == "table" then
      write(fmt("%-40s %-10s %-20s  %-10s %s\n", stream_label(st.level, st.database, st.collection),
                cli.format_duration(st.ttl), info.time and cli.iso_time(info.time) or (info.error and "CORRUPT" or "-"),
                info.age and cli.format_duration(info.age) or "-",
                mirror_values[i] and (mirror_age and cli.format_duration(mirror_age) or "?") or "absent"))
    elseif format == "csv" then
      write(st.level, ",", cli.csv_field(st.database or ""), ",", cli.csv_field(st.collection or ""), ",",
            cli.csv_field(st.name), ",", st.ttl and fmt("%.3f", st.ttl) or "", ",",
            info.time and cli.iso_time(info.time) or "", ",", info.age and tostring(math.floor(info.age)) or "", ",",
            cli.csv_field(st.mirror), ",", mirror_age and tostring(math.floor(mirror_age)) or "", "\n")
    else
      local row = fmt('{"stream":{"level":%s,"database":%s,"collection":%s},"key":%s,"ttl_seconds":%s,'
                      .. '"cluster_time":%s,"age_seconds":%s,"mirror":%s,"mirror_exists":%s,"mirror_age_seconds":%s}',
                      json_string(st.level), st.database and json_string(st.database) or "null",
                      st.collection and json_string(st.collection) or "null", json_string(st.name),
                      json_number(st.ttl), info.time and json_string(cli.iso_time(info.time)) or "null",
                      info.age and tostring(math.floor(info.age)) or "null", json_string(st.mirror),
                      tostring(mirror_values[i] and true or false),
                      mirror_age and tostring(math.floor(mirror_age)) or "null")
      if format == "jsonl" then write(row, "\n") else write(i == 1 and "\n" or ",\n", row) end
    end
  end
  if format == "json" then write(#streams > 0 and "\n]\n" or "]\n") end
  cli.summary(fmt("list: %d stream%s", #streams, #streams == 1 and "" or "s"), true)
  return 0
end

-- ---------------------------------------------------------------------
-- One row per token
-- ---------------------------------------------------------------------

local _, mirrors = streams_lib.walk(store, opts.batch)

-- Prometheus label values: valid UTF-8, other bytes and controls as \xNN.
local label = output.prom_label

local function prom_labels(collection, level, database, stream_coll)
  if not level then return '{collection="' .. label(collection) .. '"}' end
  local parts = { 'level="' .. level .. '"' }
  if database then parts[#parts + 1] = 'database="' .. label(database) .. '"' end
  if stream_coll then parts[#parts + 1] = 'collection="' .. label(stream_coll) .. '"' end
  return "{" .. table.concat(parts, ",") .. "}"
end

local count, corrupt, first = 0, 0, true
local counts = {}   -- the walk's: not_strings
local progress = cli.progress("list", {
  data_on_stdout = true,
  total = opts.match == "*" and function() return output.keyspace_total(store) end,
})
-- A metric's samples must stand together: TTL samples wait in a temporary
-- file (in $TMPDIR, without a name).
local ttl_lines = format == "prometheus" and output.scratch_file("list: TTL samples")

if format == "table" then
  write(fmt("%-32s %-10s %8s  %-20s  %-10s %s\n", "COLLECTION", "TTL", "SIZE", "CLUSTER TIME", "AGE", "STREAM"))
elseif format == "csv" then
  write("collection,ttl_seconds,size,cluster_time,age_seconds,status,stream_level,stream_database,stream_collection,mirror_of\n")
elseif format == "json" then
  write("[")
elseif format == "prometheus" then
  write("# HELP rigatoni_resume_token_age_seconds Now minus the cluster time inside the resume token.\n",
        "# TYPE rigatoni_resume_token_age_seconds gauge\n")
end

-- One row: the format's line for it.
local function token_row(collection, bytes, ttl)
  count = count + 1
  local info = cli.describe_token(bytes, false, now)
  if info.error then corrupt = corrupt + 1 end
  local level, database, stream_coll = rs.parse_stream_key(collection)
  local mirror_of = not level and mirrors[collection] or nil
  if format == "table" then
    local time, age = "-", "-"
    if info.time then time, age = cli.iso_time(info.time), cli.format_duration(info.age) end
    if info.error then time, age = "CORRUPT", info.error end
    local stream = level and stream_label(level, database, stream_coll)
                   or mirror_of and ("mirror of " .. text(table.concat(mirror_of, " "))) or ""
    write(fmt("%-32s %-10s %8d  %-20s  %-10s %s\n", text(collection), cli.format_duration(ttl), info.size, time,
              text(age), stream))
  elseif format == "csv" then
    write(cli.csv_field(collection), ",", ttl and fmt("%.3f", ttl) or "", ",", info.size, ",",
          info.time and cli.iso_time(info.time) or "", ",",
          info.age and tostring(math.floor(info.age)) or "", ",",
          info.error and cli.csv_field("corrupt: " .. info.error) or "ok", ",",
          level or "", ",", cli.csv_field(database or ""), ",", cli.csv_field(stream_coll or ""), ",",
          mirror_of and cli.csv_field(table.concat(mirror_of, " ")) or "", "\n")
  elseif format == "json" then
    write(first and "\n" or ",\n", rs.list_row(collection, bytes, ttl, now, mirror_of))
    first = false
  else
    local labels = prom_labels(collection, level, database, stream_coll)
    if info.age then write("rigatoni_resume_token_age_seconds", labels, " ", fmt("%.0f", info.age), "\n") end
    if ttl then ttl_lines:write("rigatoni_resume_token_ttl_seconds", labels, " ", fmt("%.3f", ttl), "\n") end
  end
  progress.update(count)
end

if format == "jsonl" then   -- a batch at a time, formatted in C (the rows of rs.list_row)
  for text, rows, bad in store:token_lines { format = "list", match = opts.match, batch = opts.batch,
                                             now = now, mirrors = mirrors, counts = counts } do
    write(text)
    count, corrupt = count + rows, corrupt + bad
    progress.update(count)
  end
else
  for collection, bytes, ttl in store:resume_tokens { match = opts.match, batch = opts.batch, raw = true,
                                                      counts = counts } do
    token_row(collection, bytes, ttl)
  end
end
progress.done()
if format == "json" then write(count > 0 and "\n]\n" or "]\n") end
if format == "prometheus" then
  write("# HELP rigatoni_resume_token_ttl_seconds Seconds until the resume token expires.\n",
        "# TYPE rigatoni_resume_token_ttl_seconds gauge\n")
  ttl_lines:seek("set")
  for line in ttl_lines:lines("L") do write(line) end
  ttl_lines:close()
  write("# HELP rigatoni_resume_tokens Resume tokens listed.\n",
        "# TYPE rigatoni_resume_tokens gauge\n",
        fmt("rigatoni_resume_tokens %d\n", count),
        "# HELP rigatoni_resume_token_scan_errors Values under the key prefix that are not resume tokens.\n",
        "# TYPE rigatoni_resume_token_scan_errors gauge\n",
        fmt("rigatoni_resume_token_scan_errors %d\n", corrupt))
end

cli.summary(fmt("list: %d token%s%s in %.2f s", count, count == 1 and "" or "s",
                corrupt > 0 and fmt(" (%d corrupt)", corrupt) or "", progress.elapsed()) ..
            cli.not_tokens(counts), true)
return 0
end

return script
