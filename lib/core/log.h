/* SPDX-License-Identifier: MIT */
/*
 * core/log.h - internal logging: one formatted line to the user's dt_set_log() callback.
 */
#ifndef DT_CORE_LOG_H
#define DT_CORE_LOG_H

#include <dirtytrack/log.h>

void log_msg(enum dt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(DT_LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(DT_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(DT_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(DT_LOG_DEBUG, __VA_ARGS__)

/* Log an error and return the (negative) errno: "return log_fail(-EINVAL, "why %d", x);" */
#define log_fail(err, ...) (log_err(__VA_ARGS__), (err))

#endif
