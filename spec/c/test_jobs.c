/* SPDX-License-Identifier: MIT */
/* test_jobs.c -- jobs (rs_job_start / finish / abandon) on a real
 * redis-server, against the blocking calls they wrap:
 *  - the same results and the same rs_error as the blocking call (save,
 *    get, ttl, locks, a bad collection name, a fenced save not owned);
 *  - the fd is readable exactly when rs_job_ready says 1, and stays so;
 *  - the server frozen (SIGSTOP): starting a job takes < 10 ms, the
 *    caller's thread keeps running, and the job ends with the error the
 *    blocking call gives;
 *  - abandon before and after the job is done (free_arg called once);
 *  - closing the store with jobs queued and running on a frozen server
 *    returns within command_timeout + a margin, not after the retries'
 *    backoff; every job then finishes with its error; a job's fn starting
 *    another job during the close is refused;
 *  - contrib/epoll_jobs (built next to the tests) drives jobs from epoll.
 * Leaks and races: the ASan and TSan builds of this test (make test).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#include "test_support.h"

static int readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {}
    return n == 1 && (p.revents & POLLIN);
}

/* ---- one operation, run blocking or as a job ---------------------------- */

enum { OP_SAVE, OP_GET, OP_TTL, OP_ACQUIRE, OP_REFRESH, OP_RELEASE, OP_FENCED, OP_GET_EMPTY };

/* A valid token: {_data: "82"}. */
static const char TOKEN[] = "\x13\x00\x00\x00\x02_data\x00\x03\x00\x00\x00" "82\x00\x00";

typedef struct op {
    int kind;
    const char *coll;        /* token ops */
    const char *owner;       /* lock ops */
    char *out;               /* OP_GET: the bytes read */
    size_t out_len;
    double seconds;          /* OP_TTL */
    pthread_t ran_on;
} op;

static int run_op(rs_store *store, void *arg, rs_error *err)
{
    op *o = arg;
    o->ran_on = pthread_self();
    switch (o->kind) {
    case OP_SAVE:
        return rs_save_raw(store, o->coll, strlen(o->coll), TOKEN, sizeof TOKEN - 1, 30, err);
    case OP_GET:
        return rs_get_raw(store, o->coll, strlen(o->coll), &o->out, &o->out_len, err);
    case OP_GET_EMPTY:
        return rs_get_raw(store, "", 0, &o->out, &o->out_len, err);
    case OP_TTL:
        return rs_ttl(store, o->coll, strlen(o->coll), &o->seconds, err);
    case OP_ACQUIRE:
        return rs_lock_acquire(store, "jobs:lock", o->owner, 30, err);
    case OP_REFRESH:
        return rs_lock_refresh(store, "jobs:lock", o->owner, 30, err);
    case OP_RELEASE:
        return rs_lock_release(store, "jobs:lock", o->owner, err);
    case OP_FENCED:
        return rs_save_fenced(store, o->coll, strlen(o->coll), TOKEN, sizeof TOKEN - 1,
                              "jobs:lock", o->owner, err);
    }
    return -1;
}

static int same_error(const rs_error *a, const rs_error *b)
{
    return a->kind == b->kind && a->retryable == b->retryable && a->attempts == b->attempts &&
           a->reply == b->reply && strcmp(a->message, b->message) == 0;
}

/* Runs `o` blocking, then as a job; both must give the same. */
static void compare(rs_store *store, op o, const char *label)
{
    op blocking = o, queued = o;
    rs_error eb = {0}, ej = {0};
    int rb = run_op(store, &blocking, &eb);
    rs_job *job = rs_job_start(store, run_op, &queued, &ej);
    CHECK(job != NULL);
    if (!job) return;
    int rj = rs_job_finish(job, &ej);
    int same = rb == rj && same_error(&eb, &ej) && blocking.out_len == queued.out_len &&
               (!blocking.out || (queued.out && memcmp(blocking.out, queued.out, blocking.out_len) == 0)) &&
               (blocking.kind != OP_TTL || (queued.seconds > 0 && queued.seconds <= 30));
    CHECK(same);
    CHECK(!pthread_equal(queued.ran_on, pthread_self()));
    if (!same)
        fprintf(stderr, "%s: blocking %d [%s] %s / job %d [%s] %s\n", label, rb,
                rs_error_kind_name(eb.kind), eb.message, rj, rs_error_kind_name(ej.kind),
                ej.message);
    rs_free(blocking.out);
    rs_free(queued.out);
}

static void results_equal(rs_store *store)
{
    compare(store, (op){.kind = OP_SAVE, .coll = "a"}, "save");
    compare(store, (op){.kind = OP_GET, .coll = "a"}, "get");
    compare(store, (op){.kind = OP_GET, .coll = "absent"}, "get absent");
    compare(store, (op){.kind = OP_TTL, .coll = "a"}, "ttl");
    compare(store, (op){.kind = OP_GET_EMPTY}, "bad collection name");
    compare(store, (op){.kind = OP_ACQUIRE, .owner = "me"}, "acquire");
    compare(store, (op){.kind = OP_ACQUIRE, .owner = "thief"}, "acquire held");
    compare(store, (op){.kind = OP_REFRESH, .owner = "me"}, "refresh");
    compare(store, (op){.kind = OP_FENCED, .coll = "f", .owner = "thief"}, "fenced not owner");
    compare(store, (op){.kind = OP_REFRESH, .owner = "thief"}, "refresh not held");

    /* The kinds themselves, once more through a job. */
    op bad = {.kind = OP_GET_EMPTY}, fenced = {.kind = OP_FENCED, .coll = "f", .owner = "thief"};
    rs_error err;
    rs_job *j = rs_job_start(store, run_op, &bad, &err);
    CHECK(j && rs_job_finish(j, &err) == -1 && err.kind == RS_ERR_SERIALIZATION);
    j = rs_job_start(store, run_op, &fenced, &err);
    CHECK(j && rs_job_finish(j, &err) == -1 && err.kind == RS_ERR_NOT_OWNER);
    op release = {.kind = OP_RELEASE, .owner = "me"};
    j = rs_job_start(store, run_op, &release, &err);
    CHECK(j && rs_job_finish(j, &err) == 1);
    /* NULL err everywhere it may be NULL. */
    op get = {.kind = OP_GET, .coll = "a"};
    j = rs_job_start(store, run_op, &get, NULL);
    CHECK(j && rs_job_finish(j, NULL) == 1);
    rs_free(get.out);
}

/* ---- the workers take none of the application's signals ---------------- */

static int signals_blocked(rs_store *store, void *arg, rs_error *err)
{
    (void)store;
    (void)arg;
    (void)err;
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    return sigismember(&mask, SIGINT) && sigismember(&mask, SIGTERM) &&
           sigismember(&mask, SIGUSR1) && sigismember(&mask, SIGCHLD);
}

static void workers_block_signals(rs_store *store)
{
    rs_error err;
    for (int i = 0; i < 8; i++) {       /* more jobs than workers: each of them */
        rs_job *job = rs_job_start(store, signals_blocked, NULL, &err);
        CHECK(job && rs_job_finish(job, &err) == 1);
    }
}

/* ---- the fd and rs_job_ready ------------------------------------------ */

typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open, entered;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = g->entered = 0;
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void gate_wait_entered(gate *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->entered) pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

/* A job that waits for the test to open its gate, then returns 7 with an
 * error set (a job's error travels whatever fn returns). */
static int gated(rs_store *store, void *arg, rs_error *err)
{
    (void)store;
    gate *g = arg;
    pthread_mutex_lock(&g->lock);
    g->entered = 1;
    pthread_cond_broadcast(&g->cond);
    while (!g->open) pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    err->kind = RS_ERR_SERVER;
    strcpy(err->message, "from the gated job");
    return 7;
}

static void fd_follows_ready(rs_store *store)
{
    gate g;
    gate_init(&g);
    rs_error err;
    rs_job *job = rs_job_start(store, gated, &g, &err);
    CHECK(job != NULL);
    if (!job) return;
    int fd = rs_job_fd(job);
    CHECK(fd >= 0);
    gate_wait_entered(&g);
    CHECK(!readable(fd, 0));
    CHECK(rs_job_ready(job) == 0);
    CHECK(!readable(fd, 50));            /* still running: never readable */
    CHECK(rs_job_ready(job) == 0);
    gate_open(&g);
    CHECK(readable(fd, 5000));
    CHECK(rs_job_ready(job) == 1);
    CHECK(readable(fd, 0));              /* and it stays so */
    CHECK(rs_job_ready(job) == 1);
    CHECK(rs_job_finish(job, &err) == 7);
    CHECK(err.kind == RS_ERR_SERVER && strcmp(err.message, "from the gated job") == 0);
}

/* ---- abandon ------------------------------------------------------------ */

static atomic_int freed;
static pthread_t freed_on;

typedef struct owned {
    gate g;
    char *buffer;            /* the arg owns memory: a leak shows in LSan */
} owned;

static void free_owned(void *arg)
{
    owned *o = arg;
    freed_on = pthread_self();
    free(o->buffer);
    free(o);
    atomic_fetch_add(&freed, 1);
}

static void abandon(rs_store *store)
{
    rs_error err;
    /* Before done: freed by the worker once fn returns. */
    owned *o = calloc(1, sizeof *o);
    gate_init(&o->g);
    o->buffer = malloc(100);
    rs_job *job = rs_job_start(store, gated, o, &err);
    CHECK(job != NULL);
    gate_wait_entered(&o->g);
    atomic_store(&freed, 0);
    rs_job_abandon(job, free_owned);
    CHECK(atomic_load(&freed) == 0);
    gate_open(&o->g);                    /* o is the job's now; gate_open runs before the free */
    for (int i = 0; i < 500 && atomic_load(&freed) == 0; i++) usleep(10000);
    CHECK(atomic_load(&freed) == 1);
    CHECK(!pthread_equal(freed_on, pthread_self()));

    /* After done: freed at once, on this thread. */
    o = calloc(1, sizeof *o);
    gate_init(&o->g);
    o->buffer = malloc(100);
    o->g.open = 1;
    job = rs_job_start(store, gated, o, &err);
    CHECK(job && readable(rs_job_fd(job), 5000));
    atomic_store(&freed, 0);
    rs_job_abandon(job, free_owned);
    CHECK(atomic_load(&freed) == 1);
    CHECK(pthread_equal(freed_on, pthread_self()));

    /* A NULL free_arg: the arg stays the caller's. */
    op get = {.kind = OP_GET, .coll = "absent"};
    job = rs_job_start(store, run_op, &get, &err);
    CHECK(job != NULL);
    CHECK(job && readable(rs_job_fd(job), 5000));
    rs_job_abandon(job, NULL);
}

/* ---- a frozen server ---------------------------------------------------- */

static rs_config *short_config(int port, const char *timeout, const char *retries,
                               const char *delay, const char *workers)
{
    rs_config *cfg = t_config(port, NULL);
    CHECK(cfg != NULL);
    rs_error err;
    CHECK(rs_config_set(cfg, "command_timeout", timeout, &err) == 0);
    CHECK(rs_config_set(cfg, "connection_timeout", timeout, &err) == 0);
    CHECK(rs_config_set(cfg, "max_retries", retries, &err) == 0);
    CHECK(rs_config_set(cfg, "retry_base_delay", delay, &err) == 0);
    CHECK(rs_config_set(cfg, "retry_max_delay", delay, &err) == 0);
    CHECK(rs_config_set(cfg, "workers", workers, &err) == 0);
    return cfg;
}

/* Each op's job on a frozen server: started at once, the caller's thread
 * keeps turning (it polls the fds with a 5 ms timeout), and each ends
 * with the error its blocking call gives. */
static void frozen(int port)
{
    rs_config *cfg = short_config(port, "100ms", "1", "10ms", "4");
    rs_error err;
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return;
    /* Connections in the pool, so both sides meet the same frozen server
     * on an open connection. */
    op warm[4] = {{.kind = OP_SAVE, .coll = "a"}, {.kind = OP_SAVE, .coll = "a"},
                  {.kind = OP_SAVE, .coll = "a"}, {.kind = OP_SAVE, .coll = "a"}};
    rs_job *w[4];
    for (int i = 0; i < 4; i++) w[i] = rs_job_start(store, run_op, &warm[i], &err);
    for (int i = 0; i < 4; i++) CHECK(w[i] && rs_job_finish(w[i], &err) == 0);

    kill(t_server_pid, SIGSTOP);
    enum { N = 4 };
    const int kinds[N] = {OP_GET, OP_SAVE, OP_TTL, OP_REFRESH};
    rs_error blocking[N];
    op ops[N];
    for (int i = 0; i < N; i++) {
        op o = {.kind = kinds[i], .coll = "a", .owner = "me"};
        run_op(store, &o, &blocking[i]);
        rs_free(o.out);
        ops[i] = (op){.kind = kinds[i], .coll = "a", .owner = "me"};
    }
    rs_job *jobs[N];
    double took[N], longest_gap = 0, longest_call = 0;
    for (int i = 0; i < N; i++) {
        double t0 = t_now();
        jobs[i] = rs_job_start(store, run_op, &ops[i], &err);
        took[i] = t_now() - t0;
        CHECK(jobs[i] != NULL);
    }
    /* Each start < 10 ms (the median of 4: a busy 2-core machine may
     * preempt one), and none near the 100 ms a wait on the server takes. */
    double sorted[N];
    memcpy(sorted, took, sizeof sorted);
    for (int i = 1; i < N; i++)
        for (int k = i; k > 0 && sorted[k] < sorted[k - 1]; k--) {
            double t = sorted[k];
            sorted[k] = sorted[k - 1];
            sorted[k - 1] = t;
        }
    CHECK(sorted[N / 2] < 0.010);
    CHECK(sorted[N - 1] < 0.050);
    printf("frozen server: starts took %.3f / %.3f ms (median / slowest)\n", sorted[N / 2] * 1e3,
           sorted[N - 1] * 1e3);
    /* The caller's own loop: it turns every few ms until all are done. */
    int left = N;
    double last = t_now(), began = last;
    int done[N] = {0};
    while (left > 0 && t_now() - began < 10) {
        struct pollfd p[N];
        for (int i = 0; i < N; i++) p[i] = (struct pollfd){.fd = jobs[i] ? rs_job_fd(jobs[i]) : -1,
                                                           .events = POLLIN};
        poll(p, N, 5);
        double t = t_now();
        if (t - last > longest_gap) longest_gap = t - last;
        last = t;
        for (int i = 0; i < N; i++)
            if (jobs[i] && !done[i] && (p[i].revents & POLLIN)) {
                double t0 = t_now();
                CHECK(rs_job_ready(jobs[i]) == 1);
                rs_error e;
                CHECK(rs_job_finish(jobs[i], &e) == -1);
                jobs[i] = NULL;
                if (t_now() - t0 > longest_call) longest_call = t_now() - t0;
                CHECK(same_error(&e, &blocking[i]));
                if (!same_error(&e, &blocking[i]))
                    fprintf(stderr, "frozen op %d: blocking [%s] %s / job [%s] %s\n", i,
                            rs_error_kind_name(blocking[i].kind), blocking[i].message,
                            rs_error_kind_name(e.kind), e.message);
                done[i] = 1;
                left--;
            }
    }
    CHECK(left == 0);
    /* A call that waited for the server would take its 100 ms timeout:
     * ready + finish of a job whose fd is readable return at once. The
     * loop's own gaps (5 ms polls) are printed: a loaded machine may
     * preempt it. */
    CHECK(longest_call < 0.050);
    printf("frozen server: ready + finish took at most %.3f ms; the caller's 5 ms poll loop "
           "turned at least every %.1f ms\n", longest_call * 1e3, longest_gap * 1e3);
    if (longest_gap >= 0.100) fprintf(stderr, "caller blocked for %.3fs\n", longest_gap);
    kill(t_server_pid, SIGCONT);
    rs_store_close(store);
}

/* ---- closing the store with jobs in flight ------------------------------ */

typedef struct nested {
    op get;
    rs_job *started;         /* what rs_job_start gave fn after its get */
    rs_error start_err;
} nested;

static int get_then_start(rs_store *store, void *arg, rs_error *err)
{
    nested *n = arg;
    int rc = run_op(store, &n->get, err);
    n->started = rs_job_start(store, run_op, &n->get, &n->start_err);
    return rc;
}

/* Closes the store `after` seconds after the jobs started: 0.1 s, while
 * the running ones' first attempt waits for its 0.2 s timeout; 0.3 s,
 * while they sleep their backoff. */
static void close_in_flight(int port, double after)
{
    /* Backoffs of 1 s: a close that waited for them would take seconds. */
    rs_config *cfg = short_config(port, "200ms", "3", "1s", "2");
    rs_error err;
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return;
    kill(t_server_pid, SIGSTOP);
    enum { RUNNING = 2, QUEUED = 4, ABANDONED = 2, N = RUNNING + QUEUED + ABANDONED };
    nested ops[N];
    rs_job *jobs[N];
    for (int i = 0; i < RUNNING + QUEUED; i++) {
        ops[i] = (nested){.get = {.kind = OP_GET, .coll = "a"}};
        jobs[i] = rs_job_start(store, get_then_start, &ops[i], &err);
        CHECK(jobs[i] != NULL);
    }
    /* The last ones queued are abandoned: freed by the close. */
    atomic_store(&freed, 0);
    for (int i = RUNNING + QUEUED; i < N; i++) {
        owned *o = calloc(1, sizeof *o);
        gate_init(&o->g);
        o->buffer = malloc(100);
        rs_job *j = rs_job_start(store, gated, o, &err);
        CHECK(j != NULL);
        if (j) rs_job_abandon(j, free_owned);
        jobs[i] = NULL;
    }
    usleep((useconds_t)(after * 1e6));
    for (int i = 0; i < RUNNING + QUEUED; i++) CHECK(rs_job_ready(jobs[i]) == 0);
    double t0 = t_now();
    rs_store_close(store);
    double took = t_now() - t0;
    CHECK(took < 0.200 + 0.300);
    printf("close %.1f s after the jobs started: %.3f s (command_timeout 0.2 s, backoffs 1 s)\n",
           after, took);
    if (took >= 0.5) fprintf(stderr, "close took %.3fs\n", took);
    kill(t_server_pid, SIGCONT);
    CHECK(atomic_load(&freed) == ABANDONED);     /* queued, never ran: freed by the close */
    int closed = 0, failed = 0;
    for (int i = 0; i < RUNNING + QUEUED; i++) {
        if (!jobs[i]) continue;
        CHECK(rs_job_ready(jobs[i]) == 1);      /* every job is done once close returns */
        rs_error e;
        CHECK(rs_job_finish(jobs[i], &e) == -1);
        if (e.kind == RS_ERR_CONNECTION && e.attempts == 0 && !e.retryable &&
            strstr(e.message, "store closed before the job ran")) {
            closed++;
        } else {
            /* It ran: its get failed as the blocking call fails (timeout),
             * and its fn's rs_job_start during the close was refused. */
            CHECK(e.kind == RS_ERR_TIMEOUT && e.attempts >= 1);
            CHECK(ops[i].started == NULL && ops[i].start_err.kind == RS_ERR_CONNECTION);
            failed++;
        }
        rs_free(ops[i].get.out);
    }
    CHECK(closed == QUEUED && failed == RUNNING);
    if (closed != QUEUED) fprintf(stderr, "closed %d failed %d\n", closed, failed);
}

/* ---- many threads at once -----------------------------------------------
 * Three threads start jobs (a PING, or nothing) and finish or abandon each,
 * before or after it is done, in every order; each keeps its last jobs
 * unfinished, and the store is closed with them queued or running; they
 * are finished or abandoned after the close. TSan watches the handovers. */

enum { HAMMER_THREADS = 3, HAMMER_JOBS = 300, HAMMER_KEPT = 20 };

static int ping_or_not(rs_store *store, void *arg, rs_error *err)
{
    int *n = arg;
    if (*n >= HAMMER_JOBS) usleep(5000);      /* the kept ones: still queued at the close */
    if (*n % 2) return rs_ping(store, err);
    return *n;
}

typedef struct hammer {
    rs_store *store;
    int args[HAMMER_JOBS + HAMMER_KEPT];
    rs_job *kept[HAMMER_KEPT];
    int failures;
} hammer;

static void free_int(void *arg)
{
    free(arg);
}

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    unsigned seed = (unsigned)(uintptr_t)h;
    for (int i = 0; i < HAMMER_JOBS; i++) {
        rs_error err;
        int way = rand_r(&seed) % 4;
        if (way == 3) {                  /* abandoned, the arg the job's */
            int *n = malloc(sizeof *n);
            *n = i;
            rs_job *job = rs_job_start(h->store, ping_or_not, n, &err);
            if (!job) {
                free(n);
                h->failures++;
                continue;
            }
            if (rand_r(&seed) % 2) readable(rs_job_fd(job), 1000);
            rs_job_abandon(job, free_int);
            continue;
        }
        h->args[i] = i;
        rs_job *job = rs_job_start(h->store, ping_or_not, &h->args[i], &err);
        if (!job) {
            h->failures++;
            continue;
        }
        if (way == 1) readable(rs_job_fd(job), 1000);
        if (way == 2) while (!rs_job_ready(job)) sched_yield();
        int rc = rs_job_finish(job, &err);
        if (rc != (i % 2 ? 0 : i)) h->failures++;
    }
    for (int k = 0; k < HAMMER_KEPT; k++) {
        rs_error err;
        h->args[HAMMER_JOBS + k] = HAMMER_JOBS + k;
        h->kept[k] = rs_job_start(h->store, ping_or_not, &h->args[HAMMER_JOBS + k], &err);
        if (!h->kept[k]) h->failures++;
    }
    return NULL;
}

static void hammer_threads(int port)
{
    rs_config *cfg = t_config(port, NULL);
    rs_error err;
    CHECK(rs_config_set(cfg, "workers", "3", &err) == 0);
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return;
    hammer h[HAMMER_THREADS];
    pthread_t threads[HAMMER_THREADS];
    for (int t = 0; t < HAMMER_THREADS; t++) {
        memset(&h[t], 0, sizeof h[t]);
        h[t].store = store;
        pthread_create(&threads[t], NULL, hammer_main, &h[t]);
    }
    for (int t = 0; t < HAMMER_THREADS; t++) pthread_join(threads[t], NULL);
    rs_store_close(store);
    int ran = 0, closed = 0, refused = 0, other = 0;
    for (int t = 0; t < HAMMER_THREADS; t++) {
        CHECK(h[t].failures == 0);
        for (int k = 0; k < HAMMER_KEPT; k++) {
            if (!h[t].kept[k]) continue;
            CHECK(rs_job_ready(h[t].kept[k]) == 1);
            if (k % 3 == 0) {
                rs_job_abandon(h[t].kept[k], NULL);
                continue;
            }
            int rc = rs_job_finish(h[t].kept[k], &err);
            int n = HAMMER_JOBS + k;
            if (rc == (n % 2 ? 0 : n)) ran++;
            else if (rc == -1 && err.kind == RS_ERR_CONNECTION && err.attempts == 0 &&
                     strstr(err.message, "store closed before the job ran")) closed++;
            /* Running at the close, its PING begun after: refused, unsent. */
            else if (rc == -1 && err.kind == RS_ERR_CONNECTION && err.attempts == 0 &&
                     strstr(err.message, "PING: not sent: the store is closing")) refused++;
            else other++;
        }
    }
    CHECK(other == 0);
    CHECK(closed > 0);
    printf("%d threads x %d jobs; of the %d kept for the close and finished after it: %d ran, "
           "%d closed before they ran, %d refused their call\n", HAMMER_THREADS, HAMMER_JOBS,
           ran + closed + refused + other, ran, closed, refused);
}

/* ---- contrib/epoll_jobs ------------------------------------------------- */

static void epoll_example(int port)
{
    char self[PATH_MAX], cmd[2 * PATH_MAX + 200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    if (n <= 0) return;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(cmd, sizeof cmd, "%s/../examples/epoll_jobs redis://127.0.0.1:%d 20 >%s/epoll.out 2>&1",
             self, port, t_server_dir);
    int rc = system(cmd);
    CHECK(rc == 0);
    char path[300], out[4096] = "";
    snprintf(path, sizeof path, "%s/epoll.out", t_server_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t got = fread(out, 1, sizeof out - 1, f);
        out[got] = '\0';
        fclose(f);
    }
    CHECK(strstr(out, "20 saved, 20 read back, 0 failed") != NULL);
    if (rc != 0 || !strstr(out, "20 read back")) fprintf(stderr, "epoll_jobs said:\n%s\n", out);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);     /* the figures, even when a sanitizer ends the run */
    int port = t_start_server(NULL);
    atexit(t_thaw);              /* runs before t_stop_server: registered after it */
    signal(SIGSEGV, t_on_fatal);
    signal(SIGABRT, t_on_fatal);
    signal(SIGINT, t_on_fatal);
    signal(SIGTERM, t_on_fatal);
    rs_config *cfg = t_config(port, NULL);
    rs_error err;
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return t_report("test_jobs");

    results_equal(store);
    workers_block_signals(store);
    fd_follows_ready(store);
    abandon(store);
    /* A store that never starts a job starts no thread, and closes. */
    rs_store_close(store);
    frozen(port);
    close_in_flight(port, 0.1);
    close_in_flight(port, 0.3);
    hammer_threads(port);
    epoll_example(port);
    return t_report("test_jobs");
}
