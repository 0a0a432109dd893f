/* SPDX-License-Identifier: MIT */
/* save_job.c -- rs_save_many (and its read-back) on a thread of its own.
 *
 * migrate waits on the target for most of its run: each batch is written
 * and read back while the source's next batches are already read ahead.
 * With the write on a thread, the caller builds the next batch (and
 * deletes the last one's sources) meanwhile. The job owns copies of what
 * it sends, so nothing points into the caller's memory (a Lua string may
 * be collected as soon as the call returns).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "store.h"

struct rs_save_job {
    rs_store *store;
    pthread_t thread;
    size_t n;
    int flags, read_back;
    rs_save_item *items;       /* their bytes and names point into copies */
    const char **names;
    size_t *lens;
    char *copies;
    int *written;
    rs_value *values;
    int rc;
    rs_error err;
};

static void job_free(rs_save_job *job)
{
    free(job->items);
    free(job->names);
    free(job->lens);
    free(job->copies);
    free(job->written);
    free(job->values);
    free(job);
}

static void *job_main(void *arg)
{
    rs_save_job *job = arg;
    rs_store *store = job->store;
    job->rc = rs_save_many(store, job->items, job->n, job->flags, job->written, &job->err);
    if (job->rc == 0 && job->read_back)
        job->rc = rs_get_many_values(store, job->names, job->lens, job->n, job->values, &job->err);
    rs_store_threads(store, -1);
    return NULL;
}

rs_save_job *rs_save_many_start(rs_store *store, const rs_save_item *items, size_t n,
                                int flags, int read_back, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += items[i].collection_len + items[i].len;
    size_t slots = n ? n : 1;
    rs_save_job *job = calloc(1, sizeof *job);
    if (job) {
        job->items = calloc(slots, sizeof *job->items);
        job->names = calloc(slots, sizeof *job->names);
        job->lens = calloc(slots, sizeof *job->lens);
        job->copies = malloc(total ? total : 1);
        job->written = calloc(slots, sizeof *job->written);
        job->values = calloc(slots, sizeof *job->values);
    }
    if (!job || !job->items || !job->names || !job->lens || !job->copies || !job->written ||
        !job->values) {
        if (job) job_free(job);
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    job->store = store;
    job->n = n;
    job->flags = flags;
    job->read_back = read_back;
    char *p = job->copies;
    for (size_t i = 0; i < n; i++) {
        job->items[i] = items[i];
        if (items[i].collection_len) memcpy(p, items[i].collection, items[i].collection_len);
        job->items[i].collection = job->names[i] = p;
        job->lens[i] = items[i].collection_len;
        p += items[i].collection_len;
        if (items[i].len) memcpy(p, items[i].bytes, items[i].len);
        job->items[i].bytes = p;
        p += items[i].len;
    }
    rs_store_threads(store, 1);
    if (pthread_create(&job->thread, NULL, job_main, job) != 0) {
        rs_store_threads(store, -1);
        job_free(job);
        rs_error_set(err, RS_ERR_NOMEM, 0, "cannot start a thread for save_many");
        return NULL;
    }
    return job;
}

int rs_save_many_finish(rs_save_job *job, int *written, rs_value *values, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    pthread_join(job->thread, NULL);
    int rc = job->rc;
    *err = job->err;
    if (rc == 0) {
        if (written) memcpy(written, job->written, job->n * sizeof *written);
        if (job->read_back && values) {
            memcpy(values, job->values, job->n * sizeof *values);
            memset(job->values, 0, job->n * sizeof *job->values);   /* now the caller's */
        }
    }
    if (job->read_back) rs_values_free(job->values, job->n);
    job_free(job);
    return rc;
}
