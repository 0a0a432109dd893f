/* SPDX-License-Identifier: MIT */
/* metrics.h -- per-store counters, lock free (metrics.c): each call's
 * latency and outcome, events, the pool figures' base.
 */
#ifndef RS_METRICS_H
#define RS_METRICS_H

#include <stdint.h>

#include "op.h"
#include "rigatoni_store.h"

#define RS_METRICS_FINITE_BUCKETS (RS_METRICS_BUCKETS - 1)

typedef struct rs_op_counters {
    _Atomic uint64_t buckets[RS_METRICS_BUCKETS];
    _Atomic uint64_t errors[RS_METRICS_ERROR_KINDS];
    _Atomic uint64_t retries, sum_ns, max_ns;
} rs_op_counters;

/* Events counted with rs_metrics_count (cluster.c). */
typedef enum rs_metric_counter {
    RS_METRIC_MOVED,         /* a MOVED redirection followed */
    RS_METRIC_ASK,           /* an ASK redirection followed */
    RS_METRIC_REFRESH,       /* the slot map reloaded */
    /* Locks, under Rigatoni 0.2's own metric names (lock.c): */
    RS_METRIC_LOCK_ACQUIRED,     /* rigatoni_lock_acquisitions_total */
    RS_METRIC_LOCK_ALREADY_HELD, /* ..._acquisition_failures_total{reason="already_held"} */
    RS_METRIC_LOCK_ERROR,        /* ..._acquisition_failures_total{reason="error"} */
    RS_METRIC_LOCK_LOST,         /* rigatoni_locks_lost_total */
    RS_METRIC_LOCK_REFRESHED,    /* rigatoni_lock_refreshes_total */
    RS_METRIC_LOCK_RELEASED,     /* rigatoni_locks_released_total */
    RS_METRIC_COUNTERS
} rs_metric_counter;

/* Pool counters as they were at the last reset. */
enum { RS_BASE_CREATED, RS_BASE_CLOSED_BROKEN, RS_BASE_CLOSED_IDLE, RS_BASE_WAITS,
       RS_BASE_WAIT_TIMEOUTS, RS_BASE_FAILOVERS, RS_BASE_WAIT_NS, RS_BASE_COUNT };

typedef struct rs_metrics {
    rs_op_counters ops[RS_OP_COUNT];
    _Atomic uint64_t counters[RS_METRIC_COUNTERS];
    _Atomic int64_t locks_held;   /* gauge: acquired, not yet released or lost */
    _Atomic uint64_t base[RS_BASE_COUNT];
} rs_metrics;

/* A call in progress: rs_metrics_begin() when it starts, rs_metrics_end()
 * with its final error kind (RS_OK on success) when it ends. */
typedef struct rs_metrics_call {
    uint64_t start_ns;
    unsigned long retries;
} rs_metrics_call;

#ifdef RS_NO_METRICS
static inline rs_metrics_call rs_metrics_begin(void) { return (rs_metrics_call){0, 0}; }
static inline void rs_metrics_end(rs_metrics *m, rs_op op, rs_metrics_call call,
                                  rs_error_kind kind) {}
static inline void rs_metrics_count(rs_metrics *m, rs_metric_counter which) {}
static inline void rs_metrics_locks_held(rs_metrics *m, int delta) {}
#else
rs_metrics_call rs_metrics_begin(void);
void rs_metrics_end(rs_metrics *m, rs_op op, rs_metrics_call call, rs_error_kind kind);
/* Counts one event (thread safe, lock free). */
void rs_metrics_count(rs_metrics *m, rs_metric_counter which);
/* Moves the locks-held gauge by delta (+1 acquired, -1 released or lost);
 * it never goes below 0 (a release of a lock another store acquired). */
void rs_metrics_locks_held(rs_metrics *m, int delta);
#endif
/* rs_store_metrics and rs_store_metrics_reset (store.c) with the pool
 * figures given: the counters of `m` as a snapshot, or set to zero with
 * the pool's counters as the new base. */
void rs_metrics_snapshot_of(rs_metrics *m, const rs_pool_stats *pool, rs_metrics_snapshot *out);
void rs_metrics_reset_to(rs_metrics *m, const rs_pool_stats *pool);
/* An attempt loop calls this right before sleeping `delay` seconds and
 * retrying: the retry is counted for the call in progress on this thread
 * and logged at info. */
void rs_note_retry(const rs_config *cfg, const char *what, int attempt, int max_attempts, const rs_error *last,
                   double delay);
/* The sleep after rs_note_retry was cut by the store's close and no retry
 * follows: the count is taken back, and that is logged at info. */
void rs_note_retry_cancelled(const rs_config *cfg, const char *what);

#endif /* RS_METRICS_H */
