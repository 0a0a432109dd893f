/* SPDX-License-Identifier: MIT */
/* token_ops.c -- the resume-token operations, byte compatible with Rigatoni.
 *
 * Key:   <key_prefix>:<collection>
 * Value: the raw BSON bytes of the token document.
 * Save:  SET key value, or SET key value EX ttl (PX when the TTL has a
 *        fraction of a second). Reads use GET and PTTL, which never touch
 *        the TTL.
 *
 * Each is one call of the engine (call.c); a delete is checked after a
 * lost reply (checked.c). The job workers (jobs.c) run a coalesced get
 * that must go on alone through rs_get_raw_after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token_ops.h"
#include "call.h"
#include "checked.h"
#include "config.h"
#include "error.h"
#include "store_state.h"
#include "token_key.h"
#include "ttl.h"

/* "<op> of '<collection>'" for error messages, shortened. */
static void describe(char *buf, size_t size, const char *op, const char *coll, size_t len)
{
    int shown = len > 80 ? 80 : (int)len;
    snprintf(buf, size, "%s of '%.*s%s'", op, shown, coll, len > 80 ? "..." : "");
}

/* `command` (GET, PTTL) of one token's key, a read retried after any
 * failure (after `prior`, an attempt made elsewhere, when not NULL): its
 * reply, or NULL with err. `what` (128 bytes) names it for messages. */
static redisReply *read_one(rs_store *store, const char *command, const char *op,
                            const char *collection, size_t coll_len, const rs_error *prior,
                            char *what, rs_error *err)
{
    size_t key_len;
    char *key = rs_token_key(store, collection, coll_len, &key_len, err);
    if (!key) return NULL;
    const char *argv[2] = {command, key};
    size_t argvlen[2] = {strlen(command), key_len};
    rs_cmd cmd = {2, argv, argvlen};
    redisReply *reply;
    describe(what, 128, op, collection, coll_len);
    rs_call call = RS_CALL(RS_OP_GET, what, 1, &cmd, &reply, err);
    call.prior = prior;
    int rc = rs_call_run(store, &call);
    free(key);
    return rc < 0 ? NULL : reply;
}

int rs_save_raw(rs_store *store, const char *collection, size_t coll_len, const void *bytes,
                size_t len, double ttl, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (ttl == RS_TTL_DEFAULT) ttl = store->cfg->ttl;
    if (!(ttl >= 0)) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "ttl must be a number of seconds >= 0");
        return -1;
    }
    if (ttl > 0 && rs_ttl_check(ttl, err) < 0) return -1;
    size_t key_len;
    char *key = rs_token_key_to_save(store, collection, coll_len, len, &key_len, err);
    if (!key) return -1;

    const char *argv[5] = {"SET", key, bytes ? bytes : "", NULL, NULL};
    size_t argvlen[5] = {3, key_len, len, 2, 0};
    char amount[24];
    int argc = 3;
    if (rs_ttl_args(ttl, &argv[3], amount, sizeof amount)) {
        argv[4] = amount;
        argvlen[4] = strlen(amount);
        argc = 5;
    }
    rs_cmd cmd = {argc, argv, argvlen};
    redisReply *reply;
    char what[128];
    describe(what, sizeof what, "save", collection, coll_len);
    /* A plain SET of the same bytes is idempotent: retried after any failure. */
    rs_call call = RS_CALL(RS_OP_SAVE, what, 1, &cmd, &reply, err);
    int rc = rs_call_durable(store, &call);
    free(key);
    if (rc < 0) return -1;
    freeReplyObject(reply);
    return 0;
}

int rs_get_raw(rs_store *store, const char *collection, size_t coll_len, char **out,
               size_t *out_len, rs_error *err)
{
    return rs_get_raw_after(store, collection, coll_len, NULL, out, out_len, err);
}

int rs_get_raw_after(rs_store *store, const char *collection, size_t coll_len,
                     const rs_error *prior, char **out, size_t *out_len, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    *out = NULL;
    *out_len = 0;
    char what[128];
    redisReply *reply = read_one(store, "GET", "get", collection, coll_len, prior, what, err);
    if (!reply) return -1;
    if (reply->type == REDIS_REPLY_NIL) {
        freeReplyObject(reply);
        return 0;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        freeReplyObject(reply);
        rs_error_set(err, RS_ERR_SERVER, 0, "%s: unexpected reply type", what);
        return -1;
    }
    char *bytes = malloc(reply->len + 1);
    if (!bytes) {
        freeReplyObject(reply);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return -1;
    }
    memcpy(bytes, reply->str, reply->len);
    bytes[reply->len] = '\0';
    *out = bytes;
    *out_len = reply->len;
    freeReplyObject(reply);
    return 1;
}

/* DEL answers whether the key was there: after an attempt that may have
 * run, a key found gone cannot tell "deleted by us" from "never there". */
static rs_outcome check_deleted(const redisReply *exists, void *ctx, const char **why)
{
    (void)ctx;
    if (exists->type == REDIS_REPLY_INTEGER && exists->integer > 0) return RS_OUTCOME_NOT_RUN;
    *why = "the key is gone: deleted by this call, or it was not there";
    return RS_OUTCOME_UNKNOWN;
}

int rs_delete(rs_store *store, const char *collection, size_t coll_len, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    size_t key_len;
    char *key = rs_token_key(store, collection, coll_len, &key_len, err);
    if (!key) return -1;
    const char *argv[2] = {"DEL", key};
    size_t argvlen[2] = {3, key_len};
    char what[128];
    describe(what, sizeof what, "delete", collection, coll_len);
    rs_unsent_cmd del = {RS_OP_DELETE, what, {2, argv, argvlen}};
    redisReply *reply;
    rs_checked op = {what, rs_run_unsent, "EXISTS", key, key_len, check_deleted, &del, 0};
    int rc = rs_exec_checked(store, &op, &reply, err);
    free(key);
    if (rc < 0) return -1;
    rc = reply->type == REDIS_REPLY_INTEGER && reply->integer > 0;
    freeReplyObject(reply);
    return rc;
}

int rs_ttl(rs_store *store, const char *collection, size_t coll_len, double *seconds,
           rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    *seconds = 0;
    rs_error_clear(err);
    char what[128];
    redisReply *reply = read_one(store, "PTTL", "ttl", collection, coll_len, NULL, what, err);
    if (!reply) return -1;
    int ok = reply->type == REDIS_REPLY_INTEGER;
    long long ms = ok ? reply->integer : 0;
    freeReplyObject(reply);
    if (!ok) {
        rs_error_set(err, RS_ERR_SERVER, 0, "%s: unexpected reply type", what);
        return -1;
    }
    if (ms == -2) return 0;
    if (ms == -1) return 2;
    *seconds = (double)ms / 1000.0;
    return 1;
}
