-- SPDX-License-Identifier: MIT
-- spec/support/helpers.lua -- small things the specs and fixtures share:
-- shell quoting, files, the host binary run as a user would, and catching
-- structured errors. Requires nothing of the project, so every fixture can
-- use it.
local M = {}

-- Quotes one argument for /bin/sh: '...' with ' written as '\''.
function M.quote(s)
  s = tostring(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
local quote = M.quote

-- Runs a shell command; returns its whole stdout (binary safe) and whether
-- it exited with status 0.
function M.capture(cmd)
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("a") or ""
  local ok = f:close()
  return out, ok == true
end

M.BIN = "build/rigatoni-store"

-- Whole file as bytes, or nil when it cannot be read.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Writes data (and chmods to `mode` when given); returns the path.
function M.write_file(path, data, mode)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
  if mode then os.execute("chmod " .. mode .. " " .. quote(path)) end
  return path
end

-- Runs the host binary with `args` (a list, or one string of shell words);
-- opts.env = {VAR = value}, opts.stdin = text. Returns exit status, stdout,
-- stderr. The caller's RIGATONI_STORE_CONFIG and REDIS_URL never leak in.
function M.run_host(args, opts)
  opts = opts or {}
  local out, err = os.tmpname(), os.tmpname()
  local cmd = { "env -u RIGATONI_STORE_CONFIG -u REDIS_URL" }
  for k, v in pairs(opts.env or {}) do cmd[#cmd + 1] = quote(k .. "=" .. v) end
  cmd[#cmd + 1] = quote(M.BIN)
  if type(args) == "string" then
    cmd[#cmd + 1] = args
  else
    for _, a in ipairs(args) do cmd[#cmd + 1] = quote(a) end
  end
  local input = "/dev/null"
  if opts.stdin then input = M.write_file(os.tmpname(), opts.stdin) end
  cmd[#cmd + 1] = ">" .. out .. " 2>" .. err .. " <" .. quote(input)
  local _, _, code = os.execute(table.concat(cmd, " "))
  local o, e = M.read_file(out) or "", M.read_file(err) or ""
  os.remove(out)
  os.remove(err)
  if opts.stdin then os.remove(input) end
  return code, o, e
end

-- Calls fn and returns the error it raised (fails when it did not raise).
function M.catch(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, the call succeeded")
  return err
end

-- The same, and the error must be an error object (the store's errors are;
-- only misuse such as a closed store raises a plain string).
function M.catch_object(fn, ...)
  local err = M.catch(fn, ...)
  assert(type(err) ~= "string", "a plain string was raised: " .. tostring(err))
  return err
end

-- Fails unless err is an error object of `kind`.
function M.assert_kind(kind, err)
  local got = type(err) ~= "string" and err.kind or nil
  if got ~= kind then
    error(("expected an error of kind %s, got: %s"):format(kind, tostring(err)), 2)
  end
end

-- Runs fn, collecting the store's log lines ("level: message", one per
-- line) while it runs; raises fn's error after the handler is reset.
function M.with_log(fn)
  local rs = require "rigatoni_store"
  local lines = {}
  rs.set_log_handler(function(level, message) lines[#lines + 1] = level .. ": " .. message end)
  local ok, err = pcall(fn)
  rs.set_log_handler(nil)
  if not ok then error(err, 0) end
  return table.concat(lines, "\n")
end

-- Polls cond() every 50 ms until it is true; fails naming `what` after
-- `timeout` seconds.
function M.wait_until(what, timeout, cond)
  local system = require "system"
  local deadline = system.gettime() + timeout
  while not cond() do
    assert(system.gettime() < deadline, "timed out waiting for " .. what)
    system.sleep(0.05)
  end
end

return M
