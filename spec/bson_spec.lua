-- SPDX-License-Identifier: MIT
-- bson_spec.lua -- the BSON codec of the Lua module (no Redis needed).
--
-- Run: LUA_CPATH='build/?.so;;' lua5.4 /usr/bin/busted spec/bson_spec.lua

local rs = require "rigatoni_store"

local encode, decode = rs.bson.encode, rs.bson.decode

-- Raw BSON building blocks, to craft bytes the encoder would never write.
local function element(type_byte, key, value)
  return string.char(type_byte) .. key .. "\0" .. value
end

local function document(...)
  local body = table.concat({ ... })
  return string.pack("<i4", #body + 5) .. body .. "\0"
end

local function bson_string(s)
  return string.pack("<i4", #s + 1) .. s .. "\0"
end

local function int32(n) return string.pack("<i4", n) end

-- Calls f(...) expecting it to raise; returns the error object.
local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function assert_serialization_error(err, pattern)
  assert.are.equal("table", type(err))
  assert.are.equal("serialization", err.kind)
  assert.are.equal("serialization: " .. err.message, tostring(err))
  if pattern then
    assert.truthy(err.message:find(pattern, 1, true),
                  "message was: " .. err.message)
  end
end

local function round_trips(bytes)
  assert.are.equal(bytes, encode(decode(bytes)))
end

-- Big-endian 4-byte integer, for building cluster times.
local function be32(n) return string.pack(">I4", n) end

describe("rs.bson.encode / decode", function()
  local token = { _data = "826553A1B2000000012B022C0100296E5A10045E1A3B" ..
                          "7A4F2E4C1D9B0E7A6F3C2D1E0F46645F696400645F" ..
                          "1D7C3E9B1E8A0001A1B2C30004" }

  it("round-trips a typical resume token", function()
    local bytes = encode(token)
    assert.are.equal(bytes, encode(decode(bytes)))
    assert.are.same(token, decode(bytes))
    -- one string element: 4 (length) + 1 (type) + 6 ("_data\0") +
    -- 4 (string length) + #_data + 1 (NUL) + 1 (end of document)
    assert.are.equal(4 + 1 + 6 + 4 + #token._data + 1 + 1, #bytes)
  end)

  it("keeps the key order of decoded documents", function()
    local bytes = rs.bson.from_json(
      '{"zeta": 1, "alpha": 2, "mike": 3, "bravo": 4, "yankee": 5, ' ..
      '"charlie": 6, "x": 7, "delta": 8, "_id": 9, "echo": 10}')
    round_trips(bytes)
    assert.truthy(rs.bson.to_json(encode(decode(bytes))):find('^{ "zeta"'))
  end)

  it("keeps the order of nested documents, arrays and empty values",
     function()
    local bytes = rs.bson.from_json(
      '{"outer": {"z": {"y": 1, "b": [3, 2, {"q": 1, "c": 2}]}, "a": []},' ..
      ' "list": [[], {}, [[1]]], "empty": {}, "last": "x"}')
    round_trips(bytes)
    local t = decode(bytes)
    assert.are.equal(0, #t.outer.a)
    assert.are.equal(2, t.outer.z.b[2])
  end)

  it("writes remembered keys first, then new keys sorted", function()
    local t = decode(rs.bson.from_json('{"z": 1, "m": 2, "a": 3}'))
    t.m = nil
    t.c, t.b = true, false
    assert.are.equal('{ "z" : 1, "a" : 3, "b" : false, "c" : true }',
                     rs.bson.to_json(encode(t)))
  end)

  it("encodes plain tables with sorted keys (deterministic)", function()
    assert.are.equal('{ "a" : 1, "b" : 2, "c" : 3 }',
                     rs.bson.to_json(encode{ c = 3, a = 1, b = 2 }))
  end)

  it("maps Lua numbers to int32, int64 and double", function()
    local bytes = encode{ small = 7, negative = -2147483648,
                          large = 2147483648, float = 1.5, whole = 2.0 }
    local json = rs.bson.to_json(bytes)
    assert.truthy(json:find('"large" : 2147483648', 1, true))
    local t = decode(bytes)
    assert.are.equal(7, t.small)
    assert.is_true(math.type(t.small) == "integer")
    assert.are.equal(2147483648, t.large)
    assert.is_true(math.type(t.whole) == "float")
    round_trips(bytes)
    local canonical = rs.bson.from_json(
      '{"d": {"$numberDouble": "2.0"}, "i": {"$numberInt": "7"},' ..
      ' "l": {"$numberLong": "9007199254740993"}}')
    assert.are.equal(canonical, encode{ i = 7, l = 9007199254740993,
                                        d = 2.0 })
  end)

  it("round-trips booleans, null, binary and strings with NUL", function()
    local bytes = encode{ yes = true, no = false, none = rs.bson.null,
                          bin = rs.binary("\0\1\2\255", 4),
                          text = "a\0b" }
    round_trips(bytes)
    local t = decode(bytes)
    assert.are.equal(rs.bson.null, t.none)
    assert.are.equal("null", t.none.type)
    assert.are.equal("binary", t.bin.type)
    assert.are.equal(4, t.bin.subtype)
    assert.are.equal("\0\1\2\255", t.bin.data)
    assert.are.equal("a\0b", t.text)
  end)

  it("round-trips every Extended JSON type exactly", function()
    local bytes = rs.bson.from_json([[{
      "oid": {"$oid": "5f1d7c3e9b1e8a0001a1b2c3"},
      "date": {"$date": {"$numberLong": "1600000000123"}},
      "ts": {"$timestamp": {"t": 1700000000, "i": 42}},
      "dec": {"$numberDecimal": "1234.5600"},
      "re": {"$regularExpression": {"pattern": "^abc", "options": "im"}},
      "small_long": {"$numberLong": "5"},
      "min": {"$minKey": 1},
      "max": {"$maxKey": 1},
      "bin": {"$binary": {"base64": "AAECAwQ=", "subType": "80"}},
      "nothing": null
    }]])
    round_trips(bytes)
    local t = decode(bytes)
    assert.are.equal("objectid", t.oid.type)
    assert.are.equal("5f1d7c3e9b1e8a0001a1b2c3", t.oid.hex)
    assert.are.equal("datetime", t.date.type)
    assert.are.equal(1600000000123, t.date.ms)
    assert.are.equal("timestamp", t.ts.type)
    assert.are.equal(1700000000, t.ts.t)
    assert.are.equal(42, t.ts.i)
    assert.are.equal("decimal128", t.dec.type)
    assert.are.equal("1234.5600", t.dec.value)
    assert.are.equal("regex", t.re.type)
    assert.are.equal("^abc", t.re.pattern)
    assert.are.equal("im", t.re.options)
    assert.are.equal("int64", t.small_long.type)
    assert.are.equal(5, t.small_long.value)
    assert.are.equal("minkey", t.min.type)
    assert.are.equal("maxkey", t.max.type)
    assert.are.equal("binary", t.bin.type)
    assert.are.equal(0x80, t.bin.subtype)
    assert.are.equal("\0\1\2\3\4", t.bin.data)
    assert.are.equal(rs.bson.null, t.nothing)
  end)

  it("keeps arrays with unusual keys and repeated keys exact", function()
    local odd_array = document(element(0x04, "a",
      document(element(0x10, "5", int32(1)), element(0x10, "9", int32(2)))))
    round_trips(odd_array)
    assert.are.equal("array", decode(odd_array).a.type)

    local repeated = document(element(0x03, "d",
      document(element(0x10, "k", int32(1)), element(0x10, "k", int32(2)))))
    round_trips(repeated)
    assert.are.equal("document", decode(repeated).d.type)
  end)

  it("keeps regex options exactly as stored", function()
    -- libbson would sort "mi" to "im" if we let it rebuild the regex
    local bytes = document(element(0x0B, "re", "^x\0mi\0"))
    round_trips(bytes)
    assert.are.equal("mi", decode(bytes).re.options)
  end)

  it("encodes empty tables as documents unless marked as arrays", function()
    assert.are.equal('{ "d" : {  }, "a" : [  ] }',
                     rs.bson.to_json(encode(decode(rs.bson.from_json(
                       '{"d": {}, "a": []}')))))
    assert.are.equal('{ "a" : [  ], "d" : {  } }',
                     rs.bson.to_json(encode{ d = {}, a = rs.bson.array{} }))
    assert.are.equal('{ "s" : [ 1, 2 ] }', rs.bson.to_json(encode{ s = { 1, 2 } }))
  end)

  describe("typed values", function()
    it("compare by type and bytes", function()
      assert.are.equal(rs.binary("abc"), rs.binary("abc", 0))
      assert.are_not.equal(rs.binary("abc"), rs.binary("abc", 4))
      assert.are_not.equal(rs.binary("abc"), rs.binary("abd"))
    end)

    it("print as Extended JSON", function()
      assert.are.equal('{ "$binary" : { "base64" : "YWJj", "subType" : "04" } }',
                       tostring(rs.binary("abc", 4)))
      assert.are.equal("null", tostring(rs.bson.null))
    end)

    it("check the binary subtype", function()
      assert.has_error(function() rs.binary("x", 256) end)
      assert.has_error(function() rs.binary("x", -1) end)
    end)
  end)

  describe("rejects", function()
    it("strings that are not UTF-8, naming the field", function()
      local err = raises(encode, { outer = { inner = "\xff\xfe" } })
      assert_serialization_error(err, "field 'outer.inner' is not valid UTF-8")
      err = raises(encode, { list = { "ok", "\xc3" } })
      assert_serialization_error(err, "field 'list[2]'")
    end)

    it("keys that are not UTF-8 or carry NUL", function()
      assert_serialization_error(raises(encode, { ["\xff"] = 1 }), "UTF-8")
      assert_serialization_error(raises(encode, { ["a\0b"] = 1 }), "NUL")
    end)

    it("functions, coroutines and foreign userdata", function()
      assert_serialization_error(raises(encode, { cb = print }),
                                 "field 'cb' has unsupported type function")
      assert_serialization_error(raises(encode, { co = coroutine.create(print) }),
                                 "thread")
      assert_serialization_error(raises(encode, { f = io.stdout }), "userdata")
    end)

    it("cycles", function()
      local t = { name = "loop" }
      t.self = t
      assert_serialization_error(raises(encode, t), "cycle")
      local a = { }
      a.b = { c = { a } }
      assert_serialization_error(raises(encode, { a = a }), "cycle")
    end)

    it("but not the same table twice side by side", function()
      local shared = { x = 1 }
      assert.are.equal('{ "a" : { "x" : 1 }, "b" : { "x" : 1 } }',
                       rs.bson.to_json(encode{ a = shared, b = shared }))
    end)

    it("non-string keys in documents", function()
      assert_serialization_error(raises(encode, { 1, 2, x = 3 }), "non-string key")
      assert_serialization_error(raises(encode, { d = { [1.5] = 1 } }),
                                 "field 'd' has a non-string key")
      assert_serialization_error(raises(encode, { [true] = 1 }), "boolean")
    end)

    it("nesting deeper than 100 levels", function()
      local deep = {}
      local t = deep
      for _ = 1, 100 do t.n = {} t = t.n end
      round_trips(encode(deep))
      t.n = {}
      assert_serialization_error(raises(encode, deep), "100 levels")
    end)

    it("documents over 16 MiB", function()
      local big = string.rep("x", 16 * 1024 * 1024)
      assert_serialization_error(raises(encode, { big = big }), "limit")
    end)

    it("truncated or garbage bytes", function()
      local bytes = encode(token)
      assert_serialization_error(raises(decode, bytes:sub(1, -2)),
                                 "not a BSON document")
      assert_serialization_error(raises(decode, bytes .. "\0"))
      assert_serialization_error(raises(decode, "garbage!"))
      assert_serialization_error(raises(decode, ""))
      -- a correct length prefix around corrupt elements
      assert_serialization_error(raises(decode, document("\x02x\0\xff\xff\xff\x7f")))
      assert_serialization_error(raises(decode, document(element(0x99, "x", ""))))
      -- a nested document whose last byte is not NUL
      local inner = document(element(0x10, "k", int32(1)))
      assert_serialization_error(raises(decode,
        document(element(0x03, "d", inner:sub(1, -2) .. "x"))))
      -- code with scope whose code string lacks its NUL
      local scope = document("")
      local code = string.pack("<i4", 2) .. "xy"
      assert_serialization_error(raises(decode, document(element(0x0F, "c",
        string.pack("<i4", 4 + #code + #scope) .. code .. scope))))
    end)

    it("BSON strings and keys that are not UTF-8", function()
      assert_serialization_error(raises(decode,
        document(element(0x02, "s", bson_string("\xff")))))
      assert_serialization_error(raises(decode,
        document(element(0x10, "\xff", int32(1)))))
    end)

    it("bad Extended JSON", function()
      assert_serialization_error(raises(rs.bson.from_json, "{not json"),
                                 "Extended JSON")
    end)
  end)
end)

describe("rs.bson.to_json", function()
  it("writes relaxed Extended JSON", function()
    assert.are.equal('{ "_data" : "82AB", "n" : 1, "ok" : true }',
                     rs.bson.to_json(encode{ _data = "82AB", n = 1, ok = true }))
    assert.are.equal('{ "d" : { "$date" : "2020-09-13T12:26:40Z" } }',
      rs.bson.to_json(rs.bson.from_json(
        '{"d": {"$date": {"$numberLong": "1600000000000"}}}')))
  end)

  it("refuses bytes that are not BSON", function()
    assert_serialization_error(raises(rs.bson.to_json, "nope"))
  end)
end)

describe("rs.token_time", function()
  local seconds, increment = 1700000123, 77

  it("reads a hex string _data", function()
    local hex = ("82%08X%08X2B022C0100296E5A1004"):format(seconds, increment)
    local s, i = rs.token_time{ _data = hex }
    assert.are.equal(seconds, s)
    assert.are.equal(increment, i)
    -- the same from raw bytes, and with lower-case hex
    s, i = rs.token_time(encode{ _data = hex:lower() })
    assert.are.equal(seconds, s)
    assert.are.equal(increment, i)
  end)

  it("reads a BinData _data (old servers)", function()
    local data = "\x82" .. be32(seconds) .. be32(increment) .. "\x2b\x02"
    local s, i = rs.token_time{ _data = rs.binary(data, 0) }
    assert.are.equal(seconds, s)
    assert.are.equal(increment, i)
  end)

  it("handles the full unsigned range", function()
    local s, i = rs.token_time{ _data = "82FFFFFFFFFFFFFFFE" }
    assert.are.equal(0xFFFFFFFF, s)
    assert.are.equal(0xFFFFFFFE, i)
  end)

  it("gives nil for tokens without a cluster time", function()
    assert.is_nil(rs.token_time{ other = "82" })
    assert.is_nil(rs.token_time{ _data = "01AABBCCDD00000001" })
    assert.is_nil(rs.token_time{ _data = "82AB" })
    assert.is_nil(rs.token_time{ _data = 42 })
    assert.is_nil(rs.token_time("not bson"))
  end)

  it("refuses to decode a document whose top-level key repeats (it could not re-encode exactly)", function()
    local bytes = rs.bson.from_json('{"_data": "8201", "_data": "8202"}')
    local ok, err = pcall(rs.bson.decode, bytes)
    assert.is_false(ok)
    assert.are.equal("serialization", err.kind)
    assert.matches("repeats", err.message, 1, true)
  end)
end)
