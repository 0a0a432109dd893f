/* SPDX-License-Identifier: MIT */
/* pool.h -- a bounded pool of connections to one node, or to the
 * master Sentinel names (pool.c). Every attempt lends its connection here.
 */
#ifndef RS_POOL_H
#define RS_POOL_H

#include <stdint.h>

#include "rigatoni_store.h"

typedef struct rs_tls rs_tls;
typedef struct rs_conn rs_conn;

typedef struct rs_pool rs_pool;
/* A pool of connections to host:port, or, with host NULL, to the master
 * that the URL's sentinels name. */
rs_pool *rs_pool_new(const rs_config *cfg, rs_tls *tls, const char *host, int port);
void rs_pool_free(rs_pool *pool);
/* The store's close, heard by the pool (closing.h): a caller waiting for
 * a free connection stops waiting once it begins (rs_pool_acquire: NULL,
 * "not sent: the store is closing"). Set once, before any acquire. */
typedef struct rs_closing rs_closing;
void rs_pool_watch_closing(rs_pool *pool, rs_closing *closing);
/* 1 once the watched close began: a connection just lent must not carry
 * a new call (nothing of it is sent). */
int rs_pool_closing(rs_pool *pool);
/* The config the pool was made with (a lease's own, or its store's). */
const rs_config *rs_pool_config(const rs_pool *pool);
/* Lends a connection, creating one when under pool_size, else waiting at
 * most connection_timeout. Idle connections older than idle_check_after
 * are PINGed first. NULL + err (pool, connection, ...) on failure. */
rs_conn *rs_pool_acquire(rs_pool *pool, rs_error *err);
/* Gives a connection back; `broken` closes it instead of keeping it. */
void rs_pool_release(rs_pool *pool, rs_conn *conn, int broken);
/* Closes every idle connection: after an I/O error they are suspect
 * (a restarted server leaves all of them dead). */
void rs_pool_drop_idle(rs_pool *pool);
/* After a failed attempt: with Sentinel, a lost connection or a READONLY /
 * MASTERDOWN reply means the master may have moved, so every connection is
 * retired and the next one asks the sentinels again; without Sentinel a
 * lost connection drops the idle ones. */
void rs_pool_after_failure(rs_pool *pool, int broken, const rs_error *err);
void rs_pool_get_stats(rs_pool *pool, rs_pool_stats *out);
/* The sentinels announced that the master is now host:port: unless the
 * pool already moved there, every connection is retired (idle ones closed,
 * lent ones on release) and the next one asks the sentinels. */
void rs_pool_master_switched(rs_pool *pool, const char *host, int port);
/* Retires every connection (idle ones now, lent ones on release). */
void rs_pool_retire(rs_pool *pool);
/* How many times the pool saw its master change (a discovery naming
 * another address, or a switch announced); never goes back. */
uint64_t rs_pool_master_changes(rs_pool *pool);

#endif /* RS_POOL_H */
