/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/msg.h - the vfio-user transport shared by the server and the client: framing of
 * one message (16-byte header, payload, file descriptors as SCM_RIGHTS), replies and error
 * replies, the VERSION payload and its JSON capabilities, and the UNIX socket helpers.
 *
 * Rules every function keeps:
 * - a negative errno on failure and one log line, never -1 with errno;
 * - a received message is never trusted: the header's size is checked against the caller's
 *   limit before any payload byte is read, and file descriptors beyond the caller's limit,
 *   or truncated control data, close every descriptor of that message;
 * - whatever fds a failed receive got are closed, so a caller owns fds only on success;
 * - sends never raise SIGPIPE; a closed peer is -EPIPE or -ECONNRESET.
 * The functions hold no state: a socket may be used by one sender and one receiver thread.
 */
#ifndef DT_VFIO_USER_MSG_H
#define DT_VFIO_USER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfio_user/proto.h"

struct iovec;

/* The most descriptors one message can carry on this side, whatever was negotiated: the
 * size of the control buffer. The spec's DMA_MAP and SET_IRQS need at most a few. */
#define VFU_MAX_FDS 16u

/* A received message. payload points into the caller's buffer, right after the header. */
struct vfu_msg {
	struct vfu_hdr hdr;
	uint8_t *payload;
	uint32_t len; /* payload bytes: hdr.msg_size - VFU_HDR_SIZE */
	int fds[VFU_MAX_FDS];
	unsigned nfds;
};

/* Once the first bytes of a message arrived, the rest must arrive within this many ms
 * (10 s), or vfu_msg_recv fails with -ETIMEDOUT (the server then drops the client). Tests
 * lower it. */
extern int vfu_msg_rest_timeout_ms;

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t vfu_now_ms(void);

/*
 * Receive one message into buf (bufsize bytes, at least VFU_HDR_SIZE), accepting at most
 * max_fds descriptors (<= VFU_MAX_FDS). On success msg->hdr, payload, len, fds, nfds are
 * set and the caller owns the fds. Errors:
 *  -ECONNRESET  the peer closed (end of stream, before or inside a message) or reset;
 *  -EBADMSG     the message was read whole (msg->hdr is valid, the stream is still in
 *               step) but carried more than max_fds descriptors or truncated control data:
 *               every descriptor was closed, the caller may reply with an error;
 *  -EMSGSIZE    msg_size > bufsize; -EPROTO msg_size < 16: msg->hdr is valid but the
 *               stream is out of step, the caller must close the connection;
 *  -ETIMEDOUT   the message began but its rest did not come within
 *               vfu_msg_rest_timeout_ms: out of step, close the connection;
 *  other        the socket's errno (-EIO from fault injection).
 */
int vfu_msg_recv(int sock, void *buf, size_t bufsize, unsigned max_fds, struct vfu_msg *msg);

/* Close the descriptors of msg (those not taken: a taken one is set to -1). */
void vfu_msg_close_fds(struct vfu_msg *msg);

/*
 * Send one message: header (msg_size computed here) then the niov buffers, with nfds
 * descriptors (<= VFU_MAX_FDS) attached to the first byte. Returns 0 or a negative errno;
 * -EMSGSIZE if the total exceeds UINT32_MAX.
 */
int vfu_msg_sendv(int sock, uint16_t msg_id, uint16_t cmd, uint32_t flags, uint32_t error,
		  const struct iovec *iov, unsigned niov, const int *fds, unsigned nfds);

/* Attach nfds descriptors to mh as one SCM_RIGHTS control message built in ctl (ctl_size
 * bytes, suitably aligned); none (msg_control NULL) if nfds is 0 or they do not fit. */
struct msghdr;
void vfu_put_fds(struct msghdr *mh, void *ctl, size_t ctl_size, const int *fds, unsigned nfds);
/* sendmsg() every byte of mh's iovecs (mh and its iovecs are consumed), the control data
 * with the first part: 0, -ECONNRESET (peer gone) or another negative errno. */
int vfu_sendmsg_all(int sock, struct msghdr *mh);

/* A command with one payload buffer (len may be 0). */
int vfu_msg_send(int sock, uint16_t msg_id, uint16_t cmd, uint32_t flags, const void *payload,
		 size_t len, const int *fds, unsigned nfds);

/* The reply to req: same id and command, type REPLY. */
int vfu_reply(int sock, const struct vfu_hdr *req, const void *payload, size_t len, const int *fds,
	      unsigned nfds);
int vfu_replyv(int sock, const struct vfu_hdr *req, const struct iovec *iov, unsigned niov,
	       const int *fds, unsigned nfds);

/* The error reply to req: header only, ERROR flag, error = err (a positive or negative errno;
 * its absolute value is sent). Nothing is sent if req asked for no reply. */
int vfu_reply_error(int sock, const struct vfu_hdr *req, int err);

/* Whether hdr is a reply / asks for no reply / carries an error. */
static inline bool vfu_hdr_is_reply(const struct vfu_hdr *hdr)
{
	return (hdr->flags & VFU_F_TYPE_MASK) == VFU_F_TYPE_REPLY;
}

/* The next message id of a sender's counter (wraps at 65536, ids are the sender's own). */
static inline uint16_t vfu_next_id(uint16_t *counter)
{
	return (*counter)++;
}

/* Name of a command for log lines ("DMA_MAP", "unknown"). */
const char *vfu_cmd_name(uint16_t cmd);

/* ---- VERSION and its capabilities ------------------------------------------------------ */

struct vfu_caps {
	uint32_t max_msg_fds;	      /* default 1 */
	uint64_t max_data_xfer_size;  /* default 1 MiB */
	uint64_t pgsizes;	      /* default 4096 */
	uint32_t max_dma_maps;	      /* default 65535 */
	bool migration;		      /* a "migration" object is present */
	uint64_t mig_pgsize;	      /* migration.pgsize (dirty bitmap page sizes) */
	uint64_t mig_max_bitmap_size; /* migration.max_bitmap_size (bytes) */
	bool twin_socket;	      /* twin_socket.supported */
	bool write_multiple;	      /* write_multiple */
};

/* The spec's defaults: what a peer that sent no capabilities has. */
void vfu_caps_default(struct vfu_caps *caps);

/* Sanity bounds on parsed capabilities: a value beyond them is an error, not clamped. */
#define VFU_CAPS_MAX_FDS	 1024u
#define VFU_CAPS_MAX_XFER	 (1ull << 30)
#define VFU_CAPS_MIN_XFER	 512u
#define VFU_CAPS_MAX_BITMAP_SIZE (1ull << 32)

/*
 * Parse the JSON version data (json, len bytes; a NUL inside len ends it, none is needed) into
 * caps, starting from the defaults: {"capabilities": {...}}, every member optional. Unknown
 * members are ignored. -EINVAL (one log line saying what) for bad JSON, a non-object, a
 * member of the wrong type, a negative or out-of-bounds number (max_msg_fds > 1024,
 * max_data_xfer_size outside [512, 1 GiB], pgsizes without a power of two >= 4096 or with
 * a bit below 4096, migration without pgsize or max_bitmap_size, migration.pgsize not
 * usable, max_bitmap_size 0 or > 4 GiB).
 */
int vfu_caps_parse(const char *json, size_t len, struct vfu_caps *caps);

/* The JSON text of caps (NUL-terminated, malloc'ed; *len counts the NUL). NULL on ENOMEM.
 * twin_socket is written as {"supported": caps->twin_socket} only when true. */
char *vfu_caps_format(const struct vfu_caps *caps, size_t *len);

/*
 * A VERSION payload parsed: major, minor and the capabilities (defaults when there is no
 * JSON). -EINVAL if the payload is shorter than 4 bytes or the JSON is bad.
 */
int vfu_version_parse(const void *payload, size_t len, uint16_t *major, uint16_t *minor,
		      struct vfu_caps *caps);

/* A VERSION payload (malloc'ed, *len bytes): version and JSON with the NUL. NULL on ENOMEM. */
void *vfu_version_build(uint16_t major, uint16_t minor, const struct vfu_caps *caps, size_t *len);

/* ---- UNIX stream sockets --------------------------------------------------------------- */

/* A listening socket at path, file mode 0600 (set before listen(), so nobody connects
 * earlier); an old socket file there is replaced, any other file is -EEXIST. Returns the fd. */
int vfu_listen(const char *path);
/* accept() on a listening fd: the connected fd (close-on-exec, blocking). */
int vfu_accept(int listen_fd);
/* connect() to path: the connected fd (close-on-exec, blocking). */
int vfu_connect(const char *path);

#endif /* DT_VFIO_USER_MSG_H */
