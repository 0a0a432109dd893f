-- spec/cut_replies_spec.lua -- error replies inside a pipeline whose
-- connection is cut before its last reply (issue 21, item 1).
--
-- An ACL user may write only `rigatoni:resume_token:a*`; a batch of ten
-- refused names then ten allowed ones goes through the fault proxy, which
-- relays 12 reply lines (10 -NOPERM, 2 +OK) and closes. The 8 SETs whose
-- replies were lost did run. An error reply is never "written", whatever
-- happened to the rest of the pipeline: save_many{nx = true} raises the
-- refusal (as it does when every reply arrives) and tells, in err.written,
-- what each item's outcome was; import stops and counts what it wrote.

local rs = require "rigatoni_store"
local servers = require "support.servers"
local proxy = require "support.proxy"
local helpers = require "support.helpers"
local run, catch_object = helpers.run_host, helpers.catch_object

local PREFIX = "rigatoni:resume_token:"
-- The README's maintenance user, writing only a*.
local USER = { "ACL", "SETUSER", "part", "reset", "on", ">part-pw", "resetchannels", "-@all",
               "%R~rigatoni:*", "%RW~rigatoni:resume_token:a*",
               -- the tools' up-front check (lib/check.lua) probes a key of its own:
               -- allowed, so import reaches its writes and meets the refusals there
               "%RW~rigatoni:resume_token:.permission-probe.*", "+get", "+set", "+setex", "+del",
               "+exists", "+scan", "+mget", "+evalsha", "+script|load", "+expire", "+pexpire",
               "+pttl", "+ping", "+auth", "+select", "+info", "+dbsize", "+memory|usage" }

local function token(n)
  return rs.bson.encode { _data = string.format("8265%08X000000012B022C0100296E5A1004", n) }
end

-- b01..b10 (refused), then a01..a10 (allowed).
local function batch()
  local items = {}
  for i = 1, 10 do items[#items + 1] = { string.format("b%02d", i), token(i) } end
  for i = 1, 10 do items[#items + 1] = { string.format("a%02d", i), token(100 + i) } end
  return items
end

local function b64(s)
  local abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((s:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return abc:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

describe("an error reply in a pipeline cut before its last reply", function()
  local srv, p
  setup(function()
    srv = servers.redis{}
    assert.equal("OK", srv:cli(table.unpack(USER)))
    p = proxy.start(srv)
  end)
  teardown(function()
    if p then p:stop() end
    servers.stop_all()
  end)
  before_each(function()
    srv:cli("FLUSHALL")
    p:set("pass")
  end)

  local function url()
    return "redis://part:part-pw@127.0.0.1:" .. p.port
  end

  it("save_many{nx = true} never reports a refused key as written", function()
    local store <close> = rs.new{ url = url(), max_retries = 2, retry_base_delay = 0.01 }
    p:set("cut_lines_once", "12 " .. PREFIX .. "b01")
    local ok, res = pcall(store.save_many, store, batch(), { nx = true })
    assert.equal("10", srv:cli("DBSIZE"))            -- every a* ran, no b* did
    -- Whatever it returns or raises, nothing absent is called written.
    local written = ok and res or (type(res) == "table" and res.written) or {}
    for i, item in ipairs(batch()) do
      if written[i] then
        assert.equal(1, tonumber(srv:cli("EXISTS", PREFIX .. item[1])),
                     item[1] .. " reported written, absent on the server")
      end
    end
    -- The refusal is the answer, as when every reply arrives.
    assert.is_false(ok, "save_many succeeded though 10 SETs were refused")
    assert.equal("auth", res.kind, tostring(res))
    assert.matches("NOPERM", res.message, 1, true)
    -- Each item's outcome is known: the b* refused, the a* written (2
    -- answered, 8 read back as ours).
    assert.is_table(res.written)
    for i = 1, 20 do assert.equal(i > 10, res.written[i], "item " .. i) end
  end)

  it("the same batch with every reply read raises the same refusal, with the same outcomes", function()
    local store <close> = rs.new{ url = url(), max_retries = 2, retry_base_delay = 0.01 }
    local err = catch_object(store.save_many, store, batch(), { nx = true })
    assert.equal("auth", err.kind, tostring(err))
    assert.equal("10", srv:cli("DBSIZE"))
    for i = 1, 20 do assert.equal(i > 10, err.written[i], "item " .. i) end
  end)

  it("import stops (exit 1) and counts the 10 tokens it wrote, not 20", function()
    local lines = {}
    for _, item in ipairs(batch()) do
      lines[#lines + 1] = string.format('{"collection":"%s","bson_base64":"%s","ttl_ms":null}',
                                        item[1], b64(item[2]))
    end
    -- Armed by the batch's first name: the host's own start-up replies pass.
    p:set("cut_lines_once", "12 " .. PREFIX .. "b01")
    local code, out, err = run({ "-u", url(), "-s", "redis.max_retries=2", "import",
                                 "--batch", "20" },
                               { stdin = table.concat(lines, "\n") .. "\n" })
    assert.equal("10", srv:cli("DBSIZE"))
    assert.equal(1, code, out .. err)
    assert.not_matches("20 written", out .. err, 1, true)
    assert.matches("10 written before it stopped", err, 1, true)
    assert.matches("NOPERM", err, 1, true)
  end)
end)

-- The three suspected cases of issue 21, each with a lost reply.
describe("a lost reply whose outcome the store then proves", function()
  local srv, p
  setup(function()
    srv = servers.redis{}
    assert.equal("OK", srv:cli(table.unpack(USER)))
    p = proxy.start(srv)
  end)
  teardown(function()
    if p then p:stop() end
    servers.stop_all()
  end)
  before_each(function()
    srv:cli("FLUSHALL")
    p:set("pass")
  end)

  local function store_for(opts)
    local cfg = { url = "redis://part:part-pw@127.0.0.1:" .. p.port, command_timeout = 0.3,
                  max_retries = 2, retry_base_delay = 0.01, retry_max_delay = 0.02 }
    for k, v in pairs(opts or {}) do cfg[k] = v end
    return rs.new(cfg)
  end

  local function held(store)
    return tonumber(store:prometheus():match("\nrigatoni_locks_held_total (%d+)"))
  end

  it("a lock whose SET NX reply was lost, proved ours by the read-back, counts as held", function()
    local store <close> = store_for{ url = p.url }      -- the default user
    assert.is_true(store:try_acquire_lock("rigatoni:lock:warm", "me", 30))  -- scripts loaded
    assert.is_true(store:release_lock("rigatoni:lock:warm", "me"))
    assert.equal(0, held(store))
    p:set("stall_once", 0)                       -- the SET ran, its reply is lost
    assert.is_true(store:try_acquire_lock("rigatoni:lock:a", "me", 30))
    assert.equal("me", srv:cli("GET", "rigatoni:lock:a"))
    assert.equal(1, held(store))
    assert.is_true(store:try_acquire_lock("rigatoni:lock:b", "me", 30))
    assert.equal(2, held(store))
    assert.is_true(store:release_lock("rigatoni:lock:a", "me"))
    assert.equal(1, held(store), "lock b is still held")
  end)

  it("a durable NX save whose WAIT reply is lost never hands a refused write on as written", function()
    local store <close> = store_for{ wait_replicas = 1, wait_timeout = 0.1, wait_policy = "warn" }
    -- Both writes answered (-NOPERM, +OK), the WAIT's reply cut.
    p:set("cut_lines_once", "2 " .. PREFIX .. "b01")
    local ok, err = pcall(store.save_many, store, { { "b01", token(1) }, { "a01", token(2) } },
                          { nx = true })
    assert.is_false(ok, "save_many succeeded though b01 was refused")
    assert.equal("auth", err.kind, tostring(err))
    assert.same({ false, true }, err.written)
    assert.equal("0", srv:cli("EXISTS", PREFIX .. "b01"))
    assert.equal("1", srv:cli("EXISTS", PREFIX .. "a01"))
  end)

  -- command_timeout 1 s: the read-back that proves "not run" must itself
  -- answer in time on a busy machine, or the outcome is rightly unknown.
  it("a delete proved not run with no attempt left raises its failure, not unknown", function()
    local store <close> = store_for{ max_retries = 0, command_timeout = 1 }
    store:save_raw("a01", token(1))
    p:set("hold_once", 2)                        -- the DEL never reaches the server
    local err = catch_object(store.delete_resume_token, store, "a01")
    assert.equal("timeout", err.kind, tostring(err))
    assert.is_true(err.retryable)
    assert.equal(1, err.attempts)
    assert.matches("has not taken effect", err.message, 1, true)
    assert.equal("1", srv:cli("EXISTS", PREFIX .. "a01"))
  end)

  it("save_many{nx=true} with the rest proved absent and no attempt left raises its failure, not unknown", function()
    local store <close> = store_for{ max_retries = 0, command_timeout = 1 }
    p:set("hold_once", 2)                        -- the batch never reaches the server
    local err = catch_object(store.save_many, store, { { "a01", token(1) }, { "a02", token(2) } },
                             { nx = true })
    assert.equal("timeout", err.kind, tostring(err))
    assert.is_true(err.retryable)
    assert.same({ false, false }, err.written)
    assert.equal("0", srv:cli("DBSIZE"))
  end)
end)

-- Review attacks on the above: a later round of an NX batch, error replies
-- that repeat on every attempt, an ACL refusal of WAIT.
describe("an NX batch whose later round fails", function()
  local srv, p
  setup(function()
    srv = servers.redis{}
    assert.equal("OK", srv:cli(table.unpack(USER)))
    p = proxy.start(srv)
  end)
  teardown(function()
    if p then p:stop() end
    servers.stop_all()
  end)
  before_each(function()
    srv:cli("FLUSHALL")
    p:set("pass")
  end)

  local function store_for(opts)
    local cfg = { url = p.url, command_timeout = 0.3, max_retries = 1, retry_base_delay = 0.01,
                  retry_max_delay = 0.02 }
    for k, v in pairs(opts or {}) do cfg[k] = v end
    return rs.new(cfg)
  end

  -- err.written, where given, is each key's state on the server.
  local function assert_written_true(err, names)
    if err.written == nil then return end
    for i, name in ipairs(names) do
      assert.equal(tonumber(srv:cli("EXISTS", PREFIX .. name)) == 1, err.written[i],
                   name .. ": err.written says the opposite of the server")
    end
  end

  it("resent after a lost attempt, then short of acknowledgements, never calls its writes unwritten", function()
    local store <close> = store_for{ wait_replicas = 1, wait_timeout = 0.05 }
    p:set("hold_once", 2)            -- round 1 never reaches the server: both read back absent
    local err = catch_object(store.save_many, store, { { "a01", token(1) }, { "a02", token(2) } },
                             { nx = true })
    assert.equal("server", err.kind, tostring(err))
    assert.matches("acknowledged", err.message, 1, true)
    assert.equal("2", srv:cli("DBSIZE"))          -- round 2 wrote both on the master
    assert_written_true(err, { "a01", "a02" })
  end)

  local function held(store)
    return tonumber(store:prometheus():match("\nrigatoni_locks_held_total (%d+)"))
  end

  it("a lock whose SET NX ran, reply lost, and whose resend is refused (OOM) is reported held, not failed", function()
    local store <close> = store_for{ command_timeout = 0.6 }
    assert.is_true(store:try_acquire_lock("rigatoni:lock:warm", "me", 30))   -- scripts loaded
    assert.is_true(store:release_lock("rigatoni:lock:warm", "me"))
    p:set("stall_once", 0)                       -- the SET NX runs, its reply is lost
    -- While the store waits for that reply, memory runs out: the resend is refused.
    os.execute("(sleep 0.2; " .. srv:cli_prefix() .. " CONFIG SET maxmemory 1) >/dev/null 2>&1 &")
    local ok, res = pcall(store.try_acquire_lock, store, "rigatoni:lock:a", "me", 30)
    srv:cli("CONFIG", "SET", "maxmemory", "0")
    assert.equal("me", srv:cli("GET", "rigatoni:lock:a"))
    assert.is_true(ok, "the lock is ours on the server, the call said: " .. tostring(res))
    assert.is_true(res)
    assert.equal(1, held(store))
    assert.is_true(store:release_lock("rigatoni:lock:a", "me"))
    assert.equal(0, held(store))
  end)

  it("an NX batch refused (READONLY) in every round reports every attempt it made", function()
    local replica = servers.redis{}
    replica:cli("REPLICAOF", "127.0.0.1", tostring(servers.closed_port()))
    local rp = proxy.start(replica)
    local store <close> = store_for{ url = rp.url, max_retries = 2 }
    local items = {}
    for i = 1, 6 do items[i] = { string.format("a%02d", i), token(i) } end
    rp:set("cut_lines_once", "2 " .. PREFIX .. "a01")     -- round 1: 1 attempt, cut
    local err = catch_object(store.save_many, store, items, { nx = true })
    rp:stop()
    assert.equal("server", err.kind, tostring(err))
    assert.is_true(err.retryable)
    assert.matches("READONLY", err.message, 1, true)
    assert.same({ false, false, false, false, false, false }, err.written)
    -- Round 2 is sent 3 times (max_retries = 2), all READONLY: 4 in all.
    assert.equal(4, err.attempts)
    assert.matches("after 4 attempts", err.message, 1, true)
  end)

  it("a durable save whose WAIT alone is refused says it ran on the master", function()
    assert.equal("OK", srv:cli("ACL", "SETUSER", "nowait", "reset", "on", ">nw-pw", "~*",
                               "+@all", "-wait"))
    local store <close> = store_for{ url = "redis://nowait:nw-pw@127.0.0.1:" .. p.port,
                                     wait_replicas = 1, wait_timeout = 0.05 }
    local err = catch_object(store.save_raw, store, "a01", token(1))
    assert.equal("auth", err.kind, tostring(err))
    assert.matches("NOPERM", err.message, 1, true)
    assert.equal("1", srv:cli("EXISTS", PREFIX .. "a01"))
    assert.matches("ran on the master", err.message, 1, true)
    -- A write refused too: nothing claims it was written.
    err = catch_object(store.save_many, store, { { "a02", token(2) } })
    assert.matches("ran on the master", err.message, 1, true)
    srv:cli("CONFIG", "SET", "maxmemory", "1")
    err = catch_object(store.save_many, store, { { "a03", token(3) } })
    srv:cli("CONFIG", "SET", "maxmemory", "0")
    assert.matches("OOM", err.message, 1, true)
    assert.not_matches("ran on the master", err.message, 1, true)
    assert.equal("0", srv:cli("EXISTS", PREFIX .. "a03"))
  end)
end)
