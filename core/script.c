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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void rs_script_init(rs_script *script, const char *source)
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)source, strlen(source), digest);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(script->sha + 2 * i, 3, "%02x", digest[i]);
    script->source = source;
}

/* Builds {EVALSHA, sha, nkeys, keys..., args...} in argv. */
static void fill_argv(const rs_script *script, int nkeys, const char **keys,
                      const size_t *key_lens, int nargs, const char **args,
                      const size_t *arg_lens, const char **argv, size_t *argvlen, char *numkeys)
{
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = script->sha;
    argvlen[1] = strlen(script->sha);
    snprintf(numkeys, 12, "%d", nkeys);
    argv[2] = numkeys;
    argvlen[2] = strlen(numkeys);
    for (int i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        argvlen[3 + i] = key_lens[i];
    }
    for (int i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        argvlen[3 + nkeys + i] = arg_lens[i];
    }
}

static int script_run(rs_store *store, rs_op op, const char *what, rs_retry_rule rule,
                      const rs_script *script, int nkeys, const char **keys,
                      const size_t *key_lens, int nargs, const char **args,
                      const size_t *arg_lens, redisReply **reply, rs_error *err, int durable)
{
    enum { MAX_ARGS = 16 };
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    char numkeys[12];
    if (3 + nkeys + nargs > MAX_ARGS) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s: too many script arguments", what);
        return -1;
    }
    if (nkeys < 1) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "%s: a script needs a key", what);
        return -1;
    }
    fill_argv(script, nkeys, keys, key_lens, nargs, args, arg_lens, argv, argvlen, numkeys);
    const char *load_argv[5] = {"EXISTS", keys[0], "SCRIPT", "LOAD", script->source};
    size_t load_len[5] = {6, key_lens[0], 6, 4, strlen(script->source)};
    rs_cmd cmds[3] = {{2, load_argv, load_len}, {3, load_argv + 2, load_len + 2},
                      {3 + nkeys + nargs, argv, argvlen}};
    rs_error first;
    for (int load = 0;; load = 1) {
        /* First the EVALSHA alone; after NOSCRIPT, the three commands. */
        size_t n = load ? 3 : 1;
        const rs_cmd *run = load ? cmds : cmds + 2;
        redisReply *got[3] = {NULL, NULL, NULL};
        rs_error *e = load ? err : &first;
        int rc = durable ? rs_exec_durable(store, op, what, rule, n, run, got, NULL, e)
                         : rs_exec_rule(store, op, what, rule, n, run, got, NULL, e);
        if (rc == 0) {
            for (size_t i = 0; i + 1 < n; i++) freeReplyObject(got[i]);
            *reply = got[n - 1];
            return 0;
        }
        if (load) return rc;
        /* NOSCRIPT is an error reply: the script did not run. */
        if (first.reply != RS_REPLY_NOSCRIPT) {
            if (err) *err = first;
            return -1;
        }
    }
}

int rs_script_run(rs_store *store, rs_op op, const char *what, rs_retry_rule rule,
                  const rs_script *script, int nkeys, const char **keys,
                  const size_t *key_lens, int nargs, const char **args,
                  const size_t *arg_lens, redisReply **reply, rs_error *err)
{
    return script_run(store, op, what, rule, script, nkeys, keys, key_lens, nargs, args,
                      arg_lens, reply, err, 0);
}

int rs_script_run_durable(rs_store *store, rs_op op, const char *what, rs_retry_rule rule,
                          const rs_script *script, int nkeys, const char **keys,
                          const size_t *key_lens, int nargs, const char **args,
                          const size_t *arg_lens, redisReply **reply, rs_error *err)
{
    return script_run(store, op, what, rule, script, nkeys, keys, key_lens, nargs, args,
                      arg_lens, reply, err, 1);
}
