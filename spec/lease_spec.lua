-- SPDX-License-Identifier: MIT
-- A Lua lease knows its validity from its own monotonic clock: valid until
-- the start of the last successful acquire or refresh + ttl. Once that has
-- passed it is lost for good, decided locally, whatever Redis is doing.
-- (The C lease thread: spec/c/test_lease.c.)
local rs = require "rigatoni_store"
local servers = require "support.servers"
local system = require "system"
local helpers = require "support.helpers"

describe("lease validity", function()
  local srv, store
  local key = "rigatoni:lock:db:v"

  setup(function()
    srv = servers.redis{}
    -- Short timeouts, no retries: a call that reached the frozen server
    -- would fail within half a second instead of answering at once.
    store = rs.new{ url = srv.url, command_timeout = 0.5, max_retries = 0 }
  end)

  teardown(function()
    if store then store:close() end
    if srv then srv:stop() end
  end)

  before_each(function()
    srv:cli("FLUSHDB")
  end)

  -- Runs fn with the server frozen (SIGSTOP); SIGCONT whatever happens.
  local function frozen(fn)
    os.execute("kill -STOP " .. srv.pid)
    local ok, err = pcall(fn)
    os.execute("kill -CONT " .. srv.pid)
    if not ok then error(err, 0) end
  end

  it("counts down from the ttl and is renewed from the start of a refresh", function()
    local lease <close> = store:lease(key, "me", { ttl = 2 })
    assert.is_truthy(lease)
    local left = lease:remaining()
    assert.is_true(left > 1.9 and left <= 2, "remaining " .. left)
    system.sleep(0.3)
    left = lease:remaining()
    assert.is_true(left > 1.5 and left <= 1.7, "remaining " .. left)
    assert.is_true(lease:refresh())
    left = lease:remaining()
    assert.is_true(left > 1.9 and left <= 2, "remaining " .. left)
  end)

  it("is lost once the validity passed, server frozen: held() false, save refused, no call", function()
    local lease <close> = store:lease(key, "me", { ttl = 1 })
    assert.is_truthy(lease)
    frozen(function()
      system.sleep(1.05)
      local t0 = system.monotime()
      assert.is_false(lease:held())
      local err = helpers.catch_object(lease.save_resume_token, lease, "v", { _data = "82aa" })
      assert.are.equal("not_owner", err.kind)
      assert.matches("not refreshed within its ttl", err.message)
      assert.is_false(lease:refresh())
      assert.are.equal(0, lease:remaining())
      -- All local: a call to the frozen server would have taken 0.5 s.
      assert.is_true(system.monotime() - t0 < 0.2, "took " .. (system.monotime() - t0))
    end)
    assert.are.equal("0", srv:cli("EXISTS", "rigatoni:resume_token:v"))
  end)

  it("stays lost after the validity passed even though the server still has our key", function()
    local lease <close> = store:lease(key, "me", { ttl = 0.3 })
    srv:cli("PEXPIRE", key, "30000")
    system.sleep(0.35)
    assert.is_false(lease:held())
    assert.is_false(lease:refresh())
    local err = helpers.catch_object(lease.save_resume_token, lease, "v", { _data = "82aa" })
    assert.are.equal("not_owner", err.kind)
    assert.are.equal("0", srv:cli("EXISTS", "rigatoni:resume_token:v"))
    -- The lock is still ours on the server: release (owner-checked) frees it.
    assert.are.equal("me", srv:cli("GET", key))
    assert.is_true(lease:release())
    assert.are.equal("0", srv:cli("EXISTS", key))
  end)

  it("is lost when held() finds another owner, before the validity passed", function()
    local lease <close> = store:lease(key, "me", { ttl = 30 })
    srv:cli("SET", key, "thief")
    assert.is_false(lease:held())
    assert.are.equal(0, lease:remaining())
    local err = helpers.catch_object(lease.save_resume_token, lease, "v", { _data = "82aa" })
    assert.are.equal("not_owner", err.kind)
  end)

  it("keeps the validity when a refresh fails against a frozen server", function()
    local lease <close> = store:lease(key, "me", { ttl = 2 })
    frozen(function()
      local before = lease:remaining()
      local err = helpers.catch_object(lease.refresh, lease)
      assert.is_true(err.kind == "timeout" or err.kind == "unknown", tostring(err))
      local left = lease:remaining()
      assert.is_true(left > 0 and left < before - 0.4, "remaining " .. left)
    end)
    assert.is_true(lease:refresh())
    assert.is_true(lease:held())
  end)
end)

describe("lease ttl and the key's life agree", function()
  local srv, store
  local key = "rigatoni:lock:db:px"

  setup(function()
    srv = servers.redis{}
    store = rs.new{ url = srv.url }
    -- Every command lands in the slow log, arguments and all.
    srv:cli("CONFIG", "SET", "slowlog-log-slower-than", "0")
    srv:cli("CONFIG", "SET", "slowlog-max-len", "128")
  end)

  teardown(function()
    if store then store:close() end
    if srv then srv:stop() end
  end)

  -- The arguments of the last command named `name` the server ran.
  local function last_sent(name)
    for _, entry in ipairs(store:command("SLOWLOG", "GET", "128")) do
      local args = entry[4]
      if args[1]:upper() == name then return args end
    end
  end

  -- Milliseconds of life the acquire's SET gave the key.
  local function set_life_ms()
    local args = last_sent("SET")
    for i = 1, #args - 1 do
      local unit = args[i]:upper()
      if unit == "PX" then return tonumber(args[i + 1]) end
      if unit == "EX" then return tonumber(args[i + 1]) * 1000 end
    end
    error("no EX/PX in " .. table.concat(args, " "))
  end

  -- Milliseconds of life the refresh script gave the key.
  local function refresh_life_ms()
    local args = last_sent("EVALSHA")   -- sha, 1, key, owner, amount, unit
    local amount, unit = tonumber(args[6]), args[7]
    return unit == "s" and amount * 1000 or amount
  end

  for _, ttl in ipairs{ 1.0009, 1.0004, 0.0505, 0.0504, 2.5004, 0.3, 0.0001, 7 } do
    it(("a ttl of %gs gives the key at least that long, on acquire and refresh"):format(ttl), function()
      srv:cli("DEL", key)
      srv:cli("SLOWLOG", "RESET")
      local lease <close> = store:lease(key, "me", { ttl = ttl })
      assert.is_truthy(lease)
      local life = set_life_ms()
      assert.is_true(life >= ttl * 1000, ("PX %s for a ttl of %gs"):format(life, ttl))
      assert.is_true(life <= ttl * 1000 + 1, ("PX %s for a ttl of %gs"):format(life, ttl))
      do
        -- The refresh script, on a lock taken for long enough to be there.
        assert.is_true(store:try_acquire_lock(key .. ":refresh", "me", 30))
        srv:cli("SLOWLOG", "RESET")
        assert.is_true(store:refresh_lock(key .. ":refresh", "me", ttl))
        life = refresh_life_ms()
        assert.is_true(life >= ttl * 1000, ("refresh gave %s ms for a ttl of %gs"):format(life, ttl))
        assert.is_true(life <= ttl * 1000 + 1, ("refresh gave %s ms for a ttl of %gs"):format(life, ttl))
      end
      srv:cli("SLOWLOG", "RESET")
      assert.is_true(store:try_acquire_lock(key .. ":plain", "me", ttl))
      life = set_life_ms()
      assert.is_true(life >= ttl * 1000, ("try_acquire_lock PX %s for a ttl of %gs"):format(life, ttl))
    end)
  end
end)

describe("lock owners are compared whole", function()
  local srv, store
  local key = "rigatoni:lock:db:nul"

  setup(function()
    srv = servers.redis{}
    store = rs.new{ url = srv.url }
  end)

  teardown(function()
    if store then store:close() end
    if srv then srv:stop() end
  end)

  it("held() is false for hostA when the key holds hostA\\0-evil", function()
    srv:cli("DEL", key)
    local lease <close> = store:lease(key, "hostA", { ttl = 30 })
    assert.is_truthy(lease)
    assert.is_true(lease:held())
    srv:set_raw(key, "hostA\0-evil")
    assert.is_false(lease:held())
    assert.is_false(lease:refresh())
  end)

  it("lock_owner returns an owner with a NUL byte whole", function()
    srv:set_raw(key, "hostA\0-evil")
    assert.equal("hostA\0-evil", store:lock_owner(key))
    srv:cli("DEL", key)
  end)

  it("an owner with a NUL byte is refused before anything is sent", function()
    srv:cli("DEL", key)
    for _, call in ipairs{
      function() return store:try_acquire_lock(key, "hostA\0-evil", 30) end,
      function() return store:refresh_lock(key, "hostA\0-evil", 30) end,
      function() return store:release_lock(key, "hostA\0-evil") end,
      function() return store:lease(key, "hostA\0-evil", { ttl = 30 }) end,
    } do
      local err = helpers.catch_object(call)
      helpers.assert_kind("config", err)
      assert.matches("NUL", err.message, 1, true)
    end
    assert.equal("0", srv:cli("EXISTS", key))
  end)
end)

-- Review of issue 23: a refresh through Sentinel opens a private pool whose
-- discovery asks every sentinel; with five that accept and never answer
-- (frozen) it used to take 5/4 of the validity left.
describe("a lease refresh through frozen sentinels", function()
  local master, sentinels = nil, {}
  setup(function()
    master = servers.redis{}
    for i = 1, 5 do sentinels[i] = servers.sentinel { master = master, quorum = 3 } end
  end)
  teardown(function()
    for _, s in ipairs(sentinels) do os.execute("kill -CONT " .. s.pid); s:stop() end
    if master then master:stop() end
  end)

  it("never outlives the validity (the whole discovery is cut to it)", function()
    local hosts = {}
    for i, s in ipairs(sentinels) do hosts[i] = "127.0.0.1:" .. s.port end
    local store = rs.new { url = "redis://" .. table.concat(hosts, ","), command_timeout = 5,
                           connection_timeout = 5 }
    local lease = assert(store:lease("rigatoni:lock:sent", "me", { ttl = 1 }))
    for _, s in ipairs(sentinels) do os.execute("kill -STOP " .. s.pid) end
    local left = lease:valid_for()
    local t0 = system.monotime()
    local ok, err = pcall(lease.refresh, lease)
    local took = system.monotime() - t0
    for _, s in ipairs(sentinels) do os.execute("kill -CONT " .. s.pid) end
    store:close()
    -- (a socket timeout ends some 20 ms after the time it was given)
    assert.is_true(took <= left + 0.05, ("refresh took %.3f s, validity left was %.3f s"):format(took, left))
    assert.is_false(ok)
  end)
end)

-- A lease lost when its validity passed is counted once in the lock
-- metrics (locks_lost_total +1, locks_held_total -1), as the C lease does.
describe("lease metrics after a loss by expiry", function()
  local srv
  setup(function() srv = servers.redis{} end)
  teardown(function() if srv then srv:stop() end end)

  local function metric(store, name)
    return tonumber(store:prometheus():match("\n" .. name .. " (%d+)"))
  end

  it("counts the loss once; a release that finds the key gone counts nothing", function()
    local store = rs.new { url = srv.url }
    local lease = assert(store:lease("rigatoni:lock:m1", "me", { ttl = 0.2 }))
    assert.equal(1, metric(store, "rigatoni_locks_held_total"))
    system.sleep(0.25)
    assert.equal(0, lease:valid_for())
    assert.equal(0, lease:valid_for())
    assert.is_false(lease:refresh())
    assert.is_false(lease:release())
    local held, lost = metric(store, "rigatoni_locks_held_total"), metric(store, "rigatoni_locks_lost_total")
    store:close()
    assert.equal(0, held)
    assert.equal(1, lost)
  end)

  it("a release that finds the key still ours does not take the gauge down again", function()
    local store = rs.new { url = srv.url }
    assert.is_true(store:try_acquire_lock("rigatoni:lock:other", "me", 30))
    local lease = assert(store:lease("rigatoni:lock:m2", "me", { ttl = 0.2 }))
    srv:cli("PEXPIRE", "rigatoni:lock:m2", "30000")
    system.sleep(0.25)
    assert.is_false(lease:held())
    assert.equal(1, metric(store, "rigatoni_locks_held_total"))
    assert.is_true(lease:release())
    local held, lost = metric(store, "rigatoni_locks_held_total"), metric(store, "rigatoni_locks_lost_total")
    store:close()
    assert.equal(1, held)        -- the other lock
    assert.equal(1, lost)
  end)

  it("a refresh that finds another owner counts the loss once", function()
    local store = rs.new { url = srv.url }
    local lease = assert(store:lease("rigatoni:lock:m3", "me", { ttl = 0.3 }))
    srv:cli("SET", "rigatoni:lock:m3", "thief")
    assert.is_false(lease:refresh())
    system.sleep(0.35)
    assert.equal(0, lease:valid_for())
    assert.is_false(lease:release())
    local held, lost = metric(store, "rigatoni_locks_held_total"), metric(store, "rigatoni_locks_lost_total")
    store:close()
    assert.equal(0, held)
    assert.equal(1, lost)
  end)
end)
