/* SPDX-License-Identifier: MIT */
/* resp.h -- a command as argv with lengths (binary safe), and its RESP
 * encoding onto a connection's output buffer (resp.c).
 */
#ifndef RS_RESP_H
#define RS_RESP_H

#include <stddef.h>
#include <hiredis/hiredis.h>

typedef struct rs_cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
} rs_cmd;

/* Appends the RESP of every command to ctx's output buffer in one
 * piece; 0, or -1 when out of memory (ctx->err set by hiredis, or not). */
int rs_resp_append(redisContext *ctx, size_t ncmds, const rs_cmd *cmds);

#endif /* RS_RESP_H */
