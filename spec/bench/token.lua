-- SPDX-License-Identifier: MIT
-- spec/bench/token.lua -- the resume token the benchmarks save and read.
--
-- A change-stream token as MongoDB 4.2+ writes it: {_data = "82<hex>"},
-- where the hex starts with byte 0x82, the big-endian cluster time
-- (seconds, increment), then opaque bytes (here a fixed filler). 94 hex
-- characters is the usual length of a v1 token's _data.
local M = {}

local HEX_LEN = 94

function M.data(seconds, increment)
  local head = string.format("82%08X%08X", seconds, increment)
  local filler = "2B022C0100296E5A10046C9F3E1B7A2D4C8E9F0A1B2C3D4E5F6046645F69640064"
  local s = head .. filler
  while #s < HEX_LEN do s = s .. "0" end
  return s:sub(1, HEX_LEN)
end

function M.token(seconds, increment)
  return { _data = M.data(seconds or 1700000000, increment or 1) }
end

return M
