/* SPDX-License-Identifier: MIT */
/* pool.c -- a bounded, thread-safe pool of Redis connections.
 *
 * Connections are created lazily, up to pool_size. A caller that finds none
 * free waits on a condition variable, at most connection_timeout, then gets
 * a `pool` error. Idle connections are kept LIFO (the warm ones are reused
 * first) and PINGed before reuse when they sat idle longer than
 * idle_check_after, because servers and proxies close quiet sockets.
 * Those PINGs share the acquire's connection_timeout (each gets at most
 * what is left of it), so a frozen server with a full idle list costs one
 * connection_timeout, not pool_size command_timeouts.
 * A connection that failed is closed on release, and after an I/O error the
 * whole idle list is dropped: a restarted server leaves all of them dead
 * (the failure mode of DBZ-7879), and finding that out one retry at a time
 * would burn the caller's retries.
 * With Sentinel, the pool also remembers the master's address and its
 * config epoch, but every new connection asks the sentinels again (a
 * demoted master answers ROLE as master for seconds: only the sentinels'
 * word tells). When a failure suggests a failover, a discovery names
 * another address, or the store's subscriber (failover.c) hears
 * +switch-master, the generation counter moves on: idle connections are
 * closed, lent ones are closed when they come back, and none of an older
 * generation is lent again. A switch heard is kept: its address becomes
 * the pool's, and until a discovery names a config epoch newer than the
 * one the pool knew before it, answers naming another address are stale
 * (sentinels that have not yet learnt the switch still name the demoted
 * master) and new connections go to the announced address; so is an
 * answer older than the epoch the pool's address was named at. A failure
 * of the pool's master gives the word back to the sentinels. Each change of address counts once, whoever
 * saw it first (subscriber or discovery).
 * Connecting, discovering and PINGing happen outside the lock.
 */
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

#include "pool.h"
#include "clock.h"
#include "closing.h"
#include "config.h"
#include "conn.h"
#include "error.h"
#include "log.h"
#include "sentinel.h"

struct rs_pool {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    const rs_config *cfg;
    rs_closing *closing;        /* the store's close (NULL: not watched) */
    rs_tls *tls;                /* NULL for plain TCP; owned by the store */
    rs_conn *idle;              /* LIFO list */
    int nidle, open, in_use;
    uint64_t generation;        /* bumped when the master may have moved */
    uint64_t discoveries;       /* the next one starts at this sentinel (mod) */
    int sentinel;               /* the URL's hosts are sentinels */
    int have_master;
    char master_host[256];      /* the current (or last known) master */
    int master_port;
    uint64_t epoch;             /* its config epoch, as the sentinels named it (0: not told) */
    uint64_t stale_below;       /* after a switch heard: older discoveries are stale (0: none) */
    uint64_t created, closed_broken, closed_idle, waits, wait_timeouts;
    uint64_t master_changes;    /* master address changes seen (sentinel), each once */
    double wait_seconds;
};

rs_pool *rs_pool_new(const rs_config *cfg, rs_tls *tls, const char *host, int port)
{
    rs_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->cfg = cfg;
    pool->tls = tls;
    pool->sentinel = host == NULL;
    if (host) {
        snprintf(pool->master_host, sizeof pool->master_host, "%s", host);
        pool->master_port = port;
        pool->have_master = 1;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->freed, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&pool->lock, NULL);
    return pool;
}

void rs_pool_watch_closing(rs_pool *pool, rs_closing *closing)
{
    pool->closing = closing;
}

int rs_pool_closing(rs_pool *pool)
{
    return pool->closing && rs_closing_is_set(pool->closing);
}

const rs_config *rs_pool_config(const rs_pool *pool)
{
    return pool->cfg;
}

void rs_pool_free(rs_pool *pool)
{
    if (!pool) return;
    rs_pool_drop_idle(pool);
    pthread_cond_destroy(&pool->freed);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

static struct timeval timeval_of(double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - floor(seconds)) * 1e6);
    return tv;
}

/* PING within `timeout` seconds; the command timeout is put back after. */
static int ping_ok(rs_conn *conn, double timeout, double command_timeout)
{
    if (redisSetTimeout(conn->ctx, timeval_of(timeout)) != REDIS_OK) return 0;
    redisReply *reply = redisCommand(conn->ctx, "PING");
    int ok = reply && reply->type == REDIS_REPLY_STATUS;
    if (reply) freeReplyObject(reply);
    return ok && redisSetTimeout(conn->ctx, timeval_of(command_timeout)) == REDIS_OK;
}

static double seconds_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(deadline->tv_sec - now.tv_sec) + (deadline->tv_nsec - now.tv_nsec) / 1e9;
}

static struct timespec deadline_after(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = floor(seconds);
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Takes the address the sentinels just named at config epoch `epoch`
 * (under the lock): a new one retires every connection to the old
 * (returns 1; old_host/old_port say what it was). 2 when the answer names
 * another address at an epoch older than the pool's (a switch heard
 * counts as newer; a sentinel that has not learnt it answered): host/port
 * become the pool's address. -1
 * when the pool was retired since `generation` (a switch message came
 * meanwhile: this answer may predate it). */
static int take_address(rs_pool *pool, uint64_t *generation, char *host, size_t host_size,
                        int *port, uint64_t epoch, char *old_host, int *old_port)
{
    if (pool->generation != *generation) return -1;
    memcpy(old_host, pool->master_host, sizeof pool->master_host);
    *old_port = pool->master_port;
    int same = pool->master_port == *port && strcmp(pool->master_host, host) == 0;
    uint64_t known_epoch = pool->stale_below > pool->epoch ? pool->stale_below : pool->epoch;
    if (!same && pool->master_port != 0 && epoch < known_epoch) {
        snprintf(host, host_size, "%s", pool->master_host);
        *port = pool->master_port;
        return 2;
    }
    int moved = pool->master_port != 0 && !same;
    if (moved) {
        pool->master_changes++;
        pool->generation++;
    }
    if (moved || epoch >= pool->stale_below) pool->stale_below = 0;
    snprintf(pool->master_host, sizeof pool->master_host, "%s", host);
    pool->master_port = *port;
    pool->epoch = epoch;
    pool->have_master = 1;
    *generation = pool->generation;
    return moved;
}

/* A new data connection: to the pool's fixed address, or to the master the
 * sentinels name now. With Sentinel they are asked for every new
 * connection, not only after a failure: a demoted master still answers
 * ROLE as master for seconds, so only the sentinels' word tells. */
static rs_conn *open_connection(rs_pool *pool, rs_error *err)
{
    const rs_config *cfg = pool->cfg;
    char host[256];
    int port;
    pthread_mutex_lock(&pool->lock);
    uint64_t generation = pool->generation;
    uint64_t start = pool->discoveries;
    if (pool->sentinel) pool->discoveries++;
    memcpy(host, pool->master_host, sizeof host);
    port = pool->master_port;
    pthread_mutex_unlock(&pool->lock);

    if (pool->sentinel) {
        uint64_t epoch;
        if (rs_sentinel_discover(cfg, pool->tls, start, host, sizeof host, &port, &epoch, err) < 0)
            return NULL;
        char old_host[sizeof pool->master_host], named[sizeof host];
        int old_port, named_port = port;
        memcpy(named, host, sizeof named);
        pthread_mutex_lock(&pool->lock);
        int moved = take_address(pool, &generation, host, sizeof host, &port, epoch, old_host,
                                 &old_port);
        pthread_mutex_unlock(&pool->lock);
        if (moved == 2)
            rs_log(cfg, RS_LOG_INFO, "sentinels still name %s:%d (config epoch %llu) for '%s', older "
                   "than the switch to %s:%d heard; connecting there", named, named_port,
                   (unsigned long long)epoch, cfg->sentinel_master, host, port);
        if (moved < 0) {
            rs_error_set(err, RS_ERR_CONNECTION, 1, "the master of '%s' changed while connecting",
                         cfg->sentinel_master);
            return NULL;
        }
        if (moved) {
            rs_pool_drop_idle(pool);
            rs_log(pool->cfg, RS_LOG_WARN, "failover: master '%s' moved from %s:%d to %s:%d",
                   cfg->sentinel_master, old_host, old_port, host, port);
        }
    }
    rs_conn *conn = rs_conn_open(cfg, pool->tls, host, port, err);
    if (conn && pool->sentinel && rs_sentinel_confirm_master(conn, host, port, err) < 0) {
        rs_conn_close(conn);
        rs_pool_after_failure(pool, 1, err);
        return NULL;
    }
    if (conn && pool->sentinel) {
        /* A switch heard while connecting: this one may be the old master. */
        pthread_mutex_lock(&pool->lock);
        int retired = pool->generation != generation;
        pthread_mutex_unlock(&pool->lock);
        if (retired) {
            rs_conn_close(conn);
            rs_error_set(err, RS_ERR_CONNECTION, 1, "the master of '%s' changed while connecting",
                         cfg->sentinel_master);
            return NULL;
        }
    }
    if (conn) {
        conn->generation = generation;
        rs_log(pool->cfg, RS_LOG_DEBUG, "connected to %s:%d", host, port);
    }
    return conn;
}

rs_conn *rs_pool_acquire(rs_pool *pool, rs_error *err)
{
    const rs_config *cfg = pool->cfg;
    struct timespec deadline = deadline_after(cfg->connection_timeout);
    double wait_start = 0;
    rs_conn *conn = NULL;

    pthread_mutex_lock(&pool->lock);
    while (!conn) {
        /* The store is closing: no connection for a new call (nor a
         * connect, nor a PING check, that could wait on a frozen server). */
        if (rs_pool_closing(pool)) {
            rs_closing_error(err, "a pool connection");
            break;
        }
        if (pool->idle) {
            conn = pool->idle;
            pool->idle = conn->next;
            conn->next = NULL;
            pool->nidle--;
            pool->in_use++;
            if (conn->generation != pool->generation) {
                /* Opened before a switch: possibly to the old master. */
                pthread_mutex_unlock(&pool->lock);
                rs_conn_close(conn);
                pthread_mutex_lock(&pool->lock);
                conn = NULL;
                pool->in_use--;
                pool->open--;
                pool->closed_broken++;
                pthread_cond_signal(&pool->freed);
                continue;
            }
            if (rs_now() - conn->last_used <= cfg->idle_check_after) break;
            pthread_mutex_unlock(&pool->lock);
            double left = seconds_left(&deadline);
            int alive = left > 0 && ping_ok(conn, fmin(left, cfg->command_timeout),
                                            cfg->command_timeout);
            if (!alive) rs_log(pool->cfg, RS_LOG_DEBUG, "an idle connection failed its PING check; closing it");
            pthread_mutex_lock(&pool->lock);
            if (alive) break;
            rs_conn_close(conn);
            conn = NULL;
            pool->in_use--;
            pool->open--;
            pool->closed_idle++;
            pthread_cond_signal(&pool->freed);
            if (seconds_left(&deadline) <= 0) {
                rs_error_set(err, RS_ERR_TIMEOUT, 1,
                             "no idle connection answered its PING check within %gs "
                             "(connection_timeout)", cfg->connection_timeout);
                break;
            }
            continue;
        }
        if (pool->open < cfg->pool_size) {
            pool->open++;
            pool->in_use++;
            pthread_mutex_unlock(&pool->lock);
            conn = open_connection(pool, err);
            pthread_mutex_lock(&pool->lock);
            if (conn) {
                pool->created++;
                break;
            }
            pool->open--;
            pool->in_use--;
            pthread_cond_signal(&pool->freed);
            break;
        }
        if (wait_start == 0) {
            wait_start = rs_now();
            pool->waits++;
        }
        /* Watching a close: woken every 10 ms to look at it (the close
         * does not know the pools of a cluster's nodes). */
        struct timespec until = deadline;
        if (pool->closing && seconds_left(&deadline) > 0.010) until = deadline_after(0.010);
        pthread_cond_timedwait(&pool->freed, &pool->lock, &until);
        if (seconds_left(&deadline) <= 0 && !pool->idle && pool->open >= cfg->pool_size) {
            pool->wait_timeouts++;
            rs_error_set(err, RS_ERR_POOL, 1,
                         "no free connection within %gs (pool_size %d, all in use)",
                         cfg->connection_timeout, cfg->pool_size);
            break;
        }
    }
    if (wait_start != 0) pool->wait_seconds += rs_now() - wait_start;
    pthread_mutex_unlock(&pool->lock);
    return conn;
}

void rs_pool_release(rs_pool *pool, rs_conn *conn, int broken)
{
    if (!conn) return;
    /* A context with an error is unusable whatever the caller thinks. */
    if (conn->ctx->err) broken = 1;
    pthread_mutex_lock(&pool->lock);
    if (conn->generation != pool->generation) broken = 1;   /* old master */
    pool->in_use--;
    if (broken) {
        pool->open--;
        pool->closed_broken++;
    } else {
        conn->last_used = rs_now();
        conn->next = pool->idle;
        pool->idle = conn;
        pool->nidle++;
    }
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
    if (broken) rs_conn_close(conn);
}

void rs_pool_drop_idle(rs_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    rs_conn *list = pool->idle;
    pool->idle = NULL;
    pool->open -= pool->nidle;
    pool->nidle = 0;
    pthread_cond_broadcast(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
    while (list) {
        rs_conn *next = list->next;
        rs_conn_close(list);
        list = next;
    }
}

void rs_pool_after_failure(rs_pool *pool, int broken, const rs_error *err)
{
    int moved = broken || (err && (err->kind == RS_ERR_CONNECTION || err->kind == RS_ERR_TIMEOUT ||
                                   err->reply == RS_REPLY_READONLY ||
                                   err->reply == RS_REPLY_MASTERDOWN));
    if (!pool->sentinel) {
        if (broken) {
            rs_log(pool->cfg, RS_LOG_INFO, "connection lost (%s); closing the idle ones, the next "
                   "attempt reconnects", err ? err->message : "I/O error");
            rs_pool_drop_idle(pool);
        }
        return;
    }
    if (!moved) return;
    char host[sizeof pool->master_host];
    pthread_mutex_lock(&pool->lock);
    int had_master = pool->have_master, port = pool->master_port;
    memcpy(host, pool->master_host, sizeof host);
    pool->generation++;
    pool->have_master = 0;
    /* The known master failed: the sentinels' word counts again, whatever
     * its epoch (sentinels replaced by new ones start again at 0). */
    pool->stale_below = 0;
    pool->epoch = 0;
    pthread_mutex_unlock(&pool->lock);
    rs_pool_drop_idle(pool);
    /* Info, not warn: during a failover this repeats until the sentinels
     * name the new master, which is logged as a warning once. */
    if (had_master)
        rs_log(pool->cfg, RS_LOG_INFO, "master %s:%d failed (%s); asking the sentinels again", host, port,
               err ? err->message : "connection lost");
}

void rs_pool_master_switched(rs_pool *pool, const char *host, int port)
{
    if (!pool->sentinel) return;
    pthread_mutex_lock(&pool->lock);
    /* Known: a discovery already moved the pool there (and retired the
     * connections to the old master, and counted the change). */
    int known = pool->master_port == port && strcmp(pool->master_host, host) == 0;
    if (!known) {
        pool->generation++;
        pool->master_changes++;
        snprintf(pool->master_host, sizeof pool->master_host, "%s", host);
        pool->master_port = port;
        pool->have_master = 1;
        /* The switch raised the config epoch: an answer at the one the
         * pool knew is from a sentinel that has not learnt it yet. */
        pool->stale_below = pool->epoch + 1;
    }
    pthread_mutex_unlock(&pool->lock);
    if (known) return;
    rs_pool_drop_idle(pool);
    rs_log(pool->cfg, RS_LOG_WARN, "failover: the sentinels switched master '%s' to %s:%d; every "
           "connection is retired", pool->cfg->sentinel_master, host, port);
}

void rs_pool_retire(rs_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->generation++;
    pthread_mutex_unlock(&pool->lock);
    rs_pool_drop_idle(pool);
}

uint64_t rs_pool_master_changes(rs_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    uint64_t n = pool->master_changes;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void rs_pool_get_stats(rs_pool *pool, rs_pool_stats *out)
{
    pthread_mutex_lock(&pool->lock);
    out->size = pool->cfg->pool_size;
    out->open = pool->open;
    out->in_use = pool->in_use;
    out->idle = pool->nidle;
    out->created = pool->created;
    out->closed_broken = pool->closed_broken;
    out->closed_idle = pool->closed_idle;
    out->waits = pool->waits;
    out->wait_timeouts = pool->wait_timeouts;
    out->wait_seconds = pool->wait_seconds;
    out->failovers = pool->master_changes;
    pthread_mutex_unlock(&pool->lock);
}
