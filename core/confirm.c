/* SPDX-License-Identifier: MIT */
/* confirm.c -- asking a replica to confirm what the master acknowledged.
 *
 * A write or delete acknowledged by a master that a failover then
 * replaces is lost unless a replica had it (replication is asynchronous).
 * Tools that delete need to know, before they count a delete as done,
 * that it will survive. WAIT counts the replicas that have every write of
 * its own connection, and a connection that wrote nothing has nothing to
 * wait for: so a PUBLISH (propagated to replicas like a write, changing no
 * key, allowed where keys are narrowed by an ACL) goes first on the same
 * connection, and WAIT then covers everything the master acknowledged
 * before it, on any connection. Whether the master is still the one the
 * deletes went to is the caller's to check (rs_store_master_changes,
 * rs_store_identity): a retry after a failover asks the new master.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "call.h"
#include "config.h"
#include "error.h"
#include "store_state.h"

int rs_store_confirm_writes(rs_store *store, int replicas, double timeout, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (store->cluster) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "confirm_writes: not available in cluster mode");
        return -1;
    }
    if (timeout == 0) timeout = store->cfg->wait_timeout;
    if (replicas < 1 || replicas > 1000 || !(timeout > 0) ||
        !(timeout < store->cfg->command_timeout)) {
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "confirm_writes: replicas must be 1..1000 and the timeout more than 0 and "
                     "less than command_timeout (%gs)", store->cfg->command_timeout);
        return -1;
    }
    char n[16], ms[24];
    snprintf(n, sizeof n, "%d", replicas);
    snprintf(ms, sizeof ms, "%.0f", fmax(1, timeout * 1000));
    const char *argv[6] = {"PUBLISH", "__rigatoni_store:confirm", "1", "WAIT", n, ms};
    size_t lens[6] = {7, 24, 1, 4, strlen(n), strlen(ms)};
    rs_cmd cmds[2] = {{3, argv, lens}, {3, argv + 3, lens + 3}};
    redisReply *replies[2];
    rs_call call = RS_CALL(RS_OP_OTHER, "confirm_writes", 2, cmds, replies, err);
    call.pool = store->pool;
    call.flags = RS_CALL_UNCOUNTED;
    if (rs_call_run(store, &call) < 0) return -1;
    int acked = replies[1]->type == REDIS_REPLY_INTEGER && replies[1]->integer > 0
                    ? (int)replies[1]->integer : 0;
    rs_replies_free(replies, 2);
    return acked;
}
