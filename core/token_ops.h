/* SPDX-License-Identifier: MIT */
/* token_ops.h -- token_ops.c's own, beside the public rs_save_raw,
 * rs_get_raw, rs_delete and rs_ttl: a get that goes on after a failed
 * attempt elsewhere (the job workers' pipeline of gets, jobs.c).
 */
#ifndef RS_TOKEN_OPS_H
#define RS_TOKEN_OPS_H

#include "rigatoni_store.h"

/* rs_get_raw whose attempt 1 was made and failed with `prior` (the
 * pipeline of coalesced gets: get_coalesced.h); prior NULL: rs_get_raw. */
int rs_get_raw_after(rs_store *store, const char *collection, size_t coll_len,
                     const rs_error *prior, char **out, size_t *out_len, rs_error *err);

#endif /* RS_TOKEN_OPS_H */
