/* seen_set.c -- the names a walk has listed, so that it lists each once.
 *
 * A walk may meet a name twice (it starts over from SCAN cursor 0 after a
 * restart or a failover, walks a cluster master again after a reshard, and
 * SCAN itself may repeat names while Redis rehashes). scan.c asks this set
 * about every name it lists and drops the ones it has met before.
 *
 * Names are not kept: each is reduced to a 128-bit fingerprint, SipHash-2-4
 * with 128-bit output under a key drawn at random for each set (OpenSSL's
 * RAND_bytes). Without the key nobody can choose names that collide, so the
 * chance that two of n distinct names share a fingerprint (then the second
 * would be dropped as seen) is the birthday bound over 127 bits (one bit
 * marks a used slot): n^2 / 2^128, about 3e-27 for 1,000,000 names.
 *
 * Memory: 16 bytes per slot in 256 open-addressing tables (linear probing),
 * chosen by the fingerprint's top byte. Each table doubles when it is 3/4
 * full, so a table is 3/8 to 3/4 full: 21 to 43 bytes per name, and one
 * doubling moves 1/256 of the set (no moment holds two copies of it).
 * 1,000,000 names take 32 MiB (256 tables of 8192 slots); a small walk
 * takes 256 tables of 16 slots (64 KiB) once its names spread over them.
 * Tables are allocated at their first name.
 *
 * Speed: a slot of a big set is a cache and TLB miss. rs_seen_add_many
 * hashes a group of names first and fetches their slots ahead, so the
 * misses overlap: about 0.3 s of one core per 1,000,000 new names
 * (measured), on the walk's scanner thread, off the caller's.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "seen_set.h"

#define NTABLES 256
#define FIRST_SLOTS 16

/* A slot is two words; hi's lowest bit is set in every used slot. */
typedef struct table {
    uint64_t *slots;          /* 2 * cap words */
    size_t cap, used;
} table;

struct rs_seen_set {
    uint8_t key[16];
    size_t count;
    table tables[NTABLES];
};

/* ---------------------------------------------------------------------
 * SipHash-2-4, 128-bit output (Aumasson and Bernstein's definition)
 * ------------------------------------------------------------------ */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

#define SIP_ROUND                                                              \
    do {                                                                       \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);              \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                 \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                 \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);              \
    } while (0)

void rs_siphash128(const uint8_t key[16], const void *data, size_t len, uint64_t out[2])
{
    const uint8_t *p = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    v1 ^= 0xee;                                   /* the 128-bit variant */
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIP_ROUND;
        SIP_ROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < len % 8; i++) last |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= last;
    SIP_ROUND;
    SIP_ROUND;
    v0 ^= last;
    v2 ^= 0xee;
    for (int i = 0; i < 4; i++) SIP_ROUND;
    out[0] = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    for (int i = 0; i < 4; i++) SIP_ROUND;
    out[1] = v0 ^ v1 ^ v2 ^ v3;
}

/* ---------------------------------------------------------------------
 * The set
 * ------------------------------------------------------------------ */

rs_seen_set *rs_seen_new(void)
{
    rs_seen_set *set = calloc(1, sizeof *set);
    if (!set) return NULL;
    if (RAND_bytes(set->key, sizeof set->key) != 1) {
        free(set);
        return NULL;
    }
    return set;
}

/* The slot of fingerprint (lo, hi) in t: where it is, or the empty slot
 * where it would go. t->used < t->cap, so there is one. */
static uint64_t *probe(const table *t, uint64_t lo, uint64_t hi)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)lo & mask;; i = (i + 1) & mask) {
        uint64_t *s = t->slots + 2 * i;
        if (s[1] == 0 || (s[0] == lo && s[1] == hi)) return s;
    }
}

/* Doubles t (or gives it its first slots): 0, or -1 with t unchanged. */
static int grow(table *t)
{
    size_t cap = t->cap ? 2 * t->cap : FIRST_SLOTS;
    table bigger = {calloc(cap, 2 * sizeof(uint64_t)), cap, t->used};
    if (!bigger.slots) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        const uint64_t *s = t->slots + 2 * i;
        if (s[1] == 0) continue;
        uint64_t *to = probe(&bigger, s[0], s[1]);
        to[0] = s[0];
        to[1] = s[1];
    }
    free(t->slots);
    *t = bigger;
    return 0;
}

/* The fingerprint of a name: fp[1]'s lowest bit set (a used slot). */
static void fingerprint(const rs_seen_set *set, const void *name, size_t len, uint64_t fp[2])
{
    rs_siphash128(set->key, name, len, fp);
    fp[1] |= 1;
}

/* 1 added, 0 there already, -1 out of memory. */
static int add_fingerprint(rs_seen_set *set, const uint64_t fp[2])
{
    uint64_t lo = fp[0], hi = fp[1];
    table *t = &set->tables[hi >> 56];
    uint64_t *s = t->cap ? probe(t, lo, hi) : NULL;
    if (s && s[1] != 0) return 0;
    if ((t->used + 1) * 4 > t->cap * 3) {
        if (grow(t) < 0) return -1;
        s = probe(t, lo, hi);
    }
    s[0] = lo;
    s[1] = hi;
    t->used++;
    set->count++;
    return 1;
}

int rs_seen_add(rs_seen_set *set, const void *name, size_t len)
{
    uint64_t fp[2];
    fingerprint(set, name, len, fp);
    return add_fingerprint(set, fp);
}

/* Names hashed (and their slots fetched) ahead of their insertion. */
#define GROUP 32

int rs_seen_add_many(rs_seen_set *set, size_t n, const void *const *names, const size_t *lens,
                     unsigned char *fresh)
{
    uint64_t fp[GROUP][2];
    for (size_t base = 0; base < n; base += GROUP) {
        size_t m = n - base < GROUP ? n - base : GROUP;
        for (size_t i = 0; i < m; i++) {
            fingerprint(set, names[base + i], lens[base + i], fp[i]);
            const table *t = &set->tables[fp[i][1] >> 56];
            if (t->cap) __builtin_prefetch(t->slots + 2 * ((size_t)fp[i][0] & (t->cap - 1)));
        }
        for (size_t i = 0; i < m; i++) {
            int rc = add_fingerprint(set, fp[i]);
            if (rc < 0) return -1;
            fresh[base + i] = (unsigned char)rc;
        }
    }
    return 0;
}

size_t rs_seen_count(const rs_seen_set *set)
{
    return set->count;
}

size_t rs_seen_bytes(const rs_seen_set *set)
{
    size_t n = sizeof *set;
    for (int i = 0; i < NTABLES; i++) n += set->tables[i].cap * 2 * sizeof(uint64_t);
    return n;
}

void rs_seen_free(rs_seen_set *set)
{
    if (!set) return;
    for (int i = 0; i < NTABLES; i++) free(set->tables[i].slots);
    free(set);
}
