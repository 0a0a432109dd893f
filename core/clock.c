/* SPDX-License-Identifier: MIT */
/* clock.c -- monotonic time and sleeping.
 *
 * Every timeout, backoff delay and connection age in the core is measured
 * on CLOCK_MONOTONIC, which a change of the wall clock cannot move. A
 * sleep interrupted by a signal sleeps the rest.
 */
#include <errno.h>
#include <math.h>
#include <time.h>

#include "clock.h"

double rs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void rs_sleep(double seconds)
{
    if (seconds <= 0) return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - floor(seconds)) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}
