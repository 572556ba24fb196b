/* SPDX-License-Identifier: MIT */
/*
 * core/log.c - the log callback. The callback, its argument and the level are published
 * together (one pointer to an immutable record) so a concurrent dt_set_log() never pairs a
 * callback with another's argument. Replaced records are never freed (a reader may still
 * hold one) but stay on a list, and an identical record is reused, so a program that sets
 * the same callback again and again does not grow.
 */
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct log_sink {
	dt_log_fn fn;
	void *opaque;
	enum dt_log_level max;
	struct log_sink *next; /* every record ever made */
};

static _Atomic(struct log_sink *) sink;
static struct log_sink *all_sinks;
static pthread_mutex_t sinks_lock = PTHREAD_MUTEX_INITIALIZER;

void dt_set_log(dt_log_fn fn, void *opaque, enum dt_log_level max_level)
{
	struct log_sink *s = NULL;

	if (fn) {
		pthread_mutex_lock(&sinks_lock);
		for (s = all_sinks; s; s = s->next)
			if (s->fn == fn && s->opaque == opaque && s->max == max_level)
				break;
		if (!s) {
			s = malloc(sizeof(*s));
			if (s) {
				*s = (struct log_sink){fn, opaque, max_level, all_sinks};
				all_sinks = s;
			}
		}
		pthread_mutex_unlock(&sinks_lock);
		if (!s)
			return;
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
