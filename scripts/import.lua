-- import -- reads what `export` wrote and saves the exact bytes back.
-- The whole input is validated before anything is written: one bad line
-- (bad JSON, bad base64, bytes that are not a BSON document) is reported
-- by line number and nothing is written. A collection on two lines (an
-- export whose listing started over) takes the later line, with a warning. Saves go
-- out in pipelined batches (store:save_many); existing tokens are kept
-- unless --overwrite (SET NX), so a re-run after an interruption is safe.

local cli = require "lib.cli"

local opts = cli.parse(arg, {
  name = "import",
  usage = [[
usage: rigatoni-store [-c FILE] import [--input FILE|-] [--ttl keep|none|DURATION]
                      [--skip-existing|--overwrite] [--dry-run] [--batch N]

Saves tokens from an `export` file (JSON Lines; stdin by default).

  --input FILE      read FILE; - = stdin
  --ttl keep        the TTL left at export time (default)
  --ttl none        no TTL at all
  --ttl DURATION    this TTL for every token (30s 15m 12h 7d)
  --skip-existing   keep tokens that already exist (default)
  --overwrite       replace existing tokens
  --dry-run         validate and count, write nothing
  --batch N         tokens per pipelined batch (default 1000)

Every line is checked before anything is written; a bad line is reported
with its number and the import writes nothing.

example: rigatoni-store -u redis://new-redis:6379 import --input tokens.jsonl
]],
  options = { input = "string", ttl = "string", ["skip-existing"] = "flag", overwrite = "flag",
              ["dry-run"] = "flag", batch = "integer" },
  defaults = { input = "-", ttl = "keep", batch = 1000 },
})
if not opts then return 0 end
if opts.skip_existing and opts.overwrite then
  cli.usage_error("import: --skip-existing and --overwrite exclude each other")
end
local fixed_ttl
if opts.ttl ~= "keep" and opts.ttl ~= "none" then
  fixed_ttl = cli.parse_duration(opts.ttl)
  if not fixed_ttl or fixed_ttl <= 0 then
    cli.usage_error("import: --ttl must be keep, none or a duration (30s 15m 12h 7d), not '" .. opts.ttl .. "'")
  end
end

-- ---- read and validate everything ----------------------------------

local input = io.stdin
if opts.input ~= "-" then
  local f, err = io.open(opts.input, "rb")
  if not f then cli.fail("cannot read " .. opts.input .. ": " .. err) end
  input = f
end
local source = opts.input == "-" and "stdin" or opts.input

local items, seen, errors = {}, {}, {}
local lineno = 0
for line in input:lines() do
  lineno = lineno + 1
  local function bad(msg)
    errors[#errors + 1] = string.format("%s:%d: %s", source, lineno, msg)
  end
  if line:find("%S") then
    local rec, jerr = cli.json_decode(line)
    if not rec then
      bad("not JSON: " .. jerr)
    elseif type(rec) ~= "table" then
      bad("expected a JSON object")
    elseif type(rec.collection) ~= "string" or rec.collection == "" then
      bad("'collection' must be a non-empty string")
    elseif type(rec.bson_base64) ~= "string" then
      bad("'bson_base64' must be a string")
    elseif rec.ttl_ms ~= nil and rec.ttl_ms ~= cli.null and
           (math.type(rec.ttl_ms) ~= "integer" or rec.ttl_ms < 0) then
      bad("'ttl_ms' must be null or a non-negative integer")
    else
      local bytes, berr = cli.base64_decode(rec.bson_base64)
      local valid, verr = false, berr and "'bson_base64': " .. berr
      if bytes then
        valid, verr = pcall(rs.bson.to_json, bytes)
        if not valid then verr = "'bson_base64': " .. (type(verr) == "table" and verr.message or tostring(verr)) end
      end
      if not valid then
        bad(verr)
      else
        local ttl
        if fixed_ttl then
          ttl = fixed_ttl
        elseif opts.ttl == "keep" and math.type(rec.ttl_ms) == "integer" then
          ttl = math.max(rec.ttl_ms, 1) / 1000   -- never 0: that would mean "no TTL"
        end
        -- A listing that started over (server restart, failover) exports a
        -- collection twice, the later line read later: it wins.
        local earlier = seen[rec.collection]
        if earlier then
          host.log("warn", string.format("import: %s:%d: collection '%s' again (first on line %d); "
                                         .. "the later line is used", source, lineno, rec.collection,
                                         earlier.line))
          items[earlier.index] = { rec.collection, bytes, ttl }
          earlier.line = lineno
        else
          items[#items + 1] = { rec.collection, bytes, ttl }
          seen[rec.collection] = { line = lineno, index = #items }
        end
      end
    end
  end
  if #errors >= 20 then break end
end
if input ~= io.stdin then input:close() end

if #errors > 0 then
  for _, e in ipairs(errors) do io.stderr:write("rigatoni-store: ", e, "\n") end
  cli.fail(string.format("import: %d bad line%s%s; nothing was written", #errors,
                         #errors == 1 and "" or "s", #errors >= 20 and " (stopped at 20)" or ""))
end

-- ---- write ----------------------------------------------------------

local written, skipped = 0, 0
local progress = cli.progress("import")
for first = 1, #items, opts.batch do
  local batch = table.move(items, first, math.min(first + opts.batch - 1, #items), 1, {})
  if opts.dry_run then
    local names = {}
    for i, item in ipairs(batch) do names[i] = item[1] end
    local values = store:get_many(names)
    for i = 1, #batch do
      if values[i] and not opts.overwrite then skipped = skipped + 1 else written = written + 1 end
    end
  else
    local done = store:save_many(batch, { nx = not opts.overwrite })
    for i = 1, #batch do
      if done[i] then written = written + 1 else skipped = skipped + 1 end
    end
  end
  progress.update(written + skipped)
end
progress.done()

cli.summary(string.format("import%s: %d %s, %d skipped (already present), from %s in %.2f s",
                          opts.dry_run and " (dry run)" or "", written,
                          opts.dry_run and "would be written" or "written", skipped, source,
                          progress.elapsed()))
return 0
