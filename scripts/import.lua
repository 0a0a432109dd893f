-- SPDX-License-Identifier: MIT
-- import -- reads what `export` wrote and saves the exact bytes back.
-- The whole input is validated before anything is written: one bad line
-- (bad JSON, bad base64, bytes that are not a BSON document, a ttl_ms
-- Redis would refuse) is reported as file:line, nothing is written and
-- the exit status is 2; so are a bad option and a command the server
-- refuses this user (checked after the lines, before the first write). A
-- collection on two lines (exports joined by hand) takes the later line,
-- with a warning.
-- Saves go out in pipelined batches (store:save_many); existing tokens are
-- kept unless --overwrite (SET NX), so a re-run after an interruption is safe.
--
-- Memory stays flat at any size: a first pass validates every line and
-- keeps only a Bloom filter of the collection names (4 MiB) and the names
-- it flagged as maybe seen before; the second pass reads the input again
-- (a pipe was copied to a temporary file in $TMPDIR by the first, removed
-- at the end whatever happens, SIGINT and SIGTERM included) and writes it
-- in batches. A flagged name (a real duplicate, or one of the few false
-- positives) is held back until the end of the input, so the last line of
-- each collection is the one written.
--
-- Writes a master acknowledged are lost when a replica without them takes
-- over (or the master restarts empty): when the master changed during the
-- writes (cli.master_mark), a third pass reads the names on the current
-- master, and those it lacks are not counted as written (exit 1).

local cli = require "lib.cli"

local script = {
  name = "import",
  summary = "Saves tokens from an `export` file (JSON Lines; stdin by default).",
  options = {
    { "input", "string", arg = "FILE|-", default = "-", complete = { words = { "-" }, files = "" },
      help = "read FILE; - = stdin" },
    { "ttl", "string", arg = "keep|none|DURATION", default = "keep", complete = { words = { "keep", "none" } },
      help = "keep: the TTL left at export time; none: no TTL at all; a DURATION (30s 15m 12h 7d): " ..
             "this TTL for every token" },
    { "skip-existing", "flag", help = "keep tokens that already exist (the default)" },
    { "overwrite", "flag", help = "replace existing tokens" },
    { "dry-run", "flag", help = "validate and count, write nothing" },
    { "batch", "integer", default = 1000, help = "tokens per pipelined batch" },
  },
  description = [[
Every line is checked before anything is written (JSON, base64, BSON,
ttl_ms: an integer from 0 up to the longest TTL Redis accepts, an expiry
at most 2^63-1 ms after 1970), and so are the commands this user may run
(SET and GET; MGET for --dry-run); a bad line is reported as FILE:LINE,
the import writes nothing and exits 2.
When the master changed during the writes (a failover, a restart without
persistence), the input is read once more and each name looked up on the
current master: those it lacks are not counted as written (exit 1); run
it again to write them.]],
  examples = { "rigatoni-store -u redis://new-redis:6379 import --input tokens.jsonl" },
}

-- The run (the host calls it with the options read by the declaration):
-- its globals (store, config, host, rs) are env's. The body is left unindented.
function script.run(opts, _ENV)
if opts.skip_existing and opts.overwrite then
  cli.usage_error("import: --skip-existing and --overwrite exclude each other")
end
local fixed_ttl
if opts.ttl ~= "keep" and opts.ttl ~= "none" then
  fixed_ttl = cli.parse_duration(opts.ttl)
  if not fixed_ttl or fixed_ttl <= 0 then
    cli.usage_error("import: --ttl must be keep, none or a duration (30s 15m 12h 7d), not '" .. opts.ttl .. "'")
  end
  local ok, why = rs.check_ttl(fixed_ttl)
  if not ok then cli.usage_error("import: --ttl " .. opts.ttl .. ": " .. why) end
end

-- ---- one line --------------------------------------------------------

-- A line -> collection, bytes, ttl (seconds or nil); false for a blank
-- line; nil and the reason for a bad one.
local function parse(line)
  if not line:find("%S") then return false end
  local rec, jerr = cli.json_decode_floats(line)
  if not rec then return nil, "not JSON: " .. jerr end
  if type(rec) ~= "table" then return nil, "expected a JSON object" end
  if type(rec.collection) ~= "string" or rec.collection == "" then
    return nil, "'collection' must be a non-empty string"
  end
  -- A name that is not UTF-8 text: export wrote its bytes here (and
  -- \xNN for them in 'collection', which JSON can carry).
  local name = rec.collection
  if rec.collection_base64 ~= nil then
    if type(rec.collection_base64) ~= "string" then return nil, "'collection_base64' must be a string" end
    local nerr
    name, nerr = cli.base64_decode(rec.collection_base64)
    if not name then return nil, "'collection_base64': " .. nerr end
    if name == "" then return nil, "'collection_base64' must not be empty" end
  end
  if type(rec.bson_base64) ~= "string" then return nil, "'bson_base64' must be a string" end
  local ttl_ms = rec.ttl_ms ~= cli.null and rec.ttl_ms or nil
  if ttl_ms ~= nil then
    -- Any whole number of ms Redis takes (past 2^53 as cjson read it).
    if type(ttl_ms) ~= "number" or ttl_ms ~= math.floor(ttl_ms) or ttl_ms < 0 then
      return nil, "'ttl_ms' must be null or a non-negative integer"
    end
    local ok, why = rs.check_ttl(math.max(ttl_ms, 1) / 1000)
    if not ok then return nil, "'ttl_ms' " .. string.format("%.0f", ttl_ms) .. ": " .. why end
    ttl_ms = cli.json_integer(ttl_ms) or ttl_ms
  end
  local bytes, berr = cli.base64_decode(rec.bson_base64)
  if not bytes then return nil, "'bson_base64': " .. berr end
  local valid, verr = pcall(rs.bson.to_json, bytes)
  if not valid then
    return nil, "'bson_base64': " .. (type(verr) == "table" and verr.message or tostring(verr))
  end
  local ttl
  if fixed_ttl then
    ttl = fixed_ttl
  elseif opts.ttl == "keep" and ttl_ms then
    ttl = math.max(ttl_ms, 1) / 1000   -- never 0: that would mean "no TTL"
  end
  return name, bytes, ttl
end

-- ---- names seen: a Bloom filter ---------------------------------------

-- 2^24 bits in 64-bit integers, 4 probes from one 64-bit hash of the name
-- (double hashing): about 0.2% false positives at a million names.
local BITS, PROBES = 1 << 24, 4
local filter = {}
for i = 1, BITS // 64 do filter[i] = 0 end

local tail_format = {}
for k = 1, 7 do tail_format[k] = "<i" .. k end

local function name_hash(s)
  local n, h = #s, #s * 0x9E3779B97F4A7C15
  local i = 1
  while i + 7 <= n do
    h = (h ~ string.unpack("<i8", s, i)) * 0x100000001B3
    h = h ~ (h >> 29)
    i = i + 8
  end
  if i <= n then h = (h ~ string.unpack(tail_format[n - i + 1], s, i)) * 0x100000001B3 end
  h = (h ~ (h >> 33)) * 0xFF51AFD7ED558CCD
  h = (h ~ (h >> 33)) * 0xC4CEB9FE1A85EC53
  return h ~ (h >> 33)
end

-- Adds the name; true when it may have been added before.
local function maybe_seen(name)
  local h = name_hash(name)
  local a, b = h & (BITS - 1), (h >> 24) | 1
  local all = true
  for _ = 1, PROBES do
    local word, bit = (a >> 6) + 1, 1 << (a & 63)
    local w = filter[word]
    if w & bit == 0 then
      all = false
      filter[word] = w | bit
    end
    a = (a + b) & (BITS - 1)
  end
  return all
end

-- ---- pass 1: validate everything ------------------------------------

local source = opts.input == "-" and "stdin" or opts.input
local input = io.stdin
if opts.input ~= "-" then
  local f, err = io.open(opts.input, "rb")
  if not f then cli.usage_error("import: --input " .. opts.input .. ": cannot read it: " .. cli.io_reason(err, opts.input)) end
  input = f
end
-- A regular file is read again from where it started; a pipe or a terminal
-- cannot be, so the first pass copies it to a temporary file.
local start = input:seek("cur")
local spool
if not start then
  -- In $TMPDIR (mkstemp, mode 0600), removed when the script ends: by this
  -- to-be-closed variable, and by the host whatever ends the run (an
  -- error, SIGINT, SIGTERM).
  local output = require "lib.output"
  local file, path = output.temp_file("import: cannot copy " .. source)
  spool = setmetatable({ path = path, file = file }, { __close = function(self)
    if io.type(self.file) == "file" then self.file:close() end
    output.remove_temp(self.path)
  end })
  host.log("debug", "import: " .. source .. " is copied to " .. path)
end
local _ <close> = spool

local flagged, errors, lines = {}, {}, 0
do
  for line in input:lines() do
    lines = lines + 1
    if spool then
      local ok, err = spool.file:write(line, "\n")
      if not ok then cli.fail("import: cannot copy " .. source .. " to " .. spool.path .. ": " .. err) end
    end
    local name, err = parse(line)
    if name == nil then
      errors[#errors + 1] = string.format("%s:%d: %s", source, lines, err)
      if #errors >= 20 then break end
    elseif name and maybe_seen(name) then
      flagged[name] = true
    end
  end
  if spool then
    local ok, err = spool.file:close()
    if not ok then cli.fail("import: cannot copy " .. source .. " to " .. spool.path .. ": " .. err) end
  end
end

if #errors > 0 then
  for _, e in ipairs(errors) do io.stderr:write("rigatoni-store: ", e, "\n") end
  cli.usage_error(string.format("import: %d bad line%s%s; nothing was written", #errors,
                                #errors == 1 and "" or "s", #errors >= 20 and " (stopped at 20)" or ""))
end

-- The commands pass 2 sends: SET NX (or SET), and GET to learn an NX
-- write's outcome after a lost reply; a dry run reads with MGET only.
require("lib.check").require_commands(store, opts.dry_run and { "mget" } or { "set", "get" }, config.key_prefix,
                                      "import", opts.dry_run and "import --dry-run" or "import")

-- ---- pass 2: write --------------------------------------------------

local held_back = 0
for _ in pairs(flagged) do held_back = held_back + 1 end
host.log("debug", string.format("import: %d lines checked, %d names held back to the end", lines, held_back))

local written, skipped = 0, 0
local progress = cli.progress("import")
-- The master at the start of the writes: a write it acknowledged is lost
-- when a replica that did not have it yet takes over (replication is
-- asynchronous), or when it restarts without persistence. When the
-- master changed by the end, the input is read once more and its names
-- on the current master (below).
local start_mark = not opts.dry_run and cli.master_mark(store) or nil
local function flush(batch)
  if #batch == 0 then return end
  if opts.dry_run then
    local names = {}
    for i, item in ipairs(batch) do names[i] = item[1] end
    local values = store:get_many(names, { ttl = false })
    for i = 1, #batch do
      if values[i] and not opts.overwrite then skipped = skipped + 1 else written = written + 1 end
    end
  else
    local ok, done = pcall(store.save_many, store, batch, { nx = not opts.overwrite })
    if not ok then
      -- A batch refused in part (NOPERM, OOM) says what it wrote: err.written.
      local known = type(done) == "table" and done.written
      for i = 1, #batch do
        if known and known[i] then written = written + 1 end
      end
      local moved = cli.master_may_have_changed(start_mark, cli.master_mark(store))
      cli.fail(string.format("import: %s (%d written before it stopped%s%s)", cli.reason(done),
                             written, known and "" or string.format(
                               "; the last batch of %d may be written in part", #batch),
                             moved and "; the master changed during the run (a failover or a restart), " ..
                                       "which may have lost some of them: run it again" or ""))
    end
    for i = 1, #batch do
      if done[i] then written = written + 1 else skipped = skipped + 1 end
    end
  end
  progress.update(written + skipped)
end

local function changed(why)
  cli.fail(string.format("import: %s changed after it was checked (%s); %s", source, why,
                         opts.dry_run and "nothing was written (dry run)"
                         or string.format("%d written before it stopped", written)))
end

-- A flagged name's latest line: { name, bytes, ttl, line = N }, in the
-- order the names first came.
local held, held_order = {}, {}
local batch = {}
local reread = input
if spool then
  local err
  reread, err = io.open(spool.path, "rb")
  if not reread then cli.fail("import: cannot read back " .. spool.path .. ": " .. cli.io_reason(err, spool.path)) end
else
  input:seek("set", start)
end
local lineno = 0
for line in reread:lines() do
  lineno = lineno + 1
  if lineno > lines then changed("more lines") end
  local name, bytes, ttl = parse(line)
  if name == nil then changed("line " .. lineno .. ": " .. bytes) end
  if name and flagged[name] then
    -- A collection twice in the input (exports joined by hand; one export
    -- has each once): the later line read later wins.
    local earlier = held[name]
    if earlier then
      host.log("warn", string.format("import: %s:%d: collection '%s' again (first on line %d); "
                                     .. "the later line is used", source, lineno, name, earlier.line))
    else
      held_order[#held_order + 1] = name
    end
    held[name] = { name, bytes, ttl, line = lineno }
  elseif name then
    batch[#batch + 1] = { name, bytes, ttl }
    if #batch == opts.batch then flush(batch); batch = {} end
  end
end
if lineno < lines then changed("fewer lines") end
for _, name in ipairs(held_order) do
  batch[#batch + 1] = held[name]
  if #batch == opts.batch then flush(batch); batch = {} end
end
flush(batch)

-- The master changed during the writes: each name of the input is read
-- on the current master (one pass more, opts.batch names per MGET), and
-- those it lacks are not counted as written.
local missing, unread = 0, nil
if start_mark and cli.master_may_have_changed(start_mark, cli.master_mark(store)) then
  reread:seek("set", spool and 0 or start)
  local names = {}
  local function check()
    local ok, values = pcall(cli.read_on_current_master, store, names)
    if not ok then unread = unread or cli.reason(values) end
    for i = 1, #names do if ok and not values[i] then missing = missing + 1 end end
    names = {}
  end
  for line in reread:lines() do
    local name = parse(line)
    if name then
      names[#names + 1] = name
      if #names == opts.batch then check() end
    end
  end
  check()
  written = written - math.min(missing, written)
end
if reread ~= io.stdin then reread:close() end
if input ~= io.stdin and input ~= reread then input:close() end
progress.done()

local notes = ""
if missing > 0 then
  notes = string.format(", %d of the input's tokens not on the current master (its master changed during " ..
                        "the run, a failover or a restart, and lost them: run it again)", missing)
end
if unread then
  notes = notes .. ", its master changed during the run and the tokens could not be read again there (" ..
          unread .. "): some may be lost, run it again"
end
cli.summary(string.format("import%s: %d %s, %d skipped (already present)%s, from %s in %.2f s",
                          opts.dry_run and " (dry run)" or "", written,
                          opts.dry_run and "would be written" or "written", skipped, notes, source,
                          progress.elapsed()))
return (missing > 0 or unread) and 1 or 0
end

return script
