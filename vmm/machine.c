/* SPDX-License-Identifier: MIT */
/*
 * vmm/machine.c - the micro-VM, its devices, their tracking and their migration (machine.h).
 *
 * Invariants: guest memory is mapped in the container at iova == gpa, so the dirty set's
 * address space (base 0, the memory size) is at once guest-physical for the KVM source and
 * iova for the container. The host's own writes into guest memory (the mailbox command) go
 * through mailbox_dev with dt_dma_rw, so they are tracked (class VMM) like a device's.
 * Between machine_pause and machine_resume nothing writes guest memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include "machine.h"

void machine_opts_defaults(struct machine_opts *o)
{
	memset(o, 0, sizeof(*o));
	vm_config_defaults(&o->vm);
	vdev_config_defaults(&o->dev);
	o->devices = (1u << VDEV_NTYPES) - 1;
	o->device_tracking = true;
}

static int mailbox_write(void *opaque, uint64_t gpa, const void *data, size_t len)
{
	struct machine *m = opaque;

	return dt_dma_rw(m->mailbox_dev, gpa, (void *)data, len, true);
}

static int64_t cpu_save(void *opaque, void *buf, size_t cap)
{
	return vm_save_cpu(&((struct machine *)opaque)->vm, buf, cap);
}

static uint64_t cpu_pending(void *opaque)
{
	(void)opaque;
	return vm_cpu_state_size();
}

static int cpu_load(void *opaque, const void *buf, size_t len)
{
	return vm_load_cpu(&((struct machine *)opaque)->vm, buf, len);
}

static int map_memory(struct machine *m)
{
	for (unsigned i = 0; i < VM_NBANKS; i++) {
		struct vfio_iommu_type1_dma_map map = {
			.argsz = sizeof(map),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uintptr_t)m->vm.banks[i].host,
			.iova = m->vm.banks[i].addr,
			.size = m->vm.banks[i].size,
		};
		int ret = dt_vfio_ioctl(m->iommu, VFIO_IOMMU_MAP_DMA, &map);

		if (ret) {
			fprintf(stderr, "vmm: mapping bank %u in the container: %s\n", i,
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int add_devices(struct machine *m)
{
	for (unsigned t = 0; t < VDEV_NTYPES; t++) {
		struct vdev_config c = m->o.dev;

		if (!(m->o.devices & 1u << t) || (m->has_remote && m->remote.type == t))
			continue;
		c.seed = m->o.dev.seed * 31 + t + 1;
		m->dev[t] = vdev_new((enum vdev_type)t, m->iommu, m->vm.banks, VM_NBANKS,
				     vm_dev_area_gpa(&m->vm, t), GUEST_DEV_AREA_SIZE, &c);
		if (!m->dev[t])
			return -errno;
		vdev_migrate_device(m->dev[t], &m->mdev[m->nmdev++]);
	}
	return 0;
}

static int setup_tracking(struct machine *m)
{
	struct dt_source_opts so = {.size = sizeof(so),
				    .type = DT_SOURCE_KVM_LOG,
				    .regions = m->vm.banks,
				    .nregions = VM_NBANKS,
				    .vm_fd = m->vm.vm_fd};
	struct dt_dirty_set_opts dso = {.size = sizeof(dso), .base = 0, .length = m->o.vm.mem_size};
	int ret;

	/* The dirty log, not the ring: this machine's KVM overfills rings (docs/tracking.md). */
	m->cpu = dt_source_new(&so);
	if (!m->cpu)
		return -errno;
	m->set = dt_dirty_set_new(&dso);
	if (!m->set)
		return -errno;
	ret = dt_dirty_set_add_source(m->set, m->cpu);
	if (!ret && m->o.device_tracking)
		ret = dt_dirty_set_add_iommu(m->set, m->iommu, 0);
	return ret;
}

int machine_new(struct machine *m, const struct machine_opts *o, bool source)
{
	int ret;

	memset(m, 0, sizeof(*m));
	m->o = *o;
	m->source = source;
	ret = vm_create(&m->vm, &o->vm, source);
	if (ret)
		return ret;
	m->iommu = dt_iommu_new();
	if (!m->iommu) {
		ret = -errno;
		goto fail;
	}
	ret = map_memory(m);
	if (ret)
		goto fail;
	m->mailbox_dev = dt_device_attach(m->iommu, DT_DEVICE_EMULATED);
	if (!m->mailbox_dev) {
		ret = -errno;
		goto fail;
	}
	ret = dt_device_set_flags(m->mailbox_dev, DT_DEVICE_F_VMM);
	if (ret)
		goto fail;
	m->vm.host_write = mailbox_write;
	m->vm.host_write_opaque = m;
	m->mdev[m->nmdev++] = (struct dt_migrate_device){.name = "vcpu",
							 .opaque = m,
							 .save = cpu_save,
							 .pending = cpu_pending,
							 .load = cpu_load};
	if (o->vfu_path) {
		ret = remote_open(&m->remote, o->vfu_path, &m->vm);
		if (ret)
			goto fail;
		m->has_remote = true;
		ret = remote_migrate_device(&m->remote, &m->mdev[m->nmdev]);
		if (ret)
			goto fail;
		m->nmdev++;
	}
	ret = add_devices(m);
	if (ret)
		goto fail;
	if (source) {
		ret = setup_tracking(m);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	fprintf(stderr, "vmm: setting up the machine: %s\n", strerror(-ret));
	machine_free(m);
	return ret;
}

void machine_free(struct machine *m)
{
	if (m->running)
		machine_pause(m);
	dt_dirty_set_free(m->set);
	if (m->cpu) {
		if (m->tracking)
			dt_source_stop(m->cpu);
		dt_source_free(m->cpu);
	}
	for (unsigned t = 0; t < VDEV_NTYPES; t++)
		vdev_free(m->dev[t]);
	if (m->has_remote)
		remote_close(&m->remote);
	dt_iommu_free(m->iommu);
	vm_destroy(&m->vm);
	memset(m, 0, sizeof(*m));
}

int machine_start(struct machine *m)
{
	int ret = vm_start(&m->vm);

	for (unsigned t = 0; !ret && t < VDEV_NTYPES; t++)
		if (m->dev[t])
			ret = vdev_start(m->dev[t]);
	if (!ret && m->has_remote)
		ret = remote_start(&m->remote);
	if (ret) {
		fprintf(stderr, "vmm: starting the machine: %s\n", strerror(-ret));
		return ret;
	}
	m->running = true;
	return 0;
}

int machine_pause(void *opaque)
{
	struct machine *m = opaque;
	int ret = 0, r;

	/* Every part is paused even when one fails; the first error is the result. */
	for (unsigned t = 0; t < VDEV_NTYPES; t++)
		if (m->dev[t] && (r = vdev_pause(m->dev[t])) && !ret)
			ret = r;
	/* The migration's pause: the device's state is read next (STOP_COPY). */
	if (m->has_remote && (r = remote_pause(&m->remote, m->migrating)) && !ret)
		ret = r;
	if ((r = vm_pause(&m->vm)) && !ret)
		ret = r;
	m->running = false;
	return ret;
}

void machine_resume(void *opaque)
{
	struct machine *m = opaque;

	if (vm_resume(&m->vm))
		fprintf(stderr, "vmm: the vCPU did not resume\n");
	for (unsigned t = 0; t < VDEV_NTYPES; t++)
		if (m->dev[t] && vdev_resume(m->dev[t]))
			fprintf(stderr, "vmm: device %s did not resume\n", vdev_name(m->dev[t]));
	if (m->has_remote && remote_resume(&m->remote))
		fprintf(stderr, "vmm: device %s did not resume\n", m->remote.name);
	m->running = true;
}

int machine_track_start(struct machine *m)
{
	int ret;

	if (!m->source)
		return -EINVAL;
	if (m->tracking)
		return 0;
	ret = dt_source_start(m->cpu);
	if (ret)
		return ret;
	m->tracking = true;
	if (m->o.device_tracking) {
		ret = dt_iommu_dirty_start(m->iommu);
		if (!ret && m->has_remote)
			ret = remote_track(&m->remote, m->set);
		if (ret)
			return ret;
	}
	return 0;
}

static void round_trampoline(void *opaque, const struct dt_round_stats *s, const char *json)
{
	struct machine *m = opaque;

	if (m->user_on_round)
		m->user_on_round(m->user_opaque, s, json);
}

static enum dt_decision ask_trampoline(void *opaque, const struct dt_round_stats *rounds,
				       unsigned n)
{
	struct machine *m = opaque;

	return m->user_ask(m->user_opaque, rounds, n);
}

int machine_migrate_out(struct machine *m, struct dt_transport *t,
			const struct dt_migrate_source_opts *opts, struct dt_migrate_result *res)
{
	struct dt_migrate_source_opts o = *opts;
	int ret = machine_track_start(m);

	if (ret)
		return ret;
	m->user_opaque = opts->opaque;
	m->user_on_round = opts->on_round;
	m->user_ask = opts->ask;
	o.size = sizeof(o);
	o.transport = t;
	o.set = m->set;
	o.regions = m->vm.banks;
	o.nregions = VM_NBANKS;
	o.devices = m->mdev;
	o.ndevices = m->nmdev;
	o.opaque = m;
	o.pause = machine_pause;
	o.resume = machine_resume;
	o.on_round = round_trampoline;
	o.ask = opts->ask ? ask_trampoline : NULL;
	m->migrating = true;
	ret = dt_migrate_source(&o, res);
	m->migrating = false;
	return ret;
}

int machine_migrate_in(struct machine *m, struct dt_transport *t,
		       struct dt_migrate_dest_result *res)
{
	struct dt_migrate_dest_opts o = {
		.size = sizeof(o),
		.transport = t,
		.regions = m->vm.banks,
		.nregions = VM_NBANKS,
		.devices = m->mdev,
		.ndevices = m->nmdev,
		.opaque = m,
	};

	if (m->source || m->running)
		return -EINVAL;
	return dt_migrate_dest(&o, res);
}

void machine_check(struct machine *m, struct machine_check *out)
{
	memset(out, 0, sizeof(*out));
	vm_host_verify(&m->vm, &out->host, NULL, 0);
	for (unsigned t = 0; t < VDEV_NTYPES; t++) {
		if (!m->dev[t])
			continue;
		out->dev_bad[t] = vdev_verify(m->dev[t], out->dev_bad_gpa[t], 4);
		out->dev_bad_total += out->dev_bad[t];
	}
	if (m->has_remote) {
		enum vdev_type t = m->remote.type;

		/* A device we cannot ask counts as wholly stale. */
		if (remote_verify(&m->remote, &out->dev_bad[t], out->dev_bad_gpa[t], 4))
			out->dev_bad[t] = GUEST_DEV_AREA_SIZE / GUEST_PAGE;
		out->dev_bad_total += out->dev_bad[t];
	}
}

bool machine_has_dev(const struct machine *m, unsigned t)
{
	return t < VDEV_NTYPES && (m->dev[t] || (m->has_remote && m->remote.type == t));
}

uint64_t machine_dev_writes(struct machine *m, unsigned t)
{
	uint64_t v = 0;

	if (t < VDEV_NTYPES && m->dev[t])
		return vdev_writes(m->dev[t]);
	if (machine_has_dev(m, t) && remote_writes(&m->remote, &v))
		return 0;
	return v;
}
