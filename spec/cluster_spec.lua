-- SPDX-License-Identifier: MIT
-- Redis Cluster mode against a real cluster on loopback: 3 masters and 3
-- replicas created with redis-cli --cluster create.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local system = require "system"

local function token(i) return { _data = ("82%08X%08X"):format(i, i % 97) } end

-- Runs the host binary (args: shell words); returns status, stdout, stderr.
local helpers = require "support.helpers"
local host, catch = helpers.run_host, helpers.catch

-- A 3 + 3 cluster and a store on it that retries for about 5 s.
local function open_cluster()
  local cluster = servers.cluster{ masters = 3, replicas = 1 }
  return cluster, rs.new{ url = cluster.url, cluster_mode = true, ttl = 3600, max_retries = 20,
                          retry_max_delay = 0.25 }
end

local function close_cluster(cluster, store)
  if store then store:close() end
  if cluster then cluster:stop() end
end

describe("cluster mode", function()
  local cluster, store
  setup(function() cluster, store = open_cluster() end)
  teardown(function() close_cluster(cluster, store) end)

  it("does every store operation on 1,000 collections spread over all masters", function()
    for i = 1, 1000 do store:save_resume_token("coll" .. i, token(i)) end
    local per_master = {}
    for _, m in ipairs(cluster:masters()) do
      per_master[#per_master + 1] = tonumber(m:cli("DBSIZE"))
    end
    assert.are.equal(3, #per_master)
    for _, n in ipairs(per_master) do assert.is_true(n > 200) end

    for i = 1, 1000, 37 do assert.are.same(token(i), store:get_resume_token("coll" .. i)) end
    local ttl = store:ttl("coll7")
    assert.is_true(ttl > 3590 and ttl <= 3600)

    local seen = 0
    for collection, tok, t in store:resume_tokens{ batch = 100 } do
      seen = seen + 1
      assert.are.same(token(tonumber(collection:match("%d+"))), tok)
      assert.is_true(t > 0)
    end
    assert.are.equal(1000, seen)
    local all = store:list_resume_tokens()
    local count = 0
    for _ in pairs(all) do count = count + 1 end
    assert.are.equal(1000, count)

    store:save_raw("raw", "\0\1\2\r\n", false)
    assert.are.equal("\0\1\2\r\n", store:get_raw("raw"))
    assert.is_nil(store:ttl("raw"))

    local written = store:save_many({ { "m1", rs.bson.encode(token(1)) }, { "m2", rs.bson.encode(token(2)), 60 } })
    assert.are.same({ true, true }, written)
    local values, ttls = store:get_many{ "m1", "m2", "absent" }
    assert.are.equal(rs.bson.encode(token(2)), values[2])
    assert.is_false(values[3])
    assert.is_false(ttls[1])
    assert.is_true(ttls[2] > 50)
    assert.are.equal(2, store:delete_many{ "m1", "m2", "absent" })

    assert.is_true(store:delete_resume_token("coll1"))
    assert.is_nil(store:get_resume_token("coll1"))

    local key = store:lock_key("db", "coll2")
    assert.is_true(store:try_acquire_lock(key, "me", 30))
    assert.is_false(store:try_acquire_lock(key, "other", 30))
    assert.is_true(store:refresh_lock(key, "me", 30))
    assert.is_true(store:release_lock(key, "me"))
    -- a lease's refresh goes through the store's call in cluster mode
    local lease = assert(store:lease(key, "me", { ttl = 5 }))
    assert.is_true(lease:refresh())
    assert.is_true(lease:start_refresh():wait())
    assert.is_true(lease:start_release():wait())
  end)

  it("passes rigatoni-store --check with conf/cluster.ini", function()
    local ok = os.execute(("CLUSTER_SEEDS=%s REDIS_PASSWORD= build/rigatoni-store -c conf/cluster.ini " ..
                           "--check >/dev/null 2>&1"):format(cluster.url:gsub("^redis://", "")))
    assert.is_true(ok == true)
  end)

  it("refuses a fenced save whose lock and token hash to different slots, clearly", function()
    local key = store:lock_key("db", "coll3")
    assert.is_true(store:try_acquire_lock(key, "me", 30))
    local ok, err = pcall(store.save_resume_token, store, "coll3", token(3), { lock = key, owner = "me" })
    assert.is_false(ok)
    assert.are.equal("config", err.kind)
    assert.matches("hash tag", err.message, 1, true)
    assert.are.same(token(3), store:get_resume_token("coll3"))
    store:release_lock(key, "me")
  end)

  it("does fenced saves when prefixes share a hash tag (the documented layout)", function()
    local tagged <close> = rs.new{ url = cluster.url, cluster_mode = true,
      key_prefix = "{rigatoni}:resume_token", lock_prefix = "{rigatoni}:lock" }
    local key = tagged:lock_key("db", "c")
    assert.is_true(tagged:try_acquire_lock(key, "me", 30))
    tagged:save_resume_token("c", token(5), { lock = key, owner = "me" })
    assert.are.same(token(5), tagged:get_resume_token("c"))
  end)

  it("asks for the slot map again when a node answers CLUSTERDOWN, and names the error", function()
    local key = "rigatoni:resume_token:down1"
    local owner
    for _, m in ipairs(cluster:masters()) do
      if not m:cli("GET", key):match("^MOVED") then owner = m end
    end
    -- The owner drops another of its slots: it no longer covers all 16384
    -- and says CLUSTERDOWN to everything, while the others still route to it.
    local slot = tonumber(owner:cli("CLUSTER", "KEYSLOT", key))
    local first = tonumber(owner:cli("CLUSTER", "NODES"):match("myself,master %S+ %S+ %S+ %S+ %S+ (%d+)"))
    local dropped = first == slot and first + 1 or first
    assert.are.equal("OK", owner:cli("CLUSTER", "DELSLOTS", dropped))
    finally(function()
      owner:cli("CLUSTER", "ADDSLOTS", dropped)
      cluster:wait_ok()
    end)
    local quick <close> = rs.new{ url = cluster.url, cluster_mode = true, max_retries = 2,
                                  retry_base_delay = 0.01, retry_max_delay = 0.01 }
    local before = quick:stats().cluster.refreshes
    local err = catch(function() quick:save_resume_token("down1", token(1)) end)
    assert.are.equal("server", err.kind)
    assert.matches("CLUSTERDOWN", err.message, 1, true)
    assert.matches("down1", err.message, 1, true)
    assert.are.equal(before + 2, quick:stats().cluster.refreshes)   -- before each of the 2 retries
  end)

  it("sends WAIT along with a write that was redirected (MOVED), so it vouches for that write", function()
    local durable <close> = rs.new{ url = cluster.url, cluster_mode = true, wait_replicas = 1,
                                    wait_timeout = 0.3, max_retries = 0 }
    local masters = cluster:masters()
    local a, b = masters[1], masters[2]
    local a_id, b_id = a:cli("CLUSTER", "MYID"), b:cli("CLUSTER", "MYID")
    -- An empty slot of A, moved to B behind the store's back.
    local collection, slot
    for i = 1, 1000 do
      local key = "rigatoni:resume_token:moved" .. i
      slot = a:cli("CLUSTER", "KEYSLOT", key)
      if not a:cli("GET", key):match("^MOVED") and a:cli("CLUSTER", "COUNTKEYSINSLOT", slot) == "0" then
        collection = "moved" .. i
        break
      end
    end
    assert.is_truthy(collection, "no empty slot of the first master found")
    b:cli("CLUSTER", "SETSLOT", slot, "IMPORTING", a_id)
    a:cli("CLUSTER", "SETSLOT", slot, "MIGRATING", b_id)
    b:cli("CLUSTER", "SETSLOT", slot, "NODE", b_id)
    a:cli("CLUSTER", "SETSLOT", slot, "NODE", b_id)
    -- B's replica cannot acknowledge anything while stopped; A's could.
    local replica
    for _, n in ipairs(cluster.nodes) do
      if n:is_running() and n:cli("CLUSTER", "NODES"):find("myself,slave " .. b_id, 1, true) then replica = n end
    end
    assert.is_truthy(replica, "no replica of the second master found")
    os.execute("kill -STOP " .. replica.pid)
    finally(function()
      os.execute("kill -CONT " .. replica.pid)
      cluster:wait_ok()
    end)
    local moved = durable:stats().cluster.moved
    local err = catch(function() durable:save_resume_token(collection, token(1)) end)
    assert.are.equal("server", err.kind)
    assert.matches("only 0 of 1 replicas acknowledged", err.message, 1, true)
    assert.are.equal(moved + 1, durable:stats().cluster.moved)
    assert.are.same(token(1), store:get_resume_token(collection))   -- written on B, not yet durable
  end)

  it("sends one WAIT per node and pipeline with wait_replicas, not one per write", function()
    local durable <close> = rs.new{ url = cluster.url, cluster_mode = true, wait_replicas = 1,
                                    wait_timeout = 2, max_retries = 5 }
    local masters = cluster:masters()
    local function waits()
      local n = 0
      for _, m in ipairs(masters) do
        n = n + (tonumber(m:cli("INFO", "commandstats"):match("cmdstat_wait:calls=(%d+)")) or 0)
      end
      return n
    end
    local items = {}
    for i = 1, 60 do items[i] = { "waitper" .. i, rs.bson.encode(token(i)) } end
    local before = waits()
    assert.are.equal(60, #durable:save_many(items))   -- 60 keys: every master has some
    assert.are.equal(before + #masters, waits())
  end)

  it("follows ASK and MOVED with an empty endpoint (\"MOVED 3999 :6381\": the host of the node that answered)", function()
    -- With unknown-endpoint, nodes name no host: CLUSTER SLOTS says "?",
    -- ASK and MOVED say ":port". (A MOVED also refreshes the map, which
    -- hides a wrong host; an ASK does not.)
    for _, n in ipairs(cluster.nodes) do
      assert.are.equal("OK", n:cli("CONFIG", "SET", "cluster-preferred-endpoint-type", "unknown-endpoint"))
    end
    finally(function()
      for _, n in ipairs(cluster.nodes) do n:cli("CONFIG", "SET", "cluster-preferred-endpoint-type", "ip") end
    end)
    local masters = cluster:masters()
    local a, b = masters[1], masters[2]
    local a_id, b_id = a:cli("CLUSTER", "MYID"), b:cli("CLUSTER", "MYID")
    local blind <close> = rs.new{ url = cluster.url, cluster_mode = true, max_retries = 0 }
    -- An empty slot of A, migrating to B once the store has read the map.
    local collection, slot
    for i = 1, 1000 do
      local key = "rigatoni:resume_token:empty" .. i
      slot = a:cli("CLUSTER", "KEYSLOT", key)
      if not a:cli("GET", key):match("^MOVED") and a:cli("CLUSTER", "COUNTKEYSINSLOT", slot) == "0" then
        collection = "empty" .. i
        break
      end
    end
    assert.is_truthy(collection, "no empty slot of the first master found")
    local key = "rigatoni:resume_token:" .. collection
    b:cli("CLUSTER", "SETSLOT", slot, "IMPORTING", a_id)
    a:cli("CLUSTER", "SETSLOT", slot, "MIGRATING", b_id)
    assert.are.equal("ASK " .. slot .. " :" .. b.port, a:cli("GET", key))
    local stats = blind:stats().cluster
    blind:save_resume_token(collection, token(7))
    assert.are.equal(stats.ask + 1, blind:stats().cluster.ask)

    b:cli("CLUSTER", "SETSLOT", slot, "NODE", b_id)
    a:cli("CLUSTER", "SETSLOT", slot, "NODE", b_id)
    assert.are.equal(rs.bson.encode(token(7)), b:cli_raw("GET", key))   -- the ASK went to B
    assert.are.equal("MOVED " .. slot .. " :" .. b.port, a:cli("GET", key))
    blind:save_resume_token(collection, token(8))
    assert.are.equal(stats.moved + 1, blind:stats().cluster.moved)
    assert.are.equal(rs.bson.encode(token(8)), b:cli_raw("GET", key))
  end)

  it("migrates 10,000 tokens from a standalone server into the cluster and back, bytes and TTLs equal", function()
    local single = servers.redis{}
    local other = servers.redis{}
    finally(function() single:stop() other:stop() end)
    local resp = {}
    for i = 1, 10000 do
      local key = "rigatoni:resume_token:mig" .. i
      resp[#resp + 1] = servers.resp{ "SET", key, rs.bson.encode(token(i)) }
      if i % 2 == 0 then resp[#resp + 1] = servers.resp{ "EXPIRE", key, "7200" } end
    end
    single:pipe(table.concat(resp))
    local dir = os.getenv("RS_TEST_ROOT") or "/tmp"
    local ini = dir .. "/cluster-" .. single.port .. ".ini"
    local f = assert(io.open(ini, "w"))
    f:write("[redis]\nurl = " .. cluster.url .. "\ncluster_mode = true\n")
    f:close()
    local code, out, err = host(("-u %s migrate --to-config %s --match 'mig*'"):format(single.url, ini))
    assert.are.equal(0, code, err)
    assert.matches("10000 copied", out .. err, 1, true)
    code, out, err = host(("-c %s migrate --to %s --match 'mig*'"):format(ini, other.url))
    assert.are.equal(0, code, err)
    for i = 1, 10000, 97 do
      local key = "rigatoni:resume_token:mig" .. i
      assert.are.equal(single:cli_raw("GET", key), other:cli_raw("GET", key))
      local a, b = tonumber(single:cli("TTL", key)), tonumber(other:cli("TTL", key))
      assert.is_true(math.abs(a - b) <= 2, key .. " TTL " .. a .. " vs " .. b)
    end
    assert.are.equal(single:cli("DBSIZE"), other:cli("DBSIZE"))
  end)

  it("runs list, export, import and cleanup against the cluster", function()
    for i = 1, 200 do
      -- cluster times: 100 tokens from 2001, 100 from now
      local seconds = i <= 100 and 1000000000 or os.time()
      store:save_resume_token("ops" .. i, { _data = ("82%08X%08X"):format(seconds, i) })
    end
    local seeds = cluster.url
    local code, out, err = host(("-u %s -s redis.cluster_mode=true list --match 'ops*' --format csv"):format(seeds))
    assert.are.equal(0, code, err)
    local rows = select(2, out:gsub("\nops", ""))
    assert.are.equal(200, rows)

    local file = os.tmpname()
    code, out, err = host(("-u %s -s redis.cluster_mode=true export --match 'ops*' --output %s"):format(seeds, file))
    assert.are.equal(0, code, err)
    local single = servers.redis{}
    finally(function() single:stop() os.remove(file) end)
    code, out, err = host(("-u %s import --input %s"):format(single.url, file))
    assert.are.equal(0, code, err)
    assert.are.equal("200", single:cli("DBSIZE"))
    assert.are.equal(rs.bson.encode(store:get_resume_token("ops7")),
                     single:cli_raw("GET", "rigatoni:resume_token:ops7"))

    code, out, err = host(("-u %s -s redis.cluster_mode=true cleanup --match 'ops*' --older-than 30d --yes"):format(seeds))
    assert.are.equal(0, code, err)
    assert.is_nil(store:get_resume_token("ops1"))
    assert.is_truthy(store:get_resume_token("ops150"))
  end)
end)

-- A slot half-way through a migration, set up by hand as redis-cli
-- --cluster reshard does it: the keys already MIGRATEd answer ASK on the
-- old owner, and the importing node has not cached our scripts. Then
-- stats per master. One cluster for the describe.
describe("cluster mode with a slot being migrated, and stats per master", function()
  local cluster, store
  setup(function() cluster, store = open_cluster() end)
  teardown(function() close_cluster(cluster, store) end)

  -- The master serving `key` and another master, with their ids.
  local function owner_and_other(key)
    local owner, other
    for _, m in ipairs(cluster:masters()) do
      if m:cli("GET", key):match("^MOVED") then other = other or m else owner = m end
    end
    return owner, other, owner:cli("CLUSTER", "MYID"), other:cli("CLUSTER", "MYID")
  end

  it("runs refresh_lock, fenced saves, compare-and-delete, release_lock and locks --release on keys moved to the importing node (SCRIPT LOAD follows ASK)", function()
    local tagged <close> = rs.new{ url = cluster.url, cluster_mode = true, max_retries = 3,
      retry_base_delay = 0.05, retry_max_delay = 0.05, key_prefix = "{mig}:resume_token", lock_prefix = "{mig}:lock" }
    local lock, lock2 = tagged:lock_key("db", "c"), tagged:lock_key("db", "d")
    assert.is_true(tagged:try_acquire_lock(lock, "me", 60))
    assert.is_true(tagged:try_acquire_lock(lock2, "tool", 60))
    tagged:save_resume_token("c", token(1))
    tagged:save_resume_token("gone", token(2))
    local a, b, a_id, b_id = owner_and_other(lock)
    local slot = a:cli("CLUSTER", "KEYSLOT", lock)
    assert.are.equal("OK", b:cli("CLUSTER", "SETSLOT", slot, "IMPORTING", a_id))
    assert.are.equal("OK", a:cli("CLUSTER", "SETSLOT", slot, "MIGRATING", b_id))
    finally(function()   -- the migration ends: the slot is B's
      for _, m in ipairs(cluster:masters()) do m:cli("CLUSTER", "SETSLOT", slot, "NODE", b_id) end
      cluster:wait_ok()
    end)
    assert.are.equal("OK", a:cli("MIGRATE", "127.0.0.1", b.port, "", "0", "5000", "KEYS", lock, lock2,
                                 "{mig}:resume_token:c", "{mig}:resume_token:gone"))
    assert.matches("^ASK", a:cli("GET", lock))
    local asks = tagged:stats().cluster.ask

    b:cli("SCRIPT", "FLUSH")
    assert.is_true(tagged:refresh_lock(lock, "me", 120))
    assert.is_true(tonumber(tagged:command("TTL", lock)) > 60)   -- on B: A says ASK
    b:cli("SCRIPT", "FLUSH")
    tagged:save_resume_token("c", token(3), { lock = lock, owner = "me" })
    assert.are.equal(rs.bson.encode(token(3)), tagged:get_raw("c"))
    b:cli("SCRIPT", "FLUSH")
    assert.is_true(tagged:delete_resume_token("gone", { if_value = rs.bson.encode(token(2)) }))
    assert.is_nil(tagged:get_raw("gone"))
    b:cli("SCRIPT", "FLUSH")
    assert.is_true(tagged:release_lock(lock, "me"))
    assert.is_nil(tagged:lock_owner(lock))
    assert.is_true(tagged:stats().cluster.ask > asks)

    b:cli("SCRIPT", "FLUSH")
    local code, out, err = host(("-u %s -s redis.cluster_mode=true -s redis.lock_prefix='{mig}:lock' " ..
                                 "locks --release %s --yes"):format(cluster.url, lock2))
    assert.are.equal(0, code, out .. err)
    assert.matches("released (owner was tool)", out, 1, true)
    assert.is_nil(tagged:lock_owner(lock2))
  end)

  it("stats sums dbsize and used_memory over every master and shows each master's figures", function()
    for i = 1, 500 do store:save_resume_token("st" .. i, token(i)) end
    local masters = cluster:masters()
    local total = 0
    for _, m in ipairs(masters) do total = total + tonumber(m:cli("DBSIZE")) end
    local code, out, err = host(("-u %s -s redis.cluster_mode=true stats --match 'st*'"):format(cluster.url))
    assert.are.equal(0, code, err)
    assert.matches("\ntokens +500\n", out)
    assert.matches("\ndbsize +" .. total .. " %(sum over 3 masters%)\n", out)
    local used = tonumber(out:match("\nused_memory +(%d+) %([^)]*; sum over 3 masters%)\n"))
    assert.is_truthy(used, out)
    local sum = 0
    for _, m in ipairs(masters) do
      local keys, bytes = out:match("\nnode 127%.0%.0%.1:" .. m.port .. " +dbsize=(%d+) used_memory=(%d+)")
      assert.is_truthy(keys, out)
      assert.are.equal(m:cli("DBSIZE"), keys)
      sum = sum + tonumber(bytes)
    end
    assert.are.equal(used, sum)

    local figures = store:server_figures()
    assert.are.equal(3, #figures)
    for _, f in ipairs(figures) do
      assert.matches("^127%.0%.0%.1:%d+$", f.node)
      assert.is_true(f.dbsize > 100 and f.used_memory > 0)
      assert.matches("^%d", f.redis_version)
    end
  end)
end)

-- Slots moving, failovers and a killed master, each on a cluster of its
-- own: Redis can take a while to settle after such a change (a promoted
-- replica may not claim a slot it had not heard of), and the next test
-- must not inherit that.
describe("cluster mode while the cluster changes", function()
  local cluster, store
  before_each(function() cluster, store = open_cluster() end)
  after_each(function()
    close_cluster(cluster, store)
    cluster, store = nil, nil
  end)

  -- Saves token i into collection "loop<i % 50>" while `background_cmd`
  -- runs, and then once more into every collection; returns the last token
  -- of each collection. Only those last ones were acknowledged after the
  -- change was over: a save acknowledged by a master that then died may be
  -- lost with it (asynchronous replication), so only they are checked.
  -- With `lossy` (a master dies), each save is not read back at once
  -- either: the read may already go to the promoted replica, which never
  -- got it.
  local function save_while(background_cmd, min_seconds, target, lossy)
    target = target or store
    local done_file = os.tmpname()
    os.remove(done_file)
    os.execute(("(%s; touch %s) >/dev/null 2>&1 &"):format(background_cmd, done_file))
    local last, i, start, stop_after = {}, 0, system.gettime(), nil
    while not stop_after or i < stop_after do
      i = i + 1
      local collection = "loop" .. (i % 50)
      target:save_resume_token(collection, token(i))      -- raises on any failure
      if not lossy then assert.are.same(token(i), target:get_resume_token(collection)) end
      last[collection] = token(i)
      if not stop_after and system.gettime() - start > min_seconds then
        local f = io.open(done_file)
        if f then f:close() stop_after = i + 50 end
      end
      assert(system.gettime() - start < 180, "background step did not finish")
    end
    os.remove(done_file)
    return last, i
  end

  it("keeps saving without a failed operation while slots move (reshard, MOVED/ASK)", function()
    local masters = cluster:masters()
    local from = masters[1]:cli("CLUSTER", "MYID")
    local to = masters[2]:cli("CLUSTER", "MYID")
    local last, n = save_while((servers.cli_bin .. " --cluster reshard 127.0.0.1:%d --cluster-from %s " ..
      "--cluster-to %s --cluster-slots 1500 --cluster-yes --cluster-pipeline 10")
      :format(masters[1].port, from, to), 1)
    assert.is_true(n > 100)
    local stats = store:stats()
    assert.is_true(stats.cluster.moved + stats.cluster.ask > 0, "no redirection was exercised")
    for collection, tok in pairs(last) do assert.are.same(tok, store:get_resume_token(collection)) end
  end)

  it("keeps saving through CLUSTER FAILOVER of a master", function()
    local master = cluster:masters()[1]
    local master_id = master:cli("CLUSTER", "MYID")
    local replica
    for _, n in ipairs(cluster.nodes) do
      if n:cli("ROLE"):match("^slave") and n:cli("CLUSTER", "NODES"):find("myself,slave " .. master_id, 1, true) then
        replica = n
      end
    end
    assert.is_truthy(replica, "no replica of the master found")
    -- The background step ends once the replica reports itself master and
    -- the old master itself a replica (before, a forced failover leaves the
    -- old master taking writes it will drop). A manual failover can time
    -- out on a busy machine (the replica must catch up first): it is asked
    -- again, the third time with FORCE.
    local cli = servers.cli_bin .. " -p " .. replica.port
    local swapped = ("%s ROLE | head -n 1 | grep -q master && %s -p %d ROLE | head -n 1 | grep -q slave")
      :format(cli, servers.cli_bin, master.port)
    local last = save_while(("for try in 1 2 3; do " ..
      "if [ $try -eq 3 ]; then %s CLUSTER FAILOVER FORCE; else %s CLUSTER FAILOVER; fi; " ..
      "i=0; until %s || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done; " ..
      "%s && break; done"):format(cli, cli, swapped, swapped), 2)
    assert.matches("^master", replica:cli("ROLE"))
    for collection, tok in pairs(last) do assert.are.same(tok, store:get_resume_token(collection)) end
  end)

  it("keeps saving when a master is killed: the map is refreshed and its replica takes over", function()
    local patient <close> = rs.new{ url = cluster.url, cluster_mode = true, max_retries = 80,
                                    retry_max_delay = 0.25 }
    local victim = cluster:masters()[1]
    -- The saves acknowledged by the victim just before it died may be lost
    -- (asynchronous replication): the loop must not fail, and what it saved
    -- after the kill reads back from the promoted replica.
    local last = save_while("kill -9 " .. victim.pid .. "; sleep 1", 1, patient, true)
    victim.pid = nil                   -- killed outside the fixture
    assert.is_true(patient:stats().cluster.refreshes >= 2)
    for collection, tok in pairs(last) do assert.are.same(tok, patient:get_resume_token(collection)) end
  end)

  it("lists every token when the master being walked is killed mid-listing (the walk moves to its replica)", function()
    local durable <close> = rs.new{ url = cluster.url, cluster_mode = true, wait_replicas = 1,
                                    wait_timeout = 30, command_timeout = 35 }   -- on a replica before the kill
    for i = 1, 600 do durable:save_resume_token("walk" .. i, token(i)) end
    local lister <close> = rs.new{ url = cluster.url, cluster_mode = true, max_retries = 60,
                                   retry_max_delay = 0.25 }
    local seen, victim = {}, nil
    for collection, tok in lister:resume_tokens{ match = "walk*", batch = 20 } do
      if not victim then          -- the first batch comes from the master being walked
        local key = "rigatoni:resume_token:" .. collection
        for _, m in ipairs(cluster:masters()) do
          if not m:cli("GET", key):match("^MOVED") then victim = m end
        end
        victim:kill()
      end
      seen[collection] = tok
    end
    assert.is_truthy(victim)
    for i = 1, 600 do assert.are.same(token(i), seen["walk" .. i], "walk" .. i) end
  end)
end)

describe("cluster mode with a password on every node", function()
  it("authenticates each node (AUTH) and works end to end", function()
    local cluster = servers.cluster{ masters = 3, replicas = 0, password = "cl-s3cret" }
    finally(function() cluster:stop() end)
    local url = cluster.url:gsub("^redis://", "redis://:cl-s3cret@")
    local store <close> = rs.new{ url = url, cluster_mode = true }
    for i = 1, 100 do store:save_resume_token("p" .. i, token(i)) end
    local n = 0
    for _ in store:resume_tokens{} do n = n + 1 end
    assert.are.equal(100, n)
    local ok, err = pcall(rs.new, { url = cluster.url:gsub("^redis://", "redis://:wrong@"), cluster_mode = true })
    assert.is_false(ok)
    assert.are.equal("auth", err.kind)
    assert.not_matches("cl-s3cret", tostring(err), 1, true)
  end)
end)

describe("cluster mode over TLS with an ACL user", function()
  it("verifies every node's certificate and authenticates the ACL user on each", function()
    local certs = require "support.certs"
    local dir = io.popen("mktemp -d " .. servers.quote((os.getenv("RS_TEST_ROOT") or "/tmp") .. "/pki.XXXXXX")):read("l")
    local pki = certs.make(dir)
    local cluster = servers.cluster{ masters = 3, replicas = 0,
      tls = { cert = pki.server_cert, key = pki.server_key, ca = pki.ca } }
    finally(function() cluster:stop() end)
    for _, n in ipairs(cluster.nodes) do
      n:cli("ACL", "SETUSER", "pipeline", "on", ">acl-pw-5", "~rigatoni:*", "+@all")
    end
    local url = cluster.url:gsub("^rediss://", "rediss://pipeline:acl-pw-5@")
    local store <close> = rs.new{ url = url, cluster_mode = true, tls = { ca_file = pki.ca } }
    for i = 1, 100 do store:save_resume_token("t" .. i, token(i)) end
    local n = 0
    for _ in store:resume_tokens{} do n = n + 1 end
    assert.are.equal(100, n)
    assert.is_true(#cluster:masters() == 3)
    local ok, err = pcall(rs.new, { url = url, cluster_mode = true, tls = { ca_file = pki.other_ca } })
    assert.is_false(ok)
    assert.matches("certificate verify failed", err.message, 1, true)
    ok, err = pcall(rs.new, { url = url:gsub("acl%-pw%-5", "nope"), cluster_mode = true,
                              tls = { ca_file = pki.ca } })
    assert.is_false(ok)
    assert.are.equal("auth", err.kind)
  end)
end)
