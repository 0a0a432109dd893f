/* SPDX-License-Identifier: MIT */
/* store.h -- store.c's own: the count of threads still running on a
 * store, which closing it waits for (the walk's read-ahead, save jobs).
 * The store's fields are store_state.h's.
 */
#ifndef RS_STORE_H
#define RS_STORE_H

#include "rigatoni_store.h"

/* A thread on the store starts (+1) or has ended (-1); closing the
 * store waits for the count to reach 0. */
void rs_store_threads(rs_store *store, int delta);

#endif /* RS_STORE_H */
