/* SPDX-License-Identifier: MIT */
/* test_pool_exhaust.c -- fault matrix (issue 8): the pool exhausted by slow
 * callers. Lua is single threaded, so this one is in C.
 *
 * Expectations: while pool_size callers are stuck in slow commands, another
 * caller waits at most connection_timeout and gets a `pool` error after one
 * attempt (waiting again would only multiply the wait); the slow callers
 * finish normally; afterwards nothing is lent out, no more than pool_size
 * connections were ever opened, and the server sees exactly the open ones.
 * Then many threads share a small pool with slow-ish commands: every call
 * succeeds, every token reads back. Run plain, ASan and TSan.
 */
#include <pthread.h>
#include <time.h>

#include "test_support.h"

static rs_store *store;

static int command(const char *a, const char *b, const char *c, char **out)
{
    const char *argv[3] = {a, b, c};
    size_t lens[3] = {strlen(a), b ? strlen(b) : 0, c ? strlen(c) : 0};
    int argc = c ? 3 : b ? 2 : 1;
    size_t len;
    char *ignored = NULL;
    rs_error err;
    int rc = rs_command(store, argc, argv, lens, out ? out : &ignored, &len, &err);
    if (rc < 0) fprintf(stderr, "%s: %s\n", a, err.message);
    if (!out) rs_free(ignored);
    return rc;
}

static void *slow_caller(void *arg)
{
    /* DEBUG SLEEP holds the connection (and the server) for 1 s. */
    long rc = command("DEBUG", "SLEEP", "1", NULL);
    return (void *)rc;
}

static int server_clients(void)
{
    char *list = NULL;
    if (command("CLIENT", "LIST", NULL, &list) != 1) return -1;
    int n = 0;
    for (char *p = list; (p = strstr(p, "id=")); p += 3) n++;
    rs_free(list);
    return n;
}

#define HAMMER_THREADS 8
#define HAMMER_ROUNDS 40
static int hammer_failures[HAMMER_THREADS];

static void *hammer(void *arg)
{
    int id = (int)(long)arg;
    rs_error err;
    for (int i = 0; i < HAMMER_ROUNDS; i++) {
        char coll[32], value[32];
        snprintf(coll, sizeof coll, "h%d-%d", id, i);
        int len = snprintf(value, sizeof value, "v%d.%d", id, i);
        if (rs_save_raw(store, coll, strlen(coll), value, (size_t)len, RS_TTL_DEFAULT, &err) < 0) {
            fprintf(stderr, "hammer save: %s\n", err.message);
            hammer_failures[id]++;
            continue;
        }
        if (i % 10 == 0 && command("DEBUG", "SLEEP", "0.01", NULL) < 0) hammer_failures[id]++;
        char *out = NULL;
        size_t out_len = 0;
        if (rs_get_raw(store, coll, strlen(coll), &out, &out_len, &err) != 1 ||
            out_len != (size_t)len || memcmp(out, value, (size_t)len) != 0)
            hammer_failures[id]++;
        rs_free(out);
    }
    return NULL;
}

int main(void)
{
    const char *extra[] = {"--enable-debug-command", "yes", NULL};
    int port = t_start_server(extra);
    rs_error err;
    rs_config *cfg = t_config(port, NULL);
    CHECK(cfg != NULL);
    CHECK(rs_config_set(cfg, "pool_size", "2", &err) == 0);
    CHECK(rs_config_set(cfg, "connection_timeout", "250ms", &err) == 0);
    CHECK(rs_config_set(cfg, "max_retries", "3", &err) == 0);
    store = rs_store_open(cfg, &err);
    CHECK(store != NULL);
    if (!store) return t_report("test_pool_exhaust");

    /* 1. Two slow callers hold both connections; a third caller gives up. */
    pthread_t slow[2];
    for (int i = 0; i < 2; i++) pthread_create(&slow[i], NULL, slow_caller, NULL);
    /* Wait until both hold their connection (a loaded machine is slow). */
    rs_pool_stats st;
    struct timespec tick = {0, 5 * 1000 * 1000};
    for (int i = 0; i < 400; i++) {
        rs_store_pool_stats(store, &st);
        if (st.in_use == 2) break;
        nanosleep(&tick, NULL);
    }
    CHECK(st.in_use == 2);
    double t0 = t_now();
    char *out = NULL;
    size_t len = 0;
    int rc = rs_get_raw(store, "x", 1, &out, &len, &err);
    double waited = t_now() - t0;
    CHECK(rc == -1);
    CHECK(err.kind == RS_ERR_POOL);
    CHECK(err.attempts == 1);
    CHECK(err.retryable == 1);
    CHECK(strstr(err.message, "pool_size 2") != NULL);
    CHECK(waited >= 0.24 && waited < 0.7);
    for (int i = 0; i < 2; i++) {
        void *res;
        pthread_join(slow[i], &res);
        CHECK((long)res == 1);              /* the slow callers succeeded */
    }
    rs_store_pool_stats(store, &st);
    CHECK(st.in_use == 0);
    CHECK(st.open == 2 && st.created == 2);
    CHECK(st.wait_timeouts == 1);
    CHECK(server_clients() == 2);           /* exactly the pool's connections */
    CHECK(rs_save_raw(store, "x", 1, "y", 1, RS_TTL_DEFAULT, &err) == 0);

    /* 2. Eight threads on two connections, some commands slow: all succeed. */
    rs_store_close(store);
    CHECK(rs_config_set(cfg, "connection_timeout", "3s", &err) == 0);
    store = rs_store_open(cfg, &err);
    CHECK(store != NULL);
    if (!store) return t_report("test_pool_exhaust");
    pthread_t th[HAMMER_THREADS];
    for (long i = 0; i < HAMMER_THREADS; i++) pthread_create(&th[i], NULL, hammer, (void *)i);
    for (int i = 0; i < HAMMER_THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < HAMMER_THREADS; i++) CHECK(hammer_failures[i] == 0);
    rs_store_pool_stats(store, &st);
    CHECK(st.in_use == 0 && st.open <= 2 && st.created <= 2);
    CHECK(st.waits > 0 && st.wait_timeouts == 0);
    CHECK(server_clients() == st.open);
    rs_store_close(store);
    rs_config_free(cfg);
    return t_report("test_pool_exhaust");
}
