/* SPDX-License-Identifier: MIT */
/* rs_store_lua.c -- the store userdata: its life, the helpers of the
 * handle files, and the method table they fill (rs_module.c hands their
 * parts to rs_lua_open_store; the one-token operations and store:command
 * are rs_token_lua.c's).
 *
 * The userdata is created closed (store == NULL) before the core store is
 * opened, so a failure half-way leaves nothing dangling; __gc and __close
 * share one idempotent close, and a closed store raises "attempt to use a
 * closed store". Objects that use the store from threads of their own (the
 * walks' read-ahead) are tracked in its user value and closed with it,
 * through a function they register, so this file calls none of them.
 */
#include <stdio.h>
#include <string.h>

#include "rs_lua.h"

#define STORE_MT "rigatoni_store.store"

typedef struct store_box {
    rs_store *store;
} store_box;

/* ---------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------ */

rs_store *rs_lua_check_store(lua_State *L, int idx)
{
    store_box *box = luaL_checkudata(L, idx, STORE_MT);
    if (!box->store) luaL_error(L, "attempt to use a closed store");
    return box->store;
}

rs_store *rs_lua_test_store(lua_State *L, int idx)
{
    store_box *box = luaL_testudata(L, idx, STORE_MT);
    return box ? box->store : NULL;
}

/* A malloc'd result of the core, owned by a userdata on the stack until
 * it is copied into Lua: a memory error raised on the way (the copy
 * itself allocates) then frees it in __gc instead of leaking it. */
#define RESULT_MT "rigatoni_store.result"

static int result_gc(lua_State *L)
{
    char **box = luaL_checkudata(L, 1, RESULT_MT);
    rs_free(*box);
    *box = NULL;
    return 0;
}

char **rs_lua_push_result(lua_State *L)
{
    char **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, RESULT_MT)) {
        lua_pushcfunction(L, result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return box;
}

void rs_lua_result_to_string(lua_State *L, char **box, size_t len)
{
    lua_pushlstring(L, *box, len);
    rs_free(*box);
    *box = NULL;
    lua_remove(L, -2);
}

const char *rs_lua_check_collection(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        rs_lua_raisef(L, RS_ERR_SERIALIZATION, "collection name must be a string, got %s",
                      luaL_typename(L, idx));
    const char *name = lua_tolstring(L, idx, len);
    if (*len == 0) rs_lua_raisef(L, RS_ERR_SERIALIZATION, "collection name must not be empty");
    return name;
}

/* Pushes the key of a collection, for messages about stored values. */
static void push_key(lua_State *L, rs_store *store, const char *coll, size_t len)
{
    if (!store) {
        lua_pushliteral(L, "<key_prefix>:");
        lua_pushlstring(L, coll, len);
        lua_concat(L, 2);
        return;
    }
    char prefix[512];
    rs_config_get(rs_store_config(store), "key_prefix", prefix, sizeof prefix);
    lua_pushstring(L, prefix);
    lua_pushliteral(L, ":");
    lua_pushlstring(L, coll, len);
    lua_concat(L, 3);
}

int rs_lua_push_token(lua_State *L, rs_store *store, const char *coll, size_t coll_len,
                      const char *bytes, size_t len, rs_error *err)
{
    if (rs_lua_bson_push(L, (const uint8_t *)bytes, len)) return 1;   /* it validates */
    rs_error why = {0};
    rs_token_validate(bytes, len, &why);
    push_key(L, store, coll, coll_len);
    err->kind = RS_ERR_SERIALIZATION;
    err->retryable = 0;
    snprintf(err->message, sizeof err->message, "value at key '%.300s' is not a valid token: %.150s",
             lua_tostring(L, -1),
             why.message[0] ? why.message : "a top-level key repeats (read it with get_raw)");
    lua_pop(L, 1);
    lua_pushnil(L);
    return 0;
}

double rs_lua_opt_ttl(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return RS_TTL_DEFAULT;
    if (lua_isboolean(L, idx) && !lua_toboolean(L, idx)) return RS_TTL_NONE;
    if (!lua_isnumber(L, idx))
        rs_lua_raisef(L, RS_ERR_CONFIG, "ttl must be a number of seconds, false or nil");
    double ttl = lua_tonumber(L, idx);
    if (!(ttl >= 0)) rs_lua_raisef(L, RS_ERR_CONFIG, "ttl must not be negative");
    return ttl == 0 ? RS_TTL_NONE : ttl;
}

/* ---------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------ */

rs_store **rs_lua_push_store_box(lua_State *L)
{
    store_box *box = lua_newuserdatauv(L, sizeof *box, 1);
    box->store = NULL;
    luaL_setmetatable(L, STORE_MT);
    /* user value 1: the objects closed with it (weak keys; values: their close) */
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setiuservalue(L, -2, 1);
    return &box->store;
}

rs_config *rs_lua_logged_config(const rs_config *cfg)
{
    rs_config *logged = rs_config_copy(cfg);
    if (!logged) return NULL;
    rs_config_set_log_handler(logged, rs_lua_log_hook, NULL);
    return logged;
}

int rs_lua_store_open(lua_State *L, const rs_config *cfg)
{
    rs_store **slot = rs_lua_push_store_box(L);
    /* Its log lines go to the Lua handler or the host's (rs_log_lua.c). */
    rs_config *logged = rs_lua_logged_config(cfg);
    if (!logged) return luaL_error(L, "out of memory");
    rs_error err = {0};
    *slot = rs_store_open(logged, &err);
    rs_config_free(logged);
    if (!*slot) return rs_lua_raise(L, &err);
    return 1;
}

void rs_lua_store_track(lua_State *L, int store, int obj, lua_CFunction close)
{
    obj = lua_absindex(L, obj);
    if (lua_getiuservalue(L, store, 1) == LUA_TTABLE) {
        lua_pushvalue(L, obj);
        lua_pushcfunction(L, close);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

/* Calls the close function of every object tracked by the store at 1. */
static void close_tracked(lua_State *L)
{
    if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);     /* close(object); pops both, the key stays */
    }
    lua_pop(L, 1);
}

static int store_close(lua_State *L)
{
    store_box *box = luaL_checkudata(L, 1, STORE_MT);
    if (box->store) close_tracked(L);   /* their threads use the store */
    rs_store_close(box->store);
    box->store = NULL;
    return 0;
}

static int store_tostring(lua_State *L)
{
    store_box *box = luaL_checkudata(L, 1, STORE_MT);
    if (!box->store) {
        lua_pushliteral(L, "rigatoni_store.store (closed)");
        return 1;
    }
    char url[512];
    rs_config_get(rs_store_config(box->store), "url", url, sizeof url);
    lua_pushfstring(L, "rigatoni_store.store (%s)", url);
    return 1;
}

/* ---------------------------------------------------------------------
 * The lease's fenced save (the store's own token operations are in
 * rs_token_lua.c)
 * ------------------------------------------------------------------ */

int rs_lua_save_token(lua_State *L, rs_store *store, int coll_idx, int token_idx,
                      const char *lock_key, const char *owner)
{
    size_t coll_len;
    const char *coll = rs_lua_check_collection(L, coll_idx, &coll_len);
    if (!lua_istable(L, token_idx))
        rs_lua_raisef(L, RS_ERR_SERIALIZATION, "token must be a table, got %s",
                      luaL_typename(L, token_idx));
    size_t len;
    const char *bytes = (const char *)rs_lua_bson_encode(L, token_idx, &len);  /* guard pushed */
    rs_error err = {0};
    int rc = lock_key ? rs_save_fenced(store, coll, coll_len, bytes, len, lock_key, owner, &err)
                      : rs_save_raw(store, coll, coll_len, bytes, len, RS_TTL_DEFAULT, &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    lua_pop(L, 1);
    return 0;
}

static const luaL_Reg store_methods[] = {
    {"close", store_close},
    {NULL, NULL},
};

static const luaL_Reg store_meta[] = {
    {"__gc", store_close},
    {"__close", store_close},
    {"__tostring", store_tostring},
    {NULL, NULL},
};

/* A method wrapped so that the log lines queued for the Lua log handler
 * reach it on entry and on return (rs_log_lua.c). Upvalue 1: the method,
 * a C function without upvalues of its own, called in this frame. */
static int with_log_drain(lua_State *L)
{
    lua_CFunction method = lua_tocfunction(L, lua_upvalueindex(1));
    rs_lua_log_drain(L);
    int n = method(L);
    rs_lua_log_drain(L);
    return n;
}

static void wrap_methods(lua_State *L, int table)
{
    lua_pushnil(L);
    while (lua_next(L, table)) {
        if (lua_iscfunction(L, -1) && lua_getupvalue(L, -1, 1)) {
            lua_pop(L, 1);             /* a closure (an operation) drains by itself */
        } else if (lua_iscfunction(L, -1)) {
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_pushcclosure(L, with_log_drain, 1);
            lua_rawset(L, table);      /* replacing an existing field is allowed in lua_next */
        }
        lua_pop(L, 1);
    }
}

void rs_lua_open_store(lua_State *L, const rs_lua_add_methods_fn parts[])
{
    luaL_newmetatable(L, STORE_MT);
    luaL_setfuncs(L, store_meta, 0);
    luaL_newlib(L, store_methods);
    for (size_t i = 0; parts[i]; i++) parts[i](L);
    wrap_methods(L, lua_gettop(L));
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
