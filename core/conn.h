/* SPDX-License-Identifier: MIT */
/* conn.h -- one Redis connection: connect, AUTH, SELECT, one setup
 * command (conn.c). Pools (pool.c) own connections; the engine (exec.c)
 * runs pipelines on them.
 */
#ifndef RS_CONN_H
#define RS_CONN_H

#include <stdint.h>
#include <hiredis/hiredis.h>

#include "rigatoni_store.h"

typedef struct rs_tls rs_tls;

typedef struct rs_conn {
    redisContext *ctx;
    int tls;                 /* rediss:// */
    double opened_at;        /* rs_now() when connected */
    /* pool.c's */
    double last_used;        /* rs_now() when last handed back */
    uint64_t generation;     /* pool generation it was opened in */
    struct rs_conn *next;    /* idle list link */
    /* What a layer above learned on this connection, read and written by
     * the one file named. It must last exactly as long as the connection,
     * which the pool keeps between calls: here it goes with the
     * connection, where a table in that file would need a lock and a
     * look-up on every call, and an entry per connection freed by pool.c. */
    struct {
        int used;                /* a pipeline was sent on it */
        unsigned spin_misses;    /* late replies in a row */
        unsigned spin_skipped;   /* calls that did not spin since */
    } exec;                      /* exec.c */
    struct {
        int identity;            /* 0 not asked yet, 1 run_id known, -1 refused */
        char run_id[41];         /* the server process's INFO run_id */
    } scan;                      /* scan.c */
} rs_conn;

/* TCP (+ TLS) connection with AUTH when a password is given. NULL + err. */
redisContext *rs_connect(const rs_config *cfg, rs_tls *tls, const char *host, int port,
                         const char *username, const char *password, rs_error *err);
/* A data connection: rs_connect with the URL's credentials, then SELECT. */
rs_conn *rs_conn_open(const rs_config *cfg, rs_tls *tls, const char *host, int port,
                      rs_error *err);
void rs_conn_close(rs_conn *conn);
/* One setup command; *out gets the reply (may be NULL to drop it). An
 * error reply fails with err classified. 0 or -1. */
int rs_conn_command(redisContext *ctx, int argc, const char **argv, redisReply **out,
                    rs_error *err);

#endif /* RS_CONN_H */
