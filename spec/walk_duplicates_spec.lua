-- SPDX-License-Identifier: MIT
-- spec/walk_duplicates_spec.lua -- a walk that lists names twice changes
-- no outcome. A walk that meets another server process (kill -9 and an AOF
-- restart on the same port; for a user that may not run INFO, a connection
-- killed under it) starts over from SCAN cursor 0 and so lists again every
-- name it had listed: each name must still be yielded once, so cleanup
-- deletes each stream key's mirror, list prints each series once and every
-- count is of distinct names, as in an undisturbed run.
--
-- The tools run in the background with `store` wrapped (PAUSE_HOOK): in
-- the chosen walk, after the chosen number of rows, the script stops until
-- the spec has disrupted the server. So the disruption always lands mid-walk
-- (the read-ahead holds at most three batches), whatever the machine's load.
-- WALKDUP_KEYS sets the number of stream keys (default 1000; each has a
-- mirror, so twice as many tokens), WALKDUP_WAIT the seconds a tool may
-- take (default 120; cleanup --yes deletes one key per round trip, each
-- fsynced by the AOF).
local rs = require "rigatoni_store"
local servers = require "support.servers"
local helpers = require "support.helpers"
local system = require "system"

local quote, read_file, write_file = helpers.quote, helpers.read_file, helpers.write_file
local P = "rigatoni:resume_token:"
local N = tonumber(os.getenv("WALKDUP_KEYS")) or 1000
local WAIT = tonumber(os.getenv("WALKDUP_WAIT")) or 120
local OLD = os.time() - 86400 * 90

local function token_bytes(seconds, n)
  local data = string.format("82%08X%08X2B022C0100296E5A1004", seconds, n)
  local elem = "\2_data\0" .. string.pack("<i4", #data + 1) .. data .. "\0"
  return string.pack("<i4", 4 + #elem + 1) .. elem .. "\0"
end

-- N stale stream keys resume_token:shop:c<i>, each with its mirror c<i>.
local function seed_streams(srv, n)
  local parts = {}
  for i = 1, n do
    parts[#parts + 1] = servers.resp { "SET", P .. "resume_token:shop:c" .. i, token_bytes(OLD, i) }
    parts[#parts + 1] = servers.resp { "SET", P .. "c" .. i, token_bytes(OLD, i) }
  end
  srv:pipe(table.concat(parts))
  assert.equal(2 * n, tonumber(srv:cli("DBSIZE")))
end

-- Runs SCRIPT with `store` wrapped: the WALK-th walk the script opens
-- (resume_tokens, token_batches or token_lines) stops after AFTER rows,
-- writes CTL/ready and waits for CTL/go.
local PAUSE_HOOK = [[
local script, ctl, walk_no, after = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local args = table.move(arg, 5, #arg, 1, {})
args[0] = script
arg = args
local real, walks, paused = store, 0, false
local per_step = { resume_tokens = function() return 1 end, token_lines = function(r) return r[2] end,
                   token_batches = function(r) return r[5] end }
store = setmetatable({}, { __index = function(_, name)
  local f = real[name]
  if not per_step[name] then return function(_, ...) return f(real, ...) end end
  return function(_, ...)
    walks = walks + 1
    local mine, rows = walks == walk_no, 0
    local iter, state, control, closing = f(real, ...)
    return function(s, c)
      if mine and not paused and rows >= after then
        paused = true
        local fh = assert(io.open(ctl .. "/ready", "w")); fh:close()
        for _ = 1, 1200 do
          local go = io.open(ctl .. "/go")
          if go then go:close(); break end
          os.execute("sleep 0.05")
        end
      end
      local r = table.pack(iter(s, c))
      if r[1] ~= nil then rows = rows + per_step[name](r) end
      return table.unpack(r, 1, r.n)
    end, state, control, closing
  end
end })
return require("lib.options").main(dofile(script), arg)   -- the script returns its declaration
]]

-- Waits for `path` to exist; fails early when `ended` exists instead.
local function wait_for(path, timeout, what, ended)
  local deadline = system.gettime() + timeout
  while not read_file(path) do
    assert(system.gettime() < deadline, "timed out waiting for " .. what)
    assert(not (ended and read_file(ended)), "the script ended before " .. what)
    system.sleep(0.02)
  end
end

-- Runs `rigatoni-store -u URL -e PAUSE_HOOK SCRIPT ARGS...` in the
-- background; `disrupt` runs once the script is paused in walk `walk_no`
-- after `after` rows. Returns exit code, stdout, stderr.
local function run_disrupted(url, walk_no, after, disrupt, script, args)
  local dir = helpers.capture("mktemp -d"):gsub("%s+$", "")
  local cmd = { "env -u RIGATONI_STORE_CONFIG -u REDIS_URL", quote(helpers.BIN), "-u", quote(url),
                "-s", "redis.max_retries=40", "-s", "redis.retry_max_delay=0.2",
                "-e", quote(PAUSE_HOOK), quote("scripts/" .. script .. ".lua"), quote(dir),
                tostring(walk_no), tostring(after) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = quote(a) end
  cmd[#cmd + 1] = "--batch 100"   -- the read-ahead holds 300 rows at most
  os.execute("( " .. table.concat(cmd, " ") .. " >" .. quote(dir .. "/out") .. " 2>" .. quote(dir .. "/err")
             .. " </dev/null; echo $? >" .. quote(dir .. "/rc.tmp") .. "; mv " .. quote(dir .. "/rc.tmp") .. " "
             .. quote(dir .. "/rc") .. " ) &")
  local ok, why = pcall(wait_for, dir .. "/ready", WAIT, script .. " reached row " .. after,
                        dir .. "/rc")
  if ok then
    disrupt()
    write_file(dir .. "/go", "")
  else
    write_file(dir .. "/go", "")
  end
  wait_for(dir .. "/rc", WAIT, script .. " to end")
  local code = tonumber(read_file(dir .. "/rc"))
  local out, err = read_file(dir .. "/out") or "", read_file(dir .. "/err") or ""
  os.execute("rm -rf " .. quote(dir))
  assert(ok, tostring(why) .. "\n" .. err)
  return code, out, err
end

-- Each line counted by its text: the lines seen more than once.
local function repeated_lines(text)
  local seen, dups = {}, {}
  for line in text:gmatch("[^\n]+") do
    if seen[line] then dups[#dups + 1] = line end
    seen[line] = true
  end
  return dups
end

local function count_lines(text, pattern)
  local n = 0
  for line in text:gmatch("[^\n]+") do
    if line:find(pattern) then n = n + 1 end
  end
  return n
end

-- The server disruptions that make a walk start over from cursor 0.
local function restarter(srv)
  return function()
    srv:kill()
    srv:restart()
  end
end

local function connection_killer(srv, user)
  return function() assert.matches("^%d+", srv:cli("CLIENT", "KILL", "USER", user)) end
end

-- The tool cases, each against a server and its disruption; every one
-- compares with what an undisturbed run gives. `info`: the user may run
-- INFO (stats needs it).
local function tool_cases(get, info)
  local after = N // 2   -- rows handed to the script before the disruption

  it("cleanup --older-than --yes deletes every stream key and every mirror, none 'already gone'", function()
    local srv, url, disrupt = get()
    seed_streams(srv, N)
    -- walk 1: the stream keys; walk 2: every token (token_batches)
    local code, out, err = run_disrupted(url, 2, after, disrupt, "cleanup", { "--older-than", "30d", "--yes" })
    assert.equal(0, code, out .. err)
    assert.matches(string.format("cleanup: %d deleted %%(older than 30d%%) %%+ %d mirrors; %d scanned", N, N, 2 * N), out)
    assert.not_matches("already gone", out)
    assert.equal(0, tonumber(srv:cli("DBSIZE")), out)
  end)

  it("cleanup --stream --yes paused in the stream keys' walk deletes every pair", function()
    local srv, url, disrupt = get()
    seed_streams(srv, N)
    local code, out, err = run_disrupted(url, 1, after, disrupt, "cleanup",
                                         { "--stream", "shop", "--older-than", "30d", "--yes" })
    assert.equal(0, code, out .. err)
    assert.matches(string.format("cleanup: %d deleted %%(older than 30d%%) %%+ %d mirrors; %d scanned", N, N, N), out)
    assert.not_matches("already gone", out)
    assert.equal(0, tonumber(srv:cli("DBSIZE")), out)
  end)

  it("the cleanup plan counts each token once", function()
    local srv, url, disrupt = get()
    seed_streams(srv, N)
    -- walk 1: the one-walk plan, dropped at the first stream key; 2: the
    -- stream keys; 3: every token
    local code, out, err = run_disrupted(url, 3, after, disrupt, "cleanup", { "--older-than", "30d" })
    assert.equal(0, code, out .. err)
    assert.matches(string.format("would delete %d %%(older than 30d%%) %%+ %d mirrors; %d scanned", N, N, 2 * N), out)
    assert.equal(2 * N, tonumber(srv:cli("DBSIZE")))
  end)

  it("list --format prometheus emits each series once and counts distinct tokens", function()
    local srv, url, disrupt = get()
    seed_streams(srv, N)
    local code, out, err = run_disrupted(url, 2, after, disrupt, "list", { "--format", "prometheus" })
    assert.equal(0, code, out .. err)
    local dups = repeated_lines(out)
    assert.equal(0, #dups, dups[1])
    assert.equal(2 * N, count_lines(out, "^rigatoni_resume_token_age_seconds{"))
    assert.matches("\nrigatoni_resume_tokens " .. 2 * N .. "\n", out, 1, true)
  end)

  for _, f in ipairs { "jsonl", "json", "csv", "table" } do
    it("list --format " .. f .. " prints each token once", function()
      local srv, url, disrupt = get()
      seed_streams(srv, N)
      local code, out, err = run_disrupted(url, 2, after, disrupt, "list", { "--format", f })
      assert.equal(0, code, out .. err)
      local dups = repeated_lines(out)
      assert.equal(0, #dups, dups[1])
      assert.equal(2 * N, count_lines(out, "c%d"))
      assert.matches("list: " .. 2 * N .. " tokens", err, 1, true)
    end)
  end

  if not info then return end
  it("stats counts each token once", function()
    local srv, url, disrupt = get()
    seed_streams(srv, N)
    local code, out, err = run_disrupted(url, 1, N, disrupt, "stats", { "--sample", "1" })
    assert.equal(0, code, out .. err)
    assert.matches("\ntokens%s+" .. 2 * N .. "\n", out)
    assert.matches("\nbytes%s+" .. 2 * N * #token_bytes(OLD, 1) .. "\n", out)
  end)
end

describe("a walk restarted by kill -9 and an AOF restart", function()
  local srv
  setup(function() srv = servers.redis { args = { "--appendonly", "yes", "--appendfsync", "always" } } end)
  teardown(function() srv:stop() end)
  before_each(function() srv:cli("FLUSHALL") end)

  it("yields each name once through resume_tokens, token_batches, token_lines and scan_keys", function()
    seed_streams(srv, N)
    local walks = {
      resume_tokens = function(store) return store:resume_tokens { batch = 100, raw = true } end,
      token_batches = function(store) return store:token_batches { batch = 100 } end,
      token_lines = function(store) return store:token_lines { format = "list", batch = 100 } end,
      scan_keys = function(store) return store:scan_keys(P .. "*", { batch = 100 }) end,
    }
    for name, open in pairs(walks) do
      local store <close> = rs.new { url = srv.url, max_retries = 40, retry_max_delay = 0.2 }
      local seen, rows, distinct, restarted = {}, 0, 0, false
      local function note(n)
        rows = rows + 1
        if not seen[n] then distinct = distinct + 1 end
        seen[n] = true
      end
      local log = helpers.with_log(function()
        for a, _, _, _, e in open(store) do
          if name == "token_batches" then
            for i = 1, e do note(a[i]) end
          elseif name == "token_lines" then
            for c in a:gmatch('{"collection":"([^"]*)"') do note(c) end
          else
            note(a)
          end
          if not restarted and rows >= N // 2 then
            restarted = true
            srv:kill()
            srv:restart()
          end
        end
      end)
      assert.matches("from the start", log, 1, true)
      assert.equal(2 * N, distinct, name)
      assert.equal(2 * N, rows, name .. ": a name was yielded twice")
    end
  end)

  tool_cases(function() return srv, srv.url, restarter(srv) end, true)
end)

describe("a walk started over for a user that may not run INFO (its connection killed)", function()
  local srv, url
  setup(function()
    srv = servers.redis { args = { "--user", "walker", "on", ">walk-pw", "~*", "+@all", "-info" } }
    url = srv.url:gsub("^redis://", "redis://walker:walk-pw@")
  end)
  teardown(function() srv:stop() end)
  before_each(function() srv:cli("FLUSHALL") end)

  it("resume_tokens yields each name once", function()
    seed_streams(srv, N)
    local store <close> = rs.new { url = url, max_retries = 40, retry_max_delay = 0.2 }
    local seen, rows, distinct, killed = {}, 0, 0, false
    local log = helpers.with_log(function()
      for c in store:resume_tokens { batch = 100, raw = true } do
        rows = rows + 1
        if not seen[c] then distinct = distinct + 1 end
        seen[c] = true
        if not killed and rows == N // 2 then
          killed = true
          connection_killer(srv, "walker")()
        end
      end
    end)
    assert.matches("from the start", log, 1, true)
    assert.equal(2 * N, distinct)
    assert.equal(2 * N, rows, "a name was yielded twice")
  end)

  tool_cases(function() return srv, url, connection_killer(srv, "walker") end, false)
end)
