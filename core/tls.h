/* SPDX-License-Identifier: MIT */
/* tls.h -- a store's TLS context and the handshake on a new connection
 * (tls.c).
 */
#ifndef RS_TLS_H
#define RS_TLS_H

#include <hiredis/hiredis.h>

#include "rigatoni_store.h"

typedef struct rs_tls rs_tls;
/* One TLS context per store, from the tls.* options. NULL + config error. */
rs_tls *rs_tls_new(const rs_config *cfg, rs_error *err);
void rs_tls_free(rs_tls *tls);
/* TLS handshake on a connected context; verifies chain and host name
 * unless tls.verify is off (then warns). Certificate, name and protocol
 * errors are final; a reset, EOF or timeout is a retryable connection
 * error. */
int rs_tls_handshake(rs_tls *tls, redisContext *ctx, const char *host, int port, rs_error *err);

#endif /* RS_TLS_H */
