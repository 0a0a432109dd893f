/* SPDX-License-Identifier: MIT */
/* conn.c -- opening one ready-to-use Redis connection.
 *
 * Ready means: TCP connected within connection_timeout, command timeout set,
 * TLS handshake done for rediss://, authenticated (AUTH [user] password)
 * and, for data connections, the URL's database selected. A connection that
 * fails any step is closed here, never handed to the pool half set up.
 * Sentinel connections use the same path with the sentinel credentials.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "conn.h"
#include "clock.h"
#include "config.h"
#include "error.h"
#include "nosigpipe.h"
#include "retry.h"
#include "tls.h"

static struct timeval to_timeval(double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - floor(seconds)) * 1e6);
    return tv;
}

int rs_conn_command(redisContext *ctx, int argc, const char **argv, redisReply **out,
                    rs_error *err)
{
    redisReply *reply = redisCommandArgv(ctx, argc, argv, NULL);
    if (!reply) {
        rs_error_from_context(err, ctx);
        return -1;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        rs_error_from_reply(err, reply->str, reply->len);
        freeReplyObject(reply);
        return -1;
    }
    if (out) *out = reply;
    else freeReplyObject(reply);
    return 0;
}

/* Prefixes err's message with the address it is about. */
static void about(rs_error *err, const char *host, int port)
{
    char detail[sizeof err->message];
    memcpy(detail, err->message, sizeof detail);
    rs_reply_class reply = err->reply;
    rs_error_set(err, err->kind, err->retryable, "%s:%d: %s", host, port, detail);
    err->reply = reply;
}

redisContext *rs_connect(const rs_config *cfg, rs_tls *tls, const char *host, int port,
                         const char *username, const char *password, rs_error *err)
{
    double connect_s = cfg->connection_timeout, command_s = cfg->command_timeout;
    if (cfg->deadline > 0) {
        /* Up to five timed steps (connect, TLS, AUTH, SELECT, ROLE; a
         * sentinel's question is one): each gets a fifth of the time left,
         * so that they all end by the deadline. */
        double left = cfg->deadline - rs_now();
        if (left < RS_DEADLINE_MIN_LEFT) {
            if (err)
                rs_error_set(err, RS_ERR_TIMEOUT, 1, "cannot connect to %s:%d: no time left before "
                             "the deadline", host, port);
            return NULL;
        }
        connect_s = fmin(connect_s, left / 5);
        command_s = fmin(command_s, left / 5);
    }
    struct timeval connect_tv = to_timeval(connect_s);
    struct timeval command_tv = to_timeval(command_s);
    redisOptions opts = {0};
    REDIS_OPTIONS_SET_TCP(&opts, host, port);
    opts.connect_timeout = &connect_tv;
    opts.command_timeout = &command_tv;

    redisContext *ctx = redisConnectWithOptions(&opts);
    if (!ctx || ctx->err) {
        rs_error_from_context(err, ctx);
        if (err) {
            char detail[sizeof err->message];
            memcpy(detail, err->message, sizeof detail);
            rs_error_set(err, err->kind, err->retryable, "cannot connect to %s:%d: %s", host,
                         port, detail);
        }
        if (ctx) redisFree(ctx);
        return NULL;
    }
    /* hiredis allocates an array reply's element table as soon as it reads
     * "*<n>", before any element arrives (up to 2^32 - 1 by default): a
     * broken or hostile server could make us allocate gigabytes with a few
     * bytes. No reply of ours comes near 2^24 elements (spec/fuzz). */
    ctx->reader->maxelements = 1LL << 24;
    /* The command timeout is already set, so a plain-text server behind
     * rediss:// fails the handshake in time instead of hanging. */
    if (tls && rs_tls_handshake(tls, ctx, host, port, err) < 0) goto fail;
    rs_nosigpipe(ctx, tls != NULL);
    if (password) {
        const char *argv[3] = {"AUTH", username, password};
        int argc = 3;
        if (!username) {
            argv[1] = password;
            argc = 2;
        }
        if (rs_conn_command(ctx, argc, argv, NULL, err) < 0) {
            about(err, host, port);
            goto fail;
        }
    }
    return ctx;
fail:
    redisFree(ctx);
    return NULL;
}

rs_conn *rs_conn_open(const rs_config *cfg, rs_tls *tls, const char *host, int port,
                      rs_error *err)
{
    const rs_url *url = &cfg->parsed;
    redisContext *ctx = rs_connect(cfg, tls, host, port, url->username, rs_config_password(cfg),
                                   err);
    if (!ctx) return NULL;
    if (url->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", url->db);
        const char *argv[2] = {"SELECT", db};
        if (rs_conn_command(ctx, 2, argv, NULL, err) < 0) {
            about(err, host, port);
            redisFree(ctx);
            return NULL;
        }
    }
    rs_conn *conn = calloc(1, sizeof *conn);
    if (!conn) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        redisFree(ctx);
        return NULL;
    }
    conn->ctx = ctx;
    conn->tls = tls != NULL;
    conn->last_used = conn->opened_at = rs_now();
    return conn;
}

void rs_conn_close(rs_conn *conn)
{
    if (!conn) return;
    /* A connection abandoned after an error (a timeout, a lost reply) may
     * still have a request in the kernel's send queue: a plain close would
     * deliver it later, after our retry, putting an old token back. Linger
     * 0 makes close a reset that discards it. */
    if (conn->ctx && conn->ctx->err && conn->ctx->fd >= 0) {
        struct linger reset = {1, 0};
        setsockopt(conn->ctx->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    if (conn->ctx) redisFree(conn->ctx);
    free(conn);
}
