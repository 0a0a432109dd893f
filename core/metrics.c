/* SPDX-License-Identifier: MIT */
/* metrics.c -- what a store has done: calls, errors, retries, latencies.
 *
 * Every call through rs_exec is recorded once, under its operation kind
 * (save, get, delete, list, lock, other): its duration, how many attempts
 * it took and the kind of its final error. The hot path takes no lock:
 * each counter is a C11 atomic updated with relaxed ordering, one
 * fetch_add per latency bucket and one for the sum, a compare-and-swap for
 * the maximum only when a call is slower than every one before it. A
 * snapshot reads the counters one by one, so under load it may be a few
 * calls out of step between fields (never torn within one field); the
 * count of a histogram is the sum of its buckets, so a snapshot's
 * histogram always adds up.
 *
 * Latency buckets are fixed and log-scale: bucket k holds calls that took
 * at most 1 µs · 2^k (k = 0..26, the last bound about 67 s), and one more
 * bucket catches anything slower. Percentiles are estimated from them by
 * linear interpolation inside the bucket the rank falls into (as
 * Prometheus' histogram_quantile does), capped at the maximum seen, so
 * their error is at most the width of one bucket (a factor of two).
 *
 * Retries are counted where the attempt loops decide to retry (rs_note_retry,
 * a thread-local tally) and added to the call when it ends, so the cluster
 * loop and the standalone loop report them the same way.
 *
 * Pool counters live in the pool (under its mutex, off the hot path);
 * a reset here remembers their values and later snapshots subtract them.
 * The counters sit zeroed inside struct rs_store (calloc), so a store
 * needs no set-up call. With -DRS_NO_METRICS the hooks compile to nothing
 * and snapshots report `enabled = 0` and only the pool.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdatomic.h>

#include "metrics.h"
#include "log.h"

_Static_assert((int)RS_OP_COUNT == (int)RS_METRICS_OPS, "operation kinds of the public header");
_Static_assert(RS_METRICS_BUCKETS == RS_METRICS_FINITE_BUCKETS + 1, "one overflow bucket");

#define RELAXED memory_order_relaxed

static const char *const op_names[RS_METRICS_OPS] = {"save", "get",  "delete",
                                                     "list", "lock", "other"};

const char *rs_metrics_op_name(int op)
{
    return op >= 0 && op < RS_METRICS_OPS ? op_names[op] : "unknown";
}

double rs_metrics_bucket_bound(int bucket)
{
    if (bucket < 0) return 0;
    if (bucket >= RS_METRICS_FINITE_BUCKETS) return INFINITY;
    return ldexp(1e-6, bucket);
}

/* ---------------------------------------------------------------------
 * Recording (hot path)
 * ------------------------------------------------------------------ */

/* Retries decided on this thread since it started; rs_exec takes the
 * difference across a call. */
#ifndef RS_NO_METRICS
static _Thread_local unsigned long retries_here;
#endif

void rs_note_retry(const rs_config *cfg, const char *what, int attempt, int max_attempts, const rs_error *last,
                   double delay)
{
#ifndef RS_NO_METRICS
    retries_here++;
#endif
    rs_log(cfg, RS_LOG_INFO, "%s: attempt %d of %d failed (%s: %s); retrying in %.0f ms", what,
           attempt, max_attempts, rs_error_kind_name(last->kind), last->message, delay * 1000);
}

void rs_note_retry_cancelled(const rs_config *cfg, const char *what)
{
#ifndef RS_NO_METRICS
    retries_here--;
#endif
    rs_log(cfg, RS_LOG_INFO, "%s: retry cancelled: the store is closing", what);
}

#ifndef RS_NO_METRICS

rs_metrics_call rs_metrics_begin(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (rs_metrics_call){(uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
                             retries_here};
}

/* Bucket of a duration: the smallest k with ns <= 1000 * 2^k. */
static int bucket_of(uint64_t ns)
{
    if (ns <= 1000) return 0;
    uint64_t us = (ns - 1) / 1000;               /* >= 1 */
    int k = 64 - __builtin_clzll(us);            /* bit length */
    return k < RS_METRICS_FINITE_BUCKETS ? k : RS_METRICS_FINITE_BUCKETS;
}

void rs_metrics_end(rs_metrics *m, rs_op op, rs_metrics_call call, rs_error_kind kind)
{
    rs_metrics_call now = rs_metrics_begin();
    uint64_t ns = now.start_ns > call.start_ns ? now.start_ns - call.start_ns : 0;
    rs_op_counters *c = &m->ops[(unsigned)op < RS_OP_COUNT ? op : RS_OP_OTHER];
    atomic_fetch_add_explicit(&c->buckets[bucket_of(ns)], 1, RELAXED);
    atomic_fetch_add_explicit(&c->sum_ns, ns, RELAXED);
    uint64_t max = atomic_load_explicit(&c->max_ns, RELAXED);
    while (ns > max && !atomic_compare_exchange_weak_explicit(&c->max_ns, &max, ns, RELAXED,
                                                              RELAXED)) {
    }
    unsigned long retries = now.retries - call.retries;
    if (retries) atomic_fetch_add_explicit(&c->retries, retries, RELAXED);
    if (kind != RS_OK && (unsigned)kind < RS_METRICS_ERROR_KINDS)
        atomic_fetch_add_explicit(&c->errors[kind], 1, RELAXED);
}

void rs_metrics_count(rs_metrics *m, rs_metric_counter which)
{
    if ((unsigned)which < RS_METRIC_COUNTERS)
        atomic_fetch_add_explicit(&m->counters[which], 1, RELAXED);
}

void rs_metrics_locks_held(rs_metrics *m, int delta)
{
    _Atomic int64_t *held = &m->locks_held;
    int64_t now = atomic_load_explicit(held, RELAXED);
    while (!atomic_compare_exchange_weak_explicit(held, &now, now + delta > 0 ? now + delta : 0,
                                                  RELAXED, RELAXED)) {}
}

#endif /* RS_NO_METRICS */

/* ---------------------------------------------------------------------
 * Snapshots
 * ------------------------------------------------------------------ */

/* The value below which a fraction q of the calls fall, estimated from
 * the buckets; 0 without calls. */
static inline double quantile(const uint64_t *buckets, uint64_t count, double q, double max)
{
    if (count == 0) return 0;
    double rank = q * (double)count;
    uint64_t below = 0;
    for (int k = 0; k < RS_METRICS_BUCKETS; k++) {
        if (buckets[k] == 0) continue;
        if ((double)(below + buckets[k]) >= rank) {
            double lo = rs_metrics_bucket_bound(k - 1);
            double hi = k < RS_METRICS_FINITE_BUCKETS ? rs_metrics_bucket_bound(k) : max;
            if (hi > max) hi = max;
            if (lo > hi) lo = hi;
            return lo + (hi - lo) * ((rank - (double)below) / (double)buckets[k]);
        }
        below += buckets[k];
    }
    return max;
}

void rs_metrics_snapshot_of(rs_metrics *m, const rs_pool_stats *pool, rs_metrics_snapshot *out)
{
    memset(out, 0, sizeof *out);
#ifndef RS_NO_METRICS
    out->enabled = 1;
    for (int op = 0; op < RS_METRICS_OPS; op++) {
        rs_op_counters *c = &m->ops[op];
        rs_op_metrics *o = &out->ops[op];
        for (int k = 0; k < RS_METRICS_BUCKETS; k++) {
            o->buckets[k] = atomic_load_explicit(&c->buckets[k], RELAXED);
            o->count += o->buckets[k];
        }
        for (int e = 1; e < RS_METRICS_ERROR_KINDS; e++) {
            o->errors[e] = atomic_load_explicit(&c->errors[e], RELAXED);
            o->failed += o->errors[e];
        }
        o->retries = atomic_load_explicit(&c->retries, RELAXED);
        o->sum_seconds = (double)atomic_load_explicit(&c->sum_ns, RELAXED) / 1e9;
        o->max_seconds = (double)atomic_load_explicit(&c->max_ns, RELAXED) / 1e9;
        o->p50 = quantile(o->buckets, o->count, 0.50, o->max_seconds);
        o->p95 = quantile(o->buckets, o->count, 0.95, o->max_seconds);
        o->p99 = quantile(o->buckets, o->count, 0.99, o->max_seconds);
    }
    out->cluster_moved = atomic_load_explicit(&m->counters[RS_METRIC_MOVED], RELAXED);
    out->cluster_ask = atomic_load_explicit(&m->counters[RS_METRIC_ASK], RELAXED);
    out->cluster_refreshes = atomic_load_explicit(&m->counters[RS_METRIC_REFRESH], RELAXED);
    out->locks.held = (uint64_t)atomic_load_explicit(&m->locks_held, RELAXED);
    out->locks.acquisitions = atomic_load_explicit(&m->counters[RS_METRIC_LOCK_ACQUIRED], RELAXED);
    out->locks.failures_already_held =
        atomic_load_explicit(&m->counters[RS_METRIC_LOCK_ALREADY_HELD], RELAXED);
    out->locks.failures_error = atomic_load_explicit(&m->counters[RS_METRIC_LOCK_ERROR], RELAXED);
    out->locks.lost = atomic_load_explicit(&m->counters[RS_METRIC_LOCK_LOST], RELAXED);
    out->locks.refreshes = atomic_load_explicit(&m->counters[RS_METRIC_LOCK_REFRESHED], RELAXED);
    out->locks.released = atomic_load_explicit(&m->counters[RS_METRIC_LOCK_RELEASED], RELAXED);
#endif
    /* Pool: gauges as they are, counters since the last reset. */
    out->pool = *pool;
    rs_pool_stats *p = &out->pool;
#define SINCE(field, idx)                                                           \
    do {                                                                            \
        uint64_t b_ = atomic_load_explicit(&m->base[idx], RELAXED);                 \
        p->field = p->field > b_ ? p->field - b_ : 0;                               \
    } while (0)
    SINCE(created, RS_BASE_CREATED);
    SINCE(closed_broken, RS_BASE_CLOSED_BROKEN);
    SINCE(closed_idle, RS_BASE_CLOSED_IDLE);
    SINCE(waits, RS_BASE_WAITS);
    SINCE(wait_timeouts, RS_BASE_WAIT_TIMEOUTS);
    SINCE(failovers, RS_BASE_FAILOVERS);
#undef SINCE
    double wait_base = (double)atomic_load_explicit(&m->base[RS_BASE_WAIT_NS], RELAXED) / 1e9;
    p->wait_seconds = p->wait_seconds > wait_base ? p->wait_seconds - wait_base : 0;
    out->failovers = p->failovers;
}

void rs_metrics_reset_to(rs_metrics *m, const rs_pool_stats *pool)
{
    for (int op = 0; op < RS_METRICS_OPS; op++) {
        rs_op_counters *c = &m->ops[op];
        for (int k = 0; k < RS_METRICS_BUCKETS; k++) atomic_store_explicit(&c->buckets[k], 0, RELAXED);
        for (int e = 0; e < RS_METRICS_ERROR_KINDS; e++) atomic_store_explicit(&c->errors[e], 0, RELAXED);
        atomic_store_explicit(&c->retries, 0, RELAXED);
        atomic_store_explicit(&c->sum_ns, 0, RELAXED);
        atomic_store_explicit(&c->max_ns, 0, RELAXED);
    }
    for (int i = 0; i < RS_METRIC_COUNTERS; i++) atomic_store_explicit(&m->counters[i], 0, RELAXED);
    const rs_pool_stats p = *pool;
    atomic_store_explicit(&m->base[RS_BASE_CREATED], p.created, RELAXED);
    atomic_store_explicit(&m->base[RS_BASE_CLOSED_BROKEN], p.closed_broken, RELAXED);
    atomic_store_explicit(&m->base[RS_BASE_CLOSED_IDLE], p.closed_idle, RELAXED);
    atomic_store_explicit(&m->base[RS_BASE_WAITS], p.waits, RELAXED);
    atomic_store_explicit(&m->base[RS_BASE_WAIT_TIMEOUTS], p.wait_timeouts, RELAXED);
    atomic_store_explicit(&m->base[RS_BASE_FAILOVERS], p.failovers, RELAXED);
    atomic_store_explicit(&m->base[RS_BASE_WAIT_NS], (uint64_t)llround(p.wait_seconds * 1e9),
                          RELAXED);
}

/* ---------------------------------------------------------------------
 * Prometheus text exposition format (version 0.0.4)
 * ------------------------------------------------------------------ */

typedef struct text {
    char *buf;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...) RS_FMT(2, 3);

static void put(text *t, const char *fmt, ...)
{
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 1;
        char *grown = realloc(t->buf, cap);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->buf = grown;
        t->cap = cap;
    }
}

#define P "rigatoni_store_"

static void family(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP " P "%s %s\n# TYPE " P "%s %s\n", name, help, name, type);
}

/* One sample family under Rigatoni's own name (rigatoni_..., no prefix). */
static void upstream(text *t, const char *name, const char *type, const char *help,
                     uint64_t value)
{
    put(t, "# HELP rigatoni_%s %s\n# TYPE rigatoni_%s %s\nrigatoni_%s %llu\n", name, help, name,
        type, name, (unsigned long long)value);
}

char *rs_metrics_prometheus(const rs_metrics_snapshot *s)
{
    text t = {malloc(16384), 0, 16384, 0};
    if (!t.buf) return NULL;
    t.buf[0] = '\0';

    family(&t, "metrics_enabled", "gauge",
           "1 when the library records operation metrics (0: built with RS_NO_METRICS).");
    put(&t, P "metrics_enabled %d\n", s->enabled ? 1 : 0);

    family(&t, "operations_total", "counter", "Store calls finished, by operation kind.");
    for (int op = 0; op < RS_METRICS_OPS; op++)
        put(&t, P "operations_total{op=\"%s\"} %llu\n", op_names[op],
            (unsigned long long)s->ops[op].count);

    family(&t, "operation_errors_total", "counter",
           "Store calls that failed, by operation kind and error kind.");
    for (int op = 0; op < RS_METRICS_OPS; op++)
        for (int e = 1; e < RS_METRICS_ERROR_KINDS; e++)
            put(&t, P "operation_errors_total{op=\"%s\",kind=\"%s\"} %llu\n", op_names[op],
                rs_error_kind_name((rs_error_kind)e), (unsigned long long)s->ops[op].errors[e]);

    family(&t, "operation_retries_total", "counter",
           "Attempts beyond the first, by operation kind.");
    for (int op = 0; op < RS_METRICS_OPS; op++)
        put(&t, P "operation_retries_total{op=\"%s\"} %llu\n", op_names[op],
            (unsigned long long)s->ops[op].retries);

    family(&t, "operation_duration_seconds", "histogram",
           "Duration of store calls, retries and waits included, by operation kind.");
    for (int op = 0; op < RS_METRICS_OPS; op++) {
        const rs_op_metrics *o = &s->ops[op];
        uint64_t cumulative = 0;
        for (int k = 0; k < RS_METRICS_BUCKETS; k++) {
            cumulative += o->buckets[k];
            if (k < RS_METRICS_FINITE_BUCKETS)
                put(&t, P "operation_duration_seconds_bucket{op=\"%s\",le=\"%.9g\"} %llu\n",
                    op_names[op], rs_metrics_bucket_bound(k), (unsigned long long)cumulative);
            else
                put(&t, P "operation_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %llu\n",
                    op_names[op], (unsigned long long)cumulative);
        }
        put(&t, P "operation_duration_seconds_sum{op=\"%s\"} %.9g\n", op_names[op],
            o->sum_seconds);
        put(&t, P "operation_duration_seconds_count{op=\"%s\"} %llu\n", op_names[op],
            (unsigned long long)o->count);
    }

    const rs_pool_stats *p = &s->pool;
    family(&t, "pool_size", "gauge", "Connections the pool may open (pool_size).");
    put(&t, P "pool_size %d\n", p->size);
    family(&t, "pool_connections", "gauge", "Pooled connections open now, by state.");
    put(&t, P "pool_connections{state=\"in_use\"} %d\n", p->in_use);
    put(&t, P "pool_connections{state=\"idle\"} %d\n", p->idle);
    family(&t, "pool_connections_created_total", "counter", "Connections opened.");
    put(&t, P "pool_connections_created_total %llu\n", (unsigned long long)p->created);
    family(&t, "pool_connections_closed_total", "counter",
           "Connections closed: broken (an error) or idle (failed the PING before reuse).");
    put(&t, P "pool_connections_closed_total{reason=\"broken\"} %llu\n",
        (unsigned long long)p->closed_broken);
    put(&t, P "pool_connections_closed_total{reason=\"idle\"} %llu\n",
        (unsigned long long)p->closed_idle);
    family(&t, "pool_waits_total", "counter", "Acquisitions that waited for a free connection.");
    put(&t, P "pool_waits_total %llu\n", (unsigned long long)p->waits);
    family(&t, "pool_wait_timeouts_total", "counter",
           "Acquisitions that found no free connection within connection_timeout.");
    put(&t, P "pool_wait_timeouts_total %llu\n", (unsigned long long)p->wait_timeouts);
    family(&t, "pool_wait_seconds_total", "counter", "Time spent waiting for a free connection.");
    put(&t, P "pool_wait_seconds_total %.9g\n", p->wait_seconds);

    family(&t, "sentinel_failovers_total", "counter",
           "Times the master named by the sentinels moved to another address.");
    put(&t, P "sentinel_failovers_total %llu\n", (unsigned long long)s->failovers);
    family(&t, "cluster_redirections_total", "counter",
           "Cluster redirections followed, by type (MOVED or ASK).");
    put(&t, P "cluster_redirections_total{type=\"moved\"} %llu\n",
        (unsigned long long)s->cluster_moved);
    put(&t, P "cluster_redirections_total{type=\"ask\"} %llu\n",
        (unsigned long long)s->cluster_ask);
    family(&t, "cluster_slot_map_refreshes_total", "counter", "Cluster slot map refreshes.");
    put(&t, P "cluster_slot_map_refreshes_total %llu\n",
        (unsigned long long)s->cluster_refreshes);

    /* Rigatoni 0.2's lock metrics, under its names and types, so its
     * dashboards and lock-lost alert work unchanged. */
    const rs_lock_metrics *l = &s->locks;
    upstream(&t, "locks_held_total", "gauge", "Locks held by this instance now.", l->held);
    upstream(&t, "lock_acquisitions_total", "counter", "Locks acquired.", l->acquisitions);
    put(&t, "# HELP rigatoni_lock_acquisition_failures_total Lock acquisitions that failed, by "
            "reason.\n# TYPE rigatoni_lock_acquisition_failures_total counter\n"
            "rigatoni_lock_acquisition_failures_total{reason=\"already_held\"} %llu\n"
            "rigatoni_lock_acquisition_failures_total{reason=\"error\"} %llu\n",
        (unsigned long long)l->failures_already_held, (unsigned long long)l->failures_error);
    upstream(&t, "locks_lost_total", "counter",
             "Locks found lost (taken or expired) by their holder.", l->lost);
    upstream(&t, "lock_refreshes_total", "counter", "Lock refreshes that succeeded.",
             l->refreshes);
    upstream(&t, "locks_released_total", "counter", "Locks released by their holder.",
             l->released);

    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
