-- SPDX-License-Identifier: MIT
-- scripts/lib/check.lua -- what a tool checks before its first write or
-- delete, beyond its options (lib/cli.lua parses those): the Redis
-- commands it will send. Every tool declares them; a refused one stops
-- the tool with a usage error (exit 2) naming each missing command,
-- before anything was changed.
--
-- How: where the server has ACL DRYRUN (Redis >= 7.0, Valkey) and lets
-- this user run it, each command is dry-run for the user ACL WHOAMI names,
-- with the arguments we would send (a key under the tool's prefix, so key
-- patterns count too). Otherwise (older servers, a user limited to
-- Rigatoni's own commands) each command is sent once on a probe key: a
-- random name under the prefix that does not exist, with arguments that
-- change nothing there (SET ... XX writes only an existing key; DEL and
-- PEXPIRE of an absent key do nothing; EVALSHA of an unknown script runs
-- nothing). A NOPERM reply (error kind "auth") is a refusal; so is a plain
-- ERR reply (err.reply "other": an unknown or renamed command, an option
-- the server lacks), since the tool's own command would fail the same way
-- after its first writes. NOSCRIPT (the probe's unknown script) means the
-- command may run; any other error (a busy or loading server, OOM, a lost
-- connection) is raised as it is: nothing was changed. Cost: 1 + one
-- round trip per command, once per run.

local cli = require "lib.cli"

local M = {}

local NOSHA = string.rep("0", 40)   -- a script that is never loaded

-- name -> the command's display name and its arguments on key k.
local PROBES = {
  scan = { "SCAN", function(k) return { "SCAN", "0", "MATCH", k, "COUNT", "1" } end },
  mget = { "MGET", function(k) return { "MGET", k } end },
  get = { "GET", function(k) return { "GET", k } end },
  exists = { "EXISTS", function(k) return { "EXISTS", k } end },
  pttl = { "PTTL", function(k) return { "PTTL", k } end },
  del = { "DEL", function(k) return { "DEL", k } end },
  pexpire = { "PEXPIRE", function(k) return { "PEXPIRE", k, "60000", "NX" } end },
  set = { "SET", function(k) return { "SET", k, "probe", "XX", "PX", "60000" } end },
  evalsha = { "EVALSHA", function(k) return { "EVALSHA", NOSHA, "1", k } end },
  ["script|load"] = { "SCRIPT LOAD", function() return { "SCRIPT", "LOAD", "return 0" } end },
  info = { "INFO", function() return { "INFO", "server" } end },
  -- store:confirm_writes (core/confirm.c): PUBLISH on its channel, WAIT.
  publish = { "PUBLISH", function() return { "PUBLISH", "__rigatoni_store:confirm", "1" } end },
  wait = { "WAIT", function() return { "WAIT", "0", "1" } end },
  dbsize = { "DBSIZE", function() return { "DBSIZE" } end },
}

-- What compare-and-delete (store:delete_resume_token with if_value, the
-- lock release) sends: a script by EVALSHA, loaded on NOSCRIPT with EXISTS
-- + SCRIPT LOAD, that runs GET and DEL; GET reads back after it.
M.COMPARE_AND_DELETE = { "evalsha", "script|load", "exists", "get", "del" }

-- What store:confirm_writes sends (a replica's acknowledgement of the
-- deletes before them, lib/deletes.lua): PUBLISH, then WAIT.
M.CONFIRM = { "publish", "wait" }

local function random_name()
  local parts = {}
  for i = 1, 4 do parts[i] = string.format("%08x", math.random(0, 0xffffffff)) end
  return ".permission-probe." .. table.concat(parts)
end

local function idempotent(store, ...)
  return pcall(store.command, store, { idempotent = true }, ...)
end

-- The user ACL WHOAMI names, or nil when ACL DRYRUN cannot be used.
local function dryrun_user(store)
  local ok, who = idempotent(store, "ACL", "WHOAMI")
  return ok and who or nil
end

-- Whether `args` may run: true; false and why (the server's words); nil
-- when ACL DRYRUN itself failed (refused, unknown, a connection error).
local function dryrun(store, who, args)
  local ok, reply = idempotent(store, "ACL", "DRYRUN", who, table.unpack(args))
  if not ok then return nil end
  -- The server answers +OK, or a bulk string that says what it refuses.
  if reply == "OK" then return true end
  return false, reply
end

-- Sends args once: true, or false and why when the server refused it
-- (NOPERM) or does not run it as sent (a plain ERR reply). NOSCRIPT says
-- the command itself may run; any other failure is raised.
local function attempt(store, args)
  local ok, err = idempotent(store, table.unpack(args))
  if ok then return true end
  if type(err) == "table" and err.kind == "auth" then return false, cli.reason(err) end
  if type(err) == "table" and err.reply == "noscript" then return true end
  if type(err) == "table" and err.reply == "other" then return false, cli.reason(err) end
  error(err, 0)
end

-- Checks that `store` lets this user run each command of `commands`
-- (names of PROBES, lower case) on keys under `prefix` (a key prefix,
-- without the ':'). Returns when all may run; raises a usage error naming
-- every refused command and how it was found otherwise. `script` names
-- the tool, `what` what the commands are for ("cleanup --yes").
function M.require_commands(store, commands, prefix, script, what)
  local key = prefix .. ":" .. random_name()
  local who = dryrun_user(store)
  local refused = {}
  for _, name in ipairs(commands) do
    local probe = assert(PROBES[name], "unknown command " .. name)
    local args = probe[2](key)
    local allowed, why
    if who then
      allowed, why = dryrun(store, who, args)
      if allowed == nil then who = nil else why = why and ("ACL DRYRUN for user '" .. who .. "': " .. why) end
    end
    if allowed == nil then
      allowed, why = attempt(store, args)
      why = why and ("sent once on an absent key: " .. why)
    end
    if not allowed then refused[#refused + 1] = { probe[1], why } end
  end
  if #refused == 0 then return end
  local names, whys, all = {}, {}, {}
  for i, r in ipairs(refused) do names[i], whys[i] = r[1], r[2] end
  for i, name in ipairs(commands) do all[i] = PROBES[name][1] end
  cli.usage_error(string.format("%s: the server refuses %s (%s); %s needs %s; nothing changed",
                                script, table.concat(names, ", "), table.concat(whys, "; "), what,
                                table.concat(all, ", ")))
end

return M
