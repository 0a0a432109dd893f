-- export -- every token as one JSON line: collection, the exact BSON bytes
-- (base64), the readable token (relaxed Extended JSON) and the remaining
-- TTL in milliseconds (null = never expires). `import` reads it back.
-- Writing to a file goes through a temporary file next to it
-- (FILE.tmp.<random>, so two runs never share one) and a rename, so an
-- interrupted export never leaves a truncated file under the final name;
-- when the listing fails, the temporary file is removed and the run exits
-- 1. On stdout a failed run ends without the summary line and exits 1:
-- whoever reads the stream must check the exit status.

local cli = require "lib.cli"

local opts = cli.parse(arg, {
  name = "export",
  usage = [[
usage: rigatoni-store [-c FILE] export [--match GLOB] [--output FILE|-] [--batch N]

Writes the resume tokens as JSON Lines (stdout by default):

  {"collection":"users","bson_base64":"...","token":{...},"ttl_ms":604799000}

  --match GLOB    Redis glob on the collection name (default *)
  --output FILE   write to FILE (atomically, via a temporary file next to
                  it); - = stdout
  --batch N       SCAN COUNT and MGET batch size (default: scan_count)

Values that are not valid BSON are skipped with a warning (import would
refuse them). The summary goes to stderr. When the listing fails, export
exits 1 and says so: a --output FILE is then not created (nor replaced),
and a stdout stream ends without the summary line.

example: rigatoni-store -c conf/production.ini export --output tokens.jsonl
]],
  options = { match = "string", output = "string", batch = "integer" },
  defaults = { match = "*", output = "-" },
})
if not opts then return 0 end

local out, tmp = io.stdout, nil
if opts.output ~= "-" then
  tmp = string.format("%s.tmp.%08x%08x", opts.output, math.random(0, 0xffffffff),
                      math.random(0, 0xffffffff))
  local f, err = io.open(tmp, "wb")
  if not f then cli.fail("cannot write " .. tmp .. ": " .. err) end
  out = f
end

local json_string, b64 = cli.json_string, cli.base64_encode
local count, skipped = 0, 0
local progress = cli.progress("export")

local ok, err = pcall(function()   -- the walk: any error ends the export
  for collection, bytes, ttl in store:resume_tokens { match = opts.match, batch = opts.batch, raw = true } do
    local good, json = pcall(rs.bson.to_json, bytes)
    if good then
      local ttl_ms = ttl and math.max(1, math.floor(ttl * 1000 + 0.5))
      assert(out:write('{"collection":', json_string(collection), ',"bson_base64":"', b64(bytes),
                       '","token":', json, ',"ttl_ms":', ttl_ms and tostring(ttl_ms) or "null", "}\n"))
      count = count + 1
    else
      skipped = skipped + 1
      host.log("warn", "export: skipped " .. collection .. ": " ..
                       (type(json) == "table" and json.message or tostring(json)))
    end
    progress.update(count)
  end
end)
progress.done()
if tmp then
  local closed, cerr = out:close()
  if ok and not closed then ok, err = false, "writing " .. tmp .. ": " .. tostring(cerr) end
  if not ok then
    os.remove(tmp)
    cli.walk_failed("export", err, count .. " written before it stopped; " .. opts.output ..
                    " was not written, the temporary file was removed")
  end
  local renamed, rerr = os.rename(tmp, opts.output)
  if not renamed then
    os.remove(tmp)
    cli.fail("export: " .. tostring(rerr))
  end
elseif not ok then
  cli.walk_failed("export", err, count .. " lines on stdout before it stopped: incomplete")
end

cli.summary(string.format("export: %d token%s to %s%s in %.2f s", count, count == 1 and "" or "s",
                          opts.output == "-" and "stdout" or opts.output,
                          skipped > 0 and string.format(" (%d corrupt skipped)", skipped) or "",
                          progress.elapsed()), true)
return 0
