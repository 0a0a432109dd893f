/* SPDX-License-Identifier: MIT */
/* store_state.h -- what an open store holds: its config, TLS context,
 * pool or cluster, failover thread, counters and running threads.
 * store.c opens and closes it; every layer reads it (the engine routes by
 * it, the metrics count into it), so it is a header of its own.
 */
#ifndef RS_STORE_STATE_H
#define RS_STORE_STATE_H

#include <pthread.h>

#include "metrics.h"
#include "rigatoni_store.h"

typedef struct rs_tls rs_tls;
typedef struct rs_pool rs_pool;
typedef struct rs_cluster rs_cluster;
typedef struct rs_failover rs_failover;
typedef struct rs_workers rs_workers;
typedef struct rs_closing rs_closing;

struct rs_store {
    rs_config *cfg;
    rs_tls *tls;                     /* rediss:// only */
    rs_pool *pool;                   /* NULL in cluster mode */
    rs_cluster *cluster;             /* cluster_mode only */
    rs_failover *failover;           /* Sentinel only: the +switch-master subscriber */
    rs_metrics metrics;              /* metrics.c; zeroed by calloc, no set-up */
    rs_workers *workers;             /* jobs.c: threads start with the first job */
    rs_closing *closing;             /* closing.c: set when rs_store_close begins */
    /* Threads still running on this store: a walk's read-ahead (scan.c;
     * a walk closed while one was on the wire leaves it to end by itself)
     * and save jobs (save_job.c). Closing the store waits for them. */
    pthread_mutex_t threads_lock;
    pthread_cond_t threads_done;
    int threads;
};

#endif /* RS_STORE_STATE_H */
