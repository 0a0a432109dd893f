-- spec/acl_spec.lua -- a Redis user set up for Rust Rigatoni 0.2 runs every
-- pipeline operation of ours; a maintenance user (README "ACL") runs the
-- scripts. Rust sends only GET, SET, SETEX, DEL, EXISTS, SCAN, MGET,
-- EVALSHA, SCRIPT LOAD, EXPIRE (in its refresh script), PING, AUTH, SELECT.

local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"
local run = helpers.run_host

-- The README's lines, verbatim (without the password part).
local PIPELINE = { "~rigatoni:*", "resetchannels", "-@all", "+get", "+set", "+setex", "+del", "+exists",
                   "+scan", "+mget", "+evalsha", "+script|load", "+expire", "+ping", "+auth", "+select" }
local MAINTENANCE = { "~rigatoni:*", "resetchannels", "-@all", "+get", "+set", "+setex", "+del",
                      "+exists", "+scan", "+mget", "+evalsha", "+script|load", "+expire", "+pexpire",
                      "+pttl", "+ping", "+auth", "+select", "+info", "+dbsize", "+memory|usage" }

local function token(n)
  return { _data = string.format("8265%08X000000012B022C0100296E5A1004", n, n) }
end

describe("a Redis user limited to Rust Rigatoni's commands", function()
  local srv, store
  setup(function()
    srv = servers.redis{}
    local args = { "ACL", "SETUSER", "rust", "reset", "on", ">rust-pw" }
    for _, a in ipairs(PIPELINE) do args[#args + 1] = a end
    assert.equal("OK", srv:cli(table.unpack(args)))
    args = { "ACL", "SETUSER", "ops", "reset", "on", ">ops-pw" }
    for _, a in ipairs(MAINTENANCE) do args[#args + 1] = a end
    assert.equal("OK", srv:cli(table.unpack(args)))
    store = rs.new{ url = "redis://rust:rust-pw@127.0.0.1:" .. srv.port }
  end)
  teardown(function()
    if store then store:close() end
    servers.stop_all()
  end)
  before_each(function()
    srv:cli("FLUSHALL")
    srv:cli("SCRIPT", "FLUSH")   -- every script call meets NOSCRIPT first
  end)

  it("is refused what Rust never sends (the ACL really is that narrow)", function()
    local ok, err = pcall(store.command, store, "PTTL", "rigatoni:resume_token:x")
    assert.is_false(ok)
    assert.equal("auth", err.kind)
    assert.matches("NOPERM", err.message)
  end)

  it("saves with and without TTL, reads and deletes", function()
    store:save_resume_token("users", token(1))
    assert.same(token(1), store:get_resume_token("users"))
    store:save_raw("orders", rs.bson.encode(token(2)), 3600)
    assert.equal("3600", srv:cli("TTL", "rigatoni:resume_token:orders"))
    assert.is_true(store:delete_resume_token("users"))
    assert.is_nil(store:get_resume_token("users"))
  end)

  it("lists: list_resume_tokens, and resume_tokens with TTLs unknown (false), never a failed listing", function()
    for i = 1, 30 do store:save_resume_token("c" .. i, token(i)) end
    local all = store:list_resume_tokens()
    local n = 0
    for _ in pairs(all) do n = n + 1 end
    assert.equal(30, n)
    local seen = 0
    for collection, tok, ttl in store:resume_tokens{ batch = 7 } do
      seen = seen + 1
      assert.equal(false, ttl)
      assert.same(token(tonumber(collection:sub(2))), tok)
    end
    assert.equal(30, seen)
  end)

  it("acquires, refreshes, checks and releases locks (scripts loaded with SCRIPT LOAD, refresh by EXPIRE)", function()
    local key = store:lock_key("shop", "orders")
    assert.is_true(store:try_acquire_lock(key, "rust-host-1", 30))
    assert.is_true(store:is_locked(key))
    assert.is_true(store:refresh_lock(key, "rust-host-1", 60))
    assert.equal("60", srv:cli("TTL", key))
    srv:cli("SCRIPT", "FLUSH")
    assert.is_true(store:release_lock(key, "rust-host-1"))
    assert.is_false(store:is_locked(key))
  end)

  it("saves fenced by a lock, and a lease works", function()
    local key = store:lock_key("shop", "orders")
    assert.is_true(store:try_acquire_lock(key, "rust-host-1", 30))
    store:save_resume_token("orders", token(5), { lock = key, owner = "rust-host-1" })
    assert.same(token(5), store:get_resume_token("orders"))
    assert.is_true(store:release_lock(key, "rust-host-1"))
    local lease <close> = store:lease(key, "rust-host-2", { ttl = 30 })
    assert.truthy(lease)
    srv:cli("SCRIPT", "FLUSH")
    assert.is_true(lease:refresh())
    lease:save_resume_token("orders", token(6))
    assert.same(token(6), store:get_resume_token("orders"))
  end)

  it("tools run as the pipeline user: list shows TTLs unknown, export is refused up front naming PTTL", function()
    store:save_resume_token("users", token(1))
    local url = "redis://rust:rust-pw@127.0.0.1:" .. srv.port
    local code, out, err = run{ "-u", url, "list", "--format", "jsonl" }
    assert.equal(0, code, err)
    assert.matches('"ttl_seconds":null', out, 1, true)
    code, out, err = run{ "-u", url, "export" }
    assert.equal(2, code)
    assert.matches("refuses PTTL", err)
    assert.equal("", out)
  end)

  it("a maintenance user runs the scripts", function()
    store:save_resume_token("users", token(1))
    local url = "redis://ops:ops-pw@127.0.0.1:" .. srv.port
    for _, argv in ipairs{ { "list" }, { "list", "--format", "jsonl" }, { "list", "--streams" },
                           { "export" }, { "stats" }, { "locks" },
                           { "cleanup", "--older-than", "30d" } } do
      local cmd = { "-u", url }
      for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
      local code, out, err = run(cmd)
      assert.equal(0, code, table.concat(argv, " ") .. ": " .. err .. out)
    end
  end)
end)
