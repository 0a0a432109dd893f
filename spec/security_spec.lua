-- SPDX-License-Identifier: MIT
-- spec/security_spec.lua -- the security review items of issue 8: secrets
-- never shown, TLS verified by default, binary-safe commands, glob
-- characters taken literally where they must be, no KEYS / FLUSHDB.

local rs = require "rigatoni_store"
local servers = require "support.servers"

local PASSWORD = "Sup3r-S3cret_pw"
local quote = servers.quote

teardown(function() servers.stop_all() end)

local helpers = require "support.helpers"
local read_file = helpers.read_file

-- Runs the host binary; env is a table of VAR = value.
local function host(args, env) return helpers.run_host(args, { env = env }) end

-- An INI file that takes the URL from the environment, as documented.
local function env_ini()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write("[redis]\nurl = ${REDIS_URL}\n[log]\nlevel = debug\n")
  f:close()
  os.execute("chmod 600 " .. quote(path))
  return path
end

local catch = helpers.catch

local function assert_hidden(text, ...)
  for _, secret in ipairs{ ... } do
    assert.not_matches(secret, text, 1, true)
  end
end

describe("security: passwords are never shown", function()
  local srv, url
  setup(function()
    srv = servers.redis{ password = PASSWORD }
    url = "redis://default:" .. PASSWORD .. "@127.0.0.1:" .. srv.port
  end)
  teardown(function() srv:stop() end)

  it("not in tostring of a config, its to_table, a store or an error", function()
    local cfg = rs.config():url(url):pool_size(3):build()
    assert_hidden(tostring(cfg), PASSWORD)
    for k, v in pairs(cfg:to_table()) do assert_hidden(tostring(k) .. "=" .. tostring(v), PASSWORD) end
    local store <close> = rs.new(cfg)
    assert_hidden(tostring(store), PASSWORD)
    local errs = {
      catch(rs.new, { url = url, pool_size = 0 }),
      catch(rs.new, { url = "redis://default:" .. PASSWORD .. "@127.0.0.1:" .. servers.closed_port(),
                      max_retries = 0 }),
      catch(rs.new, { url = "redis://default:" .. PASSWORD .. "x@127.0.0.1:" .. srv.port }),
      catch(rs.new, { url = "redis://default:" .. PASSWORD .. "@bad host:1" }),
      catch(store.command, store, "AUTH", "default", PASSWORD .. "x"),
    }
    for _, err in ipairs(errs) do
      assert_hidden(tostring(err), PASSWORD)
      assert_hidden(err.message, PASSWORD)
    end
    assert.equal("redis://***:***@127.0.0.1:" .. srv.port, rs.mask_url(url))
  end)

  it("not in the log at debug level of a child that fails, retries and reconnects", function()
    local code, out, err = host({ "-c", env_ini(), "-v", "-e", [[
      store:save_resume_token("users", { _data = "82aa" })
      store:command("CLIENT", "KILL", "TYPE", "normal")   -- our own connection goes
      assert(store:get_resume_token("users"))
      print("reconnected")
      -- Things that log: sentinels that do not answer, a WAIT nobody acknowledges.
      pcall(rs.new, { url = os.getenv("SENTINELS"), sentinel_password = os.getenv("PW"),
                      max_retries = 0 })
      local durable <close> = rs.new { url = os.getenv("REDIS_URL"), wait_replicas = 1,
                                      wait_timeout = 0.05, wait_policy = "warn" }
      durable:save_resume_token("users", { _data = "82bb" })
      local rs2 = rs.new { url = os.getenv("BAD_URL"), max_retries = 1, retry_base_delay = 0.01 }
    ]] }, { REDIS_URL = url, BAD_URL = "redis://default:" .. PASSWORD .. "@127.0.0.1:" .. servers.closed_port(),
        SENTINELS = ("redis://default:%s@127.0.0.1:%d,127.0.0.1:%d"):format(PASSWORD, servers.closed_port(),
                                                                         servers.closed_port()),
        PW = PASSWORD })
    assert.equal(1, code, "the script should fail on BAD_URL: " .. err)
    assert.matches("reconnected", out, 1, true)
    assert.matches("rigatoni-store: warn: save", err, 1, true)
    assert.matches("connection", err, 1, true)
    assert_hidden(out .. err, PASSWORD)
  end)

  it("not in --check output, with the URL given by REDIS_URL or by -u", function()
    local code, out, err = host({ "-c", env_ini(), "--check" }, { REDIS_URL = url })
    assert.equal(0, code, err)
    assert.matches("***", out, 1, true)
    assert_hidden(out .. err, PASSWORD)
    code, out, err = host({ "-u", url, "--check" })
    assert.equal(0, code, err)
    assert_hidden(out .. err, PASSWORD)
    code, out, err = host({ "-u", "redis://default:" .. PASSWORD .. "-wrong@127.0.0.1:" .. srv.port, "--check" })
    assert.equal(1, code)
    assert.matches("auth", out .. err, 1, true)
    assert_hidden(out .. err, PASSWORD)
  end)
  it("can come from [redis] password_file, kept out of the INI file and the command line", function()
    local secret = helpers.write_file(os.tmpname(), PASSWORD .. "\n", "600")
    local ini = helpers.write_file(os.tmpname(), ("[redis]\nurl = redis://127.0.0.1:%d\npassword_file = %s\n")
                                   :format(srv.port, secret), "644")
    local code, out, err = host({ "-c", ini, "--check" })
    os.remove(secret)
    os.remove(ini)
    assert.equal(0, code, err)
    assert.not_matches("readable by", err, 1, true)        -- nothing secret in the INI itself
    assert_hidden(out .. err, PASSWORD)
  end)
end)

describe("security: TLS", function()
  it("verification is on by default", function()
    local cfg = rs.config():url("rediss://127.0.0.1:6380"):build()
    assert.equal("true", tostring(cfg:to_table()["tls.verify"]))
    local default = rs.config():url("redis://127.0.0.1"):build()
    assert.equal("true", tostring(default:to_table()["tls.verify"]))
  end)
end)

describe("security: binary-safe commands", function()
  local srv
  setup(function() srv = servers.redis{} end)
  teardown(function() srv:stop() end)

  it("a collection named 'a b\\r\\nFLUSHALL' is one key, and nothing else happens", function()
    local store <close> = rs.new{ url = srv.url }
    srv:cli("SET", "bystander", "1")
    local name = "a b\r\nFLUSHALL\r\n*1\r\n$8\r\nFLUSHALL\r\n"
    store:save_resume_token(name, { _data = "82aa" })
    assert.equal("2", srv:cli("DBSIZE"))
    assert.equal("1", srv:cli("GET", "bystander"))
    assert.same({ _data = "82aa" }, store:get_resume_token(name))
    assert.equal(rs.bson.encode{ _data = "82aa" }, srv:cli_raw("GET", "rigatoni:resume_token:" .. name))
    local tokens = store:list_resume_tokens()
    assert.same({ _data = "82aa" }, tokens[name])
    assert.is_true(store:delete_resume_token(name))
    assert.equal("1", srv:cli("DBSIZE"))
  end)

  it("NUL bytes in collection names and lock owners travel as they are", function()
    local store <close> = rs.new{ url = srv.url }
    store:save_raw("nul\0name", "\5\0\0\0\0")
    assert.equal("\5\0\0\0\0", store:get_raw("nul\0name"))
    assert.is_nil(store:get_raw("nul"))
    store:delete_resume_token("nul\0name")
  end)
end)

describe("security: glob characters", function()
  local srv
  local names = { "a*b", "a?b", "[ab]", "axb", "a\\b", "*", "b" }
  setup(function()
    srv = servers.redis{}
    local store <close> = rs.new{ url = srv.url }
    for _, n in ipairs(names) do store:save_resume_token(n, { _data = "82" .. #n }) end
  end)
  teardown(function() srv:stop() end)

  local function listed(match)
    local store <close> = rs.new{ url = srv.url }
    local got = {}
    for coll in store:resume_tokens{ match = match } do got[#got + 1] = coll end
    table.sort(got)
    return got
  end

  it("collection names with * ? [ ] \\ are literal keys: get and delete touch that key only", function()
    local store <close> = rs.new{ url = srv.url }
    assert.same({ _data = "821" }, store:get_resume_token("*"))
    assert.is_nil(store:get_resume_token("a"))
    assert.is_true(store:delete_resume_token("*"))
    assert.equal(tostring(#names - 1), srv:cli("DBSIZE"))
    store:save_resume_token("*", { _data = "821" })
  end)

  it("match is a Redis glob on the collection name; escaped glob characters match literally", function()
    assert.same({ "a*b", "a?b", "a\\b", "axb" }, listed("a?b"))
    assert.same({ "a*b" }, listed("a\\*b"))
    assert.same({ "[ab]" }, listed("\\[ab\\]"))
    assert.same({ "b" }, listed("[ab]"))
    assert.same({ "*" }, listed("\\*"))
    assert.equal(#names, #listed("*"))
  end)

  it("a key_prefix with glob characters is matched literally", function()
    local other <close> = rs.new{ url = srv.url, key_prefix = "rigatoni:*" }
    other:save_resume_token("mine", { _data = "82" })
    local got = {}
    for coll in other:resume_tokens{} do got[#got + 1] = coll end
    assert.same({ "mine" }, got)         -- not the rigatoni:resume_token:* keys
    other:delete_resume_token("mine")
  end)

  it("host `list --match` passes the glob through unchanged", function()
    local code, out, err = host({ "-u", srv.url, "list", "--match", "a\\*b", "--format", "csv" })
    assert.equal(0, code, err)
    local rows = {}
    for line in out:gmatch("[^\n]+") do rows[#rows + 1] = line end
    assert.equal(2, #rows, out)             -- header + a*b
    assert.matches("^a%*b,", rows[2])
    code, out = host({ "-u", srv.url, "list", "--match", "[ab]", "--format", "csv" })
    assert.equal(0, code)
    assert.matches("\nb,", out)
    assert.not_matches("[ab]", out, 1, true)
  end)
end)

describe("security: no KEYS, no FLUSHDB", function()
  -- Code only: comments (Lua --, C /* */ and //) are removed before looking.
  local function strip_comments(text, lang)
    if lang == "c" then
      text = text:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " ")
    else
      text = text:gsub("%-%-%[(=*)%[.-%]%1%]", " "):gsub("%-%-[^\n]*", " ")
    end
    return text
  end

  it("scripts/ and core/ never send KEYS, FLUSHDB or FLUSHALL", function()
    local out = io.popen("find scripts core -type f \\( -name '*.lua' -o -name '*.c' -o -name '*.h' \\)"):read("a")
    local files = 0
    for path in out:gmatch("[^\n]+") do
      files = files + 1
      local code = strip_comments(read_file(path), path:match("%.lua$") and "lua" or "c")
      -- KEYS[1] inside server-side Lua scripts is the key argument, not the command.
      code = code:gsub("KEYS%[", "ARGKEYS[")
      for _, word in ipairs{ "KEYS", "FLUSHDB", "FLUSHALL" } do
        for pos in code:gmatch("()%f[%w_]" .. word .. "%f[^%w_]") do
          error(("%s uses %s (at byte %d)"):format(path, word, pos))
        end
      end
      -- The same commands spelled in lower case, as string literals.
      for lit in code:gmatch("[\"']([%a]+)[\"']") do
        local upper = lit:upper()
        assert(upper ~= "KEYS" and upper ~= "FLUSHDB" and upper ~= "FLUSHALL",
               path .. " has the string literal '" .. lit .. "'")
      end
    end
    assert.is_true(files > 10, "no sources found")
  end)
end)
