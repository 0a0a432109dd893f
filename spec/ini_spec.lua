-- spec/ini_spec.lua -- the edges of the host's INI reader: lines too long
-- for its buffer, inline comments, and what a ` ;` does to a password.
-- Every error names file:line of the line at fault.

local helpers = require "support.helpers"
local servers = require "support.servers"
local write_file, run = helpers.write_file, helpers.run_host

local LINE_MAX = 4096    -- bytes of one line, without its line break

local tmpdir
local function tmp(name) return tmpdir .. "/" .. name end

setup(function()
  local p = io.popen("mktemp -d")
  tmpdir = p:read("l")
  p:close()
end)
teardown(function() os.execute("rm -rf " .. servers.quote(tmpdir)) end)

local function ini(body)
  local path = write_file(tmp("test.ini"), body)
  os.execute("chmod 600 " .. servers.quote(path))
  return path
end

-- A `key = value` line of exactly `len` bytes.
local function line_of(key, len)
  local head = key .. " = "
  return head .. ("k"):rep(len - #head)
end

describe("INI lines longer than the reader's buffer", function()
  it("a line of the largest length is read whole", function()
    -- The password is masked as one *** only when it was read whole.
    local line = line_of("password", LINE_MAX)
    local path = ini("[redis]\r\n" .. line .. "\r\n")
    local code, out, err = run({ "-c", path, "-e", "print(host.mask(os.getenv('PW')))" },
                               { env = { PW = line:sub(#"password = " + 1) } })
    assert.equal(0, code, err)
    assert.equal("***\n", out)
  end)

  it("a longer line is an error naming its file:line", function()
    local path = ini("[redis]\n; a comment\n" .. line_of("key_prefix", LINE_MAX + 1) .. "\n")
    local code, out, err = run { "-c", path, "-e", "print('ran')" }
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches(path .. ":3: line longer than " .. LINE_MAX .. " bytes", err, 1, true)
  end)

  it("the first error is the long line, not what its cut-off half would be", function()
    -- The cut-off rest "127.0.0.1:7002,..." reads as a key: value pair.
    local hosts = {}
    for i = 1, 400 do hosts[i] = "127.0.0.1:" .. (7000 + i) end
    local path = ini("[redis]\nurl = redis://" .. table.concat(hosts, ",") .. "\nbogus = 1\n")
    local code, _, err = run { "-c", path, "-e", "print('ran')" }
    assert.equal(2, code)
    assert.matches(path .. ":2: line longer than", err, 1, true)
    assert.not_matches("unknown key", err, 1, true)
  end)

  it("line numbers after long lines (within the limit) stay right", function()
    local path = ini("[redis]\n" .. line_of("key_prefix", LINE_MAX) .. "\n"
                     .. line_of("lock_prefix", 3000) .. "\n\nbogus = 1\n")
    local code, _, err = run { "-c", path, "-e", "print('ran')" }
    assert.equal(2, code)
    assert.matches(path .. ":5: unknown key 'bogus'", err, 1, true)
  end)
end)

describe("INI inline comments", function()
  it("' ;' starts a comment after an ordinary value", function()
    local path = ini("[redis]\nurl = ${NO_SUCH_VAR:-redis://127.0.0.1:6379}   ; from the environment\n"
                     .. "key_prefix = my:prefix ; the prefix\npool_size = 4\t; four\n")
    local code, out, err = run { "-c", path, "-e", "print(config.url, config.key_prefix, config.pool_size)" }
    assert.equal(0, code, err)
    assert.equal("redis://127.0.0.1:6379\tmy:prefix\t4\n", out)
  end)

  it("';' without a blank before it is part of the value", function()
    local path = ini("[redis]\nkey_prefix = a;b\npassword = pa;ss\n")
    local code, out, err = run { "-c", path, "-e", "print(config.key_prefix, host.mask('pa;ss'))" }
    assert.equal(0, code, err)
    assert.equal("a;b\t***\n", out)
  end)

  for _, place in ipairs{ { "redis", "password" }, { "sentinel", "password" } } do
    local section, key = place[1], place[2]
    it(("' ;' in [%s] %s is an error naming file:line, not a silently cut password"):format(section, key), function()
      local path = ini(("[%s]\n\n%s = first-half ;second-half\n"):format(section, key))
      local code, out, err = run { "-c", path, "-e", "print('ran')" }
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches(path .. ":3: ", err, 1, true)
      assert.matches(key, err, 1, true)
      assert.not_matches("first-half", err, 1, true)
      assert.not_matches("second-half", err, 1, true)
    end)
  end

  it("a password from ${VAR} keeps its ' ;'", function()
    local path = ini("[redis]\npassword = ${PW}\n")
    local code, out, err = run({ "-c", path, "-e", "print(host.mask(os.getenv('PW')))" },
                               { env = { PW = "first ;second" } })
    assert.equal(0, code, err)
    assert.equal("***\n", out)
  end)
end)
