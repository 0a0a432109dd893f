/* SPDX-License-Identifier: MIT */
/* rs_stream_lua.c -- rs.stream_key, rs.stream_mirror_key, rs.parse_stream_key:
 * the collection names a Rigatoni 0.2 pipeline resumes from (core/stream.c).
 *
 *   rs.stream_key("shop", "orders") --> "resume_token:shop:orders"
 *   rs.stream_key("shop")           --> "resume_token:database:shop"
 *   rs.stream_key()                 --> "resume_token:deployment"
 *   rs.parse_stream_key(name)       --> level, database, collection | nil
 */
#include "rs_lua.h"

typedef long (*stream_name_fn)(const char *, size_t, const char *, size_t, char *, size_t,
                               rs_error *);

/* Arguments 1 (database) and 2 (collection): strings or absent. The name
 * is measured first, then written straight into a Lua buffer, so nothing
 * malloc'd is held when Lua raises. */
static int push_stream_name(lua_State *L, stream_name_fn fn)
{
    size_t db_len = 0, coll_len = 0;
    const char *db = luaL_optlstring(L, 1, NULL, &db_len);
    const char *coll = luaL_optlstring(L, 2, NULL, &coll_len);
    rs_error err = {0};
    long len = fn(db, db_len, coll, coll_len, NULL, 0, &err);
    if (len < 0) return rs_lua_raise(L, &err);
    luaL_Buffer b;
    char *dst = luaL_buffinitsize(L, &b, (size_t)len + 1);
    fn(db, db_len, coll, coll_len, dst, (size_t)len + 1, &err);
    luaL_pushresultsize(&b, (size_t)len);
    return 1;
}

static int l_stream_key(lua_State *L)
{
    return push_stream_name(L, rs_stream_key);
}

static int l_stream_mirror_key(lua_State *L)
{
    return push_stream_name(L, rs_stream_mirror_key);
}

static int l_parse_stream_key(lua_State *L)
{
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    rs_stream s;
    if (rs_parse_stream_key(name, len, &s) == RS_STREAM_NONE) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, rs_stream_level_name(s.level));
    if (s.database) lua_pushlstring(L, s.database, s.database_len);
    else lua_pushnil(L);
    if (s.collection) lua_pushlstring(L, s.collection, s.collection_len);
    else lua_pushnil(L);
    return 3;
}

static const luaL_Reg stream_funcs[] = {
    {"stream_key", l_stream_key},
    {"stream_mirror_key", l_stream_mirror_key},
    {"parse_stream_key", l_parse_stream_key},
    {NULL, NULL},
};

void rs_lua_open_stream(lua_State *L)
{
    luaL_setfuncs(L, stream_funcs, 0);
}
