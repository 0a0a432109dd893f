-- SPDX-License-Identifier: MIT
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

-- Runs the host on an INI body and prints what `expr` gives.
local function show(body, expr, env)
  local path = ini(body)
  local code, out, err = run({ "-c", path, "-e", "print(" .. expr .. ")" }, { env = env })
  return code, out, err, path
end

describe("INI section headers", function()
  for _, case in ipairs{ { "[redis] url = redis://127.0.0.1:17002", "url" },
                         { "[durability] wait_replicas = 1", "wait_replicas" },
                         { "[redis]  key_prefix=x", "key_prefix" },
                         { "[redis] garbage", "garbage" } } do
    it(("'%s' on one line is an error naming file:line"):format(case[1]), function()
      local code, out, err, path = show("; settings\n" .. case[1] .. "\n", "config.url")
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches(path .. ":2: ", err, 1, true)
      assert.matches("after the section header", err, 1, true)
    end)
  end

  -- inih skips a BOM on line 1 and any isspace() before '[': a second BOM
  -- (files concatenated) or a form feed must not hide the header's tail.
  for _, case in ipairs{ { "a second byte order mark", "\xEF\xBB\xBF\xEF\xBB\xBF", 1 },
                         { "a form feed", "; settings\n\f", 2 },
                         { "a vertical tab", "; settings\n\v", 2 } } do
    it(("a header with a setting after %s is an error naming file:line"):format(case[1]), function()
      local code, out, err, path = show(case[2] .. "[redis] key_prefix = hidden\n", "config.key_prefix")
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches(path .. ":" .. case[3] .. ": ", err, 1, true)
      assert.matches("after the section header", err, 1, true)
    end)
  end

  it("a comment after a section header is fine", function()
    local code, out, err = show("[redis] ; the server\nkey_prefix = a\n[log]\t# quiet\nlevel = error\n",
                                "config.key_prefix, config.log_level")
    assert.equal(0, code, err)
    assert.equal("a\terror\n", out)
  end)
end)

describe("INI files that are not files", function()
  it("a file over 1 MiB is refused, one of exactly 1 MiB is read", function()
    local head = "[redis]\nkey_prefix = big\n"
    local comments = {}
    local size = #head
    while size < 1048576 do
      local line = "; " .. ("x"):rep(math.min(97, 1048576 - size - 3)) .. "\n"
      comments[#comments + 1] = line
      size = size + #line
    end
    local body = head .. table.concat(comments)
    assert.equal(1048576, #body)
    local code, out, err = run { "-c", ini(body), "-e", "print(config.key_prefix)" }
    assert.equal(0, code, err)
    assert.equal("big\n", out)
    code, out, err = run { "-c", ini(body .. ";"), "-e", "print(config.key_prefix)" }
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("larger than 1048576 bytes", err, 1, true)
  end)

  it("a directory as config is an error saying why", function()
    local code, out, err = run { "-c", tmpdir, "-e", "print('ran')" }
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches(tmpdir .. ": cannot read config file: Is a directory", err, 1, true)
  end)
end)

describe("INI line endings and byte order mark", function()
  local body = "[redis]%surl = redis://127.0.0.1:17002%skey_prefix = my:prefix%s[durability]%swait_replicas = 1%s"
  for _, eol in ipairs{ { "LF", "\n" }, { "CRLF", "\r\n" }, { "CR", "\r" } } do
    for _, bom in ipairs{ "", "\239\187\191" } do
      it(("%s line endings%s parse as written"):format(eol[1], bom ~= "" and " with a BOM" or ""), function()
        local e = eol[2]
        local code, out, err = show(bom .. body:format(e, e, e, e, e),
                                    "config.url, config.key_prefix, config.wait_replicas")
        assert.equal(0, code, err)
        assert.equal("redis://127.0.0.1:17002\tmy:prefix\t1\n", out)
      end)

      it(("errors in a file with %s line endings%s name the right line"):format(eol[1], bom ~= "" and " and a BOM" or ""), function()
        local e = eol[2]
        local code, _, err, path = show(bom .. "[redis]" .. e .. "; c" .. e .. e .. "bogus = 1" .. e, "1")
        assert.equal(2, code)
        assert.matches(path .. ":4: unknown key 'bogus'", err, 1, true)
      end)
    end
  end

  it("mixed line endings each end a line", function()
    local code, out, err = show("[redis]\r\nkey_prefix = a\rlock_prefix = b\n", "config.key_prefix, config.lock_prefix")
    assert.equal(0, code, err)
    assert.equal("a\tb\n", out)
  end)
end)

describe("INI ${VAR} references", function()
  for _, bad in ipairs{ "a${B", "${A:-x", "${A-x}", "${A:x}", "${}", "${A:-${B}", "${1A}", "x${ A}" } do
    it(("'%s' is an error naming file:line"):format(bad), function()
      local code, out, err, path = show("[redis]\n\nkey_prefix = " .. bad .. "\n", "config.key_prefix",
                                        { B = "bee" })
      assert.equal(2, code, out)
      assert.equal("", out)
      assert.matches(path .. ":3: ", err, 1, true)
    end)
  end

  it("${A:-${B}} takes B when A is unset, as a shell does", function()
    local code, out, err = show("[redis]\nkey_prefix = ${A:-${B}}\n", "config.key_prefix", { B = "from-b" })
    assert.equal(0, code, err)
    assert.equal("from-b\n", out)
  end)

  it("${A:-${B}} takes A when it is set", function()
    local code, out, err = show("[redis]\nkey_prefix = ${A:-${B}}\n", "config.key_prefix", { A = "from-a" })
    assert.equal(0, code, err)
    assert.equal("from-a\n", out)
  end)

  it("${A:-x${B:-y}z} nests defaults", function()
    local code, out, err = show("[redis]\nkey_prefix = p${A:-x${B:-y}z}q\n", "config.key_prefix")
    assert.equal(0, code, err)
    assert.equal("pxyzq\n", out)
  end)

  it("${A:-${B}} with neither set is an error naming B and file:line", function()
    local code, _, err, path = show("[redis]\nkey_prefix = ${A:-${B}}\n", "config.key_prefix")
    assert.equal(2, code)
    assert.matches(path .. ":2: environment variable B is not set", err, 1, true)
  end)

  it("$${ stays a literal ${, also inside a default", function()
    local code, out, err = show("[redis]\nkey_prefix = $${A}:${A:-$${B}}\n", "config.key_prefix")
    assert.equal(0, code, err)
    assert.equal("${A}:${B}\n", out)
  end)
end)

describe("INI keys given twice", function()
  it("a key given twice is an error naming file:line of the second and line of the first", function()
    local code, out, err, path = show("[redis]\nurl = redis://127.0.0.1:17002\n; later, by another hand\n"
                                      .. "[durability]\nwait_replicas = 1\n[redis]\nurl = redis://127.0.0.1:17003\n",
                                      "config.url")
    assert.equal(2, code, out)
    assert.equal("", out)
    assert.matches(path .. ":7: [redis] url is given twice (first on line 2): keep one", err, 1, true)
  end)

  it("the same key in two sections is two settings", function()
    local code, out, err = show("[redis]\npassword = a\n[sentinel]\npassword = b\nmaster = m\n"
                                .. "[redis]\nurl = redis://127.0.0.1:17002\n", "config.url")
    assert.equal(0, code, err)
    assert.equal("redis://127.0.0.1:17002\n", out)
  end)
end)
