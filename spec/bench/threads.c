/* SPDX-License-Identifier: MIT */
/* threads.c -- the C core from many threads: one rs_store, pool_size =
 * threads, every thread doing rs_save_raw (then, in a second phase,
 * rs_get_raw) on its own collection with a value of VALSIZE bytes. The
 * same shape of work as `redis-benchmark -c THREADS -t set,get -d VALSIZE`
 * (no pipelining). Each phase is timed from the moment all threads are
 * released until the last one finishes.
 *
 *   threads PORT THREADS TOTAL_OPS VALSIZE
 *   -> "set <ops/s>\nget <ops/s>\n"; exit 1 on any failed or wrong reply.
 *   BENCH_URL=redis://n1,n2,... BENCH_CLUSTER=1 target a cluster (PORT unused).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rigatoni_store.h"

enum { PHASE_SET, PHASE_GET };

typedef struct worker {
    pthread_t tid;
    rs_store *store;
    pthread_barrier_t *start;
    int phase;
    long ops;
    char coll[32];
    const char *value;
    size_t value_len;
    long failures;
    char first_error[sizeof ((rs_error *)0)->message];
} worker;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(worker *w, const char *msg)
{
    if (w->failures++ == 0) snprintf(w->first_error, sizeof w->first_error, "%s", msg);
}

static void *run(void *arg)
{
    worker *w = arg;
    size_t clen = strlen(w->coll);
    rs_error err;
    pthread_barrier_wait(w->start);
    for (long i = 0; i < w->ops; i++) {
        if (w->phase == PHASE_SET) {
            if (rs_save_raw(w->store, w->coll, clen, w->value, w->value_len, RS_TTL_DEFAULT, &err) < 0)
                fail(w, err.message);
        } else {
            char *out;
            size_t len;
            int rc = rs_get_raw(w->store, w->coll, clen, &out, &len, &err);
            if (rc < 0) fail(w, err.message);
            else if (rc == 0) fail(w, "token missing");
            else {
                if (len != w->value_len) fail(w, "wrong value length");
                rs_free(out);
            }
        }
    }
    return NULL;
}

/* Runs one phase on all workers; returns ops/s, or -1 on failure. */
static double phase(worker *ws, int n, int which, long total)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        ws[i].phase = which;
        ws[i].start = &start;
        ws[i].ops = total / n + (i < total % n);
        if (pthread_create(&ws[i].tid, NULL, run, &ws[i]) != 0) {
            fprintf(stderr, "threads: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&start);
    double t0 = now();
    for (int i = 0; i < n; i++) pthread_join(ws[i].tid, NULL);
    double t1 = now();
    pthread_barrier_destroy(&start);
    long failures = 0;
    for (int i = 0; i < n; i++) {
        if (ws[i].failures) {
            fprintf(stderr, "threads: worker %d: %ld failures, first: %s\n", i, ws[i].failures,
                    ws[i].first_error);
            failures += ws[i].failures;
        }
    }
    return failures ? -1 : (double)total / (t1 - t0);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: threads PORT THREADS TOTAL_OPS VALSIZE\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    long total = atol(argv[3]);
    size_t valsize = (size_t)atol(argv[4]);
    if ((port <= 0 && !getenv("BENCH_URL")) || n <= 0 || n > 1024 || total < n || valsize == 0) {
        fprintf(stderr, "threads: bad arguments\n");
        return 2;
    }

    /* BENCH_URL and BENCH_CLUSTER=1 point it at a cluster instead. */
    char url[4096], pool[16];
    const char *env_url = getenv("BENCH_URL"), *cluster = getenv("BENCH_CLUSTER");
    snprintf(url, sizeof url, "%s", env_url ? env_url : "");
    if (!env_url) snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    snprintf(pool, sizeof pool, "%d", n);
    rs_error err;
    rs_config *cfg = rs_config_new();
    if (!cfg || rs_config_set(cfg, "url", url, &err) < 0 ||
        rs_config_set(cfg, "cluster_mode", cluster && *cluster == '1' ? "true" : "false", &err) < 0 ||
        rs_config_set(cfg, "pool_size", pool, &err) < 0) {
        fprintf(stderr, "threads: config: %s\n", cfg ? err.message : "out of memory");
        return 1;
    }
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    if (!store) {
        fprintf(stderr, "threads: open: %s\n", err.message);
        return 1;
    }

    char *value = malloc(valsize);
    worker *ws = calloc((size_t)n, sizeof *ws);
    if (!value || !ws) return 1;
    memset(value, 'x', valsize);
    for (int i = 0; i < n; i++) {
        ws[i].store = store;
        ws[i].value = value;
        ws[i].value_len = valsize;
        snprintf(ws[i].coll, sizeof ws[i].coll, "bench_thread_%d", i);
    }

    /* Warm-up: opens every pooled connection and writes every key. */
    if (phase(ws, n, PHASE_SET, (long)n * 200) < 0) return 1;

    double set = phase(ws, n, PHASE_SET, total);
    double get = phase(ws, n, PHASE_GET, total);
    rs_pool_stats st;
    rs_store_pool_stats(store, &st);
    rs_store_close(store);
    free(ws);
    free(value);
    if (set < 0 || get < 0) return 1;
    printf("set %.1f\nget %.1f\n", set, get);
    fprintf(stderr, "threads: pool open %d created %llu waits %llu\n", st.open,
            (unsigned long long)st.created, (unsigned long long)st.waits);
    return 0;
}
