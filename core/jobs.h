/* SPDX-License-Identifier: MIT */
/* jobs.h -- the store's worker threads and their FIFO queue (jobs.c), as
 * rs_store_open and rs_store_close see them; the jobs themselves are
 * public (rigatoni_store.h).
 */
#ifndef RS_JOBS_H
#define RS_JOBS_H

#include "rigatoni_store.h"

typedef struct rs_workers rs_workers;

/* At most `max` workers for `store`, none started yet. NULL: no memory. */
rs_workers *rs_workers_new(rs_store *store, int max);
/* rs_store_close, in this order: rs_workers_stop (every queued job done
 * with "store closed before the job ran"; no job starts or is taken from
 * now on), (the walks' and save jobs' threads end), rs_closing_begin
 * (running jobs stop retrying), rs_workers_join (the running jobs have
 * returned, the workers ended), rs_workers_free. Each accepts NULL. */
void rs_workers_stop(rs_workers *w);
/* 1 when the workers were started by another process (this one is a fork
 * of it): stop, join and free then do nothing, and no job starts. */
int rs_workers_foreign(rs_workers *w);
/* 1 when the calling thread is one of these workers (a job's fn or a
 * free_arg run by a worker). */
int rs_workers_is_caller(rs_workers *w);
void rs_workers_join(rs_workers *w);
void rs_workers_free(rs_workers *w);

#endif /* RS_JOBS_H */
