/* SPDX-License-Identifier: MIT */
/* identity.c -- which data set a store works on, told by the servers.
 *
 * Two URLs that differ as text (localhost vs 127.0.0.1, "/0", a Sentinel
 * URL vs the master's own address) may reach the same keys, so tools that
 * delete after copying compare what the servers say about themselves:
 * every master's `run_id` (INFO server: one per process, new at each start)
 * and `master_replid` (INFO replication: shared by a master and its
 * replicas, so a replica named as target is seen as the same data set),
 * plus the selected db. A standalone or Sentinel store has one master; a
 * cluster store asks each master of its current slot map. The replicas a
 * master counts (connected_slaves) come with it: tools that delete make
 * their copies wait for one (WAIT) when there is one.
 */
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "call.h"
#include "cluster.h"
#include "config.h"
#include "error.h"
#include "store_state.h"

int rs_info_field(const char *text, size_t len, const char *name, char *buf, size_t size)
{
    size_t nlen = strlen(name);
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *eol = memchr(line, '\n', len - pos);
        size_t llen = eol ? (size_t)(eol - line) : len - pos;
        if (llen > 0 && line[llen - 1] == '\r') llen--;
        if (llen > nlen && memcmp(line, name, nlen) == 0 && line[nlen] == ':') {
            size_t vlen = llen - nlen - 1;
            if (vlen == 0 || vlen >= size) return 0;
            memcpy(buf, line + nlen + 1, vlen);
            buf[vlen] = '\0';
            return 1;
        }
        pos += (eol ? (size_t)(eol - line) + 1 : len - pos);
    }
    return 0;
}

/* Reads run_id and master_replid of the master behind `pool`. 0 or -1. */
static int master_identity(rs_store *store, rs_pool *pool, rs_master_identity *out,
                           rs_error *err)
{
    static const char *server_argv[2] = {"INFO", "server"};
    static const char *repl_argv[2] = {"INFO", "replication"};
    static const size_t server_len[2] = {4, 6}, repl_len[2] = {4, 11};
    rs_cmd cmds[2] = {{2, server_argv, server_len}, {2, repl_argv, repl_len}};
    redisReply *replies[2];
    rs_call call = RS_CALL(RS_OP_OTHER, "server_identity", 2, cmds, replies, err);
    call.pool = pool;
    call.flags = RS_CALL_UNCOUNTED;
    if (rs_call_run(store, &call) < 0) return -1;
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        int text = replies[i]->type == REDIS_REPLY_STRING || replies[i]->type == REDIS_REPLY_VERB;
        if (!text ||
            !rs_info_field(replies[i]->str, replies[i]->len, i == 0 ? "run_id" : "master_replid",
                        i == 0 ? out->run_id : out->replid, sizeof out->run_id))
            ok = 0;
        char count[16];
        out->replicas = 0;
        if (ok && i == 1 &&
            rs_info_field(replies[i]->str, replies[i]->len, "connected_slaves", count, sizeof count))
            out->replicas = atoi(count);
        freeReplyObject(replies[i]);
    }
    if (!ok) {
        rs_error_set(err, RS_ERR_SERVER, 0,
                     "server_identity: INFO did not give run_id and master_replid");
        return -1;
    }
    return 0;
}

int rs_store_identity(rs_store *store, rs_master_identity *masters, size_t max, int *db,
                      rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (max == 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "server_identity: no room for a master");
        return -1;
    }
    rs_pool *single = store->pool, **pools = &single;
    int *slots = NULL;
    size_t n = 1;
    if (store->cluster) {
        pools = malloc(max * sizeof *pools);
        slots = malloc(max * sizeof *slots);
        n = pools && slots ? rs_cluster_masters(store, pools, slots, max) : 0;
    }
    int rc = 0;
    if (store->cluster && !(pools && slots)) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        rc = -1;
    } else if (n == 0) {
        rs_error_set(err, RS_ERR_CONNECTION, 1, "server_identity: the cluster has no master");
        rc = -1;
    }
    for (size_t i = 0; i < n && rc == 0; i++) rc = master_identity(store, pools[i], &masters[i], err);
    if (store->cluster) {
        free(pools);
        free(slots);
    }
    *db = store->cluster ? 0 : store->cfg->parsed.db;
    return rc < 0 ? -1 : (int)n;
}
