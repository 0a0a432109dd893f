-- SPDX-License-Identifier: MIT
-- spec/config_spec.lua -- configuration, URL parsing and credential masking.

local rs = require "rigatoni_store"
local servers = require "support.servers"

local helpers = require "support.helpers"
local catch, assert_kind = helpers.catch, helpers.assert_kind

-- No server listens on this URL: a config check that is skipped shows as a
-- connection error instead of a config error.
local CLOSED = "redis://127.0.0.1:" .. servers.closed_port()

describe("required options", function()
  it("rs.new without url is a config error naming the url", function()
    local err = catch(rs.new, {})
    assert_kind("config", err)
    assert.matches("url", err.message:lower(), 1, true)
  end)

  it("pool_size 0 is a config error", function()
    local err = catch(rs.new, { url = CLOSED, pool_size = 0 })
    assert_kind("config", err)
    assert.matches("pool_size", err.message, 1, true)
  end)

  it("workers 0 or over 256 is a config error (the jobs' threads)", function()
    for _, n in ipairs{ 0, 257 } do
      local err = catch(rs.new, { url = CLOSED, workers = n })
      assert_kind("config", err)
      assert.matches("workers must be between 1 and 256", err.message, 1, true)
    end
  end)

  it("a negative ttl is a config error", function()
    local err = catch(rs.new, { url = CLOSED, ttl = -5 })
    assert_kind("config", err)
    assert.matches("ttl", err.message, 1, true)
  end)

  it("the builder without url is a config error", function()
    local err = catch(function() return rs.config():build() end)
    assert_kind("config", err)
  end)

  it("the builder rejects pool_size 0", function()
    local err = catch(function()
      return rs.config():url(CLOSED):pool_size(0):build()
    end)
    assert_kind("config", err)
  end)
end)

describe("config builder", function()
  it("shows the defaults of Rigatoni with the url masked", function()
    local cfg = rs.config():url("redis://user:pass@h:6379"):build()
    local text = tostring(cfg)
    assert.matches("redis://***:***@h:6379", text, 1, true)
    assert.not_matches("user:pass", text, 1, true)
    assert.not_matches(":pass@", text, 1, true)
    assert.equal("10", text:match("pool_size%W+(%d+)"), text)
    assert.equal("3", text:match("max_retries%W+(%d+)"), text)
    assert.equal("5", text:match("connection_timeout%W+(%d+)"), text)
    assert.equal("false", text:match("cluster_mode%W+(%a+)"), text)
    assert.equal("none", text:match("[^_]ttl%W+(%a+)"), text)
    assert.matches("rigatoni:resume_token", text, 1, true)
  end)

  it("never shows the user or the password", function()
    local text = tostring(rs.config():url("redis://alice:s3cr3tpw@h:6379/3"):build())
    assert.not_matches("alice", text, 1, true)
    assert.not_matches("s3cr3tpw", text, 1, true)
    assert.matches("redis://***:***@h:6379/3", text, 1, true)
  end)

  it("shows the options that were set", function()
    local cfg = rs.config():url("redis://h:6379"):pool_size(20):ttl(7 * 24 * 3600):max_retries(5):build()
    local text = tostring(cfg)
    assert.equal("20", text:match("pool_size%W+(%d+)"), text)
    assert.equal("5", text:match("max_retries%W+(%d+)"), text)
  end)

  it("builds a config that rs.new opens and uses", function()
    local srv = servers.redis{}
    finally(function() srv:stop() end)
    local cfg = rs.config():url(srv.url):pool_size(20):ttl(7 * 24 * 3600):max_retries(5):build()
    local store <close> = rs.new(cfg)
    store:save_resume_token("users", { _data = "8201" })
    assert.same({ _data = "8201" }, store:get_resume_token("users"))
    local ttl = tonumber(srv:cli("TTL", "rigatoni:resume_token:users"))
    assert.is_true(ttl > 7 * 24 * 3600 - 10 and ttl <= 7 * 24 * 3600, "TTL " .. tostring(ttl))
  end)
end)

describe("rs.mask_url", function()
  it("masks user and password", function()
    assert.equal("redis://***:***@h:6379", rs.mask_url("redis://user:pass@h:6379"))
  end)

  it("masks a password without user", function()
    local masked = rs.mask_url("redis://:secret@h")
    assert.not_matches("secret", masked, 1, true)
    assert.matches("***", masked, 1, true)
    assert.matches("^redis://:?%*%*%*@h", masked)
  end)

  it("masks a percent-encoded password", function()
    local masked = rs.mask_url("redis://user:p%40ss%3Aw0rd@h:6379/1")
    assert.equal("redis://***:***@h:6379/1", masked)
  end)

  it("masks IPv6 hosts' credentials and keeps the brackets", function()
    assert.equal("redis://***:***@[::1]:6380/2", rs.mask_url("redis://user:pw@[::1]:6380/2"))
  end)

  it("leaves a URL without credentials as it is", function()
    assert.equal("redis://127.0.0.1:6379", rs.mask_url("redis://127.0.0.1:6379"))
  end)

  it("shows garbage as scheme://*** without leaking any part of it", function()
    local masked = rs.mask_url("redis://us er:p@ss@@@")
    assert.equal("redis://***", masked)
    for _, part in ipairs{ "p@ss", "ss", "us er", "er" } do
      assert.not_matches(part, masked, 1, true)
    end
  end)

  it("shows text without scheme as *** only", function()
    local masked = rs.mask_url("not a url:hunter2")
    assert.not_matches("hunter2", masked, 1, true)
    assert.matches("***", masked, 1, true)
  end)
end)

describe("invalid URLs", function()
  local bad = {
    "http://u:hunter2@x",
    "redis://",
    "redis://u:hunter2@h:99999",
    "redis://u:hunter2@h:abc",
    "redis://u:hunter2@h/notanumber",
    "redis://u:hunter2@",
    "hunter2",
  }
  for _, url in ipairs(bad) do
    it("rejects " .. url .. " with a config error that hides the password", function()
      local err = catch(rs.new, { url = url })
      assert_kind("config", err)
      assert.not_matches("hunter2", err.message, 1, true)
      assert.not_matches("hunter2", tostring(err), 1, true)
    end)
  end

  it("the builder rejects an invalid URL with a config error", function()
    local err = catch(function() return rs.config():url("redis://u:hunter2@h:abc"):build() end)
    assert_kind("config", err)
    assert.not_matches("hunter2", tostring(err), 1, true)
  end)
end)

describe("URLs of other deployments", function()
  -- TLS and Sentinel landed after this spec was first written: their URLs
  -- are now accepted and fail only on the connection (nothing listens on
  -- these ports); a build without them must say so with a config error.
  it("rediss:// is accepted, or refused with a config error naming TLS", function()
    local port = servers.closed_port()
    local err = catch(rs.new, { url = "rediss://u:hunter2@127.0.0.1:" .. port, max_retries = 0 })
    if err.kind == "config" then
      assert.matches("TLS", err.message, 1, true)
    else
      assert_kind("connection", err)
      assert.matches("rediss://***:***@127.0.0.1:" .. port, err.message, 1, true)
    end
    assert.not_matches("hunter2", tostring(err), 1, true)
  end)

  it("several hosts (Sentinel) are accepted, or refused with a config error naming Sentinel", function()
    local p1, p2 = servers.closed_port(), servers.closed_port()
    local url = string.format("redis://:hunter2@127.0.0.1:%d,127.0.0.1:%d", p1, p2)
    local err = catch(rs.new, { url = url, max_retries = 0 })
    if err.kind == "config" then
      assert.matches("sentinel", err.message:lower(), 1, true)
    else
      assert_kind("connection", err)
      assert.matches("@127.0.0.1:" .. p1, err.message, 1, true)
    end
    assert.matches("***", err.message, 1, true)
    assert.not_matches("hunter2", tostring(err), 1, true)
  end)
end)

describe("module", function()
  it("rs.version is a version string", function()
    assert.is_string(rs.version)
    assert.matches("^%d+%.%d+%.%d+", rs.version)
  end)
end)
