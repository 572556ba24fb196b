/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack/transport.h - byte channels for the migration stream.
 *
 * A transport is a reliable, ordered byte stream between a migration source and its
 * destination: TCP (IPv4 or IPv6), a UNIX stream socket, an fd the caller already has, or an
 * in-memory pair for tests. Sends and receives move exactly the bytes asked for or fail:
 * partial writes and EINTR are retried inside, a timeout gives -ETIMEDOUT, a peer that closed
 * gives -EPIPE (send) or -ECONNRESET (receive; 0 bytes of a record is still an error).
 *
 * Thread safety: one thread sends and one thread receives on a transport at a time;
 * dt_transport_shutdown() may be called from any thread and wakes both.
 */
#ifndef DIRTYTRACK_TRANSPORT_H
#define DIRTYTRACK_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dt_transport;
struct dt_listener;

/* Listen on host:port (host NULL: every address, IPv6 and IPv4; port 0: any free port, see
 * dt_listener_port) or on a UNIX socket path (created mode 0600; an existing socket file
 * is replaced). NULL and errno on failure. */
struct dt_listener *dt_listen_tcp(const char *host, uint16_t port);
struct dt_listener *dt_listen_unix(const char *path);
uint16_t dt_listener_port(const struct dt_listener *l);
/* Wait up to timeout_ms (-1: forever) for one connection. NULL and errno (ETIMEDOUT). */
struct dt_transport *dt_listener_accept(struct dt_listener *l, int timeout_ms);
void dt_listener_free(struct dt_listener *l);

/* Connect, trying every address of host; NULL and errno on failure. */
struct dt_transport *dt_connect_tcp(const char *host, uint16_t port, int timeout_ms);
struct dt_transport *dt_connect_unix(const char *path, int timeout_ms);
/* A connected stream socket or pipe-like fd; the transport owns it and closes it. A fd that
 * is not a socket (pipe, file) is switched to O_NONBLOCK. On failure (NULL, errno) the fd is
 * left open and still the caller's. */
struct dt_transport *dt_transport_from_fd(int fd);

/* Two connected in-memory ends; each end's send buffer holds capacity bytes (0: 4 MiB), a
 * sender waits while it is full. fail_after_bytes > 0: the pair breaks after that many bytes
 * have been sent in either direction (both ends then get -ECONNRESET / -EPIPE), to test an
 * abort mid-stream. The count is over both directions together; exactly that many bytes go
 * through and can all be received before -ECONNRESET. opts NULL: the defaults. */
struct dt_transport_pair_opts {
	size_t size; /* sizeof(struct dt_transport_pair_opts) */
	size_t capacity;
	uint64_t fail_after_bytes;
};
int dt_transport_pair(const struct dt_transport_pair_opts *opts, struct dt_transport **a,
		      struct dt_transport **b);

/* Every byte or a negative errno. */
int dt_transport_send(struct dt_transport *t, const void *buf, size_t len);
int dt_transport_sendv(struct dt_transport *t, const struct iovec *iov, int iovcnt);
int dt_transport_recv(struct dt_transport *t, void *buf, size_t len);

/* Per call timeout of send and recv in ms (-1: none, the default): the deadline of the whole
 * call. A call that timed out may have moved a prefix (see the counters). */
int dt_transport_set_timeout(struct dt_transport *t, int timeout_ms);
/* Bytes moved so far, each way. */
uint64_t dt_transport_bytes_sent(const struct dt_transport *t);
uint64_t dt_transport_bytes_received(const struct dt_transport *t);
/* Bytes sent that have not left yet: a TCP socket's unacknowledged send queue (SIOCOUTQ).
 * -ENOTSUP for channels that cannot tell or have no link (UNIX sockets, pipes, fds, the
 * in-memory pair), -EINVAL for NULL. What a sender's timing needs to tell the link from its
 * buffers. */
int64_t dt_transport_unsent(struct dt_transport *t);
/* Close the stream as shutdown(SHUT_RDWR) does a socket: blocked and later calls on this end
 * fail; the peer still receives what this end sent before, then -ECONNRESET, and its sends
 * fail with -EPIPE. Safe from any thread: this is how a migration is aborted. */
void dt_transport_shutdown(struct dt_transport *t);
void dt_transport_free(struct dt_transport *t);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYTRACK_TRANSPORT_H */
