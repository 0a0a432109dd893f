-- spec/bindings_spec.lua -- the Lua bindings read their arguments safely:
-- tables with __index/__len (proxies whose values are made on demand and
-- collected right after) give the same results as plain tables, and no
-- binding keeps a pointer into a value it no longer holds (under ASan a
-- slip is a heap-use-after-free); numeric arguments are bounded.

local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"

local N = 50

-- Long names (not interned short strings), so that a freed one is
-- reused by the next allocation of the same size.
local function name(i)
  return ("collection-%03d-%s"):format(i, ("x"):rep(48))
end

-- A proxy array: every read makes a fresh value and collects garbage
-- first, so the value of the previous read is freed unless anchored.
local function proxy(n, make)
  return setmetatable({}, {
    __len = function() return n end,
    __index = function(_, i)
      collectgarbage()
      if type(i) == "number" and i >= 1 and i <= n then return make(i) end
    end,
  })
end

-- A proxy record: fields made on demand, garbage collected before each.
local function proxy_record(fields)
  return setmetatable({}, {
    __index = function(_, k)
      collectgarbage()
      local v = fields[k]
      if type(v) == "string" then return v:sub(1) .. "" end
      return v
    end,
  })
end

local function bytes(i) return ("value-%03d-%s"):format(i, ("y"):rep(40)) end

local srv, store
setup(function()
  srv = servers.redis{}
  store = rs.new{ url = srv.url }
end)
teardown(function()
  if store then store:close() end
  servers.stop_all()
end)
before_each(function()
  assert.equal("OK", srv:cli("FLUSHALL"))
end)

describe("batch calls with proxy tables", function()
  local function save_all()
    for i = 1, N do store:save_raw(name(i), bytes(i)) end
  end

  it("get_many reads every name of a proxy array", function()
    save_all()
    local values = store:get_many(proxy(N, name))
    assert.equal(N, #values)
    for i = 1, N do assert.equal(bytes(i), values[i]) end
  end)

  it("delete_many deletes every name of a proxy array", function()
    save_all()
    assert.equal(N, store:delete_many(proxy(N, name)))
    assert.equal("0", srv:cli("DBSIZE"))
  end)

  it("save_many saves proxy items of a proxy array", function()
    local written = store:save_many(proxy(N, function(i)
      return proxy_record{ name(i), bytes(i), 100 + i }
    end))
    assert.equal(N, #written)
    for i = 1, N do
      assert.is_true(written[i])
      assert.equal(bytes(i), store:get_raw(name(i)))
      local ttl = store:ttl(name(i))
      assert.is_true(ttl > 90 + i and ttl <= 100 + i)
    end
  end)

  it("save_many saves plain item tables made on demand", function()
    store:save_many(proxy(N, function(i) return { name(i) .. "", bytes(i) .. "" } end))
    for i = 1, N do assert.equal(bytes(i), store:get_raw(name(i))) end
  end)

  it("save_many reads its options from a proxy", function()
    store:save_raw(name(1), "old")
    local written = store:save_many({ { name(1), "new" }, { name(2), "two" } },
                                    proxy_record{ nx = true })
    assert.same({ false, true }, written)
    assert.equal("old", store:get_raw(name(1)))
  end)

  it("a huge __len is refused before anything is allocated for it", function()
    local err = helpers.catch_object(store.get_many, store, proxy(math.maxinteger, name))
    helpers.assert_kind("serialization", err)
    err = helpers.catch_object(store.delete_many, store, proxy(-1, name))
    helpers.assert_kind("serialization", err)
  end)
end)

describe("other bindings with proxy tables", function()
  it("save_resume_token reads lock and owner from a proxy", function()
    assert.is_true(store:try_acquire_lock("lk-" .. name(1), "owner-" .. name(2), 30))
    store:save_resume_token("users", { _data = "82aa" },
                            proxy_record{ lock = "lk-" .. name(1), owner = "owner-" .. name(2) })
    assert.same({ _data = "82aa" }, store:get_resume_token("users"))
  end)

  it("delete_resume_token reads if_value from a proxy", function()
    store:save_raw(name(1), bytes(1))
    assert.is_false(store:delete_resume_token(name(1), proxy_record{ if_value = bytes(2) }))
    assert.is_true(store:delete_resume_token(name(1), proxy_record{ if_value = bytes(1) }))
  end)

  it("list_resume_tokens, resume_tokens and scan_keys read match from a proxy", function()
    store:save_resume_token(name(1), { _data = "82aa" })
    store:save_resume_token("other", { _data = "82bb" })
    local opts = proxy_record{ match = name(1), batch = 10 }
    local tokens = store:list_resume_tokens(opts)
    assert.same({ [name(1)] = { _data = "82aa" } }, tokens)
    local seen = {}
    for c in store:resume_tokens(opts) do seen[#seen + 1] = c end
    assert.same({ name(1) }, seen)
    seen = {}
    for k in store:scan_keys("rigatoni:resume_token:" .. name(1), proxy_record{ batch = 10 }) do
      seen[#seen + 1] = k
    end
    assert.same({ "rigatoni:resume_token:" .. name(1) }, seen)
  end)

  it("stats and lease read their options from a proxy", function()
    assert.is_table(store:stats(proxy_record{ buckets = true }).ops.save.buckets)
    local lease = store:lease("lk-" .. name(3), "owner", proxy_record{ ttl = 20 })
    assert.truthy(lease)
    lease:release()
  end)
end)

describe("the host's bindings with proxy tables", function()
  it("host.open_store reads url and set from proxies", function()
    local code, out, err = helpers.run_host({ "-e", [[
      local function fresh(v) collectgarbage() return v .. "" end
      local sets = setmetatable({}, { __len = function() return 2 end, __index = function(_, i)
        return fresh(({ "redis.pool_size=3", "redis.key_prefix=proxied:prefix" })[i])
      end })
      local opts = setmetatable({}, { __index = function(_, k)
        if k == "url" then return fresh(os.getenv("URL")) elseif k == "set" then return sets end
      end })
      local s, view = host.open_store(opts)
      assert(s:ping())
      print(view.pool_size, view.key_prefix)
    ]] }, { env = { URL = srv.url } })
    assert.equal(0, code, err)
    assert.equal("3\tproxied:prefix\n", out)
  end)
end)

describe("numeric bounds of the bindings", function()
  -- Redis's own range (rs.check_ttl): past 2^63-1 ms after 1970 is refused.
  for _, ttl in ipairs{ math.huge, 1e30, 1e16 } do
    it("save_many refuses a ttl of " .. tostring(ttl) .. " seconds with a config error", function()
      local err = helpers.catch_object(store.save_many, store, { { "users", "bytes", ttl } })
      helpers.assert_kind("config", err)
      assert.matches("ttl", err.message)
      assert.equal("0", srv:cli("DBSIZE"))
    end)
  end

  it("save_many accepts a ttl Redis takes past 1e9 seconds (2e9, 1e15)", function()
    store:save_many{ { "users", "bytes", 2e9 }, { "orders", "bytes", 1e15 } }
    assert.is_true(store:ttl("users") > 2e9 - 10)
    assert.is_true(store:ttl("orders") > 1e15 - 10)
  end)

  it("save_raw refuses an infinite ttl with a config error", function()
    helpers.assert_kind("config", helpers.catch_object(store.save_raw, store, "users", "b", math.huge))
  end)
end)

describe("numeric bounds of the options", function()
  -- Casting these to an integer is undefined behaviour in C (UBSan's
  -- float-cast-overflow check catches it in the ASan build).
  local bad = { math.huge, -math.huge, 1e30, -1e30, 0 / 0 }
  for _, option in ipairs{ "pool_size", "max_retries", "scan_count", "wait_replicas" } do
    it(option .. " outside its range, infinite or NaN is a config error naming it", function()
      for _, v in ipairs(bad) do
        local err = helpers.catch_object(rs.new, { url = srv.url, [option] = v })
        helpers.assert_kind("config", err)
        assert.matches(option, err.message, 1, true)
        local builder = rs.config():url(srv.url)
        err = helpers.catch_object(builder[option], builder, v)
        helpers.assert_kind("config", err)
      end
    end)
  end

  it("durations outside their range, infinite or NaN are config errors", function()
    for _, option in ipairs{ "ttl", "connection_timeout", "command_timeout", "wait_timeout" } do
      for _, v in ipairs(bad) do
        helpers.assert_kind("config", helpers.catch_object(rs.new, { url = srv.url, [option] = v }))
      end
    end
  end)
end)

describe("out of memory in the bindings", function()
  -- spec/support/oom_lua.c fails each allocation of the body in turn; built
  -- with AddressSanitizer, its LeakSanitizer report fails the run when a
  -- binding loses what the core malloc'd for it.
  local HARNESS, MODULE = "build-asan/bin/oom_lua", "build-asan/?.so"

  it("leaks nothing whichever allocation of which binding fails", function()
    assert(io.open(HARNESS), HARNESS .. " is missing: make test-lua-asan builds it")
    local out = os.tmpname()
    local cmd = ("ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=%s LUA_CPATH=%s %s %s %s >%s 2>&1")
      :format(servers.quote(os.getenv("PWD") .. "/spec/support/lsan.supp"), servers.quote(MODULE .. ";;"),
              HARNESS, "spec/support/oom_bindings.lua", servers.quote(srv.url), out)
    local _, _, code = os.execute(cmd)
    local report = helpers.read_file(out) or ""
    os.remove(out)
    assert.equal(0, code, report)
    local runs = tonumber(report:match("oom_lua: (%d+) runs"))
    assert.is_true(runs and runs > 100, report)
  end)
end)
