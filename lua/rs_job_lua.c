/* SPDX-License-Identifier: MIT */
/* rs_job_lua.c -- save jobs for Lua: store:start_save_many and job:wait.
 *
 * A job is save_many's write (and with read_back an MGET of the same
 * names) running on a thread of the core while the script goes on. The
 * userdata holds the core's job until job:wait() finishes it; __gc
 * finishes one never waited for, so no thread outlives its handle.
 * Uservalue 1: the store, kept alive while its job runs. The items are
 * checked and the results pushed as save_many's (rs_batch_lua.c).
 */
#include "rs_lua.h"

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
    rs_store *store = rs_lua_check_store(L, 1);
    rs_save_item *items;
    int flags, read_back = 0;
    size_t n = rs_lua_check_save_items(L, "start_save_many", &items, &flags, &read_back);
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
    rs_lua_values *values = rs_lua_push_values_box(L, n);
    rs_error err = {0};
    int rc = rs_save_many_finish(box->job, written, box->read_back ? values->values : NULL, &err);
    box->job = NULL;
    rs_lua_log_drain(L);
    if (rc < 0) return rs_lua_raise(L, &err);
    if (box->read_back) values->n = n;
    rs_lua_push_written(L, written, n);
    if (!box->read_back) return 1;
    rs_lua_push_values(L, values);
    rs_values_free(values->values, n);
    values->n = 0;
    return 2;
}

static const luaL_Reg job_methods[] = {
    {"start_save_many", store_start_save_many},
    {NULL, NULL},
};

void rs_lua_add_job_methods(lua_State *L)
{
    luaL_setfuncs(L, job_methods, 0);
    luaL_newmetatable(L, SAVE_JOB_MT);
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, job_wait);
    lua_setfield(L, -2, "wait");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
