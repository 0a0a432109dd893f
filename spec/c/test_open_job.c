/* SPDX-License-Identifier: MIT */
/* test_open_job.c -- rs_store_open_start and its job (core/open_job.c), as
 * an event loop drives it: the descriptor polled, never the job's thread
 * waited on while it works.
 *
 *   - an open that succeeds: the descriptor becomes readable, ready says
 *     so, finish gives a working store;
 *   - an open to a listener that never answers: start returns at once,
 *     the descriptor is readable once the open's timeouts ran out, finish
 *     gives the timeout rs_store_open would have (and with err == NULL);
 *   - jobs abandoned while running and after they ended: abandon returns
 *     at once; the thread of one abandoned while running frees it when
 *     its open ends (LSan: no leak once they ended; TSan: no race between
 *     the threads and the handle).
 */
#include <poll.h>
#include <time.h>

#include "test_support.h"

static int readable_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

int main(void)
{
    int port = t_start_server(NULL);
    rs_config *cfg = t_config(port, NULL);
    rs_error err = {0};

    /* A good open. */
    rs_open_job *job = rs_store_open_start(cfg, &err);
    CHECK(job != NULL);
    if (!job) return t_report("test_open_job");
    CHECK(readable_within(rs_open_job_fd(job), 5000));
    CHECK(rs_open_job_ready(job));
    rs_store *store = rs_store_open_finish(job, &err);
    CHECK(store != NULL);
    CHECK(rs_save_raw(store, "c", 1, "\x05\x00\x00\x00\x00", 5, 0, &err) == 0);
    rs_store_close(store);

    /* A listener that accepts (the kernel does) and never answers. */
    int silent_port, silent = t_silent_listener(&silent_port);
    rs_config *scfg = t_config(silent_port, NULL);
    rs_config_set(scfg, "command_timeout", "200ms", NULL);
    rs_config_set(scfg, "connection_timeout", "200ms", NULL);
    rs_config_set(scfg, "max_retries", "0", NULL);
    double t0 = t_now();
    job = rs_store_open_start(scfg, &err);
    CHECK(job != NULL && t_now() - t0 < 0.1);                  /* returned at once */
    if (job) {
        CHECK(!rs_open_job_ready(job));
        CHECK(!readable_within(rs_open_job_fd(job), 50));    /* still waiting */
        CHECK(readable_within(rs_open_job_fd(job), 5000));
        CHECK(rs_store_open_finish(job, &err) == NULL);
        CHECK(err.kind == RS_ERR_TIMEOUT);
    }
    job = rs_store_open_start(scfg, NULL);
    CHECK(job != NULL);
    if (job) CHECK(rs_store_open_finish(job, NULL) == NULL);

    /* Abandoned while running (silent) and once done (good): abandon
     * never waits. */
    for (int i = 0; i < 8; i++) {
        rs_open_job *a = rs_store_open_start(i % 2 ? scfg : cfg, &err);
        CHECK(a != NULL);
        if (i % 4 == 0 && a) readable_within(rs_open_job_fd(a), 5000);
        t0 = t_now();
        rs_open_job_abandon(a);
        CHECK(t_now() - t0 < 0.1);
    }
    rs_open_job_abandon(NULL);
    /* The silent opens end after their 200 ms timeouts; their threads free
     * the jobs, or LeakSanitizer reports them at exit. */
    struct timespec pause = {2, 0};
    nanosleep(&pause, NULL);

    rs_config_free(scfg);
    close(silent);
    rs_config_free(cfg);
    return t_report("test_open_job");
}
