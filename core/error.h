/* SPDX-License-Identifier: MIT */
/* error.h -- filling an rs_error (error.c), and the one way a public entry
 * point accepts err == NULL. Below the public entry points `err` is never
 * NULL.
 */
#ifndef RS_ERROR_H
#define RS_ERROR_H

#include "rigatoni_store.h"

#ifndef RS_FMT
#define RS_FMT(a, b) __attribute__((format(printf, a, b)))
#endif

/* The one way a public entry point accepts err == NULL ("may be NULL" in
 * rigatoni_store.h): its first statement is RS_ERR_ACCEPT_NULL(err);,
 * which points `err` at a cleared local rs_error when the caller gave
 * none. Below the public entry points `err` is never NULL, so nothing
 * else tests it. */
static inline rs_error *rs_error_or_local(rs_error *err, rs_error *local)
{
    if (err) return err;
    local->kind = RS_OK;
    local->retryable = 0;
    local->attempts = 0;
    local->reply = RS_REPLY_NONE;
    local->message[0] = '\0';
    return local;
}
#define RS_ERR_ACCEPT_NULL(err)      \
    rs_error err##_if_null_;         \
    (err) = rs_error_or_local((err), &err##_if_null_)

void rs_error_set(rs_error *err, rs_error_kind kind, int retryable,
                  const char *fmt, ...) RS_FMT(4, 5);
void rs_error_clear(rs_error *err);

#endif /* RS_ERROR_H */
