-- SPDX-License-Identifier: MIT
-- scripts/lib/cli.lua -- what the bundled scripts share: option parsing,
-- durations, time and size formatting, JSON (a writer for our output, a
-- reader for import: lua-cjson), base64 and the summary line; CSV quoting
-- and the progress line come from lib/output.lua. Lua 5.4 and lua-cjson;
-- the `host` global (set by rigatoni-store) says whether stderr is a
-- terminal and whether -q was given.

local M = {}

local host = rawget(_G, "host") or {}
local rs_module = require "rigatoni_store"
local output = require "lib.output"

-- ---------------------------------------------------------------------
-- Errors
-- ---------------------------------------------------------------------

local error_mt = { __tostring = function(e) return e.kind .. ": " .. e.message end }

-- A usage error: the host prints "usage: <message>" and exits with 2.
function M.usage_error(message)
  error(setmetatable({ kind = "usage", message = message, retryable = false, attempts = 0 },
                     error_mt), 0)
end

-- A runtime failure with a clean message (exit 1, no file:line prefix).
-- A listed TTL that a tool must know to act on: false = the server refused
-- PTTL (a user limited to Rust Rigatoni's commands); such a run stops.
function M.known_ttl(ttl, script)
  if ttl == false then
    M.fail(script .. ": the server refused PTTL, so TTLs are unknown; run it as a user "
           .. "that may run PTTL")
  end
  return ttl
end

function M.fail(message)
  error(setmetatable({ kind = "failed", message = message, retryable = false, attempts = 0 },
                     error_mt), 0)
end

-- The message of anything raised (error objects, strings): one line.
local function reason(err)
  return type(err) == "table" and err.kind and err.message and (err.kind .. ": " .. err.message)
         or tostring(err)
end
M.reason = reason

-- The note for a summary when the run stopped by an error of the delete
-- of `name`: unless the error says it was never sent, the delete may have
-- run (a lost reply), so the count cannot include or exclude it.
-- Returns the note, or nil.
local never_sent = { config = true, serialization = true, auth = true, pool = true }
function M.in_doubt(err, name)
  if not name or (type(err) == "table" and never_sent[err.kind]) then return nil end
  return string.format("1 in doubt (%s may be deleted: the reply to its delete was lost)", name)
end

-- Compare-and-delete of the bytes a walk saw: "deleted"; "changed" (other
-- bytes are there now: kept); or "gone" (deleted by someone else first,
-- a walk lists each name once, so never by this run). A delete that did not
-- run says only "not deleted": the read after it tells which. When the
-- read finds the very bytes the delete was to compare, the delete ran on
-- a master that did not have them (restarted empty, then replaced by its
-- replica between the two calls): it is made once more, on this master.
function M.delete_if_unchanged(store, name, bytes)
  for _ = 1, 2 do
    if store:delete_resume_token(name, { if_value = bytes }) then return "deleted" end
    local now = store:get_raw(name)
    if now == nil then return "gone" end
    if now ~= bytes then return "changed" end
  end
  return "changed"
end

-- A walk (or the work done on it) that raised: exit 1, saying what
-- happened to the run and why. `what` says what the operator has, e.g.
-- "the output was removed", or "12 deleted before it stopped".
function M.walk_failed(script, err, what)
  M.fail(string.format("%s: stopped before the listing was complete%s: %s", script,
                       what and (" (" .. what .. ")") or "", reason(err)))
end

M.io_reason = require("lib.output").io_reason

-- ---------------------------------------------------------------------
-- Durations
-- ---------------------------------------------------------------------

-- "500ms", "30s", "1h30m", "7d", "2w" or plain seconds -> seconds, or nil:
-- the C grammar of INI values and -s (rs.parse_duration), so each reads
-- what the other does.
function M.parse_duration(text)
  if type(text) ~= "string" then return nil end
  return (rs_module.parse_duration(text))
end

-- 93784 -> "1d2h", 125 -> "2m5s", 0.5 -> "0.5s": two largest units.
function M.format_duration(seconds)
  if seconds == nil then return "none" end
  if seconds == false then return "?" end   -- unknown: the server refused PTTL
  if seconds < 0 then return "-" .. M.format_duration(-seconds) end
  if seconds < 10 and seconds ~= math.floor(seconds) then
    return string.format("%.1fs", seconds)
  end
  seconds = math.floor(seconds + 0.5)
  local parts = {}
  for _, u in ipairs { { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } } do
    local n = seconds // u[2]
    if n > 0 or (#parts == 0 and u[1] == "s") then
      parts[#parts + 1] = n .. u[1]
      seconds = seconds - n * u[2]
    end
    if #parts == 2 then break end
  end
  return table.concat(parts)
end

-- Seconds since the epoch -> "2024-05-01T12:00:00Z".
function M.iso_time(seconds)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(seconds))
end

function M.now()
  return host.time and host.time() or os.time()
end

local function clock()
  return host.now and host.now() or os.clock()
end
M.clock = clock

-- ---------------------------------------------------------------------
-- Option parsing
-- ---------------------------------------------------------------------

-- The command line of a script: lib/options.lua, from the script's
-- declaration. cli.parse is the older form, for scripts that are not
-- modules: spec = { name = "x", usage = "text for --help",
--                   options = { match = "string", format = { "table", "json" },
--                               yes = "flag", batch = "integer", ... },
--                   defaults = { ... } }   (the types of lib/options.lua;
-- a table is a choice). Returns the options table (keys with '-' turned
-- into '_'), or nil after printing the help for --help.
local options = require "lib.options"
M.option_name = options.option_name

function M.parse(argv, spec)
  local decl = { name = spec.name, usage = spec.usage, options = {} }
  for name, kind in pairs(spec.options) do
    local choices = type(kind) == "table" and kind or nil
    decl.options[#decl.options + 1] = { name, choices and "choice" or kind, choices = choices }
  end
  table.sort(decl.options, function(a, b) return a[1] < b[1] end)
  local opts = options.parse(argv, decl)
  if opts then
    for k, v in pairs(spec.defaults or {}) do
      if opts[k] == nil then opts[k] = v end
    end
  end
  return opts
end

-- ---------------------------------------------------------------------
-- JSON
-- ---------------------------------------------------------------------

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- A JSON string literal, as the C rows (rs_rows_lua.c) write one: JSON
-- text is UTF-8, so a byte that is not part of UTF-8 text is written as
-- the four characters \xNN (a strict reader takes the output; the exact
-- bytes of a name travel in base64 where they matter).
function M.json_string(s)
  local out = {}
  require("lib.output").split_utf8(s, function(run)
    out[#out + 1] = run:gsub('[%c"\\]', function(c)
      return escapes[c] or string.format("\\u%04x", c:byte())
    end)
  end, function(b) out[#out + 1] = string.format("\\\\x%02x", b:byte()) end)
  return '"' .. table.concat(out) .. '"'
end

function M.json_number(n)
  if n == nil or n == false then return "null" end
  if math.type(n) == "integer" then return tostring(n) end
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == math.floor(n) and math.abs(n) < 2^53 then return string.format("%d", n) end
  return string.format("%.15g", n)
end

-- A reader for one JSON value (export lines): lua-cjson, a private
-- instance that refuses NaN, Infinity and hex numbers as JSON does. Returns
-- the value, or nil and "message at character N". null reads as M.null.
-- cjson reads every number as a float; integral ones below 2^53 (exact in
-- a double) come back as integers, so 1, 1.0 and 1e0 all read as 1.
-- Loaded by the first line read, so the tools that never read JSON run
-- without lua-cjson; M.null is set then.
local cjson
local function json_reader()
  if cjson then return cjson end
  local found, module = pcall(require, "cjson.safe")
  if not found then
    M.fail("reading JSON needs lua-cjson (Debian package lua-cjson, or `luarocks install lua-cjson`): " ..
           tostring(module):match("^[^\n]*"))
  end
  cjson = module.new()
  cjson.decode_invalid_numbers(false)
  M.null = cjson.null
  return cjson
end

-- An integral number below 2^53 as an integer, else nil.
local function json_integer(v)
  return type(v) == "number" and v == math.floor(v) and math.abs(v) < 2^53 and math.tointeger(v) or nil
end
M.json_integer = json_integer

local function integers(v)
  if type(v) == "number" then return json_integer(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do
      if type(x) == "number" or type(x) == "table" then v[k] = integers(x) end
    end
  end
  return v
end

-- As json_decode, numbers left as cjson read them (floats): for a hot
-- loop that converts the one number it needs with json_integer.
function M.json_decode_floats(text)
  local v, err = (cjson or json_reader()).decode(text)
  if v == nil then return nil, (err:gsub("^Expected", "expected")) end
  return v
end

function M.json_decode(text)
  local v, err = M.json_decode_floats(text)
  if v == nil then return nil, err end
  return integers(v)
end

-- ---------------------------------------------------------------------
-- Base64 (RFC 4648, with padding)
-- ---------------------------------------------------------------------

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64enc = {}
for i = 0, 63 do b64enc[i] = b64chars:sub(i + 1, i + 1) end

function M.base64_encode(s)
  local out, n = {}, #s
  for i = 1, n - 2, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a << 16 | b << 8 | c
    out[#out + 1] = b64enc[v >> 18] .. b64enc[v >> 12 & 63] .. b64enc[v >> 6 & 63] .. b64enc[v & 63]
  end
  local rest = n % 3
  if rest == 1 then
    local v = s:byte(n) << 16
    out[#out + 1] = b64enc[v >> 18] .. b64enc[v >> 12 & 63] .. "=="
  elseif rest == 2 then
    local a, b = s:byte(n - 1, n)
    local v = a << 16 | b << 8
    out[#out + 1] = b64enc[v >> 18] .. b64enc[v >> 12 & 63] .. b64enc[v >> 6 & 63] .. "="
  end
  return table.concat(out)
end

-- Returns the bytes, or nil and a reason (strict: groups of 4, "=" only
-- at the end). In C: import decodes a million of them.
M.base64_decode = rs_module.base64_decode

-- ---------------------------------------------------------------------
-- CSV
-- ---------------------------------------------------------------------

-- Quoted as RFC 4180 asks, formula starts neutralised (lib/output.lua).
M.csv_field = output.csv_field

-- ---------------------------------------------------------------------
-- Tokens
-- ---------------------------------------------------------------------

-- What the bundled scripts show about one stored value: size, cluster
-- time, age, relaxed Extended JSON (or the reason it is not a token).
function M.describe_token(bytes, want_json, now)
  local info = { size = #bytes }
  local ok, json = pcall(rs.bson.to_json, bytes)
  if not ok then
    info.error = type(json) == "table" and json.message or tostring(json)
    return info
  end
  if want_json then info.json = json end
  local seconds, increment = rs.token_time(bytes)
  if seconds then
    info.time, info.increment = seconds, increment
    info.age = (now or M.now()) - seconds
  end
  return info
end

-- ---------------------------------------------------------------------
-- Same data set?
-- ---------------------------------------------------------------------

local function random_hex(bytes)
  local parts = {}
  for i = 1, bytes // 4 do parts[i] = string.format("%08x", math.random(0, 0xffffffff)) end
  return table.concat(parts)
end

-- Two identities (store:server_identity()) share data when the db is the
-- same and a master of one is a master of the other (run_id) or of its
-- replication history (replid: a replica of it).
local function shares_master(a, b)
  if a.db ~= b.db then return false end
  for _, x in ipairs(a.masters) do
    for _, y in ipairs(b.masters) do
      if x.run_id == y.run_id or x.replid == y.replid then return true end
    end
  end
  return false
end

-- A random key written through `a` (PX 60000, so it goes away even if we
-- die) and read through `b`, then deleted. Seen: the same keys. The key is
-- "<prefix>.probe:<hex>", outside every "<prefix>:" token walk.
local function probe(a, b, prefix)
  local key, value = prefix .. ".probe:" .. random_hex(16), random_hex(16)
  local ok, err = pcall(a.command, a, "SET", key, value, "PX", "60000")
  if not ok then return nil, "probe write refused: " .. reason(err) end
  local read, seen = pcall(b.command, b, "GET", key)
  pcall(a.command, a, "DEL", key)
  if not read then return nil, "probe read refused: " .. reason(seen) end
  return seen == value
end

-- Whether stores a and b reach the same keys, by what the servers say,
-- never by URL text. Returns true or false and how it was decided ("server
-- identity" or "probe key"), or nil and why it cannot be told. The probe
-- (a write) is used only when INFO is refused and `may_write` is set.
function M.same_data_set(a, b, prefix, may_write)
  local ok_a, id_a = pcall(a.server_identity, a)
  local ok_b, id_b = pcall(b.server_identity, b)
  if ok_a and ok_b then return shares_master(id_a, id_b), "server identity" end
  local why = "INFO failed: " .. reason(ok_a and id_b or id_a)
  if not may_write then return nil, why end
  local same, perr = probe(a, b, prefix)
  if same == nil then return nil, why .. "; " .. perr end
  return same, "probe key"
end

-- Which master a store's calls reach now, for proofs that must survive a
-- failover: the store's count of master changes (Sentinel) and, when INFO
-- is allowed, the server identity (a restart or a promotion changes it).
function M.master_mark(store)
  local ok, id = pcall(store.server_identity, store)
  return { changes = store:master_changes(), id = ok and id or nil }
end

-- Whether two marks name the same master, unchanged in between.
function M.same_master(a, b)
  if a.changes ~= b.changes or (a.id == nil) ~= (b.id == nil) then return false end
  if not a.id then return true end
  if #a.id.masters ~= #b.id.masters then return false end
  for i, m in ipairs(a.id.masters) do
    local n = b.id.masters[i]
    if m.run_id ~= n.run_id or m.replid ~= n.replid then return false end
  end
  return true
end

-- Whether the marks show a change of master (a switch the store saw, or
-- another identity); a mark without identity (INFO failed) shows none.
function M.master_changed(a, b)
  if a.changes ~= b.changes then return true end
  return a.id ~= nil and b.id ~= nil and not M.same_master(a, b)
end

-- Whether the master may have changed between marks a and b: a change
-- shown (master_changed), or an identity known at a but not at b (INFO
-- failed at the end: a master that died, a map not yet refreshed).
function M.master_may_have_changed(a, b)
  return M.master_changed(a, b) or (a.id ~= nil and b.id == nil)
end

-- The values of `names` read between two equal marks: what the current
-- master holds (raises when it keeps changing). Names go 1000 per call.
-- `read(chunk)` reads them (default: store:get_many, token names).
function M.read_on_current_master(store, names, read)
  local values = {}
  for first = 1, #names, 1000 do
    local chunk = table.move(names, first, math.min(first + 999, #names), 1, {})
    local got
    for _ = 1, 5 do
      local before = M.master_mark(store)
      got = read and read(chunk) or store:get_many(chunk, { ttl = false })
      if M.same_master(before, M.master_mark(store)) then break end
      got = nil
    end
    if not got then error("the master kept changing while the tokens were read again", 0) end
    for i = 1, #chunk do values[first + i - 1] = got[i] end
  end
  return values
end

-- ---------------------------------------------------------------------
-- Progress and summary
-- ---------------------------------------------------------------------

-- The progress line (lib/output.lua): stderr only, never among data rows.
M.progress = output.progress

-- The part of a summary line about the keys a walk skipped because their
-- value is not a string (a hash, a list...: written by something else),
-- from its counts table (store:resume_tokens{counts = t}); "" when none.
-- `what` names the thing they are not: "token" or "lock".
function M.not_tokens(counts, what)
  local n = counts.not_strings or 0
  if n == 0 then return "" end
  what = what or "token"
  if n == 1 then return "; 1 key under the prefix is not a " .. what .. " (not a string), left alone" end
  return string.format("; %d keys under the prefix are not %ss (not strings), left alone", n, what)
end

-- The closing line of a run. `to_stderr` for scripts whose stdout carries
-- data (list, export); -q silences it there.
function M.summary(text, to_stderr)
  if to_stderr then
    if not host.quiet then io.stderr:write(text, "\n") end
  else
    io.write(text, "\n")
  end
end

return M
