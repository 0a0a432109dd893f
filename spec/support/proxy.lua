-- spec/support/proxy.lua -- a misbehaving TCP proxy between the store and a
-- real redis-server (spec/support/faultproxy.c, compiled on first use into
-- the test directory).
--
--   local proxy = require "support.proxy"
--   local p = proxy.start(srv)      -- relays 127.0.0.1:p.port -> srv.port
--   p.url                           -- redis://127.0.0.1:<p.port>
--   p:set("cut", 100)               -- pass | delay S | cut N | stall N | stall_once N | reset_once
--                                   -- | cut_lines_once N (N reply lines, then close)
--                                   -- | hold S | hold_once S (requests) | nest_once N
--   p:conns()                       -- client connections open through it
--   p:stop()
--
-- The mode applies to every chunk of reply the server sends from then on
-- (hold: to every request); see faultproxy.c. The proxy exits by itself when this Lua process ends.

local servers = require "support.servers"

local M = {}
local Proxy = {}
Proxy.__index = Proxy

local helpers = require "support.helpers"
local quote, capture = helpers.quote, helpers.capture
local read_file, write_file = helpers.read_file, helpers.write_file
local binary     -- path of the compiled proxy

-- The pid of this Lua process (/proc/self is the process that opens it).
local function own_pid()
  return assert((read_file("/proc/self/stat") or ""):match("^(%d+)"), "no /proc/self/stat")
end

local function make_dir()
  local root = os.getenv("RS_TEST_ROOT")
  if not root or root == "" then root = os.getenv("TMPDIR") or "/tmp" end
  local out, ok = capture("mktemp -d " .. quote(root .. "/proxy.XXXXXX"))
  assert(ok, "mktemp failed")
  return (out:gsub("%s+$", ""))
end

local function build(dir)
  if binary then return binary end
  local src = "spec/support/faultproxy.c"
  local bin = dir .. "/faultproxy"
  local out, ok = capture(("cc -std=c11 -D_GNU_SOURCE -O2 -Wall -o %s %s 2>&1"):format(quote(bin), quote(src)))
  assert(ok, "could not build the fault proxy: " .. out)
  binary = bin
  return bin
end

function M.start(srv)
  local dir = make_dir()
  local self = setmetatable({
    dir = dir,
    control = dir .. "/control",
    port_file = dir .. "/port",
  }, Proxy)
  write_file(self.control, "pass\n")
  local bin = build(dir)
  local out = capture(("%s %d %s %s %s >%s 2>&1 </dev/null & echo $!"):format(
    quote(bin), srv.port, quote(self.control), quote(self.port_file), own_pid(),
    quote(dir .. "/proxy.log")))
  self.pid = tonumber(out:match("%d+"))
  local deadline = servers.now() + 5
  while not read_file(self.port_file) do
    assert(servers.now() < deadline, "the fault proxy did not start: " .. (read_file(dir .. "/proxy.log") or ""))
    servers.sleep(0.01)
  end
  self.port = tonumber(read_file(self.port_file):match("%d+"))
  self.url = "redis://127.0.0.1:" .. self.port
  return self
end

function Proxy:set(mode, arg)
  write_file(self.control, mode .. (arg and (" " .. tostring(arg)) or "") .. "\n")
end

function Proxy:conns()
  return tonumber((read_file(self.port_file .. ".conns") or ""):match("%d+"))
end

function Proxy:stop()
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self.pid = nil
  end
end

return M
