-- SPDX-License-Identifier: MIT
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

describe("lock metrics under Rigatoni 0.2's names", function()
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

  local function sample(text, name)
    return tonumber(text:match("\n" .. name:gsub("[%%%-%[%]{}\"]", "%%%0") .. " (%d+)\n"))
  end

  it("counts acquisitions, failures by reason, refreshes, releases and lost locks", function()
    assert.is_true(store:try_acquire_lock(key, "ours-1", 30))
    assert.equal("OK", srv:cli("SET", "rigatoni:lock:other", "rust-host-9", "NX", "EX", "30"))
    assert.is_false(store:try_acquire_lock("rigatoni:lock:other", "ours-1", 30))
    assert.is_true(store:refresh_lock(key, "ours-1", 30))
    assert.is_true(store:try_acquire_lock(key, "ours-1", 30))       -- a renewal: a refresh
    local text = store:prometheus()
    assert.equal(1, sample(text, "rigatoni_locks_held_total"))
    assert.equal(1, sample(text, "rigatoni_lock_acquisitions_total"))
    assert.equal(1, sample(text, 'rigatoni_lock_acquisition_failures_total{reason="already_held"}'))
    assert.equal(0, sample(text, 'rigatoni_lock_acquisition_failures_total{reason="error"}'))
    assert.equal(2, sample(text, "rigatoni_lock_refreshes_total"))
    assert.is_true(store:release_lock(key, "ours-1"))
    text = store:prometheus()
    assert.equal(1, sample(text, "rigatoni_locks_released_total"))
    assert.equal(0, sample(text, "rigatoni_locks_held_total"))
    -- Acquired again, then expired and taken behind its back: the refresh finds it lost.
    assert.is_true(store:try_acquire_lock(key, "ours-1", 30))
    srv:cli("SET", key, "rust-host-9")
    assert.is_false(store:refresh_lock(key, "ours-1", 30))
    text = store:prometheus()
    assert.equal(1, sample(text, "rigatoni_locks_lost_total"))
    assert.equal(0, sample(text, "rigatoni_locks_held_total"))
    assert.equal(2, sample(text, "rigatoni_lock_acquisitions_total"))
    assert.matches("# TYPE rigatoni_locks_held_total gauge\n", text, 1, true)
    for _, name in ipairs{ "rigatoni_lock_acquisitions_total", "rigatoni_lock_acquisition_failures_total",
                           "rigatoni_locks_lost_total", "rigatoni_lock_refreshes_total",
                           "rigatoni_locks_released_total" } do
      assert.matches("# TYPE " .. name .. " counter\n", text, 1, true)
    end
  end)
end)
