/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/msg.c - framing of vfio-user messages on a UNIX stream socket, shared by the
 * server and the client (msg.h states the rules).
 *
 * A message is written with one sendmsg() (header, payload, SCM_RIGHTS on the first byte),
 * continued without descriptors if the kernel takes it in parts. It is read in two steps:
 * the 16-byte header with recvmsg() and a control buffer for VFU_MAX_FDS descriptors, then
 * exactly msg_size - 16 payload bytes, never a byte of the next message. The size is checked
 * before the payload is read, so a lying header costs nothing but the connection.
 * Descriptors are counted against the caller's limit only after the whole message is read,
 * so that an "too many fds" error leaves the stream in step and the caller can still reply.
 */
#include "vfio_user/msg.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <sys/un.h>

#include "core/log.h"
#include "sys/sys.h"

#define VFU_MAX_IOV 8u

static const char *const cmd_names[VFU_CMD_MAX] = {
	[VFU_CMD_VERSION] = "VERSION",
	[VFU_CMD_DMA_MAP] = "DMA_MAP",
	[VFU_CMD_DMA_UNMAP] = "DMA_UNMAP",
	[VFU_CMD_DEVICE_GET_INFO] = "DEVICE_GET_INFO",
	[VFU_CMD_DEVICE_GET_REGION_INFO] = "DEVICE_GET_REGION_INFO",
	[VFU_CMD_DEVICE_GET_REGION_IO_FDS] = "DEVICE_GET_REGION_IO_FDS",
	[VFU_CMD_DEVICE_GET_IRQ_INFO] = "DEVICE_GET_IRQ_INFO",
	[VFU_CMD_DEVICE_SET_IRQS] = "DEVICE_SET_IRQS",
	[VFU_CMD_REGION_READ] = "REGION_READ",
	[VFU_CMD_REGION_WRITE] = "REGION_WRITE",
	[VFU_CMD_DMA_READ] = "DMA_READ",
	[VFU_CMD_DMA_WRITE] = "DMA_WRITE",
	[VFU_CMD_DEVICE_RESET] = "DEVICE_RESET",
	[VFU_CMD_REGION_WRITE_MULTI] = "REGION_WRITE_MULTI",
	[VFU_CMD_DEVICE_FEATURE] = "DEVICE_FEATURE",
	[VFU_CMD_MIG_DATA_READ] = "MIG_DATA_READ",
	[VFU_CMD_MIG_DATA_WRITE] = "MIG_DATA_WRITE",
};

const char *vfu_cmd_name(uint16_t cmd)
{
	if (cmd < VFU_CMD_MAX && cmd_names[cmd])
		return cmd_names[cmd];
	return "unknown";
}

/* ---- receive ----------------------------------------------------------------------------- */

static int conn_errno(int64_t r)
{
	if (r == 0 || r == -ECONNRESET || r == -EPIPE)
		return -ECONNRESET;
	return (int)r;
}

int vfu_msg_rest_timeout_ms = 10000;

uint64_t vfu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read exactly len bytes of a message already begun: they must all come within
 * vfu_msg_rest_timeout_ms, else -ETIMEDOUT (a peer that stalls mid-message would otherwise
 * hold the reader for ever, and the stream is out of step either way). */
static int recv_exact(int sock, uint8_t *p, size_t len)
{
	int64_t deadline = (int64_t)vfu_now_ms() + vfu_msg_rest_timeout_ms;

	while (len) {
		struct pollfd pfd = {.fd = sock, .events = POLLIN};
		int64_t left = deadline - (int64_t)vfu_now_ms(), r;
		int n = left > 0 ? poll(&pfd, 1, (int)left) : 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return log_fail(-ETIMEDOUT,
					"vfu_msg_recv: %zu bytes of a message still "
					"missing after %d ms",
					len, vfu_msg_rest_timeout_ms);
		r = sys_recv(sock, p, len, MSG_DONTWAIT);
		if (r == -EAGAIN || r == -EINTR)
			continue;
		if (r <= 0)
			return conn_errno(r);
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (fds[i] >= 0)
			sys_close(fds[i]);
		fds[i] = -1;
	}
}

void vfu_msg_close_fds(struct vfu_msg *msg)
{
	close_fds(msg->fds, msg->nfds);
	msg->nfds = 0;
}

/* Collect the SCM_RIGHTS descriptors of mh into fds; returns how many (all fit: the control
 * buffer holds no more than VFU_MAX_FDS). */
static unsigned take_fds(struct msghdr *mh, int *fds)
{
	unsigned n = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t cnt;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < cnt && n < VFU_MAX_FDS; i++)
			memcpy(&fds[n++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	return n;
}

int vfu_msg_recv(int sock, void *buf, size_t bufsize, unsigned max_fds, struct vfu_msg *msg)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * VFU_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = VFU_HDR_SIZE};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.b,
			    .msg_controllen = sizeof(ctl.b)};
	uint8_t *p = buf;
	bool truncated;
	int64_t r;
	int err;

	memset(msg, 0, sizeof(*msg));
	if (!buf || bufsize < VFU_HDR_SIZE || max_fds > VFU_MAX_FDS)
		return log_fail(-EINVAL, "vfu_msg_recv: buffer of %zu bytes, %u fds", bufsize,
				max_fds);
	r = sys_recvmsg(sock, &mh, 0); /* the first bytes; the rest with recv_exact */
	if (r <= 0) {
		err = conn_errno(r);
		if (err != -ECONNRESET)
			log_err("vfu_msg_recv: recvmsg: %s", strerror(-err));
		return err;
	}
	msg->nfds = take_fds(&mh, msg->fds);
	truncated = mh.msg_flags & MSG_CTRUNC;
	if (r < VFU_HDR_SIZE) {
		err = recv_exact(sock, p + r, VFU_HDR_SIZE - (size_t)r);
		if (err) {
			vfu_msg_close_fds(msg);
			return err;
		}
	}
	memcpy(&msg->hdr, p, sizeof(msg->hdr));
	if (msg->hdr.msg_size < VFU_HDR_SIZE) {
		vfu_msg_close_fds(msg);
		return log_fail(-EPROTO, "vfu_msg_recv: message size %u below the header",
				msg->hdr.msg_size);
	}
	if (msg->hdr.msg_size > bufsize) {
		vfu_msg_close_fds(msg);
		return log_fail(-EMSGSIZE, "vfu_msg_recv: %s of %u bytes, limit %zu",
				vfu_cmd_name(msg->hdr.cmd), msg->hdr.msg_size, bufsize);
	}
	msg->len = msg->hdr.msg_size - VFU_HDR_SIZE;
	msg->payload = p + VFU_HDR_SIZE;
	err = recv_exact(sock, msg->payload, msg->len);
	if (err) {
		vfu_msg_close_fds(msg);
		if (err != -ECONNRESET)
			log_err("vfu_msg_recv: payload: %s", strerror(-err));
		return err;
	}
	if (truncated || msg->nfds > max_fds) {
		unsigned n = msg->nfds;

		vfu_msg_close_fds(msg);
		return log_fail(-EBADMSG, "vfu_msg_recv: %s with %u fds%s, at most %u accepted",
				vfu_cmd_name(msg->hdr.cmd), n, truncated ? " (truncated)" : "",
				max_fds);
	}
	return 0;
}

/* ---- send ---------------------------------------------------------------------------------- */

int vfu_msg_sendv(int sock, uint16_t msg_id, uint16_t cmd, uint32_t flags, uint32_t error,
		  const struct iovec *iov, unsigned niov, const int *fds, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * VFU_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec v[VFU_MAX_IOV + 1];
	struct vfu_hdr hdr;
	struct msghdr mh = {.msg_iov = v};
	uint64_t total = VFU_HDR_SIZE;
	unsigned nv = 1;
	int r;

	if (niov > VFU_MAX_IOV || nfds > VFU_MAX_FDS || (niov && !iov) || (nfds && !fds))
		return log_fail(-EINVAL, "vfu_msg_send: %u buffers, %u fds", niov, nfds);
	for (unsigned i = 0; i < niov; i++) {
		if (!iov[i].iov_len)
			continue;
		v[nv++] = iov[i];
		total += iov[i].iov_len;
	}
	if (total > UINT32_MAX)
		return log_fail(-EMSGSIZE, "vfu_msg_send: %s of %llu bytes", vfu_cmd_name(cmd),
				(unsigned long long)total);
	hdr = (struct vfu_hdr){.msg_id = msg_id,
			       .cmd = cmd,
			       .msg_size = (uint32_t)total,
			       .flags = flags,
			       .error = error};
	v[0] = (struct iovec){.iov_base = &hdr, .iov_len = sizeof(hdr)};
	mh.msg_iovlen = nv;
	vfu_put_fds(&mh, ctl.b, sizeof(ctl.b), fds, nfds);
	r = vfu_sendmsg_all(sock, &mh);
	if (r && r != -ECONNRESET)
		log_err("vfu_msg_send: %s: %s", vfu_cmd_name(cmd), strerror(-r));
	return r;
}

void vfu_put_fds(struct msghdr *mh, void *ctl, size_t ctl_size, const int *fds, unsigned nfds)
{
	struct cmsghdr *c;

	mh->msg_control = NULL;
	mh->msg_controllen = 0;
	if (!nfds || CMSG_SPACE(sizeof(int) * nfds) > ctl_size)
		return;
	memset(ctl, 0, CMSG_SPACE(sizeof(int) * nfds));
	mh->msg_control = ctl;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
	c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
}

int vfu_sendmsg_all(int sock, struct msghdr *mh)
{
	uint64_t total = 0;

	for (size_t i = 0; i < mh->msg_iovlen; i++)
		total += mh->msg_iov[i].iov_len;
	while (total) {
		int64_t r = sys_sendmsg(sock, mh, 0);

		if (r <= 0)
			return r ? conn_errno(r) : -EIO;
		total -= (uint64_t)r;
		/* The descriptors went with the first byte; skip what was sent. */
		mh->msg_control = NULL;
		mh->msg_controllen = 0;
		while (r > 0 && mh->msg_iovlen) {
			if ((size_t)r >= mh->msg_iov[0].iov_len) {
				r -= (int64_t)mh->msg_iov[0].iov_len;
				mh->msg_iov++;
				mh->msg_iovlen--;
			} else {
				mh->msg_iov[0].iov_base = (uint8_t *)mh->msg_iov[0].iov_base + r;
				mh->msg_iov[0].iov_len -= (size_t)r;
				r = 0;
			}
		}
	}
	return 0;
}

int vfu_msg_send(int sock, uint16_t msg_id, uint16_t cmd, uint32_t flags, const void *payload,
		 size_t len, const int *fds, unsigned nfds)
{
	struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};

	return vfu_msg_sendv(sock, msg_id, cmd, flags, 0, &iov, len ? 1 : 0, fds, nfds);
}

int vfu_replyv(int sock, const struct vfu_hdr *req, const struct iovec *iov, unsigned niov,
	       const int *fds, unsigned nfds)
{
	return vfu_msg_sendv(sock, req->msg_id, req->cmd, VFU_F_TYPE_REPLY, 0, iov, niov, fds,
			     nfds);
}

int vfu_reply(int sock, const struct vfu_hdr *req, const void *payload, size_t len, const int *fds,
	      unsigned nfds)
{
	struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};

	return vfu_replyv(sock, req, &iov, len ? 1 : 0, fds, nfds);
}

int vfu_reply_error(int sock, const struct vfu_hdr *req, int err)
{
	uint32_t e = (uint32_t)(err < 0 ? -err : err);

	if (req->flags & VFU_F_NO_REPLY)
		return 0;
	return vfu_msg_sendv(sock, req->msg_id, req->cmd, VFU_F_TYPE_REPLY | VFU_F_ERROR, e, NULL,
			     0, NULL, 0);
}

/* ---- UNIX sockets ------------------------------------------------------------------------- */

int vfu_listen(const char *path)
{
	int fd = sys_listen_unix(path, 0, 4, NULL, NULL);

	if (fd < 0)
		return log_fail(fd, "vfu_listen: %s: %s", path ? path : "(null)", strerror(-fd));
	return fd;
}

int vfu_accept(int listen_fd)
{
	int r = sys_accept(listen_fd, 0);

	if (r < 0)
		return log_fail(r, "vfu_accept: %s", strerror(-r));
	return r;
}

int vfu_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd, r;

	r = sys_unix_address(path, &sun);
	if (r)
		return log_fail(r, "vfu_connect: bad path");
	fd = sys_socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return log_fail(fd, "vfu_connect: socket: %s", strerror(-fd));
	r = sys_connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (r) {
		sys_close(fd);
		return log_fail(r, "vfu_connect: %s: %s", path, strerror(-r));
	}
	return fd;
}
