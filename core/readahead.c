/* SPDX-License-Identifier: MIT */
/* readahead.c -- two threads running a producer's steps ahead of its
 * consumer.
 *
 * The first thread produces items (for a walk: its SCAN steps), the second
 * completes each into a result (the values of those keys), while the
 * consumer handles the result in hand. So the producer's next step is
 * always under way and the consumer's own work overlaps it. Each thread
 * owns its stage's state alone; only the hand-overs are shared, one at a
 * time under the lock: at most one item and one result wait, beside the
 * one the consumer holds. A failure of either stage reaches the consumer
 * after the results completed before it, as it would without the threads.
 * Closing does not wait for a thread caught in a step (a frozen server
 * holds it for the whole retry policy): the last one to end tells the
 * owner, which frees everything then.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "readahead.h"
#include "error.h"

struct rs_readahead {
    const rs_readahead_ops *ops;
    void *ctx;
    void *owner;             /* handed to thread_ended: outlives ctx */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t producer, completer;
    void *item;              /* produced, not taken by the completer yet */
    int produced_all;        /* the producer is done (at the end, or failed) */
    void *result;            /* completed, not taken by the consumer yet */
    int has_result;
    int ended;               /* the completer is done (failed says whether it failed) */
    rs_error failed;         /* the first failure; kind RS_OK while none */
    int closing;
    int live;                /* threads not yet ended */
    int detached;            /* closed while live: the last thread tells the owner */
};

rs_readahead *rs_readahead_new(const rs_readahead_ops *ops, void *ctx, void *owner)
{
    rs_readahead *ra = calloc(1, sizeof *ra);
    if (!ra) return NULL;
    ra->ops = ops;
    ra->ctx = ctx;
    ra->owner = owner;
    pthread_mutex_init(&ra->lock, NULL);
    pthread_cond_init(&ra->cond, NULL);
    return ra;
}

/* Records the first failure of either thread (under the lock). */
static void fail(rs_readahead *ra, const rs_error *err)
{
    if (ra->failed.kind != RS_OK) return;
    ra->failed = *err;
    if (ra->failed.kind == RS_OK) rs_error_set(&ra->failed, RS_ERR_SERVER, 0, "read-ahead failed");
}

/* The end of a thread, called under the lock, which it releases. */
static void *thread_ends(rs_readahead *ra)
{
    /* Read while locked: once unlocked, the other thread may free it all. */
    const rs_readahead_ops *ops = ra->ops;
    void *ctx = ra->ctx, *owner = ra->owner;
    int last = --ra->live == 0 && ra->detached;
    pthread_cond_broadcast(&ra->cond);
    pthread_mutex_unlock(&ra->lock);
    ops->thread_ended(owner, last ? ctx : NULL, last);
    return NULL;
}

/* The first stage: items, handed over one at a time; it ends at the end,
 * at a failure (its own or the completer's), or at close. */
static void *producer_main(void *arg)
{
    rs_readahead *ra = arg;
    for (;;) {
        /* No new step once closed or failed: against a frozen server it
         * would hold the store's close for a whole retry policy. */
        pthread_mutex_lock(&ra->lock);
        if (ra->closing || ra->failed.kind != RS_OK) {
            ra->produced_all = 1;
            return thread_ends(ra);
        }
        pthread_mutex_unlock(&ra->lock);
        void *item = NULL;
        rs_error err;
        rs_error_clear(&err);
        int rc = ra->ops->produce(ra->ctx, &item, &err);
        pthread_mutex_lock(&ra->lock);
        while (rc == 1 && ra->item && !ra->closing && ra->failed.kind == RS_OK)
            pthread_cond_wait(&ra->cond, &ra->lock);
        if (rc == 1 && !ra->closing && ra->failed.kind == RS_OK) {
            ra->item = item;
        } else {
            if (item) ra->ops->free_item(item);
            if (rc < 0) fail(ra, &err);
            ra->produced_all = 1;
        }
        if (ra->produced_all) return thread_ends(ra);
        pthread_cond_broadcast(&ra->cond);
        pthread_mutex_unlock(&ra->lock);
    }
}

/* The second stage: each item completed, the results handed over one at a
 * time; the producer's failure reaches the consumer after them. */
static void *completer_main(void *arg)
{
    rs_readahead *ra = arg;
    pthread_mutex_lock(&ra->lock);
    for (;;) {
        while (!ra->item && !ra->produced_all && !ra->closing)
            pthread_cond_wait(&ra->cond, &ra->lock);
        if (ra->closing || !ra->item) break;
        void *item = ra->item, *out = NULL;
        ra->item = NULL;
        pthread_cond_broadcast(&ra->cond);
        pthread_mutex_unlock(&ra->lock);
        rs_error err;
        rs_error_clear(&err);
        int rc = ra->ops->complete(ra->ctx, item, &out, &err);
        pthread_mutex_lock(&ra->lock);
        if (rc < 0) {
            fail(ra, &err);
            break;
        }
        while (ra->has_result && !ra->closing) pthread_cond_wait(&ra->cond, &ra->lock);
        if (ra->closing) {
            ra->ops->free_result(out);
            break;
        }
        ra->result = out;
        ra->has_result = 1;
        pthread_cond_broadcast(&ra->cond);
    }
    ra->ended = 1;
    return thread_ends(ra);
}

int rs_readahead_start(rs_readahead *ra)
{
    ra->live = 2;
    if (pthread_create(&ra->completer, NULL, completer_main, ra) != 0) {
        ra->live = 0;
        ra->ops->thread_ended(ra->owner, NULL, 0);
        ra->ops->thread_ended(ra->owner, NULL, 0);
        return -1;
    }
    if (pthread_create(&ra->producer, NULL, producer_main, ra) != 0) {
        pthread_mutex_lock(&ra->lock);     /* nothing produced: stop the completer */
        ra->live--;
        ra->closing = 1;
        pthread_cond_broadcast(&ra->cond);
        pthread_mutex_unlock(&ra->lock);
        ra->ops->thread_ended(ra->owner, NULL, 0);
        pthread_join(ra->completer, NULL);
        return -1;
    }
    return 0;
}

int rs_readahead_next(rs_readahead *ra, void **out, rs_error *err)
{
    pthread_mutex_lock(&ra->lock);
    while (!ra->has_result && !ra->ended) pthread_cond_wait(&ra->cond, &ra->lock);
    int rc = ra->has_result ? 1 : ra->failed.kind != RS_OK ? -1 : 0;
    if (rc == 1) {
        *out = ra->result;
        ra->result = NULL;
        ra->has_result = 0;
        pthread_cond_broadcast(&ra->cond);
    } else if (rc < 0) {
        *err = ra->failed;
    }
    pthread_mutex_unlock(&ra->lock);
    return rc;
}

int rs_readahead_close(rs_readahead *ra)
{
    pthread_mutex_lock(&ra->lock);
    ra->closing = 1;
    pthread_cond_broadcast(&ra->cond);
    pthread_t producer = ra->producer, completer = ra->completer;
    if (ra->live > 0) {
        ra->detached = 1;
        pthread_mutex_unlock(&ra->lock);
        pthread_detach(producer);
        pthread_detach(completer);
        return 1;
    }
    pthread_mutex_unlock(&ra->lock);
    pthread_join(producer, NULL);
    pthread_join(completer, NULL);
    return 0;
}

void rs_readahead_free(rs_readahead *ra)
{
    if (!ra) return;
    if (ra->item) ra->ops->free_item(ra->item);
    if (ra->has_result) ra->ops->free_result(ra->result);
    pthread_mutex_destroy(&ra->lock);
    pthread_cond_destroy(&ra->cond);
    free(ra);
}
