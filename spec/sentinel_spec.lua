-- SPDX-License-Identifier: MIT
-- Sentinel discovery and failover: one master, one replica and three
-- redis-sentinel processes on loopback; a save loop must ride through a
-- forced failover and a killed master without a single error.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"
local system = require "system"

describe("Sentinel", function()
  local nodes, sentinels = {}, {}
  local url

  local function master_port()
    return tonumber(sentinels[1]:cli("SENTINEL", "get-master-addr-by-name", "mymaster"):match("(%d+)%s*$"))
  end

  local function node_on(port)
    for _, n in ipairs(nodes) do if n.port == port then return n end end
  end

  local wait_until = helpers.wait_until

  -- Settled: every sentinel names the same master, sees the replica and
  -- the other two sentinels; that master has its replica online with the
  -- link up and the same replication offset (nothing left to copy).
  local function settled()
    local port
    for _, s in ipairs(sentinels) do
      local p = tonumber(s:cli("SENTINEL", "get-master-addr-by-name", "mymaster"):match("(%d+)%s*$"))
      local info = s:cli("SENTINEL", "master", "mymaster")
      if not p or (port and p ~= port) or not info:find("num%-slaves%s+1")
         or not info:find("num%-other%-sentinels%s+2") or not info:find("flags%s+master%s") then
        return false
      end
      port = p
    end
    local master, replica = node_on(port), nil
    for _, n in ipairs(nodes) do if n ~= master then replica = n end end
    if not master or not replica:is_running() then return false end
    local m, r = master:cli("INFO", "replication"), replica:cli("INFO", "replication")
    local offset = m:match("master_repl_offset:(%d+)")
    return m:find("role:master", 1, true) and m:find("state=online", 1, true)
      and r:find("master_port:" .. port, 1, true) and r:find("master_link_status:up", 1, true)
      and offset and r:match("slave_repl_offset:(%d+)") == offset
  end

  -- Saves once more into each collection of `last` and reads every one back:
  -- what was acknowledged after the change survives it. (Before, the old
  -- master may have taken writes that its resync as a replica dropped:
  -- asynchronous replication, see wait_replicas.)
  local function saves_after_the_change_read_back(store, last)
    for collection in pairs(last) do
      local token = { _data = ("82FFFF%04X"):format(tonumber(collection:match("%d+"))) }
      store:save_resume_token(collection, token)
      assert.are.same(token, store:get_resume_token(collection))
    end
  end

  -- Saves a new token every few ms for `seconds`, calling disrupt() once
  -- after one second; returns the number of saves and the last token of
  -- each collection.
  local function save_loop(store, seconds, disrupt)
    local last, n = {}, 0
    local start = system.gettime()
    local disrupted = false
    while system.gettime() - start < seconds do
      if not disrupted and system.gettime() - start > 1 then
        disrupt()
        disrupted = true
      end
      n = n + 1
      local collection = "c" .. (n % 8)
      local token = { _data = ("82%08X"):format(n) }
      store:save_resume_token(collection, token)   -- raises on any failure
      last[collection] = token
      system.sleep(0.003)
    end
    return n, last
  end

  setup(function()
    nodes[1] = servers.redis{}
    nodes[2] = servers.redis{ args = { "--replicaof", "127.0.0.1", tostring(nodes[1].port) } }
    wait_until("replica online", 60, function()
      return nodes[1]:cli("INFO", "replication"):find("state=online", 1, true)
    end)
    local hosts = {}
    for i = 1, 3 do
      sentinels[i] = servers.sentinel{ master = nodes[1], down_after_ms = 1000,
                                       failover_timeout_ms = 3000 }
      hosts[i] = "127.0.0.1:" .. sentinels[i].port
    end
    url = "redis://" .. table.concat(hosts, ",")
    wait_until("sentinels to agree, and the replica to catch up", 60, settled)
  end)

  teardown(function()
    for _, s in ipairs(sentinels) do s:stop() end
    for _, n in ipairs(nodes) do n:stop() end
  end)

  it("discovers the master through the sentinels", function()
    local store <close> = rs.new{ url = url }
    store:save_resume_token("d", { _data = "8201" })
    assert.are.equal(rs.bson.encode{ _data = "8201" },
                     node_on(master_port()):cli_raw("GET", "rigatoni:resume_token:d"))
  end)

  it("discovers the master when the first sentinel listed is down", function()
    local dead = servers.closed_port()
    local store <close> = rs.new{ url = url:gsub("^redis://", "redis://127.0.0.1:" .. dead .. ","),
                                  connection_timeout = 1 }
    assert.is_true(store:ping())
  end)

  it("passes rigatoni-store --check with conf/sentinel.ini", function()
    local hosts = url:gsub("^redis://", "")
    local ok = os.execute(("SENTINELS=%s REDIS_PASSWORD= build/rigatoni-store -c conf/sentinel.ini " ..
                           "-s durability.wait_replicas=0 --check >/dev/null 2>&1"):format(hosts))
    assert.is_true(ok == true)
  end)

  it("authenticates to sentinels that require a password (sentinel_password)", function()
    local guarded = servers.sentinel{ master = node_on(master_port()), password = "sent-pw-42" }
    finally(function() guarded:stop() end)
    local surl = "redis://127.0.0.1:" .. guarded.port .. ",127.0.0.1:" .. servers.closed_port()
    local store <close> = rs.new{ url = surl, sentinel_password = "sent-pw-42" }
    assert.is_true(store:ping())
    local ok, err = pcall(rs.new, { url = surl, sentinel_password = "wrong-pw-77" })
    assert.is_false(ok)
    assert.are.equal("auth", err.kind)
    assert.not_matches("wrong-pw-77", tostring(err), 1, true)
    assert.not_matches("sent-pw-42", tostring(err), 1, true)
  end)

  it("names an unknown master as a config error", function()
    local err = select(2, pcall(rs.new, { url = url, sentinel_master = "nosuchmaster" }))
    assert.are.equal("config", err.kind)
    assert.matches("nosuchmaster", err.message, 1, true)
  end)

  it("rides through SENTINEL FAILOVER: no save raises, every token reads back", function()
    local store <close> = rs.new{ url = url, max_retries = 40, retry_max_delay = 0.25 }
    local before = master_port()
    local n, last = save_loop(store, 6, function()
      sentinels[1]:cli("SENTINEL", "FAILOVER", "mymaster")
    end)
    wait_until("failover", 60, function() return master_port() ~= before end)
    assert.is_true(n > 200)
    wait_until("sentinels to agree on the new master, and its replica to catch up", 60, settled)
    saves_after_the_change_read_back(store, last)
  end)

  it("rides through a killed master: no save raises, every token reads back", function()
    wait_until("sentinels to agree, and the replica to catch up", 60, settled)
    local store <close> = rs.new{ url = url, max_retries = 60, retry_max_delay = 0.25 }
    local victim = node_on(master_port())
    local n, last = save_loop(store, 8, function() victim:kill() end)
    wait_until("failover", 60, function() return master_port() ~= victim.port end)
    assert.is_true(n > 200)
    saves_after_the_change_read_back(store, last)
    victim:restart()        -- rejoins as a replica for whatever runs next
  end)
end)

describe("Sentinel over TLS (rediss:// with several hosts)", function()
  local pki, nodes, sentinels, url = nil, {}, {}, nil

  setup(function()
    local certs = require "support.certs"
    local dir = io.popen("mktemp -d " .. servers.quote((os.getenv("RS_TEST_ROOT") or "/tmp") .. "/pki.XXXXXX")):read("l")
    pki = certs.make(dir)
    local tls = { cert = pki.server_cert, key = pki.server_key, ca = pki.ca }
    nodes[1] = servers.redis{ tls = tls, args = { "--tls-replication", "yes" } }
    nodes[2] = servers.redis{ tls = tls, args = { "--tls-replication", "yes",
                                                  "--replicaof", "127.0.0.1", tostring(nodes[1].port) } }
    local hosts = {}
    for i = 1, 3 do
      sentinels[i] = servers.sentinel{ master = nodes[1], tls = tls }
      hosts[i] = "127.0.0.1:" .. sentinels[i].port
    end
    url = "rediss://" .. table.concat(hosts, ",")
    local deadline = system.gettime() + 60
    repeat
      local info = sentinels[1]:cli("SENTINEL", "master", "mymaster")
      local ready = info:find("num%-slaves%s+1") and info:find("num%-other%-sentinels%s+2")
        and nodes[1]:cli("INFO", "replication"):find("state=online", 1, true)
      assert(ready or system.gettime() < deadline, "TLS sentinels did not settle:\n" .. info)
      if not ready then system.sleep(0.1) end
    until ready
  end)

  teardown(function()
    for _, s in ipairs(sentinels) do s:stop() end
    for _, n in ipairs(nodes) do n:stop() end
  end)

  it("asks the sentinels over TLS, saves on the master over TLS, and rides through a failover", function()
    local store <close> = rs.new{ url = url, tls = { ca_file = pki.ca }, max_retries = 40,
                                  retry_max_delay = 0.25 }
    store:save_resume_token("tls-s", { _data = "8201" })
    assert.are.equal(rs.bson.encode{ _data = "8201" }, nodes[1]:cli_raw("GET", "rigatoni:resume_token:tls-s"))
    sentinels[1]:cli("SENTINEL", "FAILOVER", "mymaster")
    local last, deadline = nil, system.gettime() + 60
    local i = 0
    repeat                                  -- saves until the replica has taken over
      i = i + 1
      last = { _data = ("82%08X"):format(i) }
      store:save_resume_token("tls-s", last)   -- raises on any failure
      system.sleep(0.005)
      assert(system.gettime() < deadline, "no failover within 60 s")
    until nodes[2]:cli("ROLE"):match("^master")
    -- Until the sentinels turn the old master into a replica it still takes
    -- writes, which its resync then drops (asynchronous replication; see
    -- wait_replicas): the check below starts once it is a replica.
    repeat
      assert(system.gettime() < deadline, "the old master was not reconfigured within 60 s")
      system.sleep(0.05)
    until nodes[1]:cli("ROLE"):match("^slave")
    for _ = 1, 20 do
      i = i + 1
      last = { _data = ("82%08X"):format(i) }
      store:save_resume_token("tls-s", last)
    end
    assert.are.same(last, store:get_resume_token("tls-s"))
    assert.are.equal(rs.bson.encode(last), nodes[2]:cli_raw("GET", "rigatoni:resume_token:tls-s"))
  end)

  it("refuses sentinels whose certificate the CA did not sign, saying so", function()
    local ok, err = pcall(rs.new, { url = url, tls = { ca_file = pki.other_ca }, max_retries = 0 })
    assert.is_false(ok)
    assert.matches("certificate verify failed", err.message, 1, true)
    assert.matches("sentinel", err.message:lower(), 1, true)
  end)

  it("fails at once with the TLS error, not after retries as 'no sentinel answered'", function()
    local start = system.gettime()
    local ok, err = pcall(rs.new, { url = url, tls = { ca_file = pki.other_ca }, max_retries = 4,
                                    retry_base_delay = 1, retry_max_delay = 1 })
    assert.is_false(ok)
    assert.matches("certificate verify failed", err.message, 1, true)
    assert.not_matches("no sentinel answered", err.message, 1, true)
    assert.is_false(err.retryable)
    assert.is_true(system.gettime() - start < 1, "took " .. system.gettime() - start .. " s")
  end)
end)

describe("Sentinel discovery when the sentinels disagree", function()
  -- Two sentinels watch the master; a third ("stale") names a server that
  -- is a replica, as a sentinel that missed a failover names the demoted
  -- master. Its replica follows a master no other sentinel knows, and its
  -- down-after is long: it never acts.
  local master, elsewhere, demoted, good, stale = nil, nil, nil, {}, nil
  local function addr(sentinel)
    return sentinel:cli("SENTINEL", "get-master-addr-by-name", "mymaster"):match("(%d+)%s*$")
  end
  local function url_of(list)
    local hosts = {}
    for i, s in ipairs(list) do hosts[i] = "127.0.0.1:" .. s.port end
    return "redis://" .. table.concat(hosts, ",")
  end

  setup(function()
    master = servers.redis{}
    elsewhere = servers.redis{}
    demoted = servers.redis{ args = { "--replicaof", "127.0.0.1", tostring(elsewhere.port) } }
    for i = 1, 2 do good[i] = servers.sentinel{ master = master, quorum = 2 } end
    stale = servers.sentinel{ master = demoted, quorum = 1, down_after_ms = 600000 }
    local deadline = system.gettime() + 30
    while not (addr(good[1]) == tostring(master.port) and addr(good[2]) == tostring(master.port)
               and addr(stale) == tostring(demoted.port) and demoted:cli("ROLE"):match("^slave")) do
      assert(system.gettime() < deadline, "sentinels did not answer as set up")
      system.sleep(0.1)
    end
  end)

  teardown(function()
    for _, s in ipairs{ stale, good[1], good[2], demoted, elsewhere, master } do s:stop() end
  end)

  it("takes the master a majority names, even when the stale sentinel is asked first", function()
    local store <close> = rs.new{ url = url_of{ stale, good[1], good[2] }, max_retries = 0 }
    store:save_resume_token("majority", { _data = "8201" })
    assert.are.equal(rs.bson.encode{ _data = "8201" },
                     master:cli_raw("GET", "rigatoni:resume_token:majority"))
  end)

  it("starts each discovery at the next sentinel, so the retry of a tie asks the other first", function()
    local store <close> = rs.new{ url = url_of{ stale, good[1] }, max_retries = 1,
                                  retry_base_delay = 0.01 }
    store:save_resume_token("tie", { _data = "8202" })
    assert.are.equal(rs.bson.encode{ _data = "8202" }, master:cli_raw("GET", "rigatoni:resume_token:tie"))
  end)

  it("takes the address of the newest config epoch over a majority naming an older one", function()
    -- After a failover the leader names the new master at a new config
    -- epoch while the others still name the demoted one (which answers
    -- ROLE as master) at the old epoch, until its hello reaches them.
    -- `newer` is named at config epoch 9 by one sentinel (a forged hello,
    -- as the leader's would), the two good ones name `master` at epoch 0.
    local newer, watched = servers.redis{}, servers.redis{}
    local leader = servers.sentinel{ master = watched, quorum = 1, down_after_ms = 600000 }
    finally(function() leader:stop() watched:stop() newer:stop() end)
    local deadline = system.gettime() + 30
    repeat
      watched:cli("PUBLISH", "__sentinel__:hello",
                  "127.0.0.1,1," .. ("b"):rep(40) .. ",9,mymaster,127.0.0.1," .. newer.port .. ",9")
      assert(system.gettime() < deadline, "the sentinel did not take the forged address")
      system.sleep(0.2)
    until addr(leader) == tostring(newer.port)
    assert.matches("config%-epoch%s+9", leader:cli("SENTINEL", "master", "mymaster"))
    -- Asked first and second, the good sentinels are a majority before
    -- the leader is heard.
    local store <close> = rs.new{ url = url_of{ good[1], good[2], leader }, max_retries = 0 }
    store:save_resume_token("newest", { _data = "8203" })
    assert.are.equal(rs.bson.encode{ _data = "8203" },
                     newer:cli_raw("GET", "rigatoni:resume_token:newest"))
    assert.are.equal("0", master:cli("EXISTS", "rigatoni:resume_token:newest"))
  end)

  it("refuses a master port outside 1..65535 as a server error naming it", function()
    -- A forged hello with a newer config epoch makes a real sentinel name
    -- port 0 for its master (it checks only 0..65535).
    local target = servers.redis{}
    local forged = servers.sentinel{ master = target, quorum = 1, down_after_ms = 600000 }
    finally(function() forged:stop() target:stop() end)
    local deadline = system.gettime() + 30
    repeat
      target:cli("PUBLISH", "__sentinel__:hello",
                 "127.0.0.1,1," .. ("a"):rep(40) .. ",9,mymaster,127.0.0.1,0,9")
      assert(system.gettime() < deadline, "the sentinel did not take the forged address")
      system.sleep(0.2)
    until addr(forged) == "0"
    local url = url_of{ forged } .. ",127.0.0.1:" .. servers.closed_port()   -- two hosts: sentinels
    local ok, err = pcall(rs.new, { url = url, max_retries = 0 })
    assert.is_false(ok)
    assert.are.equal("server", err.kind)
    assert.matches("port '0'", err.message, 1, true)
  end)
end)
