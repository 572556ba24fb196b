/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/server_dev.c - the server's device-facing commands: DEVICE_GET_INFO,
 * DEVICE_GET_REGION_INFO, REGION_READ / _WRITE / _WRITE_MULTI, DEVICE_RESET,
 * DEVICE_GET_IRQ_INFO, DEVICE_SET_IRQS, and dt_vfu_irq_trigger.
 *
 * Every access is checked (region exists, permission, 0 < count <= the transfer size, inside
 * the region) before the device's callback runs, and WRITE_MULTI checks all its writes before
 * the first, so a refused command never reaches the device. IRQ eventfds are kept per vector
 * under irq_lock, so the device may trigger them from any thread.
 */
#include "vfio_user/server_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/bitops.h"
#include "core/log.h"
#include "sys/sys.h"

void vfu_irqs_close(struct dt_vfu_server *s)
{
	pthread_mutex_lock(&s->irq_lock);
	for (uint32_t i = 0; i < s->opts.num_irqs; i++) {
		if (!s->irq_fds[i])
			continue;
		for (uint32_t j = 0; j < s->irqs[i].count; j++)
			if (s->irq_fds[i][j] >= 0)
				sys_close(s->irq_fds[i][j]);
		free(s->irq_fds[i]);
		s->irq_fds[i] = NULL;
	}
	pthread_mutex_unlock(&s->irq_lock);
}

/* ---- device, regions, IRQs ------------------------------------------------------------- */

int vfu_handle_device_info(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_device_info in, out;

	if (msg->len < sizeof(in))
		return log_fail(-EINVAL, "DEVICE_GET_INFO: %u bytes", msg->len);
	memcpy(&in, msg->payload, sizeof(in));
	if (in.argsz < sizeof(out))
		return log_fail(-EINVAL, "DEVICE_GET_INFO: argsz %u", in.argsz);
	out = (struct vfu_device_info){.argsz = sizeof(out),
				       .flags = s->opts.device_flags,
				       .num_regions = s->opts.num_regions,
				       .num_irqs = s->opts.num_irqs};
	return vfu_reply_with(s, &out, sizeof(out));
}

int vfu_handle_region_info(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_region_info in, out;
	const struct dt_vfu_region *r;

	if (msg->len < sizeof(in))
		return log_fail(-EINVAL, "DEVICE_GET_REGION_INFO: %u bytes", msg->len);
	memcpy(&in, msg->payload, sizeof(in));
	if (in.argsz < sizeof(out))
		return log_fail(-EINVAL, "DEVICE_GET_REGION_INFO: argsz %u", in.argsz);
	if (in.index >= s->opts.num_regions)
		return log_fail(-EINVAL, "DEVICE_GET_REGION_INFO: region %u of %u", in.index,
				s->opts.num_regions);
	r = &s->regions[in.index];
	out = (struct vfu_region_info){.argsz = sizeof(out),
				       .flags = r->flags,
				       .index = in.index,
				       .size = r->size,
				       .offset = (r->flags & DT_VFU_REGION_MMAP) ? r->offset : 0};
	/* A client that takes no descriptor cannot mmap: it gets the region without MMAP. */
	if ((r->flags & DT_VFU_REGION_MMAP) && s->peer.max_msg_fds >= 1) {
		s->out_fds[0] = r->fd;
		s->out_nfds = 1;
	} else {
		out.flags &= ~VFU_REGION_F_MMAP;
		out.offset = 0;
	}
	return vfu_reply_with(s, &out, sizeof(out));
}

/* The region of an access, with offset + count inside it and the permission. */
static int region_check(struct dt_vfu_server *s, const struct vfu_region_access *a, bool write,
			const char *what)
{
	const struct dt_vfu_region *r;

	if (a->region >= s->opts.num_regions)
		return log_fail(-EINVAL, "%s: region %u of %u", what, a->region,
				s->opts.num_regions);
	r = &s->regions[a->region];
	if (!(r->flags & (write ? DT_VFU_REGION_WRITE : DT_VFU_REGION_READ)))
		return log_fail(-EPERM, "%s: region %u is not %s", what, a->region,
				write ? "writable" : "readable");
	if (!a->count || a->count > s->max_xfer)
		return log_fail(-EINVAL, "%s: count %u (limit %llu)", what, a->count,
				(unsigned long long)s->max_xfer);
	if (a->offset > r->size || a->count > r->size - a->offset)
		return log_fail(-EINVAL, "%s: [0x%llx, +%u) outside region %u of 0x%llx", what,
				(unsigned long long)a->offset, a->count, a->region,
				(unsigned long long)r->size);
	if (!s->ops.region_rw)
		return log_fail(-EINVAL, "%s: the device has no region access", what);
	return 0;
}

static int region_call(struct dt_vfu_server *s, const struct vfu_region_access *a, void *buf,
		       bool write, const char *what)
{
	int64_t n = s->ops.region_rw(s->opts.opaque, a->region, a->offset, buf, a->count, write);

	if (n < 0)
		return log_fail((int)n, "%s: region %u at 0x%llx: device error %lld", what,
				a->region, (unsigned long long)a->offset, (long long)n);
	if (n != a->count)
		return log_fail(-EIO, "%s: region %u: device moved %lld of %u bytes", what,
				a->region, (long long)n, a->count);
	return 0;
}

int vfu_handle_region_read(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_region_access a;
	int r;

	if (msg->len != sizeof(a))
		return log_fail(-EINVAL, "REGION_READ: %u bytes", msg->len);
	memcpy(&a, msg->payload, sizeof(a));
	r = region_check(s, &a, false, "REGION_READ");
	if (r)
		return r;
	if (!vfu_out_reserve(s, sizeof(a) + a.count))
		return -ENOMEM;
	r = region_call(s, &a, s->out + sizeof(a), false, "REGION_READ");
	if (r)
		return r;
	memcpy(s->out, &a, sizeof(a));
	s->out_len = sizeof(a) + a.count;
	return 0;
}

int vfu_handle_region_write(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_region_access a;
	int r;

	if (msg->len < sizeof(a))
		return log_fail(-EINVAL, "REGION_WRITE: %u bytes", msg->len);
	memcpy(&a, msg->payload, sizeof(a));
	if (msg->len - sizeof(a) != a.count)
		return log_fail(-EINVAL, "REGION_WRITE: count %u with %zu data bytes", a.count,
				msg->len - sizeof(a));
	r = region_check(s, &a, true, "REGION_WRITE");
	if (!r)
		r = region_call(s, &a, msg->payload + sizeof(a), true, "REGION_WRITE");
	if (r)
		return r;
	return vfu_reply_with(s, &a, sizeof(a));
}

int vfu_handle_region_write_multi(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_region_write_multi m;
	struct vfu_region_write_one w;
	int r;

	if (msg->len < sizeof(m))
		return log_fail(-EINVAL, "REGION_WRITE_MULTI: %u bytes", msg->len);
	memcpy(&m, msg->payload, sizeof(m));
	if (m.wr_cnt != (msg->len - sizeof(m)) / sizeof(w) || (msg->len - sizeof(m)) % sizeof(w))
		return log_fail(-EINVAL, "REGION_WRITE_MULTI: %llu writes in %u bytes",
				(unsigned long long)m.wr_cnt, msg->len);
	/* All checked first: a bad one fails the message before any write. */
	for (uint64_t i = 0; i < m.wr_cnt; i++) {
		struct vfu_region_access a;

		memcpy(&w, msg->payload + sizeof(m) + i * sizeof(w), sizeof(w));
		if (w.count > VFU_WRITE_MULTI_DATA_MAX)
			return log_fail(-EINVAL, "REGION_WRITE_MULTI: write %llu of %u bytes",
					(unsigned long long)i, w.count);
		a = (struct vfu_region_access){
			.offset = w.offset, .region = w.region, .count = w.count};
		r = region_check(s, &a, true, "REGION_WRITE_MULTI");
		if (r)
			return r;
	}
	for (uint64_t i = 0; i < m.wr_cnt; i++) {
		struct vfu_region_access a;

		memcpy(&w, msg->payload + sizeof(m) + i * sizeof(w), sizeof(w));
		a = (struct vfu_region_access){
			.offset = w.offset, .region = w.region, .count = w.count};
		r = region_call(s, &a, w.data, true, "REGION_WRITE_MULTI");
		if (r)
			return r;
	}
	return vfu_reply_with(s, &m, sizeof(m));
}

int vfu_handle_reset(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	int r = 0;

	if (msg->len)
		return log_fail(-EINVAL, "DEVICE_RESET: %u payload bytes", msg->len);
	if (!(s->opts.device_flags & DT_VFU_DEVICE_RESET))
		return log_fail(-ENOTSUP, "DEVICE_RESET: the device has no reset");
	if (s->ops.reset)
		r = s->ops.reset(s->opts.opaque);
	if (r)
		return log_fail(r < 0 ? r : -EIO, "DEVICE_RESET: device error %d", r);
	/* Reset is the way out of ERROR and ends any migration session. */
	s->mig_state = VFU_MIG_STATE_RUNNING;
	s->out_len = 0;
	return 0;
}

int vfu_handle_irq_info(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_irq_info in, out;

	if (msg->len < sizeof(in))
		return log_fail(-EINVAL, "DEVICE_GET_IRQ_INFO: %u bytes", msg->len);
	memcpy(&in, msg->payload, sizeof(in));
	if (in.argsz < sizeof(out))
		return log_fail(-EINVAL, "DEVICE_GET_IRQ_INFO: argsz %u", in.argsz);
	if (in.index >= s->opts.num_irqs)
		return log_fail(-EINVAL, "DEVICE_GET_IRQ_INFO: index %u of %u", in.index,
				s->opts.num_irqs);
	out = (struct vfu_irq_info){.argsz = sizeof(out),
				    .flags = s->irqs[in.index].flags,
				    .index = in.index,
				    .count = s->irqs[in.index].count};
	return vfu_reply_with(s, &out, sizeof(out));
}

static int irq_signal(int fd)
{
	uint64_t one = 1;
	int64_t r = sys_write(fd, &one, sizeof(one));

	return r == sizeof(one) ? 0 : (r < 0 ? (int)r : -EIO);
}

int vfu_handle_set_irqs(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_irq_set in;
	uint32_t data, action, count;
	int *fds;

	if (msg->len < sizeof(in))
		return log_fail(-EINVAL, "DEVICE_SET_IRQS: %u bytes", msg->len);
	memcpy(&in, msg->payload, sizeof(in));
	data = in.flags & VFU_IRQ_SET_DATA_MASK;
	action = in.flags & VFU_IRQ_SET_ACTION_MASKALL;
	if (in.flags & ~(VFU_IRQ_SET_DATA_MASK | VFU_IRQ_SET_ACTION_MASKALL) || !is_pow2(data) ||
	    !is_pow2(action))
		return log_fail(-EINVAL, "DEVICE_SET_IRQS: flags 0x%x", in.flags);
	if (in.index >= s->opts.num_irqs)
		return log_fail(-EINVAL, "DEVICE_SET_IRQS: index %u of %u", in.index,
				s->opts.num_irqs);
	count = s->irqs[in.index].count;
	if (in.start > count || in.count > count - in.start)
		return log_fail(-EINVAL, "DEVICE_SET_IRQS: [%u, +%u) of %u vectors", in.start,
				in.count, count);
	if (data == VFU_IRQ_SET_DATA_BOOL && msg->len - sizeof(in) < in.count)
		return log_fail(-EINVAL, "DEVICE_SET_IRQS: %u bools in %zu bytes", in.count,
				msg->len - sizeof(in));
	if (data == VFU_IRQ_SET_DATA_EVENTFD) {
		if (action != VFU_IRQ_SET_ACTION_TRIGGER)
			return log_fail(-ENOTSUP, "DEVICE_SET_IRQS: eventfds for mask/unmask");
		if (msg->nfds && msg->nfds != in.count)
			return log_fail(-EINVAL, "DEVICE_SET_IRQS: %u eventfds for %u vectors",
					msg->nfds, in.count);
	} else if (msg->nfds) {
		return log_fail(-EINVAL, "DEVICE_SET_IRQS: descriptors without DATA_EVENTFD");
	}
	if (action != VFU_IRQ_SET_ACTION_TRIGGER) {
		/* Masking: accepted on maskable types and otherwise ignored (the device signals
		 * through eventfds; a masked vector is the client's business). */
		if (!(s->irqs[in.index].flags & VFU_IRQ_INFO_MASKABLE))
			return log_fail(-EINVAL, "DEVICE_SET_IRQS: index %u is not maskable",
					in.index);
		s->out_len = 0;
		return 0;
	}
	pthread_mutex_lock(&s->irq_lock);
	if (!s->irq_fds[in.index]) {
		fds = malloc(sizeof(int) * (count ? count : 1));
		if (!fds) {
			pthread_mutex_unlock(&s->irq_lock);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < count; i++)
			fds[i] = -1;
		s->irq_fds[in.index] = fds;
	}
	fds = s->irq_fds[in.index];
	if (data == VFU_IRQ_SET_DATA_EVENTFD) {
		/* Take the new eventfds (none: de-assign the range). */
		for (uint32_t i = 0; i < in.count; i++) {
			if (fds[in.start + i] >= 0)
				sys_close(fds[in.start + i]);
			fds[in.start + i] = msg->nfds ? msg->fds[i] : -1;
			if (msg->nfds)
				msg->fds[i] = -1;
		}
	} else if (data == VFU_IRQ_SET_DATA_NONE && !in.count) {
		/* count 0 with DATA_NONE: disable every vector of the index. */
		for (uint32_t i = 0; i < count; i++) {
			if (fds[i] >= 0)
				sys_close(fds[i]);
			fds[i] = -1;
		}
	} else {
		/* The client triggers vectors itself. */
		for (uint32_t i = 0; i < in.count; i++) {
			if (data == VFU_IRQ_SET_DATA_BOOL && !msg->payload[sizeof(in) + i])
				continue;
			if (fds[in.start + i] >= 0)
				irq_signal(fds[in.start + i]);
		}
	}
	pthread_mutex_unlock(&s->irq_lock);
	s->out_len = 0;
	return 0;
}

int dt_vfu_irq_trigger(struct dt_vfu_server *s, uint32_t index, uint32_t sub)
{
	int r;

	if (!s || index >= s->opts.num_irqs || sub >= s->irqs[index].count)
		return log_fail(-EINVAL, "dt_vfu_irq_trigger: irq %u.%u", index, sub);
	pthread_mutex_lock(&s->irq_lock);
	if (!s->irq_fds[index] || s->irq_fds[index][sub] < 0)
		r = -ENOENT;
	else
		r = irq_signal(s->irq_fds[index][sub]);
	pthread_mutex_unlock(&s->irq_lock);
	if (r == -ENOENT)
		return log_fail(r, "dt_vfu_irq_trigger: irq %u.%u has no eventfd", index, sub);
	return r;
}
