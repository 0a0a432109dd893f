/* test_threads.c -- one store hammered from 16 threads.
 *
 * Each thread saves, reads back and deletes its own collections (checking
 * every byte it reads) and also writes shared collections whose values carry
 * the writer's id, so any cross-talk between pooled connections shows up.
 * Run plain and under ThreadSanitizer (make test-tsan).
 */
#include <pthread.h>

#include "test_support.h"

#define THREADS 16
#define ROUNDS 300

static rs_store *store;
static int thread_failures[THREADS];

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    char coll[64], value[128], shared[32];
    rs_error err;
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(coll, sizeof coll, "t%d-c%d", id, i % 7);
        int len = snprintf(value, sizeof value, "thread %d round %d \r\n", id, i);
        memcpy(value + len, "\0tail", 5);   /* values are binary: NUL inside */
        len += 5;
        if (rs_save_raw(store, coll, strlen(coll), value, (size_t)len, RS_TTL_DEFAULT, &err) < 0) {
            fprintf(stderr, "save: %s\n", err.message);
            thread_failures[id]++;
            continue;
        }
        char *out = NULL;
        size_t out_len = 0;
        int rc = rs_get_raw(store, coll, strlen(coll), &out, &out_len, &err);
        if (rc != 1 || out_len != (size_t)len || memcmp(out, value, (size_t)len) != 0) {
            fprintf(stderr, "thread %d round %d: read back differs (rc %d)\n", id, i, rc);
            thread_failures[id]++;
        }
        rs_free(out);
        if (i % 3 == 0) {
            if (rs_delete(store, coll, strlen(coll), &err) != 1) thread_failures[id]++;
            if (rs_get_raw(store, coll, strlen(coll), &out, &out_len, &err) != 0) {
                thread_failures[id]++;
                rs_free(out);
            }
        }
        /* Shared keys: any value read must be one some thread wrote whole. */
        snprintf(shared, sizeof shared, "shared-%d", i % 4);
        len = snprintf(value, sizeof value, "writer=%02d", id);
        if (rs_save_raw(store, shared, strlen(shared), value, (size_t)len, 60, &err) < 0)
            thread_failures[id]++;
        if (rs_get_raw(store, shared, strlen(shared), &out, &out_len, &err) == 1) {
            if (out_len != 9 || strncmp(out, "writer=", 7) != 0) thread_failures[id]++;
            rs_free(out);
        } else {
            thread_failures[id]++;
        }
    }
    return NULL;
}

int main(void)
{
    int port = t_start_server(NULL);
    rs_config *cfg = t_config(port, NULL);
    rs_error err = {0};
    CHECK(cfg != NULL);
    CHECK(rs_config_set(cfg, "pool_size", "8", &err) == 0);  /* fewer than threads: waits */
    store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    if (!store) {
        fprintf(stderr, "open: %s\n", err.message);
        return 1;
    }

    pthread_t threads[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, worker, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < THREADS; i++) CHECK(thread_failures[i] == 0);

    rs_pool_stats stats;
    rs_store_pool_stats(store, &stats);
    CHECK(stats.open <= 8 && stats.in_use == 0);
    CHECK(stats.created >= 1 && stats.created <= 8);

    /* Every thread's surviving collections are listed exactly as stored. */
    rs_scan *scan = rs_scan_open(store, "t*", 100, 1, &err);
    CHECK(scan != NULL);
    rs_scan_entry e;
    int n = 0, rc;
    while (scan && (rc = rs_scan_next(scan, &e, &err)) == 1) {
        n++;
        CHECK(e.value_len > 12 && memcmp(e.value, "thread ", 7) == 0);
        CHECK(e.ttl < 0);
    }
    rs_scan_close(scan);
    CHECK(n > 0 && n <= THREADS * 7);

    /* The walk reads ahead on a thread of its own: closed early, while
     * that thread may be on the wire, and used while the caller writes
     * and deletes through the same store. */
    for (int round = 0; round < 20; round++) {
        rs_scan *early = rs_scan_open(store, "t*", 2, 1, &err);
        CHECK(early != NULL && rs_scan_next(early, &e, &err) == 1);
        rs_scan_close(early);
    }
    scan = rs_scan_open(store, "t*", 5, 1, &err);
    CHECK(scan != NULL);
    int walked = 0;
    rc = -1;
    while (scan && (rc = rs_scan_next(scan, &e, &err)) == 1) {
        walked++;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)e.collection_len, e.collection);
        CHECK(rs_delete(store, name, strlen(name), &err) >= 0);
        CHECK(rs_save_raw(store, "u-side", 6, "x", 1, 0, &err) == 0);
    }
    CHECK(rc == 0);
    rs_scan_close(scan);
    CHECK(walked == n);    /* each key present until it was seen was seen, once */

    /* Save jobs run on threads of their own: several at once, their items
     * freed as soon as they started, and one still running when the store
     * closes (closing waits for it; finishing it afterwards frees it). */
    enum { JOBS = 4, PER_JOB = 50 };
    rs_save_job *jobs[JOBS];
    for (int j = 0; j < JOBS; j++) {
        rs_save_item *items = calloc(PER_JOB, sizeof *items);
        char (*names)[32] = calloc(PER_JOB, sizeof *names);
        CHECK(items != NULL && names != NULL);
        for (int i = 0; items && names && i < PER_JOB; i++) {
            snprintf(names[i], sizeof names[i], "job%d-%d", j, i);
            items[i] = (rs_save_item){names[i], strlen(names[i]), names[i], strlen(names[i]), 0};
        }
        jobs[j] = rs_save_many_start(store, items, PER_JOB, j % 2 ? RS_SAVE_NX : 0, 1, &err);
        CHECK(jobs[j] != NULL);
        free(items);
        free(names);
    }
    for (int j = 0; j < JOBS - 1; j++) {
        int written[PER_JOB];
        rs_value values[PER_JOB];
        CHECK(jobs[j] && rs_save_many_finish(jobs[j], written, values, &err) == 0);
        for (int i = 0; jobs[j] && i < PER_JOB; i++) {
            char name[32];
            snprintf(name, sizeof name, "job%d-%d", j, i);
            CHECK(written[i] == 1);
            CHECK(values[i].len == strlen(name) && memcmp(values[i].bytes, name, values[i].len) == 0);
        }
        if (jobs[j]) rs_values_free(values, PER_JOB);
    }
    rs_store_close(store);
    if (jobs[JOBS - 1]) {
        int written[PER_JOB];
        rs_value values[PER_JOB];
        CHECK(rs_save_many_finish(jobs[JOBS - 1], written, values, &err) == 0);
        rs_values_free(values, PER_JOB);
    }
    return t_report("test_threads");
}
