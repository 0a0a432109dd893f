/* SPDX-License-Identifier: MIT */
/* failover.h -- the thread that hears Sentinel's +switch-master and tells
 * the pool at once (failover.c).
 */
#ifndef RS_FAILOVER_H
#define RS_FAILOVER_H

#include "rigatoni_store.h"

typedef struct rs_tls rs_tls;
typedef struct rs_pool rs_pool;

typedef struct rs_failover rs_failover;
/* A thread subscribed to +switch-master on one of the URL's sentinels (the
 * next one when it fails), telling `pool` at once. NULL + err when the
 * thread cannot start. */
rs_failover *rs_failover_start(const rs_config *cfg, rs_tls *tls, rs_pool *pool, rs_error *err);
/* Stops and joins the thread; NULL is fine. */
void rs_failover_stop(rs_failover *f);

#endif /* RS_FAILOVER_H */
