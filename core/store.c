/* SPDX-License-Identifier: MIT */
/* store.c -- a store's life: open (its pool, cluster map, failover
 * watch), the threads it waits for, close (its workers and jobs first:
 * jobs.c), its metrics; PING. The token operations are token_ops.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "call.h"
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
