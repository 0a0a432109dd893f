/* SPDX-License-Identifier: MIT */
/* cluster_nodes.c -- what CLUSTER NODES says of the node that answers.
 *
 * A walk over every master (scan.c) trusts a node's SCAN only while none
 * of its slots is migrating or importing. Asking is an operation like any
 * other (an rs_call on that node's pool, through rs_call_run), so it lives
 * above the attempt loop, apart from cluster.c, which routes every call
 * and must not call back into the loop.
 */
#include <string.h>

#include "cluster_nodes.h"
#include "call.h"
#include "error.h"

/* In CLUSTER NODES, a node shows its own open slots ("[slot->-id]",
 * "[slot-<-id]") on the line whose flags say "myself". */
int rs_cluster_open_slots(rs_store *store, rs_pool *pool, rs_error *err)
{
    const char *argv[2] = {"CLUSTER", "NODES"};
    const size_t len[2] = {7, 5};
    const rs_cmd cmd = {2, argv, len};
    redisReply *reply;
    rs_call call = RS_CALL(RS_OP_LIST, "list (CLUSTER NODES)", 1, &cmd, &reply, err);
    call.pool = pool;
    call.flags = RS_CALL_UNCOUNTED;
    if (rs_call_run(store, &call) < 0) return -1;
    int open = -1;
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_VERB) {
        const char *p = reply->str, *end = reply->str + reply->len;
        while (p < end && open < 0) {
            const char *eol = memchr(p, '\n', (size_t)(end - p));
            if (!eol) eol = end;
            /* Fields: id, address, flags, ... */
            const char *flags = memchr(p, ' ', (size_t)(eol - p));
            flags = flags ? memchr(flags + 1, ' ', (size_t)(eol - flags - 1)) : NULL;
            const char *flags_end = flags ? memchr(flags + 1, ' ', (size_t)(eol - flags - 1)) : NULL;
            if (flags_end && memmem(flags + 1, (size_t)(flags_end - flags - 1), "myself", 6))
                open = memchr(flags_end, '[', (size_t)(eol - flags_end)) != NULL;
            p = eol + 1;
        }
    }
    freeReplyObject(reply);
    if (open < 0) rs_error_set(err, RS_ERR_SERVER, 0, "list: CLUSTER NODES has no line for the node itself");
    return open;
}
