/* SPDX-License-Identifier: MIT */
/* open_job.c -- rs_store_open on a thread of its own, for event loops.
 *
 * Opening a store connects and PINGs, which takes as long as the server
 * (or a port that accepts and never answers) makes it take. An event loop
 * cannot wait that long, and the store's own job threads do not exist
 * before the store does: the open runs on a thread of its own, and the
 * job's pipe becomes readable when it is done (epoll, libuv, cqueues).
 *
 * Abandoning a job never blocks, and nothing waits for an abandoned one
 * (a port that accepts and never answers holds its open for the whole
 * retry policy: a script that let go of it must still exit at once). Its
 * thread is detached; whichever of it and the abandon comes second, under
 * the job's lock, closes the store it opened and frees the job. The
 * library is linked -z nodelete (Makefile), so a thread still returning
 * after its job was freed never runs code that Lua's lua_close unloaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

struct rs_open_job {
    pthread_t thread;
    pthread_mutex_t lock;
    rs_config *cfg;           /* the thread's copy */
    int fds[2];               /* pipe: [0] polled by the caller, [1] written once done */
    int done;                 /* under lock */
    rs_store *store;          /* the outcome, read once done */
    rs_error err;
    int abandoned;            /* under lock: the thread frees the job when done */
};

static void job_free(rs_open_job *job)
{
    if (job->fds[0] >= 0) close(job->fds[0]);
    if (job->fds[1] >= 0) close(job->fds[1]);
    rs_config_free(job->cfg);
    pthread_mutex_destroy(&job->lock);
    free(job);
}

static void *open_main(void *arg)
{
    rs_open_job *job = arg;
    rs_store *store = rs_store_open(job->cfg, &job->err);
    pthread_mutex_lock(&job->lock);
    if (job->abandoned) {            /* nobody will finish it: this thread is the last */
        pthread_mutex_unlock(&job->lock);
        rs_store_close(store);
        job_free(job);
        return NULL;
    }
    job->store = store;
    job->done = 1;
    pthread_mutex_unlock(&job->lock);
    /* One byte, written once: the caller's descriptor is readable from now on. */
    char byte = 1;
    ssize_t w;
    do w = write(job->fds[1], &byte, 1); while (w < 0 && errno == EINTR);
    return NULL;
}

int rs_open_job_ready(rs_open_job *job)
{
    pthread_mutex_lock(&job->lock);
    int done = job->done;
    pthread_mutex_unlock(&job->lock);
    return done;
}

rs_open_job *rs_store_open_start(const rs_config *cfg, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    rs_open_job *job = calloc(1, sizeof *job);
    if (!job) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    job->fds[0] = job->fds[1] = -1;
    pthread_mutex_init(&job->lock, NULL);
    if (!(job->cfg = rs_config_copy(cfg))) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto fail;
    }
    if (pipe2(job->fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        rs_error_set(err, RS_ERR_CONNECTION, 0, "cannot make the open job's pipe: %s",
                     strerror(errno));
        goto fail;
    }
    int rc = pthread_create(&job->thread, NULL, open_main, job);
    if (rc != 0) {
        rs_error_set(err, RS_ERR_CONNECTION, 0, "cannot start the open job's thread: %s",
                     strerror(rc));
        goto fail;
    }
    return job;
fail:
    job_free(job);
    return NULL;
}

int rs_open_job_fd(const rs_open_job *job)
{
    return job->fds[0];
}

rs_store *rs_store_open_finish(rs_open_job *job, rs_error *err)
{
    RS_ERR_ACCEPT_NULL(err);
    rs_error_clear(err);
    pthread_join(job->thread, NULL);     /* at once when the descriptor was readable */
    rs_store *store = job->store;
    if (!store) *err = job->err;
    job_free(job);
    return store;
}

void rs_open_job_abandon(rs_open_job *job)
{
    if (!job) return;
    pthread_mutex_lock(&job->lock);
    int done = job->done;
    job->abandoned = !done;
    pthread_t thread = job->thread;  /* the job may be freed once unlocked */
    pthread_mutex_unlock(&job->lock);
    if (!done) {
        pthread_detach(thread);
        return;
    }
    pthread_join(thread, NULL);      /* done: it has written its byte */
    rs_store_close(job->store);
    job_free(job);
}
