/* SPDX-License-Identifier: MIT */
/*
 * transport/socket_impl.h - what the socket transport (socket.c) and its listeners
 * (socket_listen.c) share.
 */
#ifndef DT_TRANSPORT_SOCKET_IMPL_H
#define DT_TRANSPORT_SOCKET_IMPL_H

#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include "core/log.h"
#include "transport/transport_impl.h"

enum sock_kind { SOCK_TCP, SOCK_UNIX, SOCK_FD };

/* A transport over a connected socket fd (owned from now on, closed on failure). */
struct dt_transport *sock_adopt(int fd, enum sock_kind kind);
int set_nodelay(int fd);

/* strerror_r of a negative errno (GNU version), and a log line ending in it. */
static inline const char *err_text(int err, char *buf, size_t len)
{
	return strerror_r(-err, buf, len);
}

#define log_errno(err, fmt, ...)                                                                   \
	do {                                                                                       \
		char eb_[64];                                                                      \
		log_err(fmt ": %s", __VA_ARGS__, err_text(err, eb_, sizeof(eb_)));                 \
	} while (0)

#endif
