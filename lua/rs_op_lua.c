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
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rs_lua.h"

#define JOB_MT "rigatoni_store.job"
#define GROUP_MT "rigatoni_store.job_group"
#define STARTABLE_KEY "rigatoni_store.startable"
#define OP_JOBS_KEY "rigatoni_store.op_jobs"

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
    rs_job *job;          /* from start until waited for or abandoned */
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

/* Pushes the table of startable names (name -> descriptor or starter). */
static void push_startable(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, STARTABLE_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, STARTABLE_KEY);
    }
}

void rs_lua_add_ops(lua_State *L, const rs_lua_op *const ops[])
{
    push_startable(L);
    for (size_t i = 0; ops[i]; i++) {
        lua_pushlightuserdata(L, (void *)ops[i]);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, ops[i]->name);
        lua_pushcclosure(L, op_method, 1);
        lua_setfield(L, -3, ops[i]->name);
    }
    lua_pop(L, 1);
}

/* ---------------------------------------------------------------------
 * Jobs: store:start(name, ...) and the job object
 * ------------------------------------------------------------------ */

/* The worker's side: the op's run, never Lua. */
static int job_run(rs_store *store, void *arg, rs_error *err)
{
    op_call *call = arg;
    return call->desc->run(store, call->op, err);
}

/* Called by the store as it closes (rs_lua_store_track): the job stays
 * valid (rs_store_close ends it, so its fd turns readable) and job:wait()
 * still gives its outcome (a job the close cut short or never ran fails
 * with the core's error), pushed without the store. */
static int job_orphan(lua_State *L)
{
    job_box *box = luaL_testudata(L, 1, JOB_MT);
    if (box && box->state == JOB_RUNNING) box->state = JOB_ORPHANED;
    return 0;
}

/* rs_lua_op_start in a completion group (NULL: none), through `known`
 * when the op has a job the workers know (rs_lua_add_op_jobs). */
static void op_start(lua_State *L, int store_idx, int anchor, rs_job_group *group,
                     const rs_lua_op_job *known)
{
    store_idx = lua_absindex(L, store_idx);
    if (anchor) anchor = lua_absindex(L, anchor);
    job_box *box = luaL_checkudata(L, -1, JOB_MT);
    rs_store *store = rs_lua_check_store(L, store_idx);
    lua_pushvalue(L, store_idx);          /* kept alive while the job runs */
    lua_setiuservalue(L, -2, 1);
    if (anchor) {
        lua_pushvalue(L, anchor);
        lua_setiuservalue(L, -2, 2);
    }
    rs_error err = {0};
    op_call *call = box->call;
    rs_job *job = known ? known->start(store, group, call->op, call, &err)
                        : rs_job_start_in(store, group, job_run, call, &err);
    if (!job) rs_lua_raise(L, &err);
    box->job = job;
    box->state = JOB_RUNNING;
    rs_lua_store_track(L, store_idx, -1, job_orphan);
}

void rs_lua_op_start(lua_State *L, int store_idx, int anchor)
{
    op_start(L, store_idx, anchor, NULL, NULL);
}

void rs_lua_add_op_jobs(lua_State *L, const rs_lua_op_job *jobs)
{
    lua_getfield(L, LUA_REGISTRYINDEX, OP_JOBS_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, OP_JOBS_KEY);
    }
    for (size_t i = 0; jobs[i].op; i++) {
        lua_pushlightuserdata(L, (void *)&jobs[i]);
        lua_rawsetp(L, -2, jobs[i].op);
    }
    lua_pop(L, 1);
}

/* The registered job of `desc`, or NULL. */
static const rs_lua_op_job *known_job(lua_State *L, const rs_lua_op *desc)
{
    const rs_lua_op_job *known = NULL;
    if (lua_getfield(L, LUA_REGISTRYINDEX, OP_JOBS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_rawgetp(L, -1, desc) == LUA_TLIGHTUSERDATA) known = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return known;
}

/* ---- the arguments checked as the method's own call ------------------
 * luaL_argerror names the function and numbers the arguments from the
 * call that is running: in store_start that would be 'start', counted
 * from start's own arguments. So start checks them in a call of its own,
 * made as `P:name(...)` from a small Lua function (one per name, compiled
 * on first use, stripped of line information so no position of it shows):
 * an argument error then reads "bad argument #N to 'name'", exactly the
 * blocking method's. P is one userdata whose __index holds, per name, a
 * C closure that puts the store (P's user value, set just before the
 * call and cleared at once) at 1 and parses (an op) or starts (a walk). */

#define START_SELF_KEY "rigatoni_store.start_self"
#define START_AS_KEY "rigatoni_store.start_as"

/* P at 1 becomes the store P holds, which P lets go of (so that P never
 * keeps a store alive). */
static void take_store(lua_State *L)
{
    lua_getiuservalue(L, 1, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    lua_replace(L, 1);
}

/* Upvalue 1: the op's descriptor. Returns the op's owner. */
static int parse_as_method(lua_State *L)
{
    const rs_lua_op *desc = lua_touserdata(L, lua_upvalueindex(1));
    take_store(L);
    if (lua_gettop(L) < desc->nargs + 1) lua_settop(L, desc->nargs + 1);
    void *op = rs_lua_op_new(L, desc);
    int owner = lua_gettop(L);
    desc->parse(L, op);
    lua_pushvalue(L, owner);              /* parse may have left values above it */
    return 1;
}

/* Upvalue 1: a starter (a walk). */
static int start_as_method(lua_State *L)
{
    lua_CFunction start = lua_tocfunction(L, lua_upvalueindex(1));
    take_store(L);
    return start(L);
}

typedef struct dump_buf {
    char *data;
    size_t len, cap;
} dump_buf;

static int dump_write(lua_State *L, const void *p, size_t size, void *ud)
{
    dump_buf *b = ud;
    (void)L;
    if (b->len + size > b->cap) {
        size_t cap = (b->len + size) * 2;
        char *grown = realloc(b->data, cap);
        if (!grown) return 1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, size);
    b->len += size;
    return 0;
}

/* Compiles `local P = ...; return function(...) local r = P:name(...)
 * return r end` (not a tail call: that would lose the name), stripped,
 * and pushes the inner function bound to P (at `self`). */
static void push_trampoline(lua_State *L, int self, const char *name)
{
    char src[300];
    snprintf(src, sizeof src,
             "local P = ...\nreturn function(...) local r = P:%.200s(...) return r end", name);
    if (luaL_loadbufferx(L, src, strlen(src), "=start", "t") != LUA_OK) lua_error(L);
    dump_buf b = {0};
    int failed = lua_dump(L, dump_write, &b, 1);
    lua_pop(L, 1);
    int rc = failed ? LUA_ERRMEM : luaL_loadbufferx(L, b.data, b.len, "=start", "b");
    free(b.data);
    if (rc != LUA_OK) {
        if (failed) luaL_error(L, "out of memory");
        lua_error(L);
    }
    lua_pushvalue(L, self);
    lua_call(L, 1, 1);
}

/* Pushes the function that checks the arguments of `name` (startable
 * entry at `entry`) as the method's call, with the store at `store`. */
static void push_start_as(lua_State *L, int store, int entry, const char *name)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, START_SELF_KEY) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        lua_newuserdatauv(L, 1, 1);
        lua_createtable(L, 0, 1);
        lua_newtable(L);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, START_SELF_KEY);
    }
    int self = lua_gettop(L);
    if (lua_getfield(L, LUA_REGISTRYINDEX, START_AS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, START_AS_KEY);
    }
    if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        lua_getmetatable(L, self);
        lua_getfield(L, -1, "__index");
        if (lua_type(L, entry) == LUA_TLIGHTUSERDATA) {
            lua_pushvalue(L, entry);
            lua_pushcclosure(L, parse_as_method, 1);
        } else {
            lua_pushcfunction(L, lua_tocfunction(L, entry));
            lua_pushcclosure(L, start_as_method, 1);
        }
        lua_setfield(L, -2, name);
        lua_pop(L, 2);
        push_trampoline(L, self, name);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
    }
    lua_pushvalue(L, store);              /* last: nothing raises before the call */
    lua_setiuservalue(L, self, 1);
    lua_replace(L, self);
    lua_settop(L, self);
}

/* The start of store:start and group:start: the store at 1, the name at
 * 2, the method's arguments from 3; the arguments checked as the
 * method's own call (above). A walk's starter returns the walk. */
static int start_in(lua_State *L, rs_job_group *group)
{
    const char *name = luaL_checkstring(L, 2);
    push_startable(L);
    int type = lua_getfield(L, -1, name);
    if (type != LUA_TFUNCTION && type != LUA_TLIGHTUSERDATA)
        return rs_lua_raisef(L, RS_ERR_CONFIG, "not available as a job: %.200s", name);
    const rs_lua_op *desc = type == LUA_TLIGHTUSERDATA ? lua_touserdata(L, -1) : NULL;
    push_start_as(L, 1, lua_gettop(L), name);
    lua_replace(L, 2);                    /* store, the checking call, the arguments, */
    lua_pop(L, 2);                        /* without the startable table and entry */
    lua_call(L, lua_gettop(L) - 2, 1);    /* store, owner or walk */
    if (desc) op_start(L, 1, 0, group, known_job(L, desc));
    return 1;
}

/* store:start(name, ...) -> job: the method `name` with these arguments,
 * checked now (its errors for bad input raised here, before anything is
 * sent, argument errors numbered as the method's), run on a worker of
 * the store. A walk's starter returns the walk. */
static int store_start(lua_State *L)
{
    rs_lua_log_drain(L);
    rs_lua_check_store(L, 1);
    return start_in(L, NULL);
}

/* ---------------------------------------------------------------------
 * Completion groups: store:job_group(), group:start(name, ...)
 * ------------------------------------------------------------------ */

static int job_events(lua_State *L);
static int job_timeout(lua_State *L);

typedef struct group_box {
    rs_job_group *group;  /* NULL once closed */
} group_box;              /* user value 1: the store */

static group_box *check_group(lua_State *L)
{
    group_box *box = luaL_checkudata(L, 1, GROUP_MT);
    if (!box->group) luaL_error(L, "this job group is closed");
    return box;
}

/* store:job_group() -> group: one descriptor (group:pollfd()) for the
 * jobs started with group:start, readable once one of them is done
 * since the last group:clear(). The loop adapters keep one per wrapped
 * store. */
static int store_job_group(lua_State *L)
{
    rs_lua_check_store(L, 1);
    group_box *box = lua_newuserdatauv(L, sizeof *box, 1);
    box->group = NULL;
    luaL_setmetatable(L, GROUP_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    rs_error err = {0};
    if (!(box->group = rs_job_group_new(&err))) return rs_lua_raise(L, &err);
    return 1;
}

/* group:start(name, ...) -> job: store:start(name, ...) whose completion
 * also makes the group's descriptor readable. A walk (a starter of its
 * own) starts as with store:start, outside the group. */
static int group_start(lua_State *L)
{
    group_box *box = check_group(L);
    rs_lua_log_drain(L);
    lua_getiuservalue(L, 1, 1);
    lua_replace(L, 1);                    /* the store in place of the group */
    rs_lua_check_store(L, 1);
    return start_in(L, box->group);
}

static int group_pollfd(lua_State *L)
{
    lua_pushinteger(L, rs_job_group_fd(check_group(L)->group));
    return 1;
}

/* group:clear(): the descriptor stops polling readable until the next job
 * of the group is done; then look at the jobs (job:ready()). */
static int group_clear(lua_State *L)
{
    rs_job_group_clear(check_group(L)->group);
    return 0;
}

/* __gc, __close and group:close(): the descriptor is closed (stop polling
 * it first); the group's jobs stay valid. */
static int group_close(lua_State *L)
{
    group_box *box = luaL_checkudata(L, 1, GROUP_MT);
    rs_job_group_free(box->group);
    box->group = NULL;
    return 0;
}

static const luaL_Reg group_methods[] = {
    {"start", group_start},
    {"pollfd", group_pollfd},
    {"events", job_events},
    {"timeout", job_timeout},
    {"clear", group_clear},
    {"close", group_close},
    {NULL, NULL},
};

static job_box *check_job(lua_State *L)
{
    return luaL_checkudata(L, 1, JOB_MT);
}

static int already_waited(lua_State *L)
{
    return luaL_error(L, "this job was already waited for");
}

/* job:pollfd() -> a file descriptor that polls readable once the job is
 * done (the job's own: poll it, never read or close it). */
static int job_pollfd(lua_State *L)
{
    job_box *box = check_job(L);
    if (!box->job) return already_waited(L);
    int fd = rs_job_fd(box->job);
    if (fd < 0) return rs_lua_raisef(L, RS_ERR_NOMEM, "job:pollfd(): no file descriptor left");
    lua_pushinteger(L, fd);
    return 1;
}

/* job:events(), group:events() -> "r". */
static int job_events(lua_State *L)
{
    lua_pushliteral(L, "r");
    return 1;
}

/* job:timeout(), group:timeout() -> nil: the store's own timeouts bound a job. */
static int job_timeout(lua_State *L)
{
    lua_pushnil(L);
    return 1;
}

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* job:ready([spin]) -> true once done; lines the workers logged reach the
 * Lua log handler here. Never blocks, but with spin (seconds, at most
 * 0.001) looks again for that long, yielding the CPU between looks: a
 * loop that has nothing else to run saves the wake-up of a poll when the
 * job ends within microseconds (a get on a quiet server). */
static int job_ready(lua_State *L)
{
    job_box *box = check_job(L);
    lua_Number spin = luaL_optnumber(L, 2, 0);
    int ready = !box->job || rs_job_ready(box->job);
    if (!ready && spin > 0) {
        long end = now_ns() + (long)((spin < 0.001 ? spin : 0.001) * 1e9);
        while (!(ready = rs_job_ready(box->job)) && now_ns() < end) sched_yield();
    }
    rs_lua_log_drain(L);
    lua_pushboolean(L, ready);
    return 1;
}

/* job:wait() -> the method's results, or raises its error object; blocks
 * until the job is done. Once. */
static int job_wait(lua_State *L)
{
    job_box *box = check_job(L);
    lua_settop(L, 1);
    rs_lua_log_drain(L);
    if (!box->job) return already_waited(L);
    rs_error err = {0};
    int rc = rs_job_finish(box->job, &err);
    int orphaned = box->state == JOB_ORPHANED;
    box->job = NULL;
    box->state = JOB_WAITED;
    lua_getiuservalue(L, 1, 1);           /* 2: the store, held until now */
    lua_getiuservalue(L, 1, 2);           /* 3: the anchor */
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 2);
    /* A store closed meanwhile: the outcome is still the job's own, pushed
     * without the store. */
    rs_store *store = orphaned ? NULL : rs_lua_check_store(L, 2);
    int n = push_outcome(L, store, box->call, rc, &err);
    call_free(box->call);
    box->call = NULL;
    rs_lua_log_drain(L);
    return n;
}

/* __gc and __close: a job not waited for is abandoned (it frees its op
 * itself once done); an op never started is freed. */
static int job_gc(lua_State *L)
{
    job_box *box = luaL_checkudata(L, 1, JOB_MT);
    if (box->job) {
        rs_job_abandon(box->job, call_free);
        box->job = NULL;
        box->state = JOB_WAITED;
    } else {
        call_free(box->call);
    }
    box->call = NULL;
    return 0;
}

static int job_tostring(lua_State *L)
{
    job_box *box = check_job(L);
    if (box->call) lua_pushfstring(L, "rigatoni_store.job (%s)", box->call->desc->name);
    else lua_pushliteral(L, "rigatoni_store.job (waited for)");
    return 1;
}

void rs_lua_add_starter(lua_State *L, const char *name, lua_CFunction start)
{
    push_startable(L);
    lua_pushcfunction(L, start);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static const luaL_Reg job_methods[] = {
    {"pollfd", job_pollfd},
    {"events", job_events},
    {"timeout", job_timeout},
    {"ready", job_ready},
    {"wait", job_wait},
    {NULL, NULL},
};

void rs_lua_add_op_methods(lua_State *L)
{
    lua_pushcfunction(L, store_start);
    lua_setfield(L, -2, "start");
    lua_pushcfunction(L, store_job_group);
    lua_setfield(L, -2, "job_group");
    luaL_newmetatable(L, GROUP_MT);
    lua_pushcfunction(L, group_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, group_close);
    lua_setfield(L, -2, "__close");
    luaL_newlib(L, group_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, JOB_MT);
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, job_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, job_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
