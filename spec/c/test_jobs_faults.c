/* SPDX-License-Identifier: MIT */
/* test_jobs_faults.c -- jobs at the edges the reviewer found, on a real
 * redis-server:
 *  - a fork: in the child, rs_job_start fails with a config error naming
 *    the fork (no worker runs there) and rs_store_close returns;
 *  - rs_job_ready synchronises: what fn wrote into arg is the caller's to
 *    read once ready says 1 (TSan sees the handover);
 *  - a lock acquire whose reply is lost on a frozen server, the store
 *    closed meanwhile: the unknown outcome counts the one SET sent;
 *  - pool_size 1, 8 jobs on a frozen server: the close cuts the calls
 *    waiting for the connection, which then open no connection (the
 *    store's debug log) and write nothing;
 *  - rs_store_close from a job's fn (forbidden) aborts, naming the misuse
 *    (in a forked child).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include "test_support.h"

static const char TOKEN[] = "\x13\x00\x00\x00\x02_data\x00\x03\x00\x00\x00" "82\x00\x00";

static rs_config *config(int port, const char *const *kv)
{
    rs_config *cfg = t_config(port, NULL);
    rs_error err;
    for (int i = 0; cfg && kv[i]; i += 2) {
        int ok = rs_config_set(cfg, kv[i], kv[i + 1], &err) == 0;
        CHECK(ok);
        if (!ok) fprintf(stderr, "%s: %s\n", kv[i], err.message);
    }
    return cfg;
}

static rs_store *open_with(int port, const char *const *kv)
{
    rs_config *cfg = config(port, kv);
    rs_error err;
    rs_store *store = cfg ? rs_store_open(cfg, &err) : NULL;
    rs_config_free(cfg);
    CHECK(store != NULL);
    return store;
}

/* The child's status, or -1 when it did not end within `seconds` (then
 * it is killed). */
static int wait_child(pid_t pid, double seconds)
{
    int status;
    double until = t_now() + seconds;
    while (t_now() < until) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) return status;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* A child process of the test: never the server's killer, never the
 * parent's atexit handlers. */
static void become_child(void)
{
    t_server_pid = 0;
    signal(SIGABRT, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
}

static int get_fn(rs_store *store, void *arg, rs_error *err)
{
    (void)arg;
    char *out = NULL;
    size_t len;
    int rc = rs_get_raw(store, "c", 1, &out, &len, err);
    rs_free(out);
    return rc < 0 ? -1 : 7;
}

/* ---- fork ---------------------------------------------------------------- */

static void forked(int port)
{
    rs_store *store = open_with(port, (const char *const[]){"workers", "2", NULL});
    if (!store) return;
    rs_error err;
    rs_job *job = rs_job_start(store, get_fn, NULL, &err);
    CHECK(job && rs_job_finish(job, &err) == 7);     /* the workers run */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        become_child();
        rs_job *c = rs_job_start(store, get_fn, NULL, &err);
        int code = 0;
        if (c) {
            code = 1;                 /* accepted: it would never run */
            rs_job_abandon(c, NULL);
        } else if (err.kind != RS_ERR_CONFIG || !strstr(err.message, "fork")) {
            fprintf(stderr, "child: rs_job_start said [%s] %s\n", rs_error_kind_name(err.kind),
                    err.message);
            code = 2;
        }
        rs_store_close(store);        /* must return */
        _exit(code);
    }
    int status = wait_child(pid, 5);
    CHECK(status != -1);                                  /* the child's close returned */
    CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (status == -1) fprintf(stderr, "fork: the child hung (killed)\n");
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "fork: the child ended with status %#x\n", status);
    /* The parent's store is unharmed. */
    job = rs_job_start(store, get_fn, NULL, &err);
    CHECK(job && rs_job_finish(job, &err) == 7);
    rs_store_close(store);
}

/* ---- rs_job_ready synchronises ----------------------------------------- */

typedef struct written {
    int value;               /* plain memory: only the job's handover orders it */
    char text[32];
} written;

static int write_arg(rs_store *store, void *arg, rs_error *err)
{
    (void)store;
    (void)err;
    written *w = arg;
    w->value = 42;
    strcpy(w->text, "from the worker");
    return 0;
}

static void ready_synchronises(int port)
{
    rs_store *store = open_with(port, (const char *const[]){"workers", "2", NULL});
    if (!store) return;
    int bad = 0;
    rs_job *jobs[20];
    written w[20];
    for (int i = 0; i < 20; i++) {
        memset(&w[i], 0, sizeof w[i]);
        rs_error err;
        jobs[i] = rs_job_start(store, write_arg, &w[i], &err);
        CHECK(jobs[i] != NULL);
        if (!jobs[i]) continue;
        while (!rs_job_ready(jobs[i])) sched_yield();
        /* Read before finish: rs_job_ready said 1, arg is ours again. */
        if (w[i].value != 42 || strcmp(w[i].text, "from the worker") != 0) bad++;
    }
    CHECK(bad == 0);
    for (int i = 0; i < 20; i++) {
        rs_error err;
        if (jobs[i]) CHECK(rs_job_finish(jobs[i], &err) == 0);
    }
    rs_store_close(store);
}

/* ---- a lost acquire, the store closed meanwhile ------------------------- */

static int acquire_fn(rs_store *store, void *arg, rs_error *err)
{
    (void)arg;
    return rs_lock_acquire(store, "faults:lock", "me", 10, err);
}

static void lost_acquire_closed(int port)
{
    rs_store *store = open_with(port, (const char *const[]){
        "workers", "2", "command_timeout", "300ms", "connection_timeout", "300ms",
        "max_retries", "3", "retry_base_delay", "2s", "retry_max_delay", "2s", NULL});
    if (!store) return;
    rs_error err;
    CHECK(rs_ping(store, &err) == 0);           /* a connection in the pool */
    kill(t_server_pid, SIGSTOP);
    rs_job *job = rs_job_start(store, acquire_fn, NULL, &err);
    CHECK(job != NULL);
    usleep(100000);                             /* its SET NX is on the wire */
    double t0 = t_now();
    rs_store_close(store);
    double took = t_now() - t0;
    t_thaw();
    CHECK(took < 0.3 + 0.5);
    if (!job) return;
    int rc = rs_job_finish(job, &err);
    CHECK(rc == -1 && err.kind == RS_ERR_UNKNOWN);
    /* One SET was sent: one attempt, whatever the close refused after. */
    CHECK(err.attempts == 1 && strstr(err.message, "after 1 attempt:") != NULL);
    printf("lost acquire, store closed: %.3f s; [%s] attempts %d: %s\n", took,
           rs_error_kind_name(err.kind), err.attempts, err.message);
    /* The key may hold the lock now that the server ran the SET. */
    rs_store *again = open_with(port, (const char *const[]){NULL});
    if (again) {
        const char *argv[] = {"DEL", "faults:lock"};
        size_t lens[] = {3, 11};
        char *out = NULL;
        size_t len;
        rs_command(again, 2, argv, lens, &out, &len, &err);
        rs_free(out);
        rs_store_close(again);
    }
}

/* ---- the close cuts calls waiting for a pool connection ----------------- */

static int save_fn(rs_store *store, void *arg, rs_error *err)
{
    char coll[16];
    snprintf(coll, sizeof coll, "pw:%d", (int)(intptr_t)arg);
    return rs_save_raw(store, coll, strlen(coll), TOKEN, sizeof TOKEN - 1, RS_TTL_NONE, err);
}

/* Connections the store opened once its close began (its debug log says
 * "connected to" for each): each would carry a SET written after it. */
static atomic_int closing_now, connected_after;

static void count_connects(rs_log_level level, const char *message, void *userdata)
{
    (void)level;
    (void)userdata;
    if (atomic_load(&closing_now) && strstr(message, "connected to")) atomic_fetch_add(&connected_after, 1);
}

static void pool_wait_closed(int port)
{
    enum { N = 8 };
    rs_config *cfg = config(port, (const char *const[]){
        "workers", "8", "pool_size", "1", "command_timeout", "300ms", "connection_timeout", "3s",
        "max_retries", "3", "retry_base_delay", "2s", "retry_max_delay", "2s", NULL});
    if (!cfg) return;
    rs_config_set_log_handler(cfg, count_connects, NULL);
    rs_log_set_level(RS_LOG_DEBUG);
    rs_error err;
    rs_store *store = rs_store_open(cfg, &err);
    rs_config_free(cfg);
    CHECK(store != NULL);
    if (!store) return;
    CHECK(rs_ping(store, &err) == 0);
    kill(t_server_pid, SIGSTOP);
    rs_job *jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = rs_job_start(store, save_fn, (void *)(intptr_t)i, &err);
        CHECK(jobs[i] != NULL);
    }
    usleep(100000);          /* one SET on the wire, 7 calls waiting for the connection */
    double t0 = t_now();
    atomic_store(&closing_now, 1);
    rs_store_close(store);
    double took = t_now() - t0;
    t_thaw();
    rs_log_set_level(RS_LOG_WARN);
    CHECK(took < 0.3 + 0.4);
    CHECK(atomic_load(&connected_after) == 0);
    int refused = 0, other = 0;
    for (int i = 0; i < N; i++) {
        if (!jobs[i]) continue;
        int rc = rs_job_finish(jobs[i], &err);
        if (rc == -1 && err.kind == RS_ERR_CONNECTION && err.attempts == 0 && !err.retryable &&
            strstr(err.message, "not sent: the store is closing"))
            refused++;
        else if (rc == -1 && err.kind == RS_ERR_TIMEOUT && err.attempts == 1)
            other++;                          /* the one on the wire */
        else
            fprintf(stderr, "pool wait: job %d: %d [%s] attempts %d: %s\n", i, rc,
                    rs_error_kind_name(err.kind), err.attempts, err.message);
    }
    CHECK(refused == N - 1 && other == 1);
    printf("pool_size 1, %d jobs, frozen server: close took %.3f s; %d refused unsent; "
           "connections opened once the close began: %d\n", N, took, refused,
           atomic_load(&connected_after));
}

/* ---- a resend after a read-back, refused by the close -------------------
 * The server pauses writes (CLIENT PAUSE WRITE): the release's script
 * waits, its reply is lost (command_timeout). A no-writes script then
 * keeps the server busy, so the read-back GET (reads are not paused)
 * waits for it, and the store is closed meanwhile: the GET is answered,
 * the lock is still "me" (the release has not taken effect), and the
 * resend is refused by the close. */

static int release_fn(rs_store *store, void *arg, rs_error *err)
{
    (void)arg;
    return rs_lock_release(store, "faults:rel", "me", err);
}

typedef struct busy {
    int port;
    double at, seconds;      /* starts `at` s after `since`, keeps the server busy `seconds` */
    double since;
    int failed;              /* read by the test after the join (no CHECK on this thread) */
} busy;

static void *keep_busy(void *arg)
{
    busy *b = arg;
    rs_error err;
    memset(&err, 0, sizeof err);
    rs_config *cfg = t_config(b->port, NULL);
    if (cfg) rs_config_set(cfg, "command_timeout", "5s", &err);
    rs_store *store = cfg ? rs_store_open(cfg, &err) : NULL;
    rs_config_free(cfg);
    double wait = b->since + b->at - t_now();
    if (wait > 0) usleep((useconds_t)(wait * 1e6));
    char until[32];
    snprintf(until, sizeof until, "%.0f", b->seconds * 1e6);
    const char *argv[] = {"EVAL",
                          "#!lua flags=no-writes\n"
                          "local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] "
                          "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s > "
                          "tonumber(ARGV[1]) return 1",
                          "0", until};
    size_t lens[] = {4, strlen(argv[1]), 1, strlen(until)};
    char *out = NULL;
    size_t len;
    b->failed = !store || rs_command(store, 4, argv, lens, &out, &len, &err) < 0;
    if (b->failed) fprintf(stderr, "keep_busy: %s\n", err.message);
    rs_free(out);
    rs_store_close(store);
    return NULL;
}

static int admin(int port, int argc, const char **argv)
{
    rs_store *store = open_with(port, (const char *const[]){NULL});
    if (!store) return -1;
    size_t lens[8];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    char *out = NULL;
    size_t len;
    rs_error err;
    int rc = rs_command(store, argc, argv, lens, &out, &len, &err);
    if (rc < 0) fprintf(stderr, "%s: %s\n", argv[0], err.message);
    rs_free(out);
    rs_store_close(store);
    return rc;
}

static void resend_refused(int port)
{
    rs_store *store = open_with(port, (const char *const[]){
        "workers", "2", "command_timeout", "600ms", "connection_timeout", "600ms",
        "max_retries", "3", "retry_base_delay", "2s", "retry_max_delay", "2s", NULL});
    if (!store) return;
    rs_error err;
    CHECK(rs_lock_acquire(store, "faults:rel", "me", 30, &err) == 1);
    CHECK(rs_ping(store, &err) == 0);
    CHECK(admin(port, 4, (const char *[]){"CLIENT", "PAUSE", "5000", "WRITE"}) >= 0);
    busy b = {.port = port, .at = 0.3, .seconds = 0.7, .since = t_now()};
    pthread_t helper;
    pthread_create(&helper, NULL, keep_busy, &b);
    rs_job *job = rs_job_start(store, release_fn, NULL, &err);
    CHECK(job != NULL);
    /* 0.6 s: the script's reply is lost, the GET sent, answered at ~1.0 s. */
    usleep((useconds_t)((b.since + 0.8 - t_now()) * 1e6));
    double t0 = t_now();
    rs_store_close(store);
    double took = t_now() - t0;
    pthread_join(helper, NULL);
    CHECK(!b.failed);
    admin(port, 2, (const char *[]){"CLIENT", "UNPAUSE"});
    if (!job) return;
    int rc = rs_job_finish(job, &err);
    CHECK(rc == -1 && err.kind == RS_ERR_TIMEOUT && err.attempts == 1);
    CHECK(strstr(err.message, "has not taken effect") != NULL);
    CHECK(strstr(err.message, "the store is closing") != NULL);
    printf("resend refused by the close (%.3f s): %d [%s] attempts %d: %s\n", took, rc,
           rs_error_kind_name(err.kind), err.attempts, err.message);
    admin(port, 2, (const char *[]){"DEL", "faults:rel"});
}

/* ---- rs_store_close from a job's fn ------------------------------------- */

static int close_from_fn(rs_store *store, void *arg, rs_error *err)
{
    (void)arg;
    (void)err;
    rs_store_close(store);
    return 5;
}

static void close_in_fn(int port)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        become_child();
        rs_store *store = open_with(port, (const char *const[]){"workers", "1", NULL});
        rs_error err;
        rs_job *job = store ? rs_job_start(store, close_from_fn, NULL, &err) : NULL;
        if (job) rs_job_finish(job, &err);
        _exit(3);                             /* survived: not diagnosed */
    }
    int status = wait_child(pid, 10);
    CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    if (status == -1 || !WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fprintf(stderr, "close in fn: the child ended with status %#x\n", status);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int port = t_start_server(NULL);
    atexit(t_thaw);
    signal(SIGSEGV, t_on_fatal);
    signal(SIGABRT, t_on_fatal);
    signal(SIGINT, t_on_fatal);
    signal(SIGTERM, t_on_fatal);
    forked(port);
    ready_synchronises(port);
    lost_acquire_closed(port);
    pool_wait_closed(port);
    resend_refused(port);
    close_in_fn(port);
    return t_report("test_jobs_faults");
}
