/* SPDX-License-Identifier: MIT */
/* store.h -- store.c's own: the count of threads still running on a
 * store, which closing it waits for (the walk's read-ahead, save jobs);
 * a get that goes on after a failed attempt elsewhere (jobs.c).
 * The store's fields are store_state.h's.
 */
#ifndef RS_STORE_H
#define RS_STORE_H

#include "rigatoni_store.h"

/* rs_get_raw whose attempt 1 was made and failed with `prior` (the
 * pipeline of coalesced gets: get_coalesced.h); prior NULL: rs_get_raw. */
int rs_get_raw_after(rs_store *store, const char *collection, size_t coll_len,
                     const rs_error *prior, char **out, size_t *out_len, rs_error *err);

/* A thread on the store starts (+1) or has ended (-1); closing the
 * store waits for the count to reach 0. */
void rs_store_threads(rs_store *store, int delta);

#endif /* RS_STORE_H */
