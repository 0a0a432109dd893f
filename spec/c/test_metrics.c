/* SPDX-License-Identifier: MIT */
/* test_metrics.c -- operation metrics against a real redis-server: exact
 * counts, errors by kind, retries, latency buckets and percentiles, pool
 * waits under contention (threads, pool_size 1), reset, cluster counters,
 * the Prometheus text, and log lines that never carry the password.
 * Run plain, under ASan+UBSan and under ThreadSanitizer (the recording
 * path is lock free). Uses the core's internal API to hold a connection
 * and to feed known durations into the histogram. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "pool.h"
#include "store_state.h"
#include "test_support.h"

#define PASSWORD "m3tr1cs-s3cret"

static rs_config *config_for(int port, const char *password)
{
    rs_config *cfg = t_config(port, password);
    rs_config_set(cfg, "retry_base_delay", "5ms", NULL);
    return cfg;
}

static uint64_t sum_buckets(const rs_op_metrics *o)
{
    uint64_t n = 0;
    for (int k = 0; k < RS_METRICS_BUCKETS; k++) n += o->buckets[k];
    return n;
}


/* ---- concurrency ---------------------------------------------------- */

#define THREADS 8
#define PER_THREAD 60

static rs_store *shared;
static int thread_failures;
static pthread_mutex_t failures_lock = PTHREAD_MUTEX_INITIALIZER;

static void *hammer(void *arg)
{
    char coll[32];
    snprintf(coll, sizeof coll, "m%ld", (long)arg);
    rs_error err;
    for (int i = 0; i < PER_THREAD; i++) {
        int bad = rs_save_raw(shared, coll, strlen(coll), "v", 1, RS_TTL_DEFAULT, &err) < 0;
        char *out = NULL;
        size_t len;
        bad |= rs_get_raw(shared, coll, strlen(coll), &out, &len, &err) != 1;
        rs_free(out);
        if (bad) {
            pthread_mutex_lock(&failures_lock);
            thread_failures++;
            pthread_mutex_unlock(&failures_lock);
        }
    }
    return NULL;
}

/* Reads snapshots while the workers record: must never see a histogram
 * that does not add up, and counts never go down. */
static atomic_int stop_reader;
static void *reader(void *arg)
{
    uint64_t last = 0;
    rs_metrics_snapshot *m = malloc(sizeof *m);
    while (!atomic_load(&stop_reader)) {
        rs_store_metrics(shared, m);
        uint64_t n = m->ops[RS_METRICS_SAVE].count;
        if (n < last || n != sum_buckets(&m->ops[RS_METRICS_SAVE])) {
            pthread_mutex_lock(&failures_lock);
            thread_failures++;
            pthread_mutex_unlock(&failures_lock);
        }
        last = n;
    }
    free(m);
    return NULL;
}

/* ---- log capture ---------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_lines, log_leaks;

static void capture(rs_log_level level, const char *message, void *userdata)
{
    pthread_mutex_lock(&log_lock);
    log_lines++;
    if (strstr(message, PASSWORD)) {
        log_leaks++;
        fprintf(stderr, "password in a log line: %s\n", message);
    }
    pthread_mutex_unlock(&log_lock);
}

int main(void)
{
    int port = t_start_server(NULL);
    rs_error err = {0};
    rs_metrics_snapshot *m = calloc(1, sizeof *m);

    /* ---- exact counts ------------------------------------------------ */
    rs_config *cfg = config_for(port, NULL);
    rs_store *store = rs_store_open(cfg, &err);
    CHECK(store != NULL);
    rs_store_metrics(store, m);
    CHECK(m->enabled == 1);
    CHECK(m->ops[RS_METRICS_OTHER].count == 1);          /* the PING of open */
    rs_store_metrics_reset(store);
    rs_store_metrics(store, m);
    for (int op = 0; op < RS_METRICS_OPS; op++) CHECK(m->ops[op].count == 0);

    for (int i = 0; i < 5; i++) CHECK(rs_save_raw(store, "a", 1, "x", 1, RS_TTL_DEFAULT, &err) == 0);
    char *out = NULL;
    size_t len;
    for (int i = 0; i < 7; i++) {
        CHECK(rs_get_raw(store, i < 3 ? "a" : "b", 1, &out, &len, &err) == (i < 3));
        rs_free(out);
        out = NULL;
    }
    CHECK(rs_delete(store, "a", 1, &err) == 1);
    CHECK(rs_delete(store, "a", 1, &err) == 0);
    CHECK(rs_lock_acquire(store, "rigatoni:lock:m", "me", 10, &err) == 1);
    CHECK(rs_lock_is_locked(store, "rigatoni:lock:m", &err) == 1);
    CHECK(rs_ping(store, &err) == 0);
    rs_store_metrics(store, m);
    CHECK(m->ops[RS_METRICS_SAVE].count == 5);
    CHECK(m->ops[RS_METRICS_GET].count == 7);
    CHECK(m->ops[RS_METRICS_DELETE].count == 2);
    CHECK(m->ops[RS_METRICS_LOCK].count == 2);
    CHECK(m->ops[RS_METRICS_OTHER].count == 1);
    CHECK(m->ops[RS_METRICS_LIST].count == 0);
    for (int op = 0; op < RS_METRICS_OPS; op++) {
        const rs_op_metrics *o = &m->ops[op];
        CHECK(o->count == sum_buckets(o));
        CHECK(o->failed == 0 && o->retries == 0);
        CHECK(o->p50 <= o->p95 && o->p95 <= o->p99 && o->p99 <= o->max_seconds);
        CHECK(o->count == 0 || (o->max_seconds > 0 && o->sum_seconds >= o->max_seconds));
        CHECK(o->count == 0 || o->p50 > 0);
    }

    /* ---- errors by kind, retries ------------------------------------- */
    /* A transient reply is retried max_retries (3) times: 3 retries, 1 error. */
    t_eval_error(store, "return redis.error_reply('LOADING Redis is loading')");
    /* A deterministic one is not retried. */
    t_eval_error(store, "return redis.error_reply('WRONGTYPE wrong kind of value')");
    rs_store_metrics(store, m);
    CHECK(m->ops[RS_METRICS_OTHER].count == 3);
    CHECK(m->ops[RS_METRICS_OTHER].errors[RS_ERR_SERVER] == 2);
    CHECK(m->ops[RS_METRICS_OTHER].failed == 2);
    CHECK(m->ops[RS_METRICS_OTHER].retries == 3);

    /* A connection killed under the pool: the call succeeds on its retry. */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d CLIENT KILL TYPE normal SKIPME yes >/dev/null", port);
    CHECK(system(cmd) == 0);
    CHECK(rs_get_raw(store, "zz", 2, &out, &len, &err) == 0);
    rs_store_metrics(store, m);
    CHECK(m->ops[RS_METRICS_GET].count == 8);
    CHECK(m->ops[RS_METRICS_GET].retries == 1);
    CHECK(m->ops[RS_METRICS_GET].failed == 0);
    CHECK(m->pool.closed_broken == 1);
    CHECK(m->pool.created == 1);

    /* ---- histogram: known durations ----------------------------------- */
    rs_store_metrics_reset(store);
    rs_metrics_call now = rs_metrics_begin();
    for (int i = 0; i < 100; i++) {
        rs_metrics_call c = now;
        /* 90 calls of ~1.5 ms, 9 of ~100 ms, 1 of ~100 s (past the last bound) */
        uint64_t ns = i < 90 ? 1500000u : i < 99 ? 100000000u : 100000000000u;
        c.start_ns -= ns;
        rs_metrics_end(&store->metrics, RS_OP_LOCK, c, i == 99 ? RS_ERR_TIMEOUT : RS_OK);
    }
    rs_store_metrics(store, m);
    const rs_op_metrics *lk = &m->ops[RS_METRICS_LOCK];
    CHECK(lk->count == 100 && lk->failed == 1 && lk->errors[RS_ERR_TIMEOUT] == 1);
    CHECK(lk->buckets[11] == 90);                        /* (1.024 ms, 2.048 ms] */
    CHECK(lk->buckets[17] == 9);                         /* (65.5 ms, 131 ms] */
    CHECK(lk->buckets[RS_METRICS_BUCKETS - 1] == 1);     /* +Inf */
    CHECK(lk->p50 > 0.001024 && lk->p50 <= 0.002048);
    CHECK(lk->p95 > 0.065536 && lk->p95 <= 0.131072);
    CHECK(lk->p99 > 0.065536 && lk->p99 <= 0.131072);
    CHECK(lk->max_seconds >= 100.0 && lk->max_seconds < 101.0);
    CHECK(fabs(rs_metrics_bucket_bound(0) - 1e-6) < 1e-15);
    CHECK(rs_metrics_bucket_bound(26) > 67 && rs_metrics_bucket_bound(26) < 68);
    CHECK(isinf(rs_metrics_bucket_bound(RS_METRICS_BUCKETS - 1)));
    CHECK_STR(rs_metrics_op_name(RS_METRICS_DELETE), "delete");

    /* ---- cluster counters ---------------------------------------------- */
    rs_metrics_count(&store->metrics, RS_METRIC_MOVED);
    rs_metrics_count(&store->metrics, RS_METRIC_MOVED);
    rs_metrics_count(&store->metrics, RS_METRIC_ASK);
    rs_metrics_count(&store->metrics, RS_METRIC_REFRESH);
    rs_store_metrics(store, m);
    CHECK(m->cluster_moved == 2 && m->cluster_ask == 1 && m->cluster_refreshes == 1);

    /* ---- Prometheus text ----------------------------------------------- */
    char *text = rs_metrics_prometheus(m);
    CHECK(text != NULL);
    CHECK(strstr(text, "# TYPE rigatoni_store_operation_duration_seconds histogram\n") != NULL);
    CHECK(strstr(text, "rigatoni_store_operation_duration_seconds_bucket{op=\"lock\",le=\"0.002048\"} 90\n") != NULL);
    CHECK(strstr(text, "rigatoni_store_operation_duration_seconds_bucket{op=\"lock\",le=\"+Inf\"} 100\n") != NULL);
    CHECK(strstr(text, "rigatoni_store_operation_duration_seconds_count{op=\"lock\"} 100\n") != NULL);
    CHECK(strstr(text, "rigatoni_store_operation_errors_total{op=\"lock\",kind=\"timeout\"} 1\n") != NULL);
    CHECK(strstr(text, "rigatoni_store_cluster_redirections_total{type=\"moved\"} 2\n") != NULL);
    int lines = 0;
    for (char *p = text; *p; p++) lines += *p == '\n';
    CHECK(lines > 200);
    CHECK(text[strlen(text) - 1] == '\n');
    rs_free(text);

    /* ---- reset: counters zero, gauges kept ------------------------------ */
    rs_store_metrics_reset(store);
    rs_store_metrics(store, m);
    CHECK(m->ops[RS_METRICS_LOCK].count == 0 && m->ops[RS_METRICS_LOCK].max_seconds == 0);
    CHECK(m->cluster_moved == 0 && m->pool.created == 0 && m->pool.closed_broken == 0);
    CHECK(m->pool.open == 1 && m->pool.idle == 1 && m->pool.size == 10);

    /* ---- pool exhausted: wait timeout counted, error kind pool ---------- */
    rs_store_close(store);
    rs_config_set(cfg, "pool_size", "1", NULL);
    rs_config_set(cfg, "connection_timeout", "100ms", NULL);
    store = rs_store_open(cfg, &err);
    CHECK(store != NULL);
    rs_conn *held = rs_pool_acquire(store->pool, &err);
    CHECK(held != NULL);
    CHECK(rs_get_raw(store, "a", 1, &out, &len, &err) == -1 && err.kind == RS_ERR_POOL);
    rs_pool_release(store->pool, held, 0);
    rs_store_metrics(store, m);
    CHECK(m->ops[RS_METRICS_GET].errors[RS_ERR_POOL] == 1);
    CHECK(m->pool.waits == 1 && m->pool.wait_timeouts == 1);
    CHECK(m->pool.wait_seconds >= 0.09 && m->pool.wait_seconds < 2);
    rs_store_close(store);

    /* ---- contention: 8 threads on pool_size 1 --------------------------- */
    rs_config_set(cfg, "connection_timeout", "10s", NULL);
    shared = rs_store_open(cfg, &err);
    CHECK(shared != NULL);
    rs_store_metrics_reset(shared);
    pthread_t tids[THREADS], rt;
    pthread_create(&rt, NULL, reader, NULL);
    for (long i = 0; i < THREADS; i++) pthread_create(&tids[i], NULL, hammer, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(tids[i], NULL);
    atomic_store(&stop_reader, 1);
    pthread_join(rt, NULL);
    CHECK(thread_failures == 0);
    rs_store_metrics(shared, m);
    CHECK(m->ops[RS_METRICS_SAVE].count == THREADS * PER_THREAD);
    CHECK(m->ops[RS_METRICS_GET].count == THREADS * PER_THREAD);
    CHECK(m->ops[RS_METRICS_SAVE].failed == 0 && m->ops[RS_METRICS_GET].failed == 0);
    CHECK(m->pool.waits > 0);
    CHECK(m->pool.wait_seconds > 0);
    CHECK(m->pool.wait_timeouts == 0);
    CHECK(m->pool.created == 0 && m->pool.open == 1);   /* opened before the reset */
    rs_store_close(shared);
    rs_config_free(cfg);

    /* ---- logs at debug: no password, ever ------------------------------- */
    snprintf(cmd, sizeof cmd, "redis-cli -p %d CONFIG SET requirepass %s >/dev/null", port,
             PASSWORD);
    CHECK(system(cmd) == 0);
    rs_log_set_level(RS_LOG_DEBUG);
    cfg = config_for(port, PASSWORD);
    rs_config_set_log_handler(cfg, capture, NULL);
    store = rs_store_open(cfg, &err);
    CHECK(store != NULL);
    snprintf(cmd, sizeof cmd,
             "REDISCLI_AUTH=%s redis-cli -p %d CLIENT KILL TYPE normal SKIPME yes >/dev/null",
             PASSWORD, port);
    CHECK(system(cmd) == 0);
    CHECK(rs_save_raw(store, "p", 1, "v", 1, RS_TTL_DEFAULT, &err) == 0);   /* retried */
    rs_store_close(store);
    rs_config_free(cfg);
    cfg = config_for(port, "wrong-" PASSWORD);
    rs_config_set_log_handler(cfg, capture, NULL);
    CHECK(rs_store_open(cfg, &err) == NULL && err.kind == RS_ERR_AUTH);
    CHECK(strstr(err.message, PASSWORD) == NULL);
    rs_config_free(cfg);
    t_stop_server();
    cfg = config_for(port, PASSWORD);
    rs_config_set_log_handler(cfg, capture, NULL);
    rs_config_set(cfg, "max_retries", "1", NULL);
    CHECK(rs_store_open(cfg, &err) == NULL && err.kind == RS_ERR_CONNECTION);
    rs_config_free(cfg);
    rs_log_set_level(RS_LOG_WARN);
    CHECK(log_lines >= 3);   /* connected, connection lost, retrying ... */
    CHECK(log_leaks == 0);

    free(m);
    return t_report("test_metrics");
}
