/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/client.c - the vfio-user client's connection: VERSION negotiation, the
 * request/reply exchange, device and region info, region access, reset.
 *
 * Every reply is checked before a field of it is used: its id and command are those of the
 * request in flight, its payload length is the one the command defines (or within the
 * bounds it allows), and every size inside it agrees with that length. Anything else is
 * -EPROTO and breaks the connection: after a reply we cannot parse, we cannot know what the
 * server did. Server requests that arrive while a reply is awaited are served (DMA_READ,
 * DMA_WRITE) or answered with an error, never left waiting.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "sys/sys.h"
#include "vfio_user/client_priv.h"

int client_break(struct dt_vfu_client *c, int err)
{
	if (!c->broken)
		log_err("vfio-user client: connection unusable from now on (%s)", strerror(-err));
	c->broken = true;
	return err;
}

void client_reply_done(struct client_reply *reply)
{
	vfu_msg_close_fds(&reply->msg);
}

/* The receive buffer can hold a reply of max_reply payload bytes and any server request
 * we accept (a DMA_WRITE of the data transfer size). */
static int ensure_rbuf(struct dt_vfu_client *c, size_t max_reply)
{
	size_t need = VFU_HDR_SIZE + sizeof(struct vfu_dma_access) + c->ours.max_data_xfer_size;
	uint8_t *p;

	if (VFU_HDR_SIZE + max_reply > need)
		need = VFU_HDR_SIZE + max_reply;
	if (need <= c->rbuf_size)
		return 0;
	p = xzalloc(need);
	if (!p)
		return log_fail(-ENOMEM, "vfio-user client: no memory for a %zu-byte reply", need);
	xfree(c->rbuf);
	c->rbuf = p;
	c->rbuf_size = need;
	return 0;
}

/* Wait until the socket is readable or the deadline passes. */
static int wait_readable(struct dt_vfu_client *c, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = {.fd = c->sock, .events = POLLIN};
		int timeout = -1, r;

		if (c->timeout_ms >= 0) {
			uint64_t now = vfu_now_ms();

			if (now >= deadline)
				return -ETIMEDOUT;
			timeout = (int)(deadline - now);
		}
		r = poll(&p, 1, timeout);
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* A command from the server: serve it, or answer with an error (unless it wants none). */
static int serve_command(struct dt_vfu_client *c, struct vfu_msg *msg)
{
	int ret;

	if (msg->hdr.cmd == VFU_CMD_DMA_READ || msg->hdr.cmd == VFU_CMD_DMA_WRITE) {
		ret = client_serve_dma(c, msg);
	} else {
		log_warn("vfio-user client: the server sent a %s command: refused",
			 vfu_cmd_name(msg->hdr.cmd));
		ret = vfu_reply_error(c->sock, &msg->hdr, ENOTSUP);
	}
	vfu_msg_close_fds(msg);
	return ret ? client_break(c, ret) : 0;
}

/* Receive one message, any kind. Errors break the connection except -ETIMEDOUT before any
 * byte of a message arrived (then nothing is out of step, but the reply may still come: the
 * caller breaks too). */
static int recv_one(struct dt_vfu_client *c, uint64_t deadline, struct vfu_msg *msg)
{
	int ret = wait_readable(c, deadline);

	if (ret)
		return client_break(
			c, log_fail(ret, "vfio-user client: no reply (%s)", strerror(-ret)));
	ret = vfu_msg_recv(c->sock, c->rbuf, c->rbuf_size, c->ours.max_msg_fds, msg);
	if (ret == -EBADMSG)
		ret = -EPROTO; /* too many fds: not what a well-behaved server sends */
	if (ret)
		return client_break(c, ret == -EMSGSIZE ? -EPROTO : ret);
	return 0;
}

int client_xact(struct dt_vfu_client *c, uint16_t cmd, const struct iovec *iov, unsigned niov,
		const int *fds, unsigned nfds, size_t max_reply, struct client_reply *reply)
{
	uint64_t deadline = vfu_now_ms() + (uint64_t)(c->timeout_ms > 0 ? c->timeout_ms : 0);
	uint16_t id = vfu_next_id(&c->next_id);
	struct vfu_msg *msg = &reply->msg;
	int ret;

	memset(reply, 0, sizeof(*reply));
	if (c->broken)
		return log_fail(-ECONNRESET, "vfio-user client: %s: the connection is broken",
				vfu_cmd_name(cmd));
	ret = ensure_rbuf(c, max_reply);
	if (ret)
		return ret;
	ret = vfu_msg_sendv(c->sock, id, cmd, VFU_F_TYPE_COMMAND, 0, iov, niov, fds, nfds);
	if (ret)
		return client_break(c, log_fail(ret, "vfio-user client: sending %s: %s",
						vfu_cmd_name(cmd), strerror(-ret)));
	for (;;) {
		ret = recv_one(c, deadline, msg);
		if (ret)
			return ret;
		if ((msg->hdr.flags & VFU_F_TYPE_MASK) == VFU_F_TYPE_COMMAND) {
			ret = serve_command(c, msg);
			if (ret)
				return ret;
			continue;
		}
		break;
	}
	if (!vfu_hdr_is_reply(&msg->hdr) || msg->hdr.msg_id != id || msg->hdr.cmd != cmd ||
	    msg->hdr.flags & ~VFU_F_KNOWN) {
		vfu_msg_close_fds(msg);
		return client_break(
			c,
			log_fail(
				-EPROTO,
				"vfio-user client: %s (id %u): got a reply of type %u for %s, id %u, flags 0x%x",
				vfu_cmd_name(cmd), id, msg->hdr.flags & VFU_F_TYPE_MASK,
				vfu_cmd_name(msg->hdr.cmd), msg->hdr.msg_id, msg->hdr.flags));
	}
	if (msg->hdr.flags & VFU_F_ERROR) {
		int err = msg->hdr.error && msg->hdr.error < 4096 ? (int)msg->hdr.error : EIO;

		vfu_msg_close_fds(msg);
		return log_fail(-err, "vfio-user client: the server failed %s: %s",
				vfu_cmd_name(cmd), strerror(err));
	}
	if (msg->len > max_reply) {
		vfu_msg_close_fds(msg);
		return client_break(
			c, log_fail(-EPROTO,
				    "vfio-user client: %s reply of %u bytes, at most %zu expected",
				    vfu_cmd_name(cmd), msg->len, max_reply));
	}
	return 0;
}

int client_feature(struct dt_vfu_client *c, uint32_t flags, const void *data, size_t len,
		   size_t max_data, struct client_reply *reply)
{
	struct vfu_device_feature f = {.argsz = (uint32_t)(sizeof(f) + max_data), .flags = flags};
	struct iovec iov[2] = {{&f, sizeof(f)}, {(void *)data, len}};
	int ret = client_xact(c, VFU_CMD_DEVICE_FEATURE, iov, len ? 2 : 1, NULL, 0,
			      sizeof(f) + (max_data > len ? max_data : len), reply);

	if (ret)
		return ret;
	if (reply->msg.len < sizeof(f)) {
		client_reply_done(reply);
		return client_break(
			c,
			log_fail(-EPROTO, "vfio-user client: DEVICE_FEATURE 0x%x reply of %u bytes",
				 flags, reply->msg.len));
	}
	return 0;
}

int client_feature_get(struct dt_vfu_client *c, uint32_t feature, void *out, size_t size,
		       const char *name)
{
	struct client_reply r;
	int ret = client_feature(c, VFU_FEATURE_GET | feature, NULL, 0, size, &r);

	if (ret)
		return ret;
	if (r.msg.len != sizeof(struct vfu_device_feature) + size) {
		client_reply_done(&r);
		return client_break(c, log_fail(-EPROTO, "vfio-user client: %s reply of %u bytes",
						name, r.msg.len));
	}
	memcpy(out, r.msg.payload + sizeof(struct vfu_device_feature), size);
	client_reply_done(&r);
	return 0;
}

/* ---- connect -------------------------------------------------------------------------- */

static int negotiate(struct dt_vfu_client *c)
{
	struct client_reply r;
	struct iovec iov;
	uint16_t major, minor;
	size_t len;
	void *payload = vfu_version_build(VFU_VERSION_MAJOR, VFU_VERSION_MINOR, &c->ours, &len);
	int ret;

	if (!payload)
		return log_fail(-ENOMEM, "vfio-user client: no memory for VERSION");
	iov = (struct iovec){payload, len};
	ret = client_xact(c, VFU_CMD_VERSION, &iov, 1, NULL, 0, 64 * 1024, &r);
	xfree(payload);
	if (ret)
		return ret == -ECONNRESET ? -ECONNREFUSED : ret;
	if (r.msg.nfds) {
		client_reply_done(&r);
		return client_break(c, log_fail(-EPROTO, "vfio-user client: VERSION reply with fds "
							 "(twin socket not asked for)"));
	}
	ret = vfu_version_parse(r.msg.payload, r.msg.len, &major, &minor, &c->theirs);
	if (ret)
		return client_break(c, log_fail(-EPROTO, "vfio-user client: bad VERSION reply"));
	if (major != VFU_VERSION_MAJOR || minor > VFU_VERSION_MINOR)
		return client_break(
			c,
			log_fail(-EPROTO,
				 "vfio-user client: the server answered version %u.%u to our %u.%u",
				 major, minor, VFU_VERSION_MAJOR, VFU_VERSION_MINOR));
	c->info.major = major;
	c->info.minor = minor;
	c->xfer = c->theirs.max_data_xfer_size < c->ours.max_data_xfer_size
			  ? c->theirs.max_data_xfer_size
			  : c->ours.max_data_xfer_size;
	c->bitmap_max = c->ours.mig_max_bitmap_size;
	if (c->theirs.migration && c->theirs.mig_max_bitmap_size < c->bitmap_max)
		c->bitmap_max = c->theirs.mig_max_bitmap_size;
	c->bitmap_max &= ~7ull;
	if (c->bitmap_max < 8)
		return client_break(
			c,
			log_fail(-EPROTO, "vfio-user client: a dirty bitmap of %llu bytes at most",
				 (unsigned long long)c->bitmap_max));
	c->info.max_msg_fds = c->theirs.max_msg_fds;
	c->info.max_data_xfer_size = c->theirs.max_data_xfer_size;
	c->info.pgsizes = c->theirs.pgsizes;
	c->info.max_dma_maps = c->theirs.max_dma_maps;
	c->info.max_bitmap_size = c->bitmap_max;
	c->info.mig_pgsize = c->theirs.migration ? c->theirs.mig_pgsize : 0;
	return 0;
}

static int get_device_info(struct dt_vfu_client *c)
{
	struct vfu_device_info di = {.argsz = sizeof(di)};
	struct iovec iov = {&di, sizeof(di)};
	struct client_reply r;
	int ret = client_xact(c, VFU_CMD_DEVICE_GET_INFO, &iov, 1, NULL, 0, sizeof(di), &r);

	if (ret)
		return ret;
	if (r.msg.len != sizeof(di)) {
		client_reply_done(&r);
		return client_break(
			c, log_fail(-EPROTO, "vfio-user client: DEVICE_GET_INFO reply of %u bytes",
				    r.msg.len));
	}
	memcpy(&di, r.msg.payload, sizeof(di));
	client_reply_done(&r);
	if (di.argsz < sizeof(di))
		return client_break(
			c,
			log_fail(-EPROTO, "vfio-user client: DEVICE_GET_INFO argsz %u", di.argsz));
	c->info.device_flags = di.flags;
	c->info.num_regions = di.num_regions;
	c->info.num_irqs = di.num_irqs;
	return 0;
}

/* Which migration features the device has; a refusal only means "not this one". */
static int probe_features(struct dt_vfu_client *c)
{
	struct vfu_feature_migration mig;
	struct client_reply r;
	int ret = client_feature_get(c, VFU_FEATURE_MIGRATION, &mig, sizeof(mig), "MIGRATION");

	if (!ret) {
		if (mig.flags & VFU_MIGRATION_STOP_COPY)
			c->info.mig_flags = mig.flags;
		else
			log_warn("vfio-user client: MIGRATION flags 0x%llx without STOP_COPY: "
				 "no migration",
				 (unsigned long long)mig.flags);
	} else if (c->broken) {
		return ret;
	}
	ret = client_feature(c, VFU_FEATURE_PROBE | VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START,
			     NULL, 0, 0, &r);
	if (!ret)
		client_reply_done(&r);
	else if (c->broken)
		return ret;
	c->info.dma_logging = !ret;
	if (c->info.mig_flags) {
		ret = client_feature(
			c, VFU_FEATURE_PROBE | VFU_FEATURE_GET | VFU_FEATURE_MIG_DATA_SIZE, NULL, 0,
			0, &r);
		if (!ret)
			client_reply_done(&r);
		else if (c->broken)
			return ret;
		c->info.mig_data_size = !ret;
	}
	c->mig_state = DT_VFU_MIG_RUNNING;
	return 0;
}

struct dt_vfu_client *dt_vfu_client_from_fd(int fd, const struct dt_vfu_client_opts *opts)
{
	struct dt_vfu_client *c;
	int ret;

	if (fd < 0 || (opts && opts->size < sizeof(*opts)) ||
	    (opts && opts->max_msg_fds > VFU_MAX_FDS) ||
	    (opts && opts->max_data_xfer_size &&
	     (opts->max_data_xfer_size < VFU_CAPS_MIN_XFER ||
	      opts->max_data_xfer_size > VFU_CAPS_MAX_XFER)) ||
	    (opts && opts->max_bitmap_size > VFU_CAPS_MAX_BITMAP_SIZE)) {
		log_err("dt_vfu_client: bad fd or options (size, max_msg_fds <= %u, "
			"max_data_xfer_size in [%u, 1 GiB], max_bitmap_size <= 4 GiB)",
			VFU_MAX_FDS, VFU_CAPS_MIN_XFER);
		if (fd >= 0)
			sys_close(fd);
		errno = EINVAL;
		return NULL;
	}
	c = xzalloc(sizeof(*c));
	if (!c) {
		sys_close(fd);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->sock = fd;
	c->timeout_ms = CLIENT_DEF_TIMEOUT_MS;
	vfu_caps_default(&c->ours);
	c->ours.max_msg_fds = CLIENT_DEF_FDS;
	c->ours.max_data_xfer_size = CLIENT_DEF_XFER;
	c->ours.migration = true;
	c->ours.mig_pgsize = CLIENT_PAGE;
	c->ours.mig_max_bitmap_size = CLIENT_DEF_BITMAP;
	if (opts) {
		if (opts->timeout_ms)
			c->timeout_ms = opts->timeout_ms < 0 ? -1 : opts->timeout_ms;
		if (opts->max_msg_fds)
			c->ours.max_msg_fds = opts->max_msg_fds;
		if (opts->max_data_xfer_size)
			c->ours.max_data_xfer_size = opts->max_data_xfer_size;
		if (opts->max_bitmap_size)
			c->ours.mig_max_bitmap_size = opts->max_bitmap_size;
		c->mig_data_hint = opts->mig_data_hint;
	}
	if (c->timeout_ms > 0) {
		/* A server that stops inside a message must not hold us past the timeout. */
		struct timeval tv = {.tv_sec = c->timeout_ms / 1000,
				     .tv_usec = (c->timeout_ms % 1000) * 1000};

		sys_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		sys_setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	ret = client_mirror_init(c);
	if (!ret)
		ret = negotiate(c);
	if (!ret)
		ret = get_device_info(c);
	if (!ret)
		ret = probe_features(c);
	if (ret) {
		dt_vfu_client_free(c);
		errno = -ret;
		return NULL;
	}
	log_info("vfio-user client: connected, version %u.%u, %u regions, migration 0x%llx, "
		 "DMA logging %s",
		 c->info.major, c->info.minor, c->info.num_regions,
		 (unsigned long long)c->info.mig_flags, c->info.dma_logging ? "yes" : "no");
	return c;
}

struct dt_vfu_client *dt_vfu_client_connect(const char *path, const struct dt_vfu_client_opts *opts)
{
	int fd;

	if (!path) {
		log_err("dt_vfu_client_connect: NULL path");
		errno = EINVAL;
		return NULL;
	}
	fd = vfu_connect(path);
	if (fd < 0) {
		log_err("dt_vfu_client_connect: %s: %s", path, strerror(-fd));
		errno = -fd;
		return NULL;
	}
	return dt_vfu_client_from_fd(fd, opts);
}

void dt_vfu_client_free(struct dt_vfu_client *c)
{
	if (!c)
		return;
	if (c->sock >= 0)
		sys_close(c->sock);
	client_mirror_fini(c);
	client_mig_reset(c);
	xfree(c->rbuf);
	pthread_mutex_destroy(&c->lock);
	xfree(c);
}

int dt_vfu_client_get_info(struct dt_vfu_client *c, struct dt_vfu_client_info *info)
{
	if (!c || !info)
		return log_fail(-EINVAL, "dt_vfu_client_get_info: NULL argument");
	pthread_mutex_lock(&c->lock);
	*info = c->info;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int dt_vfu_client_fd(const struct dt_vfu_client *c)
{
	return c ? c->sock : -EINVAL;
}

int dt_vfu_client_process(struct dt_vfu_client *c)
{
	int served = 0, ret = 0;

	if (!c)
		return log_fail(-EINVAL, "dt_vfu_client_process: NULL client");
	pthread_mutex_lock(&c->lock);
	while (!ret) {
		struct pollfd p = {.fd = c->sock, .events = POLLIN};
		struct vfu_msg msg;

		if (c->broken) {
			ret = log_fail(-ECONNRESET,
				       "dt_vfu_client_process: the connection is broken");
			break;
		}
		if (poll(&p, 1, 0) <= 0)
			break;
		ret = ensure_rbuf(c, 0);
		if (!ret)
			ret = recv_one(c, vfu_now_ms() + 1000, &msg);
		if (ret)
			break;
		if ((msg.hdr.flags & VFU_F_TYPE_MASK) != VFU_F_TYPE_COMMAND) {
			vfu_msg_close_fds(&msg);
			ret = client_break(
				c, log_fail(-EPROTO,
					    "vfio-user client: a reply (%s, id %u) to no request",
					    vfu_cmd_name(msg.hdr.cmd), msg.hdr.msg_id));
			break;
		}
		ret = serve_command(c, &msg);
		if (!ret)
			served++;
	}
	pthread_mutex_unlock(&c->lock);
	return ret ? ret : served;
}

/* ---- regions -------------------------------------------------------------------------- */

int dt_vfu_client_region_info(struct dt_vfu_client *c, uint32_t index,
			      struct dt_vfu_region_info *info)
{
	struct vfu_region_info ri = {.argsz = sizeof(ri), .index = index};
	struct iovec iov = {&ri, sizeof(ri)};
	struct client_reply r;
	int ret;

	if (!c || !info)
		return log_fail(-EINVAL, "dt_vfu_client_region_info: NULL argument");
	pthread_mutex_lock(&c->lock);
	if (index >= c->info.num_regions) {
		ret = log_fail(-EINVAL, "dt_vfu_client_region_info: region %u of %u", index,
			       c->info.num_regions);
		goto out;
	}
	ret = client_xact(c, VFU_CMD_DEVICE_GET_REGION_INFO, &iov, 1, NULL, 0, sizeof(ri), &r);
	if (ret)
		goto out;
	if (r.msg.len != sizeof(ri)) {
		client_reply_done(&r);
		ret = client_break(
			c, log_fail(-EPROTO, "vfio-user client: GET_REGION_INFO reply of %u bytes",
				    r.msg.len));
		goto out;
	}
	memcpy(&ri, r.msg.payload, sizeof(ri));
	if (ri.index != index || ri.argsz < sizeof(ri) || ri.offset + ri.size < ri.offset) {
		client_reply_done(&r);
		ret = client_break(
			c, log_fail(-EPROTO,
				    "vfio-user client: GET_REGION_INFO of region %u answers "
				    "region %u, argsz %u, size 0x%llx at 0x%llx",
				    index, ri.index, ri.argsz, (unsigned long long)ri.size,
				    (unsigned long long)ri.offset));
		goto out;
	}
	info->flags = ri.flags;
	info->size = ri.size;
	info->offset = ri.offset;
	info->fd = -1;
	if (r.msg.nfds && (ri.flags & VFU_REGION_F_MMAP)) {
		info->fd = r.msg.fds[0];
		r.msg.fds[0] = -1;
	}
	client_reply_done(&r);
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int region_access(struct dt_vfu_client *c, uint32_t index, uint64_t offset, void *buf,
			 size_t len, bool write)
{
	uint16_t cmd = write ? VFU_CMD_REGION_WRITE : VFU_CMD_REGION_READ;
	uint8_t *p = buf;
	int ret = 0;

	if (!c || (!buf && len) || offset + len < offset)
		return log_fail(-EINVAL, "dt_vfu_client_region_%s: bad arguments",
				write ? "write" : "read");
	pthread_mutex_lock(&c->lock);
	if (index >= c->info.num_regions)
		ret = log_fail(-EINVAL, "dt_vfu_client_region_%s: region %u of %u",
			       write ? "write" : "read", index, c->info.num_regions);
	while (!ret && len) {
		uint32_t n = (uint32_t)(len < c->xfer ? len : c->xfer);
		struct vfu_region_access ra = {.offset = offset, .region = index, .count = n};
		struct iovec iov[2] = {{&ra, sizeof(ra)}, {p, n}};
		size_t want = sizeof(ra) + (write ? 0 : n);
		struct client_reply r;
		struct vfu_region_access got;

		ret = client_xact(c, cmd, iov, write ? 2 : 1, NULL, 0, want, &r);
		if (ret)
			break;
		if (r.msg.len != want)
			goto bad;
		memcpy(&got, r.msg.payload, sizeof(got));
		if (got.offset != offset || got.region != index || got.count != n)
			goto bad;
		if (!write)
			memcpy(p, r.msg.payload + sizeof(got), n);
		client_reply_done(&r);
		p += n;
		offset += n;
		len -= n;
		continue;
	bad:
		client_reply_done(&r);
		ret = client_break(
			c, log_fail(-EPROTO,
				    "vfio-user client: %s of %u bytes at 0x%llx of region %u: "
				    "a reply of %u bytes that does not match",
				    vfu_cmd_name(cmd), n, (unsigned long long)offset, index,
				    r.msg.len));
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int dt_vfu_client_region_read(struct dt_vfu_client *c, uint32_t index, uint64_t offset, void *buf,
			      size_t len)
{
	return region_access(c, index, offset, buf, len, false);
}

int dt_vfu_client_region_write(struct dt_vfu_client *c, uint32_t index, uint64_t offset,
			       const void *buf, size_t len)
{
	return region_access(c, index, offset, (void *)buf, len, true);
}

int dt_vfu_client_reset(struct dt_vfu_client *c)
{
	struct client_reply r;
	int ret;

	if (!c)
		return log_fail(-EINVAL, "dt_vfu_client_reset: NULL client");
	pthread_mutex_lock(&c->lock);
	ret = client_xact(c, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, 0, &r);
	if (!ret) {
		client_reply_done(&r);
		c->mig_state = DT_VFU_MIG_RUNNING;
		client_mig_reset(c);
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* ---- interrupts ------------------------------------------------------------------------ */

int dt_vfu_client_irq_info(struct dt_vfu_client *c, uint32_t index, struct dt_vfu_irq_info *info)
{
	struct vfu_irq_info ii = {.argsz = sizeof(ii), .index = index};
	struct iovec iov = {&ii, sizeof(ii)};
	struct client_reply r;
	int ret;

	if (!c || !info)
		return log_fail(-EINVAL, "dt_vfu_client_irq_info: NULL argument");
	pthread_mutex_lock(&c->lock);
	if (index >= c->info.num_irqs) {
		ret = log_fail(-EINVAL, "dt_vfu_client_irq_info: index %u of %u", index,
			       c->info.num_irqs);
		goto out;
	}
	ret = client_xact(c, VFU_CMD_DEVICE_GET_IRQ_INFO, &iov, 1, NULL, 0, sizeof(ii), &r);
	if (ret)
		goto out;
	if (r.msg.len == sizeof(ii))
		memcpy(&ii, r.msg.payload, sizeof(ii));
	client_reply_done(&r);
	if (r.msg.len != sizeof(ii) || ii.index != index || ii.argsz < sizeof(ii)) {
		ret = client_break(
			c, log_fail(-EPROTO,
				    "vfio-user client: GET_IRQ_INFO of index %u: a reply of %u "
				    "bytes for index %u",
				    index, r.msg.len, ii.index));
		goto out;
	}
	info->flags = ii.flags;
	info->count = ii.count;
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int dt_vfu_client_set_irq_eventfds(struct dt_vfu_client *c, uint32_t index, uint32_t start,
				   uint32_t count, const int *fds)
{
	uint32_t per = VFU_MAX_FDS, done = 0;
	int ret = 0;

	if (!c || !count || start + count < start)
		return log_fail(-EINVAL, "dt_vfu_client_set_irq_eventfds: bad arguments");
	pthread_mutex_lock(&c->lock);
	if (c->theirs.max_msg_fds < per)
		per = c->theirs.max_msg_fds;
	if (index >= c->info.num_irqs || (fds && !per))
		ret = log_fail(
			-EINVAL,
			"dt_vfu_client_set_irq_eventfds: index %u of %u (the server takes %u "
			"fds)",
			index, c->info.num_irqs, c->theirs.max_msg_fds);
	if (!fds)
		per = count; /* one message de-assigns them all */
	while (!ret && done < count) {
		uint32_t n = count - done < per ? count - done : per;
		struct vfu_irq_set is = {.argsz = sizeof(is),
					 .flags = VFU_IRQ_SET_DATA_EVENTFD |
						  VFU_IRQ_SET_ACTION_TRIGGER,
					 .index = index,
					 .start = start + done,
					 .count = n};
		struct iovec iov = {&is, sizeof(is)};
		struct client_reply r;

		ret = client_xact(c, VFU_CMD_DEVICE_SET_IRQS, &iov, 1, fds ? fds + done : NULL,
				  fds ? n : 0, 0, &r);
		if (!ret)
			client_reply_done(&r);
		done += n;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}
