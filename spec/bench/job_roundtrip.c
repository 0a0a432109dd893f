/* SPDX-License-Identifier: MIT */
/* job_roundtrip.c -- where a job's time goes, without the server's share:
 * jobs whose fn does nothing, one at a time, the caller sleeping in poll()
 * on the job's fd as an event loop would. Not part of make test.
 *
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Icore spec/bench/job_roundtrip.c \
 *      build/librigatoni_store.a -lhiredict_ssl -lhiredict -lbson-1.0 \
 *      -lssl -lcrypto -lpthread -lm -o /tmp/job_roundtrip
 *   /tmp/job_roundtrip URL [N [THINK_US]]
 *   -> one line of medians (us): rs_job_start's return, the worker
 *      entering fn, fn's end to the caller awake from poll, rs_job_finish,
 *      and the whole round trip. THINK_US: the caller busy that long
 *      between jobs (a loop doing its other work).
 *
 * The store is opened (a server must answer at URL) but fn never uses it.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rigatoni_store.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* Written by the worker, read after the job's fd turned readable (the
 * eventfd write and poll order the two). */
static double entered;

static int stamp(rs_store *store, void *arg, rs_error *err)
{
    (void)store;
    (void)arg;
    (void)err;
    entered = now_us();
    return 0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: job_roundtrip URL [N [THINK_US]]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 5000;
    double think = argc > 3 ? atof(argv[3]) : 0;
    if (n < 1) n = 1;
    rs_error err = {0};
    rs_config *cfg = rs_config_new();
    if (!cfg || rs_config_set_url(cfg, argv[1], &err) < 0) {
        fprintf(stderr, "job_roundtrip: config: %s\n", err.message);
        return 2;
    }
    rs_store *store = rs_store_open(cfg, &err);
    if (!store) {
        fprintf(stderr, "job_roundtrip: open: %s\n", err.message);
        return 1;
    }
    double *start = malloc(5 * (size_t)n * sizeof *start);
    if (!start) return 1;
    double *pickup = start + n, *awake = pickup + n, *finish = awake + n, *total = finish + n;
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        rs_job *job = rs_job_start(store, stamp, NULL, &err);
        if (!job) {
            fprintf(stderr, "job_roundtrip: start: %s\n", err.message);
            return 1;
        }
        double t1 = now_us();
        struct pollfd p = {.fd = rs_job_fd(job), .events = POLLIN};
        while (poll(&p, 1, -1) != 1) {}
        double t2 = now_us();
        if (rs_job_finish(job, &err) != 0) return 1;
        double t3 = now_us();
        start[i] = t1 - t0;
        pickup[i] = entered - t1;
        awake[i] = t2 - entered;
        finish[i] = t3 - t2;
        total[i] = t3 - t0;
        for (double t = now_us(); now_us() - t < think;) {}
    }
    printf("median us: start %.1f | worker enters fn %.1f | fn's end to caller awake %.1f"
           " | finish %.1f | round trip %.1f\n",
           median(start, n), median(pickup, n), median(awake, n), median(finish, n),
           median(total, n));
    free(start);
    rs_store_close(store);
    rs_config_free(cfg);
    return 0;
}
