/* SPDX-License-Identifier: MIT */
/* test_job_fairness.c -- one worker, and a steady stream of coalescable
 * gets from 8 threads: a job of the other queue (an fn job, or a get sent
 * back to run alone after an error reply such as WRONGTYPE) still runs
 * within one pipeline's time, since after a pipeline a queued job goes
 * first (jobs.c worker_main). Before that rule such jobs waited as long
 * as gets kept coming (up to 1.4 s measured). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "test_support.h"

static atomic_int stop_flag;
static rs_store *store;

static void *getter(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_flag)) {
        rs_job *jobs[8];
        char *out[8];
        size_t len[8];
        rs_error err;
        for (int i = 0; i < 8; i++)
            jobs[i] = rs_job_start_get_raw(store, NULL, "good", 4, &out[i], &len[i], NULL, &err);
        for (int i = 0; i < 8; i++) {
            if (!jobs[i]) continue;
            if (rs_job_finish(jobs[i], &err) == 1) rs_free(out[i]);
        }
    }
    return NULL;
}

static int echo(rs_store *s, void *arg, rs_error *err)
{
    (void)s;
    (void)err;
    return *(int *)arg;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int port = t_start_server(NULL);
    rs_config *cfg = t_config(port, NULL);
    rs_error err;
    CHECK(rs_config_set(cfg, "workers", "1", &err) == 0);
    store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return t_report("test_job_fairness");
    CHECK(rs_save_raw(store, "good", 4, "v", 1, RS_TTL_NONE, &err) == 0);
    const char *hset[4] = {"HSET", "rigatoni:resume_token:hash", "f", "v"};
    size_t hlen[4] = {4, strlen(hset[1]), 1, 1};
    char *o = NULL;
    size_t ol;
    CHECK(rs_command(store, 4, hset, hlen, &o, &ol, &err) >= 0);
    rs_free(o);
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, getter, NULL);
    struct timespec ms300 = {0, 300000000};
    nanosleep(&ms300, NULL);
    double worst_fn = 0, worst_redo = 0;
    for (int round = 0; round < 5; round++) {
        int one = 1;
        double t0 = t_now();
        rs_job *fn = rs_job_start(store, echo, &one, &err);
        CHECK(fn && rs_job_finish(fn, &err) == 1);
        double d = t_now() - t0;
        if (d > worst_fn) worst_fn = d;
        char *out;
        size_t len;
        t0 = t_now();
        rs_job *g = rs_job_start_get_raw(store, NULL, "hash", 4, &out, &len, NULL, &err);
        CHECK(g && rs_job_finish(g, &err) == -1);
        d = t_now() - t0;
        if (d > worst_redo) worst_redo = d;
    }
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    printf("worst wait: fn job %.3f s, WRONGTYPE get (run alone) %.3f s\n", worst_fn, worst_redo);
    CHECK(worst_fn < 0.2);
    CHECK(worst_redo < 0.2);
    rs_store_close(store);
    return t_report("test_job_fairness");
}
