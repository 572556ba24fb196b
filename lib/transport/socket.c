/* SPDX-License-Identifier: MIT */
/*
 * transport/socket.c - transports over a file descriptor: TCP (IPv4, IPv6), UNIX stream
 * sockets, and any fd a caller hands over (a connected socket, a pipe-like fd, a file), and
 * connecting to a listener (socket_listen.c has the listeners).
 *
 * Invariants:
 * - A connected socket is in blocking mode; a call without a timeout lets the kernel block
 *   (one send/recv per buffer, MSG_WAITALL on receive), a call with one uses MSG_DONTWAIT and
 *   poll() until the deadline. Non-socket fds are put in O_NONBLOCK mode and always poll.
 * - Shutdown wakes every waiter: on a socket shutdown(SHUT_RDWR), which also tells the peer
 *   (it reads end of stream, then its sends fail); on another fd an eventfd the waits poll
 *   beside the fd (a pipe's other process is not told).
 * - A connect is one deadline for every address tried; the socket is non-blocking until the
 *   connection is made, so a timeout is exact and nothing blocks in connect().
 * - A UNIX listener's socket file is created 0600 (chmod before listen(): no one can connect
 *   in between, and the process-wide umask is left alone for other threads), replaces an
 *   older socket file but never another kind of file (-EEXIST), and is removed at free if it
 *   is still the one we made.
 */
#include "transport/socket_impl.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <sys/ioctl.h> /* TIOCOUTQ, which SIOCOUTQ is */
#include <linux/sockios.h>

#include "core/alloc.h"
#include "core/log.h"
#include "sys/sys.h"

#define IOV_WINDOW 64 /* iovec descriptors handed to one sendmsg() */

struct sock_transport {
	struct dt_transport head;
	int fd;
	int wake_fd; /* non-socket fds: an eventfd shutdown makes readable; else -1 */
	enum sock_kind kind;
};

static const char *const kind_names[] = {"tcp", "unix", "fd"};

static struct sock_transport *to_sock(struct dt_transport *t)
{
	return (struct sock_transport *)t;
}

/* Wait for events on the fd (or the wake eventfd) until deadline. */
static int sock_wait(struct sock_transport *s, short events, uint64_t deadline)
{
	struct pollfd pfd[2] = {{.fd = s->fd, .events = events},
				{.fd = s->wake_fd, .events = POLLIN}};
	int broken = events & POLLIN ? -ECONNRESET : -EPIPE;
	int r;

	if (transport_is_shut(&s->head))
		return broken;
	r = sys_poll_until(pfd, s->wake_fd >= 0 ? 2 : 1, deadline);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return r;
	return transport_is_shut(&s->head) ? broken : 0;
}

/* The errors a caller expects on a stream are its outcome; anything else is worth a log. */
static int stream_error(struct sock_transport *s, const char *what, int err)
{
	if (err == -EPIPE || err == -ECONNRESET || err == -ETIMEDOUT)
		log_debug("transport %s: %s: %d", kind_names[s->kind], what, err);
	else
		log_errno(err, "transport %s: %s", kind_names[s->kind], what);
	return err;
}

static int sock_sendv(struct dt_transport *t, const struct iovec *iov, int iovcnt,
		      uint64_t deadline)
{
	struct sock_transport *s = to_sock(t);
	int flags = deadline == SYS_NO_DEADLINE ? 0 : MSG_DONTWAIT;
	struct iovec win[IOV_WINDOW];
	int next = 0;		/* first caller entry not yet copied to the window */
	int first = 0, cnt = 0; /* the window's unsent entries: win[first, first + cnt) */
	int64_t r;

	for (;;) {
		if (!cnt) {
			/* Descriptors only: the bytes are sent from the caller's buffers. */
			first = 0;
			while (next < iovcnt && cnt < IOV_WINDOW) {
				if (iov[next].iov_len)
					win[cnt++] = iov[next];
				next++;
			}
			if (!cnt)
				return 0;
		}
		if (s->kind != SOCK_FD) {
			struct msghdr msg = {.msg_iov = win + first, .msg_iovlen = (size_t)cnt};

			r = sys_sendmsg(s->fd, &msg, flags);
		} else {
			r = sys_writev(s->fd, win + first, cnt);
		}
		if (r == -EAGAIN) {
			r = sock_wait(s, POLLOUT, deadline);
			if (r)
				return stream_error(s, "send", (int)r);
			continue;
		}
		if (r == 0)
			r = -EIO; /* a non-empty write that moved nothing would loop forever */
		if (r < 0)
			return stream_error(s, "send", r == -ECONNRESET ? -EPIPE : (int)r);
		transport_count_sent(t, (uint64_t)r);
		/* Advance the window past a full or partial write. */
		while (r > 0) {
			if ((uint64_t)r >= win[first].iov_len) {
				r -= (int64_t)win[first].iov_len;
				first++;
				cnt--;
			} else {
				win[first].iov_base = (char *)win[first].iov_base + r;
				win[first].iov_len -= (size_t)r;
				r = 0;
			}
		}
	}
}

static int sock_send(struct dt_transport *t, const void *buf, size_t len, uint64_t deadline)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	return sock_sendv(t, &iov, 1, deadline);
}

static int sock_recv(struct dt_transport *t, void *buf, size_t len, uint64_t deadline)
{
	struct sock_transport *s = to_sock(t);
	int flags = deadline == SYS_NO_DEADLINE ? MSG_WAITALL : MSG_DONTWAIT;
	char *p = buf;
	int64_t r;

	while (len) {
		if (s->kind != SOCK_FD)
			r = sys_recv(s->fd, p, len, flags);
		else
			r = sys_read(s->fd, p, len);
		if (r > 0) {
			transport_count_received(t, (uint64_t)r);
			p += r;
			len -= (size_t)r;
			continue;
		}
		if (r == 0) /* end of stream before the last byte asked for */
			return stream_error(s, "recv", -ECONNRESET);
		if (r == -EAGAIN) {
			r = sock_wait(s, POLLIN, deadline);
			if (r)
				return stream_error(s, "recv", (int)r);
			continue;
		}
		return stream_error(s, "recv", r == -EPIPE ? -ECONNRESET : (int)r);
	}
	return 0;
}

static void sock_shutdown(struct dt_transport *t)
{
	struct sock_transport *s = to_sock(t);
	int r = s->kind != SOCK_FD ? sys_shutdown(s->fd, SHUT_RDWR) : sys_eventfd_wake(s->wake_fd);

	/* ENOTCONN: the peer went first, nothing is blocked on a stream that is gone. */
	if (r && r != -ENOTCONN)
		log_errno(r, "transport %s: shutdown", kind_names[s->kind]);
	/*
	 * A TCP peer blocked sending into our full receive window would wait forever: discard
	 * what is queued (MSG_TRUNC, no copy) so the window opens, and the data it then sends
	 * to a socket that shut down reading is answered by a reset (RFC 1122), which wakes
	 * it. A UNIX peer is woken by the shutdown itself.
	 */
	if (!r && s->kind == SOCK_TCP)
		sys_recv(s->fd, NULL, 1u << 30, MSG_DONTWAIT | MSG_TRUNC);
}

static void sock_destroy(struct dt_transport *t)
{
	struct sock_transport *s = to_sock(t);

	sys_close(s->fd);
	if (s->wake_fd >= 0)
		sys_close(s->wake_fd);
	xfree(s);
}

/* TCP's send queue: bytes not yet acknowledged. (A UNIX socket's SIOCOUTQ counts buffer
 * overhead, not bytes, and a UNIX socket has no link to measure: not offered.) */
static int64_t sock_unsent(struct dt_transport *t)
{
	struct sock_transport *s = to_sock(t);
	int queued = 0;

	if (s->kind != SOCK_TCP)
		return -ENOTSUP;
	if (sys_ioctl(s->fd, SIOCOUTQ, &queued) < 0)
		return -ENOTSUP;
	return queued;
}

static const struct transport_ops sock_ops = {
	.name = "socket",
	.send = sock_send,
	.sendv = sock_sendv,
	.recv = sock_recv,
	.shutdown = sock_shutdown,
	.destroy = sock_destroy,
	.unsent = sock_unsent,
};

/* Wrap a connected fd; on failure the fd is left to the caller. */
static struct dt_transport *sock_new(int fd, enum sock_kind kind)
{
	struct sock_transport *s = xzalloc(sizeof(*s));
	int r;

	if (!s) {
		log_err("transport %s: out of memory", kind_names[kind]);
		errno = ENOMEM;
		return NULL;
	}
	transport_init(&s->head, &sock_ops);
	s->fd = fd;
	s->wake_fd = -1;
	s->kind = kind;
	if (kind == SOCK_FD) {
		r = sys_set_nonblock(fd, 1);
		if (r >= 0)
			r = s->wake_fd = sys_eventfd();
		if (r < 0) {
			log_errno(r, "transport fd %d: setup", fd);
			xfree(s);
			errno = -r;
			return NULL;
		}
	}
	return &s->head;
}

/* A transport owning fd (closed if that fails), or NULL with errno -fd for a failed fd. */
struct dt_transport *sock_adopt(int fd, enum sock_kind kind)
{
	struct dt_transport *t = fd < 0 ? NULL : sock_new(fd, kind);
	int err = fd < 0 ? -fd : errno;

	if (!t) {
		if (fd >= 0)
			sys_close(fd);
		errno = err;
	}
	return t;
}

int set_nodelay(int fd)
{
	int one = 1;

	return sys_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct dt_transport *dt_transport_from_fd(int fd)
{
	int type = 0, domain = 0;
	unsigned len = sizeof(type);
	int r;

	if (fd < 0) {
		errno = EINVAL;
		return NULL;
	}
	r = sys_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
	if (r == -ENOTSOCK)
		return sock_new(fd, SOCK_FD);
	if (!r && type != SOCK_STREAM)
		r = log_fail(-EINVAL, "dt_transport_from_fd: fd %d is not a stream socket", fd);
	len = sizeof(domain);
	if (!r)
		r = sys_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
	if (!r && (domain == AF_INET || domain == AF_INET6))
		r = set_nodelay(fd);
	if (r) {
		log_errno(r, "dt_transport_from_fd: fd %d", fd);
		errno = -r;
		return NULL;
	}
	return sock_new(fd, domain == AF_UNIX ? SOCK_UNIX : SOCK_TCP);
}

/* ---- connecting ------------------------------------------------------------------------- */

static int wait_connected(int fd, uint64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int err = 0;
	unsigned len = sizeof(err);
	int r = sys_poll_until(&pfd, 1, deadline);

	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return r;
	r = sys_getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	return r ? r : -err;
}

/* A connected, blocking socket to sa, or a negative errno. */
static int connect_addr(const struct sockaddr *sa, unsigned salen, uint64_t deadline)
{
	int fd = sys_socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int r;

	if (fd < 0)
		return fd;
	for (;;) {
		r = sys_connect(fd, sa, salen);
		if (r == -EINPROGRESS)
			r = wait_connected(fd, deadline);
		/* A UNIX listener's backlog is full: no event to wait for, so retry briefly. */
		if (r == -EAGAIN && sa->sa_family == AF_UNIX) {
			if (sys_monotonic_ns() >= deadline) {
				r = -ETIMEDOUT;
			} else {
				sys_sleep_until(deadline, 5);
				continue;
			}
		}
		break;
	}
	if (!r)
		r = sys_set_nonblock(fd, 0);
	if (!r && sa->sa_family != AF_UNIX)
		r = set_nodelay(fd);
	if (r) {
		sys_close(fd);
		return r;
	}
	return fd;
}

struct dt_transport *dt_connect_tcp(const char *host, uint16_t port, int timeout_ms)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	uint64_t deadline = sys_deadline_ms(timeout_ms);
	struct addrinfo *res, *ai;
	char service[8];
	int fd = -ECONNREFUSED;
	int r;

	if (!host || timeout_ms < -1) {
		errno = EINVAL;
		return NULL;
	}
	snprintf(service, sizeof(service), "%u", port);
	r = sys_getaddrinfo(host, service, &hints, &res);
	if (r) {
		log_errno(r, "dt_connect_tcp: resolve %s", host);
		errno = -r;
		return NULL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_addr(ai->ai_addr, ai->ai_addrlen, deadline);
		if (fd >= 0 || fd == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		log_errno(fd, "dt_connect_tcp: %s port %u", host, port);
	return sock_adopt(fd, SOCK_TCP);
}

struct dt_transport *dt_connect_unix(const char *path, int timeout_ms)
{
	struct sockaddr_un sun;
	int fd = timeout_ms < -1 ? -EINVAL : sys_unix_address(path, &sun);

	if (!fd)
		fd = connect_addr((struct sockaddr *)&sun, sizeof(sun),
				  sys_deadline_ms(timeout_ms));
	if (fd < 0)
		log_errno(fd, "dt_connect_unix: %s", path ? path : "(null)");
	return sock_adopt(fd, SOCK_UNIX);
}
