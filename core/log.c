/* SPDX-License-Identifier: MIT */
/* log.c -- leveled, masked log lines, handed to the store's handler.
 *
 * The library never prints: a line goes to the handler of the config the
 * store was opened with (rs_config_set_log_handler), and nowhere without
 * one. The level is process-wide and an atomic, so that the hot path ("is
 * debug on?") takes no lock. Handlers run under one mutex, so lines from
 * several threads (and stores) never interleave: handlers must be quick
 * and must not log themselves.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "config.h"

static atomic_int current_level = RS_LOG_WARN;
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *rs_log_level_name(rs_log_level level)
{
    return (unsigned)level <= RS_LOG_DEBUG ? level_names[level] : "unknown";
}

int rs_log_level_parse(const char *name, rs_log_level *level)
{
    for (int i = 0; i <= RS_LOG_DEBUG; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *level = (rs_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *level = RS_LOG_WARN;
        return 0;
    }
    return -1;
}

void rs_log_set_level(rs_log_level level)
{
    atomic_store(&current_level, (int)level);
}

rs_log_level rs_log_get_level(void)
{
    return (rs_log_level)atomic_load(&current_level);
}

int rs_log_enabled(rs_log_level level)
{
    return (int)level <= atomic_load(&current_level);
}

void rs_log(const rs_config *cfg, rs_log_level level, const char *fmt, ...)
{
    if (!cfg || !cfg->log_fn || !rs_log_enabled(level)) return;
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    for (char *p = message; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
    pthread_mutex_lock(&handler_lock);
    cfg->log_fn(level, message, cfg->log_data);
    pthread_mutex_unlock(&handler_lock);
}
