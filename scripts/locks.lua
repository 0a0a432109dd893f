-- locks -- lists Rigatoni 0.2 distributed locks (<lock_prefix>:*, by
-- default rigatoni:lock:{db}:{collection}, ...:__database__,
-- rigatoni:lock:__deployment__) with owner and remaining TTL, and releases
-- a stuck one by force with --release KEY --yes. Works on raw keys, so it
-- does not depend on the locking API of the module.

local cli = require "lib.cli"

local opts = cli.parse(arg, {
  name = "locks",
  usage = [[
usage: rigatoni-store [-c FILE] locks [--match GLOB] [--release KEY --yes]

  --match GLOB    Redis glob after the lock prefix (default *)
  --release KEY   delete lock KEY whoever owns it (full key, or the part
                  after the lock prefix); needs --yes, else only says what
                  it would do

A forced release lets another pipeline take the lock at once: only release
a lock whose owner is known to be gone.

example: rigatoni-store -c conf/production.ini locks --match 'shop:*'
]],
  options = { match = "string", release = "string", yes = "flag" },
  defaults = { match = "*" },
})
if not opts then return 0 end

local prefix = config.lock_prefix ~= "none" and config.lock_prefix or "rigatoni:lock"

if opts.release then
  local key = opts.release
  if key:sub(1, #prefix + 1) ~= prefix .. ":" then key = prefix .. ":" .. key end
  local owner = store:command("GET", key)
  if not owner then cli.fail("locks: " .. key .. " is not held") end
  if not opts.yes then
    cli.summary(string.format("locks (plan): would release %s held by %s; nothing changed (add --yes)", key, owner))
    return 0
  end
  local n = store:command("DEL", key)
  cli.summary(string.format("locks: %s %s (owner was %s)", key, n == "1" and "released" or "was already gone", owner))
  return 0
end

local count = 0
io.write(string.format("%-60s %-10s %s\n", "LOCK", "TTL", "OWNER"))
for key, owner, ttl in store:scan_keys(prefix .. ":" .. opts.match) do
  count = count + 1
  io.write(string.format("%-60s %-10s %s\n", key, cli.format_duration(ttl), owner))
end
cli.summary(string.format("locks: %d held", count))
return 0
