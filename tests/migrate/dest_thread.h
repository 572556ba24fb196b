/* SPDX-License-Identifier: MIT */
/*
 * tests/migrate/dest_thread.h - a migration destination in a thread: fill in opts, start
 * dest_main with pthread_create, join, then read ret and res.
 */
#ifndef DT_TESTS_MIGRATE_DEST_THREAD_H
#define DT_TESTS_MIGRATE_DEST_THREAD_H

#include <pthread.h>

#include <dirtytrack/dirtytrack.h>

struct dest {
	pthread_t thread;
	struct dt_migrate_dest_opts opts;
	struct dt_migrate_dest_result res;
	int ret;
};

static void *dest_main(void *arg)
{
	struct dest *d = arg;

	d->ret = dt_migrate_dest(&d->opts, &d->res);
	/* What a real destination does when it ends: close its side. */
	dt_transport_shutdown(d->opts.transport);
	return NULL;
}

#endif
