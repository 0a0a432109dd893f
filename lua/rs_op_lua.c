/* SPDX-License-Identifier: MIT */
/* rs_op_lua.c -- store methods as operations: parse, run, push.
 *
 * Every store method that talks to the server is an rs_lua_op (rs_lua.h):
 * parse checks and copies the arguments on the Lua thread, run calls the
 * core's blocking functions without touching Lua, push turns the outcome
 * into Lua values or the error object. The blocking method is the three
 * in a row on the caller's thread; store:start(name, ...) runs `run` on a
 * worker of the store (rs_job_start) and job:wait() pushes. One code path,
 * so the blocking specs prove what a job gives.
 *
 * An op lives in malloc'd memory (a worker may outlive every Lua value:
 * an abandoned job frees its op itself), owned by a userdata while Lua
 * holds it, so an error raised in parse or push leaks nothing. The
 * handle files hold the descriptors; this file owns the call, the job
 * userdata and the table of startable names (in the registry).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "rs_lua.h"

#define JOB_MT "rigatoni_store.job"
#define STARTABLE_KEY "rigatoni_store.startable"

/* A copy owned by an op (rs_lua_op_copy, rs_lua_op_alloc). */
typedef struct op_mem {
    struct op_mem *next;
    max_align_t data[];
} op_mem;

typedef struct op_call {
    const rs_lua_op *desc;
    op_mem *mem;
    max_align_t op[];     /* desc->size bytes */
} op_call;

static op_call *call_of(void *op)
{
    return (op_call *)((char *)op - offsetof(op_call, op));
}

/* Frees an op and its copies; any thread (free_arg of an abandoned job). */
static void call_free(void *arg)
{
    op_call *call = arg;
    if (!call) return;
    if (call->desc->free) call->desc->free(call->op);
    for (op_mem *m = call->mem, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    free(call);
}

void *rs_lua_op_alloc(lua_State *L, void *op, size_t size)
{
    op_call *call = call_of(op);
    op_mem *m = size < SIZE_MAX - sizeof *m ? malloc(sizeof *m + size) : NULL;
    if (!m) luaL_error(L, "out of memory");
    m->next = call->mem;
    call->mem = m;
    return m->data;
}

char *rs_lua_op_copy(lua_State *L, void *op, const char *bytes, size_t len)
{
    char *copy = rs_lua_op_alloc(L, op, len < SIZE_MAX ? len + 1 : SIZE_MAX);
    if (len) memcpy(copy, bytes, len);
    copy[len] = '\0';
    return copy;
}

/* ---------------------------------------------------------------------
 * The owner: a job userdata, started or not
 * ------------------------------------------------------------------ */

enum { JOB_NEW, JOB_RUNNING, JOB_WAITED, JOB_ORPHANED };

typedef struct job_box {
    op_call *call;        /* owned here; NULL once freed or handed on */
    struct rs_job *job;   /* while running */
    int state;
} job_box;                /* user values: 1 the store, 2 an anchor */

void *rs_lua_op_new(lua_State *L, const rs_lua_op *desc)
{
    job_box *box = lua_newuserdatauv(L, sizeof *box, 2);
    box->call = NULL;
    box->job = NULL;
    box->state = JOB_NEW;
    luaL_setmetatable(L, JOB_MT);
    op_call *call = calloc(1, sizeof *call + desc->size);
    if (!call) luaL_error(L, "out of memory");
    call->desc = desc;
    box->call = call;
    return call->op;
}

/* Pushes the outcome of a run: its results (their count returned), or
 * raises its error object as the blocking method does. */
static int push_outcome(lua_State *L, rs_store *store, op_call *call, int rc, const rs_error *err)
{
    if (rc < 0) {
        rs_lua_push_error(L, err);
        if (call->desc->fail) call->desc->fail(L, call->op);
        return lua_error(L);
    }
    return call->desc->push(L, store, call->op, rc);
}

/* The blocking method: upvalue 1 = its descriptor. */
static int op_method(lua_State *L)
{
    const rs_lua_op *desc = lua_touserdata(L, lua_upvalueindex(1));
    rs_lua_log_drain(L);
    rs_store *store = rs_lua_check_store(L, 1);
    if (lua_gettop(L) < desc->nargs + 1) lua_settop(L, desc->nargs + 1);
    rs_lua_op_new(L, desc);
    job_box *box = lua_touserdata(L, -1);
    desc->parse(L, box->call->op);
    rs_error err = {0};
    int rc = desc->run(store, box->call->op, &err);
    int n = push_outcome(L, store, box->call, rc, &err);
    call_free(box->call);       /* the results are copies now */
    box->call = NULL;
    rs_lua_log_drain(L);
    return n;
}

void rs_lua_add_ops(lua_State *L, const rs_lua_op *const ops[])
{
    lua_getfield(L, LUA_REGISTRYINDEX, STARTABLE_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, STARTABLE_KEY);
    }
    for (size_t i = 0; ops[i]; i++) {
        lua_pushlightuserdata(L, (void *)ops[i]);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, ops[i]->name);
        lua_pushcclosure(L, op_method, 1);
        lua_setfield(L, -3, ops[i]->name);
    }
    lua_pop(L, 1);
}

static int job_gc(lua_State *L)
{
    job_box *box = luaL_checkudata(L, 1, JOB_MT);
    call_free(box->call);
    box->call = NULL;
    return 0;
}

void rs_lua_add_op_methods(lua_State *L)
{
    luaL_newmetatable(L, JOB_MT);
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
