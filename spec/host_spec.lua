-- SPDX-License-Identifier: MIT
-- spec/host_spec.lua -- the `rigatoni-store` host binary, run as a user
-- would (spawned, stdout/stderr/exit status checked) against real servers:
-- command line, INI config, ${VAR} expansion, --check, -e, exit codes,
-- masking of passwords.

local servers = require "support.servers"
local quote = servers.quote


local helpers = require "support.helpers"
local read_file, write_file, run = helpers.read_file, helpers.write_file, helpers.run_host
local BIN = helpers.BIN

local tmpdir
local function tmp(name) return tmpdir .. "/" .. name end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("rigatoni-store host", function()
  local srv

  setup(function()
    srv = servers.redis {}
    local p = io.popen("mktemp -d")
    tmpdir = p:read("l")
    p:close()
  end)

  teardown(function()
    if srv then srv:stop() end
    os.execute("rm -rf " .. quote(tmpdir))
  end)

  describe("command line", function()
    it("--version prints the version and exits 0", function()
      local code, out = run { "--version" }
      assert.equal(0, code)
      assert.matches("^rigatoni%-store %d+%.%d+%.%d+", out)
    end)

    it("--help prints the usage and exits 0", function()
      local code, out = run { "--help" }
      assert.equal(0, code)
      assert.matches("usage: rigatoni%-store", out)
      assert.matches("%-%-check", out)
    end)

    it("without a script is a usage error (exit 2)", function()
      local code, _, err = run {}
      assert.equal(2, code)
      assert.matches("no script given", err)
    end)

    it("an unknown option is a usage error (exit 2)", function()
      local code, _, err = run { "--frobnicate" }
      assert.equal(2, code)
      assert.matches("unknown option %-%-frobnicate", err)
    end)

    it("takes getopt_long's grammar: bundled flags, attached values, --opt=value, --", function()
      -- -vvv is three -v; -qv bundles -q and -v, which exclude each other
      local code, out, err = run { "-vvv", "-e", "print(1)" }
      assert.equal(0, code, err)
      code, _, err = run { "-qv", "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches("%-v and %-q exclude each other", err)
      -- -uURL and --url=URL, --set=S.K=V, and -qe CODE with the code's own arguments
      code, out, err = run { "-u" .. srv.url, "--set=redis.pool_size=3", "-qe",
                             "print(config.url, config.pool_size, ...)", "a", "-v" }
      assert.equal(0, code, err)
      assert.equal(srv.url .. "\t3\ta\t-v\n", out)
      code, out, err = run { "--url=" .. srv.url, "--", "list", "--format", "jsonl" }
      assert.equal(0, code, err)
      -- a script's options too: --form=jsonl is --format=jsonl, -- ends them,
      -- an ambiguous prefix names the options it could be
      code, out, err = run { "-u", srv.url, "list", "--form=csv", "--" }
      assert.equal(0, code, err)
      assert.matches("^collection,", out)
      code, _, err = run { "-u", srv.url, "cleanup", "--older", "30d", "--s", "1d" }
      assert.equal(2, code)
      assert.matches("option %-%-s is ambiguous %(%-%-set%-ttl, %-%-stream%)", err)
      -- --help is an option like the others: a prefix of it is help too
      code, out, err = run { "-u", srv.url, "list", "--hel" }
      assert.equal(0, code, err)
      assert.matches("usage: rigatoni%-store .* list", out)
      code, _, err = run { "-u", srv.url, "list", "--help=x" }
      assert.equal(2, code)
      assert.matches("%-%-help takes no value", err)
      code, _, err = run { "-u", srv.url, "list", "--", "extra" }
      assert.equal(2, code)
      assert.matches("unexpected argument 'extra'", err)
      -- a missing value is named as it was written
      code, _, err = run { "--config" }
      assert.equal(2, code)
      assert.matches("option %-%-config needs a file", err)
      code, _, err = run { "-qu" }
      assert.equal(2, code)
      assert.matches("option %-u needs a URL", err)
      code, _, err = run { "-x" }
      assert.equal(2, code)
      assert.matches("unknown option %-x", err)
    end)

    it("a bad option is named as written, whatever came before it", function()
      -- an unknown flag inside a bundle, after a long option (or a value)
      local code, _, err = run { "--verbose", "-xq", "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches("unknown option %-x\n", err)
      code, _, err = run { "-c", "--odd-name", "-qx", "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches("unknown option %-x\n", err)
      assert.not_matches("odd", err, 1, true)
      -- a known flag given a value, and an ambiguous prefix
      code, _, err = run { "--help=x" }
      assert.equal(2, code)
      assert.matches("option %-%-help takes no value", err)
      -- empty code (an unset $VAR in a cron line) would run nothing and exit 0
      for _, args in ipairs{ { "-e", "" }, { "--eval=" }, { "-qe", "", "x" } } do
        code, _, err = run(args)
        assert.equal(2, code, table.concat(args, " "))
        assert.matches("the Lua code of %-e is empty", err)
      end
      code, _, err = run { "--ver" }
      assert.equal(2, code)
      assert.matches("option %-%-ver is ambiguous %(%-%-verbose, %-%-version%)", err)
      -- the word's bytes are escaped: a terminal would run \27[2J, and a
      -- byte that is not UTF-8 reads \xNN
      code, _, err = run { "--x\255\27[2J" }
      assert.equal(2, code)
      assert.matches("unknown option %-%-x\\xff\\x1b%[2J\n", err)
      code, _, err = run { "-c", "\27[31m" }
      assert.equal(2, code)
      assert.is_nil(err:find("\27", 1, true), err)
      -- a script's error (a path or key name it quotes) as well; its lines stay lines
      code, _, err = run { "-e", "error('key k\\27[2J\\255 is not held\\nnext\\tline', 0)" }
      assert.equal(1, code)
      assert.equal("rigatoni-store: key k\\x1b[2J\\xff is not held\n", err)   -- (the first line)
      -- a C1 control (U+009B is CSI to some terminals) in UTF-8 text, as output.text does
      code, _, err = run { "-e", "error('k\\194\\155\\50J caf\\195\\169', 0)" }
      assert.equal("rigatoni-store: k\\xc2\\x9b2J caf\195\169\n", err)
      code, _, err = run { "-v", "-e", "error('key k\\27[2J\\255 is not held', 0)" }
      assert.equal(1, code)
      assert.matches("key k\\x1b[2J\\xff is not held\nstack traceback:\n\t", err, 1, true)
    end)

    it("names a path once in its message", function()
      local path = tmp("absent.jsonl")
      local code, _, err = run { "-u", srv.url, "import", "--input", path }
      assert.equal(2, code)
      local _, times = err:gsub(path:gsub("%p", "%%%0"), "")
      assert.equal(1, times, err)
      assert.matches("No such file or directory", err)
    end)

    it("an unknown script is a usage error (exit 2)", function()
      local code, _, err = run { "-u", srv.url, "nosuchscript" }
      assert.equal(2, code)
      assert.matches("unknown script 'nosuchscript'", err)
    end)

    it("runs a script file by path with its arguments in arg and ...", function()
      local path = write_file(tmp("args.lua"), "print(arg[0] ~= nil, arg[1], arg[2], select('#', ...))\n")
      local code, out = run { "-u", srv.url, path, "a", "--b" }
      assert.equal(0, code)
      assert.equal("true\ta\t--b\t2\n", out)
    end)

    it("runs bundled scripts by name", function()
      local code, out = run { "-u", srv.url, "list", "--help" }
      assert.equal(0, code)
      assert.matches("usage: rigatoni%-store .* list", out)
    end)

    it("a script's integer return value is the exit status", function()
      local code = run { "-u", srv.url, "-e", "return 3" }
      assert.equal(3, code)
    end)
  end)

  describe("-e and the script environment", function()
    it("binds store, rs, config and arg", function()
      local code, out, err = run { "-u", srv.url, "-e",
        "store:save_resume_token('c1', {_data = '82'}); print(store:get_resume_token('c1')._data, rs.version, config.url, arg[1])",
        "x" }
      assert.equal(0, code, err)
      assert.equal("82\t" .. require("rigatoni_store").version .. "\t" .. srv.url .. "\tx\n", out)
    end)

    it("require 'rigatoni_store' gives the same module as rs", function()
      local code, out = run { "-e", "print(require('rigatoni_store') == rs)" }
      assert.equal(0, code)
      assert.equal("true\n", out)
    end)

    it("opens the store only when a script uses it", function()
      local port = servers.closed_port()
      local code, out = run { "-u", "redis://127.0.0.1:" .. port, "-e", "print('no redis needed')" }
      assert.equal(0, code)
      assert.equal("no redis needed\n", out)
    end)

    it("defaults to redis://127.0.0.1:6379 without any config", function()
      local code, out = run { "-e", "print(config.url)" }
      assert.equal(0, code)
      assert.equal("redis://127.0.0.1:6379\n", out)
    end)

    it("shows the config masked", function()
      local code, out = run { "-u", "redis://app:s3cretpw@127.0.0.1:1", "-e", "print(config.url)" }
      assert.equal(0, code)
      assert.equal("redis://***:***@127.0.0.1:1\n", out)
    end)

    it("host.open_store opens a second store (with its own prefix)", function()
      local code, out, err = run { "-u", srv.url, "-e", [[
        local other, cfg = host.open_store{ key_prefix = "other" }
        other:save_raw("k", rs.bson.encode{a = 1})
        print(cfg.key_prefix, other:get_resume_token("k").a)]] }
      assert.equal(0, code, err)
      assert.equal("other\t1\n", out)
      assert.is_truthy(srv:cli("EXISTS", "other:k") == "1")
    end)

    it("host tells scripts whether stderr is a terminal", function()
      local code, out = run { "-q", "-e", "print(host.stderr_is_tty, host.quiet)" }
      assert.equal(0, code)
      assert.equal("false\ttrue\n", out)
    end)
  end)

  describe("errors and exit codes", function()
    it("a runtime error prints one line and exits 1", function()
      local code, out, err = run { "-u", srv.url, "-e", "error('boom')" }
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal(1, #lines(err))
      assert.matches("boom", err)
    end)

    it("-v adds a traceback", function()
      local code, _, err = run { "-v", "-u", srv.url, "-e", "local function f() error('boom') end f()" }
      assert.equal(1, code)
      assert.matches("boom", err)
      assert.matches("stack traceback", err)
    end)

    it("error objects print as kind: message", function()
      local code, _, err = run { "-u", srv.url, "-e", "store:command('NOSUCHCOMMAND')" }
      assert.equal(1, code)
      assert.matches("^rigatoni%-store: server: ", err)
    end)

    it("a config error raised by the script exits 2", function()
      local code, _, err = run { "-e", "rs.new{url = 'http://nope'}" }
      assert.equal(2, code)
      assert.matches("config: ", err)
    end)

    it("a script that does not compile exits 2", function()
      local code, _, err = run { "-e", "this is not lua" }
      assert.equal(2, code)
      assert.matches("command line", err)
    end)

    it("a connection failure exits 1 with the password masked", function()
      local port = servers.closed_port()
      local code, _, err = run { "-u", "redis://app:hunter2pw@127.0.0.1:" .. port, "-e", "store:ping()" }
      assert.equal(1, code)
      assert.matches("connection", err)
      assert.not_matches("hunter2pw", err)
      assert.equal(1, #lines(err))
    end)

    it("a wrong password is reported without the password", function()
      local secured = servers.redis { password = "rightpass" }
      local code, _, err = run { "-u", "redis://:wrongpass@127.0.0.1:" .. secured.port, "-e", "store:ping()" }
      secured:stop()
      assert.equal(1, code)
      assert.not_matches("wrongpass", err)
      assert.matches("auth", err)
    end)

    it("a script error that quotes the URL is masked too", function()
      local code, _, err = run { "-u", "redis://app:quotedpw@127.0.0.1:1", "-e",
                                 "error('failed on redis://app:quotedpw@127.0.0.1:1')" }
      assert.equal(1, code)
      assert.not_matches("quotedpw", err)
      assert.matches("redis://%*%*%*:%*%*%*@127%.0%.0%.1:1", err)
    end)
  end)

  describe("INI config", function()
    it("maps sections and keys to options", function()
      local path = write_file(tmp("full.ini"), table.concat({
        "[redis]", "url = " .. srv.url, "pool_size = 7", "ttl = 12h", "max_retries = 2",
        "connection_timeout = 1500ms", "command_timeout = 3s", "retry_base_delay = 0.2",
        "retry_max_delay = 1m", "idle_check_after = 15m", "spin_wait = 50us", "cluster_mode = false",
        "key_prefix = my:tokens", "lock_prefix = my:locks", "scan_count = 50", "workers = 3",
        "[sentinel]", "master = mm", "username = su", "password = ${SENTINEL_PW}",
        "[tls]", "ca_file = /tmp/ca.pem", "verify = false",
        "[durability]", "wait_replicas = 1", "wait_timeout = 2s",
        "[log]", "level = info", "" }, "\n"), "600")
      local code, out, err = run({ "-c", path, "-e", [[
        for _, k in ipairs{"pool_size","ttl","max_retries","connection_timeout","command_timeout",
          "retry_base_delay","retry_max_delay","idle_check_after","spin_wait","key_prefix","lock_prefix",
          "scan_count","workers","sentinel_master","sentinel_username","sentinel_password","tls.ca_file",
          "tls.verify","wait_replicas","wait_timeout","log_level"} do print(k, config[k]) end]] },
        { env = { SENTINEL_PW = "sentpw" } })
      assert.equal(0, code, err)
      local got = {}
      for k, v in out:gmatch("([%w_.]+)\t([^\n]*)") do got[k] = v end
      assert.equal("7", got.pool_size)
      assert.equal("2", got.max_retries)
      assert.equal("my:tokens", got.key_prefix)
      assert.equal("my:locks", got.lock_prefix)
      assert.equal("50", got.scan_count)
      assert.equal("3", got.workers)
      -- printed back in the grammar they were read in
      assert.equal("50us", got.spin_wait)
      assert.equal("12h", got.ttl)
      assert.equal("1500ms", got.connection_timeout)
      assert.equal("200ms", got.retry_base_delay)
      assert.equal("1m", got.retry_max_delay)
      assert.equal("mm", got.sentinel_master)
      assert.equal("su", got.sentinel_username)
      assert.equal("***", got.sentinel_password)
      assert.equal("/tmp/ca.pem", got["tls.ca_file"])
      assert.equal("false", got["tls.verify"])
      assert.equal("1", got.wait_replicas)
      assert.equal("info", got.log_level)
      assert.not_equal("none", got.ttl)
    end)

    it("one duration grammar for INI, -s and script options (rs.parse_duration)", function()
      local path = write_file(tmp("dur.ini"), "[redis]\nurl = " .. srv.url .. "\nttl = 1h30m\n")
      local code, out, err = run { "-c", path, "-s", "redis.idle_check_after=2w", "-e",
                                   "print(config.ttl, config.idle_check_after)" }
      assert.equal(0, code, err)
      assert.equal("90m\t14d\n", out)
      -- printed whole however long (a 64-byte buffer used to cut it)
      code, out = run { "-e", "local t = rs.format_duration(1e300); print(#t > 300, t:sub(-1))" }
      assert.equal("true\ts\n", out)
      for _, bad in ipairs { "1e3", "-5", "5 s", "1h30" } do
        code, _, err = run { "-c", path, "-s", "redis.ttl=" .. bad, "-e", "print(1)" }
        assert.equal(2, code, bad)
        assert.matches("ttl must be a duration like", err)
      end
      -- a script option takes the same words as INI: 500us and 2w, not 1e3
      code, out, err = run { "-u", srv.url, "cleanup", "--older-than", "500us" }
      assert.equal(0, code, err)
      code, out, err = run { "-u", srv.url, "cleanup", "--older-than", "2w" }
      assert.equal(0, code, err)
      code, _, err = run { "-u", srv.url, "cleanup", "--older-than", "1e3" }
      assert.equal(2, code)
      assert.matches("%-%-older%-than: bad duration '1e3'", err)
    end)

    it("ttl = none means no expiry", function()
      local path = write_file(tmp("none.ini"), "[redis]\nurl = " .. srv.url .. "\nttl = none\n")
      local code, out = run { "-c", path, "-e", "print(config.ttl)" }
      assert.equal(0, code)
      assert.equal("none\n", out)
    end)

    it("expands ${VAR} and ${VAR:-default}", function()
      local path = write_file(tmp("vars.ini"),
        "[redis]\nurl = ${MY_URL}\nkey_prefix = ${MY_PREFIX:-fallback:prefix}\n")
      local code, out = run({ "-c", path, "-e", "print(config.url, config.key_prefix)" },
                            { env = { MY_URL = srv.url } })
      assert.equal(0, code)
      assert.equal(srv.url .. "\tfallback:prefix\n", out)
      code, out = run({ "-c", path, "-e", "print(config.key_prefix)" },
                      { env = { MY_URL = srv.url, MY_PREFIX = "set:prefix" } })
      assert.equal("set:prefix\n", out)
    end)

    it("a missing variable without default is an error naming file:line", function()
      local path = write_file(tmp("missing.ini"), "[redis]\n; comment\nurl = ${NOT_SET_ANYWHERE}\n")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches(path:gsub("%p", "%%%0") .. ":3: environment variable NOT_SET_ANYWHERE is not set", err)
    end)

    it("an unknown section is an error naming file:line", function()
      local path = write_file(tmp("section.ini"), "[redis]\nurl = " .. srv.url .. "\n\n[bogus]\nx = 1\n")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches(":4: unknown section %[bogus%]", err)
    end)

    it("an unknown key is an error naming file:line", function()
      local path = write_file(tmp("key.ini"), "[redis]\nurl = " .. srv.url .. "\npool_sise = 3\n")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches(":3: unknown key 'pool_sise' in section %[redis%]", err)
    end)

    it("a bad value is an error naming file:line and the option", function()
      local path = write_file(tmp("value.ini"), "[redis]\nurl = " .. srv.url .. "\n\n\npool_size = lots\n")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches(":5: .*pool_size", err)
    end)

    it("a bad duration is an error naming file:line", function()
      local path = write_file(tmp("dur.ini"), "[redis]\nttl = 7 days\n")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches(":2: .*ttl", err)
    end)

    it("a line that is not key = value is a syntax error naming file:line", function()
      local path = write_file(tmp("syntax.ini"), "[redis]\nurl = " .. srv.url .. "\njust words\n")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches(":3: syntax error", err)
    end)

    it("a bad log level is an error naming file:line", function()
      local path = write_file(tmp("log.ini"), "[log]\nlevel = loud\n")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches(":2: log level must be", err)
    end)

    it("[durability] wait_policy is checked by the core", function()
      local path = write_file(tmp("policy.ini"), "[durability]\nwait_policy = sometimes\n")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches(":2: .*wait_policy", err)
    end)

    it("a missing file is a config error (exit 2)", function()
      local code, _, err = run { "-c", tmp("nope.ini"), "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches("nope%.ini: cannot read config file", err)
    end)

    it("long values are not cut", function()
      local prefix = string.rep("p", 300)
      local path = write_file(tmp("long.ini"), "[redis]\nkey_prefix = " .. prefix .. "\n")
      local code, out = run { "-c", path, "-e", "print(#config.key_prefix)" }
      assert.equal(0, code)
      assert.equal("300\n", out)
    end)

    it("$RIGATONI_STORE_CONFIG names the default file", function()
      local path = write_file(tmp("env.ini"), "[redis]\nurl = " .. srv.url .. "\nkey_prefix = from:env\n")
      local code, out = run({ "-e", "print(config.key_prefix)" }, { env = { RIGATONI_STORE_CONFIG = path } })
      assert.equal(0, code)
      assert.equal("from:env\n", out)
    end)

    it("-u and -s override the file", function()
      local path = write_file(tmp("over.ini"), "[redis]\nurl = redis://127.0.0.1:1\npool_size = 3\n")
      local code, out = run { "-c", path, "-u", srv.url, "-s", "redis.pool_size=9", "-s", "tls.verify=false",
                              "-e", "print(config.url, config.pool_size, config['tls.verify'])" }
      assert.equal(0, code)
      assert.equal(srv.url .. "\t9\tfalse\n", out)
    end)

    it("a bad -s is a usage error (exit 2)", function()
      local code, _, err = run { "-s", "redis.pool_size=zero", "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches("%-s redis%.pool_size: ", err)
      code, _, err = run { "-s", "nodot", "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches("section%.key=value", err)
    end)

    it("warns when a file readable by others holds a password", function()
      local path = write_file(tmp("open.ini"), "[redis]\nurl = redis://app:filepw@127.0.0.1:" .. srv.port .. "\n", "644")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(0, code)
      assert.matches("rigatoni%-store: warn: .*open%.ini holds a password and is readable", err)
      assert.not_matches("filepw", err)
    end)

    it("does not warn for mode 600, nor for a password given as ${VAR}", function()
      local path = write_file(tmp("closed.ini"), "[redis]\nurl = redis://app:filepw@127.0.0.1:1\n", "600")
      local code, _, err = run { "-c", path, "-e", "print(1)" }
      assert.equal(0, code)
      assert.equal("", err)
      path = write_file(tmp("var.ini"), "[redis]\nurl = ${SOME_URL}\n[sentinel]\npassword = ${SPW}\n", "644")
      code, _, err = run({ "-c", path, "-e", "print(1)" },
                         { env = { SOME_URL = "redis://a:b12@127.0.0.1:1", SPW = "x" } })
      assert.equal(0, code)
      assert.equal("", err)
    end)
  end)

  describe("--check", function()
    it("connects, PINGs and prints the effective config masked", function()
      local secured = servers.redis { password = "checkpw" }
      local path = write_file(tmp("check.ini"), "[redis]\nurl = ${CHECK_URL}\npool_size = 4\n", "600")
      local code, out, err = run({ "-c", path, "--check" },
                                 { env = { CHECK_URL = "redis://:checkpw@127.0.0.1:" .. secured.port } })
      secured:stop()
      assert.equal(0, code, err)
      assert.matches("%[redis%]", out)
      assert.matches("pool_size = 4", out)
      assert.matches("url = redis://:%*%*%*@127", out)
      assert.matches("answered PING", out)
      assert.not_matches("checkpw", out .. err)
    end)

    it("exits 1 when the server does not answer", function()
      local port = servers.closed_port()
      local code, _, err = run { "-u", "redis://127.0.0.1:" .. port, "-s", "redis.max_retries=0", "--check" }
      assert.equal(1, code)
      assert.matches("connection", err)
    end)

    it("exits 2 on a config error", function()
      local code = run { "-s", "redis.scan_count=0", "--check" }
      assert.equal(2, code)
    end)

    for _, name in ipairs { "development", "staging", "production", "multi-region" } do
      it("passes on conf/" .. name .. ".ini given REDIS_URL", function()
        local code, out, err = run({ "-c", "conf/" .. name .. ".ini", "--check" }, { env = { REDIS_URL = srv.url } })
        assert.equal(0, code, err)
        assert.matches("answered PING", out)
      end)
    end

    it("conf files keep secrets out: REDIS_URL is required in staging and production", function()
      for _, name in ipairs { "staging", "production", "multi-region" } do
        local code, _, err = run { "-c", "conf/" .. name .. ".ini", "--check" }
        assert.equal(2, code)
        assert.matches("REDIS_URL is not set", err)
      end
    end)
  end)

  describe("errors that are hard to print", function()
    -- The host turns the error object into text in a protected call: code
    -- in its metatable that raises, or running out of memory there, is
    -- reported as one line instead of a Lua panic (abort, status 134); a
    -- kind read before that still decides the status.
    local function bad_object(mt)
      return "error(setmetatable({ kind = 'config' }, { " .. mt .. " }))"
    end

    for _, case in ipairs {
      { "a __tostring that raises", bad_object "__tostring = function() error('boom in tostring') end",
        "the error could not be printed: %(command line%):1: boom in tostring", 2 },
      { "a __tostring that returns a table", bad_object "__tostring = function() return {} end",
        "the error could not be printed: '__tostring' must return a string", 2 },
      { "an __index that raises", "error(setmetatable({}, { __index = function() error('no kind') end }))",
        "the error could not be printed: %(command line%):1: no kind", 1 },
    } do
      it("reports an error object with " .. case[1] .. " in one line, exit " .. case[4], function()
        local code, out, err = run { "-u", srv.url, "-e", case[2] }
        assert.equal(case[4], code, err)
        assert.equal("", out)
        assert.equal(1, #lines(err), err)
        assert.matches("^rigatoni%-store: " .. case[3] .. "\n$", err)
      end)
    end

    it("reports running out of memory while printing the error", function()
      local errfile = tmp("oom.err")
      local code = "error(setmetatable({}, { __tostring = function() return ('x'):rep(1 << 30) end }))"
      -- 600 MB of address space: the host runs, a 1 GiB string does not fit.
      local _, _, status = os.execute(("ulimit -v 600000; exec %s -u %s -e %s 2>%s")
        :format(quote(BIN), quote(srv.url), quote(code), quote(errfile)))
      local err = read_file(errfile)
      assert.equal(1, status, err)
      assert.equal("rigatoni-store: the error could not be printed: not enough memory\n", err)
    end)
  end)

  describe("long config values", function()
    -- Sixty Sentinel nodes: a URL of some 2,400 characters.
    local nodes = {}
    for i = 1, 60 do nodes[i] = ("sentinel-node-%02d.example.internal:26379"):format(i) end
    local hosts = table.concat(nodes, ",")
    local url = "redis://app:longurlpw@" .. hosts .. "/0"

    it("reach the script's config table whole, masked", function()
      local code, out, err = run({ "-u", url, "-e",
        "print(config.url) print(rs.mask_url(os.getenv('U'))) print(rs.config():url(os.getenv('U')):to_table().url)" },
        { env = { U = url } })
      assert.equal(0, code, err)
      local masked = "redis://***:***@" .. hosts .. "/0"
      assert.equal(masked .. "\n" .. masked .. "\n" .. masked .. "\n", out)
    end)

    it("reach it whole when they are not URLs either", function()
      local prefix = ("p"):rep(3000)
      local code, out, err = run { "-u", srv.url, "-s", "redis.key_prefix=" .. prefix, "-e", "io.write(config.key_prefix)" }
      assert.equal(0, code, err)
      assert.equal(prefix, out)
    end)
  end)
end)
