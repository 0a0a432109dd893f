/* seen_set.h -- a set of byte strings kept as keyed 128-bit fingerprints
 * (seen_set.c). One owner at a time: not thread safe by itself. */
#ifndef RS_SEEN_SET_H
#define RS_SEEN_SET_H

#include <stddef.h>
#include <stdint.h>

typedef struct rs_seen_set rs_seen_set;

/* An empty set with a fresh random key; NULL when memory or the random
 * source fails. */
rs_seen_set *rs_seen_new(void);
/* 1 when `name` was not in the set (it is now), 0 when it was, -1 when
 * memory ran out (the set is unchanged). */
int rs_seen_add(rs_seen_set *set, const void *name, size_t len);
/* The same for n names at once (faster: their memory is fetched ahead):
 * fresh[i] says what rs_seen_add would have returned for names[i], in
 * order (a name twice among them is fresh once). 0, or -1 when memory ran
 * out: the names before the one that failed were added (their fresh[] is
 * set), the others not. */
int rs_seen_add_many(rs_seen_set *set, size_t n, const void *const *names, const size_t *lens,
                     unsigned char *fresh);
size_t rs_seen_count(const rs_seen_set *set);
/* The bytes the set holds (its tables). */
size_t rs_seen_bytes(const rs_seen_set *set);
void rs_seen_free(rs_seen_set *set);

/* SipHash-2-4 with 128-bit output of data under key, as out[0] (the
 * first 8 output bytes, little-endian) and out[1]. */
void rs_siphash128(const uint8_t key[16], const void *data, size_t len, uint64_t out[2]);

#endif
