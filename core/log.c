/* SPDX-License-Identifier: MIT */
/* log.c -- process-wide, leveled, masked log lines.
 *
 * The level is an atomic so that the hot path ("is debug on?") takes no
 * lock. The handler runs under a mutex, so it cannot be swapped out while
 * it runs and lines from several threads never interleave: handlers must
 * be quick and must not log themselves.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

static atomic_int current_level = RS_LOG_WARN;
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;
static rs_log_fn handler;
static void *handler_data;

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

void rs_log_set_handler(rs_log_fn fn, void *userdata)
{
    pthread_mutex_lock(&handler_lock);
    handler = fn;
    handler_data = userdata;
    pthread_mutex_unlock(&handler_lock);
}

int rs_log_enabled(rs_log_level level)
{
    return (int)level <= atomic_load(&current_level);
}

static void default_handler(rs_log_level level, const char *message)
{
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    static const char *const upper[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    fprintf(stderr, "%s.%03ldZ %s rigatoni_store: %s\n", when, ts.tv_nsec / 1000000L,
            upper[level], message);
}

void rs_log(rs_log_level level, const char *fmt, ...)
{
    if (!rs_log_enabled(level)) return;
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    for (char *p = message; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
    pthread_mutex_lock(&handler_lock);
    if (handler) handler(level, message, handler_data);
    else default_handler(level, message);
    pthread_mutex_unlock(&handler_lock);
}
