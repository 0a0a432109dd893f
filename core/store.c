/* SPDX-License-Identifier: MIT */
/* store.c -- the resume-token operations, byte compatible with Rigatoni.
 *
 * Key:   <key_prefix>:<collection>
 * Value: the raw BSON bytes of the token document.
 * Save:  SET key value, or SET key value EX ttl (PX when the TTL has a
 *        fraction of a second). Reads use GET and PTTL, which never touch
 *        the TTL.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "call.h"
#include "checked.h"
#include "closing.h"
#include "cluster.h"
#include "config.h"
#include "error.h"
#include "failover.h"
#include "jobs.h"
#include "log.h"
#include "pool.h"
#include "store_state.h"
#include "tls.h"
#include "token_key.h"
#include "ttl.h"

/* "<op> of '<collection>'" for error messages, shortened. */
static void describe(char *buf, size_t size, const char *op, const char *coll, size_t len)
{
    int shown = len > 80 ? 80 : (int)len;
    snprintf(buf, size, "%s of '%.*s%s'", op, shown, coll, len > 80 ? "..." : "");
}

/* ---------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------ */

/* "cannot open store at <masked url>: <message>" */
static void prefix_with_url(rs_error *err, const char *url)
{
    char masked[256], detail[sizeof err->message];
    rs_mask_url(url, masked, sizeof masked);
    memcpy(detail, err->message, sizeof detail);
    rs_reply_class reply = err->reply;
    rs_error_set(err, err->kind, err->retryable, "cannot open store at %s: %s", masked, detail);
    err->reply = reply;
}

rs_store *rs_store_open(const rs_config *cfg, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (rs_config_validate(cfg, err) < 0) return NULL;
    rs_store *store = calloc(1, sizeof *store);
    if (store) {
        pthread_mutex_init(&store->threads_lock, NULL);
        pthread_cond_init(&store->threads_done, NULL);
    }
    if (!store || !(store->cfg = rs_config_copy(cfg)) || !(store->closing = rs_closing_new()) ||
        !(store->workers = rs_workers_new(store, store->cfg->workers))) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        rs_store_close(store);
        return NULL;
    }
    if (store->cfg->parsed.tls && !(store->tls = rs_tls_new(store->cfg, err))) {
        rs_store_close(store);
        return NULL;
    }
    const rs_url *url = &store->cfg->parsed;
    if (store->cfg->cluster_mode) {
        if (!(store->cluster = rs_cluster_new(store, err))) {
            prefix_with_url(err, cfg->url);
            rs_store_close(store);
            return NULL;
        }
    } else if (!(store->pool = rs_pool_new(store->cfg, store->tls,
                                           url->nhosts > 1 ? NULL : url->hosts[0].host,
                                           url->hosts[0].port))) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        rs_store_close(store);
        return NULL;
    }
    if (store->pool) rs_pool_watch_closing(store->pool, store->closing);
    if (rs_ping(store, err) < 0) {
        prefix_with_url(err, cfg->url);
        rs_store_close(store);
        return NULL;
    }
    /* Sentinel: hear +switch-master as it happens (failover.c). */
    if (!store->cluster && url->nhosts > 1 &&
        !(store->failover = rs_failover_start(store->cfg, store->tls, store->pool, err))) {
        rs_store_close(store);
        return NULL;
    }
    return store;
}

void rs_store_threads(rs_store *store, int delta)
{
    pthread_mutex_lock(&store->threads_lock);
    store->threads += delta;
    if (store->threads == 0) pthread_cond_broadcast(&store->threads_done);
    pthread_mutex_unlock(&store->threads_lock);
}

/* Waits until no walk or save-job thread runs on the store. */
static void wait_threads(rs_store *store)
{
    pthread_mutex_lock(&store->threads_lock);
    while (store->threads > 0) pthread_cond_wait(&store->threads_done, &store->threads_lock);
    pthread_mutex_unlock(&store->threads_lock);
}

void rs_store_close(rs_store *store)
{
    if (!store) return;
    /* From a job's fn or free_arg (forbidden): the worker would join
     * itself and free the store under its own feet. */
    if (rs_workers_is_caller(store->workers)) {
        rs_log(store->cfg, RS_LOG_ERROR, "rs_store_close called from a job running on the "
               "store's own worker thread (a job's fn or free_arg): aborting");
        abort();
    }
    /* In a fork, the workers are the parent's: no thread of theirs runs
     * here, their sync objects may be held by the parent's threads (both
     * left alone, leaked), and no job can run. */
    int foreign = rs_workers_foreign(store->workers);
    /* Jobs still queued are done without running, and no job starts. */
    rs_workers_stop(store->workers);
    /* A walk closed mid-step left its threads to finish that step, and a
     * save job runs to its end (within the retry policy): they still use
     * the pools. */
    wait_threads(store);
    /* Running jobs stop retrying and begin no call (closing.c); the
     * attempt in progress ends within its timeouts. */
    if (store->closing && !foreign) rs_closing_begin(store->closing);
    rs_workers_join(store->workers);
    wait_threads(store);      /* any a job's fn started meanwhile (refused their calls) */
    pthread_mutex_destroy(&store->threads_lock);
    pthread_cond_destroy(&store->threads_done);
    rs_failover_stop(store->failover);
    rs_pool_free(store->pool);
    rs_cluster_free(store->cluster);
    rs_tls_free(store->tls);
    rs_config_free(store->cfg);
    rs_workers_free(store->workers);
    if (!foreign) rs_closing_free(store->closing);
    free(store);
}

const rs_config *rs_store_config(const rs_store *store)
{
    return store->cfg;
}

uint64_t rs_store_master_changes(rs_store *store)
{
    return store->pool ? rs_pool_master_changes(store->pool) : 0;
}

void rs_store_pool_stats(rs_store *store, rs_pool_stats *out)
{
    if (store->cluster) rs_cluster_pool_stats(store->cluster, out);
    else rs_pool_get_stats(store->pool, out);
}

/* The store hands metrics.c its pool figures, so metrics.c calls nothing
 * above it (retry.c and exec.c count through it). */
void rs_store_metrics(rs_store *store, rs_metrics_snapshot *out)
{
    rs_pool_stats pool;
    rs_store_pool_stats(store, &pool);
    rs_metrics_snapshot_of(&store->metrics, &pool, out);
}

void rs_store_metrics_reset(rs_store *store)
{
    rs_pool_stats pool;
    rs_store_pool_stats(store, &pool);
    rs_metrics_reset_to(&store->metrics, &pool);
}



/* ---------------------------------------------------------------------
 * Token operations
 * ------------------------------------------------------------------ */


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
    size_t key_len;
    char *key = rs_token_key(store, collection, coll_len, &key_len, err);
    if (!key) return -1;
    const char *argv[2] = {"GET", key};
    size_t argvlen[2] = {3, key_len};
    rs_cmd cmd = {2, argv, argvlen};
    redisReply *reply;
    char what[128];
    describe(what, sizeof what, "get", collection, coll_len);
    rs_call call = RS_CALL(RS_OP_GET, what, 1, &cmd, &reply, err);
    call.prior = prior;
    int rc = rs_call_run(store, &call);
    free(key);
    if (rc < 0) return -1;
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
    size_t key_len;
    char *key = rs_token_key(store, collection, coll_len, &key_len, err);
    if (!key) return -1;
    const char *argv[2] = {"PTTL", key};
    size_t argvlen[2] = {4, key_len};
    rs_cmd cmd = {2, argv, argvlen};
    redisReply *reply;
    char what[128];
    describe(what, sizeof what, "ttl", collection, coll_len);
    rs_call call = RS_CALL(RS_OP_GET, what, 1, &cmd, &reply, err);
    int rc = rs_call_run(store, &call);
    free(key);
    if (rc < 0) return -1;
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

int rs_ping(rs_store *store, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    const char *argv[1] = {"PING"};
    size_t argvlen[1] = {4};
    rs_cmd cmd = {1, argv, argvlen};
    redisReply *reply;
    rs_call call = RS_CALL(RS_OP_OTHER, "PING", 1, &cmd, &reply, err);
    if (rs_call_run(store, &call) < 0) return -1;
    freeReplyObject(reply);
    return 0;
}
