/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack/log.h - where the library's messages go.
 *
 * The library never prints. Every rejected call logs one line saying why, at DT_LOG_ERR or
 * DT_LOG_WARN; choices (sources picked, fallbacks) are DT_LOG_INFO. Without a callback,
 * messages are dropped. The callback may be called from any thread, concurrently.
 */
#ifndef DIRTYTRACK_LOG_H
#define DIRTYTRACK_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

enum dt_log_level { DT_LOG_ERR = 3, DT_LOG_WARN = 4, DT_LOG_INFO = 6, DT_LOG_DEBUG = 7 };

typedef void (*dt_log_fn)(void *opaque, enum dt_log_level level, const char *msg);

/* Install a callback (NULL removes it) and the most verbose level passed to it. */
void dt_set_log(dt_log_fn fn, void *opaque, enum dt_log_level max_level);

/* A ready-made callback printing "dirtytrack: <level>: <msg>" to stderr. */
void dt_log_stderr(void *opaque, enum dt_log_level level, const char *msg);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYTRACK_LOG_H */
