-- SPDX-License-Identifier: MIT
-- spec/support/certs.lua -- a throwaway PKI made with openssl at test time:
-- a CA, a server certificate for 127.0.0.1/localhost, a client certificate
-- (mutual TLS), an expired server certificate, and an unrelated CA.
--
--   local certs = require "support.certs"
--   local pki = certs.make(dir)  --> paths: ca, server_cert, server_key,
--                                    client_cert, client_key, expired_cert,
--                                    expired_key, other_ca
local servers = require "support.servers"
local q = servers.quote

local M = {}

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  assert(ok == true, "failed: " .. cmd)
end

local function key_and_csr(dir, name, cn)
  sh(("openssl req -newkey rsa:2048 -nodes -keyout %s -out %s -subj %s")
    :format(q(dir .. "/" .. name .. ".key"), q(dir .. "/" .. name .. ".csr"), q("/CN=" .. cn)))
end

local function sign(dir, name, days, ext)
  local extfile = dir .. "/" .. name .. ".ext"
  local f = assert(io.open(extfile, "w"))
  f:write(ext, "\n")
  f:close()
  sh(("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -out %s -days %d -extfile %s")
    :format(q(dir .. "/" .. name .. ".csr"), q(dir .. "/ca.crt"), q(dir .. "/ca.key"),
            q(dir .. "/" .. name .. ".crt"), days, q(extfile)))
end

function M.make(dir)
  sh(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 -subj %s")
    :format(q(dir .. "/ca.key"), q(dir .. "/ca.crt"), q("/CN=rigatoni test CA")))
  sh(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 -subj %s")
    :format(q(dir .. "/other.key"), q(dir .. "/other.crt"), q("/CN=unrelated CA")))
  local server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost"
  key_and_csr(dir, "server", "localhost")
  sign(dir, "server", 2, server_ext)
  key_and_csr(dir, "expired", "localhost")
  sign(dir, "expired", -1, server_ext)          -- notAfter yesterday
  key_and_csr(dir, "client", "rigatoni client")
  sign(dir, "client", 2, "extendedKeyUsage=clientAuth")
  return {
    ca = dir .. "/ca.crt", other_ca = dir .. "/other.crt",
    server_cert = dir .. "/server.crt", server_key = dir .. "/server.key",
    expired_cert = dir .. "/expired.crt", expired_key = dir .. "/expired.key",
    client_cert = dir .. "/client.crt", client_key = dir .. "/client.key",
  }
end

return M
