/* SPDX-License-Identifier: MIT */
/* closing.h -- a store's close, heard by the threads working on it
 * (closing.c): the retry backoff sleeps on it, the attempt loop asks it.
 */
#ifndef RS_CLOSING_H
#define RS_CLOSING_H

#include "rigatoni_store.h"

typedef struct rs_closing rs_closing;

rs_closing *rs_closing_new(void);           /* NULL: no memory */
void rs_closing_free(rs_closing *c);        /* NULL is fine */
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
