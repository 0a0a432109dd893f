/* SPDX-License-Identifier: MIT */
/* script.h -- server-side scripts run by EVALSHA, loaded again on
 * NOSCRIPT (script.c).
 */
#ifndef RS_SCRIPT_H
#define RS_SCRIPT_H

#include <stdatomic.h>
#include <hiredis/hiredis.h>

#include "rigatoni_store.h"

typedef struct rs_call rs_call;

/* A script of the file that runs it: static, RS_SCRIPT(source); its SHA1
 * is computed once, on first use (script.c). */
typedef struct rs_script {
    const char *source;
    _Atomic int hashed;        /* sha is set */
    char sha[41];
} rs_script;
#define RS_SCRIPT(source_) {.source = (source_)}

/* A script's keys and arguments (binary safe). */
typedef struct rs_script_args {
    int nkeys;
    const char **keys;
    const size_t *key_lens;
    int nargs;
    const char **args;
    const size_t *arg_lens;
} rs_script_args;

/* Runs the script as `call` says (op, what, rule, flags, pool, hooks;
 * RS_CALL_DURABLE: through rs_call_durable); its commands and replies are
 * the script's. One reply into *reply, of any type. 0 or -1 + call->err
 * (call->attempts and call->cause set as by rs_call_run). */
int rs_script_run(rs_store *store, rs_call *call, rs_script *script,
                  const rs_script_args *args, redisReply **reply);

#endif /* RS_SCRIPT_H */
