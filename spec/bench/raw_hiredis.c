/* SPDX-License-Identifier: MIT */
/* raw_hiredis.c -- the floor a blocking hiredis client reaches: SET then
 * GET of one key in a plain redisCommandArgv loop, no store, no pool, no
 * BSON. It tells how much of the gap between the store's sequential ops
 * and redis-benchmark -c 1 belongs to the client I/O pattern itself.
 *
 *   raw_hiredis PORT N VALSIZE   -> "set <ops/s>\nget <ops/s>\n"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ops/s of n calls of one command, or -1 on any failed reply. */
static double loop(redisContext *c, int n, int argc, const char **argv, const size_t *len)
{
    double t0 = now();
    for (int i = 0; i < n; i++) {
        redisReply *r = redisCommandArgv(c, argc, argv, len);
        if (!r || r->type == REDIS_REPLY_ERROR) return -1;
        freeReplyObject(r);
    }
    return n / (now() - t0);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: raw_hiredis PORT N VALSIZE\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    redisContext *c = redisConnect("127.0.0.1", port);
    char *value = malloc(size);
    if (!c || c->err || !value || n <= 0) return 1;
    memset(value, 'x', size);
    const char *key = "rigatoni:resume_token:bench_raw";
    const char *set[3] = {"SET", key, value}, *get[2] = {"GET", key};
    size_t set_len[3] = {3, strlen(key), size}, get_len[2] = {3, strlen(key)};
    double s = loop(c, n, 3, set, set_len), g = loop(c, n, 2, get, get_len);
    if (s < 0 || g < 0) return 1;
    printf("set %.1f\nget %.1f\n", s, g);
    redisFree(c);
    free(value);
    return 0;
}
