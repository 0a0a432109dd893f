/* SPDX-License-Identifier: MIT */
/* ttl.c -- the TTL range: Redis's own, checked in one place.
 *
 * Redis (and Valkey) take any TTL whose expiry instant, in Unix
 * milliseconds, fits in a signed 64-bit integer: EXPIRE, PEXPIRE and
 * SET EX/PX refuse "invalid expire time" only when the TTL plus the
 * server's clock passes 2^63-1 ms (EXPIRE also when seconds * 1000
 * overflows, which is the same bound). So every TTL a server holds can be
 * written again, and the limit moves with the clock: about 292 million
 * years from now. It is checked here against this machine's clock, on the
 * amounts we really send (whole seconds for EX, rounded milliseconds for
 * PX and PEXPIRE), before anything is sent. The core (save, save_many,
 * expire, locks, the ttl option), the Lua module (rs.check_ttl) and every
 * script use this function.
 */
#include <limits.h>
#include <math.h>
#include <time.h>
#include <hiredis/hiredis.h>

#include "ttl.h"
#include "error.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double rs_ttl_max(void)
{
    return (double)((LLONG_MAX - now_ms()) / 1000);
}

int rs_ttl_check(double seconds, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    if (isnan(seconds) || !(seconds > 0)) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "ttl must be a number of seconds above 0, not %g",
                     seconds);
        return -1;
    }
    long long room = LLONG_MAX - now_ms();   /* ms Redis still accepts */
    /* Compared as sent: whole seconds (EX) and rounded milliseconds (PX,
     * PEXPIRE); the double is only cast once it is known to fit. */
    int fits = seconds * 1000.0 < 0x1p63;
    if (fits && seconds == floor(seconds)) fits = (long long)seconds <= room / 1000;
    if (fits) fits = llround(seconds * 1000.0) <= room;
    if (!fits) {
        /* 16 digits: every whole second up to the limit, shown exactly. */
        rs_error_set(err, RS_ERR_CONFIG, 0,
                     "ttl %.16g s is over the longest TTL Redis accepts (an expiry at most "
                     "2^63-1 ms after 1970: %lld s from now)", seconds, room / 1000);
        return -1;
    }
    return 0;
}

int rs_ttl_args(double ttl, const char **unit, char *amount, size_t size)
{
    if (ttl <= 0) {
        *unit = "";
        amount[0] = '\0';
        return 0;
    }
    /* Integers, not "%.0f": a migrate formats a million of them. */
    if (ttl == floor(ttl)) {
        *unit = "EX";
        snprintf(amount, size, "%lld", (long long)ttl);
    } else {
        *unit = "PX";
        long long ms = llround(ttl * 1000);
        snprintf(amount, size, "%lld", ms < 1 ? 1 : ms);
    }
    return 1;
}
