/* SPDX-License-Identifier: MIT */
/* exec.c -- one attempt of a call on one pool: the engine's lowest layer.
 *
 * Every store operation is a short pipeline of argv commands (binary safe:
 * user data is never formatted into a command string). One attempt lends a
 * connection, lets the call's hooks see it, sends the whole pipeline, and
 * reads every reply even after an error reply so the connection stays in
 * step. A connection that saw an I/O error is closed (with a reset), along
 * with the idle ones that are likely dead too.
 *
 * An attempt says what it did: whether anything was sent, how many replies
 * were read, whether a command's outcome is lost and whether sending it
 * again could run a command twice. Deciding on a retry from that is
 * call.c's (the attempt loop); which pool an attempt goes to is decided
 * there too (the routing seam), so cluster.c uses this attempt for each
 * node without the two calling each other.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "exec.h"
#include "call_types.h"
#include "clock.h"
#include "closing.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "pool.h"
#include "retry.h"

/* ---------------------------------------------------------------------
 * Spin-waiting for the first reply (the spin_wait option of the pool's
 * config: a lease's own config turns it off)
 *
 * On loopback or a LAN, Redis often answers within a few tens of
 * microseconds: about what the kernel takes to put a blocked thread to
 * sleep and wake it again. Polling the socket for up to spin_wait before
 * blocking saves that round through the scheduler on sequential calls. It
 * costs CPU, so it is done only when it pays:
 *  - while no other thread of the process waits for a reply (beside busy
 *    threads, spinning would take their CPU);
 *  - never on a job worker: its caller (an event loop) looks at the job
 *    itself, and a second thread spinning beside it takes the CPU the
 *    server needs on a small machine (2 cores, one coroutine's gets:
 *    0.58-0.60x the blocking rate with the workers spinning, 0.77-0.79x
 *    without; 16 coroutines' pipelines +35%);
 *  - on a connection whose replies come within spin_wait: after
 *    SPIN_MISSES_MAX late replies in a row it spins once in SPIN_PROBE
 *    calls only, to notice when the server is near again.
 * ------------------------------------------------------------------ */
#define SPIN_MISSES_MAX 8
#define SPIN_PROBE 16

static atomic_int waiters;       /* threads waiting for replies, process-wide */
/* Set on the store's job workers (rs_exec_no_spin_on_this_thread). */
static _Thread_local int no_spin;

void rs_exec_no_spin_on_this_thread(void)
{
    no_spin = 1;
}

static void spin_for_reply(rs_conn *conn, double spin_wait, int alone)
{
    if (spin_wait <= 0 || !alone || no_spin) return;
    if (conn->exec.spin_misses >= SPIN_MISSES_MAX && ++conn->exec.spin_skipped % SPIN_PROBE != 0) return;
    struct pollfd p = {conn->ctx->fd, POLLIN, 0};
    double deadline = rs_now() + spin_wait;
    do {
        if (poll(&p, 1, 0) != 0) {          /* readable, closed or failed: read now */
            conn->exec.spin_misses = 0;
            return;
        }
    } while (rs_now() < deadline);
    if (conn->exec.spin_misses < SPIN_MISSES_MAX) conn->exec.spin_misses++;
}

/* A pooled plain-TCP connection that is readable before we send has been
 * closed by the server (restart, idle timeout, kill): failing it here,
 * before a byte is written, keeps the attempt a certain "not run". Returns
 * 1 with err set. Not checked: a fresh connection (its first reply, e.g.
 * "max number of clients", is read as the reply to our command) and TLS
 * (a readable socket may only carry session tickets). */
static int closed_before_send(rs_conn *conn, rs_error *err)
{
    redisContext *ctx = conn->ctx;
    struct pollfd p = {ctx->fd, POLLIN, 0};
    if (conn->tls || !conn->exec.used || poll(&p, 1, 0) <= 0) return 0;
    void *reply = NULL;
    if (redisBufferRead(ctx) == REDIS_OK && redisGetReplyFromReader(ctx, &reply) == REDIS_OK &&
        reply && ((redisReply *)reply)->type == REDIS_REPLY_ERROR) {
        rs_error_from_reply(err, ((redisReply *)reply)->str, ((redisReply *)reply)->len);
    } else {
        rs_error_set(err, RS_ERR_CONNECTION, 1, "connection closed by server (nothing sent)");
    }
    if (reply) freeReplyObject(reply);
    return 1;
}

/* The call's commands from call->skip on, pipelined on a connection; their
 * replies[0..at->answered) are set even when it fails. Error replies fail
 * it unless RS_CALL_ERROR_REPLIES. */
static int run_pipeline(rs_conn *conn, const rs_call *call, double spin_wait, rs_error *err,
                        rs_attempt *at)
{
    redisContext *ctx = conn->ctx;
    const rs_cmd *cmds = call->cmds + call->skip;
    size_t ncmds = call->ncmds - call->skip;
    redisReply **replies = call->replies + call->skip;
    int keep_errors = (call->flags & RS_CALL_ERROR_REPLIES) != 0;
    if (closed_before_send(conn, err)) {
        at->broken = 1;
        return -1;
    }
    if (rs_resp_append(ctx, ncmds, cmds) < 0) {
        if (ctx->err) rs_error_from_context(err, ctx);
        else rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        at->broken = 1;
        return -1;
    }
    /* From here on the server may run what it received, whatever we read. */
    at->sent = 1;
    conn->exec.used = 1;
    size_t got = 0;
    int alone = atomic_fetch_add(&waiters, 1) == 0;
    int written = 0;
    do {
        if (redisBufferWrite(ctx, &written) != REDIS_OK) {
            rs_error_from_context(err, ctx);
            at->broken = 1;
            break;
        }
    } while (!written);
    if (written) spin_for_reply(conn, spin_wait, alone);
    for (; written && got < ncmds; got++) {
        void *reply = NULL;
        if (redisGetReply(ctx, &reply) != REDIS_OK || !reply) {
            rs_error_from_context(err, ctx);
            at->broken = 1;
            break;
        }
        replies[got] = reply;
    }
    atomic_fetch_sub(&waiters, 1);
    at->answered = got;
    if (got < ncmds) return -1;
    for (size_t i = 0; i < got && !keep_errors; i++) {
        if (replies[i]->type == REDIS_REPLY_ERROR) {
            rs_error_from_reply(err, replies[i]->str, replies[i]->len);
            return -1;
        }
    }
    return 0;
}

void rs_exec_fail(rs_error *err, const char *what, int attempts, const rs_error *last)
{
    rs_error_set(err, last->kind, last->retryable, "%s failed after %d attempt%s: %s", what,
                 attempts, attempts == 1 ? "" : "s", last->message);
    err->attempts = attempts;
    err->reply = last->reply;
}

void rs_exec_unknown(rs_error *err, const char *what, int attempts, size_t answered,
                     size_t ncmds, const rs_error *last)
{
    char part[80] = "";
    if (ncmds > 1)
        snprintf(part, sizeof part, " (replies to %zu of %zu commands read, the rest unknown)",
                 answered, ncmds);
    rs_error_set(err, RS_ERR_UNKNOWN, 0,
                 "%s: outcome unknown after %d attempt%s, the command may or may not have "
                 "run%s: %s",
                 what, attempts, attempts == 1 ? "" : "s", part, last->message);
    err->attempts = attempts;
}

/* After an attempt whose replies were all read: did every command that
 * did not fail with an error reply only wait (WAIT changes nothing)? */
static int only_waits_ran(const rs_cmd *cmds, redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int is_wait = cmds[i].argvlen[0] == 4 && strncasecmp(cmds[i].argv[0], "WAIT", 4) == 0;
        if (replies[i] && replies[i]->type != REDIS_REPLY_ERROR && !is_wait) return 0;
    }
    return 1;
}

int rs_call_attempt(rs_pool *pool, rs_call *call, rs_attempt *at, rs_error *last)
{
    const rs_call_hooks *hooks = call->hooks;
    *at = (rs_attempt){0, 0, 0, 0, 1};
    for (size_t i = 0; i < call->ncmds; i++) call->replies[i] = NULL;
    call->skip = 0;
    rs_conn *conn = rs_pool_acquire(pool, last);
    /* The store began closing while this call waited for a connection:
     * nothing of it is sent (the close waits only for what is on the wire). */
    if (rs_pool_closing(pool)) {
        if (conn) rs_pool_release(pool, conn, 0);
        rs_closing_error(last, call->what);
        return -1;
    }
    if (!conn) {
        if (last->kind != RS_ERR_POOL) rs_pool_after_failure(pool, 0, last);
        return -1;
    }
    if (hooks && hooks->before_send && hooks->before_send(call, conn, last) < 0) {
        rs_pool_release(pool, conn, 0);
        return -1;
    }
    if (call->skip >= call->ncmds) call->skip = 0;
    int rc = run_pipeline(conn, call, rs_pool_config(pool)->spin_wait, last, at);
    at->answered += call->skip;           /* the skipped ones: NULL */
    if (rc == 0 && hooks && hooks->after_replies) rc = hooks->after_replies(call, conn, last);
    rs_pool_release(pool, conn, at->broken);
    if (rc == 0) return 0;
    rs_pool_after_failure(pool, at->broken, last);
    /* Sent and not every reply read: those commands may have run. Every
     * reply read: an error reply says its command did not run, the others
     * did, and only a WAIT among those may run again. */
    at->lost = at->sent && at->answered < call->ncmds;
    at->repeatable = !at->sent ||
                     (!at->lost && only_waits_ran(call->cmds, call->replies, call->ncmds));
    return -1;
}

int rs_retry_step(rs_store *store, const char *what, int (*step)(void *, rs_error *),
                  void *ctx, rs_error *err)
{
    rs_error last;
    rs_error_clear(&last);
    for (int attempt = 1;; attempt++) {
        if (step(ctx, &last) == 0) return 0;
        if (!rs_retry_wait(store, what, attempt, &last)) {
            rs_exec_fail(err, what, attempt, &last);
            return -1;
        }
    }
}
