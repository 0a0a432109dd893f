/* SPDX-License-Identifier: MIT */
/* rs_server_lua.c -- what a store reports, for Lua: its own counters
 * (stats, reset_stats, prometheus) and what its servers say about
 * themselves (server_identity, server_figures, node_info, master_changes,
 * confirm_writes).
 *
 * The arrays the core fills are userdata on the stack, and the texts it
 * malloc's wait in one whose __gc frees them, so an error raised while
 * they are copied into Lua leaks nothing. Those that ask the servers,
 * and stats, are operations (rs_op_lua.c): store:start(name) runs them
 * as jobs.
 */
#include <string.h>

#include "rs_lua.h"

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
 * Counters run since open or reset_stats(); durations are seconds. An
 * operation (rs_op_lua.c), so store:start("stats") gives it too: the
 * snapshot is taken where it runs. */
typedef struct stats_op {
    int with_buckets;
    rs_metrics_snapshot m;
} stats_op;

static void parse_stats(lua_State *L, void *arg)
{
    stats_op *op = arg;
    static const char *const known[] = {"buckets", NULL};
    if (rs_lua_check_options(L, 2, known)) {
        op->with_buckets = rs_lua_opt_field(L, 2, "buckets", LUA_TBOOLEAN) && lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
}

static int run_stats(rs_store *store, void *arg, rs_error *err)
{
    stats_op *op = arg;
    (void)err;
    rs_store_metrics(store, &op->m);
    return 0;
}

static int push_stats(lua_State *L, rs_store *store, void *arg, int rc)
{
    stats_op *op = arg;
    const rs_metrics_snapshot *m = &op->m;
    (void)store, (void)rc;
    const rs_pool_stats *s = &m->pool;
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
    for (int o = 0; o < RS_METRICS_OPS; o++) {
        push_op_metrics(L, &m->ops[o], op->with_buckets);
        lua_setfield(L, -2, rs_metrics_op_name(o));
    }
    lua_setfield(L, -2, "ops");
    set_integer(L, "failovers", m->failovers);
    lua_createtable(L, 0, 3);
    set_integer(L, "moved", m->cluster_moved);
    set_integer(L, "ask", m->cluster_ask);
    set_integer(L, "refreshes", m->cluster_refreshes);
    lua_setfield(L, -2, "cluster");
    lua_pushboolean(L, m->enabled);
    lua_setfield(L, -2, "metrics");
    return 1;
}

static const rs_lua_op stats_op_desc = {
    "stats", sizeof(stats_op), 1, parse_stats, run_stats, push_stats, NULL, NULL,
};

/* store:reset_stats() -- every counter back to zero. */
static int store_reset_stats(lua_State *L)
{
    rs_store_metrics_reset(rs_lua_check_store(L, 1));
    return 0;
}

/* store:prometheus() -> the metrics in the Prometheus text format. */
static int store_prometheus(lua_State *L)
{
    rs_metrics_snapshot m;
    rs_store_metrics(rs_lua_check_store(L, 1), &m);
    char **text = rs_lua_push_result(L);
    if (!(*text = rs_metrics_prometheus(&m))) return luaL_error(L, "out of memory");
    rs_lua_result_to_string(L, text, strlen(*text));
    return 1;
}

/* store:server_identity() -> {db = n, masters = {{run_id =, replid =}, ...}}:
 * what the servers say they are (INFO), to tell two stores apart. An
 * operation (startable): the buffer is the op's. */
#define IDENTITY_MAX_MASTERS 1024
typedef struct identity_op {
    rs_master_identity *masters;
    int db;
} identity_op;

static void parse_identity(lua_State *L, void *arg)
{
    identity_op *op = arg;
    op->masters = rs_lua_op_alloc(L, op, IDENTITY_MAX_MASTERS * sizeof *op->masters);
}

static int run_identity(rs_store *store, void *arg, rs_error *err)
{
    identity_op *op = arg;
    return rs_store_identity(store, op->masters, IDENTITY_MAX_MASTERS, &op->db, err);
}

static int push_identity(lua_State *L, rs_store *store, void *arg, int n)
{
    identity_op *op = arg;
    (void)store;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, op->db);
    lua_setfield(L, -2, "db");
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, op->masters[i].run_id);
        lua_setfield(L, -2, "run_id");
        lua_pushstring(L, op->masters[i].replid);
        lua_setfield(L, -2, "replid");
        lua_pushinteger(L, op->masters[i].replicas);
        lua_setfield(L, -2, "replicas");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "masters");
    return 1;
}

static const rs_lua_op identity_op_desc = {
    "server_identity", sizeof(identity_op), 0, parse_identity, run_identity, push_identity, NULL, NULL,
};

/* store:master_changes() -> how many times the store saw its Sentinel
 * master change (0 otherwise); it never goes back */
static int store_master_changes(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)rs_store_master_changes(rs_lua_check_store(L, 1)));
    return 1;
}

/* store:confirm_writes([replicas [, timeout]]) -> how many replicas have
 * every write the master acknowledged so far (at most `replicas`, default
 * 1; waits at most timeout, default wait_timeout). An operation. */
typedef struct confirm_op {
    int replicas;
    double timeout;
} confirm_op;

static void parse_confirm(lua_State *L, void *arg)
{
    confirm_op *op = arg;
    lua_Integer replicas = luaL_optinteger(L, 2, 1);
    luaL_argcheck(L, replicas >= 1 && replicas <= 1000, 2, "replicas must be 1..1000");
    op->replicas = (int)replicas;
    op->timeout = luaL_optnumber(L, 3, 0);   /* 0: the store's wait_timeout */
}

static int run_confirm(rs_store *store, void *arg, rs_error *err)
{
    confirm_op *op = arg;
    return rs_store_confirm_writes(store, op->replicas, op->timeout, err);
}

static int push_integer(lua_State *L, rs_store *store, void *arg, int n)
{
    (void)store, (void)arg;
    lua_pushinteger(L, n);
    return 1;
}

static const rs_lua_op confirm_op_desc = {
    "confirm_writes", sizeof(confirm_op), 2, parse_confirm, run_confirm, push_integer, NULL, NULL,
};

/* store:server_figures() -> {{node =, dbsize =, used_memory =,
 * used_memory_human =, redis_version =}, ...}: one per master (a cluster's
 * every master, node = "host:port"; else one, node = nil); a figure the
 * server refused is nil. An operation: startable as a job too. */
typedef struct figures_op {
    rs_node_figures *nodes;    /* IDENTITY_MAX_MASTERS, owned by the op */
} figures_op;

static void parse_figures(lua_State *L, void *arg)
{
    figures_op *op = arg;
    op->nodes = rs_lua_op_alloc(L, op, IDENTITY_MAX_MASTERS * sizeof *op->nodes);
}

static int run_figures(rs_store *store, void *arg, rs_error *err)
{
    figures_op *op = arg;
    return rs_store_node_figures(store, op->nodes, IDENTITY_MAX_MASTERS, err);
}

static int push_figures(lua_State *L, rs_store *store, void *arg, int n)
{
    figures_op *op = arg;
    (void)store;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const rs_node_figures *f = &op->nodes[i];
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

static const rs_lua_op figures_op_desc = {
    "server_figures", sizeof(figures_op), 0, parse_figures, run_figures, push_figures, NULL, NULL,
};

/* store:node_info() -> {{node = "host:port" (a cluster only), info = text}, ...}:
 * INFO of every master (rs_store_node_info), for `serve`. An operation:
 * the texts are the op's until pushed (its free frees them). */
#define NODE_INFO_MAX 1024
typedef struct node_info_op {
    size_t n;
    rs_node_info *nodes;
} node_info_op;

static void parse_node_info(lua_State *L, void *arg)
{
    node_info_op *op = arg;
    op->nodes = rs_lua_op_alloc(L, op, NODE_INFO_MAX * sizeof *op->nodes);
}

static int run_node_info(rs_store *store, void *arg, rs_error *err)
{
    node_info_op *op = arg;
    int n = rs_store_node_info(store, op->nodes, NODE_INFO_MAX, err);
    op->n = n > 0 ? (size_t)n : 0;
    return n;
}

static int push_node_info(lua_State *L, rs_store *store, void *arg, int n)
{
    node_info_op *op = arg;
    (void)store;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        if (op->nodes[i].address[0]) {
            lua_pushstring(L, op->nodes[i].address);
            lua_setfield(L, -2, "node");
        }
        lua_pushlstring(L, op->nodes[i].info, op->nodes[i].info_len);
        lua_setfield(L, -2, "info");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static void free_node_info(void *arg)
{
    node_info_op *op = arg;
    for (size_t i = 0; i < op->n; i++) rs_free(op->nodes[i].info);
    op->n = 0;
}

static const rs_lua_op node_info_op_desc = {
    "node_info", sizeof(node_info_op), 0, parse_node_info, run_node_info, push_node_info, NULL,
    free_node_info,
};

static const luaL_Reg server_methods[] = {
    {"master_changes", store_master_changes},
    {"reset_stats", store_reset_stats},
    {"prometheus", store_prometheus},
    {NULL, NULL},
};

static const rs_lua_op *const server_ops[] = {
    &stats_op_desc, &figures_op_desc, &identity_op_desc, &confirm_op_desc, &node_info_op_desc, NULL,
};

void rs_lua_add_server_methods(lua_State *L)
{
    luaL_setfuncs(L, server_methods, 0);
    rs_lua_add_ops(L, server_ops);
}
