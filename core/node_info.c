/* SPDX-License-Identifier: MIT */
/* node_info.c -- what each master a store reaches says about itself:
 * INFO for the exporter (`serve`), DBSIZE and INFO figures for `stats`.
 *
 * A keyless command through the store reaches one node only, and in a
 * cluster the keys and the memory are spread over the masters. So each
 * master of the current slot map is asked on its own pool (a cluster), or
 * the store's server (standalone, the Sentinel master); one walk over the
 * masters serves both callers. The commands are read-only: retried like
 * any idempotent call. The two callers differ in what a refusal (an ACL
 * without INFO or DBSIZE) means: for `serve` the call fails with the
 * server's error (it then leaves its Redis figures out); for `stats` that
 * figure is unknown and the others are still asked. A master that cannot
 * be reached fails either call: a caller never mistakes a partial set for
 * the cluster.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "cluster.h"
#include "error.h"
#include "identity.h"
#include "store_state.h"

#define ADDRESS_MAX 300

/* The masters: pools[0..n) and, in a cluster, their "host:port" ("" for
 * the store's own server). Returns n (at most max) with *pools and
 * *addresses to free with masters_free, or -1 with err. */
static int masters(rs_store *store, size_t max, const char *what, rs_pool ***pools,
                   char (**addresses)[ADDRESS_MAX], rs_error *err)
{
    size_t room = store->cluster ? max : 1;
    *pools = malloc(room * sizeof **pools);
    *addresses = calloc(room, sizeof **addresses);
    if (!*pools || !*addresses) {
        free(*pools);
        free(*addresses);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    if (!store->cluster) {
        (*pools)[0] = store->pool;
        return 1;
    }
    size_t n = rs_cluster_master_addresses(store, *pools, *addresses, max);
    if (n == 0) {
        free(*pools);
        free(*addresses);
        rs_error_set(err, RS_ERR_CONNECTION, 1, "%s: the cluster has no master", what);
        return -1;
    }
    return (int)n;
}

/* One keyless command on a master: 0 with its reply, 1 when the server
 * refused it (an error reply; *why says which), -1 when it failed
 * otherwise (*why). */
static int ask(rs_store *store, rs_pool *pool, const char *what, rs_cmd cmd,
               redisReply **reply, rs_error *why)
{
    rs_error_clear(why);
    *reply = NULL;
    rs_call call = RS_CALL(RS_OP_OTHER, what, 1, &cmd, reply, why);
    call.pool = pool;
    call.flags = RS_CALL_UNCOUNTED;
    if (rs_call_run(store, &call) == 0) return 0;
    return why->reply != RS_REPLY_NONE && !why->retryable ? 1 : -1;
}

static int is_text(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_VERB);
}

/* ---------------------------------------------------------------------
 * INFO of every master (serve)
 * ------------------------------------------------------------------ */

/* INFO of the server behind `pool` into *out. 0 or -1 (a refusal too). */
static int node_info(rs_store *store, rs_pool *pool, rs_node_info *out, rs_error *err)
{
    static const char *argv[1] = {"INFO"};
    static const size_t argvlen[1] = {4};
    redisReply *reply;
    if (ask(store, pool, "node_info", (rs_cmd){1, argv, argvlen}, &reply, err) != 0) return -1;
    if (!is_text(reply)) {
        freeReplyObject(reply);
        rs_error_set(err, RS_ERR_SERVER, 0, "node_info: INFO did not answer with text");
        return -1;
    }
    out->info = malloc(reply->len + 1);
    if (!out->info) {
        freeReplyObject(reply);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    memcpy(out->info, reply->str, reply->len);
    out->info[reply->len] = '\0';
    out->info_len = reply->len;
    freeReplyObject(reply);
    return 0;
}

int rs_store_node_info(rs_store *store, rs_node_info *nodes, size_t max, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (max == 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "node_info: no room for a node");
        return -1;
    }
    rs_pool **pools;
    char(*addresses)[ADDRESS_MAX];
    int n = masters(store, max, "node_info", &pools, &addresses, err);
    if (n < 0) return -1;
    int rc = 0, done = 0;
    for (; done < n && rc == 0; done++) {
        memset(&nodes[done], 0, sizeof nodes[done]);
        memcpy(nodes[done].address, addresses[done], sizeof nodes[done].address);
        rc = node_info(store, pools[done], &nodes[done], err);
    }
    if (rc < 0)
        for (int i = 0; i < done; i++) {
            free(nodes[i].info);
            nodes[i].info = NULL;
        }
    free(pools);
    free(addresses);
    return rc < 0 ? -1 : n;
}

/* ---------------------------------------------------------------------
 * DBSIZE and INFO figures of every master (stats)
 * ------------------------------------------------------------------ */

/* The figures of one master; a refused command leaves its figure unknown.
 * 0, or -1 with err when the master failed. */
static int node_figures(rs_store *store, rs_pool *pool, rs_node_figures *out, rs_error *err)
{
    static const char *const what = "stats (server figures)";
    static const char *dbsize[1] = {"DBSIZE"}, *memory[2] = {"INFO", "memory"},
                      *server[2] = {"INFO", "server"};
    static const size_t dbsize_len[1] = {6}, memory_len[2] = {4, 6}, server_len[2] = {4, 6};
    redisReply *r;
    rs_error why;
    out->dbsize = out->used_memory = -1;
    int rc = ask(store, pool, what, (rs_cmd){1, dbsize, dbsize_len}, &r, &why);
    if (rc < 0) goto failed;
    if (r && r->type == REDIS_REPLY_INTEGER) out->dbsize = r->integer;
    if (r) freeReplyObject(r);
    if ((rc = ask(store, pool, what, (rs_cmd){2, memory, memory_len}, &r, &why)) < 0) goto failed;
    char bytes[32];
    if (is_text(r) && rs_info_field(r->str, r->len, "used_memory", bytes, sizeof bytes)) {
        char *end;
        long long n = strtoll(bytes, &end, 10);
        if (*end == '\0' && n >= 0) out->used_memory = n;
    }
    if (is_text(r))
        rs_info_field(r->str, r->len, "used_memory_human", out->used_memory_human,
                      sizeof out->used_memory_human);
    if (r) freeReplyObject(r);
    if ((rc = ask(store, pool, what, (rs_cmd){2, server, server_len}, &r, &why)) < 0) goto failed;
    if (is_text(r))
        rs_info_field(r->str, r->len, "redis_version", out->redis_version,
                      sizeof out->redis_version);
    if (r) freeReplyObject(r);
    return 0;
failed:
    *err = why;
    return -1;
}

int rs_store_node_figures(rs_store *store, rs_node_figures *out, size_t max, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (max == 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "server figures: no room for a master");
        return -1;
    }
    memset(out, 0, max * sizeof *out);
    rs_pool **pools;
    char(*addresses)[ADDRESS_MAX];
    int n = masters(store, max, "server figures", &pools, &addresses, err);
    if (n < 0) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        snprintf(out[i].node, sizeof out[i].node, "%s", addresses[i]);
        rc = node_figures(store, pools[i], &out[i], err);
    }
    free(pools);
    free(addresses);
    return rc < 0 ? -1 : n;
}
