-- SPDX-License-Identifier: MIT
-- export -- every token as one JSON line: collection, the exact BSON bytes
-- (base64), the readable token (relaxed Extended JSON) and the remaining
-- TTL in milliseconds (null = never expires). `import` reads it back.
-- Writing to a regular file (or a new one) goes through a temporary file
-- in its folder (mkstemp: .FILE.tmp.XXXXXX, so two runs never share one)
-- and a rename, so an interrupted export never leaves a truncated file
-- under the final name; a symlink's target is replaced, the link stays; a
-- FIFO, a character device or /dev/stdout is written through
-- (lib/output.lua). When the listing fails or SIGINT/SIGTERM stops it, the
-- temporary file is removed and the run exits 1 (130/143). On stdout a
-- failed run ends without the summary line and exits 1: whoever reads the
-- stream must check the exit status.
--
-- --stream selections (lib/streams.lua) walk the stream keys only, then
-- read the mirrors of the selected ones (each written once, after the
-- first stream key that names it).

local cli = require "lib.cli"

local script = {
  name = "export",
  summary = [[Writes the resume tokens as JSON Lines (stdout by default):
{"collection":"users","bson_base64":"...","token":{...},"ttl_ms":604799000}]],
  options = {
    { "match", "string", arg = "GLOB", help = "Redis glob on the collection name (default *)" },
    { "stream", "list", arg = "SEL", complete = { words = { ":deployment" } },
      help = "only these Rigatoni 0.2 streams (repeatable; not with --match): DB:COLL the collection stream, " ..
             "DB the database stream and every collection stream of DB, :deployment the deployment stream; " ..
             "each stream key with its per-batch mirror (a mirror shared with an unselected stream too)" },
    { "output", "string", arg = "FILE|-", default = "-", complete = { words = { "-" }, files = "" },
      help = "write to FILE; - = stdout. A regular file (or a new one) is written atomically: a temporary " ..
             "file in its folder, renamed over it when complete (its mode is kept, and its owner and group " ..
             "when run as root). A symlink's target is replaced (the link stays); a FIFO, a character " ..
             "device or /dev/stdout is written through" },
    { "batch", "integer", help = "SCAN COUNT and MGET batch size (default: scan_count)" },
  },
  description = [[
Values that are not valid BSON are skipped with a warning (import would
refuse them). The summary goes to stderr. SCAN, MGET and PTTL are checked
first: a command the server refuses this user is named (exit 2) and no
file is made. When the listing fails, export
exits 1 and says so: a --output FILE is then not created (nor replaced),
and a stdout stream ends without the summary line. SIGINT or SIGTERM
stop it the same way, with exit status 130 or 143. A folder, a block
device or a path in a missing folder is refused before anything is read.]],
  examples = {
    "rigatoni-store -c conf/production.ini export --output tokens.jsonl",
    "rigatoni-store export --stream shop --output shop.jsonl",
  },
}

-- The run (the host calls it with the options read by the declaration):
-- its globals (store, config, host, rs) are env's. The body is left unindented.
function script.run(opts, _ENV)
local streams = require "lib.streams"
if opts.stream and opts.match then
  cli.usage_error("export: --stream and --match cannot be combined (export --help for usage)")
end
local selections = streams.parse_selections("export", opts.stream)
-- The output path is checked before connecting; the walk's SCAN, MGET and
-- PTTL (ttl_ms) before any file is made.
local output = require "lib.output"
output.check(opts.output, "export: --output")
require("lib.check").require_commands(store, { "scan", "mget", "pttl" }, config.key_prefix, "export", "export")

local sink <close> = output.open(opts.output, "export: --output")
local out = sink.file

local count, skipped = 0, 0
local progress = cli.progress("export", {
  data_on_stdout = out == io.stdout,
  total = not selections and (opts.match or "*") == "*" and function() return output.keyspace_total(store) end,
})

local function skip(collection, why)
  skipped = skipped + 1
  host.log("warn", "export: skipped " .. output.text(collection) .. ": " .. why)
end

-- One token (rs.export_line: the line in C, as store:token_lines writes them).
local function write_token(collection, bytes, ttl)
  ttl = cli.known_ttl(ttl, "export")
  local line, why = rs.export_line(collection, bytes, ttl)
  if line then
    assert(out:write(line))
    count = count + 1
  else
    skip(collection, why)
  end
  progress.update(count)
end

-- The selected stream keys, each followed by its mirror when it exists.
local function export_streams()
  local chosen, written = {}, {}
  for _, st in ipairs((streams.walk(store, opts.batch))) do
    if streams.selected(selections, st) then chosen[#chosen + 1] = st end
  end
  local names, index = {}, {}   -- the mirrors to read, once each
  for _, st in ipairs(chosen) do
    if not index[st.mirror] then
      names[#names + 1] = st.mirror
      index[st.mirror] = #names
    end
  end
  local values, ttls = {}, {}
  if #names > 0 then values, ttls = store:get_many(names) end
  local function write_once(name, bytes, ttl)
    if bytes and not written[name] then
      write_token(name, bytes, ttl)
      written[name] = true
    end
  end
  for _, st in ipairs(chosen) do
    write_once(st.name, st.bytes, st.ttl)
    local i = index[st.mirror]
    write_once(st.mirror, values[i] or nil, ttls[i] or nil)
  end
end

local counts = {}   -- the walk's: not_strings
local ok, err = pcall(function()   -- the walk: any error ends the export
  if selections then return export_streams() end
  -- A batch at a time, formatted in C.
  for text, rows, _, bad in store:token_lines { format = "export", match = opts.match or "*", batch = opts.batch,
                                                   counts = counts } do
    assert(out:write(text))
    count = count + rows
    for _, s in ipairs(bad or {}) do skip(s[1], s[2]) end
    progress.update(count)
  end
end)
progress.done()
if sink.tmp then
  if not ok then
    sink.abort()
    cli.walk_failed("export", err, opts.output .. " was not changed: the " .. count .. " lines read before it " ..
                    "stopped went to a temporary file, which was removed")
  end
  local committed, cerr = sink.commit()
  if not committed then cli.fail("export: " .. tostring(cerr)) end
elseif not ok then
  sink.abort()
  cli.walk_failed("export", err, count .. " lines " .. (out == io.stdout and "on stdout" or "to " .. opts.output)
                  .. " before it stopped: incomplete")
else
  local committed, cerr = sink.commit()
  if not committed then cli.fail("export: writing " .. opts.output .. ": " .. tostring(cerr)) end
end

cli.summary(string.format("export: %d token%s to %s%s in %.2f s", count, count == 1 and "" or "s",
                          opts.output == "-" and "stdout" or opts.output,
                          skipped > 0 and string.format(" (%d corrupt skipped)", skipped) or "",
                          progress.elapsed()) .. cli.not_tokens(counts), true)
return 0
end

return script
