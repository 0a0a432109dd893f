-- cleanup -- removes stale resume tokens, or gives a TTL to tokens that
-- have none (the "memory growth" fix from the Rigatoni guide: tokens of
-- dropped collections otherwise stay forever). Age is the cluster time
-- inside the token, not the time it was written. A destructive run needs
-- --yes; without it the plan is printed and nothing changes. Deletion is
-- compare-and-delete: a token a live pipeline refreshed since the scan is
-- kept (and then it is not stale anyway).

local cli = require "lib.cli"

local opts = cli.parse(arg, {
  name = "cleanup",
  usage = [[
usage: rigatoni-store [-c FILE] cleanup [--match GLOB] [--older-than DURATION]
                      [--set-ttl DURATION] [--dry-run] [--yes] [--batch N]

  --older-than D   delete tokens whose cluster time is older than D (e.g. 30d)
  --set-ttl D      give tokens without a TTL this TTL (EXPIRE ... NX)
  --match GLOB     Redis glob on the collection name (default *)
  --dry-run        print the plan, change nothing (the default without --yes)
  --yes            really apply it
  --batch N        SCAN COUNT and MGET batch size (default: scan_count)

Tokens without a readable cluster time (corrupt values, tokens without
_data) are never deleted by --older-than; they are counted as "unknown age".
When the listing fails, cleanup prints what it did until then and exits 1.

example: rigatoni-store -c conf/production.ini cleanup --older-than 30d --set-ttl 30d --yes
]],
  options = { match = "string", ["older-than"] = "duration", ["set-ttl"] = "duration",
              ["dry-run"] = "flag", yes = "flag", batch = "integer" },
  defaults = { match = "*" },
})
if not opts then return 0 end
if not (opts.older_than or opts.set_ttl) then
  cli.usage_error("cleanup: nothing to do: give --older-than DURATION and/or --set-ttl DURATION")
end
local apply = opts.yes and not opts.dry_run
local now = cli.now()
local shown, SHOW_MAX = 0, 50

local function plan(text)
  shown = shown + 1
  if apply or shown > SHOW_MAX then return end
  io.write(text, "\n")
end

local scanned, unknown = 0, 0
local deleted, to_delete, refreshed = 0, 0, 0
local ttl_set, to_ttl = 0, 0
local progress = cli.progress("cleanup")
local in_doubt   -- the token whose delete was on the wire when the run stopped

-- Any error (the walk, a delete) stops the run; what was done until then
-- is still reported, then the failure (exit 1).
local ran, why = pcall(function()
  for collection, bytes, ttl in store:resume_tokens { match = opts.match, batch = opts.batch, raw = true } do
    scanned = scanned + 1
    local seconds = rs.token_time(bytes)
    local stale = false
    if opts.older_than then
      if not seconds then
        unknown = unknown + 1
      elseif now - seconds > opts.older_than then
        stale = true
        to_delete = to_delete + 1
        plan(string.format("would delete %s (cluster time %s, age %s)", collection,
                           cli.iso_time(seconds), cli.format_duration(now - seconds)))
        if apply then
          in_doubt = collection
          if store:delete_resume_token(collection, { if_value = bytes }) then
            deleted = deleted + 1
          else
            refreshed = refreshed + 1
          end
          in_doubt = nil
        end
      end
    end
    if opts.set_ttl and not stale and ttl == nil then
      to_ttl = to_ttl + 1
      plan(string.format("would set TTL %s on %s", cli.format_duration(opts.set_ttl), collection))
      if apply and store:expire(collection, opts.set_ttl) then ttl_set = ttl_set + 1 end
    end
    progress.update(scanned)
  end
end)
progress.done()

local parts = {}
if apply then
  if opts.older_than then
    parts[#parts + 1] = string.format("%d deleted (older than %s)", deleted, cli.format_duration(opts.older_than))
    if refreshed > 0 then parts[#parts + 1] = string.format("%d kept (refreshed meanwhile)", refreshed) end
    parts[#parts + 1] = not ran and cli.in_doubt(why, in_doubt) or nil
  end
  if opts.set_ttl then parts[#parts + 1] = string.format("TTL set on %d", ttl_set) end
else
  if shown > SHOW_MAX then io.write(string.format("... and %d more\n", shown - SHOW_MAX)) end
  if opts.older_than then
    parts[#parts + 1] = string.format("would delete %d (older than %s)", to_delete, cli.format_duration(opts.older_than))
  end
  if opts.set_ttl then parts[#parts + 1] = string.format("would set TTL on %d", to_ttl) end
end
if unknown > 0 then parts[#parts + 1] = string.format("%d of unknown age kept", unknown) end
cli.summary(string.format("cleanup%s%s: %s; %d scanned in %.2f s%s", apply and "" or " (plan)",
                          ran and "" or " (stopped)", table.concat(parts, ", "), scanned,
                          progress.elapsed(), apply and "" or "; nothing changed (add --yes to apply)"))
if not ran then
  cli.walk_failed("cleanup", why, apply and "the counts above are what was done before it stopped"
                                       or "the plan above is incomplete")
end
return 0
