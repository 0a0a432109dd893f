/* SPDX-License-Identifier: MIT */
/* token_key.h -- the Redis key of a collection's token (token_key.c).
 */
#ifndef RS_TOKEN_KEY_H
#define RS_TOKEN_KEY_H

#include <stddef.h>

#include "rigatoni_store.h"

/* key = <prefix>:<collection>, malloc'd. Checks the collection name
 * (non-empty); NULL + serialization error otherwise. */
char *rs_token_key(const rs_store *store, const char *collection,
                   size_t coll_len, size_t *key_len, rs_error *err);
/* The same for a token of `len` bytes about to be saved: also refuses
 * tokens over RS_MAX_TOKEN_SIZE. */
char *rs_token_key_to_save(const rs_store *store, const char *collection, size_t coll_len,
                           size_t len, size_t *key_len, rs_error *err);

#endif /* RS_TOKEN_KEY_H */
