/* SPDX-License-Identifier: MIT */
/* test_job_group.c -- completion groups and coalesced gets
 * (rs_job_group_*, rs_job_start_in, rs_job_start_get_raw) on a real
 * redis-server:
 *  - a group's fd is readable once one of its jobs is done, until
 *    rs_job_group_clear, and again for a job done after the clear; a
 *    group job's own fd (made when asked) is readable once done;
 *  - gets queued together behind a busy worker (one pipeline) each give
 *    exactly what the blocking rs_get_raw gives: a token, an absent key,
 *    a key holding a hash (WRONGTYPE), a bad collection name; the metrics
 *    count each get once;
 *  - the same gets while the server is frozen: each job's rs_error is the
 *    blocking call's (kind, attempts, message), the run alone after the
 *    shared pipeline failed;
 *  - the group freed with jobs in flight, jobs of it abandoned, the store
 *    closed with gets queued: no leak, no use after free (the ASan and
 *    TSan builds of this test), and every job ends.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "test_support.h"

static int readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {}
    return n == 1 && (p.revents & POLLIN);
}

/* A valid token: {_data: "82"}. */
static const char TOKEN[] = "\x13\x00\x00\x00\x02_data\x00\x03\x00\x00\x00" "82\x00\x00";

static int same_error(const rs_error *a, const rs_error *b)
{
    return a->kind == b->kind && a->retryable == b->retryable && a->attempts == b->attempts &&
           a->reply == b->reply && strcmp(a->message, b->message) == 0;
}

/* A job that holds its worker until `release` is set (or 5 s pass). */
static atomic_int release, holding;
static int hold(rs_store *store, void *arg, rs_error *err)
{
    (void)store;
    (void)err;
    atomic_store(&holding, 1);
    double end = t_now() + 5;
    while (!atomic_load(&release) && t_now() < end) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return arg ? *(int *)arg : 0;
}

/* Starts `hold` in g and returns once it runs (the one worker busy). */
static rs_job *start_hold(rs_store *store, rs_job_group *g, int *arg)
{
    rs_error err;
    atomic_store(&release, 0);
    atomic_store(&holding, 0);
    rs_job *job = rs_job_start_in(store, g, hold, arg, &err);
    CHECK(job != NULL);
    double end = t_now() + 5;
    while (job && !atomic_load(&holding) && t_now() < end) sched_yield();
    CHECK(atomic_load(&holding));
    return job;
}

static int echo(rs_store *store, void *arg, rs_error *err)
{
    (void)store;
    (void)err;
    return *(int *)arg;
}

static rs_store *open_store(int port, const char *workers, const char *timeout,
                            const char *retries)
{
    rs_config *cfg = t_config(port, NULL);
    rs_error err;
    CHECK(rs_config_set(cfg, "workers", workers, &err) == 0);
    if (timeout) CHECK(rs_config_set(cfg, "command_timeout", timeout, &err) == 0);
    if (retries) CHECK(rs_config_set(cfg, "max_retries", retries, &err) == 0);
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    return store;
}

static void group_fd(rs_store *store)
{
    rs_error err;
    rs_job_group *g = rs_job_group_new(&err);
    CHECK(g != NULL);
    if (!g) return;
    int fd = rs_job_group_fd(g);
    CHECK(!readable(fd, 0));
    int one = 1, two = 2;
    rs_job *held = start_hold(store, g, &one);
    rs_job *next = rs_job_start_in(store, g, echo, &two, &err);
    CHECK(held && next);
    CHECK(!readable(fd, 50));                  /* nothing done yet */
    CHECK(!rs_job_ready(held) && !rs_job_ready(next));
    int own = rs_job_fd(next);                 /* made now, not readable yet */
    CHECK(own >= 0 && !readable(own, 0));
    atomic_store(&release, 1);
    CHECK(readable(fd, 2000));
    double end = t_now() + 2;
    while (!(rs_job_ready(held) && rs_job_ready(next)) && t_now() < end) {
        rs_job_group_clear(g);
        if (!(rs_job_ready(held) && rs_job_ready(next))) readable(fd, 100);
    }
    CHECK(rs_job_ready(held) && rs_job_ready(next));
    CHECK(readable(own, 0));
    rs_job_group_clear(g);
    CHECK(!readable(fd, 0));                   /* cleared, nothing done since */
    CHECK(rs_job_finish(held, &err) == 1);
    CHECK(rs_job_finish(next, &err) == 2);

    /* A job done after a clear makes it readable again; its own fd, asked
     * for once done, is readable at once. */
    int three = 3;
    rs_job *late = rs_job_start_in(store, g, echo, &three, &err);
    CHECK(late && readable(fd, 2000));
    CHECK(rs_job_ready(late) && readable(rs_job_fd(late), 0));
    CHECK(rs_job_finish(late, &err) == 3);
    rs_job_group_free(g);
}

/* ---- coalesced gets against rs_get_raw ---------------------------------- */

#define NGETS 16

static const char *coll_of(int i)
{
    static const char *const names[] = {"tok", "absent", "hash", ""};
    return names[i % 4];
}

typedef struct got {
    int rc;
    rs_error err;
    char *out;
    size_t len;
} got;

static int same_got(const got *a, const got *b)
{
    return a->rc == b->rc && a->len == b->len && (a->rc < 0 ? same_error(&a->err, &b->err) : 1) &&
           (!a->out || (b->out && memcmp(a->out, b->out, a->len) == 0));
}

/* NGETS gets queued behind a held worker, so that they go out together;
 * each compared with the blocking call's `want`. */
static void queued_gets(rs_store *store, const got *want, const char *label)
{
    rs_error err;
    rs_job_group *g = rs_job_group_new(&err);
    CHECK(g != NULL);
    if (!g) return;
    rs_job *held = start_hold(store, g, NULL);
    rs_job *jobs[NGETS];
    got res[NGETS];
    memset(res, 0, sizeof res);
    for (int i = 0; i < NGETS; i++) {
        const char *c = coll_of(i);
        jobs[i] = rs_job_start_get_raw(store, g, c, strlen(c), &res[i].out, &res[i].len, NULL,
                                       &err);
        CHECK(jobs[i] != NULL);
    }
    atomic_store(&release, 1);
    CHECK(rs_job_finish(held, &err) == 0);
    for (int i = 0; i < NGETS; i++) {
        if (!jobs[i]) continue;
        res[i].rc = rs_job_finish(jobs[i], &res[i].err);
        int same = same_got(&want[i % 4], &res[i]);
        CHECK(same);
        if (!same)
            fprintf(stderr, "%s: get of '%s': blocking %d [%s] %s / job %d [%s] %s\n", label,
                    coll_of(i), want[i % 4].rc, rs_error_kind_name(want[i % 4].err.kind),
                    want[i % 4].err.message, res[i].rc, rs_error_kind_name(res[i].err.kind),
                    res[i].err.message);
        rs_free(res[i].out);
    }
    rs_job_group_free(g);
}

static void blocking_gets(rs_store *store, got want[4])
{
    for (int i = 0; i < 4; i++) {
        memset(&want[i], 0, sizeof want[i]);
        const char *c = coll_of(i);
        want[i].rc = rs_get_raw(store, c, strlen(c), &want[i].out, &want[i].len, &want[i].err);
    }
}

static void coalesced_gets(int port)
{
    rs_store *store = open_store(port, "1", NULL, NULL);
    if (!store) return;
    rs_error err;
    CHECK(rs_save_raw(store, "tok", 3, TOKEN, sizeof TOKEN - 1, 30, &err) == 0);
    const char *del[] = {"DEL", "rigatoni:resume_token:absent", "rigatoni:resume_token:hash"};
    size_t del_len[] = {3, strlen(del[1]), strlen(del[2])};
    char *out = NULL;
    size_t out_len;
    CHECK(rs_command(store, 3, del, del_len, &out, &out_len, &err) >= 0);
    rs_free(out);
    const char *hset[] = {"HSET", "rigatoni:resume_token:hash", "f", "v"};
    size_t hset_len[] = {4, strlen(hset[1]), 1, 1};
    out = NULL;
    CHECK(rs_command(store, 4, hset, hset_len, &out, &out_len, &err) >= 0);
    rs_free(out);

    got want[4];
    blocking_gets(store, want);
    CHECK(want[0].rc == 1 && want[1].rc == 0 && want[2].rc == -1 && want[3].rc == -1);
    CHECK(want[2].err.kind == RS_ERR_SERVER && want[3].err.kind == RS_ERR_SERIALIZATION);

    rs_store_metrics_reset(store);
    queued_gets(store, want, "healthy");
    rs_metrics_snapshot m;
    rs_store_metrics(store, &m);
    /* Each get once, as the blocking call counts it (the bad collection
     * name fails before any call, uncounted, as blocking). */
    unsigned long long calls = m.ops[RS_METRICS_GET].count;
    rs_store_metrics_reset(store);
    for (int i = 0; i < NGETS; i++) {
        char *o = NULL;
        size_t l;
        const char *c = coll_of(i);
        rs_get_raw(store, c, strlen(c), &o, &l, &err);
        rs_free(o);
    }
    rs_metrics_snapshot mb;
    rs_store_metrics(store, &mb);
    unsigned long long blocking_calls = mb.ops[RS_METRICS_GET].count;
    CHECK(calls == blocking_calls);
    CHECK(m.ops[RS_METRICS_GET].errors[RS_ERR_SERVER] == mb.ops[RS_METRICS_GET].errors[RS_ERR_SERVER]);
    if (calls != blocking_calls)
        fprintf(stderr, "gets counted: jobs %llu, blocking %llu\n", calls, blocking_calls);
    for (int i = 0; i < 4; i++) rs_free(want[i].out);
    rs_store_close(store);
}

/* The server frozen: the shared pipeline times out, each get then runs
 * alone and fails as the blocking call does. */
static void frozen_gets(int port)
{
    rs_store *store = open_store(port, "4", "0.2", "0");
    if (!store) return;
    kill(t_server_pid, SIGSTOP);
    got want[4];
    blocking_gets(store, want);
    CHECK(want[0].rc == -1 && want[0].err.kind == RS_ERR_TIMEOUT);
    queued_gets(store, want, "frozen");
    kill(t_server_pid, SIGCONT);
    for (int i = 0; i < 4; i++) rs_free(want[i].out);
    rs_store_close(store);
}

/* ---- lifetimes ---------------------------------------------------------- */

static int freed_args;
/* An abandoned get's free_arg: its arg is where its bytes went. */
static void free_counted(void *arg)
{
    rs_free(*(char **)arg);
    __atomic_add_fetch(&freed_args, 1, __ATOMIC_SEQ_CST);
}

static void *release_later(void *arg)
{
    (void)arg;
    struct timespec t = {0, 100000000};
    nanosleep(&t, NULL);
    atomic_store(&release, 1);
    return NULL;
}

static void lifetimes(int port)
{
    rs_store *store = open_store(port, "1", NULL, NULL);
    if (!store) return;
    rs_error err;
    rs_job_group *g = rs_job_group_new(&err);
    CHECK(g != NULL);
    if (!g) return;
    rs_job *held = start_hold(store, g, NULL);
    char *outs[6] = {0};
    size_t lens[6];
    rs_job *gets[6];
    for (int i = 0; i < 6; i++)
        gets[i] = rs_job_start_get_raw(store, g, "tok", 3, &outs[i], &lens[i], &outs[i], &err);
    /* The group goes first: its jobs stay valid. */
    rs_job_group_free(g);
    /* Two abandoned while queued (their arg freed once they ran), one
     * finished, the rest left to the close. */
    rs_job_abandon(gets[0], free_counted);
    rs_job_abandon(gets[1], free_counted);
    atomic_store(&release, 1);
    CHECK(rs_job_finish(held, &err) == 0);
    CHECK(rs_job_finish(gets[2], &err) == 1);
    rs_free(outs[2]);
    for (int i = 3; i < 6; i++) {
        CHECK(rs_job_finish(gets[i], &err) == 1);
        rs_free(outs[i]);
    }
    CHECK(__atomic_load_n(&freed_args, __ATOMIC_SEQ_CST) == 2);

    /* The store closed with gets queued behind a held worker: they end
     * with "store closed before the job ran", the group's fd readable. */
    g = rs_job_group_new(&err);
    held = start_hold(store, g, NULL);
    for (int i = 0; i < 6; i++) {
        outs[i] = NULL;
        gets[i] = rs_job_start_get_raw(store, g, "tok", 3, &outs[i], &lens[i], NULL, &err);
    }
    rs_job_abandon(gets[5], NULL);
    pthread_t t;
    pthread_create(&t, NULL, release_later, NULL);
    rs_store_close(store);
    pthread_join(t, NULL);
    CHECK(readable(rs_job_group_fd(g), 0));
    CHECK(rs_job_finish(held, &err) == 0);
    for (int i = 0; i < 5; i++) {
        int rc = rs_job_finish(gets[i], &err);
        CHECK(rc == -1 && err.kind == RS_ERR_CONNECTION && err.attempts == 0);
        CHECK(outs[i] == NULL);
    }
    rs_job_group_free(g);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int port = t_start_server(NULL);
    atexit(t_thaw);              /* runs before t_stop_server: registered after it */
    signal(SIGSEGV, t_on_fatal);
    signal(SIGABRT, t_on_fatal);
    signal(SIGINT, t_on_fatal);
    signal(SIGTERM, t_on_fatal);

    rs_store *store = open_store(port, "1", NULL, NULL);
    if (!store) return t_report("test_job_group");
    group_fd(store);
    rs_store_close(store);
    coalesced_gets(port);
    frozen_gets(port);
    lifetimes(port);
    return t_report("test_job_group");
}
