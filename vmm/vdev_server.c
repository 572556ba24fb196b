/* SPDX-License-Identifier: MIT */
/*
 * vmm/vdev_server.c - a micro-VM test device behind a vfio-user server (vdev_server.h).
 *
 * Invariants: regions[] holds exactly the fd mappings the client has now (host addresses in
 * this process); dev exists only between VDEV_CMD_CREATE and the removal of a mapping under
 * its area, and is given those regions. The migration buffer holds the saved state in
 * STOP_COPY (read from mig_off) or the state being received in RESUMING.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirtytrack/vfio_user.h>

#include "vdev_regs.h"
#include "vdev_server.h"

#define MAX_REGIONS   16
#define MIG_STATE_MAX (64u << 20) /* the engine's own ceiling for one device state */

struct vdev_server {
	struct dt_vfu_server *srv;
	enum vdev_type type;
	struct vdev_config cfg;
	struct vdev *dev;
	bool live; /* dev started, or loaded (so that RUNNING starts it) */
	struct dt_region regions[MAX_REGIONS];
	unsigned nregions;
	uint64_t area_gpa, area_size;
	int64_t status;
	uint64_t bad, bad_gpa[VDEV_REGS_NBAD];
	uint8_t *mig;
	size_t mig_len, mig_off;
};

static void drop_device(struct vdev_server *s)
{
	vdev_free(s->dev);
	s->dev = NULL;
	s->live = false;
}

static int cmd_create(struct vdev_server *s)
{
	if (s->dev)
		return -EEXIST;
	s->dev = vdev_new(s->type, dt_vfu_server_iommu(s->srv), s->regions, s->nregions,
			  s->area_gpa, s->area_size, &s->cfg);
	return s->dev ? 0 : -errno;
}

static int cmd_start(struct vdev_server *s)
{
	int ret;

	if (!s->dev)
		return -ENODEV;
	ret = vdev_start(s->dev);
	if (!ret)
		s->live = true;
	return ret;
}

static int cmd_verify(struct vdev_server *s)
{
	if (!s->dev)
		return -ENODEV;
	memset(s->bad_gpa, 0, sizeof(s->bad_gpa));
	s->bad = vdev_verify(s->dev, s->bad_gpa, VDEV_REGS_NBAD);
	return 0;
}

static int64_t reg_read(struct vdev_server *s, uint64_t off, uint64_t *v)
{
	switch (off) {
	case VDEV_REG_MAGIC:
		*v = VDEV_REGS_MAGIC;
		break;
	case VDEV_REG_TYPE:
		*v = s->type;
		break;
	case VDEV_REG_AREA_GPA:
		*v = s->area_gpa;
		break;
	case VDEV_REG_AREA_SIZE:
		*v = s->area_size;
		break;
	case VDEV_REG_STATUS:
		*v = (uint64_t)s->status;
		break;
	case VDEV_REG_WRITES:
		*v = s->dev ? vdev_writes(s->dev) : 0;
		break;
	case VDEV_REG_BAD:
		*v = s->bad;
		break;
	default:
		if (off < VDEV_REG_BAD_GPA || off >= VDEV_REG_END)
			return -EINVAL;
		*v = s->bad_gpa[(off - VDEV_REG_BAD_GPA) / 8];
	}
	return 8;
}

static int64_t reg_write(struct vdev_server *s, uint64_t off, uint64_t v)
{
	switch (off) {
	case VDEV_REG_AREA_GPA:
	case VDEV_REG_AREA_SIZE:
		if (s->dev)
			return -EBUSY; /* the device's area is fixed once it exists */
		*(off == VDEV_REG_AREA_GPA ? &s->area_gpa : &s->area_size) = v;
		return 8;
	case VDEV_REG_CMD:
		s->status = v == VDEV_CMD_CREATE   ? cmd_create(s)
			    : v == VDEV_CMD_START  ? cmd_start(s)
			    : v == VDEV_CMD_VERIFY ? cmd_verify(s)
						   : -EINVAL;
		return s->status ? s->status : 8;
	default:
		return -EINVAL; /* read-only or no register */
	}
}

static int64_t region_rw(void *opaque, uint32_t index, uint64_t offset, void *buf, uint32_t count,
			 bool write)
{
	struct vdev_server *s = opaque;
	uint64_t v;
	int64_t ret;

	if (index != 0 || count != 8 || offset % 8)
		return -EINVAL;
	if (write) {
		memcpy(&v, buf, 8);
		return reg_write(s, offset, v);
	}
	ret = reg_read(s, offset, &v);
	if (ret > 0)
		memcpy(buf, &v, 8);
	return ret;
}

static int mig_state(void *opaque, uint32_t from, uint32_t to)
{
	struct vdev_server *s = opaque;
	int64_t len;

	if (from == DT_VFU_MIG_RUNNING && to == DT_VFU_MIG_STOP)
		return s->dev ? vdev_pause(s->dev) : 0;
	if (from == DT_VFU_MIG_STOP && to == DT_VFU_MIG_RUNNING)
		return s->dev && s->live ? vdev_resume(s->dev) : 0;
	if (to == DT_VFU_MIG_STOP_COPY || to == DT_VFU_MIG_RESUMING) {
		free(s->mig);
		s->mig = NULL;
		s->mig_len = s->mig_off = 0;
		if (to == DT_VFU_MIG_RESUMING)
			return s->dev && !s->live ? 0 : -EBUSY; /* a fresh device only */
		if (!s->dev)
			return 0; /* nothing to save */
		s->mig = malloc(vdev_state_size(s->dev));
		if (!s->mig)
			return -ENOMEM;
		len = vdev_save(s->dev, s->mig, vdev_state_size(s->dev));
		if (len < 0)
			return (int)len;
		s->mig_len = (size_t)len;
		return 0;
	}
	if (from == DT_VFU_MIG_RESUMING && to == DT_VFU_MIG_STOP) {
		int ret = s->mig_len ? vdev_load(s->dev, s->mig, s->mig_len) : 0;

		if (!ret && s->mig_len)
			s->live = true;
		free(s->mig);
		s->mig = NULL;
		s->mig_len = 0;
		return ret;
	}
	if (from == DT_VFU_MIG_STOP_COPY && to == DT_VFU_MIG_STOP) {
		free(s->mig);
		s->mig = NULL;
		s->mig_len = s->mig_off = 0;
		return 0;
	}
	return -EINVAL;
}

static int64_t mig_read(void *opaque, void *buf, uint64_t size)
{
	struct vdev_server *s = opaque;
	size_t n = s->mig_len - s->mig_off;

	if (n > size)
		n = (size_t)size;
	if (!n)
		return 0; /* nothing saved (no device), or all of it read */
	memcpy(buf, s->mig + s->mig_off, n);
	s->mig_off += n;
	return (int64_t)n;
}

static int64_t mig_write(void *opaque, const void *buf, uint64_t size)
{
	struct vdev_server *s = opaque;
	uint8_t *more;

	if (!size)
		return 0;
	if (size > MIG_STATE_MAX - s->mig_len)
		return -EFBIG;
	more = realloc(s->mig, s->mig_len + size);
	if (!more)
		return -ENOMEM;
	s->mig = more;
	memcpy(s->mig + s->mig_len, buf, size);
	s->mig_len += size;
	return (int64_t)size;
}

static int mig_pending(void *opaque, uint64_t *bytes)
{
	struct vdev_server *s = opaque;

	if (dt_vfu_server_mig_state(s->srv) == DT_VFU_MIG_STOP_COPY)
		*bytes = s->mig_len - s->mig_off;
	else
		*bytes = s->dev ? vdev_state_size(s->dev) : 0;
	return 0;
}

static int dma_map(void *opaque, uint64_t iova, uint64_t size, void *host, uint32_t prot)
{
	struct vdev_server *s = opaque;

	if (!host)
		return 0; /* message mappings: the device writes through host addresses only */
	if (s->nregions == MAX_REGIONS)
		return -ENOSPC;
	s->regions[s->nregions++] = (struct dt_region){.addr = iova, .size = size, .host = host};
	return 0;
}

static void dma_unmap(void *opaque, uint64_t iova, uint64_t size)
{
	struct vdev_server *s = opaque;

	for (unsigned i = 0; i < s->nregions; i++) {
		if (s->regions[i].addr != iova || s->regions[i].size != size)
			continue;
		/* The device never writes memory that is not mapped. */
		if (s->dev && iova < s->area_gpa + s->area_size && s->area_gpa < iova + size)
			drop_device(s);
		s->regions[i] = s->regions[--s->nregions];
		return;
	}
}

static const struct dt_vfu_server_ops server_ops = {
	.region_rw = region_rw,
	.mig_state = mig_state,
	.mig_read = mig_read,
	.mig_write = mig_write,
	.mig_pending = mig_pending,
	.dma_map = dma_map,
	.dma_unmap = dma_unmap,
};

struct vdev_server *vdev_server_new(const char *path, int fd, enum vdev_type type,
				    const struct vdev_config *cfg)
{
	static const struct dt_vfu_region regs = {.size = VDEV_REGS_SIZE,
						  .flags = DT_VFU_REGION_READ | DT_VFU_REGION_WRITE,
						  .fd = -1};
	struct dt_vfu_server_opts o = {.size = sizeof(o),
				       .path = path,
				       .fd = fd,
				       .num_regions = 1,
				       .regions = &regs,
				       .migration_flags = DT_VFU_MIGRATION_STOP_COPY,
				       .ops = &server_ops,
				       /* The library's own device stays idle: ours attaches
					* to the same container with its own kind. */
				       .dma_kind = DT_DEVICE_LOGGING};
	struct vdev_server *s;

	if ((unsigned)type >= VDEV_NTYPES || !cfg) {
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->type = type;
	s->cfg = *cfg;
	o.opaque = s;
	s->srv = dt_vfu_server_new(&o);
	if (!s->srv) {
		int err = errno;

		fprintf(stderr, "vdev server: %s: %s\n", path ? path : "(fd)", strerror(err));
		free(s);
		errno = err;
		return NULL;
	}
	return s;
}

void vdev_server_free(struct vdev_server *s)
{
	if (!s)
		return;
	drop_device(s); /* before the mappings go */
	dt_vfu_server_free(s->srv);
	free(s->mig);
	free(s);
}

int vdev_server_serve_one(struct vdev_server *s)
{
	int ret = 0;

	if (!dt_vfu_server_connected(s->srv))
		ret = dt_vfu_server_accept(s->srv);
	if (!ret)
		ret = dt_vfu_server_run(s->srv);
	return ret;
}
