/* SPDX-License-Identifier: MIT */
/* rs_batch_lua.c -- batches for Lua: store:save_many, get_many and
 * delete_many, one pipelined round trip each, and the box that holds a
 * batch's values (the "batch results" handle, shared with rs_job_lua.c).
 *
 * Every array is measured and bounded before anything is allocated for
 * it; the item strings C points into are anchored in a table on the stack
 * (lua_geti may run __index, whose fresh values nothing else keeps), and
 * the scratch arrays are userdata, so an error raised half-way leaks
 * nothing. The values the core malloc'd live in a userdata whose __gc
 * frees them until they are copied into Lua.
 */
#include <string.h>

#include "rs_lua.h"

#define VALUES_MT "rigatoni_store.values"

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
        (*names)[i] = rs_lua_check_collection(L, -1, &(*lens)[i]);
        lua_rawseti(L, anchor, (lua_Integer)i + 1);
    }
    return n;
}

/* The items of a save_many batch at index 2, in scratch memory owned by
 * the Lua stack; their strings are anchored in a table pushed before it.
 * Options at index 3: nx, and read_back when `read_back` is not NULL. */
size_t rs_lua_check_save_items(lua_State *L, const char *what, rs_save_item **out, int *flags,
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
        items[i].collection = rs_lua_check_collection(L, -1, &items[i].collection_len);
        lua_rawseti(L, anchor, 2 * (lua_Integer)i + 1);
        lua_geti(L, -1, 2);
        if (lua_type(L, -1) != LUA_TSTRING)
            rs_lua_raisef(L, RS_ERR_SERIALIZATION, "%s: item %d: bytes must be a string", what,
                          (int)i + 1);
        items[i].bytes = lua_tolstring(L, -1, &items[i].len);
        lua_rawseti(L, anchor, 2 * (lua_Integer)i + 2);
        lua_geti(L, -1, 3);
        double ttl = rs_lua_opt_ttl(L, -1);
        items[i].ttl = ttl == RS_TTL_DEFAULT ? 0 : ttl;
        lua_pop(L, 2);   /* ttl, item */
    }
    *out = items;
    return n;
}

void rs_lua_push_written(lua_State *L, const int *written, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushboolean(L, written[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static int values_gc(lua_State *L)
{
    rs_lua_values *box = luaL_checkudata(L, 1, VALUES_MT);
    rs_values_free(box->values, box->n);
    box->n = 0;
    return 0;
}

rs_lua_values *rs_lua_push_values_box(lua_State *L, size_t n)
{
    rs_lua_values *box = lua_newuserdatauv(L, sizeof *box + (n ? n : 1) * sizeof box->values[0], 0);
    box->n = 0;
    luaL_setmetatable(L, VALUES_MT);
    return box;
}

void rs_lua_push_values(lua_State *L, const rs_lua_values *box)
{
    lua_createtable(L, (int)box->n, 0);
    for (size_t i = 0; i < box->n; i++) {
        if (box->values[i].bytes) lua_pushlstring(L, box->values[i].bytes, box->values[i].len);
        else lua_pushboolean(L, 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* ---------------------------------------------------------------------
 * The batch operations (rs_op_lua.c): the names and items are copied
 * into the op in one block each, so a job outlives the Lua strings.
 * ------------------------------------------------------------------ */

typedef struct batch_op {
    size_t n;
    const char **names;        /* get_many, delete_many */
    size_t *lens;
    rs_save_item *items;       /* save_many */
    int flags;
    int with_ttl;
    rs_value *values;          /* get_many's, filled once it succeeded */
    int filled;
    int *written;              /* save_many's */
    long long deleted;
} batch_op;

/* Copies n names (lens[i] bytes each) into the op. */
static void copy_names(lua_State *L, batch_op *op, const char **names, const size_t *lens, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += lens[i] + 1;
    char *bytes = rs_lua_op_alloc(L, op, total ? total : 1);
    op->names = rs_lua_op_alloc(L, op, (n ? n : 1) * sizeof *op->names);
    op->lens = rs_lua_op_alloc(L, op, (n ? n : 1) * sizeof *op->lens);
    for (size_t i = 0; i < n; i++) {
        memcpy(bytes, names[i], lens[i]);
        bytes[lens[i]] = '\0';
        op->names[i] = bytes;
        op->lens[i] = lens[i];
        bytes += lens[i] + 1;
    }
    op->n = n;
}

/* store:save_many({{collection, bytes, ttl_or_nil}, ...} [, {nx = bool}])
 * -> array of booleans (false = skipped by nx). One pipelined round trip.
 * A failure whose every item's outcome is known (an nx batch refused in
 * part) carries them as err.written, booleans as save_many's answer. */
static void parse_save_many(lua_State *L, void *arg)
{
    batch_op *op = arg;
    rs_save_item *items;
    size_t n = rs_lua_check_save_items(L, "save_many", &items, &op->flags, NULL);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += items[i].collection_len + items[i].len + 2;
    char *bytes = rs_lua_op_alloc(L, op, total ? total : 1);
    op->items = rs_lua_op_alloc(L, op, (n ? n : 1) * sizeof *op->items);
    op->written = rs_lua_op_alloc(L, op, (n ? n : 1) * sizeof *op->written);
    for (size_t i = 0; i < n; i++) {
        op->items[i] = items[i];
        memcpy(bytes, items[i].collection, items[i].collection_len);
        bytes[items[i].collection_len] = '\0';
        op->items[i].collection = bytes;
        bytes += items[i].collection_len + 1;
        memcpy(bytes, items[i].bytes, items[i].len);
        bytes[items[i].len] = '\0';
        op->items[i].bytes = bytes;
        bytes += items[i].len + 1;
    }
    op->n = n;
}

static int run_save_many(rs_store *store, void *arg, rs_error *err)
{
    batch_op *op = arg;
    return rs_save_many(store, op->items, op->n, op->flags, op->written, err) < 0 ? -1 : 0;
}

static int push_save_many(lua_State *L, rs_store *store, void *arg, int rc)
{
    batch_op *op = arg;
    (void)store, (void)rc;
    rs_lua_push_written(L, op->written, op->n);
    return 1;
}

static void fail_save_many(lua_State *L, void *arg)
{
    batch_op *op = arg;
    size_t known = 0;
    while (known < op->n && op->written[known] >= 0) known++;
    if (op->n > 0 && known == op->n) {
        rs_lua_push_written(L, op->written, op->n);
        lua_setfield(L, -2, "written");
    }
}

/* store:get_many(collections [, {ttl = false}]) -> values (bytes or
 * false), ttls (seconds or false; every one false with ttl = false: no
 * PTTL is sent) */
static void parse_get_many(lua_State *L, void *arg)
{
    batch_op *op = arg;
    static const char *const known[] = {"ttl", NULL};
    op->with_ttl = 1;
    if (rs_lua_check_options(L, 3, known)) {
        if (rs_lua_opt_field(L, 3, "ttl", LUA_TBOOLEAN)) op->with_ttl = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    const char **names;
    size_t *lens;
    size_t n = check_collections(L, 2, "get_many", &names, &lens);
    copy_names(L, op, names, lens, n);
    op->values = rs_lua_op_alloc(L, op, (n ? n : 1) * sizeof *op->values);
}

static int run_get_many(rs_store *store, void *arg, rs_error *err)
{
    batch_op *op = arg;
    int rc = op->with_ttl ? rs_get_many(store, op->names, op->lens, op->n, op->values, err)
                          : rs_get_many_values(store, op->names, op->lens, op->n, op->values, err);
    op->filled = rc >= 0;
    return rc;
}

static int push_get_many(lua_State *L, rs_store *store, void *arg, int rc)
{
    batch_op *op = arg;
    (void)store, (void)rc;
    lua_createtable(L, (int)op->n, 0);
    for (size_t i = 0; i < op->n; i++) {
        if (op->values[i].bytes) lua_pushlstring(L, op->values[i].bytes, op->values[i].len);
        else lua_pushboolean(L, 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_createtable(L, (int)op->n, 0);
    for (size_t i = 0; i < op->n; i++) {
        if (op->values[i].ttl >= 0) lua_pushnumber(L, op->values[i].ttl);
        else lua_pushboolean(L, 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 2;
}

static void free_get_many(void *arg)
{
    batch_op *op = arg;
    if (op->filled) rs_values_free(op->values, op->n);
    op->filled = 0;
}

/* store:delete_many(collections) -> number deleted */
static void parse_delete_many(lua_State *L, void *arg)
{
    const char **names;
    size_t *lens;
    size_t n = check_collections(L, 2, "delete_many", &names, &lens);
    copy_names(L, arg, names, lens, n);
}

static int run_delete_many(rs_store *store, void *arg, rs_error *err)
{
    batch_op *op = arg;
    op->deleted = rs_delete_many(store, op->names, op->lens, op->n, err);
    return op->deleted < 0 ? -1 : 0;
}

static int push_delete_many(lua_State *L, rs_store *store, void *arg, int rc)
{
    batch_op *op = arg;
    (void)store, (void)rc;
    lua_pushinteger(L, (lua_Integer)op->deleted);
    return 1;
}

static const rs_lua_op save_many_op = {
    "save_many", sizeof(batch_op), 2, parse_save_many, run_save_many, push_save_many,
    fail_save_many, NULL,
};
static const rs_lua_op get_many_op = {
    "get_many", sizeof(batch_op), 2, parse_get_many, run_get_many, push_get_many, NULL,
    free_get_many,
};
static const rs_lua_op delete_many_op = {
    "delete_many", sizeof(batch_op), 1, parse_delete_many, run_delete_many, push_delete_many,
    NULL, NULL,
};

static const rs_lua_op *const batch_ops[] = {&save_many_op, &get_many_op, &delete_many_op, NULL};

void rs_lua_add_batch_methods(lua_State *L)
{
    rs_lua_add_ops(L, batch_ops);
    luaL_newmetatable(L, VALUES_MT);
    lua_pushcfunction(L, values_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
