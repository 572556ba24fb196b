/* SPDX-License-Identifier: MIT */
/*
 * sys/sys.c - thin, fault-injectable wrappers of the system calls the library makes, and
 * the ready-made stderr log callback.
 */
#include "sys/sys.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <dirtytrack/log.h>

static _Atomic unsigned long fail_at, call_count;

void sys_fail_nth(unsigned long n)
{
	atomic_store(&call_count, 0);
	atomic_store(&fail_at, n);
}

int sys_should_fail(void)
{
	unsigned long n = atomic_fetch_add(&call_count, 1) + 1;
	unsigned long at = atomic_load(&fail_at);

	if (at && n == at) {
		atomic_store(&fail_at, 0);
		return 1;
	}
	return 0;
}

int sys_range_mapped(uint64_t addr, uint64_t len)
{
	if (sys_should_fail())
		return -EFAULT;
	if (msync((void *)(uintptr_t)addr, len, MS_ASYNC))
		return errno == ENOMEM ? -EFAULT : -errno;
	return 0;
}

void *sys_zalloc_lazy(size_t size)
{
	void *p;

	if (size < 65536)
		return calloc(1, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (size >= (2u << 20))
		madvise(p, size, MADV_HUGEPAGE); /* advice only: failure is harmless */
	return p;
}

void sys_free_lazy(void *p, size_t size)
{
	if (size < 65536)
		free(p);
	else
		munmap(p, size);
}

void dt_log_stderr(void *opaque, enum dt_log_level level, const char *msg)
{
	static const char *const names[] = {[DT_LOG_ERR] = "error",
					    [DT_LOG_WARN] = "warning",
					    [DT_LOG_INFO] = "info",
					    [DT_LOG_DEBUG] = "debug"};
	const char *name = (unsigned)level < sizeof(names) / sizeof(names[0]) && names[level]
				   ? names[level]
				   : "log";

	fprintf(stderr, "dirtytrack: %s: %s\n", name, msg);
}
