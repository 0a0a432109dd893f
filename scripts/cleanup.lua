-- SPDX-License-Identifier: MIT
-- cleanup -- removes stale resume tokens, or gives a TTL to tokens that
-- have none (the "memory growth" fix from the Rigatoni guide: tokens of
-- dropped collections otherwise stay forever). Age is the cluster time
-- inside the token, not the time it was written. A destructive run needs
-- --yes; without it the plan is printed and nothing changes. Deletion is
-- compare-and-delete: a token a live pipeline refreshed since the scan is
-- kept (and then it is not stale anyway).
--
-- Rigatoni 0.2 streams (lib/streams.lua): a stream key and its per-batch
-- mirror are one unit, aged by the stream key (the one a pipeline resumes
-- from). The stream keys are walked first, to know which names are
-- mirrors; the pairs are handled after the walk: the mirrors are read,
-- then each stale stream key is compare-and-deleted, then each mirror
-- whose stream keys all went, with the bytes read before.
--
-- A plan of every token (no --match) first tries one walk that takes no
-- name for a mirror: exact as long as it lists no stream key at all (a
-- store of Rigatoni 0.1 pipelines). At the first stream key it is
-- dropped, and the plan is made as above. A run with --yes always walks
-- the stream keys first: it acts during its walk.

local cli = require "lib.cli"

local script = {
  name = "cleanup",
  summary = "Deletes stale resume tokens (--older-than) and/or gives tokens without a TTL one (--set-ttl); " ..
            "without --yes it prints the plan and changes nothing.",
  options = {
    { "older-than", "duration", arg = "D", help = "delete tokens whose cluster time is older than D (e.g. 30d)" },
    { "set-ttl", "ttl", arg = "D",
      help = "give tokens without a TTL this TTL (EXPIRE ... NX); at most the longest TTL Redis accepts (else exit 2)" },
    { "match", "string", arg = "GLOB", help = "Redis glob on the collection name (default *)" },
    { "stream", "list", arg = "SEL", complete = { words = { ":deployment" } },
      help = "only these Rigatoni 0.2 streams (repeatable; not with --match): DB:COLL the collection stream, " ..
             "DB the database stream and every collection stream of DB, :deployment the deployment stream; " ..
             "each with its per-batch mirror" },
    { "dry-run", "flag", help = "print the plan, change nothing (the default without --yes)" },
    { "yes", "flag", help = "really apply it" },
    { "batch", "integer", help = "SCAN COUNT and MGET batch size (default: scan_count)" },
  },
  description = [[
Tokens without a readable cluster time (corrupt values, tokens without
_data) are never deleted by --older-than; they are counted as "unknown age".
When the listing fails, cleanup prints what it did until then and exits 1.
Before anything is deleted it checks its options and that the server lets
this user run what the run sends (SCAN, MGET; PTTL with --set-ttl; with
--yes EVALSHA, SCRIPT LOAD, EXISTS, GET, DEL, PEXPIRE for --set-ttl, and
PUBLISH and WAIT when the master has replicas): a refused command is
named, exit 2, nothing changed.

Through a failover: when the master has replicas, a replica's
acknowledgement is automatic (nothing to set): one must answer before the
first delete (else nothing is deleted: exit 2 when it never can, such as
WAIT refused, exit 1 when none answered within durability.wait_timeout),
and the deletes of each walk step count only once a replica confirms them
(PUBLISH + WAIT, one round trip per step) with the master unchanged. The
first step it cannot confirm stops the run: nothing more is deleted, its
deletes are reported as not confirmed (not counted) and it exits 1; so
does SIGINT/SIGTERM for the deletes since the last confirmed step. When
the master changed during the run, the deleted tokens are read again on
the current master: those that came back are not counted (exit 1); a
token a pipeline saved anew since (a later cluster time) did not come back. In a
cluster WAIT cannot confirm deletes (a warning says so). A user that
may not run INFO is asked for a replica's acknowledgement (WAIT) at the
start (up to 3 tries of durability.wait_timeout when none answers): when
one answers, every step is confirmed as above; when none does, a warning
says the deletes are not confirmed.

A Rigatoni 0.2 stream key (resume_token:DB:COLL, resume_token:database:DB,
resume_token:deployment) and its mirror (COLL, __db:DB, __deployment__) go
together or not at all, by the stream key's age: the plan says "(+ mirror
NAME)". A mirror shared by several stream keys (one collection name in
several databases) goes only with the last of them. --match selects stream
keys by their own name; a mirror follows its stream keys. A mirror that
changed after it was read is not deleted (reported).]],
  examples = {
    "rigatoni-store -c conf/production.ini cleanup --older-than 30d --set-ttl 30d --yes",
    "rigatoni-store cleanup --stream shop:orders --stream :deployment --older-than 30d",
  },
}

-- The run (the host calls it with the options read by the declaration):
-- its globals (store, config, host, rs) are env's. The body is left unindented.
function script.run(opts, _ENV)
local streams = require "lib.streams"
if opts.stream and opts.match then
  cli.usage_error("cleanup: --stream and --match cannot be combined (cleanup --help for usage)")
end
local selections = streams.parse_selections("cleanup", opts.stream)
if not (opts.older_than or opts.set_ttl) then
  cli.usage_error("cleanup: nothing to do: give --older-than DURATION and/or --set-ttl DURATION")
end
local apply = opts.yes and not opts.dry_run
local deletes = require "lib.deletes"

-- The commands this run will send, all checked before the first delete:
-- the walks (SCAN, MGET; PTTL only to find tokens without a TTL), then
-- compare-and-delete for --older-than (and PUBLISH + WAIT, a replica's
-- confirmation, when the master has replicas) and PEXPIRE NX for --set-ttl.
do
  local check = require "lib.check"
  local needs = { "scan", "mget" }
  if opts.set_ttl then needs[#needs + 1] = "pttl" end
  if apply and opts.older_than then
    for _, c in ipairs(check.COMPARE_AND_DELETE) do needs[#needs + 1] = c end
    if deletes.must_confirm(store, config) then
      for _, c in ipairs(check.CONFIRM) do needs[#needs + 1] = c end
    end
  end
  if apply and opts.set_ttl then needs[#needs + 1] = "pexpire" end
  check.require_commands(store, needs, config.key_prefix, "cleanup",
                         "cleanup" .. (opts.older_than and " --older-than" or "") ..
                         (opts.set_ttl and " --set-ttl" or "") .. (apply and " --yes" or ""))
end
local now = cli.now()
local shown, SHOW_MAX = 0, 50
local shown_lines = {}   -- printed once the plan is complete
local fmt = string.format

-- Counts a line of the plan; only a line that is shown is formatted
-- (text(...)): most runs print 50 of many.
local function plan(text, ...)
  shown = shown + 1
  if apply or shown > SHOW_MAX then return end
  -- Names escaped (lib/output.lua): a name cannot forge a plan line.
  shown_lines[shown] = require("lib.output").text(text(...))
end

local scanned, unknown = 0, 0
local deleted, to_delete, refreshed, gone_before = 0, 0, 0, 0
local mirrors_deleted, mirrors_to_delete, mirrors_changed = 0, 0, 0
local ttl_set, to_ttl = 0, 0
local progress = cli.progress("cleanup")
local in_doubt   -- the token whose delete was on the wire when the run stopped
-- A delete counts once a replica confirmed it with the master unchanged
-- (lib/deletes.lua): at a checkpoint after each walk step and at the end.
-- A checkpoint that fails stops the run; when the master changed during
-- the run, what it deleted is read again on the current master.
local ledger = apply and opts.older_than and deletes.new(store, config, "cleanup") or nil
local deleted_mirror = {}
local function checkpoint() if ledger then ledger:checkpoint() end end

-- Whether a token with this cluster time is to go (counts unknown ages).
local function is_stale(seconds)
  if not opts.older_than then return false end
  if not seconds then
    unknown = unknown + 1
    return false
  end
  return now - seconds > opts.older_than
end

local function age_note(seconds)
  return fmt("(cluster time %s, age %s)", cli.iso_time(seconds), cli.format_duration(now - seconds))
end

local function delete_line(name, seconds, with, after)
  return fmt("would delete %s%s %s%s", name, with or "", age_note(seconds), after or "")
end

-- Compare-and-delete of the bytes the walk saw: true when this run
-- deleted it; a token another client deleted first is counted apart.
local function delete_seen(name, bytes)
  in_doubt = name
  local outcome = cli.delete_if_unchanged(store, name, bytes)
  in_doubt = nil
  if outcome == "gone" then
    gone_before = gone_before + 1
    ledger:add_gone(name)
  end
  if outcome == "deleted" then ledger:add(name, bytes) end
  return outcome == "deleted", outcome
end

local function give_ttl(name, what)
  to_ttl = to_ttl + 1
  plan(fmt, "would set TTL %s on %s%s", cli.format_duration(opts.set_ttl), name, what or "")
  if apply and store:expire(name, opts.set_ttl) then ttl_set = ttl_set + 1 end
end

-- A token that is neither a stream key nor the mirror of one; seconds:
-- its cluster time (rs.token_time), nil when it has none.
local function plain_token(collection, bytes, ttl, seconds)
  local stale = is_stale(seconds)
  if stale then
    to_delete = to_delete + 1
    plan(delete_line, collection, seconds)
    if apply then
      local went, outcome = delete_seen(collection, bytes)
      if went then deleted = deleted + 1 elseif outcome == "changed" then refreshed = refreshed + 1 end
    end
  end
  if opts.set_ttl and not stale and ttl == nil then give_ttl(collection) end
end

-- What the plan says about the mirror m of stale stream key st: what goes
-- with it (before the age), or why the mirror stays (after it).
local function mirror_note(st, m, selected)
  if m.goes then
    local others = {}
    for _, n in ipairs(m.users) do if n ~= st.name then others[#others + 1] = n end end
    if #others == 0 then return fmt(" (+ mirror %s)", m.name), "" end
    return fmt(" (+ mirror %s, shared with %s)", m.name, table.concat(others, " ")), ""
  end
  if not m.bytes then return "", "" end
  local keeping = {}
  for _, n in ipairs(m.users) do
    if not (selected[n] and selected[n].stale) then keeping[#keeping + 1] = n end
  end
  return "", fmt("; mirror %s stays (%s still use%s it)", m.name, table.concat(keeping, " "),
                 #keeping == 1 and "s" or "")
end

-- The selected stream keys (units) with their mirrors. mirrors: mirror
-- name -> every stream key naming it, selected or not.
local function stream_pairs(units, mirrors)
  local selected = {}
  for _, st in ipairs(units) do
    selected[st.name] = st
    st.seconds = rs.token_time(st.bytes)
    st.stale = is_stale(st.seconds)
  end
  -- A mirror is ours to change only when all its stream keys are selected,
  -- and goes only when they all go.
  local function owned(m)
    for _, n in ipairs(m.users) do if not selected[n] then return false end end
    return true
  end
  local function all_users(m, field)   -- of an owned mirror
    for _, n in ipairs(m.users) do if not selected[n][field] then return false end end
    return true
  end

  -- The mirrors, read before anything is deleted.
  local names, by_name = {}, {}
  for _, st in ipairs(units) do
    if not by_name[st.mirror] then
      names[#names + 1] = st.mirror
      by_name[st.mirror] = { name = st.mirror, users = mirrors[st.mirror] }
    end
  end
  if #names > 0 then
    local values, ttls = store:get_many(names, { ttl = opts.set_ttl ~= nil })
    for i, n in ipairs(names) do
      by_name[n].bytes, by_name[n].ttl = values[i] or nil, ttls[i] or nil
    end
  end
  for _, m in pairs(by_name) do m.goes = m.bytes and owned(m) and all_users(m, "stale") end

  for _, st in ipairs(units) do
    local m = by_name[st.mirror]
    if st.stale then
      to_delete = to_delete + 1
      local with, after = mirror_note(st, m, selected)
      plan(delete_line, st.name, st.seconds, with, after)
      if apply then
        local outcome
        st.deleted, outcome = delete_seen(st.name, st.bytes)
        if st.deleted then deleted = deleted + 1 elseif outcome == "changed" then refreshed = refreshed + 1 end
      end
    elseif opts.set_ttl and st.ttl == nil then
      give_ttl(st.name)
    end
  end

  for _, n in ipairs(names) do
    local m = by_name[n]
    if m.goes then
      mirrors_to_delete = mirrors_to_delete + 1
      -- A stream key refreshed meanwhile keeps its mirror.
      if apply and all_users(m, "deleted") then
        local went, outcome = delete_seen(n, m.bytes)
        if went then
          deleted_mirror[n] = true
          mirrors_deleted = mirrors_deleted + 1
        elseif outcome == "changed" then
          mirrors_changed = mirrors_changed + 1
          io.write(fmt("mirror %s not deleted: it changed after the walk read it\n", require("lib.output").text(n)))
        end
      end
    elseif m.bytes and owned(m) and opts.set_ttl and not m.ttl then
      give_ttl(n, " (mirror of " .. table.concat(m.users, " ") .. ")")
    end
  end
end

-- The walk of every token --match takes; the stream keys go to units
-- (mirrors learns theirs), the others are handled as they come unless
-- mirrors names them. Without mirrors (the one-walk plan) it stops at the
-- first stream key and returns false.
local counts = {}   -- the token walk's: not_strings
local function walk_tokens(units, mirrors)
  -- TTLs (a PTTL per key) only when --set-ttl looks at them; a batch
  -- per step, with the cluster times read in C.
  for names, values, ttls, times, n in store:token_batches { match = opts.match or "*", batch = opts.batch,
                                                             ttl = opts.set_ttl ~= nil, counts = counts } do
    for i = 1, n do
      scanned = scanned + 1   -- per token: a run stopped mid-step counts what it acted on
      local collection, bytes, ttl = names[i], values[i], cli.known_ttl(ttls[i], "cleanup")
      local st = streams.stream(collection, bytes, ttl)
      if st then
        if not mirrors then return false end
        units[#units + 1] = st
        streams.add_mirror(mirrors, st)   -- a stream key that appeared after the first walk
      elseif not (mirrors and mirrors[collection]) then
        plain_token(collection, bytes, ttl, times[i] or nil)
      end
    end
    progress.update(scanned)
    checkpoint()
  end
  return true
end

-- After the run (or its stop): what was not proved is taken out of the
-- counts; when the master changed, what came back with the failover too.
local undone, unconfirmed, not_gone, unread = 0, 0, 0, nil
local function uncount(name)
  if deleted_mirror[name] then mirrors_deleted = mirrors_deleted - 1 else deleted = deleted - 1 end
end
local function ungone() gone_before = gone_before - 1 end
local function settle_deletes(ran, why)
  if not ledger then return ran, why end
  local failed
  undone, unconfirmed, not_gone, failed = ledger:settle(uncount, ungone)
  unread = failed
  if failed and ran then ran, why = false, failed end
  return ran, why
end

local function plural(n, word) return fmt("%d %s%s", n, word, n == 1 and "" or "s") end

-- The counts of what was done (or planned): after the run, and after a
-- SIGINT/SIGTERM has stopped it (host.on_stop), so a stop mid-delete still
-- says what was deleted. (Body not indented: a small diff.)
local reported = false
local function report(ran, why)
reported = true
progress.done()
local parts = {}
if apply then
  if opts.older_than then
    parts[#parts + 1] = fmt("%d deleted (older than %s)%s", deleted, cli.format_duration(opts.older_than),
                            mirrors_deleted > 0 and (" + " .. plural(mirrors_deleted, "mirror")) or "")
    if refreshed > 0 then parts[#parts + 1] = fmt("%d kept (refreshed meanwhile)", refreshed) end
    if gone_before > 0 then parts[#parts + 1] = fmt("%d already gone (deleted by another client)", gone_before) end
    if mirrors_changed > 0 then
      parts[#parts + 1] = plural(mirrors_changed, "mirror") .. " not deleted (changed meanwhile)"
    end
    for _, note in ipairs(deletes.notes(undone, unconfirmed, not_gone, nil, unread)) do parts[#parts + 1] = note end
    parts[#parts + 1] = not ran and cli.in_doubt(why, in_doubt) or nil
  end
  if opts.set_ttl then parts[#parts + 1] = fmt("TTL set on %d", ttl_set) end
else
  for _, line in ipairs(shown_lines) do io.write(line, "\n") end
  if shown > SHOW_MAX then io.write(fmt("... and %d more\n", shown - SHOW_MAX)) end
  if opts.older_than then
    parts[#parts + 1] = fmt("would delete %d (older than %s)%s", to_delete, cli.format_duration(opts.older_than),
                            mirrors_to_delete > 0 and (" + " .. plural(mirrors_to_delete, "mirror")) or "")
  end
  if opts.set_ttl then parts[#parts + 1] = fmt("would set TTL on %d", to_ttl) end
end
if unknown > 0 then parts[#parts + 1] = fmt("%d of unknown age kept", unknown) end
cli.summary(fmt("cleanup%s%s: %s; %d scanned in %.2f s%s", apply and "" or " (plan)",
                ran and "" or " (stopped)", table.concat(parts, ", "), scanned,
                progress.elapsed(), apply and "" or "; nothing changed (add --yes to apply)") ..
            cli.not_tokens(counts))
end
-- A stop (SIGINT...) unwinds the run before this runs: its deletes are
-- settled as after a failure (the last checkpoint tried once more).
host.on_stop(function()
  if reported then return end
  settle_deletes(false, nil)
  report(false, nil)
end)

-- Any error (a walk, a delete) stops the run; what was done until then
-- is still reported, then the failure (exit 1).
local ran, why = pcall(function()
  local units = {}
  if not (apply or selections) and (opts.match or "*") == "*" and walk_tokens(units, nil) then return end
  -- A stream key was listed (or this run needs the stream keys first):
  -- what the one walk planned is dropped.
  scanned, unknown, to_delete, to_ttl, shown, shown_lines = 0, 0, 0, 0, 0, {}
  local all, mirrors = streams.walk(store, opts.batch, opts.set_ttl ~= nil)
  if selections then
    for _, st in ipairs(all) do
      scanned = scanned + 1
      if streams.selected(selections, st) then units[#units + 1] = st end
    end
  else
    walk_tokens(units, mirrors)
  end
  stream_pairs(units, mirrors)
  checkpoint()
end)
ran, why = settle_deletes(ran, why)
report(ran, why)
if not ran then
  cli.walk_failed("cleanup", why, apply and "the counts above are what was done before it stopped"
                                       or "the plan above is incomplete")
end
return (undone > 0 or unconfirmed > 0 or not_gone > 0) and 1 or 0
end

return script
