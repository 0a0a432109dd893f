-- SPDX-License-Identifier: MIT
-- spec/token_lines_spec.lua -- the rows of `list --format json/jsonl` and
-- the lines of `export`, formatted in C (rs.list_row, rs.export_line and
-- store:token_lines, a batch at a time), are byte for byte the rows the
-- scripts wrote in Lua: the reference below is that Lua code, built on
-- scripts/lib/cli.lua's json_string, json_number and base64_encode.

local servers = require "support.servers"
local rs = require "rigatoni_store"

package.path = "scripts/?.lua;" .. package.path
local cli = require "lib.cli"

local json_string, json_number = cli.json_string, cli.json_number
_G.rs = rs   -- lib.cli reads the global the host sets
local fmt = string.format
local NOW = 1800000000.25

-- list.lua's row, as it was written in Lua.
local function ref_list_row(collection, bytes, ttl, now, mirror_of)
  local info = cli.describe_token(bytes, true, now)
  local level, database, stream_coll = rs.parse_stream_key(collection)
  local parts = { '{"collection":', json_string(collection), ',"ttl_seconds":', json_number(ttl),
                  ',"size":', tostring(info.size) }
  if info.time then
    parts[#parts + 1] = fmt(',"cluster_time":"%s","cluster_time_seconds":%d,"increment":%d,"age_seconds":%d',
                            cli.iso_time(info.time), info.time, info.increment, math.floor(info.age))
  else
    parts[#parts + 1] = ',"cluster_time":null'
  end
  if info.error then
    parts[#parts + 1] = ',"token":null,"error":' .. json_string(info.error)
  else
    parts[#parts + 1] = ',"token":' .. info.json
  end
  if level then
    parts[#parts + 1] = fmt(',"stream":{"level":%s,"database":%s,"collection":%s}', json_string(level),
                            database and json_string(database) or "null",
                            stream_coll and json_string(stream_coll) or "null")
  elseif mirror_of then
    local names = {}
    for i, n in ipairs(mirror_of) do names[i] = json_string(n) end
    parts[#parts + 1] = ',"mirror_of":[' .. table.concat(names, ",") .. "]"
  end
  parts[#parts + 1] = "}"
  return table.concat(parts)
end

-- export.lua's line, as it was written in Lua: nil, message for non-BSON.
local function ref_export_line(collection, bytes, ttl)
  local good, json = pcall(rs.bson.to_json, bytes)
  if not good then return nil, json.message end
  local ttl_ms = ttl and math.max(1, math.floor(ttl * 1000 + 0.5))
  return '{"collection":' .. json_string(collection) .. ',"bson_base64":"' .. cli.base64_encode(bytes) ..
         '","token":' .. json .. ',"ttl_ms":' .. (ttl_ms and tostring(ttl_ms) or "null") .. "}\n"
end

local function token(seconds, n)
  return rs.bson.encode { _data = fmt("82%08X%08X2B022C0100296E5A1004", seconds, n) }
end

-- Names and values that exercise every branch: escapes, UTF-8, stream
-- keys of each level, a mirror, no cluster time, other BSON types, not BSON.
local TOKENS = {
  { "plain", token(1700000000, 1) },
  { 'quo"te\\back', token(1700000001, 2) },
  { "ctl\1\31\127tab\t nl\n cr\r bs\b ff\f", token(1700000002, 3) },
  { "utf8 é 日本", token(1799999999, 4) },
  { "resume_token:shop:orders", token(1700000004, 5) },
  { "resume_token:database:shop", token(1700000005, 6) },
  { "resume_token:deployment", token(1700000006, 7) },
  { "orders", token(1700000007, 8) },
  { "no time", rs.bson.encode { _data = "zz" } },
  { "typed", rs.bson.encode { _data = fmt("82%08X%08X", 1700000009, 9), n = 2^40, b = rs.binary("\0\1\2", 4),
                              s = 'x"\n' } },
  { "data quote", rs.bson.encode { _data = 'a"b\\c' } },
  { "data utf8", rs.bson.encode { _data = "82é\127\1" } },
  { "data empty", rs.bson.encode { _data = "" } },
  { "data and more", rs.bson.encode { _data = "82AB", x = 1 } },
  { "data int", rs.bson.encode { _data = 5 } },
  { "bad", "not bson at all" },
  { "one byte", "\5" },
}
local MIRRORS = { orders = { "resume_token:shop:orders", "resume_token:other:orders" } }

local function by_collection(text, pattern)
  local rows = {}
  for line in text:gmatch("[^\n]*\n") do
    local name = assert(line:match(pattern), line)
    rows[#rows + 1] = line
    rows[name] = line
  end
  return rows
end

describe("C rows of list and export", function()
  local srv

  setup(function()
    srv = servers.redis {}
    local store <close> = rs.new { url = srv.url }
    for _, t in ipairs(TOKENS) do store:save_raw(t[1], t[2], false) end
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  it("rs.list_row and rs.export_line write the Lua rows, for every TTL shape", function()
    for _, ttl in ipairs { false, 0, 1000.0, 999.988, 0.0004, 12345.5, 604799.999 } do
      for _, t in ipairs(TOKENS) do
        local name, bytes, ttl_arg = t[1], t[2], ttl or nil
        assert.are.equal(ref_list_row(name, bytes, ttl_arg, NOW, MIRRORS[name]),
                         rs.list_row(name, bytes, ttl_arg, NOW, MIRRORS[name]))
        local want, want_why = ref_export_line(name, bytes, ttl_arg)
        local got, got_why = rs.export_line(name, bytes, ttl_arg)
        assert.are.equal(want, got)
        assert.are.equal(want_why, got_why)
      end
    end
  end)

  it("token_lines{format = 'list'} gives the jsonl rows of the walk, a batch per step", function()
    local store <close> = rs.new { url = srv.url }
    local text, rows, bad, steps = {}, 0, 0, 0
    for chunk, n, b, skipped in store:token_lines { format = "list", batch = 3, now = NOW, mirrors = MIRRORS } do
      text[#text + 1] = chunk
      rows, bad, steps = rows + n, bad + b, steps + 1
      assert.is_nil(skipped)
    end
    local got = by_collection(table.concat(text), '^{"collection":"(.-)","ttl')
    assert.are.equal(#TOKENS, rows)
    assert.are.equal(#TOKENS, #got)
    assert.are.equal(2, bad)
    assert.is_true(steps > 1)
    for _, t in ipairs(TOKENS) do
      local want = ref_list_row(t[1], t[2], nil, NOW, MIRRORS[t[1]]) .. "\n"
      assert.are.equal(want, got[json_string(t[1]):sub(2, -2)])
    end
  end)

  it("token_lines{format = 'export'} gives the export lines and the values it skipped", function()
    local store <close> = rs.new { url = srv.url }
    srv:cli("PEXPIRE", "rigatoni:resume_token:plain", "5000000")
    local text, rows, skipped_all = {}, 0, {}
    for chunk, n, b, skipped in store:token_lines { format = "export", batch = 4 } do
      text[#text + 1] = chunk
      rows = rows + n
      assert.are.equal(b, skipped and #skipped or 0)
      for _, s in ipairs(skipped or {}) do skipped_all[s[1]] = s[2] end
    end
    local got = by_collection(table.concat(text), '^{"collection":"(.-)","bson')
    assert.are.equal(#TOKENS - 2, rows)
    for _, t in ipairs(TOKENS) do
      local key = json_string(t[1]):sub(2, -2)
      if t[1] == "plain" then   -- its TTL as the walk read it
        local ms = assert(tonumber(got[key]:match('"ttl_ms":(%d+)}')))
        assert.is_true(ms > 4000000 and ms <= 5000000)
        assert.are.equal(ref_export_line(t[1], t[2], ms / 1000), got[key])
      else
        local want, why = ref_export_line(t[1], t[2], nil)
        assert.are.equal(want, got[key])
        assert.are.equal(why, skipped_all[t[1]])
      end
    end
  end)

  it("token_lines needs a known format and known options", function()
    local store <close> = rs.new { url = srv.url }
    local ok, err = pcall(store.token_lines, store, {})
    assert.is_false(ok)
    assert.are.equal("config", err.kind)
    assert.matches('format must be "list" or "export"', err.message, 1, true)
    ok, err = pcall(store.token_lines, store, { format = "csv" })
    assert.is_false(ok)
    assert.are.equal("config", err.kind)
    ok, err = pcall(store.token_lines, store, { format = "list", raw = true })
    assert.is_false(ok)
    assert.matches("raw", tostring(err), 1, true)
  end)
end)

-- import reads export's bson_base64 with it: every byte value, and each
-- malformed shape named by the offset of its group.
describe("rs.base64_decode", function()
  local rs = require "rigatoni_store"
  package.path = "scripts/?.lua;" .. package.path
  local cli = require "lib.cli"

  it("decodes what the encoder wrote, for every length and byte", function()
    for len = 0, 300 do
      local bytes = {}
      for i = 1, len do bytes[i] = string.char((i * 37 + len) % 256) end
      local s = table.concat(bytes)
      assert.equal(s, rs.base64_decode(cli.base64_encode(s)), "length " .. len)
    end
    assert.equal("\0\1\2\3\4", rs.base64_decode("AAECAwQ="))
  end)

  it("refuses malformed text with the reason", function()
    local cases = {
      { "QQ=", "base64 length is not a multiple of 4" },
      { "!!!!", "invalid base64 at offset 1" },
      { "QUJD RA=", "invalid base64 at offset 5" },
      { "QUJDRA=A", "invalid base64 at offset 5" },   -- "=" inside
      { "A=B=", "invalid base64 at offset 1" },
      { "====", "invalid base64 at offset 1" },
      { "QUJD\nRA=", "invalid base64 at offset 5" },
    }
    for _, case in ipairs(cases) do
      local bytes, why = rs.base64_decode(case[1])
      assert.is_nil(bytes, case[1])
      assert.equal(case[2], why, case[1])
    end
  end)
end)
