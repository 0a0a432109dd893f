/* SPDX-License-Identifier: MIT */
/* call.h -- the attempt loop (call.c): runs an rs_call (call_types.h)
 * through routing, attempts, classification and retries, records it in
 * the metrics, and makes writes durable with WAIT.
 */
#ifndef RS_CALL_H
#define RS_CALL_H

#include "call_types.h"

/* Runs `call` under its retry rule. On success, replies[i] holds each
 * reply (free with freeReplyObject); an error reply fails the call unless
 * RS_CALL_ERROR_REPLIES. On failure with RS_ERR_UNKNOWN and RS_CALL_KEEP,
 * the first call->answered replies are set and the caller's (their
 * commands ran, or did not where the reply is an error; the later ones may
 * or may not have). On another failure after every reply was read (an
 * error reply among them), RS_CALL_KEEP gives answered = ncmds and the
 * replies to the caller too; otherwise no reply is left. 0 or -1. */
int rs_call_run(rs_store *store, rs_call *call);
/* rs_call_run for writes that must be durable: with wait_replicas set, a
 * WAIT follows in the same pipeline (wherever the call goes: the store's
 * routing or call->pool), and too few acknowledgements fail the call (or
 * log a warning with wait_policy = warn). A WAIT whose reply was lost
 * after every write was answered counts as no acknowledgement. */
int rs_call_durable(rs_store *store, rs_call *call);

#endif /* RS_CALL_H */
