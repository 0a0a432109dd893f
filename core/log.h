/* SPDX-License-Identifier: MIT */
/* log.h -- log lines handed to the handler of the store's config (log.c);
 * the library itself never prints.
 */
#ifndef RS_LOG_H
#define RS_LOG_H

#include "rigatoni_store.h"

#ifndef RS_FMT
#define RS_FMT(a, b) __attribute__((format(printf, a, b)))
#endif

int rs_log_enabled(rs_log_level level);
/* Hands a line to the handler of `cfg` (rs_config_set_log_handler); none
 * (NULL, the default) = silent: the library never prints. */
/* Callers pass masked text only. */
void rs_log(const rs_config *cfg, rs_log_level level, const char *fmt, ...) RS_FMT(3, 4);

#endif /* RS_LOG_H */
