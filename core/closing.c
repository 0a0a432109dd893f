/* SPDX-License-Identifier: MIT */
/* closing.c -- a store's close, heard by the threads still working on it.
 *
 * rs_store_close may find jobs running on the store's workers (jobs.c).
 * It must not wait out their retry backoff (up to retry_max_delay per
 * retry, max_retries times), nor let them start new calls: the retry
 * sleeps are timed waits on this object's condition variable, which the
 * close broadcasts, and the attempt loop (call.c) asks it before a call's
 * first attempt; the pools watch it too (pool.c): a call waiting for a
 * free connection stops waiting, and none is lent once it is set (exec.c
 * then sends nothing). What is already on the wire ends within its own
 * timeouts. The close begins it only once the walks' and save jobs'
 * threads have ended (they run to their end, as before jobs existed), so
 * in practice it cuts short what the workers run.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "closing.h"
#include "error.h"

struct rs_closing {
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* broadcast when the close begins */
    atomic_int set;
};

rs_closing *rs_closing_new(void)
{
    rs_closing *c = calloc(1, sizeof *c);
    pthread_condattr_t attr;
    if (!c || pthread_condattr_init(&attr) != 0) {
        free(c);
        return NULL;
    }
    /* Deadlines on the monotonic clock: a clock step neither cuts nor
     * stretches a backoff. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&c->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(c);
        return NULL;
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        pthread_cond_destroy(&c->wake);
        free(c);
        return NULL;
    }
    atomic_init(&c->set, 0);
    return c;
}

void rs_closing_free(rs_closing *c)
{
    if (!c) return;
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c);
}

void rs_closing_begin(rs_closing *c)
{
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->set, 1);
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

int rs_closing_is_set(rs_closing *c)
{
    return atomic_load_explicit(&c->set, memory_order_relaxed);
}

int rs_closing_sleep(rs_closing *c, double seconds)
{
    if (rs_closing_is_set(c)) return -1;
    if (seconds <= 0) return 0;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    double whole = floor(seconds);
    until.tv_sec += (time_t)whole;
    until.tv_nsec += (long)((seconds - whole) * 1e9);
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&c->lock);
    while (!atomic_load(&c->set) &&
           pthread_cond_timedwait(&c->wake, &c->lock, &until) != ETIMEDOUT) {}
    int closing = atomic_load(&c->set);
    pthread_mutex_unlock(&c->lock);
    return closing ? -1 : 0;
}

void rs_closing_error(rs_error *err, const char *what)
{
    rs_error_set(err, RS_ERR_CONNECTION, 0, "%s: not sent: the store is closing", what);
    err->attempts = 0;      /* rs_error_set leaves an earlier count there */
}
