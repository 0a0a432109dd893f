/* conn.c -- opening one ready-to-use Redis connection.
 *
 * Ready means: TCP connected within connection_timeout, command timeout set,
 * authenticated (AUTH [user] password from the URL) and the URL's database
 * selected. A connection that fails any step is closed here, never handed
 * to the pool half set up.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "internal.h"

static struct timeval to_timeval(double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - floor(seconds)) * 1e6);
    return tv;
}

/* Runs a setup command; 0 or -1 with err filled. */
static int setup_command(redisContext *ctx, int argc, const char **argv, rs_error *err)
{
    redisReply *reply = redisCommandArgv(ctx, argc, argv, NULL);
    if (!reply) {
        rs_error_from_context(err, ctx);
        return -1;
    }
    int rc = 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        rs_error_from_reply(err, reply->str, reply->len);
        rc = -1;
    }
    freeReplyObject(reply);
    return rc;
}

rs_conn *rs_conn_open(const rs_config *cfg, rs_error *err)
{
    const rs_url *url = &cfg->parsed;
    const rs_host *host = &url->hosts[0];
    struct timeval connect_tv = to_timeval(cfg->connection_timeout);
    struct timeval command_tv = to_timeval(cfg->command_timeout);

    redisOptions opts = {0};
    REDIS_OPTIONS_SET_TCP(&opts, host->host, host->port);
    opts.connect_timeout = &connect_tv;
    opts.command_timeout = &command_tv;

    redisContext *ctx = redisConnectWithOptions(&opts);
    if (!ctx || ctx->err) {
        rs_error_from_context(err, ctx);
        if (err) {
            char detail[sizeof err->message];
            memcpy(detail, err->message, sizeof detail);
            rs_error_set(err, err->kind, err->retryable, "cannot connect to %s:%d: %s",
                         host->host, host->port, detail);
        }
        if (ctx) redisFree(ctx);
        return NULL;
    }

    if (url->password) {
        const char *argv[3] = {"AUTH", url->username, url->password};
        int argc = 3;
        if (!url->username) {
            argv[1] = url->password;
            argc = 2;
        }
        if (setup_command(ctx, argc, argv, err) < 0) goto fail;
    }
    if (url->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", url->db);
        const char *argv[2] = {"SELECT", db};
        if (setup_command(ctx, 2, argv, err) < 0) goto fail;
    }

    rs_conn *conn = calloc(1, sizeof *conn);
    if (!conn) {
        rs_error_set(err, RS_ERR_NOMEM, 0, "out of memory");
        goto fail;
    }
    conn->ctx = ctx;
    conn->last_used = rs_now();
    return conn;
fail:
    redisFree(ctx);
    return NULL;
}

void rs_conn_close(rs_conn *conn)
{
    if (!conn) return;
    if (conn->ctx) redisFree(conn->ctx);
    free(conn);
}
