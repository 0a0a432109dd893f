/* SPDX-License-Identifier: MIT */
/* call.c -- the attempt loop: a call routed, retried, recorded, made
 * durable.
 *
 * rs_call_run is the one loop every request to the servers goes through:
 * each attempt is routed (the seam below: the cluster, cluster.c, which
 * routes each command by slot; else the call's own pool or the store's,
 * standalone or Sentinel, exec.c), and what the attempt did decides the
 * rest, once, here: done; outcome lost under RS_RETRY_UNSENT (unknown);
 * repeated while the failure is retryable and attempts remain; else
 * failed. Around the loop, each call is recorded once in the metrics and
 * gets its WAIT when writes must be durable. (A non-idempotent operation
 * whose reply was lost reads its outcome back from the server: checked.c,
 * above this loop.)
 * Dependencies point one way: call.c -> cluster.c -> exec.c; cluster.c
 * and exec.c read the call description (call_types.h), not this loop.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "closing.h"
#include "cluster.h"
#include "config.h"
#include "error.h"
#include "exec.h"
#include "log.h"
#include "retry.h"
#include "store_state.h"

/* The routing seam: one attempt of the call wherever it goes. */
static int route_attempt(rs_store *store, rs_call *call, rs_attempt *at, rs_error *last)
{
    if (!call->pool && store->cluster) return rs_cluster_attempt(store, call, at, last);
    return rs_call_attempt(call->pool ? call->pool : store->pool, call, at, last);
}

/* The end of a failed call: its replies freed, or left to the caller. */
static void give_replies(rs_call *call, size_t answered, int keep)
{
    if (keep && (call->flags & RS_CALL_KEEP)) {
        call->answered = answered;
        return;
    }
    rs_replies_free(call->replies, answered);
}

static int attempt_loop(rs_store *store, rs_call *call, rs_error *err)
{
    rs_error last;
    rs_error_clear(&last);
    /* A call begun while the store closes (by a job's fn, a walk's thread)
     * is not sent: the close waits only for what is on the wire. One whose
     * attempt 1 was made elsewhere fails with that attempt's failure. */
    if (rs_closing_is_set(store->closing)) {
        if (call->prior) rs_exec_fail(err, call->what, 1, call->prior);
        else rs_closing_error(err, call->what);
        return -1;
    }
    rs_error before;                 /* the previous attempt's failure */
    rs_error_clear(&before);
    int attempt = 1;
    if (call->prior) {
        /* Attempt 1 was made elsewhere and failed (an idempotent call's):
         * decided here as if it were this loop's own, then attempt 2. */
        last = *call->prior;
        call->attempts = 1;
        if (call->rule != RS_RETRY_IDEMPOTENT || !rs_retry_wait(store, call->what, 1, &last)) {
            rs_exec_fail(err, call->what, 1, &last);
            return -1;
        }
        before = last;
        if (call->hooks && call->hooks->before_retry) call->hooks->before_retry(call, &last);
        attempt = 2;
    }
    for (;; attempt++) {
        rs_attempt at;
        call->attempts = attempt;
        if (route_attempt(store, call, &at, &last) == 0) return 0;
        /* Nothing sent, and the store is closing (the call waited for a
         * connection, or got one as the close began): it is not sent at
         * all; what was sent before fails as a retry the close cut. */
        int routed_here = call->pool || !store->cluster;   /* a cluster's attempt may be partial */
        if (routed_here && !at.sent && rs_closing_is_set(store->closing)) {
            if (attempt == 1) rs_closing_error(err, call->what);
            else rs_exec_fail(err, call->what, attempt - 1, &before);
            give_replies(call, at.answered, 0);
            return -1;
        }
        if (call->flags & RS_CALL_ONCE) {
            *err = last;
            err->attempts = 1;       /* made (0: not sent, the store closing) */
            give_replies(call, at.answered, 0);
            return -1;
        }
        if (call->rule == RS_RETRY_UNSENT && at.lost) {
            rs_exec_unknown(err, call->what, attempt, at.answered, call->ncmds, &last);
            call->cause = last;
            give_replies(call, at.answered, 1);
            return -1;
        }
        int may_repeat = call->rule == RS_RETRY_IDEMPOTENT || at.repeatable;
        if (!may_repeat || !rs_retry_wait(store, call->what, attempt, &last)) {
            rs_exec_fail(err, call->what, attempt, &last);
            /* Every reply read, some an error: a caller that asks keeps
             * them, to tell the commands that ran from those refused. */
            int all = at.answered == call->ncmds;
            give_replies(call, at.answered, all);
            return -1;
        }
        rs_replies_free(call->replies, at.answered);
        before = last;
        if (call->hooks && call->hooks->before_retry) call->hooks->before_retry(call, &last);
    }
}

int rs_call_run(rs_store *store, rs_call *call)
{
    rs_error *err = call->err;
    call->answered = 0;
    rs_error_clear(&call->cause);
    int counted = !(call->flags & RS_CALL_UNCOUNTED);
    rs_metrics_call m = counted ? rs_metrics_begin() : (rs_metrics_call){0, 0};
    int rc = attempt_loop(store, call, err);
    if (call->route) rs_cluster_call_end(call, rc < 0);
    /* NOSCRIPT is answered at once by EVALSHA (script.c): a call, not a failure. */
    int failed = rc < 0 && err->reply != RS_REPLY_NOSCRIPT;
    if (counted) rs_metrics_end(&store->metrics, call->op, m, failed ? err->kind : RS_OK);
    return rc;
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

int rs_call_durable(rs_store *store, rs_call *call)
{
    const rs_config *cfg = store->cfg;
    const char *what = call->what;
    size_t ncmds = call->ncmds;
    redisReply **replies = call->replies;
    rs_error *err = call->err;
    call->answered = 0;
    int rc = -1;
    if (cfg->wait_replicas <= 0) {
        rc = rs_call_run(store, call);
        return rc;
    }

    /* WAIT must follow the writes on the same connection: it ends the
     * pipeline (in a cluster, each node's pipeline: cluster.c; a call on a
     * given pool, e.g. one node, is one pipeline as without a cluster). */
    char replicas[16], timeout[24];
    snprintf(replicas, sizeof replicas, "%d", cfg->wait_replicas);
    snprintf(timeout, sizeof timeout, "%.0f", fmax(1, cfg->wait_timeout * 1000));
    const char *argv[3] = {"WAIT", replicas, timeout};
    size_t argvlen[3] = {4, strlen(replicas), strlen(timeout)};
    rs_cmd wait = {3, argv, argvlen};
    long long acked = cfg->wait_replicas;
    if (store->cluster && !call->pool) {
        rs_call c = *call;
        c.wait = &wait;
        c.acked = acked;
        c.flags &= ~(unsigned)RS_CALL_KEEP;      /* the cluster keeps no reply on failure */
        rc = rs_call_run(store, &c);
        call->attempts = c.attempts;
        call->cause = c.cause;
        if (rc == 0) rc = check_acked(cfg, what, c.acked, ncmds, replies, err);
        return rc;
    }

    rs_cmd *all = calloc(ncmds + 1, sizeof *all);
    redisReply **got = calloc(ncmds + 1, sizeof *got);
    if (!all || !got) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    memcpy(all, call->cmds, ncmds * sizeof *all);
    all[ncmds] = wait;
    rs_call c = *call;
    c.ncmds = ncmds + 1;
    c.cmds = all;
    c.replies = got;
    c.flags |= RS_CALL_KEEP;
    rc = rs_call_run(store, &c);
    call->attempts = c.attempts;
    call->cause = c.cause;
    size_t read = rc == 0 ? ncmds + 1 : c.answered;
    /* Every write answered, only the WAIT lost: the writes' outcome is
     * known, their durability is not (counted as no acknowledgement). */
    int wait_lost = rc < 0 && err->kind == RS_ERR_UNKNOWN && read == ncmds;
    if (rc < 0 && read > ncmds) {       /* every reply read, an error among them */
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
    if (rc < 0) memcpy(replies, got, read * sizeof *replies);
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
        if (call->flags & RS_CALL_KEEP) call->answered = read;
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
