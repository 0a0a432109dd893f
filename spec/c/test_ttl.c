/* SPDX-License-Identifier: MIT */
/* test_ttl.c -- the TTL range (core/ttl.c): Redis's own, an expiry at
 * most 2^63-1 ms after 1970, checked on the amounts we send. No server:
 * spec/check_before_acting_spec.lua checks the same bound against one. */
#include "test_support.h"

#include <limits.h>
#include <math.h>
#include <time.h>

static long long room_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return LLONG_MAX - ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void takes(double seconds)
{
    rs_error err = {0};
    CHECK(rs_ttl_check(seconds, &err) == 0);
    if (err.message[0]) fprintf(stderr, "  %.17g: %s\n", seconds, err.message);
}

static void refuses(double seconds, const char *words)
{
    rs_error err = {0};
    CHECK(rs_ttl_check(seconds, &err) == -1);
    CHECK(err.kind == RS_ERR_CONFIG);
    CHECK(strstr(err.message, words) != NULL);
}

int main(void)
{
    long long max = room_ms() / 1000;   /* whole seconds Redis takes now */
    takes(0.001);
    takes(0.0004);                      /* sent as 1 ms */
    takes(1);
    takes(1e9);
    takes(2e9);                         /* EXPIRE 2000000000: legal in Redis */
    takes((double)(max - 1000));
    takes((double)(max - 1000) + 0.5);  /* PX, rounded milliseconds */
    refuses((double)(max + 1000), "2^63-1 ms");
    refuses((double)max + 1000.5, "2^63-1 ms");
    refuses(1e16, "longest TTL Redis accepts");
    refuses(1e300, "2^63-1 ms");
    refuses(INFINITY, "2^63-1 ms");
    refuses(0, "above 0");
    refuses(-1, "above 0");
    refuses(NAN, "above 0");
    double shown = rs_ttl_max();
    CHECK(shown >= (double)(max - 2) && shown <= (double)max + 2);

    /* The ttl option has the same range; 0 and none mean no expiry. */
    rs_config *cfg = rs_config_new();
    rs_error err = {0};
    CHECK(rs_config_set(cfg, "ttl", "2000000000", &err) == 0);
    CHECK(rs_config_set_seconds(cfg, "ttl", 1e15, &err) == 0);
    CHECK(rs_config_set_seconds(cfg, "ttl", 1e17, &err) == -1 && strstr(err.message, "2^63-1 ms"));
    CHECK(rs_config_set_seconds(cfg, "ttl", 0, &err) == 0);
    CHECK(rs_config_set(cfg, "ttl", "none", &err) == 0);
    rs_config_free(cfg);
    return t_report("test_ttl");
}
