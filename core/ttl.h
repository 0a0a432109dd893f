/* SPDX-License-Identifier: MIT */
/* ttl.h -- the TTL arguments of a SET (ttl.c).
 */
#ifndef RS_TTL_H
#define RS_TTL_H

#include <stddef.h>

/* The TTL arguments of a SET: "EX" and whole seconds, or "PX" and
 * milliseconds when the TTL has a fraction. Returns 0 (and unit "", amount
 * "") when ttl is 0 (none), else 1. */
int rs_ttl_args(double ttl, const char **unit, char *amount, size_t size);

#endif /* RS_TTL_H */
