-- scripts/lib/streams.lua -- Rigatoni 0.2 streams for the bundled scripts:
-- the walk over the stream keys (and which names mirror them), and the
-- --stream selections of cleanup and export.
--
-- A stream key (rs.parse_stream_key) is where a pipeline resumes from; its
-- mirror ({coll}, __db:{db}, __deployment__) is saved after each batch and
-- never read. One collection name in two databases has one mirror, so a
-- mirror belongs to every stream key that names it.

local cli = require "lib.cli"

local M = {}

-- The stream of one stored name: { name, bytes, ttl, level, database,
-- collection, mirror }, or nil when the name is not a stream key.
function M.stream(name, bytes, ttl)
  local level, database, collection = rs.parse_stream_key(name)
  if not level then return nil end
  return { name = name, bytes = bytes, ttl = ttl, level = level, database = database,
           collection = collection, mirror = rs.stream_mirror_key(database, collection) }
end

-- Records that st's mirror belongs to st (mirrors: mirror -> stream key names).
function M.add_mirror(mirrors, st)
  local names = mirrors[st.mirror] or {}
  for _, n in ipairs(names) do if n == st.name then return end end
  names[#names + 1] = st.name
  mirrors[st.mirror] = names
end

-- Every stream key (SCAN MATCH <prefix>:resume_token:*, one pass holding
-- only the stream keys): the streams sorted by name, and mirrors: mirror
-- name -> the sorted names of the stream keys it mirrors. Raises when the
-- walk fails. with_ttl = false: no PTTL is sent (st.ttl is then unknown:
-- for a tool that needs no TTL, run by a user who may not send PTTL).
function M.walk(store, batch, with_ttl)
  local streams, mirrors = {}, {}
  for name, bytes, ttl in store:resume_tokens { match = "resume_token:*", batch = batch, raw = true,
                                                ttl = with_ttl ~= false } do
    local st = M.stream(name, bytes, ttl)
    if st then
      streams[#streams + 1] = st
      M.add_mirror(mirrors, st)
    end
  end
  table.sort(streams, function(x, y) return x.name < y.name end)
  for _, names in pairs(mirrors) do table.sort(names) end
  return streams, mirrors
end

-- ---------------------------------------------------------------------
-- --stream selections
-- ---------------------------------------------------------------------

-- One --stream value: DB:COLL (split at the first ':', a collection name
-- may hold more), DB, or :deployment. Raises a usage error naming the
-- problem.
local function parse_selection(script, text)
  local function bad(why)
    cli.usage_error(string.format("%s: --stream '%s': %s (%s --help for usage)", script, text, why, script))
  end
  if text == ":deployment" then return { deployment = true } end
  if text == "" then bad("the selection is empty (give DB, DB:COLL or :deployment)") end
  local database, collection = text:match("^([^:]*):(.*)$")
  database = database or text
  if database == "" then bad("the database name is empty (:deployment selects the deployment stream)") end
  if database == "database" and collection then
    -- Rigatoni's own ambiguity: its key reads as the database stream of COLL.
    bad("ambiguous: resume_token:database:" .. collection .. " is also the database stream of '" ..
        collection .. "' (--stream " .. collection .. ")")
  end
  local ok, err = pcall(rs.stream_key, database, collection)
  if not ok then
    local message = type(err) == "table" and err.message or tostring(err)
    bad((message:gsub("^stream key: ", "")))
  end
  return { database = database, collection = collection }
end

-- The --stream values (a list, or nil when none was given) -> selections, or nil.
function M.parse_selections(script, values)
  if not values then return nil end
  local selections = {}
  for i, text in ipairs(values) do selections[i] = parse_selection(script, text) end
  return selections
end

-- Whether a selection takes stream st: DB:COLL its collection stream, DB
-- its database stream and every collection stream of DB, :deployment the
-- deployment stream.
function M.selected(selections, st)
  for _, sel in ipairs(selections) do
    if sel.deployment then
      if st.level == "deployment" then return true end
    elseif st.database == sel.database and (sel.collection == nil or sel.collection == st.collection) then
      return true
    end
  end
  return false
end

return M
