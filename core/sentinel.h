/* SPDX-License-Identifier: MIT */
/* sentinel.h -- asking Sentinel which node is the master, and checking
 * that it is (sentinel.c).
 */
#ifndef RS_SENTINEL_H
#define RS_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

#include "rigatoni_store.h"

typedef struct rs_tls rs_tls;
typedef struct rs_conn rs_conn;

/* Asks every one of the URL's sentinels, from the start-th (mod their
 * number) on, for the master's address and config epoch; takes the address
 * of the newest epoch, among equals the one named most often. *epoch: that
 * epoch (0 when not told). 0 or -1. */
int rs_sentinel_discover(const rs_config *cfg, rs_tls *tls, uint64_t start, char *host,
                         size_t host_size, int *port, uint64_t *epoch, rs_error *err);
/* ROLE says master? 0, or -1 with a retryable error. */
int rs_sentinel_confirm_master(rs_conn *conn, const char *host, int port, rs_error *err);

#endif /* RS_SENTINEL_H */
