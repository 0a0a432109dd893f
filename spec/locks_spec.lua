-- SPDX-License-Identifier: MIT
-- Distributed locks compatible with Rigatoni 0.2, fenced saves and leases,
-- against a real redis-server.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local system = require "system"

describe("locks", function()
  local srv, store

  setup(function()
    srv = servers.redis{}
    store = rs.new{ url = srv.url }
  end)

  teardown(function()
    if store then store:close() end
    if srv then srv:stop() end
  end)

  before_each(function()
    srv:cli("FLUSHDB")
  end)

  describe("the five Rigatoni lock behaviours", function()
    it("acquires and releases, with the owner id as the value and a TTL", function()
      local key = store:lock_key("shop", "orders")
      assert.are.equal("rigatoni:lock:shop:orders", key)
      assert.is_true(store:try_acquire_lock(key, "host-a", 30))
      assert.are.equal("host-a", srv:cli("GET", key))
      local ttl = tonumber(srv:cli("TTL", key))
      assert.is_true(ttl > 25 and ttl <= 30)
      assert.is_true(store:is_locked(key))
      assert.is_true(store:release_lock(key, "host-a"))
      assert.are.equal("0", srv:cli("EXISTS", key))
      assert.is_false(store:is_locked(key))
    end)

    it("excludes a second owner while the lock is held", function()
      assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "a", 30))
      assert.is_false(store:try_acquire_lock("rigatoni:lock:db:c", "b", 30))
      assert.are.equal("a", store:lock_owner("rigatoni:lock:db:c"))
    end)

    it("refreshes only for the owner", function()
      assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "a", 5))
      assert.is_false(store:refresh_lock("rigatoni:lock:db:c", "b", 100))
      assert.is_true(tonumber(srv:cli("TTL", "rigatoni:lock:db:c")) <= 5)
      assert.is_true(store:refresh_lock("rigatoni:lock:db:c", "a", 100))
      assert.is_true(tonumber(srv:cli("TTL", "rigatoni:lock:db:c")) > 90)
    end)

    it("refuses a release by the wrong owner", function()
      assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "a", 30))
      assert.is_false(store:release_lock("rigatoni:lock:db:c", "b"))
      assert.are.equal("a", srv:cli("GET", "rigatoni:lock:db:c"))
    end)

    it("lets another owner take over after expiry", function()
      assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "a", 0.2))
      system.sleep(0.35)
      assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "b", 30))
      assert.is_false(store:refresh_lock("rigatoni:lock:db:c", "a", 30))
      assert.are.equal("b", srv:cli("GET", "rigatoni:lock:db:c"))
    end)
  end)

  it("respects a lock written by another client exactly as Rigatoni does", function()
    srv:cli("SET", "rigatoni:lock:db:__database__", "rust-host-1234", "NX", "EX", "30")
    assert.is_false(store:try_acquire_lock("rigatoni:lock:db:__database__", "lua-host", 30))
    assert.are.equal("rigatoni:lock:db:__database__", store:lock_key("db"))
    assert.are.equal("rigatoni:lock:__deployment__", store:lock_key())
  end)

  it("treats a re-acquire by the same owner as success and renews the TTL", function()
    assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "a", 5))
    assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "a", 60))
    assert.is_true(tonumber(srv:cli("TTL", "rigatoni:lock:db:c")) > 50)
  end)

  it("recovers from SCRIPT FLUSH (NOSCRIPT) by loading the scripts again", function()
    assert.is_true(store:try_acquire_lock("rigatoni:lock:db:c", "a", 30))
    assert.is_true(store:refresh_lock("rigatoni:lock:db:c", "a", 30))
    srv:cli("SCRIPT", "FLUSH")
    assert.is_true(store:refresh_lock("rigatoni:lock:db:c", "a", 40))
    srv:cli("SCRIPT", "FLUSH")
    assert.is_true(store:release_lock("rigatoni:lock:db:c", "a"))
  end)

  it("rejects empty keys, owners and non-positive TTLs", function()
    for _, call in ipairs{
      function() store:try_acquire_lock("", "a", 1) end,
      function() store:try_acquire_lock("k", "", 1) end,
      function() store:try_acquire_lock("k", "a", 0) end,
      function() store:refresh_lock("k", "a", -1) end,
    } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.are.equal("config", err.kind)
    end
    assert.are.equal("0", srv:cli("DBSIZE"))
  end)

  it("makes owner ids of the form {hostname}-{uuid v4}", function()
    local a, b = rs.owner_id(), rs.owner_id()
    assert.are_not.equal(a, b)
    assert.is_truthy(a:match("^.+%-%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"))
  end)
end)

describe("fenced saves", function()
  local srv

  setup(function() srv = servers.redis{} end)
  teardown(function() if srv then srv:stop() end end)

  it("write while the lock is held, with the configured TTL", function()
    local store <close> = rs.new{ url = srv.url, ttl = 600 }
    assert.is_true(store:try_acquire_lock("rigatoni:lock:db:users", "a", 30))
    store:save_resume_token("users", { _data = "8201" }, { lock = "rigatoni:lock:db:users", owner = "a" })
    assert.are.equal(rs.bson.encode{ _data = "8201" }, srv:cli_raw("GET", "rigatoni:resume_token:users"))
    local ttl = tonumber(srv:cli("TTL", "rigatoni:resume_token:users"))
    assert.is_true(ttl > 590 and ttl <= 600)
  end)

  it("are refused after the lease expired and another owner took it; the new owner's token stays", function()
    local store <close> = rs.new{ url = srv.url }
    local key = "rigatoni:lock:db:orders"
    assert.is_true(store:try_acquire_lock(key, "old", 0.2))
    store:save_resume_token("orders", { _data = "82old1" }, { lock = key, owner = "old" })
    system.sleep(0.35)                                  -- "old" pauses; its lock expires
    assert.is_true(store:try_acquire_lock(key, "new", 30))
    store:save_resume_token("orders", { _data = "82new1" }, { lock = key, owner = "new" })
    local ok, err = pcall(store.save_resume_token, store, "orders", { _data = "82old2" },
                          { lock = key, owner = "old" })
    assert.is_false(ok)
    assert.are.equal("not_owner", err.kind)
    assert.is_truthy(err.message:find(key, 1, true))
    assert.are.same({ _data = "82new1" }, store:get_resume_token("orders"))
  end)

  it("need both lock and owner", function()
    local store <close> = rs.new{ url = srv.url }
    local ok, err = pcall(store.save_resume_token, store, "c", { _data = "82" }, { lock = "k" })
    assert.is_false(ok)
    assert.are.equal("config", err.kind)
  end)
end)

describe("leases", function()
  local srv

  setup(function() srv = servers.redis{} end)
  teardown(function() if srv then srv:stop() end end)

  it("are released when the <close> variable goes out of scope", function()
    local store <close> = rs.new{ url = srv.url }
    do
      local lease <close> = store:lease("rigatoni:lock:db:c", "a", { ttl = 30 })
      assert.is_truthy(lease)
      assert.is_true(lease:held())
      assert.is_true(lease:refresh())
      lease:save_resume_token("c", { _data = "82aa" })
      assert.are.equal("a", srv:cli("GET", "rigatoni:lock:db:c"))
    end
    assert.are.equal("0", srv:cli("EXISTS", "rigatoni:lock:db:c"))
    assert.are.same({ _data = "82aa" }, store:get_resume_token("c"))
  end)

  it("is nil when another owner holds the lock", function()
    local store <close> = rs.new{ url = srv.url }
    assert.is_true(store:try_acquire_lock("rigatoni:lock:db:d", "other", 30))
    local lease <close> = store:lease("rigatoni:lock:db:d", "me", { ttl = 30 })
    assert.is_nil(lease)
  end)

  it("reports loss and refuses fenced saves once taken over", function()
    local store <close> = rs.new{ url = srv.url }
    local lease <close> = store:lease("rigatoni:lock:db:e", "me", { ttl = 0.2 })
    system.sleep(0.35)
    assert.is_true(store:try_acquire_lock("rigatoni:lock:db:e", "other", 30))
    assert.is_false(lease:held())
    assert.is_false(lease:refresh())
    local ok, err = pcall(lease.save_resume_token, lease, "e", { _data = "82" })
    assert.are.equal("not_owner", err.kind)
    assert.is_false(lease:release())
    assert.are.equal("other", srv:cli("GET", "rigatoni:lock:db:e"))
  end)
end)

describe("lock contention", function()
  local srv

  setup(function() srv = servers.redis{} end)
  teardown(function() if srv then srv:stop() end end)

  it("never has two holders of one key at once (8 processes, 20 keys)", function()
    local procs, nkeys, seconds = 8, 20, 3
    local files = {}
    local cmds = {}
    for i = 1, procs do
      files[i] = os.tmpname()
      cmds[#cmds + 1] = ("lua5.4 spec/support/lock_contender.lua %s %d %d %d %s >/dev/null &")
        :format(servers.quote(srv.url), i, nkeys, seconds, servers.quote(files[i]))
    end
    assert.is_true(os.execute(table.concat(cmds, " ") .. " wait") == true)

    local by_key, total = {}, 0
    for i = 1, procs do
      for line in io.lines(files[i]) do
        local key, owner, t0, t1 = line:match("^(%S+) (%S+) (%S+) (%S+)$")
        by_key[key] = by_key[key] or {}
        table.insert(by_key[key], { owner = owner, t0 = tonumber(t0), t1 = tonumber(t1) })
        total = total + 1
      end
      os.remove(files[i])
    end
    assert.is_true(total > 200, "too few holds to mean anything: " .. total)
    local keys = 0
    for key, holds in pairs(by_key) do
      keys = keys + 1
      table.sort(holds, function(a, b) return a.t0 < b.t0 end)
      for i = 2, #holds do
        assert.is_true(holds[i].t0 >= holds[i - 1].t1,
          ("%s held by %s and %s at once"):format(key, holds[i - 1].owner, holds[i].owner))
      end
    end
    assert.are.equal(nkeys, keys)
  end)
end)
