/* SPDX-License-Identifier: MIT */
/* resp.c -- a whole pipeline in RESP, appended to a connection at once.
 *
 * hiredis formats each command into its own buffer (a printf-style pass
 * and an allocation per argument, then a copy into the output buffer);
 * a bulk tool's 1000-command pipelines spent a sixth of their time there.
 * Here the exact size is counted first and every command is written into
 * one buffer, which is appended once. Arguments travel with their lengths:
 * binary safe, nothing is formatted from user data.
 */
#include <stdlib.h>
#include <string.h>

#include "resp.h"

/* Digits of n in decimal. */
static size_t digits(size_t n)
{
    size_t d = 1;
    while (n >= 10) n /= 10, d++;
    return d;
}

/* Writes "<kind><n>\r\n" at p; returns the end. */
static char *header(char *p, char kind, size_t n)
{
    size_t d = digits(n);
    *p++ = kind;
    for (char *q = p + d; q > p; n /= 10) *--q = (char)('0' + n % 10);
    p += d;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

int rs_resp_append(redisContext *ctx, size_t ncmds, const rs_cmd *cmds)
{
    size_t total = 0;
    for (size_t i = 0; i < ncmds; i++) {
        total += 3 + digits((size_t)cmds[i].argc);
        for (int a = 0; a < cmds[i].argc; a++)
            total += 5 + digits(cmds[i].argvlen[a]) + cmds[i].argvlen[a];
    }
    char small[2048];
    char *buf = total <= sizeof small ? small : malloc(total);
    if (!buf) return -1;
    char *p = buf;
    for (size_t i = 0; i < ncmds; i++) {
        p = header(p, '*', (size_t)cmds[i].argc);
        for (int a = 0; a < cmds[i].argc; a++) {
            size_t len = cmds[i].argvlen[a];
            p = header(p, '$', len);
            if (len) memcpy(p, cmds[i].argv[a], len);
            p += len;
            *p++ = '\r';
            *p++ = '\n';
        }
    }
    int rc = redisAppendFormattedCommand(ctx, buf, total) == REDIS_OK ? 0 : -1;
    if (buf != small) free(buf);
    return rc;
}
