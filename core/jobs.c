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
 * blocked. The queue is one FIFO list under one mutex. A later change can
 * coalesce calls into one pipeline there: a worker that pops a job able
 * to share a pipeline (one carrying an rs_call description instead of an
 * opaque fn) takes the run of such jobs queued behind it and runs them as
 * one call, then completes each with its own outcome (job_done); the
 * caller's side (fd, ready, finish, abandon) does not change.
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
#include "store_state.h"

struct rs_job {
    rs_job_fn fn;
    void *arg;
    int fd;                          /* eventfd: readable once done */
    int rc;                          /* fn's result ... */
    rs_error err;                    /* ... and error, set before `done` */
    pthread_mutex_t lock;            /* done and abandoned */
    int done, abandoned;
    void (*free_arg)(void *arg);     /* set by abandon */
    rs_job *next;                    /* queue link */
};

struct rs_workers {
    pthread_mutex_t lock;
    pthread_cond_t queued;           /* a job queued, or closing */
    rs_job *head, *tail;             /* FIFO */
    int max, started;
    int closing;
    int spinning;                    /* a worker spins for work (wait_for_work) */
    int nonempty;                    /* atomic copy of head != NULL, for the spinner */
    pthread_t *threads;              /* max slots, `started` of them running */
    rs_store *store;
    atomic_int pid;                  /* the process they run in (0: none started) */
};

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

static void job_free(rs_job *job)
{
    if (job->free_arg) job->free_arg(job->arg);
    close(job->fd);
    pthread_mutex_destroy(&job->lock);
    free(job);
}

/* The job is done (rc and err set): its fd tells the caller, or, when the
 * caller abandoned it, it is freed. Under the job's lock, so that finish
 * and abandon, which take the lock, never free the job under the worker. */
static void job_done(rs_job *job)
{
    pthread_mutex_lock(&job->lock);
    int abandoned = job->abandoned;
    if (!abandoned) {
        job->done = 1;
        uint64_t one = 1;
        while (write(job->fd, &one, sizeof one) < 0 && errno == EINTR) {}
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

/* Returns, the lock held, once a job is queued or the store closes. */
static void wait_for_work(rs_workers *w)
{
    while (!w->head && !w->closing) {
        if (!w->spinning) {
            w->spinning = 1;            /* enqueue need not signal meanwhile */
            pthread_mutex_unlock(&w->lock);
            long end = now_ns() + SPIN_NS;
            while (!__atomic_load_n(&w->nonempty, __ATOMIC_ACQUIRE) && now_ns() < end)
                sched_yield();
            pthread_mutex_lock(&w->lock);
            w->spinning = 0;
            if (w->head || w->closing) break;
        }
        pthread_cond_wait(&w->queued, &w->lock);
    }
}

static void *worker_main(void *arg)
{
    rs_workers *w = arg;
    current = w;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        wait_for_work(w);
        if (!w->head) break;              /* closing, and the queue emptied */
        rs_job *job = w->head;
        w->head = job->next;
        if (!w->head) {
            w->tail = NULL;
            __atomic_store_n(&w->nonempty, 0, __ATOMIC_RELAXED);
        } else if (w->spinning == 0) {
            /* Jobs queued while a worker spun signalled nobody: pass on. */
            pthread_cond_signal(&w->queued);
        }
        pthread_mutex_unlock(&w->lock);
        rs_error_clear(&job->err);
        job->rc = job->fn(w->store, job->arg, &job->err);
        job_done(job);
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
        atomic_store(&w->pid, (int)getpid());
        /* Fewer than asked (the system's limit): those run every job. */
    }
    job->next = NULL;
    if (w->tail) w->tail->next = job;
    else w->head = job;
    w->tail = job;
    __atomic_store_n(&w->nonempty, 1, __ATOMIC_RELEASE);
    /* A spinning worker sees the job itself (it rechecks under the lock). */
    if (!w->spinning) pthread_cond_signal(&w->queued);
    return 0;
}

rs_job *rs_job_start(rs_store *store, rs_job_fn fn, void *arg, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    if (!store || !fn) {
        rs_error_set(err, RS_ERR_CONFIG, 0, "rs_job_start: %s is NULL", store ? "fn" : "store");
        return NULL;
    }
    rs_workers *w = store->workers;
    if (rs_workers_foreign(w)) {
        /* fork copies no thread: a job queued here would never run. Told
         * before the workers' lock, which a worker of the parent may
         * have held at the fork (in the child nobody would release it). */
        rs_error_set(err, RS_ERR_CONFIG, 0, "cannot start a job: the store's workers belong to "
                     "process %d, and this process (%d) is a fork of it: open a store in this "
                     "process", atomic_load(&w->pid), (int)getpid());
        return NULL;
    }
    rs_job *job = calloc(1, sizeof *job);
    if (!job) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    job->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (job->fd < 0) {
        /* EMFILE, ENFILE, ENOMEM: out of a resource of this process or
         * machine, as for memory (no connection is involved). */
        rs_error_set(err, RS_ERR_NOMEM, 0, "cannot start a job: eventfd: %s", strerror(errno));
        free(job);
        return NULL;
    }
    if (pthread_mutex_init(&job->lock, NULL) != 0) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        close(job->fd);
        free(job);
        return NULL;
    }
    job->fn = fn;
    job->arg = arg;
    pthread_mutex_lock(&w->lock);
    int rc = enqueue(w, job, err);
    pthread_mutex_unlock(&w->lock);
    if (rc < 0) {
        job_free(job);
        return NULL;
    }
    return job;
}

int rs_job_fd(const rs_job *job)
{
    return job->fd;
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
        pthread_mutex_unlock(&job->lock);
        struct pollfd p = {.fd = job->fd, .events = POLLIN};
        poll(&p, 1, -1);       /* readable once done; EINTR: look again */
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

int rs_workers_foreign(rs_workers *w)
{
    int pid = w ? atomic_load(&w->pid) : 0;
    return pid != 0 && pid != (int)getpid();
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
    rs_job *queued = w->head;
    w->head = w->tail = NULL;
    pthread_cond_broadcast(&w->queued);
    pthread_mutex_unlock(&w->lock);
    while (queued) {
        rs_job *job = queued;
        queued = job->next;
        job->rc = -1;
        closed_error(&job->err);
        job_done(job);
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
