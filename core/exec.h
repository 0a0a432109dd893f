/* SPDX-License-Identifier: MIT */
/* exec.h -- one attempt of a call on one pool (exec.c), and the final
 * errors of a call: the engine's lowest layer, for call.c and the cluster
 * side of its routing seam (cluster.c).
 */
#ifndef RS_EXEC_H
#define RS_EXEC_H

#include <stddef.h>

#include "rigatoni_store.h"

typedef struct rs_call rs_call;
typedef struct rs_attempt rs_attempt;
typedef struct rs_pool rs_pool;

/* One attempt of `call` (its commands from call->skip on) on a
 * connection of `pool`: acquire, hooks, pipeline, release; the pool drops
 * what the failure made suspect. replies[0..at->answered) stay set on
 * failure. 0 or -1 + *last. */
int rs_call_attempt(rs_pool *pool, rs_call *call, rs_attempt *at, rs_error *last);
/* The retry policy for a step that is not a pipeline (reading the slot
 * map): runs step(ctx, last) until it returns 0 or the failure is final. */
int rs_retry_step(rs_store *store, const char *what, int (*step)(void *, rs_error *),
                  void *ctx, rs_error *err);
/* The final error of a call: "<what> failed after N attempts: ...". */
/* The calling thread never spin-waits for a reply (exec.c says why): the
 * store's job workers call it as they start. */
void rs_exec_no_spin_on_this_thread(void);
void rs_exec_fail(rs_error *err, const char *what, int attempts, const rs_error *last);
/* The final error of a call whose last attempt may have run: RS_ERR_UNKNOWN,
 * not retryable, naming how many of `ncmds` replies were read. */
void rs_exec_unknown(rs_error *err, const char *what, int attempts, size_t answered,
                     size_t ncmds, const rs_error *last);

#endif /* RS_EXEC_H */
