/* SPDX-License-Identifier: MIT */
/* identity.h -- reading a field of an INFO reply (identity.c), for the
 * files that tell one server process from another.
 */
#ifndef RS_IDENTITY_H
#define RS_IDENTITY_H

#include <stddef.h>

/* Copies the value of "<name>:" at the start of a line of an INFO text.
 * 1 when found and it fits, else 0. */
int rs_info_field(const char *text, size_t len, const char *name, char *buf, size_t size);

#endif /* RS_IDENTITY_H */
