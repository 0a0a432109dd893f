/* SPDX-License-Identifier: MIT */
/* error.c -- rs_error: what went wrong, in one masked line.
 *
 * Messages are built from our own text plus hosts, ports and server replies;
 * callers never pass URLs or passwords in unmasked form.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static const char *const kind_names[] = {
    [RS_OK] = "ok",
    [RS_ERR_CONFIG] = "config",
    [RS_ERR_CONNECTION] = "connection",
    [RS_ERR_TIMEOUT] = "timeout",
    [RS_ERR_AUTH] = "auth",
    [RS_ERR_SERIALIZATION] = "serialization",
    [RS_ERR_SERVER] = "server",
    [RS_ERR_POOL] = "pool",
    [RS_ERR_NOT_OWNER] = "not_owner",
    [RS_ERR_NOMEM] = "nomem",
    [RS_ERR_UNKNOWN] = "unknown",
};

const char *rs_error_kind_name(rs_error_kind kind)
{
    if ((size_t)kind < sizeof kind_names / sizeof kind_names[0] && kind_names[kind])
        return kind_names[kind];
    return "unknown";
}

void rs_error_set(rs_error *err, rs_error_kind kind, int retryable,
                  const char *fmt, ...)
{
    err->kind = kind;
    err->retryable = retryable;
    err->reply = RS_REPLY_NONE;     /* rs_error_from_reply sets it after */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* One line: a server reply or OS message must not break log lines. */
    for (char *p = err->message; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
}

void rs_error_clear(rs_error *err)
{
    memset(err, 0, sizeof *err);
}

void rs_free(void *ptr)
{
    free(ptr);
}
