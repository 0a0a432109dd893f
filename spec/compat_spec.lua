-- spec/compat_spec.lua -- living beside Rust Rigatoni 0.2: a cluster_mode
-- setting against a standalone server, and locks taken the Rust way
-- (SET NX EX from another client) against ours.

local rs = require "rigatoni_store"
local servers = require "support.servers"

describe("cluster_mode against a server that is not a cluster node", function()
  local srv
  setup(function() srv = servers.redis{} end)
  teardown(function() servers.stop_all() end)

  it("fails at once with a config error that says how to fix it", function()
    local started = os.clock()
    local ok, err = pcall(rs.new, { url = srv.url, cluster_mode = true, max_retries = 5,
                                    retry_base_delay = 0.5 })
    assert.is_false(ok)
    assert.equal("config", err.kind)
    assert.equal(1, err.attempts)
    assert.is_false(err.retryable)
    assert.matches("cluster support disabled", err.message)
    assert.matches("cluster_mode = false", err.message, 1, true)
    assert.matches("127.0.0.1:" .. srv.port, err.message, 1, true)
    -- No retry delay was slept (five retries would take seconds).
    assert.is_true(os.clock() - started < 0.5)
  end)
end)

describe("locks taken the Rust way and ours exclude each other", function()
  local srv, store
  local key = "rigatoni:lock:shop:orders"
  setup(function()
    srv = servers.redis{}
    store = rs.new{ url = srv.url }
  end)
  teardown(function()
    if store then store:close() end
    servers.stop_all()
  end)
  before_each(function() assert.equal("OK", srv:cli("FLUSHALL")) end)

  it("does not take a lock a Rust instance holds", function()
    -- Rust Rigatoni's acquire: SET key owner NX EX ttl.
    assert.equal("OK", srv:cli("SET", key, "rust-host-1111", "NX", "EX", "30"))
    assert.is_false(store:try_acquire_lock(key, "ours-2222", 30))
    assert.equal("rust-host-1111", srv:cli("GET", key))
    assert.is_false(store:release_lock(key, "ours-2222"))
    assert.equal("rust-host-1111", srv:cli("GET", key))
  end)

  it("is not taken by a Rust-style acquire while we hold it", function()
    assert.is_true(store:try_acquire_lock(key, "ours-2222", 30))
    -- redis-cli prints nothing for the nil reply of a refused SET NX.
    assert.equal("", srv:cli("SET", key, "rust-host-1111", "NX", "EX", "30"))
    assert.equal("ours-2222", srv:cli("GET", key))
  end)

  it("renews for the same owner (Rust answers false there: a documented difference)", function()
    assert.is_true(store:try_acquire_lock(key, "ours-2222", 5))
    assert.is_true(store:try_acquire_lock(key, "ours-2222", 60))
    assert.is_true(tonumber(srv:cli("TTL", key)) > 5)
  end)
end)
