/* SPDX-License-Identifier: MIT */
/* retry.h -- which failures are worth another attempt, and when
 * (retry.c): errors classified from a connection or a reply, backoff.
 */
#ifndef RS_RETRY_H
#define RS_RETRY_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "rigatoni_store.h"

/* Fills err from a failed context (I/O, EOF, timeout, protocol). */
void rs_error_from_context(rs_error *err, const redisContext *ctx);
/* The class of an error reply, by its first word. */
rs_reply_class rs_reply_classify(const char *str, size_t len);
/* Fills err from an error reply: err->reply gets its class, which decides
 * the kind and whether it is retryable (auth, transient, ...). */
void rs_error_from_reply(rs_error *err, const char *str, size_t len);
/* Delay before retry number `n` (1-based): base * 2^(n-1), capped, with
 * jitter in [50%, 100%]. */
double rs_retry_delay(const rs_config *cfg, int n);
/* After failed attempt number `attempt` of `what`: when the failure is
 * retryable and attempts remain, counts and logs the retry, sleeps the
 * delay and returns 1; else returns 0, also when the store's close begins
 * before or during the delay (closing.c). */
int rs_retry_wait(rs_store *store, const char *what, int attempt, const rs_error *last);

#endif /* RS_RETRY_H */
