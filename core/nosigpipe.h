/* SPDX-License-Identifier: MIT */
/* nosigpipe.h -- no SIGPIPE from writes to a closed connection
 * (nosigpipe.c).
 */
#ifndef RS_NOSIGPIPE_H
#define RS_NOSIGPIPE_H

#include <signal.h>
#include <hiredis/hiredis.h>

typedef struct rs_sigpipe_guard {
    sigset_t old;
    int was_blocked;
} rs_sigpipe_guard;
/* Blocks SIGPIPE for this thread; unblock consumes one raised meanwhile
 * and restores the mask. */
void rs_sigpipe_block(rs_sigpipe_guard *g);
void rs_sigpipe_unblock(rs_sigpipe_guard *g);
/* Gives ctx a write function that cannot raise SIGPIPE (after TLS setup). */
void rs_nosigpipe(redisContext *ctx, int tls);

#endif /* RS_NOSIGPIPE_H */
