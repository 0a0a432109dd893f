-- SPDX-License-Identifier: MIT
-- spec/output_spec.lua -- what the tools write and where: export --output
-- replaces only what it may (a regular file or a new one; a symlink's
-- target; a FIFO or /dev/stdout written through), SIGINT/SIGTERM stop a
-- run cleanly (no temporary file left, exit 130/143, TMPDIR honoured),
-- hostile collection names render safely (CSV, table, Prometheus checked
-- by promtool), and the progress line never lands inside data rows on a
-- terminal (a pty from script(1)). Real redis-servers through the built
-- `rigatoni-store` binary; the fault proxy slows a walk down.

local servers = require "support.servers"
local proxy = require "support.proxy"
local helpers = require "support.helpers"
local rs = require "rigatoni_store"

package.path = "scripts/?.lua;" .. package.path
local cli = require "lib.cli"

local quote, read_file, write_file, run, capture = helpers.quote, helpers.read_file, helpers.write_file,
                                                   helpers.run_host, helpers.capture
local BIN = helpers.BIN
local PREFIX = "rigatoni:resume_token:"
local NOW = os.time()

local function token(seconds, n)
  return rs.bson.encode { _data = string.format("82%08X%08X2B022C0100296E5A1004", seconds, n or 1) }
end

local function seed(srv, names)
  local store <close> = rs.new { url = srv.url }
  local items = {}
  for i, name in ipairs(names) do items[i] = { name, token(NOW - 3600, i) } end
  store:save_many(items)
end

local function seed_n(srv, n)
  local names = {}
  for i = 1, n do names[i] = string.format("coll%06d", i) end
  seed(srv, names)
end

local function sleep(s) os.execute("sleep " .. s) end

-- Waits up to `timeout` seconds for fn() to return a true value.
local function wait_for(fn, timeout)
  local deadline = os.time() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    sleep(0.05)
  until os.time() > deadline
  return nil
end

-- The names in a folder (ls -A), sorted.
local function listing(dir)
  local out = capture("ls -A " .. quote(dir))
  local names = {}
  for n in out:gmatch("[^\n]+") do names[#names + 1] = n end
  table.sort(names)
  return names
end

local function mode_of(path) return (capture("stat -c %a " .. quote(path)):gsub("%s+$", "")) end

-- The shell text that runs the host with `args` (shell words), its pid
-- written to `pidfile`, SIGINT and SIGTERM at their defaults (a background
-- job of sh starts with SIGINT ignored).
local function host_cmd(pidfile, args)
  return ("sh -c 'echo $$ >%s; exec env --default-signal=INT,TERM,HUP,PIPE \"$@\"' sh %s %s"):format(
    quote(pidfile), quote(BIN), args)
end

-- Runs shell text `cmd` in the background; :wait() gives its exit status.
local function spawn(dir, cmd)
  local rcf = dir .. "/rc"
  os.remove(rcf)
  os.execute(("(%s; echo $? >%s) &"):format(cmd, quote(rcf)))
  return { wait = function(timeout)
    return tonumber(wait_for(function() return (read_file(rcf) or ""):match("%d+") end, timeout))
  end }
end

local function pid_in(file, timeout)
  return wait_for(function() return (read_file(file) or ""):match("%d+") end, timeout)
end

describe("output", function()
  local srv, dir

  setup(function()
    srv = servers.redis {}
    dir = (capture("mktemp -d"):gsub("%s+$", ""))
  end)

  teardown(function()
    if srv then srv:stop() end
    os.execute("rm -rf " .. quote(dir))
  end)

  before_each(function()
    srv:cli("FLUSHALL")
    os.execute("rm -rf " .. quote(dir) .. "/* " .. quote(dir) .. "/.[!.]*")
  end)

  -- -------------------------------------------------------------------
  describe("export --output", function()
    it("replaces a regular file through a temporary file in its folder, keeping its mode", function()
      seed(srv, { "a", "b" })
      local file = dir .. "/tokens.jsonl"
      write_file(file, "old\n", "640")
      local code, out, err = run { "-u", srv.url, "export", "--output", file }
      assert.equal(0, code, err)
      assert.equal("", out)
      assert.equal(2, select(2, read_file(file):gsub("\n", "")))
      assert.equal("640", mode_of(file))
      assert.same({ "tokens.jsonl" }, listing(dir))
    end)

    it("run as root, keeps the owner and group of the file it replaces (as sed -i does)", function()
      if capture("id -u"):match("%d+") ~= "0" then return pending("needs root") end
      seed(srv, { "a" })
      local file = dir .. "/theirs.jsonl"
      write_file(file, "old\n", "640")
      os.execute("chown 65534:65534 " .. quote(file))
      local code, _, err = run { "-u", srv.url, "export", "--output", file }
      assert.equal(0, code, err)
      assert.matches('"collection":"a"', read_file(file))
      assert.equal("65534:65534 640", (capture("stat -c '%u:%g %a' " .. quote(file)):gsub("%s+$", "")))
    end)

    it("creates a missing file with the mode the umask allows", function()
      seed(srv, { "a" })
      local file = dir .. "/new.jsonl"
      local code, _, err = run("-u " .. srv.url .. " export --output " .. quote(file))
      assert.equal(0, code, err)
      assert.matches('"collection":"a"', read_file(file))
      local umask = tonumber(capture("sh -c umask"):match("%d+"), 8)
      assert.equal(string.format("%o", 438 & ~umask), mode_of(file))
    end)

    it("follows a symlink: the link stays a link and its target gets the tokens", function()
      seed(srv, { "a" })
      os.execute("mkdir " .. quote(dir .. "/real"))
      write_file(dir .. "/real/target.jsonl", "old\n")
      os.execute(("ln -s real/target.jsonl %s"):format(quote(dir .. "/link")))
      local code, _, err = run { "-u", srv.url, "export", "--output", dir .. "/link" }
      assert.equal(0, code, err)
      assert.is_true(os.execute("test -L " .. quote(dir .. "/link")))
      assert.matches('"collection":"a"', read_file(dir .. "/real/target.jsonl"))
      assert.same({ "target.jsonl" }, listing(dir .. "/real"))
      -- a link to a file that does not exist yet: the file is created there
      os.execute(("ln -s real/later.jsonl %s"):format(quote(dir .. "/dangling")))
      code, _, err = run { "-u", srv.url, "export", "--output", dir .. "/dangling" }
      assert.equal(0, code, err)
      assert.is_true(os.execute("test -L " .. quote(dir .. "/dangling")))
      assert.matches('"collection":"a"', read_file(dir .. "/real/later.jsonl"))
    end)

    it("writes through a FIFO: its reader gets every line and the FIFO stays", function()
      seed(srv, { "a", "b", "c" })
      local fifo, got = dir .. "/fifo", dir .. "/got"
      assert.is_true(os.execute("mkfifo " .. quote(fifo)))
      os.execute(("timeout 20 cat %s >%s &"):format(quote(fifo), quote(got)))
      local code, _, err = run { "-u", srv.url, "export", "--output", fifo }
      assert.equal(0, code, err)
      assert.is_true(os.execute("test -p " .. quote(fifo)))
      local text = wait_for(function()
        local t = read_file(got) or ""
        return select(2, t:gsub("\n", "")) == 3 and t
      end, 10)
      assert.is_truthy(text)
      assert.same({ "fifo", "got" }, listing(dir))
    end)

    it("writes through /dev/fd/1, /dev/stdout and a character device", function()
      seed(srv, { "a" })
      for _, path in ipairs { "/dev/fd/1", "/dev/stdout" } do
        local code, out, err = run { "-u", srv.url, "export", "--output", path }
        assert.equal(0, code, err)
        assert.matches('^{"collection":"a"', out)
        assert.matches("export: 1 token to " .. path, err)
      end
      assert.is_true(os.execute("test -L /dev/stdout"))
      -- a character device (/dev/null, the only one written here) stays one
      local code, out, err = run { "-u", srv.url, "export", "--output", "/dev/null" }
      assert.equal(0, code, err)
      assert.equal("", out)
      assert.is_true(os.execute("test -c /dev/null"))
      assert.equal("", (capture("ls -A /dev | grep -F .tmp.")))
    end)

    it("refuses a folder or a path in a missing folder before connecting (exit 2)", function()
      local closed = "redis://127.0.0.1:" .. servers.closed_port()
      local code, _, err = run { "-u", closed, "export", "--output", dir }
      assert.equal(2, code)
      assert.matches("%-%-output .*is a directory", err)
      code, _, err = run { "-u", closed, "export", "--output", dir .. "/no/such/file" }
      assert.equal(2, code)
      assert.matches("%-%-output .*no/such", err)
    end)
  end)

  -- -------------------------------------------------------------------
  describe("SIGINT and SIGTERM", function()
    local slow

    before_each(function()
      seed_n(srv, 600)
      slow = proxy.start(srv)
      slow:set("delay", 0.02)
    end)

    after_each(function() if slow then slow:stop() end end)

    for sig, status in pairs { INT = 130, TERM = 143, HUP = 129 } do
      it("SIG" .. sig .. " mid-export removes the temporary file and exits " .. status, function()
        local out = dir .. "/out"
        os.execute("mkdir " .. quote(out))
        local file = out .. "/tokens.jsonl"
        local pidf = dir .. "/host.pid"
        local job = spawn(dir, host_cmd(pidf, ("-u %s export --batch 5 --output %s 2>%s"):format(
          slow.url, quote(file), quote(dir .. "/err"))))
        local pid = pid_in(pidf)
        -- mid-run: the temporary file exists and has lines in it
        local tmp = wait_for(function()
          local names = listing(out)
          return #names == 1 and #(read_file(out .. "/" .. names[1]) or "") > 0 and names[1]
        end, 15)
        assert.is_truthy(tmp, "no temporary file appeared")
        os.execute("kill -" .. sig .. " " .. pid)
        local rc = job.wait(15)
        assert.equal(status, rc)
        assert.same({}, listing(out))
        assert.matches("interrupted by SIG" .. sig, read_file(dir .. "/err"))
      end)
    end

    it("SIGPIPE (stderr a pipe whose reader is gone) mid-export removes the temporary file; exit 141", function()
      for i = 1, 40 do srv:cli("SET", PREFIX .. "notbson" .. i, "x") end   -- a warning each, mid-walk
      local out = dir .. "/out"
      os.execute("mkdir " .. quote(out))
      local pidf = dir .. "/host.pid"
      -- `true` has exited long before the first warning: every write to stderr raises SIGPIPE
      local job = spawn(dir, ("(%s 2>&1; echo $? >%s) | true"):format(
        host_cmd(pidf, ("-u %s export --batch 5 --output %s"):format(slow.url, quote(out .. "/tokens.jsonl"))),
        quote(dir .. "/pipe_rc")))
      job.wait(30)
      assert.equal("141", (read_file(dir .. "/pipe_rc") or ""):match("%d+"))
      assert.same({}, listing(out))
    end)

    it("a script whose work runs in a coroutine stops at the first signal", function()
      local pidf = dir .. "/host.pid"
      local code = [[local f, p = host.temp_file(arg[1]) f:write("x") f:flush()
        coroutine.wrap(function() while true do pcall(function() while true do end end) end end)()]]
      local job = spawn(dir, host_cmd(pidf, ("-e %s %s 2>%s"):format(quote(code), quote(dir), quote(dir .. "/err"))))
      local pid = pid_in(pidf)
      assert.is_truthy(wait_for(function() return #listing(dir) > 2 end, 10), "no temporary file")
      os.execute("kill -TERM " .. pid)
      local rc = job.wait(5)
      if not rc then os.execute("kill -KILL " .. pid) end
      assert.equal(143, rc)
      assert.same({ "err", "host.pid", "rc" }, listing(dir))
    end)

    it("SIGINT mid-cleanup --yes still reports what was deleted, then exits 130", function()
      local pidf = dir .. "/host.pid"
      local job = spawn(dir, host_cmd(pidf, ("-u %s cleanup --older-than 30m --yes --batch 5 >%s 2>%s"):format(
        slow.url, quote(dir .. "/out"), quote(dir .. "/err"))))
      local pid = pid_in(pidf)
      assert.is_truthy(wait_for(function() return tonumber(srv:cli("DBSIZE")) < 590 end, 15), "nothing deleted")
      os.execute("kill -INT " .. pid)
      assert.equal(130, job.wait(15))
      local said = read_file(dir .. "/out") or ""
      local deleted = tonumber(said:match("cleanup %(stopped%): (%d+) deleted"))
      assert.is_truthy(deleted, said .. (read_file(dir .. "/err") or ""))
      -- the delete the signal cut short is in doubt (it ran; its reply was dropped)
      local doubt = said:find("1 in doubt", 1, true) and 1 or 0
      assert.equal(600 - tonumber(srv:cli("DBSIZE")), deleted + doubt, said)
      assert.matches("interrupted by SIGINT", read_file(dir .. "/err"))
    end)

    it("SIGINT mid-migrate --delete-source still reports what was copied and deleted, then exits 130", function()
      local target = servers.redis {}
      finally(function() target:stop() end)
      local pidf = dir .. "/host.pid"
      local job = spawn(dir, host_cmd(pidf, ("-u %s migrate --to %s --delete-source --batch 5 >%s 2>%s"):format(
        slow.url, target.url, quote(dir .. "/out"), quote(dir .. "/err"))))
      local pid = pid_in(pidf)
      assert.is_truthy(wait_for(function() return tonumber(srv:cli("DBSIZE")) < 590 end, 15), "nothing deleted")
      os.execute("kill -INT " .. pid)
      assert.equal(130, job.wait(15))
      local said = read_file(dir .. "/out") or ""
      local copied = tonumber(said:match("migrate %(stopped%): (%d+) copied"))
      assert.is_truthy(copied, said .. (read_file(dir .. "/err") or ""))
      -- every copy counted is on the target; the sources deleted are the ones said
      -- (a delete the signal cut short is in doubt: it ran, its reply was dropped)
      local on_target = tonumber(target:cli("DBSIZE"))
      local unverified = tonumber(said:match("(%d+) unverified")) or 0
      assert.is_true(copied <= on_target and on_target <= copied + unverified, said)
      local deleted = tonumber(said:match("(%d+) deleted from source"))
      local doubt = said:find("1 in doubt", 1, true) and 1 or 0
      assert.equal(600 - tonumber(srv:cli("DBSIZE")), deleted + doubt, said)
      assert.matches("interrupted by SIGINT", read_file(dir .. "/err"))
    end)

    it("a script's pcall cannot swallow the stop", function()
      local pidf = dir .. "/host.pid"
      local code = [[local f, p = host.temp_file(arg[1]) f:write("x") f:flush()
        while true do pcall(function() while true do end end) end]]
      local job = spawn(dir, host_cmd(pidf, ("-e %s %s 2>%s"):format(quote(code), quote(dir), quote(dir .. "/err"))))
      local pid = pid_in(pidf)
      assert.is_truthy(wait_for(function() return #listing(dir) > 2 end, 10), "no temporary file")
      os.execute("kill -TERM " .. pid)
      assert.equal(143, job.wait(10))
      assert.same({ "err", "host.pid", "rc" }, listing(dir))
    end)

    it("SIGTERM mid-import from a pipe removes its copy of the pipe (in TMPDIR) and exits 143", function()
      local tmpdir = dir .. "/tmp"
      os.execute("mkdir " .. quote(tmpdir))
      local lines = {}
      for i = 1, 50 do
        lines[i] = '{"collection":"p' .. i .. '","bson_base64":"' .. cli.base64_encode(token(NOW, i)) .. '"}'
      end
      write_file(dir .. "/src.jsonl", table.concat(lines, "\n") .. "\n")
      -- the writer keeps the pipe open: import is still copying when the signal comes
      local writer = dir .. "/writer.pid"
      local pidf = dir .. "/host.pid"
      local job = spawn(dir, ("sh -c %s | env TMPDIR=%s %s"):format(
        quote("echo $$ >" .. quote(writer) .. "; cat " .. quote(dir .. "/src.jsonl") .. "; exec sleep 30"),
        quote(tmpdir), host_cmd(pidf, ("-u %s import 2>%s"):format(srv.url, quote(dir .. "/err")))))
      local host_pid = pid_in(pidf)
      assert.is_truthy(host_pid, "import did not start")
      local spool = wait_for(function()
        local names = listing(tmpdir)
        return #names == 1 and #(read_file(tmpdir .. "/" .. names[1]) or "") > 0 and names[1]
      end, 10)
      os.execute("kill -TERM " .. host_pid)
      -- the pipeline ends when its writer does: stop that once the host is gone
      local gone = wait_for(function() return not os.execute("kill -0 " .. host_pid .. " 2>/dev/null") end, 15)
      local wpid = (read_file(writer) or ""):match("%d+")
      if wpid then os.execute("kill " .. wpid .. " 2>/dev/null") end
      assert.is_truthy(gone, "import did not stop")
      local rc = job.wait(15)
      assert.is_truthy(spool, "no copy of the pipe appeared in TMPDIR")
      assert.equal(143, rc)
      assert.same({}, listing(tmpdir))
      assert.equal("600", srv:cli("DBSIZE"))
      assert.matches("interrupted by SIGTERM", read_file(dir .. "/err"))
    end)
  end)

  -- -------------------------------------------------------------------
  describe("hostile names", function()
    it("CSV neutralises formula starts as OWASP recommends, and --help says so", function()
      local names = { "=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain" }
      seed(srv, names)
      local code, out, err = run { "-u", srv.url, "list", "--format", "csv" }
      assert.equal(0, code, err)
      assert.is_truthy(out:find('\n"\'=HYPERLINK(""http://x"")",', 1, true), out)
      assert.is_truthy(out:find('\n"\'+1",', 1, true), out)
      assert.is_truthy(out:find('\n"\'-2",', 1, true), out)
      assert.is_truthy(out:find('\n"\'@SUM(A1)",', 1, true), out)
      assert.is_truthy(out:find('\n"\'\tx",', 1, true), out)
      assert.is_truthy(out:find('\n"\'\rx",', 1, true), out)
      assert.is_truthy(out:find("\nplain,", 1, true), out)
      local _, help = run { "list", "--help" }
      assert.matches("formula", help)
    end)

    it("CSV neutralises a formula after leading blanks and quotes a cell holding ; (a separator elsewhere)", function()
      seed(srv, { " =cmd", "  \t+1", "\n@x", "a;=cmd", "b;c" })
      local code, out, err = run { "-u", srv.url, "list", "--format", "csv" }
      assert.equal(0, code, err)
      assert.is_truthy(out:find('\n"\' =cmd",', 1, true), out)
      assert.is_truthy(out:find('\n"\'  \t+1",', 1, true), out)
      assert.is_truthy(out:find('\n"\'\n@x",', 1, true), out)
      assert.is_truthy(out:find('\n"a;=cmd",', 1, true), out)
      assert.is_truthy(out:find('\n"b;c",', 1, true), out)
    end)

    it("the table format escapes control characters: a name cannot forge a row", function()
      seed(srv, { "evil\nforged                           none  99  2020-01-01T00:00:00Z  1d", "tab\there",
                  "esc\27[2Jx", "back\\slash", "bad\255utf8" })
      local code, out, err = run { "-u", srv.url, "list" }
      assert.equal(0, code, err)
      local rows = {}
      for line in out:gmatch("[^\n]*\n") do rows[#rows + 1] = line end
      assert.equal(6, #rows, out)
      assert.is_truthy(out:find("evil\\nforged", 1, true))
      assert.is_truthy(out:find("tab\\there", 1, true))
      assert.is_truthy(out:find("esc\\x1b[2Jx", 1, true))
      assert.is_truthy(out:find("back\\\\slash", 1, true))
      assert.is_truthy(out:find("bad\\xffutf8", 1, true))
      assert.is_nil(out:find("[\0-\9\11-\31\127]"))
    end)

    it("json, jsonl and export stay UTF-8 for a name that is not: \\xNN in the text, the exact bytes in " ..
       "collection_base64, and import restores them", function()
      local weird = "bad\255name\\x41\195"   -- 0xFF, a literal \x41, a cut sequence
      seed(srv, { weird, "caf\195\169" })
      local cli = require "lib.cli"
      for _, format in ipairs { "json", "jsonl" } do
        local code, out, err = run { "-u", srv.url, "list", "--format", format }
        assert.equal(0, code, err)
        assert.is_truthy(utf8.len(out), format .. " output is not UTF-8: " .. out)
        assert.is_truthy(out:find('"collection":"bad\\\\xffname\\\\x41\\\\xc3","collection_base64":"', 1, true), out)
        assert.is_truthy(out:find('"collection":"caf\195\169","ttl_seconds"', 1, true), out)
      end
      local path = dir .. "/weird.jsonl"
      local code, _, err = run { "-u", srv.url, "export", "--output", path }
      assert.equal(0, code, err)
      local text = read_file(path)
      assert.is_truthy(utf8.len(text), text)
      local names = {}
      for line in text:gmatch("[^\n]+") do
        local rec = assert(cli.json_decode(line))
        names[#names + 1] = rec.collection_base64 and cli.base64_decode(rec.collection_base64) or rec.collection
      end
      table.sort(names)
      assert.same({ weird, "caf\195\169" }, names)
      srv:cli("FLUSHALL")
      code, _, err = run { "-u", srv.url, "import", "--input", path }
      assert.equal(0, code, err)
      local store <close> = rs.new { url = srv.url }
      assert.is_truthy(store:get_raw(weird), "the exact name was not restored")
      assert.is_truthy(store:get_raw("caf\195\169"))
      assert.equal("2", srv:cli("DBSIZE"))
    end)

    it("cleanup's plan escapes control characters in names", function()
      local store <close> = rs.new { url = srv.url }
      store:save_raw("old\nwould delete forged", token(NOW - 90 * 86400), false)
      local code, out, err = run { "-u", srv.url, "cleanup", "--older-than", "30d" }
      assert.equal(0, code, err)
      assert.is_truthy(out:find("would delete old\\nwould delete forged ", 1, true), out)
      assert.equal(2, select(2, out:gsub("\n", "")), out)
    end)

    it("locks escapes control characters in lock keys and owners", function()
      srv:cli("SET", "rigatoni:lock:shop:or\nders", "host-1\rforged")
      local code, out, err = run { "-u", srv.url, "locks" }
      assert.equal(0, code, err)
      assert.equal(3, select(2, out:gsub("\n", "")), out)
      assert.is_truthy(out:find("rigatoni:lock:shop:or\\nders", 1, true), out)
      assert.is_truthy(out:find("host-1\\rforged", 1, true), out)
    end)

    it("one label escaper (lib.output prom_label): the format's three escapes, \\xNN for what is not UTF-8 text", function()
      local output = require "lib.output"
      local cases = {
        { "plain", "plain" },
        { "caf\195\169", "caf\195\169" },                           -- valid UTF-8 passes as it is
        { 'quo"te', 'quo\\"te' },
        { "new\nline", "new\\nline" },
        { "back\\slash", "back\\\\slash" },                        -- one backslash: \\ in the text, \ in the value
        { "bad\255\254", "bad\\\\xff\\\\xfe" },                   -- the value reads bad\xff\xfe
        { "nul\0x", "nul\\\\x00x" },
        { "tab\tcr\r", "tab\\\\x09cr\\\\x0d" },
        { "\194\155csi", "\194\155csi" },                            -- U+009B is UTF-8: kept
        { "lit\\xff", "lit\\\\x5cxff" },                            -- a literal \x cannot pass for a bad byte
      }
      local lines = {}
      for i, c in ipairs(cases) do
        assert.equal(c[2], output.prom_label(c[1]), ("case %d"):format(i))
        lines[#lines + 1] = ('t{v="%s"} %d\n'):format(output.prom_label(c[1]), i)
      end
      -- distinct names, distinct values: a bad byte and its spelling differ
      assert.are_not.equal(output.prom_label("a\255"), output.prom_label("a\\xff"))
      -- and no two names of the bytes an escape is made of (up to 4 of
      -- them: 11^4 names) give one value
      local alphabet = { "\\", "x", "f", "5", "c", '"', "\n", "\1", "\255", "\195", "\169" }
      local seen, n = {}, 0
      local function walk(name, depth)
        local v = output.prom_label(name)
        assert.is_nil(seen[v], ("%q and %q give %q"):format(seen[v] or "", name, v))
        seen[v], n = name, n + 1
        if depth == 4 then return end
        for _, c in ipairs(alphabet) do walk(name .. c, depth + 1) end
      end
      walk("", 0)
      assert.equal(1 + 11 + 11^2 + 11^3 + 11^4, n)
      local file = write_file(os.tmpname(), "# HELP t labels\n# TYPE t gauge\n" .. table.concat(lines))
      local check, ok = capture("promtool check metrics <" .. quote(file) .. " 2>&1")
      os.remove(file)
      assert.is_true(ok, check)
    end)

    it("Prometheus label values are valid UTF-8 with NUL escaped; promtool accepts the exposition", function()
      seed(srv, { "bad\255\254", "nul\0x", "new\nline", 'quo"te', "back\\slash", "caf\195\169",
                  "resume_token:db\255:c\0ol", rs.stream_key("shop", "orders") })
      srv:cli("PEXPIRE", PREFIX .. "bad\255\254", "600000")
      local code, out, err = run { "-u", srv.url, "list", "--format", "prometheus" }
      assert.equal(0, code, err)
      assert.is_truthy(utf8.len(out), "not valid UTF-8")
      assert.is_nil(out:find("\0", 1, true))
      assert.is_truthy(out:find('collection="bad\\\\xff\\\\xfe"', 1, true), out)
      assert.is_truthy(out:find('collection="nul\\\\x00x"', 1, true), out)
      assert.is_truthy(out:find('collection="new\\nline"', 1, true), out)
      assert.is_truthy(out:find('collection="quo\\"te"', 1, true), out)
      assert.is_truthy(out:find('collection="back\\\\slash"', 1, true), out)
      assert.is_truthy(out:find('collection="caf\195\169"', 1, true), out)
      assert.matches('\nrigatoni_resume_token_ttl_seconds{collection="bad\\\\xff\\\\xfe"} 5%d%d%.%d+\n', out)
      -- not UTF-8: not a stream key, one collection label
      assert.is_truthy(out:find('collection="resume_token:db\\\\xff:c\\\\x00ol"', 1, true), out)
      assert.is_truthy(out:find('{level="collection",database="shop",collection="orders"}', 1, true), out)
      local file = write_file(os.tmpname(), out)
      local check, ok = capture("promtool check metrics <" .. quote(file) .. " 2>&1")
      os.remove(file)
      assert.is_true(ok, check)
    end)
  end)

  -- -------------------------------------------------------------------
  describe("progress on a terminal", function()
    local slow

    before_each(function()
      seed_n(srv, 800)
      slow = proxy.start(srv)
      slow:set("delay", 0.01)
    end)

    after_each(function() if slow then slow:stop() end end)

    -- Runs `cmd` on a pty (script(1)); returns what the terminal showed.
    local function on_pty(cmd)
      local out = capture(("script -qec %s /dev/null </dev/null"):format(quote(cmd)))
      return out
    end

    it("is not mixed into data rows when stdout is the same terminal", function()
      local shown = on_pty(("%s -u %s list --batch 10"):format(quote(BIN), slow.url))
      local rows = 0
      for line in shown:gmatch("[^\n]+") do
        if line:find("^coll%d+") then
          rows = rows + 1
          assert.matches("^coll%d+%s+none%s+%d+%s+[%dT:Z-]+%s+%S+%s*\r?$", line)
        end
      end
      assert.equal(800, rows)
      assert.is_nil(shown:find("/s)", 1, true), "a progress line was shown")
      assert.matches("list: 800 tokens", shown)
    end)

    it("shows the total (DBSIZE) and an ETA on stderr when stdout is elsewhere", function()
      local file = dir .. "/rows"
      local shown = on_pty(("%s -u %s list --batch 10 >%s"):format(quote(BIN), slow.url, quote(file)))
      assert.matches("list: %d+ of 800 .*ETA", shown)
      assert.matches("\27%[K", shown)
      local data = read_file(file)
      assert.equal(801, select(2, data:gsub("\n", "")))
      assert.is_nil(data:find("[\r\27]"))
    end)

    it("is cleared before a warning: export's skip warnings start their own line", function()
      for i = 1, 20 do srv:cli("SET", PREFIX .. "zz_notbson" .. i, "x") end
      local shown = on_pty(("%s -u %s export --batch 10 --output %s"):format(quote(BIN), slow.url,
                                                                        quote(dir .. "/out.jsonl")))
      assert.matches("export: %d+ of 820", shown)
      local warnings = 0
      for line in shown:gmatch("[^\n]+") do
        if line:find("warn: export: skipped", 1, true) then
          warnings = warnings + 1
          -- what precedes the warning on its terminal line was erased (\r ESC[K)
          local before = line:match("^(.-)rigatoni%-store: warn")
          assert.is_truthy(before == "" or before:find("\r\27%[K$"), line)
        end
      end
      assert.equal(20, warnings)
    end)
  end)
end)
