-- SPDX-License-Identifier: MIT
-- spec/spin_spec.lua -- spin_wait: polling the socket for a fast reply
-- before blocking (core/exec.c), on a real redis-server.
local rs = require "rigatoni_store"
local servers = require "support.servers"
local proxy = require "support.proxy"
local helpers = require "support.helpers"
local catch, assert_kind = helpers.catch, helpers.assert_kind

local token = { _data = "8263A1B2C3000000012B022C0100296E5A1004AABBCCDDEEFF" }

describe("spin_wait", function()
  local srv, px
  setup(function()
    srv = servers.redis{}
    px = proxy.start(srv)
  end)
  teardown(function()
    px:stop()
    srv:stop()
  end)

  it("reads the same replies spinning or not, alone or beside a second store", function()
    for _, spin in ipairs{ 0, 0.0001, 0.01 } do
      local a <close> = rs.new{ url = srv.url, spin_wait = spin }
      local b <close> = rs.new{ url = srv.url, spin_wait = spin }
      for i = 1, 200 do
        local store = i % 2 == 0 and a or b
        local tok = { _data = token._data .. ("%04X"):format(i) }
        store:save_resume_token("spin" .. i, tok)
        assert.are.same(tok, store:get_resume_token("spin" .. i))
      end
    end
  end)

  it("stops spinning on a connection whose replies come later than spin_wait", function()
    local store <close> = rs.new{ url = px.url, pool_size = 1, spin_wait = 0.01 }
    store:save_resume_token("far", token)
    px:set("delay", 0.02)
    -- Spinning through every one of these 40 replies would cost 40 x 10 ms
    -- of CPU; after 8 late replies the connection spins once in 16 calls.
    local cpu = os.clock()
    for _ = 1, 40 do assert.are.same(token, store:get_resume_token("far")) end
    cpu = os.clock() - cpu
    assert.is_true(cpu < 0.25, ("%.3f s of CPU for 40 slow replies"):format(cpu))
  end)

  it("accepts microseconds and refuses what is not a short duration, naming the option", function()
    local store <close> = rs.new{ url = srv.url, spin_wait = "50us" }
    store:save_resume_token("us", token)
    for _, bad in ipairs{ "-1", "1s", "fast" } do
      local err = catch(rs.new, { url = srv.url, spin_wait = bad })
      assert_kind("config", err)
      assert.matches("spin_wait", err.message, 1, true)
    end
  end)
end)
