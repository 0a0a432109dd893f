-- SPDX-License-Identifier: MIT
-- Production connectivity: TLS (rediss://), ACL users, databases, and
-- durable saves with WAIT, against real servers.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local certs = require "support.certs"

local catch = require("support.helpers").catch

-- Runs `code` in a child lua5.4 whose log handler writes "<level>: <message>"
-- lines on stderr (none with `silent`: the library itself never prints);
-- returns its stderr, its stdout, and how it ended (os.execute's three results).
local function stderr_of(code, silent)
  local script, outfile, errfile = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  if not silent then
    f:write('require("rigatoni_store").set_log_handler(function(level, message) ',
            'io.stderr:write(level, ": ", message, "\\n") end) ')
  end
  f:write(code)
  f:close()
  local ok, how, status = os.execute(("LUA_CPATH='build/?.so;;' lua5.4 %s >%s 2>%s")
                                     :format(script, outfile, errfile))
  local err, out = io.open(errfile):read("a"), io.open(outfile):read("a")
  os.remove(script)
  os.remove(outfile)
  os.remove(errfile)
  return err, out, ok, how, status
end

describe("TLS", function()
  local pki, srv, mtls_srv, expired_srv, plain_srv

  setup(function()
    local dir = os.getenv("RS_TEST_ROOT") or "/tmp"
    local out = io.popen("mktemp -d " .. servers.quote(dir .. "/pki.XXXXXX")):read("l")
    pki = certs.make(out)
    srv = servers.redis{ tls = { cert = pki.server_cert, key = pki.server_key, ca = pki.ca } }
    mtls_srv = servers.redis{ tls = { cert = pki.server_cert, key = pki.server_key, ca = pki.ca,
                                      auth_clients = "yes", client_cert = pki.client_cert,
                                      client_key = pki.client_key } }
    expired_srv = servers.redis{ tls = { cert = pki.expired_cert, key = pki.expired_key,
                                         ca = pki.ca } }
    plain_srv = servers.redis{}
  end)

  teardown(function()
    for _, s in ipairs{ srv, mtls_srv, expired_srv, plain_srv } do s:stop() end
  end)

  it("saves and reads tokens over rediss:// with the server verified", function()
    local store <close> = rs.new{ url = srv.url, tls = { ca_file = pki.ca } }
    store:save_resume_token("users", { _data = "82aa" })
    assert.are.same({ _data = "82aa" }, store:get_resume_token("users"))
    assert.are.equal(rs.bson.encode{ _data = "82aa" }, srv:cli_raw("GET", "rigatoni:resume_token:users"))
  end)

  it("checks the host name: localhost matches, another server_name does not", function()
    local url = srv.url:gsub("127%.0%.0%.1", "localhost")
    local store <close> = rs.new{ url = url, tls = { ca_file = pki.ca } }
    assert.is_true(store:ping())
    local err = catch(rs.new, { url = url, tls = { ca_file = pki.ca, server_name = "db.example.com" } })
    assert.are.equal("connection", err.kind)
    assert.is_false(err.retryable)
    assert.matches("hostname mismatch", err.message, 1, true)
  end)

  it("does mutual TLS with a client certificate, and fails clearly without one", function()
    local store <close> = rs.new{ url = mtls_srv.url, tls = { ca_file = pki.ca,
      cert_file = pki.client_cert, key_file = pki.client_key } }
    store:save_resume_token("m", { _data = "82bb" })
    assert.are.same({ _data = "82bb" }, store:get_resume_token("m"))
    local err = catch(rs.new, { url = mtls_srv.url, max_retries = 0, tls = { ca_file = pki.ca } })
    assert.are.equal("connection", err.kind)
  end)

  it("refuses a server whose CA is not trusted, saying so, without retrying", function()
    local err = catch(rs.new, { url = srv.url, tls = { ca_file = pki.other_ca } })
    assert.are.equal("connection", err.kind)
    assert.is_false(err.retryable)
    assert.are.equal(1, err.attempts)
    assert.matches("certificate verify failed", err.message, 1, true)
  end)

  it("refuses an expired server certificate, saying so", function()
    local err = catch(rs.new, { url = expired_srv.url, tls = { ca_file = pki.ca } })
    assert.matches("certificate has expired", err.message, 1, true)
  end)

  it("fails fast and clearly when rediss:// points at a plain-text port", function()
    local t0 = os.time()
    -- A handshake that times out is retryable (a TLS server restarting
    -- looks the same): one attempt here, bounded by command_timeout.
    local err = catch(rs.new, { url = "rediss://127.0.0.1:" .. plain_srv.port, command_timeout = 1,
                               max_retries = 0, tls = { ca_file = pki.ca } })
    assert.are.equal("connection", err.kind)
    assert.matches("TLS", err.message, 1, true)
    assert.is_true(os.time() - t0 <= 3)
  end)

  it("names an unreadable CA file as a config error", function()
    local err = catch(rs.new, { url = srv.url, tls = { ca_file = "/nonexistent/ca.pem" } })
    assert.are.equal("config", err.kind)
    assert.matches("/nonexistent/ca.pem", err.message, 1, true)
  end)

  it("survives its TLS server being killed mid-use: connection errors, no SIGPIPE", function()
    local doomed = servers.redis{ tls = { cert = pki.server_cert, key = pki.server_key, ca = pki.ca } }
    local err, out, ok, how, status = stderr_of(([[
      local rs = require "rigatoni_store"
      local s = rs.new{ url = %q, tls = { ca_file = %q }, pool_size = 4, max_retries = 0 }
      for i = 1, 20 do s:save_resume_token("k" .. i, { _data = "82" }) end
      os.execute("kill -9 %d; sleep 0.2")
      local kinds = {}
      for i = 1, 10 do
        local ok, e = pcall(s.get_resume_token, s, "k" .. i)
        kinds[#kinds + 1] = ok and "ok" or e.kind
      end
      print(table.concat(kinds, " "))
    ]]):format(doomed.url, pki.ca, doomed.pid))
    doomed.pid = nil                       -- killed by the child
    assert.is_true(ok, ("child ended by %s %s: %s"):format(how, status, err))
    assert.are.equal(("connection "):rep(10):sub(1, -2) .. "\n", out)
  end)

  it("works with verify = false and warns on every connect (to the log handler: nothing is printed without one)", function()
    local code = ([[
      local rs = require "rigatoni_store"
      local s = rs.new{ url = %q, tls = { verify = false }, pool_size = 1 }
      s:save_resume_token("w", { _data = "82" })
      s:close()
      s = rs.new{ url = %q, tls = { verify = false } }
      assert(s:get_resume_token("w")._data == "82")
    ]]):format(srv.url, srv.url)
    local log = stderr_of(code)
    local warnings = select(2, ("\n" .. log):gsub("\nwarn: TLS verification is off", ""))
    assert.are.equal(2, warnings, log)
    local quiet, _, ok = stderr_of(code, true)
    assert.is_true(ok, quiet)
    assert.are.equal("", quiet)
  end)
end)

describe("ACL users and databases", function()
  local srv

  setup(function()
    srv = servers.redis{}
    srv:cli("ACL", "SETUSER", "pipeline", "on", ">s3cr3t-pw", "~rigatoni:*", "+@all")
  end)
  teardown(function() srv:stop() end)

  it("authenticates redis://user:password@ and writes into the /db given", function()
    local store <close> = rs.new{ url = ("redis://pipeline:s3cr3t-pw@127.0.0.1:%d/3"):format(srv.port) }
    store:save_resume_token("acl", { _data = "82cc" })
    assert.are.equal("1", srv:cli("-n", "3", "EXISTS", "rigatoni:resume_token:acl"))
    assert.are.equal("0", srv:cli("-n", "0", "EXISTS", "rigatoni:resume_token:acl"))
  end)

  it("takes the password from password_file, never from the URL", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("s3cr3t-pw\n")
    f:close()
    local store <close> = rs.new{ url = ("redis://pipeline@127.0.0.1:%d"):format(srv.port),
                                  password_file = path }
    store:save_resume_token("pwfile", { _data = "82" })
    assert.are.equal("1", srv:cli("EXISTS", "rigatoni:resume_token:pwfile"))
    local shown = rs.config():url("redis://pipeline@h:1"):password_file(path):build():to_table()
    assert.are.equal("***", shown.password)
    assert.are.equal(path, shown.password_file)
    os.remove(path)
  end)

  it("fails wrong credentials at once with an auth error that never shows the password", function()
    local url = ("redis://pipeline:wrong-pw-9876@127.0.0.1:%d"):format(srv.port)
    local err = catch(rs.new, { url = url })
    assert.are.equal("auth", err.kind)
    assert.is_false(err.retryable)
    assert.are.equal(1, err.attempts)
    assert.not_matches("wrong-pw-9876", tostring(err), 1, true)
    assert.matches("***", err.message, 1, true)
  end)

  it("reports a permission error for keys outside the user's patterns", function()
    local store <close> = rs.new{ url = ("redis://pipeline:s3cr3t-pw@127.0.0.1:%d"):format(srv.port),
                                  key_prefix = "other:prefix" }
    local err = catch(store.save_resume_token, store, "c", { _data = "82" })
    assert.are.equal("auth", err.kind)
    assert.matches("NOPERM", err.message, 1, true)
  end)
end)

describe("durable saves (wait_replicas)", function()
  local master, replica

  setup(function()
    master = servers.redis{}
    replica = servers.redis{ args = { "--replicaof", "127.0.0.1", tostring(master.port) } }
    local deadline = os.time() + 60
    while not master:cli("INFO", "replication"):find("state=online", 1, true) do
      assert(os.time() < deadline, "replica did not attach")
      os.execute("sleep 0.1")
    end
  end)
  teardown(function()
    replica:stop()
    master:stop()
  end)

  it("succeed when a replica acknowledges", function()
    local store <close> = rs.new{ url = master.url, wait_replicas = 1, wait_timeout = 2 }
    store:save_resume_token("d", { _data = "82dd" })
    assert.are.equal(rs.bson.encode{ _data = "82dd" }, replica:cli_raw("GET", "rigatoni:resume_token:d"))
  end)

  it("raise after wait_timeout when the replica is gone, or only warn with wait_policy = warn", function()
    replica:stop()
    local store <close> = rs.new{ url = master.url, wait_replicas = 1, wait_timeout = 0.3 }
    local t0 = require("system").gettime()
    local err = catch(store.save_resume_token, store, "d", { _data = "82ee" })
    local took = require("system").gettime() - t0
    assert.are.equal("server", err.kind)
    assert.matches("0 of 1 replicas", err.message, 1, true)
    assert.is_true(took >= 0.25 and took < 3)
    local log = stderr_of(([[
      local rs = require "rigatoni_store"
      local s = rs.new{ url = %q, wait_replicas = 1, wait_timeout = 0.1, wait_policy = "warn" }
      s:save_resume_token("d", { _data = "82ff" })
    ]]):format(master.url))
    assert.matches("0 of 1 replicas", log, 1, true)
    assert.are.equal(rs.bson.encode{ _data = "82ff" }, master:cli_raw("GET", "rigatoni:resume_token:d"))
  end)
end)
