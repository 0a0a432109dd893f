/* SPDX-License-Identifier: MIT */
/* checked.h -- non-idempotent operations made truthful (checked.c): when
 * an attempt's reply was lost, the key's state read back says whether it
 * ran.
 */
#ifndef RS_CHECKED_H
#define RS_CHECKED_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "op.h"
#include "resp.h"
#include "rigatoni_store.h"

typedef struct rs_call rs_call;

/* RS_ERR_UNKNOWN after checking the server's state: `why` says what the
 * check found (e.g. "the key is gone: deleted by this call or before"). */
void rs_exec_unknown_because(rs_error *err, const char *what, int attempts, const char *why);
/* One idempotent command on one key (GET, EXISTS, PTTL): how an operation
 * whose attempt may have run reads the state that tells its outcome. */
int rs_exec_key(rs_store *store, const rs_call *like, const char *cmdname, const char *key,
                size_t key_len);

/* What the server's state says about an attempt that may have run. */
typedef enum rs_outcome {
    RS_OUTCOME_RAN,        /* it ran: report its effect */
    RS_OUTCOME_NOT_RUN,    /* it did not: send it again */
    RS_OUTCOME_UNKNOWN,    /* nothing can be said: raise RS_ERR_UNKNOWN (*why says why) */
} rs_outcome;
/* Runs the operation: 0 with *reply, or -1 + err; on RS_ERR_UNKNOWN,
 * *cause gets the call's cause (kind RS_OK when it had none). */
typedef int (*rs_attempt_fn)(rs_store *store, void *ctx, redisReply **reply, rs_error *err,
                             rs_error *cause);
typedef rs_outcome (*rs_check_fn)(const redisReply *state, void *ctx, const char **why);

/* A non-idempotent operation on one key made truthful: rs_exec_checked
 * runs `run` (which uses RS_RETRY_UNSENT); when it fails with
 * RS_ERR_UNKNOWN, reads the key with `check_cmd` (GET, EXISTS, PTTL) and
 * lets `check` decide. */
typedef struct rs_checked {
    const char *what;
    rs_attempt_fn run;
    const char *check_cmd;
    const char *key;
    size_t key_len;
    rs_check_fn check;
    void *ctx;             /* run's and check's */
    int attempts;          /* out: how many were made, as far as known */
} rs_checked;
/* 0 with *reply from `run`, 1 when the check found that it ran (no
 * reply), -1 + err. At most max_retries + 1 attempts in all. */
int rs_exec_checked(rs_store *store, rs_checked *op, redisReply **reply, rs_error *err);

/* One command under RS_RETRY_UNSENT, as an rs_attempt_fn (ctx: the struct). */
typedef struct rs_unsent_cmd {
    rs_op op;
    const char *what;
    rs_cmd cmd;
} rs_unsent_cmd;
int rs_run_unsent(rs_store *store, void *ctx, redisReply **reply, rs_error *err,
                  rs_error *cause);

#endif /* RS_CHECKED_H */
