-- SPDX-License-Identifier: MIT
-- migrate -- copies tokens (exact bytes, remaining TTL) to another Redis
-- and/or another key prefix, in pipelined batches: SCAN+MGET+PTTL on the
-- source, SET [NX] on the target, then every copy is read back (MGET)
-- and compared byte for byte. The target writes and reads back one batch
-- on a thread (store:start_save_many) while the next is read. Only verified
-- copies are deleted from the source with --delete-source, and each one
-- with a compare-and-delete, so a token that a live pipeline refreshed
-- meanwhile stays. Existing target tokens are kept unless --overwrite:
-- running it again after an interruption copies what is missing.
-- Source and target are compared by server identity (store:server_identity:
-- run_id and replication id of the masters, and the db), or by a probe key
-- when INFO is refused: the same data set with the same (or an overlapping)
-- prefix is refused with exit 2, and --delete-source is refused when it
-- cannot be told at all. A run stopped by an error still prints what it did.

local cli = require "lib.cli"

local script = {
  name = "migrate",
  summary = "Copies resume tokens from the configured store to a target: --to URL or --to-config FILE " ..
            "(another Redis), and/or --to-prefix P (a new key prefix; alone: the same Redis).",
  options = {
    { "to", "string", arg = "URL",
      help = "target Redis (other settings as the source config, but standalone unless --to-cluster)" },
    { "to-cluster", "flag", help = "the --to URL is a Redis Cluster (its seed nodes)" },
    { "to-config", "string", arg = "FILE", complete = { files = "*.ini" }, help = "target from an INI file" },
    { "to-prefix", "string", arg = "P", help = "target key prefix (default: the target config's)" },
    { "match", "string", arg = "GLOB", default = "*", help = "Redis glob on the collection name" },
    { "overwrite", "flag", help = "replace tokens that exist on the target (default: keep)" },
    { "dry-run", "flag", help = "count what would be copied, write nothing" },
    { "delete-source", "flag", help = "delete each source token once its copy is verified" },
    { "batch", "integer", default = 1000, help = "tokens per pipelined batch" },
  },
  description = [[
Bytes are copied exactly and the remaining TTL is kept. Prints counts:
copied, skipped (already on the target), failed (copy did not verify).
Exit status 1 when anything failed, or when the listing or a write
stopped with an error (the counts then say what was done until then;
so do they after SIGINT or SIGTERM, exit 130 or 143).
Before the first write it checks that each server lets its user run what
the run sends (source: SCAN, MGET, PTTL, and with --delete-source EVALSHA,
SCRIPT LOAD, EXISTS, GET, DEL; target: SET, GET, MGET; with
--delete-source PUBLISH and WAIT on each side whose master has replicas):
a refused command is named, exit 2, nothing changed. Any TTL the source
holds is copied.

Source and target are compared by what the servers say (INFO run_id and
replication id, and the db), not by URL text; when INFO is refused, a
probe key (<prefix>.probe:<random>, 60 s TTL) is written through the
source and read through the target. The same data set with the same or an
overlapping prefix is refused (exit 2), and so is --delete-source when
neither way can tell.

With --delete-source a copy's proof survives a failover of the target:
the replica acknowledgement is automatic. When the target's master has
replicas (INFO replication, read at the start and again with every batch),
every batch waits for one of them (WAIT: durability.wait_replicas = 1 and
wait_policy = error are set automatically, costing about one replication
round trip per batch; without INFO this cannot be told and a warning says
so), and the copies are read back from a master that did not change since
the write (Sentinel master changes, server identity). A batch whose master
changed is read again on the new master and must be acknowledged by a
replica of it (PUBLISH + WAIT) before any delete; when a copy is not there
or not acknowledged, its source is kept and the run stops (exit 1).
The source's deletes count the same way as cleanup's: when the source's
master has replicas, one must confirm each batch's deletes (PUBLISH +
WAIT, one more round trip per batch) with that master unchanged, else the
run stops and they are reported as not confirmed; when the source fails
over (a Sentinel URL), the deleted tokens are read again on its current
master and those that came back are not counted (exit 1). When the
target's master changed during the run (a restart without persistence,
a failover), or that cannot be told (INFO refused, the target down at
the end), every copy whose source was deleted is read again on it at the
end: those missing are reported lost and not counted as copied, and
copies that cannot be read are said to be in doubt (exit 1).]],
  examples = { "rigatoni-store -c conf/production.ini migrate --to-config conf/multi-region.ini" },
}

-- The run (the host calls it with the options read by the declaration):
-- its globals (store, config, host, rs) are env's. The body is left unindented.
function script.run(opts, _ENV)
if opts.to and opts.to_config then cli.usage_error("migrate: give --to or --to-config, not both") end
if not (opts.to or opts.to_config or opts.to_prefix) then
  cli.usage_error("migrate: a target is needed: --to URL, --to-config FILE or --to-prefix P")
end
if opts.to_cluster and not opts.to then
  cli.usage_error("migrate: --to-cluster goes with --to URL (a --to-config file says cluster_mode itself)")
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
local deletes = require "lib.deletes"
-- The commands of this run, checked on both servers before anything is
-- written (the probe key of same_data_set included): the source walk
-- (SCAN, MGET, PTTL) and, with --delete-source, its compare-and-delete;
-- on the target SET NX, GET (an NX write's outcome after a lost reply)
-- and MGET (the read-back), or MGET alone for a dry run.
do
  local check = require "lib.check"
  local on_source, on_target = { "scan", "mget", "pttl" }, opts.dry_run and { "mget" } or { "set", "get", "mget" }
  if opts.delete_source then
    for _, c in ipairs(check.COMPARE_AND_DELETE) do on_source[#on_source + 1] = c end
    -- A side with replicas confirms by PUBLISH + WAIT (lib/deletes.lua;
    -- the target's copies read again after a failover).
    if deletes.must_confirm(source, config) then
      for _, c in ipairs(check.CONFIRM) do on_source[#on_source + 1] = c end
    end
    if deletes.must_confirm(target, target_config) then
      for _, c in ipairs(check.CONFIRM) do on_target[#on_target + 1] = c end
    end
  end
  local flags = (opts.delete_source and " --delete-source" or "") .. (opts.dry_run and " --dry-run" or "")
  check.require_commands(source, on_source, sp, "migrate", "migrate" .. flags .. " on its source")
  check.require_commands(target, on_target, tp, "migrate", "migrate" .. flags .. " on its target")
end
local both = string.format("source %s %s and target %s %s", config.url, sp, target_config.url, tp)
-- The same data set is told by what the servers say (run_id, replication
-- id, db; a probe key when INFO is refused), never by URL text: localhost
-- and 127.0.0.1, "/0", a Sentinel URL and the master's own all differ as
-- text. A dry run writes nothing, so it never probes.
local same, how = cli.same_data_set(source, target, sp, not opts.dry_run)
if same == nil then
  if opts.delete_source then
    cli.usage_error("migrate: cannot tell whether " .. both .. " are the same data set (" .. how ..
                    "); --delete-source refused, nothing changed")
  end
  host.log("warn", "migrate: cannot tell whether " .. both .. " are the same data set (" .. how .. ")")
elseif same then
  -- The prefixes must differ, and neither may contain the other's keys
  -- (SCAN of "a:*" would also see the copies under "a:b:*").
  if sp == tp then
    cli.usage_error("migrate: " .. both .. " are the same store (same data set by " .. how ..
                    ", same prefix); nothing changed")
  end
  if tp:sub(1, #sp + 1) == sp .. ":" or sp:sub(1, #tp + 1) == tp .. ":" then
    cli.usage_error("migrate: " .. both .. " are the same data set (by " .. how .. ") and prefix '" ..
                    tp .. "' and '" .. sp .. "' overlap; nothing changed")
  end
end

-- Failover safety of --delete-source: a copy is proved when a replica
-- acknowledged it (WAIT) where the target has one, and it was read back
-- from a master that did not change between the write and the read: the
-- target store's count of master changes (Sentinel) and, when INFO is
-- allowed, the server identity (a restart or a promotion changes it). A
-- batch whose master changed is read again on the new master before any
-- of its sources is deleted; a copy not there keeps its source and stops
-- the run (exit 1).
local function target_mark() return cli.master_mark(target) end
local same_master = cli.same_master
-- Whether the target's master had replicas (at the start or at any batch
-- since: re-read with every mark), and whether its saves WAIT for one.
local target_replicated, target_waits = false, false
if opts.delete_source then
  -- Replicas on every master of the target: each batch waits for one.
  local ok, id = pcall(target.server_identity, target)
  local replicas = ok and deletes.replicas(id) or nil
  target_replicated = (replicas or 0) > 0
  if not ok then
    host.log("warn", "migrate: cannot tell whether the target has replicas (" .. cli.reason(id) ..
                     "): copies are not waited for (WAIT), so a failover of the target may lose " ..
                     "copies whose sources are then deleted")
  end
  -- A missing acknowledgement must fail the save: wait_policy = warn would
  -- let a copy no replica has count as proved.
  if (replicas or 0) > 0 and ((tonumber(target_config.wait_replicas) or 0) < 1 or
                              target_config.wait_policy ~= "error") then
    target:close()
    local with_wait = {}
    for _, kv in ipairs(set or {}) do with_wait[#with_wait + 1] = kv end
    -- last, so they win over the same settings given for the target
    with_wait[#with_wait + 1] = "durability.wait_replicas=" .. math.max(1, tonumber(target_config.wait_replicas) or 0)
    with_wait[#with_wait + 1] = "durability.wait_policy=error"
    target, target_config = host.open_store { url = opts.to, config = opts.to_config,
                                              key_prefix = opts.to_prefix, set = with_wait }
    host.log("info", "migrate: the target has replicas: each batch waits for one (WAIT) before its sources are deleted")
  end
  target_waits = (replicas or 0) > 0 or (tonumber(target_config.wait_replicas) or 0) > 0 and
                 target_config.wait_policy == "error"
end
-- The target's master at the start: when it changed by the end (a restart
-- without persistence, a failover), the copies whose sources were deleted
-- are read again there, since a batch's own check only covers its copies
-- up to their deletes.
local target_start = opts.delete_source and target_mark() or nil
-- The source's deletes count once a replica of the source's master
-- confirmed them with that master unchanged (checked after each batch);
-- when the source fails over, what came back is not counted (lib/deletes.lua).
local ledger = opts.delete_source and deletes.new(source, config, "migrate") or nil

local copied, skipped, failed, deleted, kept, gone, unverified = 0, 0, 0, 0, 0, 0, 0
local in_doubt   -- the token whose delete was on the wire when the run stopped
local progress = cli.progress("migrate")

-- The batch's names read again on the target, between two marks of the
-- same master; returns the values (raises when the master keeps moving).
local function read_again(batch)
  local names = {}
  for i, item in ipairs(batch) do names[i] = item[1] end
  return cli.read_on_current_master(target, names)
end

-- Copies of a batch that are not on the target's new master: the run stops.
local function stop_unproved(batch, values)
  local missing = 0
  for i, item in ipairs(batch) do if values[i] ~= item[2] then missing = missing + 1 end end
  if missing > 0 then
    error(string.format("migrate: the target's master changed (failover) and %d of a batch's " ..
                        "%d copies are not on the new master; this batch's sources are kept " ..
                        "(copies of earlier batches are read again at the end); run it again", missing, #batch), 0)
  end
end

-- The copies read on the target's current master (from mark `before` on)
-- are acknowledged by a replica of it (PUBLISH + WAIT, a few tries while
-- a demoted master joins as its replica), or this raises: their sources
-- are kept and the run stops.
local function confirm_copies(before, n)
  for _ = 1, 3 do
    local ok, acked = pcall(target.confirm_writes, target, 1)
    if not same_master(before, target_mark()) then break end
    if ok and acked >= 1 then return end
    if not ok and type(acked) == "table" and (acked.kind == "auth" or acked.kind == "config") then break end
  end
  error(string.format("migrate: %d copies on the target's current master were not acknowledged by a " ..
                      "replica of it (after a failover, or a replica that appeared since the start); " ..
                      "their sources are kept; run it again", n), 0)
end

-- Counts a written batch and, with `delete`, deletes its verified sources:
-- written and values are the target's answers, the values read back
-- through the target's own connection after the writes. `mark`: the
-- target's master before the write (--delete-source).
local function tally(batch, written, values, delete, mark, rechecked)
  local now = mark and delete and target_mark()
  local moved = now and (rechecked or not same_master(mark, now))
  if now and (deletes.replicas(now.id) or 0) > 0 then target_replicated = true end
  if moved then
    -- Unproved until read again: counted as unverified if that fails.
    local ok, again = pcall(read_again, batch)
    if not ok then
      unverified = unverified + #batch
      error(again, 0)
    end
    values = again
  end
  -- Count every verified copy first, so that a run stopped by a failed
  -- delete still reports all the copies it made.
  local verified = {}
  for i, item in ipairs(batch) do
    verified[i] = values[i] == item[2]
    if written[i] then
      if verified[i] then copied = copied + 1 else failed = failed + 1 end
    else
      skipped = skipped + 1
    end
    if not verified[i] and written[i] and not (moved or rechecked) then
      host.log("warn", "migrate: copy of " .. item[1] .. " does not read back the same")
    end
  end
  if not (delete and opts.delete_source) then return end
  if moved then stop_unproved(batch, values) end
  -- Copies read again on a new master, or written without WAIT to a
  -- target that has replicas now: a replica of it must have them.
  if (moved and target_replicated) or (not target_waits and (deletes.replicas(now.id) or 0) > 0) then
    confirm_copies(now, #batch)
  end
  -- A skipped token whose target copy is identical is migrated as well.
  for i, item in ipairs(batch) do
    if verified[i] then
      in_doubt = item[1]
      local outcome = cli.delete_if_unchanged(source, item[1], item[2])
      in_doubt = nil
      if outcome == "deleted" then
        deleted = deleted + 1
        ledger:add(item[1], item[2])
      elseif outcome == "gone" then
        gone = gone + 1
        ledger:add_gone(item[1])
      else kept = kept + 1 end
    end
  end
  ledger:checkpoint()
end

-- The batch the target is writing (and reading back) on a thread of the
-- store's while the next one is read: { batch, names (a set), job }.
local writing

-- The target's answers for batch w. When its write or read-back failed,
-- any of its tokens may be on the target: they are counted as unverified.
local function wait(w)
  local ok, written, values = pcall(w.job.wait, w.job)
  if not ok and w.mark and cli.master_changed(w.mark, target_mark()) then
    -- Failed in a failover (a lost connection, a WAIT no replica
    -- answered): what the new master has is checked by tally.
    local again_ok, again = pcall(read_again, w.batch)
    if again_ok then
      local all = {}
      for i = 1, #w.batch do all[i] = true end
      w.rechecked = true
      return all, again
    end
  end
  if not ok then
    unverified = unverified + #w.batch
    error(written, 0)
  end
  return written, values
end

-- Waits for the batch being written, if any, and counts it.
local function settle(delete)
  local w = writing
  writing = nil
  if w then
    local written, values = wait(w)
    tally(w.batch, written, values, delete, w.mark, w.rechecked)
  end
end

local function flush(batch)
  if #batch == 0 then return end
  if opts.dry_run then
    local names = {}
    for i, item in ipairs(batch) do names[i] = item[1] end
    local present = target:get_many(names, { ttl = false })
    for i = 1, #batch do
      if present[i] and not opts.overwrite then skipped = skipped + 1 else copied = copied + 1 end
    end
    return
  end
  -- This batch is written while the previous one may still be: unless
  -- they share a name. SCAN may list a name in both, and two writes of it
  -- on the wire at once could land in either order (an older copy over
  -- the newer). The previous batch's sources are deleted meanwhile.
  local names = {}
  for _, item in ipairs(batch) do names[item[1]] = true end
  local previous, written, values = writing, nil, nil
  writing = nil
  if previous then
    for _, item in ipairs(batch) do
      if previous.names[item[1]] then
        written, values = wait(previous)
        break
      end
    end
  end
  local mark = opts.delete_source and target_mark() or nil
  local started, job = pcall(target.start_save_many, target, batch,
                             { nx = not opts.overwrite, read_back = true })
  if started then writing = { batch = batch, names = names, job = job, mark = mark } end
  if previous then
    if not written then written, values = wait(previous) end
    tally(previous.batch, written, values, true, previous.mark, previous.rechecked)
  end
  if not started then error(job, 0) end
end

local counts = {}   -- the walk's: not_strings (not copied)

-- What the run did, after it ended or failed, and after a SIGINT/SIGTERM
-- has stopped it (host.on_stop), so that a stop still says what was
-- copied and deleted. (Body not indented: a small diff.)
local finished = false
local function finish(ran, why)
finished = true
-- A run stopped while a batch was being written: its copies are on the
-- target and are counted; its sources stay (the run has stopped).
if not ran then pcall(settle, false) end
-- Source deletes no replica confirmed, or that came back when the
-- source failed over, are not counted.
local undone, unconfirmed, not_gone, unread_gone = 0, 0, 0, nil
if ledger then
  undone, unconfirmed, not_gone, unread_gone = ledger:settle(function() deleted = deleted - 1 end,
                                                             function() gone = gone - 1 end)
  if unread_gone and ran then ran, why = false, unread_gone end
end
-- Copies whose sources this run deleted and that the target's current
-- master lacks are lost from both sides: not counted as copied, exit 1.
local lost, unread = 0, nil
local target_end = target_start and target_mark()
-- An identity not known at either end (INFO refused, the target down)
-- cannot show the master stayed: read again (one MGET per 1000 names).
if ledger and #ledger.names > 0 and (cli.master_changed(target_start, target_end) or
                                     target_start.id == nil or target_end.id == nil) then
  local ok, values = pcall(cli.read_on_current_master, target, ledger.names)
  if ok then
    for i = 1, #ledger.names do if not values[i] then lost = lost + 1 end end
    copied = copied - math.min(lost, copied)
  else
    unread = cli.reason(values)
    if ran then ran, why = false, "the copies of deleted sources could not be read again on the target " ..
                                "(its master changed, or cannot be told): " .. unread end
  end
end
progress.done()
target:close()

local elapsed = progress.elapsed()
local total = copied + skipped + failed
local line = string.format("migrate%s%s: %d %s, %d skipped (already on target), %d failed",
                           opts.dry_run and " (dry run)" or "", ran and "" or " (stopped)", copied,
                           opts.dry_run and "would be copied" or "copied", skipped, failed)
if unverified > 0 then line = line .. string.format(", %d unverified (may be on the target)", unverified) end
if opts.delete_source then
  line = line .. string.format(", %d deleted from source", deleted)
  if kept > 0 then line = line .. string.format(" (%d kept: changed meanwhile)", kept) end
  if gone > 0 then line = line .. string.format(", %d already gone from source", gone) end
  for _, note in ipairs(deletes.notes(undone, unconfirmed, not_gone, " source's", unread_gone)) do
    line = line .. ", " .. note
  end
  if unread then
    line = line .. string.format(", the copies of the %d deleted could not be read again on the target's " ..
                                 "master (%s): some may be lost", #ledger.names, unread)
  end
  if lost > 0 then
    line = line .. string.format(", %d lost (deleted from source, no longer on the target: its master " ..
                                 "changed, a restart or failover)", lost)
  end
  local doubt = not ran and cli.in_doubt(why, in_doubt)
  if doubt then line = line .. ", " .. doubt end
end
line = line .. string.format("; %s %s -> %s %s in %.2f s (%.0f tokens/s)", config.url, sp,
                             target_config.url, tp, elapsed, total / math.max(elapsed, 1e-6))
cli.summary(line .. cli.not_tokens(counts))
if not ran then
  cli.walk_failed("migrate", why, "the counts above are what was done before it stopped; " ..
                  "run it again to copy the rest")
end
return (failed > 0 or undone > 0 or unconfirmed > 0 or not_gone > 0 or lost > 0) and 1 or 0
end
host.on_stop(function()
  if not finished then finish(false, nil) end
end)

-- Any error (the walk, or a write) stops the run; what was done until
-- then is still reported, then the failure (exit 1).
local ran, why = pcall(function()
  local batch = {}
  for collection, bytes, ttl in source:resume_tokens { match = opts.match, batch = opts.batch, raw = true,
                                                       counts = counts } do
    -- ttl nil = none; a TTL about to run out stays a (tiny) TTL, never "none".
    ttl = cli.known_ttl(ttl, "migrate")
    batch[#batch + 1] = { collection, bytes, ttl and math.max(ttl, 0.001) }
    if #batch >= opts.batch then
      flush(batch)
      batch = {}
      progress.update(copied + skipped + failed)
    end
  end
  flush(batch)
  settle(true)
end)
return finish(ran, why)
end

return script
