-- SPDX-License-Identifier: MIT
-- spec/support/servers.lua -- real redis-server processes for the specs.
--
-- Each server runs in the foreground (`--daemonize no`) as a background job
-- of /bin/sh, on a random free loopback port, in a fresh directory under
-- $RS_TEST_ROOT (or a private mktemp -d). Its pid is written to
-- `<dir>/redis.pid` so that spec/run-tests.sh can kill whatever a crashed
-- spec left behind. Specs stop their servers in `teardown`/`finally`;
-- `servers.stop_all()` stops every server this module started.
--
-- The server binary is $RS_TEST_SERVER (default redis-server; valkey-server
-- runs every spec on Valkey); its cli and sentinel are found beside it by
-- name (valkey-cli, valkey-sentinel); servers.cli_bin is the cli.
--
-- Only 127.0.0.1 is ever bound or contacted. There is no luaposix here, so
-- processes are driven through os.execute / io.popen and /bin/sh, with every
-- argument shell-quoted.
--
--   local servers = require "support.servers"
--   local srv = servers.redis{ args = {"--maxmemory", "10mb"}, password = nil,
--                              debug = false }
--   srv.port, srv.url, srv.dir, srv.pid
--   srv:cli("SET", "k", "v")    --> "OK"        (output, trimmed)
--   srv:cli_raw("GET", "k")     --> exact bytes of the value
--   srv:set_raw("k", "\0\1")    -- binary-safe SET
--   srv:pipe(servers.resp{"SET", "k", "v"} .. ...)  -- redis-cli --pipe
--   srv:stop()  srv:kill()  srv:restart()
--   srv:wait_blocked()          -- until PING goes unanswered (a DEBUG SLEEP began)
--
--   TLS: servers.redis{ tls = { cert = , key = , ca = , auth_clients = "no" } }
--   listens with --tls-port only; srv.url is rediss://, redis-cli speaks TLS.
--   Cluster: servers.cluster{ masters = 3, replicas = 1 } starts the nodes
--   with cluster-enabled, creates the cluster and waits for cluster_state:ok;
--   c.nodes, c.url (all nodes as seeds), c:stop().
--   Sentinel: servers.sentinel{ master = srv, quorum = 2, down_after_ms = 1000,
--   failover_timeout_ms = 3000 } runs redis-sentinel with its own config file
--   (tls = {...} as for redis: TLS-only, and TLS to the servers it watches).

local M = {}

-- Below Linux's ephemeral range (32768-60999), where another process's
-- client socket may hold a port we found free; the cluster bus (port +
-- 10000) stays below it too.
-- RS_TEST_PORTS=MIN-MAX narrows it: make test gives its two busted passes,
-- which run at once, a range each, so a port one pass frees for a moment
-- (a server restarted on its port) is never taken by the other.
local PORT_MIN, PORT_MAX = 10000, 22000
do
  local range = os.getenv("RS_TEST_PORTS")
  if range and range ~= "" then
    local lo, hi = range:match("^(%d+)%-(%d+)$")
    lo, hi = tonumber(lo), tonumber(hi)
    assert(lo and hi and lo >= 1024 and lo < hi and hi <= 22000,
           "RS_TEST_PORTS must be MIN-MAX within 1024-22000, not " .. range)
    PORT_MIN, PORT_MAX = lo, hi
  end
end
local START_TIMEOUT = 20.0   -- seconds until the server must answer (polled; a busy machine is slow)
local STOP_TIMEOUT = 5.0     -- seconds after SIGTERM before SIGKILL
local BIND_ATTEMPTS = 20

local SERVER_BIN = os.getenv("RS_TEST_SERVER")
if not SERVER_BIN or SERVER_BIN == "" then SERVER_BIN = "redis-server" end
assert(SERVER_BIN:match("%-server$"), "RS_TEST_SERVER must name a *-server binary: " .. SERVER_BIN)
local CLI_BIN = SERVER_BIN:gsub("%-server$", "-cli")
local SENTINEL_BIN = SERVER_BIN:gsub("%-server$", "-sentinel")
M.cli_bin = CLI_BIN

local ok_system, system = pcall(require, "system")
local helpers = require "support.helpers"
local quote, capture = helpers.quote, helpers.capture
local read_file, write_file = helpers.read_file, helpers.write_file
M.quote = quote

-- ---------------------------------------------------------------------
-- Shell helpers
-- ---------------------------------------------------------------------

local function quote_all(list)
  local out = {}
  for i = 1, #list do out[i] = quote(list[i]) end
  return table.concat(out, " ")
end

local function run(cmd)
  local ok = os.execute(cmd)
  return ok == true
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function now()
  if ok_system then return system.gettime() end
  return os.time()
end

local function sleep(seconds)
  if ok_system then
    system.sleep(seconds)
  else
    run("sleep " .. string.format("%.3f", seconds))
  end
end
M.sleep = sleep
M.now = now

-- A random port from /dev/urandom: math.random may be seeded identically by
-- several concurrent busted runs (busted seeds it with os.time()).
local function random_port()
  local f = io.open("/dev/urandom", "rb")
  local n
  if f then
    local b = f:read(4)
    f:close()
    n = string.unpack("<I4", b)
  else
    n = math.random(0, 0x7fffffff)
  end
  return PORT_MIN + n % (PORT_MAX - PORT_MIN + 1)
end

-- ---------------------------------------------------------------------
-- Processes
-- ---------------------------------------------------------------------

-- Is `pid` a live process? A dead child of ours may linger as a zombie
-- (PID 1 in containers does not always reap), which `kill -0` reports as
-- alive; /proc tells the truth.
local function alive(pid)
  if not pid then return false end
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then
    local state = stat:match("%) (%a)")
    return state ~= "Z" and state ~= "X"
  end
  if io.open("/proc/self/stat", "rb") then return false end  -- /proc works: gone
  return run("kill -0 " .. pid .. " 2>/dev/null")
end
M.alive = alive

local function signal(pid, sig)
  run("kill -" .. sig .. " " .. pid .. " 2>/dev/null")
end

local function wait_dead(pid, timeout)
  local deadline = now() + timeout
  while alive(pid) do
    if now() > deadline then return false end
    sleep(0.02)
  end
  return true
end

-- ---------------------------------------------------------------------
-- Temp directories
-- ---------------------------------------------------------------------

local own_root      -- a root we created ourselves (no RS_TEST_ROOT)

local function test_root()
  local root = os.getenv("RS_TEST_ROOT")
  if root and root ~= "" then return root end
  if not own_root then
    local out, ok = capture("mktemp -d \"${TMPDIR:-/tmp}/rs-test.XXXXXX\"")
    assert(ok, "mktemp -d failed")
    own_root = trim(out)
  end
  return own_root
end

local function make_dir(prefix)
  local root = test_root()
  local out, ok = capture("mktemp -d " .. quote(root .. "/" .. prefix .. ".XXXXXX"))
  assert(ok, "mktemp -d under " .. root .. " failed")
  return trim(out)
end

-- ---------------------------------------------------------------------
-- Redis servers
-- ---------------------------------------------------------------------

local running = {}   -- every server started and not yet stopped

local Server = {}
Server.__index = Server

function Server:__tostring()
  return string.format("%s(port %d, pid %s)", SERVER_BIN, self.port, tostring(self.pid))
end

-- The prefix of every redis-cli call: host, port and password (through the
-- environment, which keeps it out of `ps` and of redis-cli's warning).
function Server:cli_prefix()
  local env = ""
  if self.password then env = "REDISCLI_AUTH=" .. quote(self.password) .. " " end
  local tls = ""
  if self.tls then
    -- --insecure: the fixture itself must reach servers whose certificate
    -- is bad on purpose (expired); the store under test always verifies.
    tls = " --tls --insecure --cacert " .. quote(self.tls.ca)
    if self.tls.client_cert then
      tls = tls .. " --cert " .. quote(self.tls.client_cert) .. " --key " .. quote(self.tls.client_key)
    end
  end
  return env .. CLI_BIN .. " -h 127.0.0.1 -p " .. self.port .. tls
end

function Server:log()
  return read_file(self.log_path) or ""
end

-- Runs redis-cli with `...` as arguments; returns its output (stdout and
-- stderr) trimmed. One value, so that tonumber(srv:cli("TTL", k)) works.
function Server:cli(...)
  local out = capture(self:cli_prefix() .. " " .. quote_all({...}) .. " 2>&1 </dev/null")
  return (trim(out))
end

-- Runs `redis-cli --raw` and returns the exact bytes of the reply: only the
-- one newline redis-cli appends is removed.
function Server:cli_raw(...)
  local out = capture(self:cli_prefix() .. " --raw " .. quote_all({...}) .. " 2>/dev/null </dev/null")
  return (out:gsub("\n$", ""))
end

-- Binary-safe SET: the value goes through a file into `redis-cli -x`.
function Server:set_raw(key, bytes)
  local path = self.dir .. "/set_raw.bin"
  write_file(path, bytes)
  local out, ok = capture(self:cli_prefix() .. " -x SET " .. quote(key) .. " <" .. quote(path) .. " 2>&1")
  os.remove(path)
  assert(ok and trim(out) == "OK", "set_raw " .. key .. " failed: " .. out)
  return true
end

-- Feeds `data` (Redis protocol, see servers.resp) to `redis-cli --pipe`.
-- Raises unless every reply arrived without error.
function Server:pipe(data)
  local path = self.dir .. "/pipe.resp"
  write_file(path, data)
  local out, ok = capture(self:cli_prefix() .. " --pipe <" .. quote(path) .. " 2>&1")
  os.remove(path)
  assert(ok and out:match("errors: 0,"), "redis-cli --pipe failed: " .. out)
  return out
end

-- The command line, each element already quoted for the shell.
function Server:command_line()
  if self.sentinel_conf then
    return quote_all{ SENTINEL_BIN, self:write_sentinel_conf() }
  end
  local argv = {
    SERVER_BIN,
    "--port", tostring(self.port),
    "--bind", "127.0.0.1",
    "--save", "",
    "--appendonly", "no",
    "--dir", self.dir,
    "--daemonize", "no",
  }
  if self.tls then
    local t = self.tls
    argv[3] = "0"                                  -- no plain-text port
    for _, a in ipairs{ "--tls-port", tostring(self.port), "--tls-cert-file", t.cert,
                        "--tls-key-file", t.key, "--tls-ca-cert-file", t.ca,
                        "--tls-auth-clients", t.auth_clients or "no" } do
      argv[#argv + 1] = a
    end
  end
  if self.debug then
    argv[#argv + 1] = "--enable-debug-command"
    argv[#argv + 1] = "yes"
  end
  if self.cluster then
    -- The cluster bus listens on port + 10000 (below 32768 here).
    -- Replicas sync at once (no 5 s wait for more replicas to share a
    -- diskless transfer): tests wait for every replica's link.
    for _, a in ipairs{ "--cluster-enabled", "yes", "--cluster-config-file",
                        self.dir .. "/nodes.conf", "--cluster-node-timeout", "2000",
                        "--repl-diskless-sync-delay", "0" } do
      argv[#argv + 1] = a
    end
    if self.tls then   -- bus and replication over TLS too
      for _, a in ipairs{ "--tls-cluster", "yes", "--tls-replication", "yes" } do
        argv[#argv + 1] = a
      end
    end
  end
  if self.password then
    argv[#argv + 1] = "--requirepass"
    argv[#argv + 1] = self.password
  end
  for _, a in ipairs(self.args) do argv[#argv + 1] = a end
  return quote_all(argv)
end

-- Starts the process on self.port. Returns true when it answers, or false
-- and the reason ("busy" when the port was taken, else the log).
function Server:spawn()
  local cmd = self:command_line() .. " >>" .. quote(self.log_path) .. " 2>&1 </dev/null & echo $!"
  local out, ok = capture(cmd)
  local pid = tonumber(trim(out))
  assert(ok and pid, "could not start " .. SERVER_BIN .. ": " .. out)
  self.pid = pid
  write_file(self.pid_path, tostring(pid) .. "\n")
  running[self] = true

  -- Ready when the server on our port says it is our process: a server of
  -- somebody else on the same port must not be mistaken for ours.
  local deadline = now() + START_TIMEOUT
  local want = "process_id:" .. pid
  while true do
    if not alive(pid) then
      os.remove(self.pid_path)
      running[self] = nil
      self.pid = nil
      local log = self:log()
      if log:find("Address already in use", 1, true) then return false, "busy" end
      return false, SERVER_BIN .. " exited:\n" .. log
    end
    local info = self:cli("INFO", "server")
    if info:find(want, 1, true) then return true end
    if self.tls and info:find("ERR Protocol error", 1, true) then return false, "busy" end
    if now() > deadline then
      self:kill()
      return false, string.format("%s on port %d did not answer within %gs:\n%s",
                                  SERVER_BIN, self.port, START_TIMEOUT, self:log())
    end
    sleep(0.02)
  end
end

-- Ends the process with `sig` (SIGKILL after STOP_TIMEOUT) and forgets
-- it. Harmless when stopped.
function Server:terminate(sig)
  local pid = self.pid
  if pid then
    signal(pid, sig)
    if not wait_dead(pid, STOP_TIMEOUT) then
      signal(pid, "KILL")
      wait_dead(pid, STOP_TIMEOUT)
    end
  end
  self.pid = nil
  running[self] = nil
  os.remove(self.pid_path)
  return true
end

-- Stops with SIGTERM (a clean shutdown).
function Server:stop() return self:terminate("TERM") end

-- Kills at once with SIGKILL (a crash, no shutdown of the server).
function Server:kill() return self:terminate("KILL") end

-- Stops (when running) and starts again on the same port and directory.
function Server:restart()
  self:stop()
  local deadline = now() + START_TIMEOUT
  while true do
    local started, why = self:spawn()
    if started then return self end
    -- The port may linger a moment after the old process; a stranger that
    -- took it for good makes us give up.
    if why ~= "busy" or now() > deadline then
      error("restart of redis-server on port " .. self.port .. " failed: " .. why, 2)
    end
    sleep(0.1)
  end
end

function Server:is_running()
  return alive(self.pid)
end

-- Waits until the server stops answering PING within 0.2 s: a DEBUG SLEEP
-- started in the background by another client has begun. The PING
-- itself is answered once the server wakes up.
function Server:wait_blocked(timeout)
  local deadline = now() + (timeout or 30)
  local ping = "timeout 0.2 sh -c " .. quote(self:cli_prefix() .. " PING") .. " 2>&1 </dev/null"
  while capture(ping):find("PONG", 1, true) do
    if now() > deadline then error(tostring(self) .. " still answers", 2) end
    sleep(0.02)
  end
end

-- Starts a redis-server. opts: args (extra arguments), password (for
-- --requirepass and redis-cli), debug (--enable-debug-command yes).
-- tls = {cert=, key=, ca=, auth_clients=, client_cert=, client_key=} for a
-- TLS-only server.
function M.redis(opts)
  opts = opts or {}
  local self = setmetatable({
    args = opts.args or {},
    password = opts.password,
    debug = opts.debug and true or false,
    tls = opts.tls,
    cluster = opts.cluster,
  }, Server)
  return M.start(self, "redis")
end

-- A Redis Cluster of `masters` masters with `replicas` replicas each.
local Cluster = {}
Cluster.__index = Cluster

function Cluster:stop()
  for _, n in ipairs(self.nodes) do n:stop() end
end

-- Waits until every running node reports cluster_state:ok and agrees on
-- the slots (after create, resharding or failover), and every replica has
-- its link to its master up: a replica that never synced refuses to take
-- over when its master dies ("Disconnected from master for longer than
-- allowed"), so a test that kills a master must not start before.
function Cluster:wait_ok(timeout)
  local deadline = now() + (timeout or 90)
  while true do
    local ok, any = true, nil
    for _, n in ipairs(self.nodes) do
      if n:is_running() then
        any = any or n
        if not n:cli("CLUSTER", "INFO"):find("cluster_state:ok", 1, true) then ok = false end
        local repl = n:cli("INFO", "replication")
        if repl:find("role:slave", 1, true) and not repl:find("master_link_status:up", 1, true) then
          ok = false
        end
      end
    end
    if ok and any then
      local check = capture(self.env .. CLI_BIN .. (self.tls_args or "") ..
                            " --cluster check 127.0.0.1:" .. any.port .. " 2>&1")
      if check:find("All 16384 slots covered", 1, true) and not check:find("[ERR]", 1, true)
         and not check:find("[WARNING]", 1, true) then
        return true
      end
    end
    if now() > deadline then error("cluster not ok in time:\n" .. self:describe(), 2) end
    sleep(0.2)
  end
end

-- Each node's view (state, epoch, its CLUSTER NODES lines), for the
-- message of a failed wait: it tells which node disagrees and why.
function Cluster:describe()
  local lines = {}
  for _, n in ipairs(self.nodes) do
    if n:is_running() then
      local info = n:cli("CLUSTER", "INFO")
      lines[#lines + 1] = ("-- node %d (pid %d): %s %s"):format(n.port, n.pid,
        info:match("cluster_state:%a+") or "?", info:match("cluster_current_epoch:%d+") or "?")
      lines[#lines + 1] = n:cli("CLUSTER", "NODES")
    else
      lines[#lines + 1] = ("-- node %d: not running"):format(n.port)
    end
  end
  return table.concat(lines, "\n")
end

-- The node serving `port`, and the masters currently serving slots.
function Cluster:node(port)
  for _, n in ipairs(self.nodes) do if n.port == port then return n end end
end

function Cluster:masters()
  local out = {}
  for _, n in ipairs(self.nodes) do
    if n:is_running() and n:cli("ROLE"):match("^master") then out[#out + 1] = n end
  end
  return out
end

function M.cluster(opts)
  opts = opts or {}
  local masters, replicas = opts.masters or 3, opts.replicas or 1
  local self = setmetatable({ nodes = {} }, Cluster)
  local addrs = {}
  for i = 1, masters * (1 + replicas) do
    self.nodes[i] = M.redis{ cluster = true, password = opts.password, tls = opts.tls,
                             args = opts.password and { "--masterauth", opts.password } or nil }
    addrs[i] = "127.0.0.1:" .. self.nodes[i].port
  end
  local env = opts.password and ("REDISCLI_AUTH=" .. quote(opts.password) .. " ") or ""
  self.env = env
  local tls = opts.tls and (" --tls --insecure --cacert " .. quote(opts.tls.ca)) or ""
  self.tls_args = tls
  local out, ok = capture(env .. CLI_BIN .. tls .. " --cluster create " .. table.concat(addrs, " ") ..
                          " --cluster-replicas " .. replicas .. " --cluster-yes 2>&1 </dev/null")
  if not ok then
    self:stop()
    error("redis-cli --cluster create failed:\n" .. out, 2)
  end
  self:wait_ok()
  self.url = (opts.tls and "rediss://" or "redis://") .. table.concat(addrs, ",")
  return self
end

-- Picks a free port and spawns `self` there (retrying on a taken port).
function M.start(self, kind)
  self.dir = make_dir(kind)
  self.log_path = self.dir .. "/" .. kind .. ".log"
  self.pid_path = self.dir .. "/" .. kind .. ".pid"
  local last
  for _ = 1, BIND_ATTEMPTS do
    self.port = random_port()
    local started, why = self:spawn()
    if started then
      self.url = (self.tls and "rediss" or "redis") .. "://127.0.0.1:" .. self.port
      return self
    end
    last = why
    if why ~= "busy" then break end
  end
  error("could not start " .. kind .. ": " .. tostring(last), 3)
end

-- The config file of a sentinel (rewritten by redis-sentinel itself, so it
-- must live in the writable test directory).
function Server:write_sentinel_conf()
  local c = self.sentinel_conf
  local path = self.dir .. "/sentinel.conf"
  local t = self.tls
  -- With tls: TLS-only, and TLS to the monitored servers too.
  local tls_lines = t and table.concat({
    "tls-port " .. self.port, "tls-cert-file " .. t.cert, "tls-key-file " .. t.key,
    "tls-ca-cert-file " .. t.ca, "tls-auth-clients " .. (t.auth_clients or "no"),
    "tls-replication yes" }, "\n") or ""
  write_file(path, table.concat({
    "port " .. (t and 0 or self.port),
    tls_lines,
    "bind 127.0.0.1",
    "daemonize no",
    "dir " .. self.dir,
    "sentinel resolve-hostnames no",
    c.password and ("requirepass " .. c.password) or "",
    ("sentinel monitor %s 127.0.0.1 %d %d"):format(c.name, c.master_port, c.quorum),
    ("sentinel down-after-milliseconds %s %d"):format(c.name, c.down_after_ms),
    ("sentinel failover-timeout %s %d"):format(c.name, c.failover_timeout_ms),
    ("sentinel parallel-syncs %s 1"):format(c.name),
    "",
  }, "\n"))
  return path
end

-- Starts a redis-sentinel monitoring opts.master (a server from M.redis).
-- opts.tls (as for M.redis): TLS-only sentinel that reaches the servers by TLS.
function M.sentinel(opts)
  local self = setmetatable({
    args = {},
    tls = opts.tls,
    password = opts.password,        -- requirepass of the sentinel itself
    sentinel_conf = {
      password = opts.password,
      name = opts.name or "mymaster",
      master_port = opts.master.port,
      quorum = opts.quorum or 2,
      down_after_ms = opts.down_after_ms or 1000,
      failover_timeout_ms = opts.failover_timeout_ms or 3000,
    },
  }, Server)
  return M.start(self, "sentinel")
end

-- A port nothing listens on (for "connection refused" tests): a random
-- port where PING fails. Not reserved, so use it at once.
function M.closed_port()
  for _ = 1, 50 do
    local port = random_port()
    local out = capture(CLI_BIN .. " -h 127.0.0.1 -p " .. port .. " PING 2>&1 </dev/null")
    if out:find("refused", 1, true) then return port end
  end
  error("no closed port found")
end

-- Stops every server this module started (for after-hooks).
function M.stop_all()
  local list = {}
  for srv in pairs(running) do list[#list + 1] = srv end
  for _, srv in ipairs(list) do srv:stop() end
  if own_root then
    run("rm -rf " .. quote(own_root))
    own_root = nil
  end
end

-- ---------------------------------------------------------------------
-- Redis protocol, for bulk loading with Server:pipe
-- ---------------------------------------------------------------------

-- One command in RESP (binary safe): servers.resp{"SET", key, value}.
function M.resp(argv)
  local parts = { "*" .. #argv .. "\r\n" }
  for _, a in ipairs(argv) do
    a = tostring(a)
    parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return table.concat(parts)
end

-- Safety net: when the module is dropped (busted insulates each spec file,
-- or the Lua state closes), no server of ours outlives it.
M._guard = setmetatable({}, { __gc = function() M.stop_all() end })

return M
