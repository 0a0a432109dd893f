/* exec.c -- running a pipeline on one pool under the retry policy.
 *
 * Every store operation is a short pipeline of argv commands (binary safe:
 * user data is never formatted into a command string). One attempt lends a
 * connection, sends the whole pipeline, and reads every reply even after an
 * error reply so the connection stays in step. A failed attempt is retried
 * while the failure is retryable and attempts remain; a connection that saw
 * an I/O error is closed (with a reset), along with the idle ones that are
 * likely dead too.
 *
 * Each call says whether its commands may run twice (rs_retry_rule). An
 * attempt knows whether anything was sent: failures before that are always
 * retried; after it, a call that must not run twice stops with
 * RS_ERR_UNKNOWN and the replies it did read.
 *
 * This file knows pools and connections only: which pool a store call
 * goes to (the standalone or Sentinel pool, or the cluster's nodes) is
 * decided above it, in call.c, so cluster.c can use these pieces without
 * the two calling each other.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* ---------------------------------------------------------------------
 * Spin-waiting for the first reply (the spin_wait option)
 *
 * On loopback or a LAN, Redis often answers within a few tens of
 * microseconds: about what the kernel takes to put a blocked thread to
 * sleep and wake it again. Polling the socket for up to spin_wait before
 * blocking saves that round through the scheduler on sequential calls. It
 * costs CPU, so it is done only when it pays:
 *  - while no other thread of the process waits for a reply (beside busy
 *    threads, spinning would take their CPU);
 *  - on a connection whose replies come within spin_wait: after
 *    SPIN_MISSES_MAX late replies in a row it spins once in SPIN_PROBE
 *    calls only, to notice when the server is near again.
 * ------------------------------------------------------------------ */
#define SPIN_MISSES_MAX 8
#define SPIN_PROBE 16

static atomic_int waiters;       /* threads waiting for replies, process-wide */

static void spin_for_reply(rs_conn *conn, int alone)
{
    if (conn->spin_wait <= 0 || !alone) return;
    if (conn->spin_misses >= SPIN_MISSES_MAX && ++conn->spin_skipped % SPIN_PROBE != 0) return;
    struct pollfd p = {conn->ctx->fd, POLLIN, 0};
    double deadline = rs_now() + conn->spin_wait;
    do {
        if (poll(&p, 1, 0) != 0) {          /* readable, closed or failed: read now */
            conn->spin_misses = 0;
            return;
        }
    } while (rs_now() < deadline);
    if (conn->spin_misses < SPIN_MISSES_MAX) conn->spin_misses++;
}

void rs_replies_free(redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (replies[i]) freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
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
    if (conn->tls || !conn->used || poll(&p, 1, 0) <= 0) return 0;
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

int rs_run_pipeline(rs_conn *conn, size_t ncmds, const rs_cmd *cmds, redisReply **replies,
                    int keep_errors, rs_error *err, rs_attempt *at)
{
    redisContext *ctx = conn->ctx;
    *at = (rs_attempt){0, 0, 0};
    for (size_t i = 0; i < ncmds; i++) replies[i] = NULL;
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
    conn->used = 1;
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
    if (written) spin_for_reply(conn, alone);
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
    if (!err) return;
    rs_error_set(err, last->kind, last->retryable, "%s failed after %d attempt%s: %s", what,
                 attempts, attempts == 1 ? "" : "s", last->message);
    err->attempts = attempts;
    err->reply = last->reply;
}

/* The failure behind this thread's latest rs_exec_unknown: a caller whose
 * check then finds the command without effect reports it instead. */
static _Thread_local rs_error unknown_cause;
static _Thread_local int unknown_cause_set;

int rs_exec_unknown_cause(rs_error *cause)
{
    if (unknown_cause_set) *cause = unknown_cause;
    return unknown_cause_set;
}

void rs_exec_unknown_cause_clear(void)
{
    unknown_cause_set = 0;
}

void rs_exec_unknown(rs_error *err, const char *what, int attempts, size_t answered,
                     size_t ncmds, const rs_error *last)
{
    unknown_cause = *last;
    unknown_cause_set = 1;
    if (!err) return;
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

/* One attempt on a pooled connection; replies[0..at->answered) stay set on
 * failure. */
static int attempt_once(rs_pool *pool, size_t ncmds, const rs_cmd *cmds, redisReply **replies,
                        rs_attempt *at, rs_error *last)
{
    *at = (rs_attempt){0, 0, 0};
    rs_conn *conn = rs_pool_acquire(pool, last);
    if (conn) {
        int rc = rs_run_pipeline(conn, ncmds, cmds, replies, 0, last, at);
        rs_pool_release(pool, conn, at->broken);
        if (rc == 0) return 0;
    }
    if (last->kind != RS_ERR_POOL) rs_pool_after_failure(pool, at->broken, last);
    return -1;
}

int rs_exec_attempt(rs_pool *pool, size_t ncmds, const rs_cmd *cmds, redisReply **replies,
                    rs_error *last)
{
    rs_attempt at;
    if (attempt_once(pool, ncmds, cmds, replies, &at, last) == 0) return 0;
    rs_replies_free(replies, at.answered);
    return -1;
}

/* After an attempt whose replies were all read: did every command that
 * did not fail with an error reply only wait (WAIT changes nothing)? */
static int only_waits_ran(const rs_cmd *cmds, redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int is_wait = cmds[i].argvlen[0] == 4 && strncasecmp(cmds[i].argv[0], "WAIT", 4) == 0;
        if (replies[i]->type != REDIS_REPLY_ERROR && !is_wait) return 0;
    }
    return 1;
}

int rs_exec_on(rs_store *store, rs_pool *pool, const char *what, rs_retry_rule rule,
               size_t ncmds, const rs_cmd *cmds, redisReply **replies, size_t *answered,
               rs_error *err)
{
    rs_error last;
    rs_error_clear(&last);
    for (int attempt = 1;; attempt++) {
        rs_attempt at;
        if (attempt_once(pool, ncmds, cmds, replies, &at, &last) == 0) return 0;
        /* Sent and not every reply read: those commands may have run. */
        if (rule == RS_RETRY_UNSENT && at.sent && at.answered < ncmds) {
            rs_exec_unknown(err, what, attempt, at.answered, ncmds, &last);
            if (answered) *answered = at.answered;
            else rs_replies_free(replies, at.answered);
            return -1;
        }
        /* Every reply read: an error reply says its command did not run,
         * the others did, and only a WAIT among those may run again. */
        int may_repeat = rule == RS_RETRY_IDEMPOTENT || !at.sent ||
                         only_waits_ran(cmds, replies, ncmds);
        if (!may_repeat || !rs_retry_wait(store->cfg, what, attempt, &last)) {
            rs_exec_fail(err, what, attempt, &last);
            /* Every reply read, some an error: a caller that asks keeps
             * them, to tell the commands that ran from those refused. */
            int keep = answered && at.answered == ncmds;
            if (!keep) rs_replies_free(replies, at.answered);
            if (answered) *answered = keep ? ncmds : 0;
            return -1;
        }
        rs_replies_free(replies, at.answered);
    }
}
