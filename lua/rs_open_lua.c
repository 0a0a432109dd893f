/* SPDX-License-Identifier: MIT */
/* rs_open_lua.c -- rs.start_open(config): opening a store as a job.
 *
 * An event loop (cqueues, luv) must not block in rs.new while a server
 * takes its time: rs.start_open runs the open on a thread of its own
 * (core/open_job.c) and returns a job with the cqueues pollable protocol,
 * job:pollfd(), job:events() ("r"), job:timeout() (nil), plus
 * job:ready() (never blocks) and job:wait() (the store, or the error
 * rs.new would have raised). A job never waited for is abandoned by
 * __gc/__close without waiting: its thread closes the store it opens.
 */
#include "rs_lua.h"

#define OPEN_JOB_MT "rigatoni_store.open_job"

typedef struct open_box {
    rs_open_job *job;
} open_box;

static open_box *check_open_job(lua_State *L)
{
    open_box *box = luaL_checkudata(L, 1, OPEN_JOB_MT);
    if (!box->job) luaL_error(L, "this open job was already waited for");
    return box;
}

static int open_job_gc(lua_State *L)
{
    open_box *box = luaL_checkudata(L, 1, OPEN_JOB_MT);
    rs_open_job_abandon(box->job);
    box->job = NULL;
    return 0;
}

static int open_job_pollfd(lua_State *L)
{
    lua_pushinteger(L, rs_open_job_fd(check_open_job(L)->job));
    return 1;
}

static int open_job_events(lua_State *L)
{
    check_open_job(L);
    lua_pushliteral(L, "r");
    return 1;
}

static int open_job_timeout(lua_State *L)
{
    check_open_job(L);
    lua_pushnil(L);
    return 1;
}

static int open_job_ready(lua_State *L)
{
    lua_pushboolean(L, rs_open_job_ready(check_open_job(L)->job));
    return 1;
}

/* job:wait() -> store: blocks until the open is done (an event loop waits
 * on pollfd first, so that it does not block here). */
static int open_job_wait(lua_State *L)
{
    open_box *box = check_open_job(L);
    rs_store **slot = rs_lua_push_store_box(L);
    rs_error err = {0};
    rs_open_job *job = box->job;
    box->job = NULL;
    *slot = rs_store_open_finish(job, &err);
    if (!*slot) return rs_lua_raise(L, &err);
    return 1;
}

static int open_job_tostring(lua_State *L)
{
    open_box *box = luaL_checkudata(L, 1, OPEN_JOB_MT);
    lua_pushfstring(L, "rigatoni_store.open_job (%s)",
                    !box->job ? "waited for" : rs_open_job_ready(box->job) ? "ready" : "running");
    return 1;
}

static const luaL_Reg open_job_methods[] = {
    {"pollfd", open_job_pollfd},
    {"events", open_job_events},
    {"timeout", open_job_timeout},
    {"ready", open_job_ready},
    {"wait", open_job_wait},
    {NULL, NULL},
};

static const luaL_Reg open_job_meta[] = {
    {"__gc", open_job_gc},
    {"__close", open_job_gc},
    {"__tostring", open_job_tostring},
    {NULL, NULL},
};

void rs_lua_open_open_jobs(lua_State *L)
{
    luaL_newmetatable(L, OPEN_JOB_MT);
    luaL_setfuncs(L, open_job_meta, 0);
    luaL_newlib(L, open_job_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

int rs_lua_open_job_start(lua_State *L, const rs_config *cfg)
{
    open_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->job = NULL;
    luaL_setmetatable(L, OPEN_JOB_MT);
    rs_config *logged = rs_lua_logged_config(cfg);
    if (!logged) return luaL_error(L, "out of memory");
    rs_error err = {0};
    box->job = rs_store_open_start(logged, &err);
    rs_config_free(logged);
    if (!box->job) return rs_lua_raise(L, &err);
    return 1;
}
