-- SPDX-License-Identifier: MIT
-- spec/scripts_spec.lua -- the bundled maintenance scripts, run through the
-- built `rigatoni-store` binary against real redis-servers: list, export,
-- import, migrate (two servers), cleanup, locks, stats.

local servers = require "support.servers"
local rs = require "rigatoni_store"
local system = require "system"
local quote = servers.quote

package.path = "scripts/?.lua;" .. package.path
local cli = require "lib.cli"   -- its JSON reader and base64, to check output

local PREFIX = "rigatoni:resume_token:"

local helpers = require "support.helpers"
local read_file, write_file, run = helpers.read_file, helpers.write_file, helpers.run_host
local BIN = helpers.BIN

-- Token bytes whose _data carries cluster time `seconds`.
local function token(seconds, n)
  return rs.bson.encode { _data = string.format("82%08X%08X2B022C0100296E5A1004", seconds, n or 1) }
end

local DAY = 86400
local NOW = os.time()

local function seed(srv, list)
  local store <close> = rs.new { url = srv.url }
  for _, t in ipairs(list) do store:save_raw(t[1], t[2], t[3] or false) end
end

local function ttl_of(srv, collection)
  return tonumber(srv:cli("PTTL", PREFIX .. collection)) / 1000
end

local function jsonl(text)
  local rows = {}
  for line in text:gmatch("[^\n]+") do rows[#rows + 1] = assert(cli.json_decode(line)) end
  return rows
end

describe("bundled scripts", function()
  local a, b, tmpdir

  setup(function()
    a = servers.redis {}
    b = servers.redis {}
    local p = io.popen("mktemp -d")
    tmpdir = p:read("l")
    p:close()
  end)

  teardown(function()
    if a then a:stop() end
    if b then b:stop() end
    os.execute("rm -rf " .. quote(tmpdir))
  end)

  before_each(function()
    a:cli("FLUSHALL")
    b:cli("FLUSHALL")
  end)

  for _, name in ipairs { "list", "export", "import", "migrate", "cleanup", "locks", "stats" } do
    it(name .. " --help prints its usage and exits 0", function()
      local code, out = run { name, "--help" }
      assert.equal(0, code)
      assert.matches("usage: rigatoni%-store", out)
      assert.matches("example:", out)
    end)

    it(name .. " rejects an unknown option with exit 2", function()
      local code, _, err = run { "-u", a.url, name, "--no-such-option" }
      assert.equal(2, code)
      assert.matches("unknown option %-%-no%-such%-option", err)
    end)
  end

  describe("list", function()
    before_each(function()
      seed(a, { { "users", token(NOW - 2 * DAY) }, { "orders", token(NOW - 3600), 600 },
                { "archive.items", token(NOW - 40 * DAY) } })
      a:set_raw(PREFIX .. "broken", "not bson")
    end)

    it("prints a table with TTL, size, cluster time and age; corrupt values are not fatal", function()
      local code, out, err = run { "-u", a.url, "list" }
      assert.equal(0, code, err)
      assert.matches("COLLECTION", out)
      assert.matches("users%s+none%s+%d+%s+%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ%s+2d", out)
      assert.matches("orders%s+%d+m", out)
      assert.matches("broken%s+none%s+8%s+CORRUPT", out)
      assert.matches("list: 4 tokens %(1 corrupt%)", err)
    end)

    it("--format jsonl gives one object per token with the token as Extended JSON", function()
      local code, out = run { "-u", a.url, "list", "--format", "jsonl" }
      assert.equal(0, code)
      local rows = {}
      for _, r in ipairs(jsonl(out)) do rows[r.collection] = r end
      assert.equal(NOW - 2 * DAY, rows.users.cluster_time_seconds)
      assert.equal(cli.iso_time(NOW - 2 * DAY), rows.users.cluster_time)
      assert.equal(#token(0), rows.users.size)
      assert.equal(cli.null, rows.users.ttl_seconds)
      assert.is_true(rows.orders.ttl_seconds > 590 and rows.orders.ttl_seconds <= 600)
      assert.equal(string.format("82%08X%08X2B022C0100296E5A1004", NOW - 3600, 1), rows.orders.token._data)
      assert.is_truthy(rows.broken.error)
      assert.equal(cli.null, rows.broken.token)
    end)

    it("--format json gives one array", function()
      local code, out = run { "-u", a.url, "list", "--format", "json" }
      assert.equal(0, code)
      local rows = assert(cli.json_decode(out))
      assert.equal(4, #rows)
    end)

    it("--format csv has a header and quotes fields", function()
      local code, out = run { "-u", a.url, "list", "--format", "csv" }
      assert.equal(0, code)
      assert.matches("^collection,ttl_seconds,size,cluster_time,age_seconds,status,stream_level,"
                     .. "stream_database,stream_collection,mirror_of\n", out)
      assert.matches("\nusers,,%d+,[%dT:Z-]+,%d+,ok,,,,\n", out)
      assert.matches('\nbroken,,8,,,"corrupt: [^"]*",,,,\n', out)
    end)

    it("--match filters on the collection name", function()
      local code, out, err = run { "-u", a.url, "list", "--match", "arch*", "--format", "jsonl" }
      assert.equal(0, code)
      local rows = jsonl(out)
      assert.equal(1, #rows)
      assert.equal("archive.items", rows[1].collection)
      assert.matches("list: 1 token ", err)
    end)

    it("writes no progress line when stderr is not a terminal, and -q silences the summary", function()
      local code, _, err = run { "-u", a.url, "list" }
      assert.equal(0, code)
      assert.not_matches("\r", err)
      code, _, err = run { "-q", "-u", a.url, "list" }
      assert.equal(0, code)
      assert.equal("", err)
    end)
  end)

  describe("export and import", function()
    it("export then import into an empty server gives identical bytes and TTLs", function()
      local odd = rs.bson.encode { _data = "8263A5F0C2000000012B", extra = { n = 1, t = true } }
      seed(a, { { "users", token(NOW - DAY) }, { "orders", token(NOW), 3600 }, { "odd", odd, 86400 } })
      local file = tmpdir .. "/export.jsonl"
      local started = system.gettime()
      local code, out, err = run { "-u", a.url, "export", "--output", file }
      assert.equal(0, code, err)
      assert.equal("", out)
      assert.matches("export: 3 tokens to ", err)
      local rows = jsonl(read_file(file))
      assert.equal(3, #rows)
      for _, r in ipairs(rows) do
        assert.equal(a:cli_raw("GET", PREFIX .. r.collection), cli.base64_decode(r.bson_base64))
      end

      code, out, err = run { "-u", b.url, "import", "--input", file }
      assert.equal(0, code, err)
      assert.matches("import: 3 written, 0 skipped", out)
      for _, c in ipairs { "users", "orders", "odd" } do
        assert.equal(a:cli_raw("GET", PREFIX .. c), b:cli_raw("GET", PREFIX .. c))
      end
      assert.equal("-1", b:cli("PTTL", PREFIX .. "users"))
      -- The export keeps the TTL left when it read it; the import starts
      -- it again: b's TTL is a's plus at most the time since the export
      -- started (seconds on a loaded machine), never less than a's.
      for _, c in ipairs { "orders", "odd" } do
        local ttl_b = ttl_of(b, c)    -- b first: a's read comes later, so
        local ttl_a = ttl_of(a, c)    -- the gap between them only adds
        local elapsed = system.gettime() - started
        assert.is_true(ttl_b >= ttl_a - 0.01 and ttl_b - ttl_a <= elapsed + 0.01,
                       ("%s: ttl %.3f s on the target, %.3f s on the source, %.3f s since the export"):format(
                         c, ttl_b, ttl_a, elapsed))
      end
    end)

    it("export writes to stdout by default and import reads stdin", function()
      seed(a, { { "users", token(NOW) } })
      local code, out = run { "-u", a.url, "export" }
      assert.equal(0, code)
      local code2, out2, err2 = run({ "-u", b.url, "import" }, { stdin = out })
      assert.equal(0, code2, err2)
      assert.matches("1 written", out2)
      assert.equal(a:cli_raw("GET", PREFIX .. "users"), b:cli_raw("GET", PREFIX .. "users"))
    end)

    it("a bad line is reported by line number and nothing is written", function()
      local good = '{"collection":"c1","bson_base64":"' .. cli.base64_encode(token(NOW)) .. '","ttl_ms":null}\n'
      local input = good .. good:gsub("c1", "c2") .. '{"collection":"c3","bson_base64":"!!!!"}\n' ..
                    good:gsub("c1", "c4")
      local code, out, err = run({ "-u", b.url, "import" }, { stdin = input })
      assert.equal(2, code)
      assert.matches("stdin:3: 'bson_base64'", err)
      assert.matches("nothing was written", err)
      assert.equal("0", b:cli("DBSIZE"))
      assert.equal("", out)
    end)

    it("bytes that are not BSON and bad JSON are bad lines", function()
      local function line(c, bytes) return '{"collection":"' .. c .. '","bson_base64":"' .. cli.base64_encode(bytes) .. '"}\n' end
      local code, _, err = run({ "-u", b.url, "import" },
                               { stdin = line("x", "junk!") .. "{oops\n" .. line("y", token(1)) })
      assert.equal(2, code)
      assert.matches("stdin:1:", err)
      assert.matches("stdin:2: not JSON", err)
      assert.equal("0", b:cli("DBSIZE"))
    end)

    it("a collection exported twice (a listing that started over) takes its later line", function()
      local function line(c, bytes) return '{"collection":"' .. c .. '","bson_base64":"' .. cli.base64_encode(bytes) .. '"}\n' end
      local code, out, err = run({ "-u", b.url, "import" },
                                 { stdin = line("y", token(1)) .. line("z", token(5)) .. line("y", token(2)) })
      assert.equal(0, code, err)
      assert.matches("stdin:3: collection 'y' again %(first on line 1%); the later line is used", err)
      assert.matches("2 written", out)
      assert.equal(token(2), b:cli_raw("GET", PREFIX .. "y"))
      assert.equal(token(5), b:cli_raw("GET", PREFIX .. "z"))
    end)

    it("the later line wins across batches, from a file and from stdin", function()
      local function line(c, bytes, ttl)
        return '{"collection":"' .. c .. '","bson_base64":"' .. cli.base64_encode(bytes) .. '"' ..
               (ttl and (',"ttl_ms":' .. ttl) or "") .. '}\n'
      end
      local input = line("y", token(1)) .. line("a", token(7)) .. line("y", token(2), 60000) ..
                    line("b", token(8)) .. "\n" .. line("c", token(9)) .. line("y", token(3)) ..
                    line("d", token(10))
      local file = tmpdir .. "/dups.jsonl"
      write_file(file, input)
      for _, args in ipairs { { "--input", file }, {} } do
        b:cli("FLUSHALL")
        local argv = { "-u", b.url, "import", "--batch", "2" }
        table.move(args, 1, #args, #argv + 1, argv)
        local code, out, err = run(argv, { stdin = input })
        assert.equal(0, code, err)
        local where = args[1] and file or "stdin"
        assert.matches(where .. ":3: collection 'y' again %(first on line 1%)", err)
        assert.matches(where .. ":7: collection 'y' again %(first on line 3%)", err)
        assert.matches("5 written, 0 skipped", out)
        assert.equal(token(3), b:cli_raw("GET", PREFIX .. "y"))
        assert.equal("-1", b:cli("PTTL", PREFIX .. "y"))
        for c, n in pairs { a = 7, b = 8, c = 9, d = 10 } do
          assert.equal(token(n), b:cli_raw("GET", PREFIX .. c))
        end
      end
    end)

    it("a pipe goes through a temporary file that is removed after success and after errors", function()
      local good = '{"collection":"c1","bson_base64":"' .. cli.base64_encode(token(NOW)) .. '"}\n'
      local src = tmpdir .. "/piped.jsonl"
      -- stdin as a pipe (run_host gives a regular file, which is read twice instead)
      local function piped(url, input)
        write_file(src, input)
        local out, err = tmpdir .. "/piped.out", tmpdir .. "/piped.err"
        local _, _, code = os.execute(("cat %s | env -u RIGATONI_STORE_CONFIG %s -vv -u %s import >%s 2>%s")
                                      :format(quote(src), quote(BIN), quote(url), quote(out), quote(err)))
        return code, read_file(out), read_file(err)
      end
      local function spool_of(err)
        local path = err:match("stdin is copied to (%S+)")
        assert.is_not_nil(path, err)
        return path
      end
      local code, out, err = piped(b.url, good)
      assert.equal(0, code, err)
      assert.matches("1 written", out)
      assert.is_nil(io.open(spool_of(err)))
      -- a bad line: pass 1 fails
      code, _, err = piped(b.url, good .. "{oops\n")
      assert.equal(2, code)
      assert.matches("stdin:2: not JSON", err)
      assert.is_nil(io.open(spool_of(err)))
      -- no server: pass 2 fails
      code, _, err = piped("redis://127.0.0.1:" .. servers.closed_port(), good)
      assert.equal(1, code)
      assert.is_nil(io.open(spool_of(err)))
      -- a regular file on stdin is read twice, not copied
      b:cli("FLUSHALL")
      code, out, err = run({ "-vv", "-u", b.url, "import" }, { stdin = good })
      assert.equal(0, code, err)
      assert.matches("1 written", out)
      assert.not_matches("copied to", err)
    end)

    it("--input a named pipe is copied once and imported", function()
      local good = '{"collection":"c1","bson_base64":"' .. cli.base64_encode(token(NOW)) .. '"}\n'
      local src, fifo = tmpdir .. "/fifo-src.jsonl", tmpdir .. "/fifo"
      write_file(src, good .. good:gsub("c1", "c2"))
      os.remove(fifo)
      assert.is_true(os.execute("mkfifo " .. quote(fifo)))
      -- the writer blocks until import opens the pipe, and writes it once
      assert.is_true(os.execute(("cat %s > %s &"):format(quote(src), quote(fifo))))
      local code, out, err = run { "-vv", "-u", b.url, "import", "--input", fifo }
      os.remove(fifo)
      assert.equal(0, code, err)
      assert.matches("2 written", out)
      assert.matches("is copied to", err)
      assert.equal(token(NOW), b:cli_raw("GET", PREFIX .. "c2"))
    end)

    it("reads lines with lua-cjson as strictly as JSON is written", function()
      local b64 = cli.base64_encode(token(NOW))
      local function try(text)
        local code, out, err = run({ "-u", b.url, "import" }, { stdin = text .. "\n" })
        return code, out, err
      end
      for text, message in pairs {
        ['5'] = "stdin:1: expected a JSON object",
        ['"x"'] = "stdin:1: expected a JSON object",
        ['{"collection":"a","bson_base64":"' .. b64 .. '"} x'] = "stdin:1: not JSON: expected the end but found invalid token at character %d+",
        ['{"collection":"a","bson_base64":"' .. b64 .. '","ttl_ms":NaN}'] = "stdin:1: not JSON",
        ['{"collection":"a","bson_base64":"' .. b64 .. '","ttl_ms":0x10}'] = "stdin:1: not JSON",
        ['{"collection":"a","bson_base64":"' .. b64 .. '","ttl_ms":1.5}'] = "'ttl_ms' must be null or a non%-negative integer",
        ['{"collection":"a","bson_base64":"' .. b64 .. '","ttl_ms":-1}'] = "'ttl_ms' must be null or a non%-negative integer",
        ['{"collection":"a","bson_base64":"' .. b64 .. '","ttl_ms":1e300}'] = "'ttl_ms' 1%d+: ttl 1e%+297 s is over the longest TTL Redis accepts",
        ['{"collection":"a","bson_base64":"' .. b64 .. '","ttl_ms":"5"}'] = "'ttl_ms' must be null or a non%-negative integer",
        ['{"collection":null,"bson_base64":"' .. b64 .. '"}'] = "'collection' must be a non%-empty string",
        ['{"collection":"","bson_base64":"' .. b64 .. '"}'] = "'collection' must be a non%-empty string",
        ['[1,2]'] = "'collection' must be a non%-empty string",
        ['{"collection":"a","bson_base64":5}'] = "'bson_base64' must be a string",
        ['{"collection":"a","bson_base64":"' .. b64:sub(2) .. '"}'] = "'bson_base64': base64 length",
        ['{"collection":"\\ud800","bson_base64":"' .. b64 .. '"}'] = "stdin:1: not JSON",
      } do
        local code, out, err = try(text)
        assert.equal(2, code, text)
        assert.matches(message, err, 1, false, text)
        assert.matches("nothing was written", err)
        assert.equal("", out)
      end
      assert.equal("0", b:cli("DBSIZE"))
      -- an integral number in any JSON spelling is an integer; extra fields are ignored
      local code, out, err = try('{"collection":"a","bson_base64":"' .. b64 ..
                                 '","ttl_ms":6e4,"token":{"_data":"x"},"more":[null]}')
      assert.equal(0, code, err)
      assert.matches("1 written", out)
      assert.is_true(math.abs(ttl_of(b, "a") - 60) < 2)
      -- names are bytes: raw non-UTF-8 bytes are kept as they are, \u escapes read as UTF-8
      code, out, err = try('{"collection":"raw\255\254","bson_base64":"' .. b64 .. '"}\n' ..
                           '{"collection":"caf\\u00e9 \\ud83d\\ude00","bson_base64":"' .. b64 .. '"}')
      assert.equal(0, code, err)
      assert.matches("2 written", out)
      assert.equal(token(NOW), b:cli_raw("GET", PREFIX .. "raw\255\254"))
      assert.equal(token(NOW), b:cli_raw("GET", PREFIX .. "caf\195\169 \240\159\152\128"))
    end)

    it("keeps existing tokens unless --overwrite; --dry-run writes nothing", function()
      seed(a, { { "users", token(NOW) }, { "orders", token(NOW) } })
      seed(b, { { "users", token(1) } })
      local _, export = run { "-u", a.url, "export" }
      local code, out = run({ "-u", b.url, "import", "--dry-run" }, { stdin = export })
      assert.equal(0, code)
      assert.matches("1 would be written, 1 skipped", out)
      assert.equal("1", b:cli("DBSIZE"))
      code, out = run({ "-u", b.url, "import", "--skip-existing" }, { stdin = export })
      assert.matches("1 written, 1 skipped", out)
      assert.equal(token(1), b:cli_raw("GET", PREFIX .. "users"))
      code, out = run({ "-u", b.url, "import", "--overwrite" }, { stdin = export })
      assert.equal(0, code)
      assert.matches("2 written, 0 skipped", out)
      assert.equal(token(NOW), b:cli_raw("GET", PREFIX .. "users"))
    end)

    it("--ttl none drops TTLs and --ttl DURATION sets one", function()
      seed(a, { { "users", token(NOW), 3600 } })
      local _, export = run { "-u", a.url, "export" }
      run({ "-u", b.url, "import", "--ttl", "none" }, { stdin = export })
      assert.equal("-1", b:cli("PTTL", PREFIX .. "users"))
      run({ "-u", b.url, "import", "--ttl", "2h", "--overwrite" }, { stdin = export })
      assert.is_true(math.abs(ttl_of(b, "users") - 7200) < 2)
      local code, _, err = run({ "-u", b.url, "import", "--ttl", "soon" }, { stdin = export })
      assert.equal(2, code)
      assert.matches("%-%-ttl must be", err)
    end)
  end)

  describe("migrate", function()
    it("copies exact bytes to another server with the TTL preserved within a second", function()
      local list = {}
      for i = 1, 2500 do list[#list + 1] = { "c" .. i, token(NOW - i, i), i % 2 == 0 and 3600 + i or nil } end
      seed(a, list)
      local code, out, err = run { "-u", a.url, "migrate", "--to", b.url, "--batch", "700" }
      assert.equal(0, code, err)
      assert.matches("migrate: 2500 copied, 0 skipped %(already on target%), 0 failed", out)
      for _, i in ipairs { 1, 2, 777, 2500 } do
        local c = "c" .. i
        assert.equal(a:cli_raw("GET", PREFIX .. c), b:cli_raw("GET", PREFIX .. c))
        if i % 2 == 0 then
          assert.is_true(math.abs(ttl_of(a, c) - ttl_of(b, c)) < 1)
        else
          assert.equal("-1", b:cli("PTTL", PREFIX .. c))
        end
      end
    end)

    it("keeps existing target tokens unless --overwrite, and is safe to re-run", function()
      seed(a, { { "users", token(NOW) }, { "orders", token(NOW) } })
      seed(b, { { "users", token(5) } })
      local code, out = run { "-u", a.url, "migrate", "--to", b.url }
      assert.equal(0, code)
      assert.matches("1 copied, 1 skipped", out)
      assert.equal(token(5), b:cli_raw("GET", PREFIX .. "users"))
      code, out = run { "-u", a.url, "migrate", "--to", b.url }
      assert.matches("0 copied, 2 skipped", out)
      code, out = run { "-u", a.url, "migrate", "--to", b.url, "--overwrite" }
      assert.matches("2 copied, 0 skipped", out)
      assert.equal(token(NOW), b:cli_raw("GET", PREFIX .. "users"))
    end)

    it("--dry-run writes nothing", function()
      seed(a, { { "users", token(NOW) } })
      local code, out = run { "-u", a.url, "migrate", "--to", b.url, "--dry-run" }
      assert.equal(0, code)
      assert.matches("1 would be copied", out)
      assert.equal("0", b:cli("DBSIZE"))
    end)

    it("--delete-source deletes only verified copies", function()
      seed(a, { { "users", token(NOW) }, { "orders", token(NOW) } })
      seed(b, { { "orders", token(9) } })   -- differs: must stay on the source
      local code, out = run { "-u", a.url, "migrate", "--to", b.url, "--delete-source" }
      assert.equal(0, code)
      assert.matches("1 copied, 1 skipped .* 1 deleted from source", out)
      assert.equal("0", a:cli("EXISTS", PREFIX .. "users"))
      assert.equal("1", a:cli("EXISTS", PREFIX .. "orders"))
      assert.equal(token(NOW), b:cli_raw("GET", PREFIX .. "users"))
    end)

    it("--to-prefix copies within one server; overlapping prefixes are refused", function()
      seed(a, { { "users", token(NOW), 100 } })
      local code, out = run { "-u", a.url, "migrate", "--to-prefix", "v2:tokens" }
      assert.equal(0, code)
      assert.matches("1 copied", out)
      assert.equal(token(NOW), a:cli_raw("GET", "v2:tokens:users"))
      assert.is_true(tonumber(a:cli("TTL", "v2:tokens:users")) > 90)
      local err
      code, _, err = run { "-u", a.url, "migrate", "--to-prefix", "rigatoni:resume_token:v2" }
      assert.equal(2, code)
      assert.matches("overlap", err)
      code, _, err = run { "-u", a.url, "migrate" }
      assert.equal(2, code)
      assert.matches("a target is needed", err)
    end)

    it("--to-config reads the target from an INI file", function()
      seed(a, { { "users", token(NOW) } })
      local ini = write_file(tmpdir .. "/target.ini", "[redis]\nurl = ${TARGET_URL}\nkey_prefix = tgt\n")
      local code, out, err = run({ "-u", a.url, "migrate", "--to-config", ini }, { env = { TARGET_URL = b.url } })
      assert.equal(0, code, err)
      assert.matches("1 copied", out)
      assert.equal(token(NOW), b:cli_raw("GET", "tgt:users"))
    end)

    it("masks the target password in its output", function()
      local secured = servers.redis { password = "targetpw" }
      seed(a, { { "users", token(NOW) } })
      local code, out, err = run { "-u", a.url, "migrate", "--to", "redis://:targetpw@127.0.0.1:" .. secured.port }
      local code2, out2, err2 = run { "-u", a.url, "migrate", "--to", "redis://:badpw99@127.0.0.1:" .. secured.port }
      secured:stop()
      assert.equal(0, code, err)
      assert.not_matches("targetpw", out .. err)
      assert.equal(1, code2)
      assert.not_matches("badpw99", out2 .. err2)
    end)
  end)

  describe("cleanup", function()
    before_each(function()
      seed(a, { { "old", token(NOW - 60 * DAY) }, { "fresh", token(NOW - DAY) },
                { "old_ttl", token(NOW - 90 * DAY), 5000 } })
      a:set_raw(PREFIX .. "broken", "xx")
    end)

    it("without --yes prints the plan and changes nothing", function()
      local code, out = run { "-u", a.url, "cleanup", "--older-than", "30d", "--set-ttl", "7d" }
      assert.equal(0, code)
      assert.matches("would delete old ", out)
      assert.matches("would delete old_ttl ", out)
      assert.matches("would set TTL 7d on fresh", out)
      assert.matches("nothing changed", out)
      assert.equal("4", a:cli("DBSIZE"))
      assert.equal("-1", a:cli("TTL", PREFIX .. "fresh"))
    end)

    it("--dry-run wins over --yes", function()
      local code, out = run { "-u", a.url, "cleanup", "--older-than", "30d", "--yes", "--dry-run" }
      assert.equal(0, code)
      assert.matches("nothing changed", out)
      assert.equal("4", a:cli("DBSIZE"))
    end)

    it("--older-than --yes deletes tokens older than the cluster-time age, keeps unknown ages", function()
      local code, out = run { "-u", a.url, "cleanup", "--older-than", "30d", "--yes" }
      assert.equal(0, code)
      assert.matches("cleanup: 2 deleted", out)
      assert.matches("1 of unknown age kept", out)
      assert.equal("0", a:cli("EXISTS", PREFIX .. "old"))
      assert.equal("0", a:cli("EXISTS", PREFIX .. "old_ttl"))
      assert.equal("1", a:cli("EXISTS", PREFIX .. "fresh"))
      assert.equal("1", a:cli("EXISTS", PREFIX .. "broken"))
    end)

    it("--set-ttl --yes gives a TTL only to tokens without one", function()
      local code, out = run { "-u", a.url, "cleanup", "--set-ttl", "1h", "--yes" }
      assert.equal(0, code)
      assert.matches("TTL set on 3", out)
      assert.is_true(math.abs(tonumber(a:cli("TTL", PREFIX .. "fresh")) - 3600) < 3)
      assert.is_true(tonumber(a:cli("TTL", PREFIX .. "old_ttl")) > 4000)
    end)

    it("needs something to do", function()
      local code, _, err = run { "-u", a.url, "cleanup", "--yes" }
      assert.equal(2, code)
      assert.matches("nothing to do", err)
    end)
  end)

  describe("locks", function()
    it("lists locks with owner and TTL and releases one only with --yes", function()
      a:cli("SET", "rigatoni:lock:shop:orders", "host-1-uuid", "EX", "60")
      a:cli("SET", "rigatoni:lock:__deployment__", "host-2-uuid")
      local code, out = run { "-u", a.url, "locks" }
      assert.equal(0, code)
      assert.matches("rigatoni:lock:shop:orders%s+%d+[ms]%d*s?%s+host%-1%-uuid", out)
      assert.matches("rigatoni:lock:__deployment__%s+none%s+host%-2%-uuid", out)
      assert.matches("locks: 2 held", out)

      code, out = run { "-u", a.url, "locks", "--match", "shop:*" }
      assert.matches("locks: 1 held", out)

      code, out = run { "-u", a.url, "locks", "--release", "shop:orders" }
      assert.equal(0, code)
      assert.matches("would release rigatoni:lock:shop:orders held by host%-1%-uuid", out)
      assert.equal("1", a:cli("EXISTS", "rigatoni:lock:shop:orders"))

      code, out = run { "-u", a.url, "locks", "--release", "rigatoni:lock:shop:orders", "--yes" }
      assert.equal(0, code)
      assert.matches("released", out)
      assert.equal("0", a:cli("EXISTS", "rigatoni:lock:shop:orders"))

      local err
      code, _, err = run { "-u", a.url, "locks", "--release", "shop:orders", "--yes" }
      assert.equal(1, code)
      assert.matches("not held", err)
    end)

    it("lists only the keys of a lock_prefix holding glob characters", function()
      for _, prefix in ipairs{ "lk[1]", "lk*", "lk?", "lk\\x" } do
        a:cli("FLUSHALL")
        a:cli("SET", prefix .. ":mine", "me")
        -- What the prefix would match as a glob, but is not under it.
        for _, other in ipairs{ "lk1:other", "lkz:other", "lkxy:other", "lkx:other", "lk[1]x:other" } do
          if other:sub(1, #prefix + 1) ~= prefix .. ":" then a:cli("SET", other, "them") end
        end
        local code, out, err = run { "-u", a.url, "-s", "redis.lock_prefix=" .. prefix, "locks" }
        assert.equal(0, code, err)
        -- (the table escapes a backslash as \\: lib/output.lua's text)
        assert.is_truthy(out:find(prefix:gsub("\\", "\\\\") .. ":mine", 1, true), out)
        assert.not_matches("other", out)
        assert.matches("locks: 1 held", out)
      end
    end)
  end)

  describe("stats", function()
    it("counts tokens, TTLs, corrupt values and cluster-time range", function()
      seed(a, { { "x", token(NOW - DAY) }, { "y", token(NOW - 2 * DAY), 100 } })
      a:set_raw(PREFIX .. "z", "bad")
      local code, out = run { "-u", a.url, "stats" }
      assert.equal(0, code)
      assert.matches("tokens%s+3\n", out)
      assert.matches("with_ttl%s+1\n", out)
      assert.matches("corrupt%s+1\n", out)
      assert.is_truthy(out:find("oldest_cluster_time    " .. cli.iso_time(NOW - 2 * DAY), 1, true))
      assert.matches("stats: 3 tokens, 2 without TTL", out)
    end)
  end)

  describe("passwords", function()
    it("never appear in the output of any script", function()
      local secured = servers.redis { password = "sekr1tpass" }
      local url = "redis://:sekr1tpass@127.0.0.1:" .. secured.port
      local store <close> = rs.new { url = url }
      store:save_raw("users", token(NOW))
      local runs = {
        { "list" }, { "list", "--format", "jsonl" }, { "export" }, { "stats" }, { "locks" },
        { "cleanup", "--older-than", "1d" }, { "migrate", "--to-prefix", "p2", "--dry-run" },
        { "import", "--dry-run" }, { "-v", "-e", "error('x')" },
      }
      for _, args in ipairs(runs) do
        local argv = { "-u", url }
        for _, x in ipairs(args) do argv[#argv + 1] = x end
        local _, out, err = run(argv, { stdin = "" })
        assert.not_matches("sekr1tpass", out .. err, table.concat(args, " "))
      end
      secured:stop()
    end)
  end)
end)
