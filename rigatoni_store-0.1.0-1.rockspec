-- SPDX-License-Identifier: MIT
-- LuaRocks build of rigatoni_store: `luarocks --lua-version 5.4 make --tree DIR`
-- in a clone. The Makefile does the work (targets `rock` and `install-rock`):
-- the module goes to the tree's lib/lua/5.4/, the rigatoni-store host to its
-- bin/, the scripts, man page and bash completion to the rock's folder
-- (PREFIX), where the host finds its scripts. The file name follows
-- RS_VERSION in core/rigatoni_store.h.
rockspec_format = "3.0"
package = "rigatoni_store"
version = "0.1.0-1"

-- The project has no public repository yet: `luarocks make` builds the
-- clone it runs in and never fetches this. A release sets it to the
-- release tarball's address.
source = {
  url = "git+file:///rigatoni_store",
  tag = "v0.1.0",
}

description = {
  summary = "Rigatoni's Redis resume-token store in C, as a Lua 5.4 module",
  detailed = [[
Reads and writes the same Redis keys and bytes as the Rigatoni (Rust) state
store: resume tokens as raw BSON under rigatoni:resume_token:<collection>,
and Rigatoni 0.2 distributed locks. Standalone Redis, Sentinel or Cluster,
TLS, ACL users, retries, WAIT-durable saves, metrics. Comes with the
rigatoni-store host and its maintenance scripts (list, export, import,
migrate, cleanup, locks, stats, serve), documented in rigatoni-store(1).
]],
  labels = { "redis", "mongodb", "cdc", "rigatoni" },
  license = "MIT",
}

dependencies = {
  "lua >= 5.4, < 5.5",
  "lua-cjson >= 2.1",   -- import reads its JSON lines with it
}

-- Checked by LuaRocks before the build, so a missing one is named with the
-- variable that points LuaRocks at it (e.g. LIBBSON_DIR=/opt/mongo-c).
-- The Makefile itself finds them through pkg-config.
external_dependencies = {
  HIREDIS = { header = "hiredis/hiredis_ssl.h" },   -- hiredis >= 1.0, or hiredict's shims
  LIBBSON = { header = "libbson-1.0/bson/bson.h", library = "bson-1.0" },
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
  INIH = { header = "ini.h", library = "inih" },
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },   -- serve's HTTP side
}

build = {
  type = "make",
  build_target = "rock",
  install_target = "install-rock",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA_BINDIR = "$(LUA_BINDIR)",
    PREFIX = "$(PREFIX)",
    LIBDIR = "$(LIBDIR)",
  },
  install_variables = {
    PREFIX = "$(PREFIX)",
    LIBDIR = "$(LIBDIR)",
    LUA_CDIR = "$(LIBDIR)",
    LUA_LDIR = "$(LUADIR)",
    BINDIR = "$(BINDIR)",
  },
  -- not LuaRocks' default copy of doc/: that is the page's source, and the
  -- Makefile installs the built page
  copy_directories = {},
}
