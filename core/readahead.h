/* SPDX-License-Identifier: MIT */
/* readahead.h -- a two-stage read-ahead run by two threads (readahead.c).
 * It knows nothing of what it carries: a producer's items, each completed
 * into a result, handed to one consumer in order. */
#ifndef RS_READAHEAD_H
#define RS_READAHEAD_H

#include "rigatoni_store.h"

typedef struct rs_readahead rs_readahead;

typedef struct rs_readahead_ops {
    /* The first stage's thread (it alone): the next item, 1 with *item,
     * 0 at the end, -1 + err. */
    int (*produce)(void *ctx, void **item, rs_error *err);
    /* The second stage's thread (it alone): the item made into *out
     * (which takes the item), 0; or -1 + err, the item freed. */
    int (*complete)(void *ctx, void *item, void **out, rs_error *err);
    void (*free_item)(void *item);
    void (*free_result)(void *out);
    /* Each of the two threads ends through this once, whether it started
     * or not, with nothing of the stage's lock held. `last`: the last one
     * of a stage closed while its threads ran, which the ctx must free
     * now (rs_readahead_free). A thread that is not last must not touch
     * ctx: the other one may free it as soon as the lock is released;
     * `owner` (given to rs_readahead_new) is what it may use. */
    void (*thread_ended)(void *owner, void *ctx, int last);
} rs_readahead_ops;

/* A stage not started yet; NULL when memory runs out. */
rs_readahead *rs_readahead_new(const rs_readahead_ops *ops, void *ctx, void *owner);
/* Starts the two threads: 0, or -1 when they could not start (both have
 * ended through thread_ended then; nothing was produced). */
int rs_readahead_start(rs_readahead *ra);
/* The next result in order: 1 with *out (the caller's), 0 at the end, -1
 * with the first failure of either stage (after every result completed
 * before it). */
int rs_readahead_next(rs_readahead *ra, void **out, rs_error *err);
/* Stops the threads: 0 when they have ended (the caller frees the stage),
 * 1 when one has not ended yet (it may be in a step against a frozen
 * server, or only waking up): it is not waited for, and the last one to
 * end calls thread_ended(owner, ctx, 1). Its return from there runs the
 * library's code after the owner may have closed: the .so is linked with
 * -z nodelete so that no dlclose unmaps that code. */
int rs_readahead_close(rs_readahead *ra);
/* Frees a stage whose threads have ended or never started. NULL is fine. */
void rs_readahead_free(rs_readahead *ra);

#endif /* RS_READAHEAD_H */
