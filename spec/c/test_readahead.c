/* SPDX-License-Identifier: MIT */
/* test_readahead.c -- the read-ahead stage (core/readahead.c) on its own,
 * with stages that only count: many runs with random delays, failures of
 * either stage, consumers that stop early, and a thread that cannot start.
 *
 * Every run checks the order of the results and, at the end, that every
 * item, result and stage was freed exactly once; under TSan (make
 * test-tsan) and ASan it is the race and lifetime test of the stage. It
 * needs no server. pthread_create is wrapped here (the stage is compiled
 * into this test) so that the Nth creation can fail.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_int creation, fail_creation = -1;
static int failing_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
#define pthread_create failing_create
#include "../../core/readahead.c"
#undef pthread_create

#include "test_support.h"

static int failing_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    if (atomic_fetch_add(&creation, 1) == atomic_load(&fail_creation)) return 11; /* EAGAIN */
    return pthread_create(t, a, fn, arg);
}

/* What the threads of every stage tell: how many are still running. */
typedef struct owner {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int threads;
} owner;

typedef struct run {
    rs_readahead *ra;
    int next, items, fail_produce_at, fail_complete_at, slow;
    unsigned seed;             /* the producer's alone */
} run;

static atomic_int items_live, results_live, runs_live;

static void pause_a_little(unsigned *seed, int slow)
{
    switch (rand_r(seed) % 4) {
    case 0: usleep(slow ? 2000 : 50); break;
    case 1: sched_yield(); break;
    default: break;
    }
}

static int produce(void *ctx, void **item, rs_error *err)
{
    run *r = ctx;
    pause_a_little(&r->seed, r->slow);
    if (r->next == r->fail_produce_at) {
        rs_error_set(err, RS_ERR_SERVER, 0, "produce failed");
        return -1;
    }
    if (r->next >= r->items) return 0;
    int *n = malloc(sizeof *n);
    *n = r->next++;
    atomic_fetch_add(&items_live, 1);
    *item = n;
    return 1;
}

static int complete(void *ctx, void *item, void **out, rs_error *err)
{
    run *r = ctx;
    unsigned seed = (unsigned)*(int *)item * 2654435761u;
    pause_a_little(&seed, r->slow);
    atomic_fetch_sub(&items_live, 1);
    if (*(int *)item == r->fail_complete_at) {
        free(item);
        rs_error_set(err, RS_ERR_SERVER, 0, "complete failed");
        return -1;
    }
    atomic_fetch_add(&results_live, 1);
    *out = item;
    return 0;
}

static void free_item(void *item)
{
    free(item);
    atomic_fetch_sub(&items_live, 1);
}

static void free_result(void *out)
{
    free(out);
    atomic_fetch_sub(&results_live, 1);
}

static void free_run(run *r)
{
    rs_readahead_free(r->ra);
    free(r);
    atomic_fetch_sub(&runs_live, 1);
}

static void thread_ended(void *owner_, void *ctx, int last)
{
    owner *o = owner_;
    if (last) free_run(ctx);
    pthread_mutex_lock(&o->lock);
    if (--o->threads == 0) pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

static const rs_readahead_ops counting = {produce, complete, free_item, free_result, thread_ended};

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 400;
    owner o = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    int closed_live = 0, not_started = 0, out_of_order = 0, wrong_end = 0;
    for (int i = 0; i < runs; i++) {
        unsigned seed = (unsigned)i * 2654435761u;
        run *r = calloc(1, sizeof *r);
        atomic_fetch_add(&runs_live, 1);
        r->items = (int)(rand_r(&seed) % 6);
        r->slow = i % 7 == 0;
        r->fail_produce_at = rand_r(&seed) % 3 == 0 ? (int)(rand_r(&seed) % 6) : -1;
        r->fail_complete_at = rand_r(&seed) % 3 == 0 ? (int)(rand_r(&seed) % 6) : -1;
        int stop_after = rand_r(&seed) % 3 == 0 ? (int)(rand_r(&seed) % 4) : 1000;
        r->seed = seed;
        atomic_store(&creation, 0);
        atomic_store(&fail_creation, i % 11 == 0 ? 0 : i % 13 == 0 ? 1 : -1);
        r->ra = rs_readahead_new(&counting, r, &o);
        pthread_mutex_lock(&o.lock);
        o.threads += 2;
        pthread_mutex_unlock(&o.lock);
        if (rs_readahead_start(r->ra) < 0) {
            not_started++;
            free_run(r);
        } else {
            /* The first failure ends the results; until then they come in
             * order. The producer fails when asked for item fail_produce_at
             * (even the one past the last), the completer on that item. */
            int never = 1000, fp = r->fail_produce_at, fc = r->fail_complete_at, got = 0, rc = 0;
            int fails_at = fp >= 0 && fp <= r->items ? fp : never;
            if (fc >= 0 && fc < r->items && fc < fails_at) fails_at = fc;
            int end_at = fails_at < r->items ? fails_at : r->items;
            void *out;
            rs_error err;
            while (got < stop_after && (rc = rs_readahead_next(r->ra, &out, &err)) == 1) {
                if (*(int *)out != got++) out_of_order++;
                free_result(out);
            }
            if (got < stop_after && (got != end_at || (rc < 0) != (fails_at != never)))
                wrong_end++;
            if (rs_readahead_close(r->ra) == 0) free_run(r);
            else closed_live++;
        }
        pthread_mutex_lock(&o.lock);
        while (o.threads > 0) pthread_cond_wait(&o.cond, &o.lock);
        pthread_mutex_unlock(&o.lock);
    }
    CHECK(out_of_order == 0);
    CHECK(wrong_end == 0);
    CHECK(not_started > 0);      /* the creation failures were exercised */
    CHECK(closed_live > 0);      /* and so were closes with live threads */
    CHECK(atomic_load(&runs_live) == 0);
    CHECK(atomic_load(&items_live) == 0);
    CHECK(atomic_load(&results_live) == 0);
    printf("readahead: %d runs, %d closed with live threads, %d not started\n", runs,
           closed_live, not_started);
    return t_report("test_readahead");
}
