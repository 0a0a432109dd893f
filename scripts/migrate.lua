-- migrate -- copies tokens (exact bytes, remaining TTL) to another Redis
-- and/or another key prefix, in pipelined batches: SCAN+MGET+PTTL on the
-- source, SET [NX] on the target (store:save_many), then every copy is
-- read back (store:get_many) and compared byte for byte. Only verified
-- copies are deleted from the source with --delete-source, and each one
-- with a compare-and-delete, so a token that a live pipeline refreshed
-- meanwhile stays. Existing target tokens are kept unless --overwrite:
-- running it again after an interruption copies what is missing.

local cli = require "lib.cli"

local opts = cli.parse(arg, {
  name = "migrate",
  usage = [[
usage: rigatoni-store [-c FILE] migrate (--to URL | --to-config FILE) [--to-prefix P]
                      [--match GLOB] [--overwrite] [--dry-run] [--delete-source] [--batch N]
       rigatoni-store [-c FILE] migrate --to-prefix P ...      (same Redis, new prefix)

Copies resume tokens from the configured store to a target.

  --to URL          target Redis (other settings as the source config, but
                    standalone unless --to-cluster)
  --to-cluster      the --to URL is a Redis Cluster (its seed nodes)
  --to-config FILE  target from an INI file
  --to-prefix P     target key prefix (default: the target config's)
  --match GLOB      Redis glob on the collection name (default *)
  --overwrite       replace tokens that exist on the target (default: keep)
  --dry-run         count what would be copied, write nothing
  --delete-source   delete each source token once its copy is verified
  --batch N         tokens per pipelined batch (default 1000)

Bytes are copied exactly and the remaining TTL is kept. Prints counts:
copied, skipped (already on the target), failed (copy did not verify).
Exit status 1 when anything failed.

example: rigatoni-store -c conf/production.ini migrate --to-config conf/multi-region.ini
]],
  options = { to = "string", ["to-cluster"] = "flag", ["to-config"] = "string", ["to-prefix"] = "string", match = "string",
              overwrite = "flag", ["dry-run"] = "flag", ["delete-source"] = "flag", batch = "integer" },
  defaults = { match = "*", batch = 1000 },
})
if not opts then return 0 end
if opts.to and opts.to_config then cli.usage_error("migrate: give --to or --to-config, not both") end
if not (opts.to or opts.to_config or opts.to_prefix) then
  cli.usage_error("migrate: a target is needed: --to URL, --to-config FILE or --to-prefix P")
end
if opts.dry_run and opts.delete_source then
  cli.usage_error("migrate: --dry-run and --delete-source exclude each other")
end

-- A --to URL names one kind of server: whether the source is a cluster
-- says nothing about the target.
local set = opts.to and { "redis.cluster_mode=" .. tostring(opts.to_cluster == true) } or nil
local target, target_config = host.open_store { url = opts.to, config = opts.to_config,
                                                key_prefix = opts.to_prefix, set = set }
local source = store
local sp, tp = config.key_prefix, target_config.key_prefix
if config.url == target_config.url then
  -- The same server: the prefixes must differ, and neither may contain the
  -- other's keys (SCAN of "a:*" would also see the copies under "a:b:*").
  if sp == tp then cli.usage_error("migrate: source and target are the same store (" .. config.url .. " " .. sp .. ")") end
  if tp:sub(1, #sp + 1) == sp .. ":" or sp:sub(1, #tp + 1) == tp .. ":" then
    cli.usage_error("migrate: on the same server, prefix '" .. tp .. "' and '" .. sp .. "' overlap")
  end
end

local copied, skipped, failed, deleted, kept = 0, 0, 0, 0, 0
local progress = cli.progress("migrate")

local function flush(batch)
  if #batch == 0 then return end
  local names = {}
  for i, item in ipairs(batch) do names[i] = item[1] end
  if opts.dry_run then
    local present = target:get_many(names)
    for i = 1, #batch do
      if present[i] and not opts.overwrite then skipped = skipped + 1 else copied = copied + 1 end
    end
    return
  end
  local written = target:save_many(batch, { nx = not opts.overwrite })
  local values = target:get_many(names)
  for i, item in ipairs(batch) do
    local same = values[i] == item[2]
    if written[i] then
      if same then copied = copied + 1 else failed = failed + 1 end
    else
      skipped = skipped + 1
    end
    -- A skipped token whose target copy is identical is migrated as well.
    if opts.delete_source and same then
      if source:delete_resume_token(item[1], { if_value = item[2] }) then
        deleted = deleted + 1
      else
        kept = kept + 1
      end
    end
    if not same and written[i] then
      host.log("warn", "migrate: copy of " .. item[1] .. " does not read back the same")
    end
  end
end

local batch = {}
for collection, bytes, ttl in source:resume_tokens { match = opts.match, batch = opts.batch, raw = true } do
  -- ttl nil = none; a TTL about to run out stays a (tiny) TTL, never "none".
  batch[#batch + 1] = { collection, bytes, ttl and math.max(ttl, 0.001) }
  if #batch >= opts.batch then
    flush(batch)
    batch = {}
    progress.update(copied + skipped + failed)
  end
end
flush(batch)
progress.done()
target:close()

local elapsed = progress.elapsed()
local total = copied + skipped + failed
local line = string.format("migrate%s: %d %s, %d skipped (already on target), %d failed",
                           opts.dry_run and " (dry run)" or "", copied,
                           opts.dry_run and "would be copied" or "copied", skipped, failed)
if opts.delete_source then
  line = line .. string.format(", %d deleted from source", deleted)
  if kept > 0 then line = line .. string.format(" (%d kept: changed meanwhile)", kept) end
end
line = line .. string.format("; %s %s -> %s %s in %.2f s (%.0f tokens/s)", config.url, sp,
                             target_config.url, tp, elapsed, total / math.max(elapsed, 1e-6))
cli.summary(line)
return failed > 0 and 1 or 0
