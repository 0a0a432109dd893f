-- SPDX-License-Identifier: MIT
-- spec/bench/gen_tokens.lua -- RESP for `redis-cli --pipe`: COUNT tokens.
--
--   lua5.4 spec/bench/gen_tokens.lua COUNT [PREFIX] | redis-cli -p P --pipe
--
-- Keys <PREFIX>:bench_coll_<i> (PREFIX defaults to rigatoni:resume_token),
-- values the BSON of a token whose cluster time varies with i.
package.path = "spec/bench/?.lua;" .. package.path
local rs = require "rigatoni_store"
local tok = require "token"

local count = assert(tonumber(arg[1]), "usage: gen_tokens.lua COUNT [PREFIX]")
local prefix = arg[2] or "rigatoni:resume_token"

local function bulk(s) return "$" .. #s .. "\r\n" .. s .. "\r\n" end

local out, n = {}, 0
for i = 1, count do
  local key = string.format("%s:bench_coll_%06d", prefix, i)
  local value = rs.bson.encode(tok.token(1700000000 + i, i % 7 + 1))
  n = n + 1
  out[n] = "*3\r\n$3\r\nSET\r\n" .. bulk(key) .. bulk(value)
  if n == 2000 then
    io.write(table.concat(out, "", 1, n))
    n = 0
  end
end
io.write(table.concat(out, "", 1, n))
