/* exec.c -- running commands through the pool under the retry policy.
 *
 * Every store operation is a short pipeline of argv commands (binary safe:
 * user data is never formatted into a command string). One attempt lends a
 * connection, sends the whole pipeline, and reads every reply even after an
 * error reply so the connection stays in step. A failed attempt is retried
 * while the failure is retryable and attempts remain; a connection that saw
 * an I/O error is closed, along with the idle ones that are likely dead too.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* One attempt. Returns 0 with replies filled, or -1 with err; *broken says
 * whether the connection must be thrown away. With `keep_errors`, error
 * replies are handed back like any reply (cluster redirections). */
int rs_run_pipeline(rs_conn *conn, size_t ncmds, const rs_cmd *cmds, redisReply **replies,
                    int keep_errors, rs_error *err, int *broken)
{
    redisContext *ctx = conn->ctx;
    *broken = 0;
    for (size_t i = 0; i < ncmds; i++) {
        if (redisAppendCommandArgv(ctx, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK) {
            rs_error_from_context(err, ctx);
            *broken = 1;
            return -1;
        }
    }
    size_t got = 0;
    int alone = atomic_fetch_add(&waiters, 1) == 0;
    int written = 0;
    do {
        if (redisBufferWrite(ctx, &written) != REDIS_OK) {
            rs_error_from_context(err, ctx);
            *broken = 1;
            break;
        }
    } while (!written);
    if (written) spin_for_reply(conn, alone);
    for (; written && got < ncmds; got++) {
        void *reply = NULL;
        if (redisGetReply(ctx, &reply) != REDIS_OK || !reply) {
            rs_error_from_context(err, ctx);
            *broken = 1;
            break;
        }
        replies[got] = reply;
    }
    atomic_fetch_sub(&waiters, 1);
    int failed = got < ncmds;
    for (size_t i = 0; i < got && !failed && !keep_errors; i++) {
        if (replies[i]->type == REDIS_REPLY_ERROR) {
            rs_error_from_reply(err, replies[i]->str, replies[i]->len);
            failed = 1;
        }
    }
    if (!failed) return 0;
    for (size_t i = 0; i < got; i++) {
        freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
    return -1;
}

void rs_exec_fail(rs_error *err, const char *what, int attempts, const rs_error *last)
{
    if (!err) return;
    rs_error_set(err, last->kind, last->retryable, "%s failed after %d attempt%s: %s", what,
                 attempts, attempts == 1 ? "" : "s", last->message);
    err->attempts = attempts;
}

int rs_exec_attempt(rs_pool *pool, size_t ncmds, const rs_cmd *cmds, redisReply **replies,
                    rs_error *last)
{
    int broken = 0;
    rs_conn *conn = rs_pool_acquire(pool, last);
    if (conn) {
        int rc = rs_run_pipeline(conn, ncmds, cmds, replies, 0, last, &broken);
        rs_pool_release(pool, conn, broken);
        if (rc == 0) return 0;
    }
    if (last->kind != RS_ERR_POOL) rs_pool_after_failure(pool, broken, last);
    return -1;
}

int rs_exec_on(rs_store *store, rs_pool *pool, const char *what, size_t ncmds,
               const rs_cmd *cmds, redisReply **replies, rs_error *err)
{
    rs_error last;
    int attempt = 1;
    rs_error_clear(&last);
    while (rs_exec_attempt(pool, ncmds, cmds, replies, &last) < 0) {
        if (!rs_retry_wait(store->cfg, what, attempt, &last)) {
            rs_exec_fail(err, what, attempt, &last);
            return -1;
        }
        attempt++;
    }
    return 0;
}

int rs_exec(rs_store *store, rs_op op, const char *what, size_t ncmds, const rs_cmd *cmds,
            redisReply **replies, rs_error *err)
{
    rs_error local;
    if (!err) err = &local;
    /* Metrics: one record per call, under its operation kind (metrics.c). */
    rs_metrics_call call = rs_metrics_begin();
    int rc = store->cluster ? rs_cluster_exec(store, what, ncmds, cmds, replies, err)
                            : rs_exec_on(store, store->pool, what, ncmds, cmds, replies, err);
    /* NOSCRIPT is answered at once by EVAL (script.c): a call, not a failure. */
    int failed = rc < 0 && !(err->kind == RS_ERR_SERVER && strstr(err->message, "NOSCRIPT"));
    rs_metrics_end(store, op, call, failed ? err->kind : RS_OK);
    return rc;
}

int rs_exec_durable(rs_store *store, rs_op op, const char *what, size_t ncmds,
                    const rs_cmd *cmds, redisReply **replies, rs_error *err)
{
    const rs_config *cfg = store->cfg;
    if (cfg->wait_replicas <= 0) return rs_exec(store, op, what, ncmds, cmds, replies, err);

    /* WAIT must follow the writes on the same connection: one pipeline.
     * In a cluster the writes may go to several nodes, so each write gets
     * its own WAIT, routed with it. */
    size_t step = store->cluster ? 2 : 1, total = store->cluster ? 2 * ncmds : ncmds + 1;
    rs_cmd *all = calloc(total, sizeof *all);
    redisReply **got = calloc(total, sizeof *got);
    if (!all || !got) {
        free(all);
        free(got);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    char replicas[16], timeout[24];
    snprintf(replicas, sizeof replicas, "%d", cfg->wait_replicas);
    snprintf(timeout, sizeof timeout, "%.0f", cfg->wait_timeout * 1000);
    const char *argv[3] = {"WAIT", replicas, timeout};
    size_t argvlen[3] = {4, strlen(replicas), strlen(timeout)};
    rs_cmd wait = {3, argv, argvlen};
    for (size_t i = 0; i < ncmds; i++) {
        all[i * step] = cmds[i];
        if (step == 2) all[i * 2 + 1] = wait;
    }
    if (step == 1) all[ncmds] = wait;

    int rc = rs_exec(store, op, what, total, all, got, err);
    if (rc == 0) {
        long long acked = cfg->wait_replicas;
        for (size_t i = 0; i < total; i++) {
            int is_wait = step == 2 ? i % 2 == 1 : i == ncmds;
            if (!is_wait) {
                replies[step == 2 ? i / 2 : i] = got[i];
                continue;
            }
            long long n = got[i]->type == REDIS_REPLY_INTEGER ? got[i]->integer : 0;
            if (n < acked) acked = n;
            freeReplyObject(got[i]);
        }
        if (acked < cfg->wait_replicas) {
            if (cfg->wait_policy_warn) {
                rs_log(RS_LOG_WARN, "%s: only %lld of %d replicas acknowledged within %gs",
                       what, acked, cfg->wait_replicas, cfg->wait_timeout);
            } else {
                for (size_t i = 0; i < ncmds; i++) freeReplyObject(replies[i]);
                rs_error_set(err, RS_ERR_SERVER, 1,
                             "%s: only %lld of %d replicas acknowledged within %gs (written on "
                             "the master, not yet durable)",
                             what, acked, cfg->wait_replicas, cfg->wait_timeout);
                rc = -1;
            }
        }
    }
    free(all);
    free(got);
    return rc;
}
