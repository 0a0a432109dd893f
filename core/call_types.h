/* SPDX-License-Identifier: MIT */
/* call_types.h -- the execution engine's call description: what every
 * layer of the engine reads and every operation fills in (no functions
 * but the freeing of replies; the loop that runs a call is call.h's).
 *
 * Every request to the servers is an rs_call: what to run (operation,
 * commands, retry rule), where (the store's routing, or one given pool),
 * what the caller must see of the connection (hooks) and where the outcome
 * goes (replies, counts, error). rs_call_run takes it through
 * route -> pool -> connection -> pipeline -> classification -> retry; no
 * other file acquires connections or decides retries (the lease's refresh
 * loop, bounded by its validity rather than by max_retries, is the one
 * loop of its own: lock.c). A call holds all its state, so it can be
 * queued and run on another thread: the one who queues it keeps cmds,
 * replies and err alive until it completes.
 */
#ifndef RS_CALL_TYPES_H
#define RS_CALL_TYPES_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "op.h"
#include "resp.h"
#include "rigatoni_store.h"

typedef struct rs_conn rs_conn;
typedef struct rs_pool rs_pool;

/* When a failed attempt may be repeated (the per-operation rules are in
 * rigatoni_store.h). A failure before anything was sent (no connection, a
 * pooled connection found closed) is always retried: the command did not
 * run. A failure after sending (timeout, connection lost before every
 * reply was read) leaves the outcome unknown. */
typedef enum rs_retry_rule {
    RS_RETRY_IDEMPOTENT,   /* repeating has the same effect: retry it too */
    RS_RETRY_UNSENT,       /* never repeat what may have run: RS_ERR_UNKNOWN */
} rs_retry_rule;

/* What one attempt did, beside its replies. */
typedef struct rs_attempt {
    int broken;            /* the connection must be thrown away */
    int sent;              /* some byte of the pipeline may have reached the server */
    size_t answered;       /* leading replies read (set in replies[] even on failure) */
    int lost;              /* sent, and some command's outcome is not known */
    int repeatable;        /* sending it again cannot run a command twice */
} rs_attempt;

typedef struct rs_call rs_call;

/* Where a caller sees an attempt's connection; each may be NULL. */
typedef struct rs_call_hooks {
    /* Lent, nothing sent yet: 0, or -1 + err (the attempt fails unsent,
     * the connection is kept). May set call->skip. */
    int (*before_send)(rs_call *call, rs_conn *conn, rs_error *err);
    /* Every reply read, the connection still lent: 0, or -1 + err. */
    int (*after_replies)(rs_call *call, rs_conn *conn, rs_error *err);
    /* A failed attempt is about to be repeated (after the delay). */
    void (*before_retry)(rs_call *call, const rs_error *last);
} rs_call_hooks;

enum rs_call_flags {
    RS_CALL_KEEP = 1,          /* on failure, the replies read stay the caller's (answered) */
    RS_CALL_ERROR_REPLIES = 2, /* error replies do not fail the attempt: the caller reads them */
    RS_CALL_UNCOUNTED = 4,     /* not recorded in the metrics (a part of a larger call) */
    RS_CALL_ONCE = 8,          /* one attempt; err gets its own failure (attempts 1,
                                * 0 if not sent), the caller retries */
    RS_CALL_DURABLE = 16,      /* rs_script_run: through rs_call_durable */
};

struct rs_cluster_call;

struct rs_call {
    /* what */
    rs_op op;
    const char *what;          /* names the operation in messages */
    rs_retry_rule rule;
    size_t ncmds;
    const rs_cmd *cmds;
    unsigned flags;            /* rs_call_flags */
    /* where: this pool (a node, a lease's own), else the store's routing */
    rs_pool *pool;
    const rs_cmd *wait;        /* cluster: each node's pipeline ends with this WAIT */
    const rs_call_hooks *hooks;
    void *ctx;                 /* the hooks' */
    size_t skip;               /* leading commands not sent this attempt (before_send) */
    const rs_error *prior;     /* an attempt already made and failed elsewhere (the
                                * pipeline of coalesced gets, get_coalesced.c): the
                                * loop starts after it, at attempt 2; NULL: none */
    struct rs_cluster_call *route;   /* cluster.c's state across attempts */
    /* the outcome */
    redisReply **replies;      /* ncmds slots */
    size_t answered;           /* failure with RS_CALL_KEEP: leading replies left set */
    long long acked;           /* cluster WAIT: in, replicas wanted; out, fewest counted */
    int attempts;
    rs_error *err;             /* never NULL (the entry point's: RS_ERR_ACCEPT_NULL) */
    rs_error cause;            /* an RS_ERR_UNKNOWN's: the failure behind it (timeout,
                                * lost connection); kind RS_OK when none */
};

/* A call with the defaults: idempotent, counted, routed by the store. */
#define RS_CALL(op_, what_, ncmds_, cmds_, replies_, err_)                                 \
    ((rs_call){.op = (op_), .what = (what_), .rule = RS_RETRY_IDEMPOTENT, .ncmds = (ncmds_), \
               .cmds = (cmds_), .replies = (replies_), .err = (err_)})

/* Frees the first n replies of a call and clears their slots. */
static inline void rs_replies_free(redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (replies[i]) freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
}

#endif /* RS_CALL_TYPES_H */
