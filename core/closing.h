/* SPDX-License-Identifier: MIT */
/* closing.h -- a store's close, heard by the threads working on it
 * (closing.c): the retry backoff sleeps on it, the attempt loop asks it.
 */
#ifndef RS_CLOSING_H
#define RS_CLOSING_H

#include <pthread.h>
#include <stdatomic.h>

#include "rigatoni_store.h"

typedef struct rs_closing {
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* broadcast when the close begins */
    atomic_int set;
} rs_closing;

int rs_closing_init(rs_closing *c);         /* 0 or -1 */
void rs_closing_destroy(rs_closing *c);
/* The close begins: every rs_closing_sleep ends now, and later ones at once. */
void rs_closing_begin(rs_closing *c);
int rs_closing_is_set(rs_closing *c);
/* Sleeps `seconds` (a retry's backoff): 0 when slept, -1 when the close
 * began before or during it. */
int rs_closing_sleep(rs_closing *c, double seconds);
/* A call not sent because the store is closing: RS_ERR_CONNECTION,
 * retryable 0, attempts 0 (nothing was sent, so not RS_ERR_UNKNOWN). */
void rs_closing_error(rs_error *err, const char *what);

#endif /* RS_CLOSING_H */
