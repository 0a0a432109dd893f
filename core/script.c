/* SPDX-License-Identifier: MIT */
/* script.c -- server-side scripts run by EVALSHA, loaded again on NOSCRIPT.
 *
 * Owner checks and compare-and-delete must be atomic on the server, so they
 * are Lua scripts. Sending only the SHA1 keeps each call small; after a
 * server restart, failover or SCRIPT FLUSH the server answers NOSCRIPT (the
 * script did not run) and the call is repeated once as one pipeline:
 * EXISTS key, SCRIPT LOAD source, EVALSHA. Never EVAL: Rust Rigatoni sends
 * only EVALSHA and SCRIPT LOAD, so a user whose ACL allows just those must
 * be able to run every script of ours. The EXISTS (a command of that ACL
 * too) names the script's first key, so in a cluster the keyless SCRIPT
 * LOAD travels with it to the node that runs the EVALSHA.
 */
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script.h"
#include "call.h"
#include "error.h"

/* Scripts are static in the files that run them (lock.c, batch.c), so
 * no store sets them up: the first caller hashes, the others wait. */
static pthread_mutex_t hash_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *script_sha(rs_script *script)
{
    if (atomic_load_explicit(&script->hashed, memory_order_acquire)) return script->sha;
    pthread_mutex_lock(&hash_lock);
    if (!atomic_load_explicit(&script->hashed, memory_order_relaxed)) {
        unsigned char digest[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)script->source, strlen(script->source), digest);
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            snprintf(script->sha + 2 * i, 3, "%02x", digest[i]);
        atomic_store_explicit(&script->hashed, 1, memory_order_release);
    }
    pthread_mutex_unlock(&hash_lock);
    return script->sha;
}

/* Builds {EVALSHA, sha, nkeys, keys..., args...} in argv. */
static void fill_argv(const char *sha, const rs_script_args *a, const char **argv,
                      size_t *argvlen, char *numkeys)
{
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = sha;
    argvlen[1] = strlen(sha);
    snprintf(numkeys, 12, "%d", a->nkeys);
    argv[2] = numkeys;
    argvlen[2] = strlen(numkeys);
    for (int i = 0; i < a->nkeys; i++) {
        argv[3 + i] = a->keys[i];
        argvlen[3 + i] = a->key_lens[i];
    }
    for (int i = 0; i < a->nargs; i++) {
        argv[3 + a->nkeys + i] = a->args[i];
        argvlen[3 + a->nkeys + i] = a->arg_lens[i];
    }
}

int rs_script_run(rs_store *store, rs_call *like, rs_script *script,
                  const rs_script_args *a, redisReply **reply)
{
    enum { MAX_ARGS = 16 };
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    char numkeys[12];
    rs_error *err = like->err;
    if (3 + a->nkeys + a->nargs > MAX_ARGS) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s: too many script arguments", like->what);
        return -1;
    }
    if (a->nkeys < 1) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s: a script needs a key", like->what);
        return -1;
    }
    fill_argv(script_sha(script), a, argv, argvlen, numkeys);
    const char *load_argv[5] = {"EXISTS", a->keys[0], "SCRIPT", "LOAD", script->source};
    size_t load_len[5] = {6, a->key_lens[0], 6, 4, strlen(script->source)};
    rs_cmd cmds[3] = {{2, load_argv, load_len}, {3, load_argv + 2, load_len + 2},
                      {3 + a->nkeys + a->nargs, argv, argvlen}};
    rs_error first;
    for (int load = 0;; load = 1) {
        /* First the EVALSHA alone; after NOSCRIPT, the three commands. */
        redisReply *got[3] = {NULL, NULL, NULL};
        rs_call call = *like;
        call.ncmds = load ? 3 : 1;
        call.cmds = load ? cmds : cmds + 2;
        call.replies = got;
        call.flags &= ~(unsigned)(RS_CALL_KEEP | RS_CALL_ERROR_REPLIES);
        call.err = load ? err : &first;
        int rc = call.flags & RS_CALL_DURABLE ? rs_call_durable(store, &call)
                                              : rs_call_run(store, &call);
        like->attempts = call.attempts;
        like->cause = call.cause;
        if (rc == 0) {
            for (size_t i = 0; i + 1 < call.ncmds; i++) freeReplyObject(got[i]);
            *reply = got[call.ncmds - 1];
            return 0;
        }
        if (load) return rc;
        /* NOSCRIPT is an error reply: the script did not run. */
        if (first.reply != RS_REPLY_NOSCRIPT) {
            *err = first;
            return -1;
        }
    }
}
