/* SPDX-License-Identifier: MIT */
/* node_figures.c -- what each master says about itself, for `stats`.
 *
 * In a cluster the keys and the memory are spread over the masters, so a
 * keyless DBSIZE or INFO routed to one node tells a third of the story:
 * each master of the current slot map is asked, and the caller sums and
 * shows them per node. Each command is sent on its own, so that a user
 * whose ACL refuses one (DBSIZE, INFO) still gets the others; a refusal
 * leaves that figure unknown, a master that cannot be reached fails it.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One keyless command on a master: its reply, NULL when the server
 * refused it (an error reply), or -1 with err when it failed otherwise. */
static int ask(rs_store *store, rs_pool *pool, const rs_cmd cmd, redisReply **reply,
               rs_error *err)
{
    rs_error why;
    rs_error_clear(&why);
    *reply = NULL;
    rs_call call = RS_CALL(RS_OP_OTHER, "stats (server figures)", 1, &cmd, reply, &why);
    call.pool = pool;
    call.flags = RS_CALL_UNCOUNTED;
    if (rs_call_run(store, &call) == 0) return 0;
    if (why.reply != RS_REPLY_NONE && !why.retryable) return 0;   /* refused: unknown */
    if (err) *err = why;
    return -1;
}

static int is_text(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_VERB);
}

static int one_node(rs_store *store, rs_pool *pool, rs_node_figures *out, rs_error *err)
{
    static const char *dbsize[1] = {"DBSIZE"}, *memory[2] = {"INFO", "memory"},
                      *server[2] = {"INFO", "server"};
    static const size_t dbsize_len[1] = {6}, memory_len[2] = {4, 6}, server_len[2] = {4, 6};
    redisReply *r;
    out->dbsize = out->used_memory = -1;
    if (ask(store, pool, (rs_cmd){1, dbsize, dbsize_len}, &r, err) < 0) return -1;
    if (r && r->type == REDIS_REPLY_INTEGER) out->dbsize = r->integer;
    if (r) freeReplyObject(r);
    if (ask(store, pool, (rs_cmd){2, memory, memory_len}, &r, err) < 0) return -1;
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
    if (ask(store, pool, (rs_cmd){2, server, server_len}, &r, err) < 0) return -1;
    if (is_text(r))
        rs_info_field(r->str, r->len, "redis_version", out->redis_version,
                      sizeof out->redis_version);
    if (r) freeReplyObject(r);
    return 0;
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
    if (!store->cluster) return one_node(store, store->pool, &out[0], err) < 0 ? -1 : 1;
    rs_pool **pools = malloc(max * sizeof *pools);
    int *slots = malloc(max * sizeof *slots);
    if (!pools || !slots) {
        free(pools);
        free(slots);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    size_t n = rs_cluster_masters(store, pools, slots, max);
    int rc = n ? 0 : -1;
    if (!n) rs_error_set(err, RS_ERR_CONNECTION, 1, "server figures: the cluster has no master");
    for (size_t i = 0; i < n && rc == 0; i++) {
        rs_cluster_node_address(store, pools[i], out[i].node, sizeof out[i].node);
        rc = one_node(store, pools[i], &out[i], err);
    }
    free(pools);
    free(slots);
    return rc < 0 ? -1 : (int)n;
}
