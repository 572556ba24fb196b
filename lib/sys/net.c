/* SPDX-License-Identifier: MIT */
/*
 * sys/net.c - the socket, poll and clock calls of the transport layer (lib/transport), as
 * thin wrappers in the style of sys.c: a negative errno on failure, never -1 with errno.
 *
 * Invariants: EINTR is retried everywhere except connect() (see sys.h); poll waits are
 * bounded by an absolute CLOCK_MONOTONIC deadline, so a retried poll never waits longer than
 * the caller asked; every descriptor made here is close-on-exec; every send carries
 * MSG_NOSIGNAL so a closed peer is -EPIPE, never SIGPIPE. Each call but close/shutdown and
 * the clock consults sys_should_fail() first, so tests can make the n-th one fail (-EIO).
 */
#include "sys/sys.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Fault injection first, then the call, retried while a signal interrupts it. */
#define NET_RETRY(type, call)                                                                      \
	do {                                                                                       \
		type r_;                                                                           \
		if (sys_should_fail())                                                             \
			return -EIO;                                                               \
		do                                                                                 \
			r_ = (call);                                                               \
		while (r_ < 0 && errno == EINTR);                                                  \
		return r_ < 0 ? -errno : r_;                                                       \
	} while (0)

int sys_socket(int domain, int type, int protocol)
{
	NET_RETRY(int, socket(domain, type | SOCK_CLOEXEC, protocol));
}

int sys_bind(int fd, const struct sockaddr *addr, unsigned addrlen)
{
	NET_RETRY(int, bind(fd, addr, addrlen));
}

int sys_listen(int fd, int backlog)
{
	NET_RETRY(int, listen(fd, backlog));
}

int sys_accept(int fd, int flags)
{
	NET_RETRY(int, accept4(fd, NULL, NULL, flags | SOCK_CLOEXEC));
}

int sys_connect(int fd, const struct sockaddr *addr, unsigned addrlen)
{
	if (sys_should_fail())
		return -EIO;
	if (connect(fd, addr, addrlen) == 0)
		return 0;
	return errno == EINTR ? -EINPROGRESS : -errno;
}

int sys_shutdown(int fd, int how)
{
	return shutdown(fd, how) ? -errno : 0;
}

int sys_setsockopt(int fd, int level, int name, const void *val, unsigned len)
{
	NET_RETRY(int, setsockopt(fd, level, name, val, len));
}

int sys_getsockopt(int fd, int level, int name, void *val, unsigned *len)
{
	NET_RETRY(int, getsockopt(fd, level, name, val, len));
}

int sys_getsockname(int fd, struct sockaddr *addr, unsigned *len)
{
	NET_RETRY(int, getsockname(fd, addr, len));
}

int64_t sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	NET_RETRY(ssize_t, sendmsg(fd, msg, flags | MSG_NOSIGNAL));
}

int64_t sys_recv(int fd, void *buf, size_t len, int flags)
{
	NET_RETRY(ssize_t, recv(fd, buf, len, flags));
}

int64_t sys_recvmsg(int fd, struct msghdr *msg, int flags)
{
	NET_RETRY(ssize_t, recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC));
}

int64_t sys_writev(int fd, const struct iovec *iov, int iovcnt)
{
	NET_RETRY(ssize_t, writev(fd, iov, iovcnt));
}

int sys_set_nonblock(int fd, int on)
{
	int fl;

	if (sys_should_fail())
		return -EIO;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) ? -errno : 0;
}

int sys_eventfd(void)
{
	NET_RETRY(int, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

int sys_eventfd_wake(int fd)
{
	ssize_t r;

	do
		r = eventfd_write(fd, 1);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

int sys_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
		    struct addrinfo **res)
{
	int r;

	*res = NULL;
	if (sys_should_fail())
		return -EIO;
	r = getaddrinfo(host, service, hints, res);
	switch (r) {
	case 0:
		return 0;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_BADFLAGS:
	case EAI_FAMILY:
	case EAI_SERVICE:
	case EAI_SOCKTYPE:
		return -EINVAL;
	default: /* EAI_NONAME, EAI_NODATA, EAI_ADDRFAMILY, EAI_FAIL */
		return -ENXIO;
	}
}

uint64_t sys_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sys_deadline_ms(int timeout_ms)
{
	if (timeout_ms < 0)
		return SYS_NO_DEADLINE;
	return sys_monotonic_ns() + (uint64_t)timeout_ms * 1000000ull;
}

/* The time left until deadline as a timespec; NULL for no deadline. */
static const struct timespec *time_left(uint64_t deadline, struct timespec *ts)
{
	uint64_t now, left;

	if (deadline == SYS_NO_DEADLINE)
		return NULL;
	now = sys_monotonic_ns();
	left = deadline > now ? deadline - now : 0;
	ts->tv_sec = (time_t)(left / 1000000000ull);
	ts->tv_nsec = (long)(left % 1000000000ull);
	return ts;
}

int sys_poll_until(struct pollfd *fds, unsigned nfds, uint64_t deadline)
{
	struct timespec ts;
	int r;

	if (sys_should_fail())
		return -EIO;
	do
		r = ppoll(fds, nfds, time_left(deadline, &ts), NULL);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

void sys_sleep_until(uint64_t deadline, int max_ms)
{
	uint64_t until = sys_monotonic_ns() + (uint64_t)max_ms * 1000000ull;
	struct timespec ts;

	if (deadline < until)
		until = deadline;
	ts.tv_sec = (time_t)(until / 1000000000ull);
	ts.tv_nsec = (long)(until % 1000000000ull);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

int sys_lstat(const char *path, uint32_t *mode, uint64_t *dev, uint64_t *ino)
{
	struct stat st;

	if (sys_should_fail())
		return -EIO;
	if (lstat(path, &st))
		return -errno;
	*mode = st.st_mode;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

int sys_fstat(int fd, uint32_t *mode, uint64_t *size)
{
	struct stat st;

	if (sys_should_fail())
		return -EIO;
	if (fstat(fd, &st))
		return -errno;
	*mode = st.st_mode;
	*size = (uint64_t)st.st_size;
	return 0;
}

int sys_unlink(const char *path)
{
	NET_RETRY(int, unlink(path));
}

int sys_chmod(const char *path, uint32_t mode)
{
	NET_RETRY(int, chmod(path, (mode_t)mode));
}

int sys_unix_address(const char *path, struct sockaddr_un *sun)
{
	size_t len;

	if (!path || !*path)
		return -EINVAL;
	len = strlen(path);
	if (len >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, len + 1);
	return 0;
}

/* Make room for a socket file at path: replace an old socket, refuse anything else. */
static int unix_clear_path(const char *path)
{
	uint64_t dev, ino;
	uint32_t mode;
	int r = sys_lstat(path, &mode, &dev, &ino);

	if (r == -ENOENT)
		return 0;
	if (r)
		return r;
	if (!S_ISSOCK(mode))
		return -EEXIST;
	r = sys_unlink(path);
	return r == -ENOENT ? 0 : r;
}

int sys_listen_unix(const char *path, int type_flags, int backlog, uint64_t *dev, uint64_t *ino)
{
	struct sockaddr_un sun;
	uint64_t d = 0, i = 0;
	uint32_t mode;
	bool bound;
	int fd = -1, r;

	r = sys_unix_address(path, &sun);
	if (!r)
		r = unix_clear_path(path);
	if (!r)
		r = fd = sys_socket(AF_UNIX, SOCK_STREAM | type_flags, 0);
	if (r >= 0)
		r = sys_bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	bound = r == 0;
	/* 0600 before listen(): until then a connect is refused, so nobody gets in early. */
	if (!r)
		r = sys_chmod(path, 0600);
	if (!r)
		r = sys_lstat(path, &mode, &d, &i);
	if (!r)
		r = sys_listen(fd, backlog);
	if (r < 0) {
		if (bound)
			sys_unlink(path);
		if (fd >= 0)
			sys_close(fd);
		return r;
	}
	if (dev)
		*dev = d;
	if (ino)
		*ino = i;
	return fd;
}
