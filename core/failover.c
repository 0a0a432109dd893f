/* SPDX-License-Identifier: MIT */
/* failover.c -- hearing Sentinel's +switch-master as it happens.
 *
 * A Sentinel store owns one thread, subscribed to `+switch-master` on one
 * of the URL's sentinels. When that sentinel announces a new address for
 * our master, the pool retires every connection at once (pool.c), so no
 * call is sent to the demoted master, which still answers ROLE as master
 * for seconds and whose writes are dropped when it resyncs. Without the
 * subscriber the store would notice only when a call failed.
 *
 * Design choices:
 *  - one sentinel, not all: every sentinel that takes the new address
 *    announces it, and each new connection asks every sentinel anyway
 *    (pool.c, sentinel.c); a lost subscriber moves to the next sentinel
 *    and then retires the pool's connections, so the next one asks the
 *    sentinels, for the switch it may have missed (asked here, a frozen
 *    sentinel would hold the thread and so the store's close);
 *  - closing the store never waits for a timeout: the thread waits in
 *    poll() on the socket and on a pipe that rs_failover_stop writes, and
 *    rs_failover_stop shuts the subscription's socket down, which ends a
 *    blocking SUBSCRIBE at once; connecting (TCP, TLS, AUTH) has its
 *    timeouts cut to STEP_TIMEOUT. A sentinel quiet for PING_AFTER
 *    seconds gets a PING, and one that does not answer within as long
 *    again is left;
 *  - only the address is acted on; leases and tools read the pool's count
 *    of master changes (rs_store_master_changes) and check what they hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>

#include "failover.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "log.h"
#include "pool.h"

#define PING_AFTER 5.0        /* seconds of silence before a PING */
#define RETRY_DELAY 0.5       /* between subscription attempts, doubled after */
#define RETRY_DELAY_MAX 5.0   /* each round of sentinels that all failed */
#define STEP_TIMEOUT 1.0      /* at most, per step of connecting to a sentinel */

struct rs_failover {
    const rs_config *cfg;
    rs_config step_cfg;       /* the store's, timeouts cut to STEP_TIMEOUT (thread only) */
    rs_tls *tls;
    rs_pool *pool;
    pthread_t thread;
    int wake[2];              /* rs_failover_stop writes a byte */
    uint64_t next;            /* the sentinel to subscribe to next (mod their number) */
    pthread_mutex_t lock;     /* guards fd and stopping */
    int fd;                   /* the subscription's socket, -1 when none */
    int stopping;
};

/* Publishes the subscription's socket for rs_failover_stop to shut down;
 * 0 when the store is stopping (the caller frees ctx and leaves). */
static int hold_socket(rs_failover *f, int fd)
{
    pthread_mutex_lock(&f->lock);
    int go_on = !f->stopping;
    f->fd = go_on ? fd : -1;
    pthread_mutex_unlock(&f->lock);
    return go_on;
}

/* Waits up to `seconds` for the stop byte: 1 when stopping. */
static int wait_for_stop(rs_failover *f, double seconds)
{
    struct pollfd p = {f->wake[0], POLLIN, 0};
    int rc = poll(&p, 1, (int)(seconds * 1000));
    return rc > 0;
}

/* "<name> <old ip> <old port> <new ip> <new port>": tells the pool when
 * it is about our master. */
static void on_switch(rs_failover *f, const redisReply *text)
{
    char buf[1024], name[256], host[256];
    int port;
    if (text->type != REDIS_REPLY_STRING || text->len >= sizeof buf) return;
    memcpy(buf, text->str, text->len);
    buf[text->len] = '\0';
    if (sscanf(buf, "%255s %*s %*s %255s %d", name, host, &port) != 3) return;
    if (strcmp(name, f->cfg->sentinel_master) != 0 || port < 1 || port > 65535) return;
    rs_pool_master_switched(f->pool, host, port);
}

/* A reply on the subscribed connection: a message, the PING's answer. */
static void on_reply(rs_failover *f, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[0]->str, "message") == 0)
        on_switch(f, reply->element[2]);
    freeReplyObject(reply);
}

/* Reads announcements until the connection fails or goes quiet, or the
 * store stops (returns 1). */
static int listen_on(rs_failover *f, redisContext *ctx)
{
    double heard = rs_now();
    int pinged = 0;
    for (;;) {
        redisReply *reply;
        while (redisGetReplyFromReader(ctx, (void **)&reply) == REDIS_OK && reply) {
            heard = rs_now();
            pinged = 0;
            on_reply(f, reply);
        }
        if (ctx->err) return 0;
        struct pollfd p[2] = {{f->wake[0], POLLIN, 0}, {ctx->fd, POLLIN, 0}};
        int rc = poll(p, 2, 1000);
        if (rc < 0 && errno != EINTR) return 0;
        if (p[0].revents) return 1;
        if (p[1].revents) {
            if (redisBufferRead(ctx) != REDIS_OK) return 0;
            continue;
        }
        double quiet = rs_now() - heard;
        if (pinged && quiet > 2 * PING_AFTER) {
            rs_log(f->cfg, RS_LOG_INFO, "failover: the sentinel did not answer a PING; moving on");
            return 0;
        }
        if (!pinged && quiet > PING_AFTER) {
            const char *argv[1] = {"PING"};
            int done = 0;
            if (redisAppendCommandArgv(ctx, 1, argv, NULL) != REDIS_OK) return 0;
            while (!done)
                if (redisBufferWrite(ctx, &done) != REDIS_OK) return 0;
            pinged = 1;
        }
    }
}

static void *failover_main(void *arg)
{
    rs_failover *f = arg;
    const rs_config *cfg = f->cfg;
    const rs_url *url = &cfg->parsed;
    int subscribed_before = 0;
    unsigned failed = 0;      /* attempts in a row that did not subscribe */
    for (;;) {
        const rs_host *s = &url->hosts[f->next++ % url->nhosts];
        rs_error err;
        redisContext *ctx = rs_connect(&f->step_cfg, f->tls, s->host, s->port,
                                       cfg->sentinel_username, cfg->sentinel_password, &err);
        if (ctx && !hold_socket(f, ctx->fd)) {
            redisFree(ctx);
            break;
        }
        if (ctx) {
            const char *argv[2] = {"SUBSCRIBE", "+switch-master"};
            redisReply *reply;
            int subscribed = rs_conn_command(ctx, 2, argv, &reply, &err) == 0;
            if (subscribed) {
                freeReplyObject(reply);
                rs_log(f->cfg, RS_LOG_DEBUG, "failover: listening to sentinel %s:%d", s->host,
                       s->port);
                /* A switch may have been announced while no one listened:
                 * the next connection asks the sentinels. */
                if (subscribed_before) rs_pool_retire(f->pool);
                subscribed_before = 1;
                failed = 0;
            }
            int stop = subscribed && listen_on(f, ctx);
            int going_on = hold_socket(f, -1);
            redisFree(ctx);
            if (stop || !going_on) break;
            if (subscribed) continue;
        }
        rs_log(f->cfg, RS_LOG_INFO, "failover: cannot listen to sentinel %s:%d: %s", s->host, s->port,
               err.message);
        double delay = RETRY_DELAY;
        for (unsigned round = ++failed / url->nhosts; round > 0 && delay < RETRY_DELAY_MAX; round--)
            delay *= 2;
        if (wait_for_stop(f, delay < RETRY_DELAY_MAX ? delay : RETRY_DELAY_MAX)) break;
    }
    return NULL;
}

rs_failover *rs_failover_start(const rs_config *cfg, rs_tls *tls, rs_pool *pool, rs_error *err)
{
    rs_failover *f = calloc(1, sizeof *f);
    if (!f) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    f->cfg = cfg;
    f->step_cfg = *cfg;
    if (f->step_cfg.connection_timeout > STEP_TIMEOUT) f->step_cfg.connection_timeout = STEP_TIMEOUT;
    if (f->step_cfg.command_timeout > STEP_TIMEOUT) f->step_cfg.command_timeout = STEP_TIMEOUT;
    f->tls = tls;
    f->pool = pool;
    f->fd = -1;
    if (pipe(f->wake) < 0) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "cannot create the failover thread's pipe: %s",
                     strerror(errno));
        free(f);
        return NULL;
    }
    fcntl(f->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(f->wake[1], F_SETFD, FD_CLOEXEC);
    /* The sentinel after the one the first discovery asks. */
    f->next = 1;
    /* The thread must not take the caller's signals (SIGPIPE is guarded
     * per write, see nosigpipe.c). */
    pthread_mutex_init(&f->lock, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&f->thread, NULL, failover_main, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "cannot start the failover thread");
        pthread_mutex_destroy(&f->lock);
        close(f->wake[0]);
        close(f->wake[1]);
        free(f);
        return NULL;
    }
    return f;
}

void rs_failover_stop(rs_failover *f)
{
    if (!f) return;
    /* A SUBSCRIBE waiting on a frozen sentinel ends now, not at its timeout. */
    pthread_mutex_lock(&f->lock);
    f->stopping = 1;
    if (f->fd >= 0) shutdown(f->fd, SHUT_RDWR);
    pthread_mutex_unlock(&f->lock);
    ssize_t n;
    do n = write(f->wake[1], "x", 1); while (n < 0 && errno == EINTR);
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->lock);
    close(f->wake[0]);
    close(f->wake[1]);
    free(f);
}
