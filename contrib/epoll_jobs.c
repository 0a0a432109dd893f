/* SPDX-License-Identifier: MIT */
/* epoll_jobs.c -- rigatoni_store jobs driven from an epoll loop.
 *
 *   epoll_jobs redis://127.0.0.1:6379 [N]
 *
 * Saves N tokens as jobs, then reads each back as a job once its save is
 * done, while a 10 ms timerfd keeps ticking in the same loop: the loop
 * never waits on Redis, it waits on the jobs' fds. Prints
 * "N saved, N read back, F failed" and the longest gap between ticks.
 * Build: cc epoll_jobs.c $(pkg-config --cflags --libs rigatoni_store)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "rigatoni_store.h"

/* What one job does, and what it found: the caller's until finished. */
typedef struct work {
    char collection[32];
    int reading;             /* 0: saving, 1: reading back */
    char *bytes;             /* read back */
    size_t len;
    rs_job *job;
} work;

static const char TOKEN[] = "\x13\x00\x00\x00\x02_data\x00\x03\x00\x00\x00" "82\x00\x00";

/* Runs on a worker thread: the blocking calls, unchanged. */
static int run(rs_store *store, void *arg, rs_error *err)
{
    work *w = arg;
    if (w->reading) return rs_get_raw(store, w->collection, strlen(w->collection), &w->bytes,
                                      &w->len, err);
    return rs_save_raw(store, w->collection, strlen(w->collection), TOKEN, sizeof TOKEN - 1,
                       RS_TTL_DEFAULT, err);
}

static int start(rs_store *store, int ep, work *w)
{
    rs_error err;
    if (!(w->job = rs_job_start(store, run, w, &err))) {
        fprintf(stderr, "%s: %s\n", w->collection, err.message);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, rs_job_fd(w->job), &ev) == 0) return 0;
    perror("epoll_ctl");
    /* The loop would never hear of it: the job is still ours to end. */
    rs_job_abandon(w->job, NULL);     /* w outlives the job: nothing to free */
    w->job = NULL;
    return -1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: epoll_jobs URL [N]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 10;
    if (n < 1) n = 1;
    rs_error err;
    rs_config *cfg = rs_config_new();
    if (!cfg || rs_config_set(cfg, "url", argv[1], &err) < 0) {
        fprintf(stderr, "epoll_jobs: %s\n", cfg ? err.message : "out of memory");
        return 2;
    }
    rs_store *store = rs_store_open(cfg, &err);   /* blocks: a loop would open it in a job too */
    rs_config_free(cfg);
    if (!store) {
        fprintf(stderr, "epoll_jobs: %s\n", err.message);
        return 1;
    }

    int ep = epoll_create1(EPOLL_CLOEXEC);
    int tick = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec every = {{0, 10000000}, {0, 10000000}};
    timerfd_settime(tick, 0, &every, NULL);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, tick, &tev);

    work *works = calloc((size_t)n, sizeof *works);
    int pending = 0, saved = 0, read_back = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        snprintf(works[i].collection, sizeof works[i].collection, "epoll:%d", i);
        if (start(store, ep, &works[i]) == 0) pending++;
        else failed++;
    }

    double last_tick = now(), worst_gap = 0;
    while (pending > 0) {
        struct epoll_event evs[16];
        int got = epoll_wait(ep, evs, 16, 1000);
        for (int k = 0; k < got; k++) {
            work *w = evs[k].data.ptr;
            if (!w) {                              /* the ticker */
                uint64_t ticks;
                if (read(tick, &ticks, sizeof ticks) > 0) {
                    double t = now();
                    if (t - last_tick > worst_gap) worst_gap = t - last_tick;
                    last_tick = t;
                }
                continue;
            }
            /* Done: take its result (never blocks now), then the next step. */
            epoll_ctl(ep, EPOLL_CTL_DEL, rs_job_fd(w->job), NULL);
            int rc = rs_job_finish(w->job, &err);
            pending--;
            if (rc < 0) {
                fprintf(stderr, "%s: %s\n", w->collection, err.message);
                failed++;
            } else if (!w->reading) {
                saved++;
                w->reading = 1;
                if (start(store, ep, w) == 0) pending++;
                else failed++;
            } else {
                /* Read back: w->bytes is ours again now that the job is finished. */
                if (rc == 1 && w->len == sizeof TOKEN - 1 && memcmp(w->bytes, TOKEN, w->len) == 0)
                    read_back++;
                else
                    failed++;
                rs_free(w->bytes);
                w->bytes = NULL;
            }
        }
    }
    printf("%d saved, %d read back, %d failed; longest gap between 10 ms ticks: %.1f ms\n",
           saved, read_back, failed, worst_gap * 1000);
    /* Closed first: an abandoned job's fn may still be writing into its
     * work until the close has waited for it. */
    rs_store_close(store);
    for (int i = 0; i < n; i++) rs_free(works[i].bytes);
    free(works);
    close(tick);
    close(ep);
    return failed ? 1 : 0;
}
