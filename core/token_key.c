/* SPDX-License-Identifier: MIT */
/* token_key.c -- the Redis key of a collection's token.
 *
 * Key: <key_prefix>:<collection>, as Rigatoni writes it. The collection
 * name is checked here, once for every operation that names one: not
 * empty, not absurdly long; a token to be saved is checked for its size
 * before any key is made.
 */
#include <stdlib.h>
#include <string.h>

#include "token_key.h"
#include "config.h"
#include "error.h"
#include "store_state.h"

/* Longest collection name accepted: MongoDB's namespace limit is far below. */
#define MAX_COLLECTION_LEN 65536

char *rs_token_key(const rs_store *store, const char *collection, size_t coll_len,
                   size_t *key_len, rs_error *err)
{
    if (!collection || coll_len == 0) {
        rs_error_set(err, RS_ERR_SERIALIZATION, 0, "collection name must not be empty");
        return NULL;
    }
    if (coll_len > MAX_COLLECTION_LEN) {
        rs_error_set(err, RS_ERR_SERIALIZATION, 0, "collection name longer than %d bytes",
                     MAX_COLLECTION_LEN);
        return NULL;
    }
    size_t plen = strlen(store->cfg->key_prefix);
    char *key = malloc(plen + 1 + coll_len + 1);
    if (!key) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    memcpy(key, store->cfg->key_prefix, plen);
    key[plen] = ':';
    memcpy(key + plen + 1, collection, coll_len);
    key[plen + 1 + coll_len] = '\0';
    *key_len = plen + 1 + coll_len;
    return key;
}

char *rs_token_key_to_save(const rs_store *store, const char *collection, size_t coll_len,
                           size_t len, size_t *key_len, rs_error *err)
{
    if (len > RS_MAX_TOKEN_SIZE) {
        rs_error_set(err, RS_ERR_SERIALIZATION, 0, "token of %zu bytes is over the %u byte limit",
                     len, RS_MAX_TOKEN_SIZE);
        return NULL;
    }
    return rs_token_key(store, collection, coll_len, key_len, err);
}
