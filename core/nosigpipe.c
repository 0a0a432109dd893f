/* SPDX-License-Identifier: MIT */
/* nosigpipe.c -- writes that never end the process with SIGPIPE.
 *
 * Writing to a connection the server has closed (a kill, a maxclients
 * refusal, a proxy that gave up) raises SIGPIPE, whose default action ends
 * the process: a Lua application or the host would die where it should get
 * a retryable connection error. hiredis writes with plain send(2), so each
 * connection gets a write function that cannot raise it:
 *  - plain TCP: send(2) with MSG_NOSIGNAL, at no extra cost;
 *  - TLS, where OpenSSL does the writing: SIGPIPE is blocked for the calling
 *    thread around the write, the read (TLS 1.3 may answer a key update
 *    while reading) and the handshake, and one raised meanwhile is consumed
 *    before the old mask comes back.
 * The process's own SIGPIPE disposition is left as the application set it.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "nosigpipe.h"

void rs_sigpipe_block(rs_sigpipe_guard *g)
{
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
    /* Blocked already: the caller owns any pending SIGPIPE, leave it. */
    g->was_blocked = sigismember(&g->old, SIGPIPE);
}

void rs_sigpipe_unblock(rs_sigpipe_guard *g)
{
    if (g->was_blocked) return;
    /* OpenSSL may have written and failed inside a call that succeeded
     * (a read answering a key update), so look whatever the result. The
     * call's errno is kept for its caller. */
    int saved_errno = errno;
    sigset_t pending, pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    const struct timespec zero = {0, 0};
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE))
        while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR) {}
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved_errno;
}

/* hiredis' contract for write: bytes written, 0 to try again, or -1 with
 * the context's error set. */
static ssize_t plain_write(redisContext *c)
{
    ssize_t n = send(c->fd, c->obuf, sdslen(c->obuf), MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR || ((errno == EAGAIN || errno == EWOULDBLOCK) && !(c->flags & REDIS_BLOCK)))
        return 0;
    char buf[128];
    c->err = REDIS_ERR_IO;
    snprintf(c->errstr, sizeof c->errstr, "%s", strerror_r(errno, buf, sizeof buf));
    return -1;
}

/* Every plain (and every TLS) connection shares one hiredis function
 * table: our copy of it, with plain_write (or tls_write and tls_read), is
 * made once, from the first connection of each kind. */
static pthread_mutex_t tables_lock = PTHREAD_MUTEX_INITIALIZER;
static const redisContextFuncs *plain_original, *tls_original;
static redisContextFuncs plain_table, tls_table;

static ssize_t tls_write(redisContext *c)
{
    rs_sigpipe_guard g;
    rs_sigpipe_block(&g);
    ssize_t n = tls_original->write(c);
    rs_sigpipe_unblock(&g);
    return n;
}

static ssize_t tls_read(redisContext *c, char *buf, size_t size)
{
    rs_sigpipe_guard g;
    rs_sigpipe_block(&g);
    ssize_t n = tls_original->read(c, buf, size);
    rs_sigpipe_unblock(&g);
    return n;
}

void rs_nosigpipe(redisContext *ctx, int tls)
{
    const redisContextFuncs **original = tls ? &tls_original : &plain_original;
    redisContextFuncs *table = tls ? &tls_table : &plain_table;
    pthread_mutex_lock(&tables_lock);
    if (!*original) {
        *original = ctx->funcs;
        *table = *ctx->funcs;
        table->write = tls ? tls_write : plain_write;
        if (tls) table->read = tls_read;
    }
    if (ctx->funcs == *original) ctx->funcs = table;
    pthread_mutex_unlock(&tables_lock);
}
