/* SPDX-License-Identifier: MIT */
/* rs_store_lua.c -- the store userdata: resume-token operations for Lua.
 *
 * The userdata is created closed (store == NULL) before the core store is
 * opened, so a failure half-way leaves nothing dangling; __gc and __close
 * share one idempotent close, and a closed store raises "attempt to use a
 * closed store". Listing is a generic-for iterator over a scan userdata
 * that is also the loop's closing value: breaking out of the loop frees it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rs_lua.h"

#define STORE_MT "rigatoni_store.store"
#define SCAN_MT "rigatoni_store.scan"

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

static rs_store *check_store(lua_State *L)
{
    return rs_lua_check_store(L, 1);
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

/* Collection names: non-empty strings. Raises a serialization error. */
static const char *check_collection(lua_State *L, int idx, size_t *len)
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
    char prefix[512];
    rs_config_get(rs_store_config(store), "key_prefix", prefix, sizeof prefix);
    lua_pushstring(L, prefix);
    lua_pushliteral(L, ":");
    lua_pushlstring(L, coll, len);
    lua_concat(L, 3);
}

/* Decodes stored token bytes and pushes the table; on corrupt bytes pushes
 * nil and returns 0 with `err` naming the key. */
static int push_token(lua_State *L, rs_store *store, const char *coll, size_t coll_len,
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

/* The optional ttl argument of save_raw: nil = configured, false = none. */
static double opt_ttl(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return RS_TTL_DEFAULT;
    if (lua_isboolean(L, idx) && !lua_toboolean(L, idx)) return RS_TTL_NONE;
    if (!lua_isnumber(L, idx))
        rs_lua_raisef(L, RS_ERR_CONFIG, "ttl must be a number of seconds, false or nil");
    double ttl = lua_tonumber(L, idx);
    if (!(ttl >= 0)) rs_lua_raisef(L, RS_ERR_CONFIG, "ttl must not be negative");
    return ttl == 0 ? RS_TTL_NONE : ttl;
}

/* A listed TTL: seconds, nil without TTL, false when unknown (NAN: the
 * server refused PTTL). */
static void push_ttl(lua_State *L, double ttl)
{
    if (isnan(ttl)) lua_pushboolean(L, 0);
    else if (ttl < 0) lua_pushnil(L);
    else lua_pushnumber(L, ttl);
}

/* ---------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------ */

int rs_lua_store_open(lua_State *L, const rs_config *cfg)
{
    store_box *box = lua_newuserdatauv(L, sizeof *box, 1);
    box->store = NULL;
    luaL_setmetatable(L, STORE_MT);
    /* user value 1: the store's open walks (weak keys), closed with it */
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setiuservalue(L, -2, 1);
    rs_error err = {0};
    box->store = rs_store_open(cfg, &err);
    if (!box->store) return rs_lua_raise(L, &err);
    return 1;
}

static void close_walks(lua_State *L, int store);

static int store_close(lua_State *L)
{
    store_box *box = luaL_checkudata(L, 1, STORE_MT);
    if (box->store) close_walks(L, 1);   /* their read-ahead threads use the store */
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
 * Token operations
 * ------------------------------------------------------------------ */

static int store_save_raw(lua_State *L)
{
    rs_store *store = check_store(L);
    size_t coll_len, len;
    const char *coll = check_collection(L, 2, &coll_len);
    if (lua_type(L, 3) != LUA_TSTRING)
        rs_lua_raisef(L, RS_ERR_SERIALIZATION, "raw token must be a string, got %s",
                      luaL_typename(L, 3));
    const char *bytes = lua_tolstring(L, 3, &len);
    double ttl = opt_ttl(L, 4);
    rs_error err = {0};
    if (rs_save_raw(store, coll, coll_len, bytes, len, ttl, &err) < 0) return rs_lua_raise(L, &err);
    return 0;
}

int rs_lua_save_token(lua_State *L, rs_store *store, int coll_idx, int token_idx,
                      const char *lock_key, const char *owner)
{
    size_t coll_len;
    const char *coll = check_collection(L, coll_idx, &coll_len);
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

/* store:save_resume_token(c, token [, {lock = key, owner = id}]) -- with a
 * lock, the save is fenced: written only while `owner` holds `lock`. */
static int store_save_resume_token(lua_State *L)
{
    rs_store *store = check_store(L);
    static const char *const known[] = {"lock", "owner", NULL};
    const char *lock_key = NULL, *owner = NULL;
    if (rs_lua_check_options(L, 4, known)) {
        if (rs_lua_opt_field(L, 4, "lock", RS_LUA_TCSTRING)) lock_key = lua_tostring(L, -1);
        if (rs_lua_opt_field(L, 4, "owner", RS_LUA_TCSTRING)) owner = lua_tostring(L, -1);
        if (!lock_key != !owner)
            rs_lua_raisef(L, RS_ERR_CONFIG, "a fenced save needs both lock and owner");
    }
    return rs_lua_save_token(L, store, 2, 3, lock_key, owner);
}

/* Reads raw bytes into a Lua string; returns 0 when absent. */
static int fetch_raw(lua_State *L, rs_store *store, const char *coll, size_t coll_len)
{
    char **bytes = rs_lua_push_result(L);
    size_t len;
    rs_error err = {0};
    int rc = rs_get_raw(store, coll, coll_len, bytes, &len, &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    if (rc == 0) {
        lua_pop(L, 1);
        return 0;
    }
    rs_lua_result_to_string(L, bytes, len);
    return 1;
}

static int store_get_raw(lua_State *L)
{
    rs_store *store = check_store(L);
    size_t coll_len;
    const char *coll = check_collection(L, 2, &coll_len);
    if (!fetch_raw(L, store, coll, coll_len)) lua_pushnil(L);
    return 1;
}

static int store_get_resume_token(lua_State *L)
{
    rs_store *store = check_store(L);
    size_t coll_len, len;
    const char *coll = check_collection(L, 2, &coll_len);
    if (!fetch_raw(L, store, coll, coll_len)) {
        lua_pushnil(L);
        return 1;
    }
    const char *bytes = lua_tolstring(L, -1, &len);
    rs_error err = {0};
    if (!push_token(L, store, coll, coll_len, bytes, len, &err)) return rs_lua_raise(L, &err);
    return 1;
}

/* store:delete_resume_token(c [, {if_value = bytes}]) -> true if deleted.
 * With if_value, only a token still holding exactly those bytes goes. */
static int store_delete_resume_token(lua_State *L)
{
    rs_store *store = check_store(L);
    size_t coll_len, len = 0;
    const char *coll = check_collection(L, 2, &coll_len), *expected = NULL;
    static const char *const known[] = {"if_value", NULL};
    if (rs_lua_check_options(L, 3, known) && rs_lua_opt_field(L, 3, "if_value", LUA_TSTRING))
        expected = lua_tolstring(L, -1, &len);
    rs_error err = {0};
    int rc = expected ? rs_delete_if_value(store, coll, coll_len, expected, len, &err)
                      : rs_delete(store, coll, coll_len, &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    lua_pushboolean(L, rc);
    return 1;
}

/* store:ttl(c) -> seconds when it expires, nil without TTL, false when absent. */
static int store_ttl(lua_State *L)
{
    rs_store *store = check_store(L);
    size_t coll_len;
    const char *coll = check_collection(L, 2, &coll_len);
    double seconds;
    rs_error err = {0};
    int rc = rs_ttl(store, coll, coll_len, &seconds, &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    if (rc == 0) lua_pushboolean(L, 0);
    else if (rc == 2) lua_pushnil(L);
    else lua_pushnumber(L, seconds);
    return 1;
}

static int store_ping(lua_State *L)
{
    rs_store *store = check_store(L);
    rs_error err = {0};
    if (rs_ping(store, &err) < 0) return rs_lua_raise(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* A reply tree of the core, owned by a userdata on the stack while it is
 * copied into Lua (freed by __gc if a memory error is raised on the way). */
#define REPLY_MT "rigatoni_store.reply"

static int reply_gc(lua_State *L)
{
    rs_reply **box = luaL_checkudata(L, 1, REPLY_MT);
    rs_reply_free(*box);
    *box = NULL;
    return 0;
}

static rs_reply **push_reply_box(lua_State *L)
{
    rs_reply **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, REPLY_MT)) {
        lua_pushcfunction(L, reply_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return box;
}

/* Pushes a reply as Lua sees it: strings (integers as their decimal text,
 * as at the top), arrays as sequences, maps as tables, a nil element as
 * false (a sequence cannot hold nil; Redis' own Lua does the same) and an
 * error element as {err = message} (Redis' own Lua convention). */
static void push_reply(lua_State *L, const rs_reply *v)
{
    luaL_checkstack(L, 4, "reply nested too deep");
    switch (v->type) {
    case RS_TREE_NIL:
        lua_pushboolean(L, 0);
        break;
    case RS_TREE_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, v->str, v->len);
        lua_setfield(L, -2, "err");
        break;
    case RS_TREE_ARRAY:
        lua_createtable(L, (int)(v->elements < 1000000 ? v->elements : 0), 0);
        for (size_t i = 0; i < v->elements; i++) {
            push_reply(L, &v->element[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case RS_TREE_MAP:
        lua_createtable(L, 0, (int)(v->elements / 2 < 1000000 ? v->elements / 2 : 0));
        for (size_t i = 0; i + 1 < v->elements; i += 2) {
            push_reply(L, &v->element[i]);
            push_reply(L, &v->element[i + 1]);
            lua_rawset(L, -3);
        }
        break;
    default:   /* string, integer */
        lua_pushlstring(L, v->str, v->len);
    }
}

/* Flags from store:command's leading options table, {idempotent = bool}. */
static int command_flags(lua_State *L, int idx)
{
    int flags = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "idempotent") != 0)
            return luaL_argerror(L, idx, "unknown option (known: idempotent)");
        luaL_argcheck(L, lua_isboolean(L, -1), idx, "idempotent must be a boolean");
        if (lua_toboolean(L, -1)) flags |= RS_COMMAND_IDEMPOTENT;
        lua_pop(L, 1);
    }
    return flags;
}

/* store:command([opts,] name, ...) -- one command on a pooled connection;
 * the reply as a string (integers too), nil for a nil reply, a table for
 * an array or map reply (see push_reply). Commands that would change the
 * pooled connection's state (MULTI, SELECT, SUBSCRIBE, ...) raise `config`
 * before anything is sent. Not repeated once it may have run unless
 * opts.idempotent is true. */
static int store_command(lua_State *L)
{
    rs_store *store = check_store(L);
    int first = 2, flags = 0;
    if (lua_type(L, 2) == LUA_TTABLE) flags = command_flags(L, first++);
    int argc = lua_gettop(L) - first + 1;
    if (argc < 1) return luaL_argerror(L, first, "command name expected");
    const char **argv = lua_newuserdatauv(L, (size_t)argc * sizeof *argv, 0);
    size_t *argvlen = lua_newuserdatauv(L, (size_t)argc * sizeof *argvlen, 0);
    for (int i = 0; i < argc; i++) argv[i] = luaL_checklstring(L, i + first, &argvlen[i]);
    rs_reply **box = push_reply_box(L);
    rs_error err = {0};
    if (rs_command_reply(store, argc, argv, argvlen, flags, box, &err) < 0)
        return rs_lua_raise(L, &err);
    if ((*box)->type == RS_TREE_NIL) lua_pushnil(L);
    else push_reply(L, *box);
    rs_reply_free(*box);
    *box = NULL;
    return 1;
}

/* ---------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------ */

/* The length of the batch array at `idx` (__len honoured), bounded before
 * anything is allocated for it. */
#define BATCH_MAX 1000000

static size_t batch_length(lua_State *L, int idx, const char *what)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    if (n < 0 || n > BATCH_MAX)
        rs_lua_raisef(L, RS_ERR_SERIALIZATION, "%s: a batch holds 0 to %d items, not %lld", what,
                      BATCH_MAX, (long long)n);
    return (size_t)n;
}

/* Pushes a table that anchors the strings C points into: lua_geti may run
 * __index, whose fresh values nothing else keeps alive once popped. */
static int push_anchor(lua_State *L, size_t n)
{
    lua_createtable(L, (int)n, 0);
    return lua_gettop(L);
}

/* Collection names of the array at `idx`, in scratch memory owned by the
 * Lua stack (a userdata pushed here), so an error cannot leak them; the
 * names themselves are anchored in a table pushed before it. */
static size_t check_collections(lua_State *L, int idx, const char *what, const char ***names,
                                size_t **lens)
{
    size_t n = batch_length(L, idx, what);
    int anchor = push_anchor(L, n);
    void *mem = lua_newuserdatauv(L, (n ? n : 1) * (sizeof **names + sizeof **lens), 0);
    *names = mem;
    *lens = (size_t *)((char *)mem + (n ? n : 1) * sizeof **names);
    for (size_t i = 0; i < n; i++) {
        lua_geti(L, idx, (lua_Integer)i + 1);
        (*names)[i] = check_collection(L, -1, &(*lens)[i]);
        lua_rawseti(L, anchor, (lua_Integer)i + 1);
    }
    return n;
}

/* The items of a save_many batch at index 2, in scratch memory owned by
 * the Lua stack; their strings are anchored in a table pushed before it.
 * Options at index 3: nx, and read_back when `read_back` is not NULL. */
static size_t check_save_items(lua_State *L, const char *what, rs_save_item **out, int *flags,
                               int *read_back)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    *flags = 0;
    static const char *const save_options[] = {"nx", NULL}, *const job_options[] = {"nx", "read_back", NULL};
    if (rs_lua_check_options(L, 3, read_back ? job_options : save_options)) {
        if (rs_lua_opt_field(L, 3, "nx", LUA_TBOOLEAN) && lua_toboolean(L, -1)) *flags |= RS_SAVE_NX;
        lua_pop(L, 1);
        if (read_back) {
            if (rs_lua_opt_field(L, 3, "read_back", LUA_TBOOLEAN)) *read_back = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    }
    size_t n = batch_length(L, 2, what);
    int anchor = push_anchor(L, 2 * n);
    rs_save_item *items = lua_newuserdatauv(L, (n ? n : 1) * sizeof *items, 0);
    for (size_t i = 0; i < n; i++) {
        if (lua_geti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE)
            rs_lua_raisef(L, RS_ERR_SERIALIZATION, "%s: item %d must be a table", what, (int)i + 1);
        lua_geti(L, -1, 1);
        items[i].collection = check_collection(L, -1, &items[i].collection_len);
        lua_rawseti(L, anchor, 2 * (lua_Integer)i + 1);
        lua_geti(L, -1, 2);
        if (lua_type(L, -1) != LUA_TSTRING)
            rs_lua_raisef(L, RS_ERR_SERIALIZATION, "%s: item %d: bytes must be a string", what,
                          (int)i + 1);
        items[i].bytes = lua_tolstring(L, -1, &items[i].len);
        lua_rawseti(L, anchor, 2 * (lua_Integer)i + 2);
        lua_geti(L, -1, 3);
        double ttl = opt_ttl(L, -1);
        items[i].ttl = ttl == RS_TTL_DEFAULT ? 0 : ttl;
        lua_pop(L, 2);   /* ttl, item */
    }
    *out = items;
    return n;
}

static void push_written(lua_State *L, const int *written, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushboolean(L, written[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* store:save_many({{collection, bytes, ttl_or_nil}, ...} [, {nx = bool}])
 * -> array of booleans (false = skipped by nx). One pipelined round trip.
 * A failure whose every item's outcome is known (an nx batch refused in
 * part) carries them as err.written, booleans as save_many's answer. */
static int store_save_many(lua_State *L)
{
    rs_store *store = check_store(L);
    rs_save_item *items;
    int flags;
    size_t n = check_save_items(L, "save_many", &items, &flags, NULL);
    int *written = lua_newuserdatauv(L, (n ? n : 1) * sizeof *written, 0);
    rs_error err = {0};
    if (rs_save_many(store, items, n, flags, written, &err) < 0) {
        size_t known = 0;
        while (known < n && written[known] >= 0) known++;
        rs_lua_push_error(L, &err);
        if (n > 0 && known == n) {
            push_written(L, written, n);
            lua_setfield(L, -2, "written");
        }
        return lua_error(L);
    }
    push_written(L, written, n);
    return 1;
}

/* The values of get_many, in a userdata whose __gc frees the bytes the
 * core malloc'd: a memory error while they are copied leaks nothing. */
#define VALUES_MT "rigatoni_store.values"

typedef struct values_box {
    size_t n;
    rs_value values[];
} values_box;

static int values_gc(lua_State *L)
{
    values_box *box = luaL_checkudata(L, 1, VALUES_MT);
    rs_values_free(box->values, box->n);
    box->n = 0;
    return 0;
}

/* The box's values as a Lua array: bytes, or false when absent. The box
 * still owns them (a memory error while copying frees them in __gc). */
static void push_values(lua_State *L, const values_box *box)
{
    lua_createtable(L, (int)box->n, 0);
    for (size_t i = 0; i < box->n; i++) {
        if (box->values[i].bytes) lua_pushlstring(L, box->values[i].bytes, box->values[i].len);
        else lua_pushboolean(L, 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* store:get_many(collections [, {ttl = false}]) -> values (bytes or
 * false), ttls (seconds or false; every one false with ttl = false: no
 * PTTL is sent) */
static int store_get_many(lua_State *L)
{
    rs_store *store = check_store(L);
    static const char *const known[] = {"ttl", NULL};
    int with_ttl = 1;
    if (rs_lua_check_options(L, 3, known)) {
        if (rs_lua_opt_field(L, 3, "ttl", LUA_TBOOLEAN)) with_ttl = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    const char **names;
    size_t *lens;
    size_t n = check_collections(L, 2, "get_many", &names, &lens);
    values_box *box = lua_newuserdatauv(L, sizeof *box + (n ? n : 1) * sizeof box->values[0], 0);
    box->n = 0;
    luaL_setmetatable(L, VALUES_MT);
    rs_error err = {0};
    int rc = with_ttl ? rs_get_many(store, names, lens, n, box->values, &err)
                      : rs_get_many_values(store, names, lens, n, box->values, &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    box->n = n;
    push_values(L, box);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        if (box->values[i].ttl >= 0) lua_pushnumber(L, box->values[i].ttl);
        else lua_pushboolean(L, 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    rs_values_free(box->values, n);
    box->n = 0;
    return 2;
}

/* A save job (store:start_save_many): the core's job until job:wait()
 * finishes it; __gc finishes one never waited for. Uservalue 1: the
 * store, alive while its job runs. */
#define SAVE_JOB_MT "rigatoni_store.save_job"

typedef struct job_box {
    rs_save_job *job;
    size_t n;
    int read_back;
} job_box;

static int job_gc(lua_State *L)
{
    job_box *box = luaL_checkudata(L, 1, SAVE_JOB_MT);
    if (!box->job) return 0;
    rs_error err = {0};
    rs_save_many_finish(box->job, NULL, NULL, &err);   /* its outcome is nobody's now */
    box->job = NULL;
    return 0;
}

/* store:start_save_many(items [, {nx = bool, read_back = bool}]) -> job:
 * save_many's write (and with read_back an MGET of the same names) on a
 * thread of its own; job:wait() gives what save_many (and get_many's
 * values, with {ttl = false}) would have. */
static int store_start_save_many(lua_State *L)
{
    rs_store *store = check_store(L);
    rs_save_item *items;
    int flags, read_back = 0;
    size_t n = check_save_items(L, "start_save_many", &items, &flags, &read_back);
    job_box *box = lua_newuserdatauv(L, sizeof *box, 1);
    box->job = NULL;
    box->n = n;
    box->read_back = read_back;
    luaL_setmetatable(L, SAVE_JOB_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    rs_error err = {0};
    if (!(box->job = rs_save_many_start(store, items, n, flags, read_back, &err)))
        return rs_lua_raise(L, &err);
    return 1;
}

/* job:wait() -> written (as save_many's) [, values (as get_many's, with
 * read_back)]. Raises the job's error; a job is waited for once. */
static int job_wait(lua_State *L)
{
    job_box *box = luaL_checkudata(L, 1, SAVE_JOB_MT);
    if (!box->job) return luaL_error(L, "this save job was already waited for");
    size_t n = box->n;
    int *written = lua_newuserdatauv(L, (n ? n : 1) * sizeof *written, 0);
    values_box *values = lua_newuserdatauv(L, sizeof *values + (n ? n : 1) * sizeof values->values[0], 0);
    values->n = 0;
    luaL_setmetatable(L, VALUES_MT);
    rs_error err = {0};
    int rc = rs_save_many_finish(box->job, written, box->read_back ? values->values : NULL, &err);
    box->job = NULL;
    rs_lua_log_drain(L);
    if (rc < 0) return rs_lua_raise(L, &err);
    if (box->read_back) values->n = n;
    push_written(L, written, n);
    if (!box->read_back) return 1;
    push_values(L, values);
    rs_values_free(values->values, n);
    values->n = 0;
    return 2;
}

/* store:delete_many(collections) -> number deleted */
static int store_delete_many(lua_State *L)
{
    rs_store *store = check_store(L);
    const char **names;
    size_t *lens;
    size_t n = check_collections(L, 2, "delete_many", &names, &lens);
    rs_error err = {0};
    long long deleted = rs_delete_many(store, names, lens, n, &err);
    if (deleted < 0) return rs_lua_raise(L, &err);
    lua_pushinteger(L, (lua_Integer)deleted);
    return 1;
}

/* store:expire(c, seconds) -> true when a token without TTL got one */
static int store_expire(lua_State *L)
{
    rs_store *store = check_store(L);
    size_t coll_len;
    const char *coll = check_collection(L, 2, &coll_len);
    double ttl = luaL_checknumber(L, 3);
    rs_error err = {0};
    int rc = rs_expire(store, coll, coll_len, ttl, &err);
    if (rc < 0) return rs_lua_raise(L, &err);
    lua_pushboolean(L, rc);
    return 1;
}

/* ---------------------------------------------------------------------
 * Listing
 * ------------------------------------------------------------------ */

enum { LINES_NONE, LINES_LIST, LINES_EXPORT };

typedef struct scan_box {
    rs_scan *scan;
    int orphaned;         /* its store was closed during the walk */
    int raw;
    int lines;            /* token_lines: LINES_LIST or LINES_EXPORT */
    double now;           /* token_lines: ages are counted from it */
    rs_rowbuf buf;        /* token_lines: a batch's text, reused */
    int counts;           /* registry ref of the counts table, or LUA_NOREF */
    size_t not_strings;   /* the count last written there */
} scan_box;               /* user value 1: token_lines' mirrors table */

static int scan_close(lua_State *L)
{
    scan_box *box = luaL_checkudata(L, 1, SCAN_MT);
    rs_scan_close(box->scan);
    box->scan = NULL;
    rs_rowbuf_free(&box->buf);
    luaL_unref(L, LUA_REGISTRYINDEX, box->counts);
    box->counts = LUA_NOREF;
    return 0;
}

/* The walk's counts table, when it has one, gets `not_strings`: keys met
 * whose value is not a string (not tokens), skipped. Written when the
 * count changed, and at the walk's end or failure. */
static void write_counts(lua_State *L, scan_box *box, int force)
{
    size_t n = box->scan ? rs_scan_not_strings(box->scan) : box->not_strings;
    if (box->counts == LUA_NOREF || (n == box->not_strings && !force)) return;
    box->not_strings = n;
    lua_rawgeti(L, LUA_REGISTRYINDEX, box->counts);
    lua_pushinteger(L, (lua_Integer)n);
    lua_setfield(L, -2, "not_strings");
    lua_pop(L, 1);
}

/* Closes the walks of the store at `store` (its user value 1): a walk
 * used afterwards raises instead of reading a freed store. */
static void close_walks(lua_State *L, int store)
{
    if (lua_getiuservalue(L, store, 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        scan_box *box = luaL_testudata(L, -1, SCAN_MT);
        if (box && box->scan) {
            rs_scan_close(box->scan);
            box->scan = NULL;
            box->orphaned = 1;
            rs_rowbuf_free(&box->buf);
        }
    }
    lua_pop(L, 1);
}

/* The options of resume_tokens and list_resume_tokens. */
static const char *const list_options[] = {"match", "batch", "raw", "ttl", "counts", NULL};

/* Opens a scan from an options table at `idx` {match=, batch=, raw=, ttl=,
 * counts=}; pushes the scan userdata. The store must stay at index 1. */
static scan_box *open_scan(lua_State *L, rs_store *store, int idx, const char *key_pattern)
{
    const char *match = "*";
    lua_Integer batch = 0;
    int raw = 0, with_ttl = 1;
    int opts = !lua_isnoneornil(L, idx);   /* before pushing: idx may be past the top */
    if (opts) {   /* keys checked by the caller */
        if (rs_lua_opt_field(L, idx, "match", RS_LUA_TCSTRING)) match = lua_tostring(L, -1);
        if (rs_lua_opt_field(L, idx, "batch", RS_LUA_TINTEGER)) batch = lua_tointeger(L, -1);
        raw = rs_lua_opt_field(L, idx, "raw", LUA_TBOOLEAN) && lua_toboolean(L, -1);
        if (rs_lua_opt_field(L, idx, "ttl", LUA_TBOOLEAN)) with_ttl = lua_toboolean(L, -1);
        lua_pop(L, 2);   /* keep match and batch reachable (match is a string) */
        if (batch < 0 || batch > 1000000)
            rs_lua_raisef(L, RS_ERR_CONFIG, "batch must be between 1 and 1000000");
    }
    scan_box *box = lua_newuserdatauv(L, sizeof *box, 1);
    memset(box, 0, sizeof *box);
    box->raw = raw;
    box->counts = LUA_NOREF;
    luaL_setmetatable(L, SCAN_MT);
    if (opts) {
        if (rs_lua_opt_field(L, idx, "counts", LUA_TTABLE)) {
            box->counts = luaL_ref(L, LUA_REGISTRYINDEX);
            write_counts(L, box, 1);          /* 0 from the start */
        } else {
            lua_pop(L, 1);
        }
    }
    rs_error err = {0};
    box->scan = key_pattern ? rs_scan_keys_open(store, key_pattern, (size_t)batch, with_ttl, &err)
                            : rs_scan_open(store, match, (size_t)batch, with_ttl, &err);
    if (!box->scan) rs_lua_raise(L, &err);
    if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {   /* the store's open walks */
        lua_pushvalue(L, -2);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
    return box;
}

/* The next entry of the box's walk: 1, or 0 at the end (the scan and the
 * row buffer are released then); raises when the walk failed. */
static int box_next(lua_State *L, scan_box *box, rs_scan_entry *e)
{
    if (box->orphaned) return luaL_error(L, "attempt to use a walk of a closed store");
    if (!box->scan) return 0;
    rs_error err = {0};
    int rc = rs_scan_next(box->scan, e, &err);
    write_counts(L, box, 0);
    if (rc < 0) return rs_lua_raise(L, &err);
    if (rc == 0) {
        rs_scan_close(box->scan);
        box->scan = NULL;
        rs_rowbuf_free(&box->buf);
    }
    return rc;
}

/* Pushes collection, token (or raw bytes), ttl[, error]; returns the count,
 * or 0 at the end. */
static int scan_step(lua_State *L, rs_store *store, scan_box *box)
{
    rs_scan_entry e;
    rs_error err = {0};
    if (!box_next(L, box, &e)) return 0;
    lua_pushlstring(L, e.collection, e.collection_len);
    if (box->raw) {
        lua_pushlstring(L, e.value, e.value_len);
        push_ttl(L, e.ttl);
        return 3;
    }
    int ok = push_token(L, store, e.collection, e.collection_len, e.value, e.value_len, &err);
    push_ttl(L, e.ttl);
    if (ok) return 3;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, rs_error_kind_name(err.kind));
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, err.message);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "retryable");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "attempts");
    luaL_setmetatable(L, "rigatoni_store.error");
    return 4;
}

/* Iterator function: upvalue 1 = store userdata; state = scan userdata. */
static int tokens_iter(lua_State *L)
{
    scan_box *box = luaL_checkudata(L, 1, SCAN_MT);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_replace(L, 1);
    rs_store *store = check_store(L);
    int n = scan_step(L, store, box);
    return n ? n : (lua_pushnil(L), 1);
}

/* The generic-for values of a walk whose scan userdata is on top and
 * whose store is at index 1: iter (the store as its upvalue, kept alive),
 * the scan as state, nil, and the scan again as the closing value. */
static int push_walk(lua_State *L, lua_CFunction iter)
{
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, iter, 1);
    lua_insert(L, -2);        /* iter, scan */
    lua_pushnil(L);           /* initial control value */
    lua_pushvalue(L, -2);     /* closing value: the scan */
    return 4;
}

/* for collection, token, ttl[, err] in store:resume_tokens{...} do */
static int store_resume_tokens(lua_State *L)
{
    rs_store *store = check_store(L);
    rs_lua_check_options(L, 2, list_options);
    open_scan(L, store, 2, NULL);
    return push_walk(L, tokens_iter);
}

/* token_lines: the text of one batch, rows and bad of it, and for export
 * the skipped values ({collection, message} each) or nil. Stack: 1 = the
 * scan, 2 = the mirrors table (or nil). */
static int lines_batch(lua_State *L, scan_box *box, rs_scan_entry *e)
{
    int mirrors = 0, skipped = 0;
    lua_Integer rows = 0, bad = 0;
    if (lua_istable(L, 2)) {                 /* looked up only when not empty */
        lua_pushnil(L);
        if (lua_next(L, 2)) {
            lua_pop(L, 2);
            mirrors = 2;
        }
    }
    box->buf.len = 0;
    do {
        if (box->lines == LINES_LIST) {
            int mirror_of = 0;
            if (mirrors) {
                lua_pushlstring(L, e->collection, e->collection_len);
                if (lua_rawget(L, mirrors) == LUA_TTABLE) mirror_of = lua_gettop(L);
                else lua_pop(L, 1);
            }
            bad += rs_rows_list(L, &box->buf, e, box->now, mirror_of, 1);
            if (mirror_of) lua_pop(L, 1);
            rows++;
        } else {
            rs_error why;
            if (isnan(e->ttl)) {             /* an export without TTLs would lose them */
                rs_rowbuf_free(&box->buf);
                return rs_lua_raisef(L, RS_ERR_AUTH, "export: the server refused PTTL, so TTLs "
                                     "are unknown; run it as a user that may run PTTL");
            }
            if (rs_rows_export(&box->buf, e, &why) == 0) {
                rows++;
                continue;
            }
            bad++;
            if (!skipped) {
                lua_newtable(L);
                skipped = lua_gettop(L);
            }
            lua_createtable(L, 2, 0);
            lua_pushlstring(L, e->collection, e->collection_len);
            lua_rawseti(L, -2, 1);
            lua_pushstring(L, why.message);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, skipped, bad);
        }
    } while (rs_scan_next_buffered(box->scan, e));
    if (box->buf.oom) {
        rs_rowbuf_free(&box->buf);
        return rs_lua_raisef(L, RS_ERR_NOMEM, "out of memory");
    }
    lua_pushlstring(L, box->buf.data ? box->buf.data : "", box->buf.len);
    lua_pushinteger(L, rows);
    lua_pushinteger(L, bad);
    if (skipped) lua_pushvalue(L, skipped);
    else lua_pushnil(L);
    return 4;
}

/* Iterator function of token_lines: upvalue 1 = store (kept alive). */
static int lines_iter(lua_State *L)
{
    scan_box *box = luaL_checkudata(L, 1, SCAN_MT);
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 1);
    rs_scan_entry e;
    if (!box_next(L, box, &e)) return lua_pushnil(L), 1;
    return lines_batch(L, box, &e);
}

/* for text, rows, bad, skipped in store:token_lines{format = "list" |
 * "export", match =, batch =, now =, mirrors =} do -- the walk of
 * resume_tokens, one batch per step, formatted in C (rs_rows_lua.c):
 * "list" = the JSON rows of `list --format jsonl`, each ended by "\n"
 * (bad = corrupt values, listed with their error; now = the time ages
 * count from, default the clock; mirrors = collection -> names it
 * mirrors), "export" = export lines (bad = values skipped, not BSON;
 * skipped = {collection, message} each, else nil). */
static int store_token_lines(lua_State *L)
{
    static const char *const known[] = {"match", "batch", "format", "now", "mirrors", "counts", NULL};
    rs_store *store = check_store(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    rs_lua_check_options(L, 2, known);
    int lines = LINES_NONE;
    if (rs_lua_opt_field(L, 2, "format", RS_LUA_TCSTRING)) {
        const char *f = lua_tostring(L, -1);
        lines = strcmp(f, "list") == 0 ? LINES_LIST : strcmp(f, "export") == 0 ? LINES_EXPORT : 0;
    }
    if (lines == LINES_NONE)
        return rs_lua_raisef(L, RS_ERR_CONFIG, "token_lines: format must be \"list\" or \"export\"");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (rs_lua_opt_field(L, 2, "now", LUA_TNUMBER)) now = lua_tonumber(L, -1);
    rs_lua_opt_field(L, 2, "mirrors", LUA_TTABLE);
    int mirrors = lua_gettop(L);
    scan_box *box = open_scan(L, store, 2, NULL);
    box->lines = lines;
    box->now = now;
    lua_pushvalue(L, mirrors);
    lua_setiuservalue(L, -2, 1);
    return push_walk(L, lines_iter);
}

/* Iterator function of token_batches: upvalue 1 = store (kept alive). */
static int batches_iter(lua_State *L)
{
    scan_box *box = luaL_checkudata(L, 1, SCAN_MT);
    lua_settop(L, 1);
    rs_scan_entry e;
    if (!box_next(L, box, &e)) return lua_pushnil(L), 1;
    lua_Integer n = 0;
    for (int t = 0; t < 4; t++) lua_createtable(L, 1000, 0);   /* 2..5 */
    do {
        n++;
        lua_pushlstring(L, e.collection, e.collection_len);
        lua_rawseti(L, 2, n);
        lua_pushlstring(L, e.value, e.value_len);
        lua_rawseti(L, 3, n);
        if (!(e.ttl < 0)) {                  /* no TTL: nil, a hole in the array */
            push_ttl(L, e.ttl);
            lua_rawseti(L, 4, n);
        }
        uint32_t seconds, increment;
        if (rs_token_cluster_time(e.value, e.value_len, &seconds, &increment))
            lua_pushinteger(L, (lua_Integer)seconds);
        else
            lua_pushboolean(L, 0);
        lua_rawseti(L, 5, n);
    } while (rs_scan_next_buffered(box->scan, &e));
    lua_pushinteger(L, n);
    return 5;
}

/* for names, values, ttls, times, n in store:token_batches{match =, batch =,
 * ttl =} do -- the walk of resume_tokens (raw bytes), a batch per step as
 * arrays 1..n: collection names, values, TTLs (as resume_tokens: nil =
 * none, false = unknown) and cluster times (rs.token_time's seconds, or
 * false). For tools that decide about every token: one call per batch,
 * not per token. */
static int store_token_batches(lua_State *L)
{
    rs_store *store = check_store(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    static const char *const known[] = {"match", "batch", "ttl", "counts", NULL};
    rs_lua_check_options(L, 2, known);
    open_scan(L, store, 2, NULL);
    return push_walk(L, batches_iter);
}

/* for key, value, ttl in store:scan_keys(pattern [, {batch=}]) do -- any
 * key family, e.g. "rigatoni:lock:*"; values are raw strings. */
static int store_scan_keys(lua_State *L)
{
    rs_store *store = check_store(L);
    const char *pattern = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    static const char *const known[] = {"batch", "ttl", "counts", NULL};
    rs_lua_check_options(L, 3, known);
    scan_box *box = open_scan(L, store, 3, pattern);
    box->raw = 1;
    return push_walk(L, tokens_iter);
}

/* store:list_resume_tokens{...} -> tokens, errors (both keyed by collection) */
static int store_list_resume_tokens(lua_State *L)
{
    rs_store *store = check_store(L);
    lua_settop(L, 2);
    rs_lua_check_options(L, 2, list_options);
    scan_box *box = open_scan(L, store, 2, NULL);
    lua_newtable(L);
    int tokens = lua_gettop(L);
    lua_newtable(L);
    int errors = lua_gettop(L);
    int n;
    while ((n = scan_step(L, store, box)) > 0) {
        int base = lua_gettop(L) - n;         /* collection at base + 1 */
        if (n == 4) {
            lua_pushvalue(L, base + 1);
            lua_getfield(L, base + 4, "message");
            lua_rawset(L, errors);
        } else {
            lua_pushvalue(L, base + 1);
            lua_pushvalue(L, base + 2);
            lua_rawset(L, tokens);
        }
        lua_settop(L, errors);
    }
    rs_scan_close(box->scan);    /* scan_step closes it at the end; errors raise */
    box->scan = NULL;
    return 2;
}

/* ---------------------------------------------------------------------
 * Stats
 * ------------------------------------------------------------------ */

static void set_integer(lua_State *L, const char *key, uint64_t value)
{
    lua_pushinteger(L, (lua_Integer)value);
    lua_setfield(L, -2, key);
}

static void set_number(lua_State *L, const char *key, double value)
{
    lua_pushnumber(L, value);
    lua_setfield(L, -2, key);
}

static void push_op_metrics(lua_State *L, const rs_op_metrics *o, int with_buckets)
{
    lua_createtable(L, 0, 11);
    set_integer(L, "count", o->count);
    set_integer(L, "failed", o->failed);
    lua_newtable(L);
    for (int e = 1; e < RS_METRICS_ERROR_KINDS; e++)
        if (o->errors[e]) set_integer(L, rs_error_kind_name((rs_error_kind)e), o->errors[e]);
    lua_setfield(L, -2, "errors");
    set_integer(L, "retries", o->retries);
    set_number(L, "p50", o->p50);
    set_number(L, "p95", o->p95);
    set_number(L, "p99", o->p99);
    set_number(L, "max", o->max_seconds);
    set_number(L, "sum", o->sum_seconds);
    if (with_buckets) {
        lua_createtable(L, RS_METRICS_BUCKETS, 0);
        for (int k = 0; k < RS_METRICS_BUCKETS; k++) {
            lua_createtable(L, 0, 2);
            set_number(L, "le", rs_metrics_bucket_bound(k));
            set_integer(L, "count", o->buckets[k]);
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -2, "buckets");
    }
}

/* store:stats([{buckets = true}]) -> { pool = {...}, ops = {save = {...}, ...},
 * failovers = n, cluster = {moved, ask, refreshes}, metrics = bool }.
 * Counters run since open or reset_stats(); durations are seconds. */
static int store_stats(lua_State *L)
{
    rs_store *store = check_store(L);
    int with_buckets = 0;
    static const char *const known[] = {"buckets", NULL};
    if (rs_lua_check_options(L, 2, known)) {
        with_buckets = rs_lua_opt_field(L, 2, "buckets", LUA_TBOOLEAN) && lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    rs_metrics_snapshot m;
    rs_store_metrics(store, &m);
    const rs_pool_stats *s = &m.pool;
    lua_createtable(L, 0, 5);
    lua_createtable(L, 0, 12);
    set_integer(L, "size", (uint64_t)s->size);
    set_integer(L, "open", (uint64_t)s->open);
    set_integer(L, "in_use", (uint64_t)s->in_use);
    set_integer(L, "idle", (uint64_t)s->idle);
    set_integer(L, "created", s->created);
    set_integer(L, "closed", s->closed_broken + s->closed_idle);
    set_integer(L, "closed_broken", s->closed_broken);
    set_integer(L, "closed_idle", s->closed_idle);
    set_integer(L, "waits", s->waits);
    set_integer(L, "wait_timeouts", s->wait_timeouts);
    set_number(L, "wait_seconds", s->wait_seconds);
    lua_setfield(L, -2, "pool");
    lua_createtable(L, 0, RS_METRICS_OPS);
    for (int op = 0; op < RS_METRICS_OPS; op++) {
        push_op_metrics(L, &m.ops[op], with_buckets);
        lua_setfield(L, -2, rs_metrics_op_name(op));
    }
    lua_setfield(L, -2, "ops");
    set_integer(L, "failovers", m.failovers);
    lua_createtable(L, 0, 3);
    set_integer(L, "moved", m.cluster_moved);
    set_integer(L, "ask", m.cluster_ask);
    set_integer(L, "refreshes", m.cluster_refreshes);
    lua_setfield(L, -2, "cluster");
    lua_pushboolean(L, m.enabled);
    lua_setfield(L, -2, "metrics");
    return 1;
}

/* store:reset_stats() -- every counter back to zero. */
static int store_reset_stats(lua_State *L)
{
    rs_store_metrics_reset(check_store(L));
    return 0;
}

/* store:prometheus() -> the metrics in the Prometheus text format. */
static int store_prometheus(lua_State *L)
{
    rs_metrics_snapshot m;
    rs_store_metrics(check_store(L), &m);
    char **text = rs_lua_push_result(L);
    if (!(*text = rs_metrics_prometheus(&m))) return luaL_error(L, "out of memory");
    rs_lua_result_to_string(L, text, strlen(*text));
    return 1;
}

/* store:server_identity() -> {db = n, masters = {{run_id =, replid =}, ...}}:
 * what the servers say they are (INFO), to tell two stores apart. The
 * buffer is a userdata, so a raised error cannot leak it. */
#define IDENTITY_MAX_MASTERS 1024
static int store_server_identity(lua_State *L)
{
    rs_store *store = check_store(L);
    rs_master_identity *masters =
        lua_newuserdatauv(L, IDENTITY_MAX_MASTERS * sizeof *masters, 0);
    int db;
    rs_error err = {0};
    int n = rs_store_identity(store, masters, IDENTITY_MAX_MASTERS, &db, &err);
    if (n < 0) return rs_lua_raise(L, &err);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, db);
    lua_setfield(L, -2, "db");
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, masters[i].run_id);
        lua_setfield(L, -2, "run_id");
        lua_pushstring(L, masters[i].replid);
        lua_setfield(L, -2, "replid");
        lua_pushinteger(L, masters[i].replicas);
        lua_setfield(L, -2, "replicas");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "masters");
    return 1;
}

/* store:master_changes() -> how many times the store saw its Sentinel
 * master change (0 otherwise); it never goes back */
static int store_master_changes(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)rs_store_master_changes(check_store(L)));
    return 1;
}

/* store:confirm_writes([replicas [, timeout]]) -> how many replicas have
 * every write the master acknowledged so far (at most `replicas`, default
 * 1; waits at most timeout, default wait_timeout) */
static int store_confirm_writes(lua_State *L)
{
    rs_store *store = check_store(L);
    lua_Integer replicas = luaL_optinteger(L, 2, 1);
    luaL_argcheck(L, replicas >= 1 && replicas <= 1000, 2, "replicas must be 1..1000");
    double timeout = luaL_optnumber(L, 3, 0);   /* 0: the store's wait_timeout */
    rs_error err = {0};
    int n = rs_store_confirm_writes(store, (int)replicas, timeout, &err);
    if (n < 0) return rs_lua_raise(L, &err);
    lua_pushinteger(L, n);
    return 1;
}

/* store:server_figures() -> {{node =, dbsize =, used_memory =,
 * used_memory_human =, redis_version =}, ...}: one per master (a cluster's
 * every master, node = "host:port"; else one, node = nil); a figure the
 * server refused is nil. The buffer is a userdata, so a raised error
 * cannot leak it. */
static int store_server_figures(lua_State *L)
{
    rs_store *store = check_store(L);
    rs_node_figures *nodes = lua_newuserdatauv(L, IDENTITY_MAX_MASTERS * sizeof *nodes, 0);
    rs_error err = {0};
    int n = rs_store_node_figures(store, nodes, IDENTITY_MAX_MASTERS, &err);
    if (n < 0) return rs_lua_raise(L, &err);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const rs_node_figures *f = &nodes[i];
        lua_createtable(L, 0, 5);
        if (f->node[0]) lua_pushstring(L, f->node), lua_setfield(L, -2, "node");
        if (f->dbsize >= 0) lua_pushinteger(L, f->dbsize), lua_setfield(L, -2, "dbsize");
        if (f->used_memory >= 0) lua_pushinteger(L, f->used_memory), lua_setfield(L, -2, "used_memory");
        if (f->used_memory_human[0])
            lua_pushstring(L, f->used_memory_human), lua_setfield(L, -2, "used_memory_human");
        if (f->redis_version[0])
            lua_pushstring(L, f->redis_version), lua_setfield(L, -2, "redis_version");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* store:node_info() -> {{node = "host:port" (a cluster only), info = text}, ...}:
 * INFO of every master (rs_store_node_info), for `serve`. The texts wait
 * in a userdata whose __gc frees them, so a raised error leaks none. */
#define NODE_INFO_MAX 1024
#define NODE_INFO_MT "rigatoni_store.node_info_buffer"
typedef struct node_info_buffer {
    size_t n;
    rs_node_info nodes[NODE_INFO_MAX];
} node_info_buffer;

static int node_info_buffer_gc(lua_State *L)
{
    node_info_buffer *buf = lua_touserdata(L, 1);
    for (size_t i = 0; i < buf->n; i++) rs_free(buf->nodes[i].info);
    buf->n = 0;
    return 0;
}

static int store_node_info(lua_State *L)
{
    rs_store *store = check_store(L);
    node_info_buffer *buf = lua_newuserdatauv(L, sizeof *buf, 0);
    buf->n = 0;
    if (luaL_newmetatable(L, NODE_INFO_MT)) {
        lua_pushcfunction(L, node_info_buffer_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    rs_error err = {0};
    int n = rs_store_node_info(store, buf->nodes, NODE_INFO_MAX, &err);
    if (n < 0) return rs_lua_raise(L, &err);
    buf->n = (size_t)n;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        if (buf->nodes[i].address[0]) {
            lua_pushstring(L, buf->nodes[i].address);
            lua_setfield(L, -2, "node");
        }
        lua_pushlstring(L, buf->nodes[i].info, buf->nodes[i].info_len);
        lua_setfield(L, -2, "info");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static const luaL_Reg store_methods[] = {
    {"save_resume_token", store_save_resume_token},
    {"get_resume_token", store_get_resume_token},
    {"delete_resume_token", store_delete_resume_token},
    {"list_resume_tokens", store_list_resume_tokens},
    {"resume_tokens", store_resume_tokens},
    {"token_lines", store_token_lines},
    {"token_batches", store_token_batches},
    {"scan_keys", store_scan_keys},
    {"save_many", store_save_many},
    {"start_save_many", store_start_save_many},
    {"get_many", store_get_many},
    {"delete_many", store_delete_many},
    {"expire", store_expire},
    {"save_raw", store_save_raw},
    {"get_raw", store_get_raw},
    {"ttl", store_ttl},
    {"ping", store_ping},
    {"command", store_command},
    {"server_identity", store_server_identity},
    {"node_info", store_node_info},
    {"master_changes", store_master_changes},
    {"confirm_writes", store_confirm_writes},
    {"server_figures", store_server_figures},
    {"stats", store_stats},
    {"reset_stats", store_reset_stats},
    {"prometheus", store_prometheus},
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
        if (lua_iscfunction(L, -1) && !lua_getupvalue(L, -1, 1)) {
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_pushcclosure(L, with_log_drain, 1);
            lua_rawset(L, table);      /* replacing an existing field is allowed in lua_next */
        }
        lua_pop(L, 1);
    }
}

void rs_lua_open_store(lua_State *L, void (*add_methods)(lua_State *L))
{
    luaL_newmetatable(L, STORE_MT);
    luaL_setfuncs(L, store_meta, 0);
    luaL_newlib(L, store_methods);
    add_methods(L);
    wrap_methods(L, lua_gettop(L));
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, VALUES_MT);
    lua_pushcfunction(L, values_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newmetatable(L, SAVE_JOB_MT);
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, job_wait);
    lua_setfield(L, -2, "wait");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, SCAN_MT);
    lua_pushcfunction(L, scan_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, scan_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
}
