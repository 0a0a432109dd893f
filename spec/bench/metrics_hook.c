/* SPDX-License-Identifier: MIT */
/* metrics_hook.c -- what recording one call costs, without any I/O: the
 * rs_metrics_begin/rs_metrics_end pair that rs_exec runs around every
 * call, timed over many iterations from THREADS threads at once (all on
 * the same operation kind: the worst case for cache-line sharing).
 *
 *   metrics_hook PORT THREADS ITERATIONS
 *   -> "hook_ns <nanoseconds per recorded call, per thread>"
 *
 * Needs a server only to open a real store. Built against the core's
 * internal header (spec/bench/metrics_bench.sh).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "store_state.h"

static rs_store *store;
static long iterations;
static pthread_barrier_t start;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    double *took = arg;
    pthread_barrier_wait(&start);
    double t0 = now();
    for (long i = 0; i < iterations; i++) {
        rs_metrics_call call = rs_metrics_begin();
        rs_metrics_end(&store->metrics, RS_OP_GET, call, RS_OK);
    }
    *took = now() - t0;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: metrics_hook PORT THREADS ITERATIONS\n");
        return 2;
    }
    int threads = atoi(argv[2]);
    iterations = atol(argv[3]);
    if (threads < 1 || threads > 256 || iterations < 1) return 2;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%s", argv[1]);
    rs_error err;
    rs_config *cfg = rs_config_new();
    rs_config_set(cfg, "url", url, &err);
    store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    if (!store) {
        fprintf(stderr, "metrics_hook: %s\n", err.message);
        return 1;
    }
    pthread_t tids[256];
    double took[256];
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, run, &took[i]);
    double worst = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        if (took[i] > worst) worst = took[i];
    }
    rs_metrics_snapshot m;
    rs_store_metrics(store, &m);
    rs_store_close(store);
    if (m.enabled && m.ops[RS_METRICS_GET].count != (uint64_t)threads * (uint64_t)iterations) {
        fprintf(stderr, "metrics_hook: lost counts\n");
        return 1;
    }
    printf("hook_ns %.1f\n", worst / (double)iterations * 1e9);
    return 0;
}
