-- SPDX-License-Identifier: MIT
-- locks -- lists Rigatoni 0.2 distributed locks (<lock_prefix>:*, by
-- default rigatoni:lock:{db}:{collection}, ...:__database__,
-- rigatoni:lock:__deployment__) with owner and remaining TTL, and releases
-- a stuck one with --release KEY --yes. The release is the owner-checked
-- compare-and-delete of the lock API (store:release_lock, full keys): it
-- deletes the lock only while it still names the owner shown (or the one
-- given with --owner), so a live pipeline that took the lock meanwhile
-- keeps it. Only --force deletes whoever holds it. A release acknowledged
-- by a master that is then replaced (a failover, a restart) is undone:
-- when the master changed during the release, the lock is read again on
-- the current master (cli.master_mark before and after).

local cli = require "lib.cli"

local script = {
  name = "locks",
  summary = "Lists the Rigatoni 0.2 distributed locks with owner and TTL, or releases one (--release KEY --yes).",
  options = {
    { "match", "string", arg = "GLOB", default = "*",
      help = "Redis glob after the lock prefix; the prefix itself is matched literally, glob characters and all" },
    { "release", "string", arg = "KEY",
      help = "release lock KEY (full key, or the part after the lock prefix) held by the owner it shows; " ..
             "needs --yes, else only says what it would do" },
    { "owner", "string", arg = "ID",
      help = "release only while ID holds it (the owner a listing showed); exit 1 when another owner holds it now" },
    { "force", "flag", help = "delete the lock whoever holds it at that moment (not with --owner)" },
    { "yes", "flag", help = "really release it (with --release)" },
  },
  description = [[
The release deletes the lock only if it still names that owner (atomic on
the server): when the lock expired and another pipeline took it meanwhile,
nothing is deleted and locks exits 1 naming the new owner. A released lock
lets another pipeline take it at once: only release a lock whose owner is
known to be gone. The commands a run sends (listing: SCAN, MGET; release:
GET, EVALSHA, SCRIPT LOAD, EXISTS, DEL; --force: DEL) are checked first: a
refused one is named, exit 2, nothing released. When the master changed
during the release (a failover, a restart), the lock is read again on the
current master: one its owner still holds there is not reported released
(exit 1).]],
  examples = {
    "rigatoni-store -c conf/production.ini locks --match 'shop:*'",
    "rigatoni-store -c conf/production.ini locks --release shop:orders --yes",
  },
}

-- The run (the host calls it with the options read by the declaration):
-- its globals (store, config, host, rs) are env's. The body is left unindented.
function script.run(opts, _ENV)
if opts.owner and opts.force then cli.usage_error("locks: --owner and --force exclude each other") end
if (opts.owner or opts.force) and not opts.release then
  cli.usage_error("locks: --owner and --force go with --release KEY")
end

if opts.yes and not opts.release then cli.usage_error("locks: --yes goes with --release KEY") end

local prefix = config.lock_prefix ~= "none" and config.lock_prefix or "rigatoni:lock"

-- The commands of this run, checked before the release: the listing
-- (SCAN, MGET; a TTL the server does not tell shows as ?), or the owner
-- (GET) and, with --yes, the owner-checked release script (EVALSHA, loaded
-- with EXISTS + SCRIPT LOAD, running GET and DEL) or --force's DEL.
do
  local check = require "lib.check"
  local needs, what = { "scan", "mget" }, "locks"
  if opts.release then
    needs, what = { "get" }, "locks --release"
    if opts.yes and opts.force then
      needs[#needs + 1], what = "del", "locks --release --force --yes"
    elseif opts.yes then
      needs, what = { "evalsha", "script|load", "exists", "get", "del" }, "locks --release --yes"
    end
  end
  check.require_commands(store, needs, prefix, "locks", what)
end

if opts.release then
  local key = opts.release
  if key:sub(1, #prefix + 1) ~= prefix .. ":" then key = prefix .. ":" .. key end
  local owner = store:lock_owner(key)
  if not owner then cli.fail("locks: " .. key .. " is not held") end
  if opts.owner and owner ~= opts.owner then
    cli.fail(string.format("locks: %s is held by %s now, not by %s; nothing released", key, owner, opts.owner))
  end
  if not opts.yes then
    cli.summary(string.format("locks (plan): would %s %s held by %s; nothing changed (add --yes)",
                              opts.force and "force-delete" or "release", key, owner))
    return 0
  end
  -- A delete acknowledged by a master that is then replaced (a failover
  -- to a replica that did not have it yet, a restart without
  -- persistence) is undone: when the master changed, the lock is read
  -- again on the current one, and one its owner still holds there was
  -- not released. Returns what `delete` returned, the owner there now
  -- (nil: free, or not read again) and whether it was read again.
  local function checked(delete)
    local before = cli.master_mark(store)
    local result = delete()
    if not cli.master_may_have_changed(before, cli.master_mark(store)) then return result, nil, false end
    local ok, values = pcall(cli.read_on_current_master, store, { key }, function(keys)
      return { store:lock_owner(keys[1]) or false }
    end)
    if not ok then
      cli.fail(string.format("locks: %s: its master changed during the release (a failover or a restart) and " ..
                             "the lock could not be read again there (%s); run it again", key, cli.reason(values)))
    end
    if values[1] == owner then
      cli.fail(string.format("locks: %s is back on the new master after a failover (its master changed during " ..
                             "the release), still held by %s: not released; run it again", key, owner))
    end
    return result, values[1] or nil, true
  end
  if opts.force then
    local n = checked(function() return store:command("DEL", key) end)
    cli.summary(string.format("locks: %s %s (forced, whoever held it; shown owner was %s)", key,
                              n == "1" and "deleted" or "was already gone", owner))
    return 0
  end
  local released, now, reread = checked(function() return store:release_lock(key, owner) end)
  if released and not reread then
    cli.summary(string.format("locks: %s released (owner was %s)", key, owner))
    return 0
  end
  if not reread then now = store:lock_owner(key) end
  if released or not now then   -- released, or it expired meanwhile: free, as asked
    cli.summary(string.format("locks: %s %s (owner was %s)", key, released and "released" or "was already gone",
                              owner))
    return 0
  end
  cli.fail(string.format("locks: %s changed owner since it was shown (%s, now %s); nothing released",
                         key, owner, now))
end

local count, counts = 0, {}
local text = require("lib.output").text   -- control characters escaped: no forged rows
io.write(string.format("%-60s %-10s %s\n", "LOCK", "TTL", "OWNER"))
-- The prefix is literal text, --match a glob: escape the prefix's glob
-- characters, or `lk[1]` would list `lk1:*` and miss its own keys.
local literal_prefix = prefix:gsub("[%*%?%[%]\\]", "\\%0")
for key, owner, ttl in store:scan_keys(literal_prefix .. ":" .. opts.match, { counts = counts }) do
  count = count + 1
  io.write(string.format("%-60s %-10s %s\n", text(key), cli.format_duration(ttl), text(owner)))
end
cli.summary(string.format("locks: %d held%s", count, cli.not_tokens(counts, "lock")))
return 0
end

return script
