/* SPDX-License-Identifier: MIT */
/*
 * core/log.c - the log callback. The callback, its argument and the level are published
 * together (one pointer to an immutable record) so a concurrent dt_set_log() never pairs a
 * callback with another's argument. Old records are leaked on replacement: dt_set_log() is
 * called a handful of times per process and a reader may still hold the old one.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct log_sink {
	dt_log_fn fn;
	void *opaque;
	enum dt_log_level max;
};

static _Atomic(struct log_sink *) sink;

void dt_set_log(dt_log_fn fn, void *opaque, enum dt_log_level max_level)
{
	struct log_sink *s = NULL;

	if (fn) {
		s = malloc(sizeof(*s));
		if (!s)
			return;
		s->fn = fn;
		s->opaque = opaque;
		s->max = max_level;
	}
	atomic_store_explicit(&sink, s, memory_order_release);
}

void log_msg(enum dt_log_level level, const char *fmt, ...)
{
	struct log_sink *s = atomic_load_explicit(&sink, memory_order_acquire);
	char buf[512];
	va_list ap;

	if (!s || level > s->max)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s->fn(s->opaque, level, buf);
}
