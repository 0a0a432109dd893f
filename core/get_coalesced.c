/* SPDX-License-Identifier: MIT */
/* get_coalesced.c -- several rs_get_raw of jobs as one pipeline (one
 * attempt through the engine, rs_call_run), like an auto-pipelining
 * client.
 *
 * Only the plain outcomes are taken from the shared pipeline: a string
 * (found) or a nil (absent), which is exactly what rs_get_raw makes of
 * the same reply. Everything else (an error reply such as WRONGTYPE, a
 * reply of another type, a key the collection cannot make, a failed or
 * interrupted pipeline) leaves the item to be run again alone by the
 * caller, through rs_get_raw, whose error, retries and metrics are then
 * the item's own: a GET is safe to repeat, and one bad key never changes
 * another item's outcome. The pipeline is one attempt (RS_CALL_ONCE) and
 * is not counted as a call; each item answered here counts as one get in
 * the metrics, as the blocking call would.
 *
 * A pipeline that failed as a whole was each item's attempt 1: the item
 * goes on from it (rs_get_raw_after), with the blocking call's backoff,
 * retry count and max_retries. An item refused by its own error reply
 * (WRONGTYPE) is simply run again: its blocking call gets that same reply
 * at its attempt 1, so the outcome and the metrics are the blocking ones.
 */
#include <stdlib.h>
#include <string.h>

#include "get_coalesced.h"
#include "call.h"
#include "metrics.h"
#include "store_state.h"
#include "token_key.h"

int rs_get_coalesced(rs_store *store, rs_get_item *items, size_t n, rs_error *failure)
{
    char *keys[RS_GET_COALESCE_MAX];
    const char *argv[RS_GET_COALESCE_MAX][2];
    size_t argvlen[RS_GET_COALESCE_MAX][2];
    rs_cmd cmds[RS_GET_COALESCE_MAX];
    redisReply *replies[RS_GET_COALESCE_MAX];
    size_t slot[RS_GET_COALESCE_MAX];      /* command -> item */
    size_t m = 0;
    if (n > RS_GET_COALESCE_MAX) n = RS_GET_COALESCE_MAX;
    for (size_t i = 0; i < n; i++) {
        items[i].redo = 1;
        items[i].failed = 0;
        items[i].out = NULL;
        items[i].out_len = 0;
        rs_error kerr;
        size_t key_len;
        char *key = rs_token_key(store, items[i].coll, items[i].coll_len, &key_len, &kerr);
        if (!key) continue;                /* rs_get_raw gives the error */
        keys[m] = key;
        argv[m][0] = "GET";
        argvlen[m][0] = 3;
        argv[m][1] = key;
        argvlen[m][1] = key_len;
        cmds[m] = (rs_cmd){2, argv[m], argvlen[m]};
        replies[m] = NULL;
        slot[m] = i;
        m++;
    }
    if (m == 0) return 0;
    rs_call call = RS_CALL(RS_OP_GET, "get (pipelined)", m, cmds, replies, failure);
    call.flags = RS_CALL_ERROR_REPLIES | RS_CALL_ONCE | RS_CALL_UNCOUNTED;
    rs_metrics_call started = rs_metrics_begin();
    int rc = rs_call_run(store, &call);
    for (size_t c = 0; c < m; c++) {
        rs_get_item *it = &items[slot[c]];
        redisReply *r = rc == 0 ? replies[c] : NULL;
        it->failed = rc < 0 && failure->attempts > 0;   /* 0: not sent (closing) */
        if (r && r->type == REDIS_REPLY_NIL) {
            it->rc = 0;
            it->redo = 0;
        } else if (r && r->type == REDIS_REPLY_STRING && (it->out = malloc(r->len + 1))) {
            memcpy(it->out, r->str, r->len);
            it->out[r->len] = '\0';
            it->out_len = r->len;
            it->rc = 1;
            it->redo = 0;
        }
        if (!it->redo) rs_metrics_end(&store->metrics, RS_OP_GET, started, RS_OK);
        if (r) freeReplyObject(r);
        free(keys[c]);
    }
    return rc;
}
