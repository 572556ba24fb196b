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
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dirtytrack/log.h>

#include "sys/compat.h"

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

/*
 * A failed call returns -errno; EINTR is retried, so a signal handler in the caller's
 * process never turns into a spurious error. Fault injection fails the call first.
 */
#define SYS_RETRY(type, call)                                                                      \
	do {                                                                                       \
		type r_;                                                                           \
		if (sys_should_fail())                                                             \
			return -EIO;                                                               \
		do                                                                                 \
			r_ = (call);                                                               \
		while (r_ < 0 && errno == EINTR);                                                  \
		return r_ < 0 ? -errno : r_;                                                       \
	} while (0)

int sys_ioctl(int fd, unsigned long request, void *arg)
{
	SYS_RETRY(int, ioctl(fd, request, arg));
}

int sys_madvise(void *addr, size_t len, int advice)
{
	return madvise(addr, len, advice) ? -errno : 0;
}

int sys_open(const char *path, int flags)
{
	int fd;

	if (sys_should_fail())
		return -EIO;
	fd = open(path, flags | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int sys_close(int fd)
{
	return close(fd) ? -errno : 0;
}

void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long offset, int *err)
{
	void *p;

	if (sys_should_fail()) {
		*err = -EIO;
		return NULL;
	}
	p = mmap(addr, len, prot, flags, fd, offset);
	if (p == MAP_FAILED) {
		*err = -errno;
		return NULL;
	}
	*err = 0;
	return p;
}

int sys_munmap(void *addr, size_t len)
{
	return munmap(addr, len) ? -errno : 0;
}

int64_t sys_pread(int fd, void *buf, size_t len, uint64_t off)
{
	SYS_RETRY(ssize_t, pread(fd, buf, len, (off_t)off));
}

int64_t sys_read(int fd, void *buf, size_t len)
{
	SYS_RETRY(ssize_t, read(fd, buf, len));
}

int64_t sys_write(int fd, const void *buf, size_t len)
{
	SYS_RETRY(ssize_t, write(fd, buf, len));
}

int sys_userfaultfd(int flags)
{
	int fd;

	if (sys_should_fail())
		return -EIO;
	fd = (int)syscall(SYS_userfaultfd, flags | O_CLOEXEC);
	if (fd >= 0 || (errno != EPERM && errno != ENOSYS))
		return fd < 0 ? -errno : fd;
	/* Unprivileged userfaultfd off (vm.unprivileged_userfaultfd): /dev/userfaultfd. */
	fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	{
		int ufd = ioctl(fd, USERFAULTFD_IOC_NEW, flags | O_CLOEXEC);
		int err = errno;

		close(fd);
		return ufd < 0 ? -err : ufd;
	}
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
