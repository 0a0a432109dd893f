-- SPDX-License-Identifier: MIT
-- spec/secrets_spec.lua -- the host masks a secret whatever it came from
-- (INI password, password_file, [sentinel] password and password_file,
-- the URL in INI, -s, -u, ${VAR}, host.open_store) and whatever its length,
-- in every message it prints: a script's error (with and without -v),
-- host.log, host.mask, and the config errors of a bad -s.

local helpers = require "support.helpers"
local servers = require "support.servers"
local write_file, run = helpers.write_file, helpers.run_host

local tmpdir
local function tmp(name) return tmpdir .. "/" .. name end

setup(function()
  local p = io.popen("mktemp -d")
  tmpdir = p:read("l")
  p:close()
end)
teardown(function() os.execute("rm -rf " .. servers.quote(tmpdir)) end)

local function assert_hidden(secret, ...)
  for _, text in ipairs{ ... } do
    assert.not_matches(secret, text, 1, true)
  end
end

-- The script prints the secret every way the host offers and then raises
-- an error that quotes it; nothing of it may come out.
local LEAK = [[
  local s = os.getenv("SECRET")
  host.log("warn", "log line with " .. s)
  print(host.mask("masked text with " .. s))
  error("failure quoting " .. s)
]]

-- A config file made of `body`, mode 600 (no warning about its mode).
local function ini(name, body)
  local path = write_file(tmp(name), body)
  os.execute("chmod 600 " .. servers.quote(path))
  return path
end

-- Each source: how the secret reaches the host (arguments before -e).
local sources = {
  { "[redis] password", function(s) return { "-c", ini("pw.ini", "[redis]\npassword = " .. s .. "\n") } end },
  { "[redis] password_file", function(s)
      local file = ini("pw.txt", s .. "\n")
      return { "-c", ini("pwf.ini", "[redis]\npassword_file = " .. file .. "\n") }
    end },
  { "[sentinel] password", function(s)
      return { "-c", ini("spw.ini", "[sentinel]\npassword = " .. s .. "\n") }
    end },
  { "[sentinel] password_file", function(s)
      local file = ini("spw.txt", s .. "\n")
      return { "-c", ini("spwf.ini", "[sentinel]\npassword_file = " .. file .. "\n") }
    end },
  { "[redis] url", function(s)
      return { "-c", ini("url.ini", "[redis]\nurl = redis://default:" .. s .. "@127.0.0.1:1\n") }
    end },
  { "${VAR} in [redis] password", function()
      return { "-c", ini("var.ini", "[redis]\npassword = ${SECRET}\n") }
    end },
  { "-s redis.password", function(s) return { "-s", "redis.password=" .. s } end },
  { "-s redis.password_file", function(s) return { "-s", "redis.password_file=" .. ini("s.txt", s) } end },
  { "-u", function(s) return { "-u", "redis://:" .. s .. "@127.0.0.1:1" } end },
}

describe("secrets are masked", function()
  for _, secret in ipairs{ "Long-S3cret_value", "Qz7", "Qz", "Q" } do
    for _, source in ipairs(sources) do
      local label, args_for = source[1], source[2]
      it(("from %s (%d characters) in every message"):format(label, #secret), function()
        for _, verbose in ipairs{ false, true } do
          local args = args_for(secret)
          if verbose then args[#args + 1] = "-v" end
          args[#args + 1] = "-e"
          args[#args + 1] = LEAK
          local code, out, err = run(args, { env = { SECRET = secret } })
          assert.equal(1, code, err)
          assert.matches("failure quoting", err)
          assert.matches("log line with", err)
          assert.matches("masked text with", out)
          assert_hidden(secret, out, err)
        end
      end)
    end
  end

  it("from a password_file of a store the script opens (host.open_store)", function()
    local secret = "Op3n-store-secret"
    local file = ini("open.txt", secret .. "\n")
    local code, out, err = run({ "-e", [[
      local s = host.open_store{ url = "redis://127.0.0.1:1", set = { "redis.password_file=]] .. file .. [[" } }
    ]] .. LEAK }, { env = { SECRET = secret } })
    assert.equal(1, code, err)
    assert_hidden(secret, out, err)
  end)

  it("not echoed when -s is malformed", function()
    for _, arg in ipairs{ "redis.password:Qz-s3cret", "redis.passwordQz-s3cret", "Qz-s3cret" } do
      local code, out, err = run { "-s", arg, "-e", "print(1)" }
      assert.equal(2, code)
      assert.matches("section%.key=value", err)
      assert_hidden("Qz-s3cret", out, err)
    end
  end)

  it("a malformed -s still names the section and key it saw", function()
    local code, _, err = run { "-s", "redis.password:pw", "-e", "print(1)" }
    assert.equal(2, code)
    assert.matches("redis.password", err, 1, true)
  end)
end)

describe("${VAR} in the url", function()
  local PW = "p%41ss@w:rd/?#x"    -- %41 would decode to A; @ : / ? # would cut the URL
  local srv
  setup(function() srv = servers.redis{ password = PW } end)
  teardown(function() srv:stop() end)

  local function ping_with(url_line, env)
    local path = ini("envurl.ini", "[redis]\nurl = " .. url_line .. "\n")
    return run({ "-c", path, "-e", "assert(store:ping()); print('pong')" }, { env = env })
  end

  it("a password from the environment in the user-info is percent-encoded: it reaches AUTH as it is", function()
    local code, out, err = ping_with("redis://default:${PW}@127.0.0.1:" .. srv.port, { PW = PW })
    assert.equal(0, code, err)
    assert.equal("pong\n", out)
    assert_hidden(PW, out, err)
  end)

  it("so is a user name from the environment", function()
    local code, out, err = ping_with("redis://${RUSER}:${PW}@127.0.0.1:" .. srv.port,
                                     { RUSER = "default", PW = PW })
    assert.equal(0, code, err)
    assert.equal("pong\n", out)
  end)

  it("a whole URL from the environment is taken as written (already encoded)", function()
    local encoded = PW:gsub("[^%w%-._~]", function(c) return ("%%%02X"):format(c:byte()) end)
    local code, out, err = ping_with("${REDIS_URL}",
                                     { REDIS_URL = "redis://default:" .. encoded .. "@127.0.0.1:" .. srv.port })
    assert.equal(0, code, err)
    assert.equal("pong\n", out)
  end)
end)

describe("password_file", function()
  -- Runs the host with a time limit, so that a blocking open fails the test
  -- instead of hanging the suite.
  local function run_limited(args)
    local out, err = os.tmpname(), os.tmpname()
    local cmd = { "timeout", "10", helpers.BIN }
    for _, a in ipairs(args) do cmd[#cmd + 1] = servers.quote(a) end
    for i = 1, 3 do cmd[i] = servers.quote(cmd[i]) end
    local _, _, code = os.execute(table.concat(cmd, " ") .. " >" .. out .. " 2>" .. err .. " </dev/null")
    local o, e = helpers.read_file(out) or "", helpers.read_file(err) or ""
    os.remove(out)
    os.remove(err)
    return code, o, e
  end

  for _, place in ipairs{ { "redis", "password_file" }, { "sentinel", "password_file" } } do
    local section, key = place[1], place[2]

    it(("[%s] %s that is a FIFO is refused at once, without blocking"):format(section, key), function()
      local fifo = tmp("pw.fifo")
      os.remove(fifo)
      assert.is_true(os.execute("mkfifo " .. servers.quote(fifo)))
      local path = ini("fifo.ini", ("[%s]\n%s = %s\n"):format(section, key, fifo))
      local code, out, err = run_limited { "-c", path, "-e", "print('ran')" }
      os.remove(fifo)
      assert.equal(2, code, err)   -- timeout(1) exits 124
      assert.equal("", out)
      assert.matches(path .. ":2: ", err, 1, true)
      assert.matches("not a regular file", err, 1, true)
    end)

    it(("[%s] %s that is a directory is refused"):format(section, key), function()
      local path = ini("dir.ini", ("[%s]\n%s = %s\n"):format(section, key, tmpdir))
      local code, _, err = run { "-c", path, "-e", "print('ran')" }
      assert.equal(2, code)
      assert.matches(path .. ":2: ", err, 1, true)
      assert.matches("not a regular file", err, 1, true)
    end)

    it(("[%s] %s longer than 4096 bytes is an error, not cut"):format(section, key), function()
      local secret = ("s"):rep(5000)
      local file = ini("long.txt", secret .. "\n")
      local path = ini("long.ini", ("[%s]\n%s = %s\n"):format(section, key, file))
      local code, out, err = run { "-c", path, "-e", "print('ran')" }
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches(path .. ":2: ", err, 1, true)
      assert.matches("longer than 4096 bytes", err, 1, true)
      assert.not_matches("ssss", err, 1, true)
    end)

    it(("[%s] %s saved with a UTF-8 byte order mark gives the password without it"):format(section, key),
       function()
      local file = ini("bom.txt", "\239\187\191s3cret\r\n")
      local path = ini("bom.ini", ("[%s]\n%s = %s\n"):format(section, key, file))
      local code, out, err = run({ "-c", path, "-e", "print(host.mask(os.getenv('SECRET')))" },
                                 { env = { SECRET = "s3cret" } })
      assert.equal(0, code, err)
      assert.equal("***\n", out)
    end)

    it(("[%s] %s of exactly 4096 bytes (with its line break) is read whole"):format(section, key), function()
      local secret = ("s"):rep(4095)
      local file = ini("max.txt", secret .. "\n")
      local path = ini("max.ini", ("[%s]\n%s = %s\n"):format(section, key, file))
      local code, out, err = run({ "-c", path, "-e", "print(host.mask(os.getenv('SECRET')))" },
                                 { env = { SECRET = secret } })
      assert.equal(0, code, err)
      assert.equal("***\n", out)
    end)
  end

  it("-s redis.password_file=FIFO is refused without blocking", function()
    local fifo = tmp("pw2.fifo")
    os.remove(fifo)
    assert.is_true(os.execute("mkfifo " .. servers.quote(fifo)))
    local code, _, err = run_limited { "-s", "redis.password_file=" .. fifo, "-e", "print('ran')" }
    os.remove(fifo)
    assert.equal(2, code, err)
    assert.matches("not a regular file", err, 1, true)
  end)
end)
