/* SPDX-License-Identifier: MIT */
/* host_log.c -- the host's one format for log lines on stderr:
 *
 *   rigatoni-store: <level>: <message>
 *
 * The library never prints: the host installs this formatter as the
 * handler of the config --check opens its store with, and as the Lua
 * module's default (rs_lua_set_log_default), which the stores of scripts
 * log to while no rs.set_log_handler is set and which reports a failing
 * Lua handler. host.log and the host's own warnings print through it too.
 * The message is printed as given: the core's lines come masked, and the
 * host masks its own before calling.
 */
#include <stdio.h>

#include "host.h"

void host_log_write(rs_log_level level, const char *message, void *userdata)
{
    (void)userdata;
    /* One call: stdio locks the stream, so lines of threads never mix. */
    fprintf(stderr, "rigatoni-store: %s: %s\n", rs_log_level_name(level), message);
}
