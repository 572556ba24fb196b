/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/server_mig.c - DEVICE_FEATURE (MIGRATION, MIG_DEVICE_STATE, MIG_DATA_SIZE,
 * DMA_LOGGING_START / _STOP / _REPORT) and MIG_DATA_READ / MIG_DATA_WRITE.
 *
 * The migration state machine is VFIO's v2 one without the P2P states: the direct arcs of
 * the spec are the only calls the device sees; a longer transition is the shortest path of
 * arcs whose interior states are not saving states (PRE_COPY, STOP_COPY), STOP_COPY ->
 * PRE_COPY is refused, and so is any target the device did not declare. If an arc fails,
 * the state is where the last good arc left it and the SET gets the device's errno.
 *
 * DMA logging is the container's dirty tracking: START turns it on (the device's pinned
 * pages count from then on, as SEMANTICS.md says), REPORT is a read-and-clear report of the
 * container at the requested page size, for any range inside the logged ranges.
 */
#include "vfio_user/server_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/bitops.h"
#include "core/log.h"

#define PG 4096ull

/* ---- the state machine ------------------------------------------------------------------ */

static bool state_supported(const struct dt_vfu_server *s, uint32_t st)
{
	switch (st) {
	case VFU_MIG_STATE_STOP:
	case VFU_MIG_STATE_RUNNING:
	case VFU_MIG_STATE_STOP_COPY:
	case VFU_MIG_STATE_RESUMING:
		return true;
	case VFU_MIG_STATE_PRE_COPY:
		return s->opts.migration_flags & VFU_MIGRATION_PRE_COPY;
	default:
		return false;
	}
}

static bool is_saving(uint32_t st)
{
	return st == VFU_MIG_STATE_PRE_COPY || st == VFU_MIG_STATE_STOP_COPY;
}

/* The direct arcs of the spec. */
static bool is_arc(const struct dt_vfu_server *s, uint32_t from, uint32_t to)
{
	if (!state_supported(s, from) || !state_supported(s, to))
		return false;
	switch (from) {
	case VFU_MIG_STATE_RUNNING:
		return to == VFU_MIG_STATE_STOP || to == VFU_MIG_STATE_PRE_COPY;
	case VFU_MIG_STATE_STOP:
		return to == VFU_MIG_STATE_RUNNING || to == VFU_MIG_STATE_STOP_COPY ||
		       to == VFU_MIG_STATE_RESUMING;
	case VFU_MIG_STATE_STOP_COPY:
	case VFU_MIG_STATE_RESUMING:
		return to == VFU_MIG_STATE_STOP;
	case VFU_MIG_STATE_PRE_COPY:
		return to == VFU_MIG_STATE_RUNNING || to == VFU_MIG_STATE_STOP_COPY;
	default:
		return false;
	}
}

/* The first arc of the shortest allowed path from -> to (breadth-first over 8 states), or
 * VFU_MIG_STATE_ERROR if there is none. */
static uint32_t next_state(const struct dt_vfu_server *s, uint32_t from, uint32_t to)
{
	uint32_t first[VFU_MIG_STATE_NUM], queue[VFU_MIG_STATE_NUM];
	bool seen[VFU_MIG_STATE_NUM] = {false};
	unsigned head = 0, tail = 0;

	if (from == VFU_MIG_STATE_STOP_COPY && to == VFU_MIG_STATE_PRE_COPY)
		return VFU_MIG_STATE_ERROR;
	seen[from] = true;
	queue[tail++] = from;
	while (head < tail) {
		uint32_t cur = queue[head++];

		/* A saving state may start or end a path, never sit inside it. */
		if (cur != from && is_saving(cur))
			continue;
		for (uint32_t nx = 0; nx < VFU_MIG_STATE_NUM; nx++) {
			if (seen[nx] || !is_arc(s, cur, nx))
				continue;
			seen[nx] = true;
			first[nx] = cur == from ? nx : first[cur];
			if (nx == to)
				return first[nx];
			queue[tail++] = nx;
		}
	}
	return VFU_MIG_STATE_ERROR;
}

int vfu_mig_walk(struct dt_vfu_server *s, uint32_t to)
{
	while (s->mig_state != to) {
		uint32_t nx = next_state(s, s->mig_state, to);
		int r = 0;

		if (nx == VFU_MIG_STATE_ERROR)
			return log_fail(-EINVAL, "migration: no way from state %u to %u",
					s->mig_state, to);
		if (s->ops.mig_state)
			r = s->ops.mig_state(s->opts.opaque, s->mig_state, nx);
		if (r)
			return log_fail(r < 0 ? r : -EIO, "migration: device refused %u -> %u: %d",
					s->mig_state, nx, r);
		s->mig_state = nx;
	}
	return 0;
}

/* ---- DMA logging -------------------------------------------------------------------------- */

void vfu_logging_stop(struct dt_vfu_server *s)
{
	if (!s->logging)
		return;
	dt_iommu_dirty_stop(s->iommu);
	s->logging = false;
	s->log_all = false;
	s->nlog = 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct vfu_dma_logging_range *x = a, *y = b;

	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

static int logging_start(struct dt_vfu_server *s, const uint8_t *data, uint32_t len)
{
	struct vfu_dma_logging_control ctl;
	struct vfu_dma_logging_range *ranges = s->log_ranges;
	int r;

	if (len < sizeof(ctl))
		return log_fail(-EINVAL, "DMA_LOGGING_START: %u bytes", len);
	memcpy(&ctl, data, sizeof(ctl));
	if (ctl.num_ranges > VFU_SRV_MAX_LOG)
		return log_fail(-E2BIG, "DMA_LOGGING_START: %u ranges (at most %u)", ctl.num_ranges,
				VFU_SRV_MAX_LOG);
	if (len - sizeof(ctl) < (uint64_t)ctl.num_ranges * sizeof(ranges[0]))
		return log_fail(-EINVAL, "DMA_LOGGING_START: %u ranges in %u bytes", ctl.num_ranges,
				len);
	if (!is_pow2(ctl.page_size))
		return log_fail(-EINVAL, "DMA_LOGGING_START: page size %llu",
				(unsigned long long)ctl.page_size);
	if (s->logging)
		return log_fail(-EBUSY, "DMA_LOGGING_START: logging is on");
	/* Validated into a scratch copy: a refused START leaves nothing behind. */
	struct vfu_dma_logging_range tmp[VFU_SRV_MAX_LOG];

	memcpy(tmp, data + sizeof(ctl), ctl.num_ranges * sizeof(tmp[0]));
	qsort(tmp, ctl.num_ranges, sizeof(tmp[0]), cmp_range);
	for (uint32_t i = 0; i < ctl.num_ranges; i++) {
		if (!tmp[i].length || (tmp[i].iova | tmp[i].length) & (PG - 1) ||
		    tmp[i].iova + tmp[i].length < tmp[i].iova)
			return log_fail(-EINVAL, "DMA_LOGGING_START: range [0x%llx, +0x%llx)",
					(unsigned long long)tmp[i].iova,
					(unsigned long long)tmp[i].length);
		if (i && tmp[i - 1].iova + tmp[i - 1].length > tmp[i].iova)
			return log_fail(-EINVAL, "DMA_LOGGING_START: ranges overlap at 0x%llx",
					(unsigned long long)tmp[i].iova);
	}
	r = dt_iommu_dirty_start(s->iommu);
	if (r)
		return r;
	memcpy(ranges, tmp, ctl.num_ranges * sizeof(tmp[0]));
	s->nlog = ctl.num_ranges;
	s->log_all = !ctl.num_ranges;
	s->logging = true;
	/* We track 4 KiB pages and report at any size: a finer hint gets our page. */
	if (ctl.page_size < s->log_pgsize)
		ctl.page_size = s->log_pgsize;
	memcpy(s->out + sizeof(struct vfu_device_feature), &ctl, sizeof(ctl));
	return 0;
}

/* [iova, iova + length) lies inside the logged ranges (adjacent ones join). */
static bool inside_logged(const struct dt_vfu_server *s, uint64_t iova, uint64_t length)
{
	uint64_t cur = iova, end = iova + length;

	if (s->log_all)
		return true;
	for (uint32_t i = 0; i < s->nlog && cur < end; i++) {
		const struct vfu_dma_logging_range *r = &s->log_ranges[i];

		if (r->iova + r->length <= cur)
			continue;
		if (r->iova > cur)
			return false;
		cur = r->iova + r->length;
	}
	return cur >= end;
}

static uint64_t bitmap_limit(const struct dt_vfu_server *s)
{
	uint64_t lim = s->max_bitmap;

	if (s->peer.migration && s->peer.mig_max_bitmap_size < lim)
		lim = s->peer.mig_max_bitmap_size;
	return lim;
}

static int logging_report(struct dt_vfu_server *s, uint32_t argsz, const uint8_t *data,
			  uint32_t len)
{
	struct vfu_dma_logging_report rep;
	const size_t head = sizeof(struct vfu_device_feature) + sizeof(rep);
	uint64_t nbits, bytes;
	int r;

	if (len < sizeof(rep))
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: %u bytes", len);
	memcpy(&rep, data, sizeof(rep));
	if (!s->logging)
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: logging is off");
	if (!is_pow2(rep.page_size))
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: page size %llu",
				(unsigned long long)rep.page_size);
	if (!rep.length || rep.iova + rep.length < rep.iova || rep.iova + rep.length == 0 ||
	    (rep.iova | rep.length) & (rep.page_size - 1))
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: [0x%llx, +0x%llx) at %llu",
				(unsigned long long)rep.iova, (unsigned long long)rep.length,
				(unsigned long long)rep.page_size);
	if (!inside_logged(s, rep.iova, rep.length))
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: [0x%llx, +0x%llx) not logged",
				(unsigned long long)rep.iova, (unsigned long long)rep.length);
	nbits = rep.length / rep.page_size;
	bytes = words_for_bits(nbits) * 8;
	if (bytes > bitmap_limit(s))
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: bitmap of %llu bytes (limit %llu)",
				(unsigned long long)bytes, (unsigned long long)bitmap_limit(s));
	if (argsz < head + bytes)
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: argsz %u, reply needs %llu", argsz,
				(unsigned long long)(head + bytes));
	if (!vfu_out_reserve(s, head + bytes))
		return -ENOMEM;
	memset(s->out + head, 0, bytes);
	r = vfu_dirty_bitmap(s, rep.iova, rep.length, rep.page_size, s->out + head);
	if (r < 0)
		return log_fail(r, "DMA_LOGGING_REPORT: %s", strerror(-r));
	memcpy(s->out + sizeof(struct vfu_device_feature), &rep, sizeof(rep));
	s->out_len = head + bytes;
	return 0;
}

/* ---- DEVICE_FEATURE ------------------------------------------------------------------------- */

/* Which of GET / SET a feature has here; 0: not supported (-ENOTTY). */
static uint32_t feature_methods(const struct dt_vfu_server *s, uint32_t feature)
{
	bool mig = s->opts.migration_flags != 0;

	switch (feature) {
	case VFU_FEATURE_MIGRATION:
		return mig ? VFU_FEATURE_GET : 0;
	case VFU_FEATURE_MIG_DEVICE_STATE:
		return mig ? VFU_FEATURE_GET | VFU_FEATURE_SET : 0;
	case VFU_FEATURE_MIG_DATA_SIZE:
		return mig && s->ops.mig_pending ? VFU_FEATURE_GET : 0;
	case VFU_FEATURE_DMA_LOGGING_START:
	case VFU_FEATURE_DMA_LOGGING_STOP:
		return VFU_FEATURE_SET;
	case VFU_FEATURE_DMA_LOGGING_REPORT:
		return VFU_FEATURE_GET;
	default:
		return 0;
	}
}

/* Put len bytes of GET data after the feature header of the reply. */
static int feature_get_reply(struct dt_vfu_server *s, struct vfu_device_feature *f,
			     const void *data, size_t len)
{
	size_t need = sizeof(*f) + len;

	if (f->argsz < need)
		return log_fail(-EINVAL, "DEVICE_FEATURE %u: argsz %u, reply needs %zu",
				f->flags & VFU_FEATURE_MASK, f->argsz, need);
	if (!vfu_out_reserve(s, need))
		return -ENOMEM;
	f->argsz = (uint32_t)need;
	memcpy(s->out, f, sizeof(*f));
	memcpy(s->out + sizeof(*f), data, len);
	s->out_len = need;
	return 0;
}

static int mig_state_set(struct dt_vfu_server *s, const uint8_t *data, uint32_t len)
{
	struct vfu_feature_mig_state st;
	int r;

	if (len < sizeof(st))
		return log_fail(-EINVAL, "MIG_DEVICE_STATE: %u bytes", len);
	memcpy(&st, data, sizeof(st));
	if (st.device_state >= VFU_MIG_STATE_NUM || !state_supported(s, st.device_state))
		return log_fail(-EINVAL, "MIG_DEVICE_STATE: state %u not supported",
				st.device_state);
	if (s->mig_state == VFU_MIG_STATE_ERROR)
		return log_fail(-EINVAL, "MIG_DEVICE_STATE: device in ERROR, reset it");
	if (s->mig_state == VFU_MIG_STATE_STOP_COPY && st.device_state == VFU_MIG_STATE_PRE_COPY)
		return log_fail(-EINVAL, "MIG_DEVICE_STATE: STOP_COPY -> PRE_COPY");
	r = vfu_mig_walk(s, st.device_state);
	if (r)
		return r;
	return 0;
}

int vfu_handle_feature(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_device_feature f;
	uint32_t feature, methods, asked;
	const uint8_t *data;
	uint32_t dlen;
	int r;

	if (msg->len < sizeof(f))
		return log_fail(-EINVAL, "DEVICE_FEATURE: %u bytes", msg->len);
	memcpy(&f, msg->payload, sizeof(f));
	data = msg->payload + sizeof(f);
	dlen = msg->len - (uint32_t)sizeof(f);
	feature = f.flags & VFU_FEATURE_MASK;
	asked = f.flags & (VFU_FEATURE_GET | VFU_FEATURE_SET);
	if (f.flags & ~(VFU_FEATURE_MASK | VFU_FEATURE_GET | VFU_FEATURE_SET | VFU_FEATURE_PROBE))
		return log_fail(-EINVAL, "DEVICE_FEATURE: flags 0x%x", f.flags);
	methods = feature_methods(s, feature);
	if (!methods)
		return log_fail(-ENOTTY, "DEVICE_FEATURE: feature %u not supported", feature);
	if (f.flags & VFU_FEATURE_PROBE) {
		if (asked & ~methods)
			return log_fail(-EINVAL, "DEVICE_FEATURE: probe of feature %u flags 0x%x",
					feature, f.flags);
		/* The reply of a probe is the request. */
		if (!vfu_out_reserve(s, msg->len))
			return -ENOMEM;
		memcpy(s->out, msg->payload, msg->len);
		s->out_len = msg->len;
		return 0;
	}
	if (!asked || asked == (VFU_FEATURE_GET | VFU_FEATURE_SET) || !(asked & methods))
		return log_fail(-EINVAL, "DEVICE_FEATURE: feature %u flags 0x%x", feature, f.flags);
	switch (feature) {
	case VFU_FEATURE_MIGRATION: {
		struct vfu_feature_migration m = {.flags = s->opts.migration_flags};

		return feature_get_reply(s, &f, &m, sizeof(m));
	}
	case VFU_FEATURE_MIG_DEVICE_STATE:
		if (asked == VFU_FEATURE_SET) {
			r = mig_state_set(s, data, dlen);
			if (r)
				return r;
		}
		{
			struct vfu_feature_mig_state st = {.device_state = s->mig_state};

			if (asked == VFU_FEATURE_SET) {
				/* The reply of a SET is the request. */
				if (!vfu_out_reserve(s, msg->len))
					return -ENOMEM;
				memcpy(s->out, msg->payload, msg->len);
				s->out_len = msg->len;
				return 0;
			}
			return feature_get_reply(s, &f, &st, sizeof(st));
		}
	case VFU_FEATURE_MIG_DATA_SIZE: {
		struct vfu_feature_mig_data_size sz = {0};

		r = s->ops.mig_pending(s->opts.opaque, &sz.stop_copy_length);
		if (r)
			return log_fail(r < 0 ? r : -EIO, "MIG_DATA_SIZE: device error %d", r);
		return feature_get_reply(s, &f, &sz, sizeof(sz));
	}
	case VFU_FEATURE_DMA_LOGGING_START:
		/* The reply is the request with the page size we chose. */
		if (!vfu_out_reserve(s, msg->len))
			return -ENOMEM;
		memcpy(s->out, msg->payload, msg->len);
		r = logging_start(s, data, dlen);
		if (r)
			return r;
		s->out_len = msg->len;
		return 0;
	case VFU_FEATURE_DMA_LOGGING_STOP:
		vfu_logging_stop(s);
		if (!vfu_out_reserve(s, msg->len))
			return -ENOMEM;
		memcpy(s->out, msg->payload, msg->len);
		s->out_len = msg->len;
		return 0;
	default: /* VFU_FEATURE_DMA_LOGGING_REPORT */
		r = logging_report(s, f.argsz, data, dlen);
		if (r)
			return r;
		f.argsz = (uint32_t)s->out_len;
		memcpy(s->out, &f, sizeof(f));
		return 0;
	}
}

/* ---- MIG_DATA_READ / MIG_DATA_WRITE ---------------------------------------------------------- */

int vfu_handle_mig_data_read(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_mig_data in;
	int64_t n;

	if (msg->len != sizeof(in))
		return log_fail(-EINVAL, "MIG_DATA_READ: %u bytes", msg->len);
	memcpy(&in, msg->payload, sizeof(in));
	if (!s->opts.migration_flags || !s->ops.mig_read)
		return log_fail(-ENOTSUP, "MIG_DATA_READ: the device does not migrate");
	if (!is_saving(s->mig_state))
		return log_fail(-EINVAL, "MIG_DATA_READ: in state %u", s->mig_state);
	if (!in.size || in.size > s->max_xfer || in.argsz < sizeof(in) + (uint64_t)in.size)
		return log_fail(-EINVAL, "MIG_DATA_READ: size %u argsz %u (limit %llu)", in.size,
				in.argsz, (unsigned long long)s->max_xfer);
	if (!vfu_out_reserve(s, sizeof(in) + in.size))
		return -ENOMEM;
	n = s->ops.mig_read(s->opts.opaque, s->out + sizeof(in), in.size);
	if (n < 0)
		return log_fail((int)n, "MIG_DATA_READ: device error %lld", (long long)n);
	if (n > in.size)
		return log_fail(-EIO, "MIG_DATA_READ: device gave %lld of %u bytes", (long long)n,
				in.size);
	in.size = (uint32_t)n;
	in.argsz = (uint32_t)(sizeof(in) + (uint64_t)n);
	memcpy(s->out, &in, sizeof(in));
	s->out_len = in.argsz;
	return 0;
}

int vfu_handle_mig_data_write(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_mig_data in;
	int64_t n;

	if (msg->len < sizeof(in))
		return log_fail(-EINVAL, "MIG_DATA_WRITE: %u bytes", msg->len);
	memcpy(&in, msg->payload, sizeof(in));
	if (in.size != msg->len - sizeof(in) || !in.size || in.size > s->max_xfer)
		return log_fail(-EINVAL, "MIG_DATA_WRITE: size %u with %zu data bytes", in.size,
				msg->len - sizeof(in));
	if (!s->opts.migration_flags || !s->ops.mig_write)
		return log_fail(-ENOTSUP, "MIG_DATA_WRITE: the device does not migrate");
	if (s->mig_state != VFU_MIG_STATE_RESUMING)
		return log_fail(-EINVAL, "MIG_DATA_WRITE: in state %u", s->mig_state);
	n = s->ops.mig_write(s->opts.opaque, msg->payload + sizeof(in), in.size);
	if (n < 0)
		return log_fail((int)n, "MIG_DATA_WRITE: device error %lld", (long long)n);
	if (n != in.size)
		return log_fail(-EIO, "MIG_DATA_WRITE: device took %lld of %u bytes", (long long)n,
				in.size);
	s->out_len = 0;
	return 0;
}
