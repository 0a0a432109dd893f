-- SPDX-License-Identifier: MIT
-- rigatoni_store.loop_lease -- a lease kept alive inside an event loop
-- (pure Lua), for the adapters' wrap(store):lease(key, owner, opts).
--
--   local lease <close> = s:lease(key, owner, { ttl = 30, on_lost = function(l) ... end })
--   if lease then lease:save_resume_token(c, t) end   -- fenced, as a job
--
-- Acquired as a job (store:start("lease", ...)): nil when another owner
-- holds the lock. Then two coroutines of the loop keep it:
--  - the refresher sleeps until a third of the ttl after the last good
--    refresh started and refreshes through lease:start_refresh(), a job
--    whose attempts are cut to the validity left (rs_lock_refresh_by): the
--    loop never waits on the server, and no refresh outlives the validity.
--    A failed refresh is tried again after a tenth of the ttl while the
--    validity lasts; one that finds another owner is a loss at once.
--  - the watchdog sleeps until the validity's end by the lease's own clock
--    (lease:valid_for(), no server call) and, if no refresh extended it,
--    reports the loss. It depends on no reply: a frozen or unreachable
--    server costs the lease its lock at the validity's end, reported then.
-- A loss calls on_lost(lease) once, in a coroutine of the loop, and stops
-- both; a refresh whose reply comes after the validity ended does not
-- revive the lease (the Lua lease decides: lost for good). release() (and
-- closing the lease) stops both, wakes them so that their timers close
-- (uv.run ends once the app is done), lets a refresh in flight end, and
-- releases the lock as a job, owner-checked, like the Lua lease's release.
-- A lease neither released nor lost keeps refreshing (and the loop
-- running), as the C keep-alive thread does.
--
-- The loop gives check_inside(name), await(job) and timers: spawn(fn)
-- (fn in a new coroutine the loop runs) and alarm() -> an object whose
-- sleep(seconds) yields the calling coroutine until that time passed or
-- wake() was called, and close() (its timer, once done).

local M = {}

local known = { ttl = true, on_lost = true }

local function check_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error("lease options must be a table", 3) end
  for k in pairs(opts) do
    if not known[k] then error(("lease: unknown option '%s'; known: ttl, on_lost"):format(tostring(k)), 3) end
  end
  if opts.on_lost ~= nil and type(opts.on_lost) ~= "function" then
    error("lease: on_lost must be a function", 3)
  end
  return opts
end

function M.new(loop, check_inside, await, timers)
  local Lease = {}
  Lease.__index = Lease
  Lease.__name = "rigatoni_store." .. loop .. ".lease"

  -- The loss, reported once (from whichever of the two saw it first).
  local function lose(self)
    if self.lost or self.stopped then return end
    self.lost, self.stopped = true, true
    self.refresher:wake()
    self.watchdog:wake()
    if self.on_lost then self.on_lost(self) end
  end

  local function refresher(self)
    local ttl = self.ttl
    local wait = self.lease:valid_for() - ttl * 2 / 3
    while not self.stopped do
      self.refresher:sleep(wait)
      if self.stopped then break end
      -- start_refresh itself may raise (a store closed under the lease).
      self.refreshing = true
      local ok, res = pcall(function() return await(self.lease:start_refresh()) end)
      self.refreshing = false
      if self.stopped then break end
      if ok and res then
        self.last_error = nil
        wait = self.lease:valid_for() - ttl * 2 / 3
      elseif ok or self.lease:valid_for() == 0 then
        -- false: taken, expired or too late (the lease says lost); an
        -- error with no validity left is a loss too.
        if not ok then self.last_error = res end
        lose(self)
      else
        self.last_error = res            -- tried again while valid
        wait = math.min(ttl / 10, self.lease:valid_for())
      end
    end
    self.refresher:close()
  end

  local function watchdog(self)
    while not self.stopped do
      local left = self.lease:valid_for()
      if left == 0 then
        lose(self)
        break
      end
      self.watchdog:sleep(left)
    end
    self.watchdog:close()
  end

  -- lease:remaining() -> seconds of validity left (local, never blocks).
  function Lease:remaining()
    return self.lease:valid_for()
  end

  -- lease:save_resume_token(collection, token) -> fenced save, as a job;
  -- refused locally (not_owner) once the validity passed.
  function Lease:save_resume_token(collection, token)
    check_inside("save_resume_token")
    if self.lease:valid_for() == 0 then
      return self.lease:save_resume_token(collection, token)   -- raises, no call
    end
    return await(self.store:start("save_resume_token", collection, token,
      { lock = self.key, owner = self.owner }))
  end

  -- lease:release() -> true when this owner still held the lock (false
  -- once released). Stops refreshing; the release is a job.
  local function stop(self)
    self.released, self.stopped = true, true
    self.refresher:wake()
    self.watchdog:wake()
  end

  function Lease:release()
    if self.released then return false end
    check_inside("release")
    stop(self)
    -- A refresh in flight ends first (within the validity): run after
    -- the release it would find the key gone and count a lost lock.
    if self.refreshing then
      local alarm = timers.alarm()
      while self.refreshing do alarm:sleep(0.005) end
      alarm:close()
    end
    return await(self.lease:start_release())
  end

  -- Closing releases; outside a coroutine of the loop (the loop is
  -- over) with the Lua lease's own release, which blocks. Never raises.
  function Lease:__close()
    if self.released then return end
    if not pcall(self.release, self) and not self.released then
      stop(self)
      pcall(self.lease.release, self.lease)
    end
  end

  function Lease:__tostring()
    return ("rigatoni_store.%s.lease (%s by %s%s)"):format(loop, self.key, self.owner,
      self.released and ", released" or self.lost and ", lost" or "")
  end

  -- The lease of wrap(store):lease(key, owner, opts), or nil when taken.
  return function(store, key, owner, opts)
    opts = check_opts(opts)
    local lease = await(store:start("lease", key, owner, { ttl = opts.ttl }))
    if not lease then return nil end
    local self = setmetatable({
      store = store, lease = lease, key = lease.key, owner = lease.owner, ttl = lease.ttl,
      on_lost = opts.on_lost, lost = false, stopped = false, released = false,
      refresher = timers.alarm(), watchdog = timers.alarm(),
    }, Lease)
    timers.spawn(function() watchdog(self) end)
    timers.spawn(function() refresher(self) end)
    return self
  end
end

return M
