/* SPDX-License-Identifier: MIT */
/* checked.c -- a non-idempotent operation made truthful.
 *
 * An operation that must not run twice (a SET NX, a DEL that reports
 * whether it deleted, a compare-and-delete script) runs under
 * RS_RETRY_UNSENT: when an attempt's reply is lost, its outcome is
 * unknown. rs_exec_checked then reads the key back (GET, EXISTS, PTTL)
 * and lets the operation's check decide: it ran (report its effect), it
 * did not (send it again, within max_retries), or nothing can be said
 * (RS_ERR_UNKNOWN, saying why). Every request goes through rs_call_run.
 */
#include <stdio.h>
#include <string.h>

#include "checked.h"
#include "call.h"
#include "closing.h"
#include "config.h"
#include "error.h"
#include "exec.h"
#include "store_state.h"

void rs_exec_unknown_because(rs_error *err, const char *what, int attempts, const char *why)
{
    rs_error_set(err, RS_ERR_UNKNOWN, 0, "%s: outcome unknown after %d attempt%s: %s", what,
                 attempts, attempts == 1 ? "" : "s", why);
    err->attempts = attempts;
}

int rs_exec_key(rs_store *store, const rs_call *like, const char *cmdname, const char *key,
                size_t key_len)
{
    const char *argv[2] = {cmdname, key};
    size_t argvlen[2] = {strlen(cmdname), key_len};
    rs_cmd cmd = {2, argv, argvlen};
    rs_call call = RS_CALL(like->op, like->what, 1, &cmd, like->replies, like->err);
    return rs_call_run(store, &call);
}

/* Read back, not taken effect, and not sent again (no attempt left, or
 * `then`: the close refused the resend): the failure that stopped it. */
static void not_taken_effect(rs_error *err, const char *what, int attempts, rs_error *cause,
                             const char *then)
{
    if (cause->kind == RS_OK) rs_error_set(cause, RS_ERR_CONNECTION, 1, "no reply");
    rs_exec_fail(err, what, attempts, cause);
    size_t used = strlen(err->message);
    snprintf(err->message + used, sizeof err->message - used,
             " (the state read back shows it has not taken effect%s)", then);
}

int rs_exec_checked(rs_store *store, rs_checked *op, redisReply **reply, rs_error *err)
{
    const char *what = op->what;
    int attempts = 0;
    rs_error lost;                        /* the failure of the attempt read back */
    rs_error_clear(&lost);
    for (;;) {
        op->attempts = attempts + 1;      /* a success reports no count: at least this */
        rs_error cause;
        rs_error_clear(&cause);
        if (op->run(store, op->ctx, reply, err, &cause) == 0) return 0;
        /* A resend the store's close refused: nothing more was sent. */
        if (attempts > 0 && err->kind != RS_ERR_UNKNOWN && err->attempts == 0 &&
            rs_closing_is_set(store->closing)) {
            not_taken_effect(err, what, attempts, &lost, "; not sent again: the store is closing");
            return -1;
        }
        if (err->kind != RS_ERR_UNKNOWN) return -1;
        attempts += err->attempts;
        op->attempts = attempts;
        rs_error unknown = *err;
        redisReply *state;
        rs_call like = RS_CALL(RS_OP_GET, what, 0, NULL, &state, err);
        if (rs_exec_key(store, &like, op->check_cmd, op->key, op->key_len) < 0) {
            *err = unknown;         /* the check failed: still unknown */
            err->attempts = attempts;
            return -1;
        }
        const char *why = NULL;
        rs_outcome found = op->check(state, op->ctx, &why);
        freeReplyObject(state);
        if (found == RS_OUTCOME_RAN) return 1;
        if (found == RS_OUTCOME_UNKNOWN) {
            rs_exec_unknown_because(err, what, attempts, why ? why : "the state does not tell");
            return -1;
        }
        /* Not taken effect, no attempt left: the failure that stopped it. */
        if (attempts > store->cfg->max_retries) {
            not_taken_effect(err, what, attempts, &cause, "");
            return -1;
        }
        lost = cause;
        /* The state says that attempt did not run: send it again. */
    }
}

int rs_run_unsent(rs_store *store, void *ctx, redisReply **reply, rs_error *err,
                  rs_error *cause)
{
    rs_unsent_cmd *u = ctx;
    rs_call call = RS_CALL(u->op, u->what, 1, &u->cmd, reply, err);
    call.rule = RS_RETRY_UNSENT;
    int rc = rs_call_run(store, &call);
    *cause = call.cause;
    return rc;
}
