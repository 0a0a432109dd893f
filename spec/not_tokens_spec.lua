-- spec/not_tokens_spec.lua -- keys under the key prefix (or the lock
-- prefix) whose value is not a string (a hash, a list: written by something
-- else) are never fatal: every walk skips them and counts them
-- (counts.not_strings), and each tool reports them as not tokens, on a
-- standalone server and on a cluster (3 masters + 3 replicas) alike.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"
local host = helpers.run_host

-- Cluster times of 1970: older than any --older-than.
local function token(i) return { _data = ("82%08X%08X"):format(i, i % 97) } end

-- Five tokens, two non-strings among them, a lock and a non-string lock.
local function fill(store, cli)
  for i = 1, 5 do store:save_resume_token("ok" .. i, token(i)) end
  cli("HSET", "rigatoni:resume_token:badhash", "f", "v")
  cli("RPUSH", "rigatoni:resume_token:badlist", "x")
  assert.is_true(store:try_acquire_lock(store:lock_key("db", "c"), "me", 600))
  cli("HSET", "rigatoni:lock:badlock", "f", "v")
end

-- The specs shared by both set-ups: `ctx()` gives the store, the URL
-- arguments of the host binary and a `cli` that runs a command on the
-- node that serves its key.
local function shared_specs(ctx)
  it("every walk skips them and counts them (counts.not_strings), from 0", function()
    local store = ctx().store
    local counts, n = {}, 0
    for name in store:resume_tokens{ batch = 2, counts = counts } do
      n = n + 1
      assert.matches("^ok%d$", name)
    end
    assert.are.same({ 5, 2 }, { n, counts.not_strings })

    counts = { not_strings = 99 }
    local rows = 0
    for _, _, _, _, k in store:token_batches{ counts = counts, ttl = false } do rows = rows + k end
    assert.are.same({ 5, 2 }, { rows, counts.not_strings })

    for _, format in ipairs{ "list", "export" } do
      counts, rows = {}, 0
      for text, k in store:token_lines{ format = format, counts = counts } do
        rows = rows + k
        assert.not_matches("bad", text, 1, true)
      end
      assert.are.same({ 5, 2 }, { rows, counts.not_strings }, format)
    end

    counts = {}
    local locks = {}
    for key in store:scan_keys("rigatoni:lock:*", { counts = counts }) do locks[#locks + 1] = key end
    assert.are.same({ { "rigatoni:lock:db:c" }, 1 }, { locks, counts.not_strings })

    counts = {}
    local all = store:list_resume_tokens{ counts = counts }
    assert.is_nil(all.badhash)
    assert.are.equal(2, counts.not_strings)

    local plain = {}   -- no counts table: the same walk
    for name in store:resume_tokens{} do plain[#plain + 1] = name end
    assert.are.equal(5, #plain)
  end)

  it("list reports them on stderr; its data (every format) stays clean", function()
    local c = ctx()
    for _, format in ipairs{ "table", "csv", "jsonl", "json", "prometheus" } do
      local code, out, err = host(c.args .. " list --format " .. format)
      assert.are.equal(0, code, err)
      assert.not_matches("bad", out, 1, true)
      assert.matches("list: 5 tokens", err, 1, true)
      assert.matches("2 keys under the prefix are not tokens (not strings), left alone", err, 1, true)
    end
  end)

  it("stats counts them (a not_tokens line and the summary)", function()
    local code, out, err = host(ctx().args .. " stats")
    assert.are.equal(0, code, err)
    assert.matches("\ntokens +5\n", out)
    assert.matches("\nnot_tokens +2\n", out)
    assert.matches("2 keys under the prefix are not tokens", out, 1, true)
  end)

  it("locks lists the lock and reports the non-string key as not a lock", function()
    local code, out, err = host(ctx().args .. " locks")
    assert.are.equal(0, code, err)
    assert.matches("rigatoni:lock:db:c", out, 1, true)
    assert.not_matches("badlock", out, 1, true)
    assert.matches("locks: 1 held; 1 key under the prefix is not a lock (not a string), left alone", out, 1, true)
  end)

  it("export writes the tokens only and reports the others", function()
    local code, out, err = host(ctx().args .. " export --output -")
    assert.are.equal(0, code, err)
    assert.are.equal(5, select(2, out:gsub("\n", "")))
    assert.not_matches("bad", out, 1, true)
    assert.matches("export: 5 tokens to stdout", err, 1, true)
    assert.matches("; 2 keys under the prefix are not tokens (not strings), left alone", err, 1, true)
  end)

  it("cleanup deletes old tokens, leaves the others and reports them", function()
    local c = ctx()
    local code, out, err = host(c.args .. " cleanup --older-than 1d --yes")
    assert.are.equal(0, code, out .. err)
    assert.matches("5 deleted", out, 1, true)
    assert.matches("2 keys under the prefix are not tokens (not strings), left alone", out, 1, true)
    assert.are.equal("1", c.cli("EXISTS", "rigatoni:resume_token:badhash"))
    assert.are.equal("1", c.cli("EXISTS", "rigatoni:resume_token:badlist"))
  end)

  it("migrate copies the tokens, not the others, and reports them", function()
    local c = ctx()
    local other = servers.redis{}
    finally(function() other:stop() end)
    local code, out, err = host(c.args .. " migrate --to " .. other.url .. " --delete-source")
    assert.are.equal(0, code, out .. err)
    assert.matches("5 copied", out, 1, true)
    assert.matches("2 keys under the prefix are not tokens (not strings), left alone", out, 1, true)
    assert.are.equal("5", other:cli("DBSIZE"))
    assert.are.equal("1", c.cli("EXISTS", "rigatoni:resume_token:badhash"))
  end)
end

describe("keys under the prefix that are not strings, standalone", function()
  local srv, store
  local function ctx()
    return { store = store, args = "-u " .. srv.url, cli = function(...) return srv:cli(...) end }
  end
  setup(function()
    srv = servers.redis{}
    store = rs.new{ url = srv.url }
  end)
  teardown(function()
    if store then store:close() end
    servers.stop_all()
  end)
  before_each(function()
    srv:cli("FLUSHALL")
    fill(store, ctx().cli)
  end)
  shared_specs(ctx)

  it("a user that may not run EXISTS: they are still skipped, never fatal, only not counted", function()
    assert.are.equal("OK", srv:cli("ACL", "SETUSER", "noexists", "reset", "on", ">ne-pw", "~rigatoni:*",
                                   "resetchannels", "+@all", "-exists"))
    local narrow <close> = rs.new{ url = srv.url:gsub("^redis://", "redis://noexists:ne-pw@") }
    local counts, n = {}, 0
    for _ in narrow:resume_tokens{ counts = counts } do n = n + 1 end
    assert.are.same({ 5, 0 }, { n, counts.not_strings })
  end)
end)

describe("keys under the prefix that are not strings, cluster", function()
  local cluster, store
  -- The command on the master that serves its key.
  local function on_owner(...)
    local key = select(2, ...)
    for _, m in ipairs(cluster:masters()) do
      local got = m:cli("EXISTS", key)
      if not got:match("^MOVED") then return m:cli(...) end
    end
    error("no master serves " .. key)
  end
  local function ctx()
    return { store = store, args = "-u " .. cluster.url .. " -s redis.cluster_mode=true", cli = on_owner }
  end
  setup(function()
    cluster = servers.cluster{ masters = 3, replicas = 1 }
    store = rs.new{ url = cluster.url, cluster_mode = true }
  end)
  teardown(function()
    if store then store:close() end
    if cluster then cluster:stop() end
  end)
  before_each(function()
    for _, m in ipairs(cluster:masters()) do m:cli("FLUSHALL") end
    fill(store, on_owner)
  end)
  shared_specs(ctx)
end)
