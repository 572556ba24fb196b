/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/server.c - the vfio-user device server: its life (new, accept, free), the
 * message loop (process, run), the checks every message gets before its handler (VERSION
 * first, command type, flags, descriptors only where a command takes them), VERSION, the
 * queue of commands that arrive during a DMA request, and the client-lost cleanup.
 *
 * Invariants: a command is answered exactly once (unless it asked for no reply), with its
 * handler's payload or with an error reply carrying the errno; a handler that fails has
 * changed nothing. Anything that leaves the byte stream out of step (a size below the header
 * or above our limit) or a refused VERSION closes the connection, and closing always runs
 * the same cleanup (vfu_server_drop_client): mappings, logging, IRQ eventfds, migration
 * state back to RUNNING.
 */
#include "vfio_user/server_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "sys/sys.h"

#define DEFAULT_MAX_FDS	   8u
#define DEFAULT_MAX_XFER   (1ull << 20)
#define DEFAULT_MAX_BITMAP (16ull << 20)

void *vfu_out_reserve(struct dt_vfu_server *s, size_t len)
{
	if (len > s->out_cap) {
		uint8_t *p = realloc(s->out, len);

		if (!p)
			return NULL;
		s->out = p;
		s->out_cap = len;
	}
	return s->out;
}

int vfu_reply_with(struct dt_vfu_server *s, const void *p, size_t len)
{
	if (!vfu_out_reserve(s, len))
		return -ENOMEM;
	memcpy(s->out, p, len);
	s->out_len = len;
	return 0;
}

/* ---- life ---------------------------------------------------------------------------------- */

static int check_opts(const struct dt_vfu_server_opts *o)
{
	if (!o || o->size < sizeof(*o))
		return log_fail(-EINVAL, "dt_vfu_server_new: bad options size");
	if (!o->path && o->fd < 0)
		return log_fail(-EINVAL, "dt_vfu_server_new: neither path nor fd");
	if (o->num_regions > VFU_SRV_MAX_REGIONS || (o->num_regions && !o->regions))
		return log_fail(-EINVAL, "dt_vfu_server_new: %u regions", o->num_regions);
	if (o->num_irqs > VFU_SRV_MAX_IRQS || (o->num_irqs && !o->irqs))
		return log_fail(-EINVAL, "dt_vfu_server_new: %u irqs", o->num_irqs);
	if (o->device_flags & ~(DT_VFU_DEVICE_RESET | DT_VFU_DEVICE_PCI))
		return log_fail(-EINVAL, "dt_vfu_server_new: device flags 0x%x", o->device_flags);
	for (uint32_t i = 0; i < o->num_regions; i++) {
		const struct dt_vfu_region *r = &o->regions[i];

		if (r->flags & ~(DT_VFU_REGION_READ | DT_VFU_REGION_WRITE | DT_VFU_REGION_MMAP))
			return log_fail(-EINVAL, "dt_vfu_server_new: region %u flags 0x%x", i,
					r->flags);
		if (!r->size && r->flags)
			return log_fail(-EINVAL, "dt_vfu_server_new: region %u empty with flags",
					i);
		if ((r->flags & DT_VFU_REGION_MMAP) && r->fd < 0)
			return log_fail(-EINVAL, "dt_vfu_server_new: region %u mmap without fd", i);
	}
	for (uint32_t i = 0; i < o->num_irqs; i++)
		if (o->irqs[i].count > 4096)
			return log_fail(-EINVAL, "dt_vfu_server_new: irq %u count %u", i,
					o->irqs[i].count);
	if (o->migration_flags & ~(VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY))
		return log_fail(-EINVAL, "dt_vfu_server_new: migration flags 0x%llx",
				(unsigned long long)o->migration_flags);
	if (o->migration_flags && !(o->migration_flags & VFU_MIGRATION_STOP_COPY))
		return log_fail(-EINVAL, "dt_vfu_server_new: migration without STOP_COPY");
	if (o->max_msg_fds > VFU_MAX_FDS)
		return log_fail(-EINVAL, "dt_vfu_server_new: max_msg_fds %u above %u",
				o->max_msg_fds, VFU_MAX_FDS);
	if (o->max_data_xfer_size && (o->max_data_xfer_size < VFU_CAPS_MIN_XFER ||
				      o->max_data_xfer_size > VFU_CAPS_MAX_XFER))
		return log_fail(-EINVAL, "dt_vfu_server_new: max_data_xfer_size %llu",
				(unsigned long long)o->max_data_xfer_size);
	if (o->max_bitmap_size > VFU_CAPS_MAX_BITMAP_SIZE)
		return log_fail(-EINVAL, "dt_vfu_server_new: max_bitmap_size %llu",
				(unsigned long long)o->max_bitmap_size);
	if (o->log_pgsize && (!is_pow2(o->log_pgsize) || o->log_pgsize < 4096))
		return log_fail(-EINVAL, "dt_vfu_server_new: log_pgsize %llu",
				(unsigned long long)o->log_pgsize);
	if (o->dma_timeout_ms < -1)
		return log_fail(-EINVAL, "dt_vfu_server_new: dma_timeout_ms %d", o->dma_timeout_ms);
	if (o->dma_kind != DT_DEVICE_EMULATED && o->dma_kind != DT_DEVICE_LOGGING &&
	    o->dma_kind != DT_DEVICE_PASSTHROUGH)
		return log_fail(-EINVAL, "dt_vfu_server_new: dma_kind %d", (int)o->dma_kind);
	return 0;
}

struct dt_vfu_server *dt_vfu_server_new(const struct dt_vfu_server_opts *opts)
{
	struct dt_vfu_server *s;
	int r = check_opts(opts);

	if (r) {
		if (opts && opts->size >= sizeof(*opts) && !opts->path && opts->fd >= 0)
			sys_close(opts->fd);
		errno = -r;
		return NULL;
	}
	s = xzalloc(sizeof(*s));
	if (!s) {
		r = -ENOMEM;
		goto fail_fd;
	}
	s->opts = *opts;
	s->opts.size = sizeof(s->opts);
	if (opts->num_regions)
		memcpy(s->regions, opts->regions, sizeof(s->regions[0]) * opts->num_regions);
	if (opts->num_irqs)
		memcpy(s->irqs, opts->irqs, sizeof(s->irqs[0]) * opts->num_irqs);
	s->opts.regions = s->regions;
	s->opts.irqs = s->irqs;
	if (opts->ops)
		s->ops = *opts->ops;
	s->opts.ops = &s->ops;
	s->max_fds = opts->max_msg_fds ? opts->max_msg_fds : DEFAULT_MAX_FDS;
	s->max_xfer = opts->max_data_xfer_size ? opts->max_data_xfer_size : DEFAULT_MAX_XFER;
	s->max_bitmap = opts->max_bitmap_size ? opts->max_bitmap_size : DEFAULT_MAX_BITMAP;
	s->max_maps = opts->max_dma_maps ? opts->max_dma_maps : VFU_DEFAULT_MAX_DMA_MAPS;
	s->log_pgsize = opts->log_pgsize ? opts->log_pgsize : 4096;
	s->listen_fd = -1;
	s->sock = -1;
	vfu_caps_default(&s->peer);
	s->mig_state = VFU_MIG_STATE_RUNNING;
	s->pending_tail = &s->pending;
	pthread_rwlock_init(&s->maps_lock, NULL);
	pthread_mutex_init(&s->irq_lock, NULL);
	s->rbuf_size = s->max_xfer + VFU_SRV_MSG_SLACK;
	s->rbuf = malloc(s->rbuf_size);
	s->dbuf = malloc(s->max_xfer + VFU_SRV_MSG_SLACK);
	s->iommu = dt_iommu_new();
	if (!s->rbuf || !s->dbuf || !s->iommu) {
		r = -ENOMEM;
		goto fail;
	}
	s->dev = dt_device_attach(s->iommu, opts->dma_kind);
	if (!s->dev) {
		r = -errno;
		goto fail;
	}
	if (opts->path) {
		s->path = strdup(opts->path);
		if (!s->path) {
			r = -ENOMEM;
			goto fail;
		}
		s->listen_fd = sys_listen_unix(opts->path, 0, 4, &s->path_dev, &s->path_ino);
		if (s->listen_fd < 0) {
			r = s->listen_fd;
			goto fail;
		}
	} else {
		s->sock = opts->fd;
	}
	return s;
fail:
	pthread_rwlock_destroy(&s->maps_lock);
	pthread_mutex_destroy(&s->irq_lock);
	if (s->iommu)
		dt_iommu_free(s->iommu);
	free(s->rbuf);
	free(s->dbuf);
	free(s->path);
	xfree(s);
fail_fd:
	if (!opts->path && opts->fd >= 0)
		sys_close(opts->fd);
	log_err("dt_vfu_server_new: %s", strerror(-r));
	errno = -r;
	return NULL;
}

static void pending_drop_all(struct dt_vfu_server *s)
{
	while (s->pending) {
		struct vfu_pending *p = s->pending;

		s->pending = p->next;
		vfu_msg_close_fds(&p->msg);
		free(p);
	}
	s->pending_tail = &s->pending;
	s->npending = 0;
}

void vfu_server_drop_client(struct dt_vfu_server *s, bool notify)
{
	/* The socket and the client's limits are read by dt_vfu_dma_rw under the lock. */
	pthread_rwlock_wrlock(&s->maps_lock);
	if (s->sock >= 0) {
		sys_close(s->sock);
		s->sock = -1;
	}
	s->negotiated = false;
	vfu_caps_default(&s->peer);
	pthread_rwlock_unlock(&s->maps_lock);
	pending_drop_all(s);
	vfu_unmap_all(s);
	vfu_logging_stop(s);
	vfu_irqs_close(s);
	if (!notify)
		return;
	if (s->ops.client_lost)
		s->ops.client_lost(s->opts.opaque);
	if (s->mig_state != VFU_MIG_STATE_RUNNING && s->mig_state != VFU_MIG_STATE_ERROR) {
		int r = vfu_mig_walk(s, VFU_MIG_STATE_RUNNING);

		if (r)
			log_err("vfio-user server: client lost, device left in state %u: %s",
				s->mig_state, strerror(-r));
	}
}

void dt_vfu_server_free(struct dt_vfu_server *s)
{
	if (!s)
		return;
	s->freeing = true;
	vfu_server_drop_client(s, false);
	if (s->listen_fd >= 0) {
		uint64_t dev, ino;
		uint32_t mode;

		sys_close(s->listen_fd);
		/* Only the socket file we made: another server may have replaced it. */
		if (!sys_lstat(s->path, &mode, &dev, &ino) && dev == s->path_dev &&
		    ino == s->path_ino)
			sys_unlink(s->path);
	}
	dt_iommu_free(s->iommu);
	pthread_rwlock_destroy(&s->maps_lock);
	pthread_mutex_destroy(&s->irq_lock);
	free(s->maps);
	free(s->rbuf);
	free(s->dbuf);
	free(s->out);
	free(s->path);
	xfree(s);
}

int dt_vfu_server_accept(struct dt_vfu_server *s)
{
	int fd;

	if (!s)
		return log_fail(-EINVAL, "dt_vfu_server_accept: NULL");
	if (s->sock >= 0)
		return log_fail(-EBUSY, "dt_vfu_server_accept: a client is connected");
	if (s->listen_fd < 0)
		return log_fail(-EINVAL, "dt_vfu_server_accept: server made from a connected fd");
	fd = vfu_accept(s->listen_fd);
	if (fd < 0)
		return fd;
	pthread_rwlock_wrlock(&s->maps_lock);
	s->sock = fd;
	s->negotiated = false;
	vfu_caps_default(&s->peer);
	pthread_rwlock_unlock(&s->maps_lock);
	return 0;
}

int dt_vfu_server_fd(const struct dt_vfu_server *s)
{
	if (!s)
		return -EINVAL;
	if (s->sock >= 0)
		return s->sock;
	return s->listen_fd >= 0 ? s->listen_fd : -ENOTCONN;
}

bool dt_vfu_server_connected(const struct dt_vfu_server *s)
{
	return s && s->sock >= 0;
}

struct dt_iommu *dt_vfu_server_iommu(struct dt_vfu_server *s)
{
	return s ? s->iommu : NULL;
}

struct dt_device *dt_vfu_server_device(struct dt_vfu_server *s)
{
	return s ? s->dev : NULL;
}

uint32_t dt_vfu_server_mig_state(const struct dt_vfu_server *s)
{
	return s ? s->mig_state : VFU_MIG_STATE_ERROR;
}

/* ---- VERSION ------------------------------------------------------------------------------- */

static int handle_version(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_caps peer, ours;
	uint16_t major, minor;
	size_t len;
	void *p;
	int r;

	if (s->negotiated)
		return log_fail(-EINVAL, "vfio-user server: second VERSION");
	r = vfu_version_parse(msg->payload, msg->len, &major, &minor, &peer);
	if (r)
		return -(EINVAL | VFU_CLOSE);
	if (major != VFU_VERSION_MAJOR)
		return log_fail(-(ENOTSUP | VFU_CLOSE),
				"vfio-user server: version %u.%u, we speak %u.x", major, minor,
				VFU_VERSION_MAJOR);
	if (peer.mig_max_bitmap_size && peer.mig_max_bitmap_size < 8)
		return log_fail(-(EINVAL | VFU_CLOSE), "vfio-user server: max_bitmap_size %llu",
				(unsigned long long)peer.mig_max_bitmap_size);
	vfu_caps_default(&ours);
	ours.max_msg_fds = s->max_fds;
	ours.max_data_xfer_size = s->max_xfer;
	ours.pgsizes = 4096;
	ours.max_dma_maps = s->max_maps;
	/* The reply's capabilities are a subset of the proposed ones (limits always). */
	if (peer.migration) {
		ours.migration = true;
		ours.mig_pgsize = s->log_pgsize;
		ours.mig_max_bitmap_size = s->max_bitmap;
	}
	ours.write_multiple = peer.write_multiple;
	ours.twin_socket = false; /* declined: DMA requests share the one socket */
	p = vfu_version_build(VFU_VERSION_MAJOR,
			      minor < VFU_VERSION_MINOR ? minor : VFU_VERSION_MINOR, &ours, &len);
	if (!p)
		return -ENOMEM;
	if (!vfu_out_reserve(s, len)) {
		free(p);
		return -ENOMEM;
	}
	memcpy(s->out, p, len);
	s->out_len = len;
	free(p);
	pthread_rwlock_wrlock(&s->maps_lock);
	s->peer = peer;
	pthread_rwlock_unlock(&s->maps_lock);
	s->negotiated = true;
	return 0;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* How many descriptors a command may carry. */
static unsigned fds_allowed(const struct vfu_msg *msg)
{
	switch (msg->hdr.cmd) {
	case VFU_CMD_DMA_MAP:
		return 1;
	case VFU_CMD_DEVICE_SET_IRQS:
		return VFU_MAX_FDS;
	default:
		return 0;
	}
}

int vfu_server_dispatch(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	const struct vfu_hdr *h = &msg->hdr;

	s->out_len = 0;
	s->out_nfds = 0;
	if ((h->flags & VFU_F_TYPE_MASK) != VFU_F_TYPE_COMMAND || (h->flags & ~VFU_F_KNOWN) ||
	    (h->flags & VFU_F_ERROR))
		return log_fail(-EINVAL, "vfio-user server: %s with flags 0x%x",
				vfu_cmd_name(h->cmd), h->flags);
	if (msg->nfds > fds_allowed(msg))
		return log_fail(-EINVAL, "vfio-user server: %s with %u descriptors",
				vfu_cmd_name(h->cmd), msg->nfds);
	if (!s->negotiated && h->cmd != VFU_CMD_VERSION)
		return log_fail(-(EINVAL | VFU_CLOSE), "vfio-user server: %s before VERSION",
				vfu_cmd_name(h->cmd));
	switch (h->cmd) {
	case VFU_CMD_VERSION:
		return handle_version(s, msg);
	case VFU_CMD_DMA_MAP:
		return vfu_handle_dma_map(s, msg);
	case VFU_CMD_DMA_UNMAP:
		return vfu_handle_dma_unmap(s, msg);
	case VFU_CMD_DEVICE_GET_INFO:
		return vfu_handle_device_info(s, msg);
	case VFU_CMD_DEVICE_GET_REGION_INFO:
		return vfu_handle_region_info(s, msg);
	case VFU_CMD_DEVICE_GET_IRQ_INFO:
		return vfu_handle_irq_info(s, msg);
	case VFU_CMD_DEVICE_SET_IRQS:
		return vfu_handle_set_irqs(s, msg);
	case VFU_CMD_REGION_READ:
		return vfu_handle_region_read(s, msg);
	case VFU_CMD_REGION_WRITE:
		return vfu_handle_region_write(s, msg);
	case VFU_CMD_DEVICE_RESET:
		return vfu_handle_reset(s, msg);
	case VFU_CMD_REGION_WRITE_MULTI:
		return vfu_handle_region_write_multi(s, msg);
	case VFU_CMD_DEVICE_FEATURE:
		return vfu_handle_feature(s, msg);
	case VFU_CMD_MIG_DATA_READ:
		return vfu_handle_mig_data_read(s, msg);
	case VFU_CMD_MIG_DATA_WRITE:
		return vfu_handle_mig_data_write(s, msg);
	case VFU_CMD_DEVICE_GET_REGION_IO_FDS:
		return log_fail(-ENOTSUP, "vfio-user server: GET_REGION_IO_FDS not supported");
	case VFU_CMD_DMA_READ:
	case VFU_CMD_DMA_WRITE:
		return log_fail(-EINVAL, "vfio-user server: %s is a server command",
				vfu_cmd_name(h->cmd));
	default:
		return log_fail(-ENOSYS, "vfio-user server: unknown command %u", h->cmd);
	}
}

/* Handle msg and answer it; returns 0, or -EPROTO / -ECONNRESET after dropping the client. */
static int serve(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	int r = vfu_server_dispatch(s, msg);
	bool close_after = r < 0 && (-r & VFU_CLOSE);
	int sent;

	vfu_msg_close_fds(msg);
	if (r < 0) {
		sent = vfu_reply_error(s->sock, &msg->hdr, -r & ~VFU_CLOSE);
	} else if (msg->hdr.flags & VFU_F_NO_REPLY) {
		sent = 0;
	} else {
		sent = vfu_reply(s->sock, &msg->hdr, s->out, s->out_len, s->out_fds, s->out_nfds);
	}
	s->out_nfds = 0;
	if (close_after) {
		vfu_server_drop_client(s, true);
		return -EPROTO;
	}
	if (sent) {
		vfu_server_drop_client(s, true);
		return -ECONNRESET;
	}
	return 0;
}

int vfu_server_queue(struct dt_vfu_server *s, const struct vfu_msg *msg, int err)
{
	struct vfu_pending *p;

	if (s->npending >= VFU_SRV_MAX_PENDING)
		return log_fail(-ENOBUFS, "vfio-user server: more than %u commands queued",
				VFU_SRV_MAX_PENDING);
	p = malloc(sizeof(*p) + msg->len);
	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->err = err;
	p->msg = *msg;
	p->msg.payload = p->data;
	memcpy(p->data, msg->payload, msg->len);
	*s->pending_tail = p;
	s->pending_tail = &p->next;
	s->npending++;
	return 0;
}

int dt_vfu_server_process(struct dt_vfu_server *s)
{
	struct vfu_msg msg;
	int r;

	if (!s)
		return log_fail(-EINVAL, "dt_vfu_server_process: NULL");
	if (s->sock < 0)
		return log_fail(-ENOTCONN, "dt_vfu_server_process: no client");
	if (s->pending) {
		struct vfu_pending *p = s->pending;

		s->pending = p->next;
		if (!s->pending)
			s->pending_tail = &s->pending;
		s->npending--;
		/* The payload is copied back to rbuf: handlers may keep using it while a DMA
		 * request of theirs queues more. */
		msg = p->msg;
		msg.payload = s->rbuf + VFU_HDR_SIZE;
		memcpy(msg.payload, p->data, msg.len);
		r = p->err;
		free(p);
		if (r) {
			if (vfu_reply_error(s->sock, &msg.hdr, r)) {
				vfu_server_drop_client(s, true);
				return -ECONNRESET;
			}
			return 0;
		}
		return serve(s, &msg);
	}
	r = vfu_msg_recv(s->sock, s->rbuf, s->rbuf_size, s->max_fds, &msg);
	switch (r) {
	case 0:
		break;
	case -EBADMSG: /* too many descriptors: closed, the stream is in step */
		if (vfu_hdr_is_reply(&msg.hdr))
			return 0;
		if (vfu_reply_error(s->sock, &msg.hdr, EINVAL)) {
			vfu_server_drop_client(s, true);
			return -ECONNRESET;
		}
		return 0;
	case -EMSGSIZE:
		vfu_reply_error(s->sock, &msg.hdr, EMSGSIZE);
		vfu_server_drop_client(s, true);
		return -EPROTO;
	case -ECONNRESET:
		log_info("vfio-user server: client disconnected");
		vfu_server_drop_client(s, true);
		return -ECONNRESET;
	default:
		vfu_server_drop_client(s, true);
		return r == -EPROTO ? -EPROTO : -ECONNRESET;
	}
	if (vfu_hdr_is_reply(&msg.hdr)) {
		/* A reply to nothing we asked (dt_vfu_dma_rw takes its own): dropped. */
		log_warn("vfio-user server: unexpected reply %s id %u dropped",
			 vfu_cmd_name(msg.hdr.cmd), msg.hdr.msg_id);
		vfu_msg_close_fds(&msg);
		return 0;
	}
	return serve(s, &msg);
}

int dt_vfu_server_run(struct dt_vfu_server *s)
{
	int r;

	do
		r = dt_vfu_server_process(s);
	while (r == 0);
	return r == -ECONNRESET ? 0 : r;
}
