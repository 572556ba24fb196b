/* SPDX-License-Identifier: MIT */
/*
 * vmm/remote.c - a test device in another process, driven over vfio-user (remote.h).
 *
 * Invariants: both banks are DMA-mapped at iova == gpa from their memfds, so the server's
 * iovas, the mirror's and the dirty set's addresses are all guest-physical. The device's
 * writes reach the dirty set only through DMA_LOGGING_REPORT (the client's pre-harvest hook
 * replays them into its mirror, class DEVICE): nothing is shared but the memory.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "remote.h"
#include "vdev_regs.h"

static int reg_read(struct remote *r, uint32_t reg, uint64_t *v)
{
	return dt_vfu_client_region_read(r->c, 0, reg, v, sizeof(*v));
}

static int reg_write(struct remote *r, uint32_t reg, uint64_t v)
{
	return dt_vfu_client_region_write(r->c, 0, reg, &v, sizeof(v));
}

/* A command; its failure is the device's status register. */
static int command(struct remote *r, uint64_t cmd, const char *what)
{
	int ret = reg_write(r, VDEV_REG_CMD, cmd);

	if (ret)
		fprintf(stderr, "vmm: vfio-user device %s: %s: %s\n", r->name, what,
			strerror(-ret));
	return ret;
}

int remote_open(struct remote *r, const char *path, struct vm *vm)
{
	struct dt_vfu_client_opts co = {.size = sizeof(co)};
	uint64_t magic = 0, type = VDEV_NTYPES;
	int ret;

	memset(r, 0, sizeof(*r));
	r->c = dt_vfu_client_connect(path, &co);
	if (!r->c) {
		ret = -errno;
		fprintf(stderr, "vmm: vfio-user device at %s: %s\n", path, strerror(-ret));
		return ret;
	}
	ret = reg_read(r, VDEV_REG_MAGIC, &magic);
	if (!ret)
		ret = reg_read(r, VDEV_REG_TYPE, &type);
	if (!ret && (magic != VDEV_REGS_MAGIC || type >= VDEV_NTYPES))
		ret = -ENODEV;
	if (ret) {
		fprintf(stderr, "vmm: %s is not a micro-VM test device: %s\n", path,
			strerror(-ret));
		goto fail;
	}
	r->type = (enum vdev_type)type;
	snprintf(r->name, sizeof(r->name), "vfio-user-%s", vdev_type_name(r->type));
	for (unsigned i = 0; i < VM_NBANKS; i++) {
		ret = dt_vfu_client_dma_map(r->c, vm->banks[i].addr, vm->banks[i].size,
					    vm->bank_fd[i], 0, vm->banks[i].host,
					    PROT_READ | PROT_WRITE);
		if (ret) {
			fprintf(stderr, "vmm: vfio-user device %s: mapping bank %u: %s\n", r->name,
				i, strerror(-ret));
			goto fail;
		}
	}
	ret = reg_write(r, VDEV_REG_AREA_GPA, vm_dev_area_gpa(vm, r->type));
	if (!ret)
		ret = reg_write(r, VDEV_REG_AREA_SIZE, GUEST_DEV_AREA_SIZE);
	if (!ret)
		ret = command(r, VDEV_CMD_CREATE, "create");
	if (!ret)
		return 0;
fail:
	remote_close(r);
	return ret;
}

void remote_close(struct remote *r)
{
	if (r->c && r->logging)
		dt_vfu_client_dma_logging_stop(r->c);
	dt_vfu_client_free(r->c);
	memset(r, 0, sizeof(*r));
}

int remote_start(struct remote *r)
{
	enum dt_vfu_mig_state st = DT_VFU_MIG_ERROR;
	int ret = dt_vfu_client_mig_get_state(r->c, &st);

	/* A destination's device was loaded and left in STOP: RUNNING starts it. */
	if (!ret && st != DT_VFU_MIG_RUNNING)
		ret = dt_vfu_client_mig_set_state(r->c, DT_VFU_MIG_RUNNING);
	else if (!ret)
		ret = command(r, VDEV_CMD_START, "start");
	if (!ret)
		r->started = true;
	return ret;
}

int remote_pause(struct remote *r, bool for_save)
{
	return dt_vfu_client_mig_set_state(r->c, for_save ? DT_VFU_MIG_STOP_COPY : DT_VFU_MIG_STOP);
}

int remote_resume(struct remote *r)
{
	return dt_vfu_client_mig_set_state(r->c, DT_VFU_MIG_RUNNING);
}

int remote_track(struct remote *r, struct dt_dirty_set *set)
{
	uint64_t page_size = 4096;
	int ret = dt_vfu_client_add_to_set(r->c, set, 0);

	if (!ret && !r->logging) {
		ret = dt_vfu_client_dma_logging_start(r->c, NULL, 0, &page_size);
		r->logging = !ret;
	}
	if (ret)
		fprintf(stderr, "vmm: vfio-user device %s: dirty tracking: %s\n", r->name,
			strerror(-ret));
	return ret;
}

int remote_migrate_device(struct remote *r, struct dt_migrate_device *out)
{
	return dt_vfu_client_migrate_device(r->c, r->name, out);
}

int remote_writes(struct remote *r, uint64_t *writes)
{
	return reg_read(r, VDEV_REG_WRITES, writes);
}

int remote_verify(struct remote *r, uint64_t *bad, uint64_t *bad_gpa, unsigned maxbad)
{
	int ret = command(r, VDEV_CMD_VERIFY, "verify");

	if (!ret)
		ret = reg_read(r, VDEV_REG_BAD, bad);
	for (unsigned i = 0; !ret && i < maxbad && i < VDEV_REGS_NBAD; i++)
		ret = reg_read(r, VDEV_REG_BAD_GPA + 8 * i, &bad_gpa[i]);
	return ret;
}
