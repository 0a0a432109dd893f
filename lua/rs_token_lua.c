/* SPDX-License-Identifier: MIT */
/* rs_token_lua.c -- the one-token operations and store:command, as
 * operations (rs_op_lua.c): get_resume_token, save_resume_token,
 * delete_resume_token, get_raw, save_raw, ttl, expire, ping, command.
 *
 * Each is a parse that checks and copies its arguments (the errors for
 * bad input are raised there, before anything is sent), a run that calls
 * the core without Lua, and a push of the results; so each is both a
 * blocking method and startable as a job (store:start).
 */
#include <string.h>

#include "rs_lua.h"

/* One collection's operations: the collection and what goes with it. */
typedef struct token_op {
    const char *coll;
    size_t coll_len;
    const char *bytes;         /* save: the bytes; delete: if_value */
    size_t len;
    const char *lock_key, *owner;
    double ttl;
    char *out;                 /* get: the core's malloc'd bytes */
    size_t out_len;
} token_op;

/* The collection at 2, copied. */
static void copy_collection(lua_State *L, token_op *op)
{
    size_t len;
    const char *coll = rs_lua_check_collection(L, 2, &len);
    op->coll = rs_lua_op_copy(L, op, coll, len);
    op->coll_len = len;
}

static void free_out(void *arg)
{
    token_op *op = arg;
    rs_free(op->out);
    op->out = NULL;
}

/* ---- get_raw, get_resume_token ---- */

static void parse_get(lua_State *L, void *arg)
{
    copy_collection(L, arg);
}

static int run_get(rs_store *store, void *arg, rs_error *err)
{
    token_op *op = arg;
    return rs_get_raw(store, op->coll, op->coll_len, &op->out, &op->out_len, err);
}

static int push_get_raw(lua_State *L, rs_store *store, void *arg, int rc)
{
    token_op *op = arg;
    (void)store;
    if (rc == 0) lua_pushnil(L);
    else lua_pushlstring(L, op->out, op->out_len);
    return 1;
}

static int push_get_token(lua_State *L, rs_store *store, void *arg, int rc)
{
    token_op *op = arg;
    if (rc == 0) {
        lua_pushnil(L);
        return 1;
    }
    rs_error err = {0};
    if (!rs_lua_push_token(L, store, op->coll, op->coll_len, op->out, op->out_len, &err))
        return rs_lua_raise(L, &err);
    return 1;
}

/* As a job: run_get's rs_get_raw, in a form the workers may coalesce. */
static rs_job *start_get(rs_store *store, rs_job_group *group, void *arg, void *owner,
                         rs_error *err)
{
    token_op *op = arg;
    return rs_job_start_get_raw(store, group, op->coll, op->coll_len, &op->out, &op->out_len,
                                owner, err);
}

static const rs_lua_op get_raw_op = {
    "get_raw", sizeof(token_op), 1, parse_get, run_get, push_get_raw, NULL, free_out,
};
static const rs_lua_op get_token_op = {
    "get_resume_token", sizeof(token_op), 1, parse_get, run_get, push_get_token, NULL, free_out,
};

/* ---- save_raw, save_resume_token ---- */

static void parse_save_raw(lua_State *L, void *arg)
{
    token_op *op = arg;
    copy_collection(L, op);
    if (lua_type(L, 3) != LUA_TSTRING)
        rs_lua_raisef(L, RS_ERR_SERIALIZATION, "raw token must be a string, got %s",
                      luaL_typename(L, 3));
    size_t len;
    const char *bytes = lua_tolstring(L, 3, &len);
    op->ttl = rs_lua_opt_ttl(L, 4);
    op->bytes = rs_lua_op_copy(L, op, bytes, len);
    op->len = len;
}

static int run_save(rs_store *store, void *arg, rs_error *err)
{
    token_op *op = arg;
    int rc = op->lock_key ? rs_save_fenced(store, op->coll, op->coll_len, op->bytes, op->len,
                                           op->lock_key, op->owner, err)
                          : rs_save_raw(store, op->coll, op->coll_len, op->bytes, op->len, op->ttl,
                                        err);
    return rc < 0 ? -1 : 0;
}

static int push_nothing(lua_State *L, rs_store *store, void *arg, int rc)
{
    (void)L, (void)store, (void)arg, (void)rc;
    return 0;
}

/* store:save_resume_token(c, token [, {lock = key, owner = id}]) -- with a
 * lock, the save is fenced: written only while `owner` holds `lock`. */
static void parse_save_token(lua_State *L, void *arg)
{
    token_op *op = arg;
    static const char *const known[] = {"lock", "owner", NULL};
    if (rs_lua_check_options(L, 4, known)) {
        size_t len;
        const char *s;
        if (rs_lua_opt_field(L, 4, "lock", RS_LUA_TCSTRING)) {
            s = lua_tolstring(L, -1, &len);
            op->lock_key = rs_lua_op_copy(L, op, s, len);
        }
        if (rs_lua_opt_field(L, 4, "owner", RS_LUA_TCSTRING)) {
            s = lua_tolstring(L, -1, &len);
            op->owner = rs_lua_op_copy(L, op, s, len);
        }
        if (!op->lock_key != !op->owner)
            rs_lua_raisef(L, RS_ERR_CONFIG, "a fenced save needs both lock and owner");
    }
    copy_collection(L, op);
    if (!lua_istable(L, 3))
        rs_lua_raisef(L, RS_ERR_SERIALIZATION, "token must be a table, got %s", luaL_typename(L, 3));
    size_t len;
    const char *bytes = (const char *)rs_lua_bson_encode(L, 3, &len);   /* guard pushed */
    op->bytes = rs_lua_op_copy(L, op, bytes, len);
    op->len = len;
    op->ttl = RS_TTL_DEFAULT;
    lua_pop(L, 1);
}

static const rs_lua_op save_raw_op = {
    "save_raw", sizeof(token_op), 3, parse_save_raw, run_save, push_nothing, NULL, NULL,
};
static const rs_lua_op save_token_op = {
    "save_resume_token", sizeof(token_op), 3, parse_save_token, run_save, push_nothing, NULL, NULL,
};

/* ---- delete_resume_token ---- */

/* store:delete_resume_token(c [, {if_value = bytes}]) -> true if deleted.
 * With if_value, only a token still holding exactly those bytes goes. */
static void parse_delete(lua_State *L, void *arg)
{
    token_op *op = arg;
    copy_collection(L, op);
    static const char *const known[] = {"if_value", NULL};
    if (rs_lua_check_options(L, 3, known) && rs_lua_opt_field(L, 3, "if_value", LUA_TSTRING)) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        op->bytes = rs_lua_op_copy(L, op, s, len);
        op->len = len;
    }
}

static int run_delete(rs_store *store, void *arg, rs_error *err)
{
    token_op *op = arg;
    return op->bytes ? rs_delete_if_value(store, op->coll, op->coll_len, op->bytes, op->len, err)
                     : rs_delete(store, op->coll, op->coll_len, err);
}

static int push_boolean(lua_State *L, rs_store *store, void *arg, int rc)
{
    (void)store, (void)arg;
    lua_pushboolean(L, rc);
    return 1;
}

static const rs_lua_op delete_op = {
    "delete_resume_token", sizeof(token_op), 2, parse_delete, run_delete, push_boolean, NULL, NULL,
};

/* ---- ttl, expire ---- */

static int run_ttl(rs_store *store, void *arg, rs_error *err)
{
    token_op *op = arg;
    return rs_ttl(store, op->coll, op->coll_len, &op->ttl, err);
}

/* store:ttl(c) -> seconds when it expires, nil without TTL, false when absent. */
static int push_ttl(lua_State *L, rs_store *store, void *arg, int rc)
{
    token_op *op = arg;
    (void)store;
    if (rc == 0) lua_pushboolean(L, 0);
    else if (rc == 2) lua_pushnil(L);
    else lua_pushnumber(L, op->ttl);
    return 1;
}

static const rs_lua_op ttl_op = {
    "ttl", sizeof(token_op), 1, parse_get, run_ttl, push_ttl, NULL, NULL,
};

/* store:expire(c, seconds) -> true when a token without TTL got one */
static void parse_expire(lua_State *L, void *arg)
{
    token_op *op = arg;
    copy_collection(L, op);
    op->ttl = luaL_checknumber(L, 3);
}

static int run_expire(rs_store *store, void *arg, rs_error *err)
{
    token_op *op = arg;
    return rs_expire(store, op->coll, op->coll_len, op->ttl, err);
}

static const rs_lua_op expire_op = {
    "expire", sizeof(token_op), 2, parse_expire, run_expire, push_boolean, NULL, NULL,
};

/* ---- ping ---- */

static void parse_none(lua_State *L, void *arg)
{
    (void)L, (void)arg;
}

static int run_ping(rs_store *store, void *arg, rs_error *err)
{
    (void)arg;
    return rs_ping(store, err) < 0 ? -1 : 1;
}

static const rs_lua_op ping_op = {
    "ping", 1, 0, parse_none, run_ping, push_boolean, NULL, NULL,
};

/* ---- command ---- */

typedef struct command_op {
    int argc, flags;
    const char **argv;
    size_t *argvlen;
    rs_reply *reply;
} command_op;

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
 * opts.idempotent is true. Variadic: the op's owner is at the top. */
static void parse_command(lua_State *L, void *arg)
{
    command_op *op = arg;
    int first = 2, last = lua_gettop(L) - 1;
    if (lua_type(L, 2) == LUA_TTABLE) op->flags = command_flags(L, first++);
    int argc = last - first + 1;
    if (argc < 1) luaL_argerror(L, first, "command name expected");
    op->argv = rs_lua_op_alloc(L, op, (size_t)argc * sizeof *op->argv);
    op->argvlen = rs_lua_op_alloc(L, op, (size_t)argc * sizeof *op->argvlen);
    for (int i = 0; i < argc; i++) {
        size_t len;
        const char *s = luaL_checklstring(L, i + first, &len);
        op->argv[i] = rs_lua_op_copy(L, op, s, len);
        op->argvlen[i] = len;
    }
    op->argc = argc;
}

static int run_command(rs_store *store, void *arg, rs_error *err)
{
    command_op *op = arg;
    return rs_command_reply(store, op->argc, op->argv, op->argvlen, op->flags, &op->reply, err);
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

static int push_command(lua_State *L, rs_store *store, void *arg, int rc)
{
    command_op *op = arg;
    (void)store, (void)rc;
    if (op->reply->type == RS_TREE_NIL) lua_pushnil(L);
    else push_reply(L, op->reply);
    return 1;
}

static void free_command(void *arg)
{
    command_op *op = arg;
    rs_reply_free(op->reply);
    op->reply = NULL;
}

static const rs_lua_op command_op_desc = {
    "command", sizeof(command_op), 0, parse_command, run_command, push_command, NULL, free_command,
};

static const rs_lua_op *const token_ops[] = {
    &get_token_op, &save_token_op, &delete_op, &get_raw_op, &save_raw_op,
    &ttl_op, &expire_op, &ping_op, &command_op_desc, NULL,
};

static const rs_lua_op_job token_jobs[] = {
    {&get_raw_op, start_get}, {&get_token_op, start_get}, {NULL, NULL},
};

void rs_lua_add_token_methods(lua_State *L)
{
    rs_lua_add_ops(L, token_ops);
    rs_lua_add_op_jobs(L, token_jobs);
}
