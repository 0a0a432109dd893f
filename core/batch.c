/* SPDX-License-Identifier: MIT */
/* batch.c -- many tokens per round trip, and the careful single-key edits
 * that maintenance tools need (give a TTL, delete only an unchanged value).
 *
 * Batches are one pipeline through rs_call_run. Plain SETs and reads are
 * idempotent and retried as a whole; SET NX, DEL counts, PEXPIRE NX and
 * compare-and-delete are not, so after an attempt that may have run they
 * either learn their outcome from the server's state or raise `unknown`.
 * Keys are built from the collection names exactly as the
 * single-token calls build them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "checked.h"
#include "config.h"
#include "error.h"
#include "exec.h"
#include "retry.h"
#include "script.h"
#include "store_state.h"
#include "token_key.h"
#include "ttl.h"

/* Keys of n collections, in one allocation per key; NULL + err on error. */
static char **make_keys(rs_store *store, const char *const *colls, const size_t *lens,
                        size_t n, size_t *key_lens, rs_error *err)
{
    char **keys = calloc(n ? n : 1, sizeof *keys);
    if (!keys) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(keys[i] = rs_token_key(store, colls[i], lens[i], &key_lens[i], err))) {
            for (size_t j = 0; j < i; j++) free(keys[j]);
            free(keys);
            return NULL;
        }
    }
    return keys;
}

static void free_keys(char **keys, size_t n)
{
    for (size_t i = 0; keys && i < n; i++) free(keys[i]);
    free(keys);
}

/* PX amount for a TTL in seconds (at least 1 ms). */
static void ttl_ms(double ttl, char *buf, size_t size)
{
    double ms = llround(ttl * 1000);
    snprintf(buf, size, "%.0f", ms < 1 ? 1 : ms);
}

/* An NX save_many's items, keys, commands and outcomes. */
typedef struct save_batch {
    const char *what;
    const rs_save_item *items;
    char **keys;
    const size_t *key_lens;
    const rs_cmd *cmds;
    redisReply **replies;
    size_t n;
    int *written;
} save_batch;

/* Item i of an NX save whose attempt may have run: the stored bytes tell.
 * Returns 1 when our bytes are there (written), 0 when the key is absent
 * (not written yet: send it again), -1 with err when nothing can be said. */

static int nx_outcome(rs_store *store, const save_batch *b, size_t i, int attempts, rs_error *err)
{
    const char *what = b->what, *key = b->keys[i];
    const rs_save_item *item = &b->items[i];
    size_t key_len = b->key_lens[i];
    redisReply *r;
    rs_error unknown = *err;
    rs_call like = RS_CALL(RS_OP_GET, what, 0, NULL, &r, err);
    if (rs_exec_key(store, &like, "GET", key, key_len) < 0) {
        *err = unknown;
        err->attempts = attempts;
        return -1;
    }
    int rc = r->type == REDIS_REPLY_NIL ? 0
             : r->type == REDIS_REPLY_STRING && r->len == item->len &&
                     (item->len == 0 || memcmp(r->str, item->bytes, item->len) == 0)
                 ? 1
                 : -1;
    freeReplyObject(r);
    if (rc < 0) {
        char why[256];
        snprintf(why, sizeof why,
                 "'%.80s' holds other bytes: written by another client before or after this "
                 "call's attempt",
                 key);
        rs_exec_unknown_because(err, what, attempts, why);
    }
    return rc;
}

static void set_written(int *written, size_t i, int value)
{
    if (written) written[i] = value;
}

/* A round's failure (rs_exec_fail's "<what> failed after K attempts: ...")
 * counts the attempts of the earlier rounds too. */
static void add_prior_attempts(rs_error *err, const char *what, int prior)
{
    char prefix[96];
    int n = snprintf(prefix, sizeof prefix, "%s failed after %d attempt%s: ", what,
                     err->attempts, err->attempts == 1 ? "" : "s");
    if (prior <= 0 || n <= 0 || (size_t)n >= sizeof prefix ||
        strncmp(err->message, prefix, (size_t)n) != 0)
        return;
    rs_error last = *err;
    memmove(last.message, last.message + n, strlen(last.message + n) + 1);
    rs_exec_fail(err, what, prior + err->attempts, &last);
}

/* SET NX of every item: repeating one that ran would read "skipped", so
 * the items whose reply was lost are checked on the server and only those
 * still absent are sent again. An error reply says that its command did
 * not run, whatever happened to the rest of the pipeline: a transient one
 * (READONLY, LOADING, ...) is sent again like an absent key; any other
 * (NOPERM, OOM, ...) refuses the item for good, and the call fails with it
 * once every other item's outcome is known. written[i]: 1 written, 0 not
 * (skipped, refused, or still absent when the call failed), -1 unknown. */
static int save_nx(rs_store *store, const save_batch *b, rs_error *err)
{
    const char *what = b->what;
    const rs_cmd *cmds = b->cmds;
    redisReply **replies = b->replies;
    size_t n = b->n;
    int *written = b->written;
    size_t *pending = calloc(n, sizeof *pending), npending = n;
    rs_cmd *round = calloc(n, sizeof *round);
    int attempts = 0, rc = -1, refused_set = 0, transient_set = 0;
    rs_error refused, transient, cause;   /* first refusal; latest transient reply */
    if (!pending || !round) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) pending[i] = i;
    while (npending > 0) {
        /* Sent again: unknown until this round tells (a round that fails
         * before its replies, e.g. short of WAIT acknowledgements, may
         * have written them). */
        for (size_t k = 0; k < npending; k++) {
            round[k] = cmds[pending[k]];
            set_written(written, pending[k], -1);
        }
        int prior = attempts;
        rs_call call = RS_CALL(RS_OP_SAVE, what, npending, round, replies, err);
        call.rule = RS_RETRY_UNSENT;
        call.flags = RS_CALL_KEEP;
        int got = rs_call_durable(store, &call);
        size_t answered = call.answered;
        int sent = got < 0 ? err->attempts : 0;        /* this round's */
        if (got < 0 && err->kind != RS_ERR_UNKNOWN) add_prior_attempts(err, what, prior);
        /* Failed before every reply was read, and not for want of one. */
        if (got < 0 && err->kind != RS_ERR_UNKNOWN && answered < npending) goto out;
        int has_cause = got < 0 && err->kind == RS_ERR_UNKNOWN && call.cause.kind != RS_OK;
        if (has_cause) cause = call.cause;
        if (got == 0) answered = npending;
        else attempts = prior + sent;
        size_t left = 0;         /* pending[] is compacted in place: left <= k */
        for (size_t k = 0; k < answered; k++) {
            size_t i = pending[k];
            if (replies[k]->type != REDIS_REPLY_ERROR) {
                set_written(written, i, replies[k]->type != REDIS_REPLY_NIL);
            } else {
                rs_error e;
                rs_error_from_reply(&e, replies[k]->str, replies[k]->len);
                set_written(written, i, 0);
                if (e.retryable) transient = e, transient_set = 1, pending[left++] = i;
                else if (!refused_set) refused = e, refused_set = 1;
            }
            freeReplyObject(replies[k]);
        }
        if (got == 0) break;
        /* Every reply read, an error among them: err is the call's. */
        if (err->kind != RS_ERR_UNKNOWN) goto out;
        for (size_t k = answered; k < npending; k++) {
            size_t i = pending[k];
            int w = nx_outcome(store, b, i, attempts, err);
            if (w < 0) goto out;
            set_written(written, i, w);
            if (w == 0) pending[left++] = i;
        }
        /* A refusal, or no attempt left: every item left is known not to
         * be written, so the failure is what stopped it, not `unknown`. */
        if (refused_set || (left > 0 && attempts > store->cfg->max_retries)) {
            if (!refused_set && !transient_set && !has_cause)
                rs_error_set(&cause, RS_ERR_CONNECTION, 1, "no reply");
            rs_exec_fail(err, what, attempts,
                         refused_set ? &refused : transient_set ? &transient : &cause);
            goto out;
        }
        npending = left;
    }
    rc = 0;
out:
    free(pending);
    free(round);
    return rc;
}

int rs_save_many(rs_store *store, const rs_save_item *items, size_t n, int flags, int *written,
                 rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (n == 0) return 0;
    for (size_t i = 0; written && i < n; i++) written[i] = -1;
    enum { MAXARGS = 6 };
    const char **colls = calloc(n, sizeof *colls);
    size_t *lens = calloc(n, sizeof *lens), *key_lens = calloc(n, sizeof *key_lens);
    const char **argv = calloc(n * MAXARGS, sizeof *argv);
    size_t *argvlen = calloc(n * MAXARGS, sizeof *argvlen);
    char (*amounts)[24] = calloc(n, sizeof *amounts);
    rs_cmd *cmds = calloc(n, sizeof *cmds);
    redisReply **replies = calloc(n, sizeof *replies);
    char **keys = NULL;
    int rc = -1;
    if (!colls || !lens || !key_lens || !argv || !argvlen || !amounts || !cmds || !replies) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        colls[i] = items[i].collection;
        lens[i] = items[i].collection_len;
        /* The TTL range is Redis's own (rs_ttl_check): its amount fits in amounts[i]. */
        rs_error why;
        if (items[i].ttl != 0 && rs_ttl_check(items[i].ttl, &why) < 0) {
            rs_error_set(err, RS_ERR_CONFIG, 0, "save_many: item %zu: %s", i + 1, why.message);
            goto out;
        }
        if (items[i].len > RS_MAX_TOKEN_SIZE) {
            rs_error_set(err, RS_ERR_SERIALIZATION, 0,
                         "save_many: item %zu has a token over the size limit", i + 1);
            goto out;
        }
    }
    if (!(keys = make_keys(store, colls, lens, n, key_lens, err))) goto out;
    for (size_t i = 0; i < n; i++) {
        const char **a = argv + i * MAXARGS;
        size_t *l = argvlen + i * MAXARGS;
        int argc = 0;
        a[argc] = "SET", l[argc++] = 3;
        a[argc] = keys[i], l[argc++] = key_lens[i];
        a[argc] = items[i].bytes ? items[i].bytes : "", l[argc++] = items[i].len;
        const char *unit;
        if (rs_ttl_args(items[i].ttl, &unit, amounts[i], sizeof amounts[i])) {
            a[argc] = unit, l[argc++] = 2;
            a[argc] = amounts[i], l[argc++] = strlen(amounts[i]);
        }
        if (flags & RS_SAVE_NX) a[argc] = "NX", l[argc++] = 2;
        cmds[i] = (rs_cmd){argc, a, l};
    }
    char what[48];
    snprintf(what, sizeof what, "save_many of %zu tokens", n);
    if (!(flags & RS_SAVE_NX)) {
        /* Plain SETs are idempotent: the whole pipeline may be repeated. */
        rs_call call = RS_CALL(RS_OP_SAVE, what, n, cmds, replies, err);
        if (rs_call_durable(store, &call) < 0) goto out;
        for (size_t i = 0; i < n; i++) {
            if (written) written[i] = 1;
            freeReplyObject(replies[i]);
        }
        rc = 0;
        goto out;
    }
    save_batch b = {what, items, keys, key_lens, cmds, replies, n, written};
    rc = save_nx(store, &b, err);
out:
    free_keys(keys, n);
    free(colls);
    free(lens);
    free(key_lens);
    free(argv);
    free(argvlen);
    free(amounts);
    free(cmds);
    free(replies);
    return rc;
}

/* Keys and their lengths. */
typedef struct key_set {
    char **keys;
    const size_t *key_lens;
    size_t n;
} key_set;

/* Appends one "<name> key" command per key to cmds (argv space: 2 per key). */
static void per_key_commands(const char *name, const key_set *ks, rs_cmd *cmds,
                             const char **argv, size_t *argvlen)
{
    char **keys = ks->keys;
    const size_t *key_lens = ks->key_lens;
    for (size_t i = 0; i < ks->n; i++) {
        argv[2 * i] = name, argvlen[2 * i] = strlen(name);
        argv[2 * i + 1] = keys[i], argvlen[2 * i + 1] = key_lens[i];
        cmds[i] = (rs_cmd){2, argv + 2 * i, argvlen + 2 * i};
    }
}

/* The collections a call names. */
typedef struct names {
    const char *const *collections;
    const size_t *lens;
    size_t n;
} names;

static int read_many(rs_store *store, const names *which, int with_ttl, rs_value *out,
                     rs_error *err)
{
    const char *const *collections = which->collections;
    const size_t *lens = which->lens;
    size_t n = which->n;
    rs_error_clear(err);
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++) out[i].ttl = -1;
    if (n == 0) return 0;
    /* One MGET, or in a cluster (MGET cannot span slots) one GET per key;
     * then one PTTL per key. */
    int per_key = store->cluster != NULL;
    size_t nget = per_key ? n : 1, ncmds = nget + (with_ttl ? n : 0);
    size_t *key_lens = calloc(n, sizeof *key_lens);
    const char **argv = calloc(4 * n + 1, sizeof *argv);
    size_t *argvlen = calloc(4 * n + 1, sizeof *argvlen);
    rs_cmd *cmds = calloc(ncmds, sizeof *cmds);
    redisReply **replies = calloc(ncmds, sizeof *replies);
    char **keys = NULL;
    int rc = -1;
    if (!key_lens || !argv || !argvlen || !cmds || !replies) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    if (!(keys = make_keys(store, collections, lens, n, key_lens, err))) goto out;
    if (per_key) {
        per_key_commands("GET", &(key_set){keys, key_lens, n}, cmds, argv, argvlen);
    } else {
        argv[0] = "MGET", argvlen[0] = 4;
        for (size_t i = 0; i < n; i++) argv[1 + i] = keys[i], argvlen[1 + i] = key_lens[i];
        cmds[0] = (rs_cmd){(int)(n + 1), argv, argvlen};
    }
    if (with_ttl)
        per_key_commands("PTTL", &(key_set){keys, key_lens, n}, cmds + nget, argv + 2 * n + 1,
                         argvlen + 2 * n + 1);
    char what[48];
    snprintf(what, sizeof what, "get_many of %zu tokens", n);
    rs_call call = RS_CALL(RS_OP_GET, what, ncmds, cmds, replies, err);
    if (rs_call_run(store, &call) < 0) goto out;
    if (!per_key && (replies[0]->type != REDIS_REPLY_ARRAY || replies[0]->elements != n)) {
        rs_error_set(err, RS_ERR_SERVER, 0, "%s: unexpected reply", what);
    } else {
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            redisReply *v = per_key ? replies[i] : replies[0]->element[i];
            redisReply *t = with_ttl ? replies[nget + i] : NULL;
            if (v->type != REDIS_REPLY_STRING) continue;
            if (!(out[i].bytes = malloc(v->len + 1))) {
                rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
                rc = -1;
                break;
            }
            memcpy(out[i].bytes, v->str, v->len);
            out[i].bytes[v->len] = '\0';
            out[i].len = v->len;
            if (t && t->type == REDIS_REPLY_INTEGER && t->integer >= 0)
                out[i].ttl = (double)t->integer / 1000.0;
        }
        if (rc < 0) rs_values_free(out, n);
    }
    for (size_t i = 0; i < ncmds; i++) freeReplyObject(replies[i]);
out:
    free_keys(keys, n);
    free(key_lens);
    free(argv);
    free(argvlen);
    free(cmds);
    free(replies);
    return rc;
}

int rs_get_many(rs_store *store, const char *const *collections, const size_t *lens, size_t n,
                rs_value *out, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    return read_many(store, &(names){collections, lens, n}, 1, out, err);
}

int rs_get_many_values(rs_store *store, const char *const *collections, const size_t *lens,
                       size_t n, rs_value *out, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    return read_many(store, &(names){collections, lens, n}, 0, out, err);
}

void rs_values_free(rs_value *values, size_t n)
{
    for (size_t i = 0; values && i < n; i++) {
        free(values[i].bytes);
        values[i].bytes = NULL;
        values[i].len = 0;
    }
}

long long rs_delete_many(rs_store *store, const char *const *collections, const size_t *lens,
                         size_t n, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (n == 0) return 0;
    /* One DEL of all keys, or in a cluster one DEL per key. */
    int per_key = store->cluster != NULL;
    size_t ncmds = per_key ? n : 1;
    size_t *key_lens = calloc(n, sizeof *key_lens), *argvlen = calloc(2 * n + 1, sizeof *argvlen);
    const char **argv = calloc(2 * n + 1, sizeof *argv);
    rs_cmd *cmds = calloc(ncmds, sizeof *cmds);
    redisReply **replies = calloc(ncmds, sizeof *replies);
    char **keys = NULL;
    long long deleted = -1;
    if (!key_lens || !argvlen || !argv || !cmds || !replies) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    if (!(keys = make_keys(store, collections, lens, n, key_lens, err))) goto out;
    if (per_key) {
        per_key_commands("DEL", &(key_set){keys, key_lens, n}, cmds, argv, argvlen);
    } else {
        argv[0] = "DEL", argvlen[0] = 3;
        for (size_t i = 0; i < n; i++) argv[1 + i] = keys[i], argvlen[1 + i] = key_lens[i];
        cmds[0] = (rs_cmd){(int)(n + 1), argv, argvlen};
    }
    char what[48];
    snprintf(what, sizeof what, "delete_many of %zu tokens", n);
    /* The count of deleted keys cannot be learnt again after an attempt
     * that may have run: that is an `unknown` error, never a low count. */
    rs_call call = RS_CALL(RS_OP_DELETE, what, ncmds, cmds, replies, err);
    call.rule = RS_RETRY_UNSENT;
    if (rs_call_run(store, &call) < 0) goto out;
    deleted = 0;
    for (size_t i = 0; i < ncmds; i++) {
        /* A negative count (broken server) must not read as our -1. */
        if (replies[i]->type == REDIS_REPLY_INTEGER && replies[i]->integer > 0)
            deleted += replies[i]->integer;
        freeReplyObject(replies[i]);
    }
out:
    free_keys(keys, n);
    free(key_lens);
    free(argvlen);
    free(argv);
    free(cmds);
    free(replies);
    return deleted;
}

/* PEXPIRE NX answers whether it gave the TTL: after an attempt that may
 * have run, only a key still without TTL says it did not. */
static rs_outcome check_expired(const redisReply *pttl, void *ctx, const char **why)
{
    (void)ctx;
    long long ms = pttl->type == REDIS_REPLY_INTEGER ? pttl->integer : -2;
    if (ms == -1) return RS_OUTCOME_NOT_RUN;
    *why = ms == -2 ? "the key is gone" : "the key has a TTL: given by this call or before it";
    return RS_OUTCOME_UNKNOWN;
}

int rs_expire(rs_store *store, const char *collection, size_t coll_len, double ttl, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    rs_error why;
    if (rs_ttl_check(ttl, &why) < 0) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "expire: %s", why.message);
        return -1;
    }
    size_t key_len;
    char *key = rs_token_key(store, collection, coll_len, &key_len, err);
    if (!key) return -1;
    char amount[24];
    ttl_ms(ttl, amount, sizeof amount);
    const char *argv[4] = {"PEXPIRE", key, amount, "NX"};
    size_t argvlen[4] = {7, key_len, strlen(amount), 2};
    rs_unsent_cmd expire = {RS_OP_OTHER, "expire", {4, argv, argvlen}};
    redisReply *reply;
    rs_checked op = {"expire", rs_run_unsent, "PTTL", key, key_len, check_expired, &expire, 0};
    int rc = rs_exec_checked(store, &op, &reply, err);
    free(key);
    if (rc < 0) return -1;
    rc = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return rc;
}

static rs_script delete_if_value = RS_SCRIPT(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0");

typedef struct delete_if {
    const char *key;
    size_t key_len;
    const void *bytes;
    size_t len;
} delete_if;

static int run_delete_if(rs_store *store, void *ctx, redisReply **reply, rs_error *err,
                         rs_error *cause)
{
    delete_if *d = ctx;
    const char *keys[1] = {d->key}, *args[1] = {d->bytes ? d->bytes : ""};
    size_t key_lens[1] = {d->key_len}, arg_lens[1] = {d->len};
    rs_script_args a = {1, keys, key_lens, 1, args, arg_lens};
    rs_call call = RS_CALL(RS_OP_DELETE, "delete if unchanged", 0, NULL, NULL, err);
    call.rule = RS_RETRY_UNSENT;
    int rc = rs_script_run(store, &call, &delete_if_value, &a, reply);
    *cause = call.cause;
    return rc;
}

/* Only our value still there says the delete did not run; gone or
 * changed could be this call's doing or another client's. */
static rs_outcome check_deleted_if(const redisReply *value, void *ctx, const char **why)
{
    delete_if *d = ctx;
    if (value->type == REDIS_REPLY_STRING && value->len == d->len &&
        (d->len == 0 || memcmp(value->str, d->bytes, d->len) == 0))
        return RS_OUTCOME_NOT_RUN;
    *why = value->type == REDIS_REPLY_NIL
               ? "the key is gone: deleted by this call or by another client"
               : "the key holds other bytes now";
    return RS_OUTCOME_UNKNOWN;
}

int rs_delete_if_value(rs_store *store, const char *collection, size_t coll_len,
                       const void *bytes, size_t len, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    size_t key_len;
    char *key = rs_token_key(store, collection, coll_len, &key_len, err);
    if (!key) return -1;
    delete_if d = {key, key_len, bytes, len};
    redisReply *reply;
    rs_checked op = {"delete if unchanged", run_delete_if, "GET", key, key_len, check_deleted_if,
                     &d, 0};
    int rc = rs_exec_checked(store, &op, &reply, err);
    free(key);
    if (rc < 0) return -1;
    rc = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return rc;
}
