/* SPDX-License-Identifier: MIT */
/* get_coalesced.h -- gets of several collections in one pipeline, for the
 * jobs' workers (get_coalesced.c). Each item keeps its own outcome; an
 * item the pipeline cannot answer as rs_get_raw would is left to be run
 * alone (redo).
 */
#ifndef RS_GET_COALESCED_H
#define RS_GET_COALESCED_H

#include <stddef.h>

#include "rigatoni_store.h"

#define RS_GET_COALESCE_MAX 64

typedef struct rs_get_item {
    const char *coll;          /* in */
    size_t coll_len;
    char *out;                 /* out, when !redo: malloc'd bytes, or NULL (rc 0) */
    size_t out_len;
    int rc;                    /* when !redo: 1 found, 0 absent (rs_get_raw's) */
    int redo;                  /* not answered: run it alone (rs_get_raw) */
    int failed;                /* redo: it went out in the pipeline that failed, its
                                * attempt 1 (rs_get_raw_after, with that failure) */
} rs_get_item;

/* One attempt of one pipeline of GETs for items[0..n) (n <= RS_GET_COALESCE_MAX;
 * not for a cluster). Never retries: any failure leaves every item redo.
 * -1 + *failure when the pipeline itself failed (a connection lost, a
 * timeout: no reply read; failure->attempts 0 when it was not sent, the
 * store closing), else 0. */
int rs_get_coalesced(rs_store *store, rs_get_item *items, size_t n, rs_error *failure);

#endif /* RS_GET_COALESCED_H */
