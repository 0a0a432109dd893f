/* test_seen_set.c -- the set of names a walk met (core/seen_set.c): its
 * SipHash-2-4-128 equals OpenSSL's SIPHASH MAC, every distinct name of a
 * large set is new once and seen after, binary names (NUL, any length)
 * count by all their bytes, and the memory stays what the design says. */
#include <openssl/evp.h>
#include <openssl/params.h>

#include "seen_set.h"
#include "test_support.h"

/* OpenSSL's SipHash, 128-bit output, as 16 bytes. */
static int openssl_siphash(const uint8_t key[16], const void *data, size_t len, uint8_t out[16])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    size_t size = 16, got = 0;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t("size", &size), OSSL_PARAM_construct_end()};
    int ok = ctx && EVP_MAC_init(ctx, key, 16, params) && EVP_MAC_update(ctx, data, len) &&
             EVP_MAC_final(ctx, out, &got, 16) && got == 16;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok;
}

static void check_against_openssl(void)
{
    uint8_t key[16], data[64], want[16], got[16];
    for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++) data[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof data; len++) {
        uint64_t out[2];
        rs_siphash128(key, data, len, out);
        for (int i = 0; i < 8; i++) {
            got[i] = (uint8_t)(out[0] >> (8 * i));
            got[8 + i] = (uint8_t)(out[1] >> (8 * i));
        }
        CHECK(openssl_siphash(key, data, len, want));
        CHECK(memcmp(got, want, 16) == 0);
    }
    /* The published first vector: key 00..0f, empty message. */
    static const uint8_t empty[16] = {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6,
                                      0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93};
    uint64_t out[2];
    rs_siphash128(key, "", 0, out);
    for (int i = 0; i < 8; i++) {
        got[i] = (uint8_t)(out[0] >> (8 * i));
        got[8 + i] = (uint8_t)(out[1] >> (8 * i));
    }
    CHECK(memcmp(got, empty, 16) == 0);
}

static void check_many(void)
{
    enum { MANY = 1000000 };
    rs_seen_set *set = rs_seen_new();
    CHECK(set != NULL);
    if (!set) return;
    char name[64];
    int fresh = 0, again = 0;
    for (int i = 0; i < MANY; i++) {
        int n = snprintf(name, sizeof name, "rigatoni:resume_token:coll%07d", i);
        fresh += rs_seen_add(set, name, (size_t)n) == 1;
    }
    CHECK(fresh == MANY);
    CHECK(rs_seen_count(set) == MANY);
    for (int i = 0; i < MANY; i += 7) {
        int n = snprintf(name, sizeof name, "rigatoni:resume_token:coll%07d", i);
        again += rs_seen_add(set, name, (size_t)n) == 0;
    }
    CHECK(again == (MANY + 6) / 7);
    CHECK(rs_seen_count(set) == MANY);
    /* The design comment's figure: 32 MiB of tables at 1,000,000 names. */
    size_t bytes = rs_seen_bytes(set);
    fprintf(stderr, "test_seen_set: %d names in %zu bytes (%.1f per name)\n", MANY, bytes,
            (double)bytes / MANY);
    CHECK(bytes <= 33u << 20);
    rs_seen_free(set);
}

static void check_binary_names(void)
{
    rs_seen_set *set = rs_seen_new();
    CHECK(set != NULL);
    if (!set) return;
    CHECK(rs_seen_add(set, "", 0) == 1);
    CHECK(rs_seen_add(set, "", 0) == 0);
    CHECK(rs_seen_add(set, "a\0b", 3) == 1);
    CHECK(rs_seen_add(set, "a\0c", 3) == 1);     /* differs after the NUL */
    CHECK(rs_seen_add(set, "a", 1) == 1);        /* a prefix is another name */
    CHECK(rs_seen_add(set, "a\0b", 3) == 0);
    char big[100000];
    memset(big, 'x', sizeof big);
    CHECK(rs_seen_add(set, big, sizeof big) == 1);
    big[sizeof big - 1] = 'y';
    CHECK(rs_seen_add(set, big, sizeof big) == 1);
    CHECK(rs_seen_add(set, big, sizeof big) == 0);
    CHECK(rs_seen_count(set) == 6);
    rs_seen_free(set);
    rs_seen_free(NULL);
}

/* rs_seen_add_many answers as rs_seen_add would, name by name, also for
 * a name twice in one call and across calls. */
static void check_many_at_once(void)
{
    rs_seen_set *one = rs_seen_new(), *many = rs_seen_new();
    CHECK(one && many);
    if (!one || !many) return;
    enum { N = 5000 };
    static char text[N][32];
    const void *names[N];
    size_t lens[N];
    unsigned char fresh[N];
    for (int i = 0; i < N; i++) {
        /* names repeat: i and i + 1000 are one name when i % 3 == 0 */
        int id = i >= 1000 && i % 3 == 0 ? i - 1000 : i;
        lens[i] = (size_t)snprintf(text[i], sizeof text[i], "n%d", id);
        names[i] = text[i];
    }
    int differ = 0, fresh_count = 0;
    for (int at = 0; at < N; at += 777) {
        size_t m = N - at < 777 ? (size_t)(N - at) : 777;
        CHECK(rs_seen_add_many(many, m, names + at, lens + at, fresh + at) == 0);
    }
    for (int i = 0; i < N; i++) {
        differ += fresh[i] != rs_seen_add(one, names[i], lens[i]);
        fresh_count += fresh[i];
    }
    CHECK(differ == 0);
    CHECK((size_t)fresh_count == rs_seen_count(many));
    CHECK(rs_seen_count(one) == rs_seen_count(many));
    /* All again, in one call: none is fresh. */
    CHECK(rs_seen_add_many(many, N, names, lens, fresh) == 0);
    int again = 0;
    for (int i = 0; i < N; i++) again += fresh[i];
    CHECK(again == 0);
    rs_seen_free(one);
    rs_seen_free(many);
}

int main(void)
{
    check_many_at_once();
    check_against_openssl();
    check_binary_names();
    check_many();
    return t_report("test_seen_set");
}
