/* batch.c -- many tokens per round trip, and the careful single-key edits
 * that maintenance tools need (give a TTL, delete only an unchanged value).
 *
 * Batches are one pipeline through rs_exec: all or nothing as far as the
 * caller can tell, and safe to retry because SET, DEL and reads are
 * idempotent. Keys are built from the collection names exactly as the
 * single-token calls build them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

int rs_save_many(rs_store *store, const rs_save_item *items, size_t n, int flags, int *written,
                 rs_error *err)
{
    rs_error_clear(err);
    if (n == 0) return 0;
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
        /* The TTL bound is rs_save_raw's: its amount fits in amounts[i]. */
        int bad_ttl = !(items[i].ttl >= 0 && items[i].ttl <= 1e9);
        if (items[i].len > RS_MAX_TOKEN_SIZE || bad_ttl) {
            rs_error_set(err, bad_ttl ? RS_ERR_CONFIG : RS_ERR_SERIALIZATION, 0,
                         "save_many: item %zu has %s", i + 1,
                         bad_ttl ? "a ttl outside 0 to 1e9 seconds" : "a token over the size limit");
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
    if (rs_exec_durable(store, RS_OP_SAVE, what, n, cmds, replies, err) < 0) goto out;
    for (size_t i = 0; i < n; i++) {
        if (written) written[i] = replies[i]->type != REDIS_REPLY_NIL;
        freeReplyObject(replies[i]);
    }
    rc = 0;
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

/* Appends one "<name> key" command per key to cmds (argv space: 2 per key). */
static void per_key_commands(const char *name, char **keys, const size_t *key_lens, size_t n,
                             rs_cmd *cmds, const char **argv, size_t *argvlen)
{
    for (size_t i = 0; i < n; i++) {
        argv[2 * i] = name, argvlen[2 * i] = strlen(name);
        argv[2 * i + 1] = keys[i], argvlen[2 * i + 1] = key_lens[i];
        cmds[i] = (rs_cmd){2, argv + 2 * i, argvlen + 2 * i};
    }
}

int rs_get_many(rs_store *store, const char *const *collections, const size_t *lens, size_t n,
                rs_value *out, rs_error *err)
{
    rs_error_clear(err);
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++) out[i].ttl = -1;
    if (n == 0) return 0;
    /* One MGET, or in a cluster (MGET cannot span slots) one GET per key;
     * then one PTTL per key. */
    int per_key = store->cluster != NULL;
    size_t nget = per_key ? n : 1, ncmds = nget + n;
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
        per_key_commands("GET", keys, key_lens, n, cmds, argv, argvlen);
    } else {
        argv[0] = "MGET", argvlen[0] = 4;
        for (size_t i = 0; i < n; i++) argv[1 + i] = keys[i], argvlen[1 + i] = key_lens[i];
        cmds[0] = (rs_cmd){(int)(n + 1), argv, argvlen};
    }
    per_key_commands("PTTL", keys, key_lens, n, cmds + nget, argv + 2 * n + 1,
                     argvlen + 2 * n + 1);
    char what[48];
    snprintf(what, sizeof what, "get_many of %zu tokens", n);
    if (rs_exec(store, RS_OP_GET, what, ncmds, cmds, replies, err) < 0) goto out;
    if (!per_key && (replies[0]->type != REDIS_REPLY_ARRAY || replies[0]->elements != n)) {
        rs_error_set(err, RS_ERR_SERVER, 0, "%s: unexpected reply", what);
    } else {
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            redisReply *v = per_key ? replies[i] : replies[0]->element[i];
            redisReply *t = replies[nget + i];
            if (v->type != REDIS_REPLY_STRING) continue;
            if (!(out[i].bytes = malloc(v->len + 1))) {
                rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
                rc = -1;
                break;
            }
            memcpy(out[i].bytes, v->str, v->len);
            out[i].bytes[v->len] = '\0';
            out[i].len = v->len;
            if (t->type == REDIS_REPLY_INTEGER && t->integer >= 0)
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
        per_key_commands("DEL", keys, key_lens, n, cmds, argv, argvlen);
    } else {
        argv[0] = "DEL", argvlen[0] = 3;
        for (size_t i = 0; i < n; i++) argv[1 + i] = keys[i], argvlen[1 + i] = key_lens[i];
        cmds[0] = (rs_cmd){(int)(n + 1), argv, argvlen};
    }
    char what[48];
    snprintf(what, sizeof what, "delete_many of %zu tokens", n);
    if (rs_exec(store, RS_OP_DELETE, what, ncmds, cmds, replies, err) < 0) goto out;
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

int rs_expire(rs_store *store, const char *collection, size_t coll_len, double ttl, rs_error *err)
{
    rs_error_clear(err);
    if (!(ttl > 0) || ttl > 1e9) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "expire: ttl must be a positive number of seconds");
        return -1;
    }
    size_t key_len;
    char *key = rs_token_key(store, collection, coll_len, &key_len, err);
    if (!key) return -1;
    char amount[24];
    ttl_ms(ttl, amount, sizeof amount);
    const char *argv[4] = {"PEXPIRE", key, amount, "NX"};
    size_t argvlen[4] = {7, key_len, strlen(amount), 2};
    rs_cmd cmd = {4, argv, argvlen};
    redisReply *reply;
    int rc = rs_exec(store, RS_OP_OTHER, "expire", 1, &cmd, &reply, err);
    free(key);
    if (rc < 0) return -1;
    rc = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return rc;
}

const char rs_delete_if_value_source[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

int rs_delete_if_value(rs_store *store, const char *collection, size_t coll_len,
                       const void *bytes, size_t len, rs_error *err)
{
    rs_error_clear(err);
    size_t key_len;
    char *key = rs_token_key(store, collection, coll_len, &key_len, err);
    if (!key) return -1;
    const char *keys[1] = {key}, *args[1] = {bytes ? bytes : ""};
    size_t key_lens[1] = {key_len}, arg_lens[1] = {len};
    redisReply *reply;
    int rc = rs_script_run(store, RS_OP_DELETE, "delete if unchanged", &store->scripts.delete_if_value, 1, keys,
                           key_lens, 1, args, arg_lens, &reply, err);
    free(key);
    if (rc < 0) return -1;
    rc = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    freeReplyObject(reply);
    return rc;
}
