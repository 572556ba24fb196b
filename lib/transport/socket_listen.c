/* SPDX-License-Identifier: MIT */
/*
 * transport/socket_listen.c - listeners for TCP (dual-stack when the host is NULL) and
 * UNIX stream sockets, and accepting a connection as a transport.
 *
 * A UNIX listener's socket file is created 0600 (chmod before listen(): no one can connect
 * in between, and the process-wide umask is left alone for other threads), replaces an older
 * socket file but never another kind of file (-EEXIST), and is removed at free if it is
 * still the one we made (same device and inode).
 */
#include "transport/socket_impl.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/log.h"
#include "sys/sys.h"

#define LISTEN_BACKLOG 64

struct dt_listener {
	int fd;
	int family;
	uint16_t port;
	char *path; /* UNIX: the socket file we made (dev, ino), removed at free */
	uint64_t dev, ino;
};

/* ---- listening -------------------------------------------------------------------------- */

static struct dt_listener *listener_new(int fd, int family, const char *path)
{
	struct dt_listener *l = xzalloc(sizeof(*l));

	if (l && path && !(l->path = xzalloc(strlen(path) + 1))) {
		xfree(l);
		return NULL;
	}
	if (!l)
		return NULL;
	if (path)
		strcpy(l->path, path);
	l->fd = fd;
	l->family = family;
	return l;
}

/* A listening socket bound to sa (dual_stack: an IPv6 socket that takes IPv4 too). */
static int listen_on(const struct sockaddr *sa, unsigned salen, bool dual_stack)
{
	int fd = sys_socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1, zero = 0;
	int r;

	if (fd < 0)
		return fd;
	r = sys_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!r && dual_stack)
		r = sys_setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (!r)
		r = sys_bind(fd, sa, salen);
	if (!r)
		r = sys_listen(fd, LISTEN_BACKLOG);
	if (r) {
		sys_close(fd);
		return r;
	}
	return fd;
}

static int listen_any(uint16_t port)
{
	struct sockaddr_in6 in6 = {
		.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT, .sin6_port = htons(port)};
	struct sockaddr_in in4 = {.sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_ANY),
				  .sin_port = htons(port)};
	int fd = listen_on((struct sockaddr *)&in6, sizeof(in6), true);

	/* No IPv6 here (not built, or disabled): IPv4 alone. */
	if (fd == -EAFNOSUPPORT || fd == -EPROTONOSUPPORT || fd == -EADDRNOTAVAIL)
		fd = listen_on((struct sockaddr *)&in4, sizeof(in4), false);
	return fd;
}

struct dt_listener *dt_listen_tcp(const char *host, uint16_t port)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct sockaddr_storage ss;
	unsigned sslen = sizeof(ss);
	struct addrinfo *res, *ai;
	struct dt_listener *l;
	char service[8];
	int fd = -EADDRNOTAVAIL;
	int r;

	if (!host) {
		fd = listen_any(port);
	} else {
		snprintf(service, sizeof(service), "%u", port);
		r = sys_getaddrinfo(host, service, &hints, &res);
		if (r) {
			log_errno(r, "dt_listen_tcp: resolve %s", host);
			errno = -r;
			return NULL;
		}
		for (ai = res; ai; ai = ai->ai_next) {
			fd = listen_on(ai->ai_addr, ai->ai_addrlen, false);
			if (fd >= 0)
				break;
		}
		freeaddrinfo(res);
	}
	r = fd < 0 ? fd : sys_getsockname(fd, (struct sockaddr *)&ss, &sslen);
	if (r) {
		log_errno(r, "dt_listen_tcp: %s port %u", host ? host : "*", port);
		goto fail;
	}
	l = listener_new(fd, ss.ss_family, NULL);
	if (!l) {
		r = log_fail(-ENOMEM, "dt_listen_tcp: out of memory");
		goto fail;
	}
	l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	return l;
fail:
	if (fd >= 0)
		sys_close(fd);
	errno = -r;
	return NULL;
}

struct dt_listener *dt_listen_unix(const char *path)
{
	struct dt_listener *l = NULL;
	uint64_t dev = 0, ino = 0;
	int fd, r;

	r = fd = sys_listen_unix(path, SOCK_NONBLOCK, LISTEN_BACKLOG, &dev, &ino);
	if (fd >= 0) {
		l = listener_new(fd, AF_UNIX, path);
		if (!l) {
			r = -ENOMEM;
			sys_unlink(path);
			sys_close(fd);
		}
	}
	if (r < 0) {
		log_errno(r, "dt_listen_unix: %s", path ? path : "(null)");
		errno = -r;
		return NULL;
	}
	l->dev = dev;
	l->ino = ino;
	return l;
}

uint16_t dt_listener_port(const struct dt_listener *l)
{
	return l ? l->port : 0;
}

struct dt_transport *dt_listener_accept(struct dt_listener *l, int timeout_ms)
{
	struct pollfd pfd;
	uint64_t deadline;
	int fd, r;

	if (!l || timeout_ms < -1) {
		errno = EINVAL;
		return NULL;
	}
	deadline = sys_deadline_ms(timeout_ms);
	for (;;) {
		/* Accepted sockets are blocking whatever the listener's mode. */
		fd = sys_accept(l->fd, 0);
		if (fd >= 0 || (fd != -EAGAIN && fd != -ECONNABORTED))
			break;
		pfd = (struct pollfd){.fd = l->fd, .events = POLLIN};
		r = sys_poll_until(&pfd, 1, deadline);
		if (r <= 0) {
			fd = r ? r : -ETIMEDOUT;
			break;
		}
	}
	if (fd >= 0 && l->family != AF_UNIX) {
		r = set_nodelay(fd);
		if (r) {
			sys_close(fd);
			fd = r;
		}
	}
	if (fd == -ETIMEDOUT)
		log_debug("dt_listener_accept: timed out after %d ms", timeout_ms);
	else if (fd < 0)
		log_errno(fd, "dt_listener_accept: %s", l->path ? l->path : "tcp");
	return sock_adopt(fd, l->family == AF_UNIX ? SOCK_UNIX : SOCK_TCP);
}

void dt_listener_free(struct dt_listener *l)
{
	uint64_t dev, ino;
	uint32_t mode;

	if (!l)
		return;
	/* Remove the socket file only if it is still ours, not a successor's. */
	if (l->path && !sys_lstat(l->path, &mode, &dev, &ino) && dev == l->dev && ino == l->ino)
		sys_unlink(l->path);
	sys_close(l->fd);
	xfree(l->path);
	xfree(l);
}
