-- SPDX-License-Identifier: MIT
-- demo.lua -- what `make demo` shows: save, read, list and delete resume
-- tokens through the Lua module, on the throwaway server demo.sh started.
local rs = require "rigatoni_store"

local url = assert(os.getenv("REDIS_URL"), "REDIS_URL not set")
local store <close> = rs.new{ url = url, ttl = 7 * 24 * 3600 }
print("store:  " .. tostring(store))

-- A resume token as a MongoDB change stream hands it out: _data is hex,
-- 0x82 then the cluster time (seconds, increment).
local function token(seconds, increment)
  return { _data = string.format("82%08X%08X2B022C0100296E5A1004", seconds, increment) }
end

local now = os.time()
local demo = { users = token(now - 60, 1), orders = token(now - 3600, 7),
               ["inventory.items"] = token(now - 86400 * 3, 42) }
for collection, tok in pairs(demo) do
  store:save_resume_token(collection, tok)
end
print(("saved:  %d tokens under rigatoni:resume_token:*"):format(3))

print(("%-18s %-12s %-22s %s"):format("collection", "ttl (s)", "cluster time (UTC)", "_data"))
for collection, tok, ttl in store:resume_tokens{ match = "*" } do
  local seconds = rs.token_time(tok)
  print(("%-18s %-12s %-22s %s"):format(collection, ttl and ("%.0f"):format(ttl) or "none",
    seconds and os.date("!%Y-%m-%dT%H:%M:%SZ", seconds) or "?", tok._data))
end

local raw = store:get_raw("users")
print(("raw:    users is %d bytes of BSON: %s"):format(#raw, rs.bson.to_json(raw)))
print(("delete: orders -> %s"):format(tostring(store:delete_resume_token("orders"))))
print(("get:    orders -> %s"):format(tostring(store:get_resume_token("orders"))))
