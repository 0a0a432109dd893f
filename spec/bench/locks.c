/* SPDX-License-Identifier: MIT */
/* locks.c -- Rigatoni locks through the C core, one thread, pool_size 1.
 *
 *   locks PORT N VALSIZE
 *   -> "pairs <per s>\nplain <ops/s>\nfenced <ops/s>\n"; exit 1 on any
 *      failed or unexpected reply.
 *
 * pairs:  rs_lock_acquire + rs_lock_release (two round trips per pair);
 * plain:  rs_save_raw of VALSIZE bytes;
 * fenced: rs_save_fenced of the same bytes with the lock held.
 * Plain and fenced run in four alternating chunks (plain, fenced, fenced,
 * plain), like spec/bench/lua_locks.lua.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rigatoni_store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const rs_error *err)
{
    fprintf(stderr, "locks: %s: %s\n", what, err ? err->message : "unexpected reply");
    exit(1);
}

static const char COLL[] = "bench_c_locks";

static double saves(rs_store *store, long n, int fenced, const char *value, size_t len,
                    const char *key, const char *owner)
{
    rs_error err;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        int rc = fenced ? rs_save_fenced(store, COLL, sizeof COLL - 1, value, len, key, owner, &err)
                        : rs_save_raw(store, COLL, sizeof COLL - 1, value, len, RS_TTL_DEFAULT, &err);
        if (rc < 0) die(fenced ? "save_fenced" : "save_raw", &err);
    }
    return now() - t0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: locks PORT N VALSIZE\n");
        return 2;
    }
    int port = atoi(argv[1]);
    long n = atol(argv[2]);
    size_t valsize = (size_t)atol(argv[3]);
    if (port <= 0 || n < 4 || valsize == 0) {
        fprintf(stderr, "locks: bad arguments\n");
        return 2;
    }

    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rs_error err;
    rs_config *cfg = rs_config_new();
    if (!cfg) return 1;
    if (rs_config_set(cfg, "url", url, &err) < 0 || rs_config_set(cfg, "pool_size", "1", &err) < 0)
        die("config", &err);
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    if (!store) die("open", &err);

    char key[256], owner[128];
    rs_lock_key(store, "bench", COLL, key, sizeof key);
    if (rs_owner_id(owner, sizeof owner) < 0) die("owner_id", NULL);
    char *value = malloc(valsize);
    if (!value) return 1;
    memset(value, 'x', valsize);

    /* pairs */
    long warm = 500;
    for (long i = 0; i < warm; i++) {
        if (rs_lock_acquire(store, key, owner, 30, &err) != 1) die("acquire", &err);
        if (rs_lock_release(store, key, owner, &err) != 1) die("release", &err);
    }
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (rs_lock_acquire(store, key, owner, 30, &err) != 1) die("acquire", &err);
        if (rs_lock_release(store, key, owner, &err) != 1) die("release", &err);
    }
    double pairs = (double)n / (now() - t0);

    /* plain vs fenced */
    if (rs_lock_acquire(store, key, owner, 600, &err) != 1) die("acquire for fenced saves", &err);
    saves(store, warm, 0, value, valsize, key, owner);
    saves(store, warm, 1, value, valsize, key, owner);
    long chunk = n / 4;
    double tp = saves(store, chunk, 0, value, valsize, key, owner);
    double tf = saves(store, chunk, 1, value, valsize, key, owner);
    tf += saves(store, chunk, 1, value, valsize, key, owner);
    tp += saves(store, chunk, 0, value, valsize, key, owner);
    if (rs_lock_release(store, key, owner, &err) != 1) die("release after fenced saves", &err);

    rs_store_close(store);
    free(value);
    printf("pairs %.1f\nplain %.1f\nfenced %.1f\n", pairs, 2.0 * chunk / tp, 2.0 * chunk / tf);
    return 0;
}
