-- SPDX-License-Identifier: MIT
-- scripts/lib/deletes.lua -- counting a tool's deletes so that the count
-- survives a failover (cleanup --yes, migrate --delete-source's source).
--
-- A delete acknowledged by a master is lost when a failover promotes a
-- replica that did not have it yet (replication is asynchronous): the
-- token comes back. So a delete is only noted when it runs (add), and
-- counted at a checkpoint (each walk step or batch): when the master has
-- replicas, store:confirm_writes (PUBLISH + WAIT, core/confirm.c) must be
-- answered by one with the master unchanged since the last checkpoint.
-- A checkpoint that cannot prove its deletes raises, and the run stops:
-- it deletes nothing more. Without replicas there is nothing to confirm:
-- a change of master (a restart) is settled at the end, as below. settle, once after the run (or after a
-- SIGINT), tries the last checkpoint again; when the master changed during
-- the run, every name deleted is read again on the current master: one
-- that is there came back (undone) unless its cluster time is later than
-- the deleted token's (a pipeline saved it anew: the delete stands), and one deleted since the last
-- checkpoint counts only when a replica of the current master confirms.
-- Whatever was not proved is taken out of the caller's counts (uncount)
-- and reported apart. A delete that found the name absent (gone) is read
-- again too when the master changed: a master restarted empty answers so
-- for tokens its replica still has, and a failover then brings them back;
-- such a name is not "already gone" (ungone), and is reported apart. Cost: one PUBLISH + WAIT and one INFO pair per
-- checkpoint. In a cluster, PUBLISH does not travel the replication
-- stream, so WAIT cannot confirm anything: only the master's identity is
-- checked (said in a warning).

local cli = require "lib.cli"
local token_time = require("rigatoni_store").token_time

local M = {}
local fmt = string.format

-- The fewest replicas of a master of identity `id` (store:server_identity),
-- or nil when it is not known.
function M.replicas(id)
  if not id then return nil end
  local r
  for _, m in ipairs(id.masters) do r = math.min(r or m.replicas, m.replicas) end
  return r or 0
end

-- Whether `store` (with its masked config view `cfg`) must confirm its
-- deletes: its master has replicas and WAIT can confirm there (not a
-- cluster). Also what to check before the run: lib/check.lua's CONFIRM.
function M.must_confirm(store, cfg)
  if tostring(cfg.cluster_mode) == "true" then return false end
  local ok, id = pcall(store.server_identity, store)
  return ok and (M.replicas(id) or 0) > 0
end

local Ledger = {}
Ledger.__index = Ledger

-- store:confirm_writes(1), up to 3 tries (a replica's ACK can be late on
-- a loaded machine): true, or false and why. A refusal is not retried.
local function confirm(store)
  local why
  for _ = 1, 3 do
    local ok, acked = pcall(store.confirm_writes, store, 1)
    if ok and acked >= 1 then return true end
    why = ok and "no replica acknowledged within wait_timeout" or cli.reason(acked)
    if not ok and type(acked) == "table" and (acked.kind == "auth" or acked.kind == "config") then
      return false, why, acked
    end
  end
  return false, why
end

-- A ledger for the deletes `script` is about to make on `store` (config
-- view `cfg`). Before any delete: when the master has replicas, one of
-- them must acknowledge now, else the run is refused (exit 2 when it can
-- never work: WAIT refused, a wait_timeout not below command_timeout;
-- exit 1 when no replica answered), nothing deleted.
function M.new(store, cfg, script)
  local self = setmetatable({ store = store, script = script, names = {}, gone = {}, confirmed = 0 }, Ledger)
  self.start = cli.master_mark(store)
  self.mark = self.start
  self.cluster = tostring(cfg.cluster_mode) == "true"
  local replicas = M.replicas(self.start.id)
  if self.cluster then
    host.log("warn", script .. ": in a cluster a replica cannot confirm deletes (WAIT): a failover during " ..
                     "the run may undo some that are counted")
  elseif replicas == nil then
    -- INFO refused: a replica that acknowledges (WAIT allowed) shows there
    -- is one, and then every step is confirmed as with INFO.
    if confirm(store) then
      self.protect = true
    else
      host.log("warn", script .. ": cannot tell whether the master has replicas (INFO refused, and no replica " ..
                       "acknowledged): deletes are not confirmed by a replica, and a failover during the run " ..
                       "may undo some that are counted")
    end
  elseif replicas > 0 then
    self.protect = true
    local ok, why, refused = confirm(store)
    if not ok then
      local message = fmt("%s: the master has replicas, but they cannot confirm deletes (%s, durability." ..
                          "wait_timeout %s); nothing changed", script, why, tostring(cfg.wait_timeout))
      if refused then cli.usage_error(message) end
      cli.fail(message)
    end
  end
  return self
end

-- A delete this run made of `bytes` (not counted until a checkpoint proves it).
function Ledger:add(name, bytes)
  self.names[#self.names + 1] = name
  self.bytes = self.bytes or {}
  self.bytes[#self.names] = bytes
end

-- A delete this run made that found `name` absent (counted as already
-- gone by the caller until settle reads it again).
function Ledger:add_gone(name)
  self.gone[#self.gone + 1] = name
end

-- Whether `value`, read again where the delete of `bytes` ran, is that
-- token back (a failover to a replica without the delete, or one with an
-- older value), rather than a newer token a pipeline saved since: only a
-- later cluster time tells a new save apart (unknown: back).
local function came_back(value, bytes)
  if value == bytes or not bytes then return true end
  local was, now = token_time(bytes), token_time(value)
  return not (was and now and now > was)
end

function Ledger:pending() return #self.names - self.confirmed end

-- Proves the deletes since the last checkpoint, or raises (the run stops).
function Ledger:checkpoint()
  local pending = self:pending()
  if pending == 0 then return end
  local function unproved(why)
    error(fmt("%s: the last %d deletes were not confirmed by a replica (%s); the run stops", self.script,
              pending, why), 0)
  end
  local before = cli.master_mark(self.store)
  -- A replica that appeared since the start must confirm as well.
  if not self.cluster and (M.replicas(before.id) or 0) > 0 then self.protect = true end
  -- Without replicas (or in a cluster) a new master, such as a restart,
  -- does not stop the run: settle reads every delete again on the
  -- current master. With replicas a delete must be confirmed where it ran.
  if self.protect and not cli.same_master(self.mark, before) then unproved("the master changed: a failover") end
  if self.protect then
    local ok, why = confirm(self.store)
    if not ok then unproved(why) end
    if not cli.same_master(before, cli.master_mark(self.store)) then unproved("the master changed: a failover") end
  end
  self.confirmed, self.mark = #self.names, before
end

-- Once, after the run or its stop: takes out of the caller's counts what
-- was not proved, uncount(name) for each deleted name and ungone(name)
-- for each name counted as already gone. Returns undone (back on the
-- current master), unconfirmed (not proved either way), not_gone (names
-- found absent that the current master has, or that could not be read
-- again) and, when the names could not be read again, why.
function Ledger:settle(uncount, ungone)
  if self.settled then return table.unpack(self.settled) end
  self.settled = { 0, 0, 0 }
  if self:pending() > 0 then pcall(self.checkpoint, self) end
  local names, undone, unconfirmed, not_gone, why = self.names, 0, 0, 0, nil
  local now = cli.master_mark(self.store)
  if #names + #self.gone > 0 and cli.master_changed(self.start, now) then
    local all = table.move(self.gone, 1, #self.gone, #names + 1, table.move(names, 1, #names, 1, {}))
    local ok, values = pcall(cli.read_on_current_master, self.store, all)
    if not ok then why = values end
    for i, name in ipairs(self.gone) do
      if not ok or values[#names + i] then
        not_gone = not_gone + 1
        ungone(name)
      end
    end
    -- Deletes since the last checkpoint that the current master lacks
    -- count once one of its replicas confirms.
    local tail_ok = ok and (self:pending() == 0 or not self.protect)
    if ok and not tail_ok then
      tail_ok = confirm(self.store) and cli.same_master(now, cli.master_mark(self.store))
    end
    for i, name in ipairs(names) do
      if ok and values[i] and came_back(values[i], self.bytes and self.bytes[i]) then
        undone = undone + 1
        uncount(name)
      elseif not ok or (i > self.confirmed and not tail_ok) then
        unconfirmed = unconfirmed + 1
        uncount(name)
      end
    end
  else
    for i = self.confirmed + 1, #names do
      unconfirmed = unconfirmed + 1
      uncount(names[i])
    end
  end
  self.settled = { undone, unconfirmed, not_gone, why }
  return undone, unconfirmed, not_gone, why
end

-- The parts of a summary about what settle took out ({} when nothing).
-- `where`: "" or e.g. " source's"; `unread`: the names could not be read
-- again.
function M.notes(undone, unconfirmed, not_gone, where, unread)
  local parts = {}
  if not_gone > 0 then
    parts[#parts + 1] = unread
      and fmt("%d found absent by a master that was then replaced, not read again on the%s current one (not " ..
              "counted as gone: they may be there)", not_gone, where or "")
      or fmt("%d found absent by a master that was then replaced, but present on the%s current master (not " ..
             "deleted: run it again)", not_gone, where or "")
  end
  if undone > 0 then
    parts[#parts + 1] = fmt("%d not deleted after all (back on the%s new master after a failover: run it again)",
                            undone, where or "")
  end
  if unconfirmed > 0 then
    parts[#parts + 1] = fmt("%d deletes not confirmed by a replica (not counted: a failover may undo them)",
                            unconfirmed)
  end
  return parts
end

return M
