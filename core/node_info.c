/* SPDX-License-Identifier: MIT */
/* node_info.c -- INFO of every master a store reaches, for monitoring.
 *
 * The exporter (`rigatoni-store serve`) reports Redis-side figures per
 * node: memory, evictions, hits, clients, role and run_id. A keyless
 * command through the store reaches one node only, so this asks each
 * master of the slot map on its own pool (a cluster), or the store's
 * server (standalone, the Sentinel master). INFO is read-only: retried
 * like any idempotent call. All or nothing: a node that fails fails the
 * call, so a caller never mistakes a partial set for the cluster.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* INFO of the server behind `pool` into *out. 0 or -1. */
static int node_info(rs_store *store, rs_pool *pool, rs_node_info *out, rs_error *err)
{
    static const char *argv[1] = {"INFO"};
    static const size_t argvlen[1] = {4};
    rs_cmd cmd = {1, argv, argvlen};
    redisReply *reply;
    rs_call call = RS_CALL(RS_OP_OTHER, "node_info", 1, &cmd, &reply, err);
    call.pool = pool;
    call.flags = RS_CALL_UNCOUNTED;
    if (rs_call_run(store, &call) < 0) return -1;
    int text = reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_VERB;
    if (!text) {
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
    rs_pool *single = store->pool, **pools = &single;
    char (*addresses)[300] = NULL;
    size_t n = 1;
    if (store->cluster) {
        pools = malloc(max * sizeof *pools);
        addresses = malloc(max * sizeof *addresses);
        if (!pools || !addresses) {
            free(pools);
            free(addresses);
            rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
            return -1;
        }
        n = rs_cluster_master_addresses(store, pools, addresses, max);
    }
    int rc = 0;
    if (n == 0) {
        rs_error_set(err, RS_ERR_CONNECTION, 1, "node_info: the cluster has no master");
        rc = -1;
    }
    size_t done = 0;
    for (; done < n && rc == 0; done++) {
        memset(&nodes[done], 0, sizeof nodes[done]);
        if (addresses) memcpy(nodes[done].address, addresses[done], sizeof nodes[done].address);
        rc = node_info(store, pools[done], &nodes[done], err);
    }
    if (rc < 0)
        for (size_t i = 0; i < done; i++) {
            free(nodes[i].info);
            nodes[i].info = NULL;
        }
    if (store->cluster) {
        free(pools);
        free(addresses);
    }
    return rc < 0 ? -1 : (int)n;
}
