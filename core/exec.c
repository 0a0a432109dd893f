/* exec.c -- running commands through the pool under the retry policy.
 *
 * Every store operation is a short pipeline of argv commands (binary safe:
 * user data is never formatted into a command string). One attempt lends a
 * connection, sends the whole pipeline, and reads every reply even after an
 * error reply so the connection stays in step. A failed attempt is retried
 * while the failure is retryable and attempts remain; a connection that saw
 * an I/O error is closed, along with the idle ones that are likely dead too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One attempt. Returns 0 with replies filled, or -1 with err; *broken says
 * whether the connection must be thrown away. */
static int run_pipeline(rs_conn *conn, size_t ncmds, const rs_cmd *cmds,
                        redisReply **replies, rs_error *err, int *broken)
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
    for (; got < ncmds; got++) {
        void *reply = NULL;
        if (redisGetReply(ctx, &reply) != REDIS_OK || !reply) {
            rs_error_from_context(err, ctx);
            *broken = 1;
            break;
        }
        replies[got] = reply;
    }
    int failed = got < ncmds;
    for (size_t i = 0; i < got && !failed; i++) {
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

int rs_exec(rs_store *store, rs_op op, const char *what, size_t ncmds, const rs_cmd *cmds,
            redisReply **replies, rs_error *err)
{
    const rs_config *cfg = store->cfg;
    int max_attempts = cfg->max_retries + 1;
    rs_error last;
    int attempt;

    rs_error_clear(&last);
    for (attempt = 1;; attempt++) {
        int broken = 0;
        rs_conn *conn = rs_pool_acquire(store->pool, &last);
        if (conn) {
            int rc = run_pipeline(conn, ncmds, cmds, replies, &last, &broken);
            rs_pool_release(store->pool, conn, broken);
            if (rc == 0) return 0;
        }
        if (last.kind != RS_ERR_POOL) rs_pool_after_failure(store->pool, broken, &last);
        /* Waiting for the pool again would only multiply the wait. */
        if (!last.retryable || last.kind == RS_ERR_POOL || attempt >= max_attempts) break;
        rs_sleep(rs_retry_delay(cfg, attempt));
    }
    if (err) {
        rs_error_set(err, last.kind, last.retryable, "%s failed after %d attempt%s: %s", what,
                     attempt, attempt == 1 ? "" : "s", last.message);
        err->attempts = attempt;
    }
    return -1;
}

int rs_exec_durable(rs_store *store, rs_op op, const char *what, size_t ncmds,
                    const rs_cmd *cmds, redisReply **replies, rs_error *err)
{
    const rs_config *cfg = store->cfg;
    if (cfg->wait_replicas <= 0) return rs_exec(store, op, what, ncmds, cmds, replies, err);

    /* WAIT must follow the writes on the same connection: one pipeline. */
    rs_cmd *all = calloc(ncmds + 1, sizeof *all);
    redisReply **got = calloc(ncmds + 1, sizeof *got);
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
    memcpy(all, cmds, ncmds * sizeof *all);
    all[ncmds] = (rs_cmd){3, argv, argvlen};
    int rc = rs_exec(store, op, what, ncmds + 1, all, got, err);
    if (rc == 0) {
        long long acked = got[ncmds]->type == REDIS_REPLY_INTEGER ? got[ncmds]->integer : 0;
        freeReplyObject(got[ncmds]);
        memcpy(replies, got, ncmds * sizeof *replies);
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
