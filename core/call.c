/* SPDX-License-Identifier: MIT */
/* call.c -- a store call: routed, recorded, made durable or verified.
 *
 * The routing seam: a call goes to the cluster (cluster.c, which routes
 * each command by slot) or to the store's pool, standalone or Sentinel
 * (exec.c); both run on exec.c's attempts. Above the routing, each call is
 * recorded once in the metrics, gets its WAIT when writes must be durable,
 * and a non-idempotent operation whose reply was lost reads its outcome
 * back from the server (rs_exec_checked) instead of guessing.
 * Dependencies point one way: call.c -> cluster.c -> exec.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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
        rs_log(cfg, RS_LOG_WARN, "%s: only %lld of %d replicas acknowledged within %gs", what, acked,
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
    if (read > ncmds) {          /* every reply read, an error among them */
        /* Only the WAIT's: the commands ran (an NX SET or a script may
         * still have written nothing), which the failure must say. */
        int writes_ran = 1;
        for (size_t i = 0; i < ncmds; i++)
            if (got[i]->type == REDIS_REPLY_ERROR) writes_ran = 0;
        if (writes_ran)
            strncat(err->message, " (ran on the master, not known durable: WAIT refused)",
                    sizeof err->message - strlen(err->message) - 1);
        freeReplyObject(got[ncmds]);
        read = ncmds;
    }
    memcpy(replies, got, read * sizeof *replies);
    /* ... unless a write was refused: its error reply fails the call, as
     * when the WAIT's reply arrives too. */
    for (size_t i = 0; wait_lost && i < ncmds; i++) {
        if (replies[i]->type != REDIS_REPLY_ERROR) continue;
        rs_error refused;
        rs_error_from_reply(&refused, replies[i]->str, replies[i]->len);
        rs_exec_fail(err, what, err->attempts, &refused);
        wait_lost = 0;
    }
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
    rs_exec_unknown_cause_clear();
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
        rs_error unknown = *err, cause;
        int has_cause = rs_exec_unknown_cause(&cause);
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
        if (found == RS_OUTCOME_UNKNOWN) {
            rs_exec_unknown_because(err, what, attempts, why ? why : "the state does not tell");
            return -1;
        }
        /* Not taken effect, no attempt left: the failure that stopped it. */
        if (attempts > store->cfg->max_retries) {
            if (!has_cause)
                rs_error_set(&cause, RS_ERR_CONNECTION, 1, "no reply");
            rs_exec_fail(err, what, attempts, &cause);
            strncat(err->message, " (the state read back shows it has not taken effect)",
                    sizeof err->message - strlen(err->message) - 1);
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
