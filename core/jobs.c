/* SPDX-License-Identifier: MIT */
/* jobs.c -- blocking calls run on the store's worker threads, for callers
 * that must not block (event loops): rs_job_start / rs_job_finish.
 *
 * A job is fn(store, arg, err) run on a worker; the caller learns it is
 * done from an eventfd (written once, never read: it stays readable) and
 * takes its result with rs_job_finish. The blocking calls themselves run
 * unchanged on the worker, so a job returns what the blocking call would.
 *
 * The workers: cfg->workers threads per store, all started by the first
 * job (none for a store that never starts a job; no later start pays for
 * a thread), ending when the store closes; they start with every signal
 * blocked. The queue is one FIFO list under one mutex.
 *
 * Coalescing: a job may carry a description instead of an opaque fn (a
 * get: rs_job_start_get_raw). Outside a cluster such jobs wait in a list
 * of their own (`gets`); at most GETS_IN_FLIGHT workers serve it at a
 * time, each taking every get queued (up to RS_GET_COALESCE_MAX) and
 * sending them as one pipeline, one attempt (get_coalesced.c), then
 * completing each with its own outcome. A job that pipeline did not
 * answer goes to the head of the other list marked `alone`, so that the
 * workers run it (and its retries, in parallel) as the blocking call,
 * from attempt 2 when the pipeline failed (it was the get's attempt 1);
 * while the store closes, this worker runs them itself. Gets queue while
 * a pipeline is in flight, so under load they go out together, as with
 * an auto-pipelining client; alone, a get goes out at once. Once a
 * pipeline itself failed (timeout, connection), gets go alone until one
 * of them succeeds: a failing server costs no get an extra attempt.
 *
 * Completion groups: a job of a group, once done, makes the group's
 * eventfd readable (written only when not already: `pending`, cleared by
 * rs_job_group_clear before it reads the fd empty). Such a job has no fd
 * of its own until rs_job_fd (or a finish that must wait) makes one, so
 * a loop pays no descriptor, epoll registration or close per job. The
 * group is reference counted: its caller, and each job until freed.
 *
 * Lifetime: the job is the caller's until finish or abandon. The worker
 * that completes it sets `done` and writes the eventfd under the job's
 * lock, unless the caller abandoned it: then the worker frees it (and its
 * arg). finish and abandon take that lock before freeing, so the job is
 * never freed under the worker; once done (rs_job_ready reads `done`
 * under the same lock, so it and the fd never disagree) abandon frees at
 * once.
 *
 * Fork: the workers run in the process that started them (pid kept).
 * A forked child has none of them: there rs_job_start fails, and the
 * close neither stops, joins nor frees them (their mutex and condition
 * may be held or waited on by threads of the parent; they are leaked).
 *
 * Close, from rs_store_close: rs_workers_stop empties the queue, each
 * queued job done with "store closed before the job ran", and refuses
 * new jobs; then the store's closing (closing.c) cuts running jobs' retry
 * backoffs short, in that order, so that a running job's fn cannot queue
 * another job (nor a worker take one) once its backoff is cut; then
 * rs_workers_join waits for the running jobs. After that no job refers to
 * the store.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "jobs.h"
#include "error.h"
#include "exec.h"
#include "get_coalesced.h"
#include "token_ops.h"
#include "store_state.h"

struct rs_job_group {
    pthread_mutex_t lock;            /* all below */
    int fd;                          /* eventfd; -1 once the caller freed the group */
    int pending;                     /* fd written since the last clear */
    size_t refs;                     /* the caller's (until free) + one per job */
};

/* What a get job (rs_job_start_get_raw) reads and writes. */
typedef struct job_get {
    const char *coll;
    size_t coll_len;
    char **out;
    size_t *out_len;
} job_get;

struct rs_job {
    rs_job_fn fn;                    /* NULL: a get (`get`) */
    void *arg;
    job_get get;
    int alone;                       /* a get not to be coalesced again */
    rs_error failure;                /* alone: its pipeline failed (kind != RS_OK), its
                                      * attempt 1 (rs_get_raw_after) */
    rs_job_group *group;             /* NULL: none */
    int fd;                          /* eventfd: readable once done (-1: not made yet) */
    int rc;                          /* fn's result ... */
    rs_error err;                    /* ... and error, set before `done` */
    pthread_mutex_t lock;            /* done and abandoned */
    int done, abandoned;
    void (*free_arg)(void *arg);     /* set by abandon */
    rs_job *next;                    /* queue link */
};

/* A FIFO list of jobs. */
typedef struct job_list {
    rs_job *head, *tail;
} job_list;

/* Pipelines of gets in flight at once: as an auto-pipelining client, gets
 * queued while one runs go out together in the next, instead of one per
 * worker. Measured, 16 coroutines doing gets on 2 busy cores, in one
 * run: at most 1 in flight 59k gets/s and 12 us of CPU per get; 2: 27k,
 * 25 us; 3: 25k, 25 us; no cap (16): 16k, 36 us. */
#define GETS_IN_FLIGHT 1

struct rs_workers {
    pthread_mutex_t lock;
    pthread_cond_t queued;           /* a job queued, or closing */
    job_list jobs;                   /* opaque fns, and gets to run alone */
    job_list gets;                   /* coalescable gets */
    int gets_running;                /* pipelines of `gets` in flight */
    int gets_failing;                /* atomic: the last pipeline failed, and no get
                                      * alone has succeeded since: gets go alone */
    int max, started;
    int closing;
    int spinning;                    /* a worker spins for work (wait_for_work) */
    int nonempty;                    /* atomic: a list is not empty, for the spinner */
    pthread_t *threads;              /* max slots, `started` of them running */
    rs_store *store;
    atomic_int pid;                  /* the process they run in (0: none started) */
};

/* This process's id, kept up to date across fork by an atfork handler:
 * each job start asks (is this a fork?), and getpid() is a system call
 * (measured: 6% of the Lua thread's time with 16 coroutines doing gets). */
static atomic_int self_pid;
static pthread_once_t self_pid_once = PTHREAD_ONCE_INIT;

static void self_pid_refresh(void)
{
    atomic_store(&self_pid, (int)getpid());
}

static void self_pid_init(void)
{
    self_pid_refresh();
    pthread_atfork(NULL, NULL, self_pid_refresh);
}

static int this_pid(void)
{
    pthread_once(&self_pid_once, self_pid_init);
    return atomic_load_explicit(&self_pid, memory_order_relaxed);
}

/* The workers a thread belongs to (NULL: not a worker): rs_store_close
 * from a job's fn or free_arg would join the thread calling it. */
static _Thread_local rs_workers *current;

rs_workers *rs_workers_new(rs_store *store, int max)
{
    rs_workers *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->threads = calloc((size_t)max, sizeof *w->threads);
    if (!w->threads || pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w->threads);
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->queued, NULL) != 0) {
        pthread_mutex_destroy(&w->lock);
        free(w->threads);
        free(w);
        return NULL;
    }
    w->max = max;
    w->store = store;
    return w;
}

static void fd_signal(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {}
}

/* Lets go of one reference; the last frees the group. */
static void group_unref(rs_job_group *g)
{
    pthread_mutex_lock(&g->lock);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (!last) return;
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* A job of the group is done: the fd turns readable unless it is already
 * (or the caller closed it: freed group). */
static void group_signal(rs_job_group *g)
{
    pthread_mutex_lock(&g->lock);
    if (!g->pending && g->fd >= 0) {
        g->pending = 1;
        fd_signal(g->fd);
    }
    pthread_mutex_unlock(&g->lock);
}

static void job_free(rs_job *job)
{
    if (job->free_arg) job->free_arg(job->arg);
    if (job->fd >= 0) close(job->fd);
    if (job->group) group_unref(job->group);
    pthread_mutex_destroy(&job->lock);
    free(job);
}

/* The job is done (rc and err set): its fd and group tell the caller, or,
 * when the caller abandoned it, it is freed. Under the job's lock, so that
 * finish and abandon, which take the lock, never free the job under the
 * worker; the group's lock is taken inside it (never the other way). */
static void job_done(rs_job *job)
{
    pthread_mutex_lock(&job->lock);
    int abandoned = job->abandoned;
    if (!abandoned) {
        job->done = 1;
        if (job->fd >= 0) fd_signal(job->fd);
        if (job->group) group_signal(job->group);
    }
    pthread_mutex_unlock(&job->lock);
    if (abandoned) job_free(job);
}

/* How long an idle worker looks for the next job before it sleeps. A
 * caller that starts its jobs one after another (a coroutine awaiting each)
 * starts the next within microseconds: a worker woken from the condition
 * variable would add a scheduler wake-up to each (measured: one coroutine
 * doing gets: 0.39-0.47x the blocking rate before, 0.39-0.50x after, noisy;
 * 16 coroutines: 50 us a get before, 35-42 us after). One worker spins
 * at a time, yielding the CPU each turn so that a loaded machine's other
 * threads (the server, the caller) run first. The price, on 2 cores: a
 * blocking call the caller makes just after a job (while the worker still
 * spins) took 50 us instead of 30 (spec/bench/job_roundtrip.c, rs_get_raw). */
#define SPIN_NS 50000L

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void list_push(job_list *l, rs_job *job)
{
    job->next = NULL;
    if (l->tail) l->tail->next = job;
    else l->head = job;
    l->tail = job;
}

static rs_job *list_pop(job_list *l)
{
    rs_job *job = l->head;
    l->head = job->next;
    if (!l->head) l->tail = NULL;
    return job;
}

/* A job a worker may take now (lock held). */
static int has_work(const rs_workers *w)
{
    return w->jobs.head || (w->gets.head && w->gets_running < GETS_IN_FLIGHT);
}

static void update_nonempty(rs_workers *w)
{
    __atomic_store_n(&w->nonempty, w->jobs.head || w->gets.head, __ATOMIC_RELEASE);
}

/* Returns, the lock held, once a job can be taken or the store closes. */
static void wait_for_work(rs_workers *w)
{
    while (!has_work(w) && !w->closing) {
        if (!w->spinning) {
            w->spinning = 1;            /* enqueue need not signal meanwhile */
            pthread_mutex_unlock(&w->lock);
            long end = now_ns() + SPIN_NS;
            while (!__atomic_load_n(&w->nonempty, __ATOMIC_ACQUIRE) && now_ns() < end)
                sched_yield();
            pthread_mutex_lock(&w->lock);
            w->spinning = 0;
            if (has_work(w) || w->closing) break;
        }
        pthread_cond_wait(&w->queued, &w->lock);
    }
}


/* Runs one job as its blocking call, and completes it. */
static void run_alone(rs_workers *w, rs_job *job)
{
    rs_error_clear(&job->err);
    if (job->fn) {
        job->rc = job->fn(w->store, job->arg, &job->err);
    } else {
        job_get *g = &job->get;
        const rs_error *prior = job->failure.kind != RS_OK ? &job->failure : NULL;
        job->rc = rs_get_raw_after(w->store, g->coll, g->coll_len, prior, g->out, g->out_len,
                                   &job->err);
        if (job->rc >= 0) __atomic_store_n(&w->gets_failing, 0, __ATOMIC_RELAXED);
    }
    job_done(job);
}

/* Gets sent as one pipeline (one attempt): each answered job completed,
 * the others queued again at the head of `jobs` to run alone, in
 * parallel (run here while closing: the queue is no longer served). */
static void run_coalesced(rs_workers *w, rs_job **jobs, size_t n)
{
    rs_get_item items[RS_GET_COALESCE_MAX];
    for (size_t i = 0; i < n; i++)
        items[i] = (rs_get_item){.coll = jobs[i]->get.coll, .coll_len = jobs[i]->get.coll_len};
    rs_error failure;
    int failed = rs_get_coalesced(w->store, items, n, &failure) < 0;
    rs_job *redo = NULL, *last = NULL;
    for (size_t i = 0; i < n; i++) {
        rs_job *job = jobs[i];
        if (items[i].redo) {
            job->alone = 1;
            if (items[i].failed) job->failure = failure;
            job->next = NULL;
            if (last) last->next = job;
            else redo = job;
            last = job;
            continue;
        }
        rs_error_clear(&job->err);
        *job->get.out = items[i].out;
        *job->get.out_len = items[i].out_len;
        job->rc = items[i].rc;
        job_done(job);
    }
    pthread_mutex_lock(&w->lock);
    w->gets_running--;
    if (failed) {
        /* While the server fails (frozen, gone), a pipeline would only add
         * an attempt to each get's own: gets go alone, as the blocking
         * call, in parallel, until one of them succeeds (run_alone). */
        __atomic_store_n(&w->gets_failing, 1, __ATOMIC_RELAXED);
        while (w->gets.head) {
            rs_job *job = list_pop(&w->gets);
            job->alone = 1;
            job->next = NULL;
            if (last) last->next = job;
            else redo = job;
            last = job;
        }
    }
    int closing = w->closing;
    if (redo && !closing) {
        last->next = w->jobs.head;
        if (!w->jobs.head) w->jobs.tail = last;
        w->jobs.head = redo;
        update_nonempty(w);
        pthread_cond_broadcast(&w->queued);
    }
    pthread_mutex_unlock(&w->lock);
    if (!closing) return;
    while (redo) {
        rs_job *job = redo;
        redo = job->next;
        run_alone(w, job);
    }
}

static void *worker_main(void *arg)
{
    rs_workers *w = arg;
    current = w;
    /* After a pipeline of gets, a queued job goes first: a steady stream
     * of gets would otherwise keep a single worker from the other jobs. */
    int after_gets = 0;
    rs_exec_no_spin_on_this_thread();
    pthread_mutex_lock(&w->lock);
    for (;;) {
        wait_for_work(w);
        if (!has_work(w)) break;          /* closing, and the queue emptied */
        rs_job *jobs[RS_GET_COALESCE_MAX];
        size_t n = 0;
        if (w->gets.head && w->gets_running < GETS_IN_FLIGHT && !(after_gets && w->jobs.head)) {
            while (n < RS_GET_COALESCE_MAX && w->gets.head) jobs[n++] = list_pop(&w->gets);
            w->gets_running++;
        } else {
            jobs[n++] = list_pop(&w->jobs);
        }
        update_nonempty(w);
        /* Jobs queued while a worker spun signalled nobody: pass on. */
        if (has_work(w) && w->spinning == 0) pthread_cond_signal(&w->queued);
        pthread_mutex_unlock(&w->lock);
        after_gets = !(jobs[0]->fn || jobs[0]->alone);
        if (!after_gets) run_alone(w, jobs[0]);
        else run_coalesced(w, jobs, n);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Nothing was sent: not RS_ERR_UNKNOWN; the store is gone: not retryable. */
static void closed_error(rs_error *err)
{
    rs_error_set(err, RS_ERR_CONNECTION, 0, "store closed before the job ran");
}

/* Queues `job`, starting the workers first when none runs yet. 0, or
 * -1 + err (closing; no worker could start). Called with the lock held. */
static int enqueue(rs_workers *w, rs_job *job, rs_error *err)
{
    if (w->closing) {
        rs_error_set(err, RS_ERR_CONNECTION, 0, "cannot start a job: the store is closing");
        return -1;
    }
    if (w->started == 0) {
        /* All of them now: later starts never pay for a thread. They
         * must not take the application's signals (a loop's signalfd or
         * handler expects them on its own threads). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = 0;
        while (w->started < w->max &&
               (rc = pthread_create(&w->threads[w->started], NULL, worker_main, w)) == 0)
            w->started++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (w->started == 0) {
            rs_error_set(err, RS_ERR_NOMEM, 0, "cannot start a worker thread for jobs: %s",
                         strerror(rc));
            return -1;
        }
        atomic_store(&w->pid, this_pid());
        /* Fewer than asked (the system's limit): those run every job. */
    }
    /* Gets coalesce outside a cluster (there keys would have to be
     * grouped by slot). */
    int get = !job->fn && !w->store->cluster &&
              !__atomic_load_n(&w->gets_failing, __ATOMIC_RELAXED);
    if (!job->fn && !get) job->alone = 1;
    list_push(get ? &w->gets : &w->jobs, job);
    update_nonempty(w);
    /* A spinning worker sees the job itself (it rechecks under the lock);
     * a get waits for a pipeline of gets to end, whose worker takes it. */
    if (!w->spinning && (!get || w->gets_running < GETS_IN_FLIGHT))
        pthread_cond_signal(&w->queued);
    return 0;
}

/* A new job, queued: fn (or the get when fn is NULL) in group. */
static rs_job *job_start(rs_store *store, rs_job_group *group, rs_job_fn fn, void *arg,
                         const job_get *get, rs_error *err)
{
    rs_workers *w = store->workers;
    if (rs_workers_foreign(w)) {
        /* fork copies no thread: a job queued here would never run. Told
         * before the workers' lock, which a worker of the parent may
         * have held at the fork (in the child nobody would release it). */
        rs_error_set(err, RS_ERR_CONFIG, 0, "cannot start a job: the store's workers belong to "
                     "process %d, and this process (%d) is a fork of it: open a store in this "
                     "process", atomic_load(&w->pid), this_pid());
        return NULL;
    }
    rs_job *job = calloc(1, sizeof *job);
    if (!job) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    job->fd = -1;
    if (!group && (job->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        /* EMFILE, ENFILE, ENOMEM: out of a resource of this process or
         * machine, as for memory (no connection is involved). */
        rs_error_set(err, RS_ERR_NOMEM, 0, "cannot start a job: eventfd: %s", strerror(errno));
        free(job);
        return NULL;
    }
    if (pthread_mutex_init(&job->lock, NULL) != 0) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        if (job->fd >= 0) close(job->fd);
        free(job);
        return NULL;
    }
    job->fn = fn;
    job->arg = arg;
    if (get) job->get = *get;
    if (group) {
        pthread_mutex_lock(&group->lock);
        group->refs++;
        pthread_mutex_unlock(&group->lock);
        job->group = group;
    }
    pthread_mutex_lock(&w->lock);
    int rc = enqueue(w, job, err);
    pthread_mutex_unlock(&w->lock);
    if (rc < 0) {
        job->free_arg = NULL;             /* arg stays the caller's */
        job_free(job);
        return NULL;
    }
    return job;
}

rs_job *rs_job_start_in(rs_store *store, rs_job_group *group, rs_job_fn fn, void *arg,
                        rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (!store || !fn) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "rs_job_start: %s is NULL", store ? "fn" : "store");
        return NULL;
    }
    return job_start(store, group, fn, arg, NULL, err);
}

rs_job *rs_job_start(rs_store *store, rs_job_fn fn, void *arg, rs_error *err)
{
    return rs_job_start_in(store, NULL, fn, arg, err);
}

rs_job *rs_job_start_get_raw(rs_store *store, rs_job_group *group, const char *collection,
                             size_t coll_len, char **out, size_t *out_len, void *arg,
                             rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (!store || !out || !out_len) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "rs_job_start_get_raw: %s is NULL",
                     !store ? "store" : !out ? "out" : "out_len");
        return NULL;
    }
    job_get get = {collection, coll_len, out, out_len};
    return job_start(store, group, NULL, arg, &get, err);
}

/* The job's own fd, made now if need be (-1: cannot). Lock held. */
static int own_fd(rs_job *job)
{
    if (job->fd < 0 && (job->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0 && job->done)
        fd_signal(job->fd);
    return job->fd;
}

int rs_job_fd(const rs_job *job)
{
    rs_job *j = (rs_job *)job;            /* made on first use: the job's own */
    pthread_mutex_lock(&j->lock);
    int fd = own_fd(j);
    pthread_mutex_unlock(&j->lock);
    return fd;
}

int rs_job_ready(const rs_job *job)
{
    /* Under the lock, not by polling the fd: the worker's writes to arg
     * and the job happen before its unlock, so this caller may use them
     * (an fd's readability orders nothing for the memory model). `done`
     * is set with the fd's write: the two never disagree. */
    pthread_mutex_t *lock = (pthread_mutex_t *)&job->lock;
    pthread_mutex_lock(lock);
    int done = job->done;
    pthread_mutex_unlock(lock);
    return done;
}

int rs_job_finish(rs_job *job, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    pthread_mutex_lock(&job->lock);
    while (!job->done) {
        int fd = own_fd(job);
        pthread_mutex_unlock(&job->lock);
        if (fd >= 0) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            poll(&p, 1, -1);   /* readable once done; EINTR: look again */
        } else {
            /* No descriptor left: look again every millisecond. */
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        pthread_mutex_lock(&job->lock);
    }
    pthread_mutex_unlock(&job->lock);   /* the worker is past its last touch */
    int rc = job->rc;
    *err = job->err;
    job_free(job);
    return rc;
}

void rs_job_abandon(rs_job *job, void (*free_arg)(void *arg))
{
    if (!job) return;
    pthread_mutex_lock(&job->lock);
    job->free_arg = free_arg;
    int done = job->done;
    job->abandoned = 1;
    pthread_mutex_unlock(&job->lock);
    if (done) job_free(job);           /* else the worker frees it (job_done) */
}

rs_job_group *rs_job_group_new(rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    rs_job_group *g = calloc(1, sizeof *g);
    if (!g) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    if ((g->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "cannot make a job group: eventfd: %s",
                     strerror(errno));
        free(g);
        return NULL;
    }
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        close(g->fd);
        free(g);
        return NULL;
    }
    g->refs = 1;
    return g;
}

int rs_job_group_fd(const rs_job_group *group)
{
    return group->fd;      /* set before any job and until free: read unlocked */
}

void rs_job_group_clear(rs_job_group *group)
{
    pthread_mutex_lock(&group->lock);
    if (group->pending) {
        uint64_t n;
        while (read(group->fd, &n, sizeof n) < 0 && errno == EINTR) {}
        group->pending = 0;
    }
    pthread_mutex_unlock(&group->lock);
}

void rs_job_group_free(rs_job_group *group)
{
    if (!group) return;
    pthread_mutex_lock(&group->lock);
    close(group->fd);
    group->fd = -1;                       /* the jobs still in flight write no more */
    pthread_mutex_unlock(&group->lock);
    group_unref(group);
}

int rs_workers_foreign(rs_workers *w)
{
    int pid = w ? atomic_load(&w->pid) : 0;
    return pid != 0 && pid != this_pid();
}

int rs_workers_is_caller(rs_workers *w)
{
    return w && current == w;
}

void rs_workers_stop(rs_workers *w)
{
    if (!w || rs_workers_foreign(w)) return;
    pthread_mutex_lock(&w->lock);
    w->closing = 1;
    job_list lists[2] = {w->jobs, w->gets};
    w->jobs = w->gets = (job_list){NULL, NULL};
    update_nonempty(w);
    pthread_cond_broadcast(&w->queued);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < 2; i++) {
        while (lists[i].head) {
            rs_job *job = list_pop(&lists[i]);
            job->rc = -1;
            closed_error(&job->err);
            job_done(job);
        }
    }
}

void rs_workers_join(rs_workers *w)
{
    if (!w || rs_workers_foreign(w)) return;
    /* No one adds threads once closing is set: `started` is final. */
    for (int i = 0; i < w->started; i++) pthread_join(w->threads[i], NULL);
}

void rs_workers_free(rs_workers *w)
{
    if (!w) return;
    /* In a fork: their lock and condition may be held or waited on by
     * threads that exist only in the parent (destroying the condition
     * would wait for them for ever). Left allocated. */
    if (rs_workers_foreign(w)) return;
    pthread_cond_destroy(&w->queued);
    pthread_mutex_destroy(&w->lock);
    free(w->threads);
    free(w);
}
