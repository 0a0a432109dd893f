/* exec.c -- running commands through the pool under the retry policy.
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
 * RS_ERR_UNKNOWN and the replies it did read, and rs_exec_checked lets an
 * operation read its outcome back from the server instead of guessing.
 */
#include <math.h>
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
    for (size_t i = 0; i < ncmds; i++) {
        if (redisAppendCommandArgv(ctx, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK) {
            rs_error_from_context(err, ctx);
            at->broken = 1;
            return -1;
        }
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

void rs_exec_unknown(rs_error *err, const char *what, int attempts, size_t answered,
                     size_t ncmds, const rs_error *last)
{
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
        rs_replies_free(replies, at.answered);
        if (!may_repeat || !rs_retry_wait(store->cfg, what, attempt, &last)) {
            rs_exec_fail(err, what, attempt, &last);
            if (answered) *answered = 0;
            return -1;
        }
    }
}

/* One call, recorded once in the metrics under its operation kind. */
static int exec_call(rs_store *store, rs_op op, const char *what, rs_retry_rule rule,
                     size_t ncmds, const rs_cmd *cmds, const rs_cmd *cluster_wait,
                     long long *acked, redisReply **replies, size_t *answered, rs_error *err)
{
    rs_error local;
    if (!err) err = &local;
    if (answered) *answered = 0;
    rs_metrics_call call = rs_metrics_begin();
    int rc = store->cluster ? rs_cluster_exec(store, what, rule, ncmds, cmds, cluster_wait, acked,
                                              replies, err)
                            : rs_exec_on(store, store->pool, what, rule, ncmds, cmds, replies,
                                         answered, err);
    /* NOSCRIPT is answered at once by EVAL (script.c): a call, not a failure. */
    int failed = rc < 0 && err->reply != RS_REPLY_NOSCRIPT;
    rs_metrics_end(store, op, call, failed ? err->kind : RS_OK);
    return rc;
}

int rs_exec_rule(rs_store *store, rs_op op, const char *what, rs_retry_rule rule, size_t ncmds,
                 const rs_cmd *cmds, redisReply **replies, size_t *answered, rs_error *err)
{
    return exec_call(store, op, what, rule, ncmds, cmds, NULL, NULL, replies, answered, err);
}

int rs_exec(rs_store *store, rs_op op, const char *what, size_t ncmds, const rs_cmd *cmds,
            redisReply **replies, rs_error *err)
{
    return rs_exec_rule(store, op, what, RS_RETRY_IDEMPOTENT, ncmds, cmds, replies, NULL, err);
}

/* Fewer acknowledgements than wanted: a warning (wait_policy = warn), or
 * the call fails with the writes' replies freed. */
static int check_acked(const rs_config *cfg, const char *what, long long acked, size_t ncmds,
                       redisReply **replies, rs_error *err)
{
    if (acked >= cfg->wait_replicas) return 0;
    if (cfg->wait_policy_warn) {
        rs_log(RS_LOG_WARN, "%s: only %lld of %d replicas acknowledged within %gs", what, acked,
               cfg->wait_replicas, cfg->wait_timeout);
        return 0;
    }
    rs_replies_free(replies, ncmds);
    rs_error_set(err, RS_ERR_SERVER, 1,
                 "%s: only %lld of %d replicas acknowledged within %gs (written on the master, "
                 "not yet durable)",
                 what, acked, cfg->wait_replicas, cfg->wait_timeout);
    return -1;
}

int rs_exec_durable(rs_store *store, rs_op op, const char *what, rs_retry_rule rule,
                    size_t ncmds, const rs_cmd *cmds, redisReply **replies, size_t *answered,
                    rs_error *err)
{
    const rs_config *cfg = store->cfg;
    rs_error local;
    if (!err) err = &local;
    if (answered) *answered = 0;
    if (cfg->wait_replicas <= 0)
        return rs_exec_rule(store, op, what, rule, ncmds, cmds, replies, answered, err);

    /* WAIT must follow the writes on the same connection: it ends the
     * pipeline (in a cluster, each node's pipeline: cluster.c). */
    char replicas[16], timeout[24];
    snprintf(replicas, sizeof replicas, "%d", cfg->wait_replicas);
    snprintf(timeout, sizeof timeout, "%.0f", fmax(1, cfg->wait_timeout * 1000));
    const char *argv[3] = {"WAIT", replicas, timeout};
    size_t argvlen[3] = {4, strlen(replicas), strlen(timeout)};
    rs_cmd wait = {3, argv, argvlen};
    long long acked = cfg->wait_replicas;
    if (store->cluster) {
        if (exec_call(store, op, what, rule, ncmds, cmds, &wait, &acked, replies, NULL, err) < 0)
            return -1;
        return check_acked(cfg, what, acked, ncmds, replies, err);
    }

    rs_cmd *all = calloc(ncmds + 1, sizeof *all);
    redisReply **got = calloc(ncmds + 1, sizeof *got);
    int rc = -1;
    if (!all || !got) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    memcpy(all, cmds, ncmds * sizeof *all);
    all[ncmds] = wait;
    size_t read = 0;
    rc = rs_exec_rule(store, op, what, rule, ncmds + 1, all, got, &read, err);
    /* Every write answered, only the WAIT lost: the writes' outcome is
     * known, their durability is not (counted as no acknowledgement). */
    int wait_lost = rc < 0 && err->kind == RS_ERR_UNKNOWN && read == ncmds;
    memcpy(replies, got, (read < ncmds ? read : ncmds) * sizeof *replies);
    if (rc < 0 && !wait_lost) {
        if (answered) *answered = read;
        else rs_replies_free(replies, read);
        goto out;
    }
    if (wait_lost) {
        rs_error_clear(err);
        acked = 0;
    } else {
        memcpy(replies, got, ncmds * sizeof *replies);
        if (got[ncmds]->type == REDIS_REPLY_INTEGER) acked = got[ncmds]->integer;
        else acked = 0;
        freeReplyObject(got[ncmds]);
    }
    rc = check_acked(cfg, what, acked, ncmds, replies, err);
out:
    free(all);
    free(got);
    return rc;
}

void rs_exec_unknown_because(rs_error *err, const char *what, int attempts, const char *why)
{
    if (!err) return;
    rs_error_set(err, RS_ERR_UNKNOWN, 0, "%s: outcome unknown after %d attempt%s: %s", what,
                 attempts, attempts == 1 ? "" : "s", why);
    err->attempts = attempts;
}

int rs_exec_key(rs_store *store, rs_op op, const char *what, const char *cmdname,
                const char *key, size_t key_len, redisReply **reply, rs_error *err)
{
    const char *argv[2] = {cmdname, key};
    size_t argvlen[2] = {strlen(cmdname), key_len};
    rs_cmd cmd = {2, argv, argvlen};
    return rs_exec(store, op, what, 1, &cmd, reply, err);
}

int rs_exec_checked(rs_store *store, const char *what, rs_attempt_fn run, const char *check_cmd,
                    const char *key, size_t key_len, rs_check_fn check, void *ctx,
                    redisReply **reply, int *attempts_out, rs_error *err)
{
    rs_error local;
    if (!err) err = &local;
    int attempts = 0, dummy;
    if (!attempts_out) attempts_out = &dummy;
    for (;;) {
        *attempts_out = attempts + 1;    /* a success reports no count: at least this */
        if (run(store, ctx, reply, err) == 0) return 0;
        if (err->kind != RS_ERR_UNKNOWN) return -1;
        attempts += err->attempts;
        *attempts_out = attempts;
        rs_error unknown = *err;
        redisReply *state;
        if (rs_exec_key(store, RS_OP_GET, what, check_cmd, key, key_len, &state, err) < 0) {
            *err = unknown;         /* the check failed: still unknown */
            err->attempts = attempts;
            return -1;
        }
        const char *why = NULL;
        rs_outcome found = check(state, ctx, &why);
        freeReplyObject(state);
        if (found == RS_OUTCOME_RAN) return 1;
        if (found == RS_OUTCOME_UNKNOWN || attempts > store->cfg->max_retries) {
            rs_exec_unknown_because(err, what, attempts, why ? why : "no attempt left");
            return -1;
        }
        /* The state says that attempt did not run: send it again. */
    }
}

int rs_run_unsent(rs_store *store, void *ctx, redisReply **reply, rs_error *err)
{
    rs_unsent_cmd *u = ctx;
    return rs_exec_rule(store, u->op, u->what, RS_RETRY_UNSENT, 1, &u->cmd, reply, NULL, err);
}
