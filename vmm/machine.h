/* SPDX-License-Identifier: MIT */
/*
 * vmm/machine.h - the micro-VM put together for migration: the VM (vm.h), a DMA container
 * mapping all of guest memory at iova == gpa, the four test devices (vdev.h) on it, the
 * tracking (a KVM dirty-log source for the vCPU, the container for the devices, in one dirty
 * set), and the migration of all of it with dt_migrate_source / dt_migrate_dest: guest
 * memory, the vCPU state (device "vcpu") and each device's state. One device may live in
 * another process, served over vfio-user (opts.vfu_path, remote.h): its DMA is tracked
 * through the server's DMA log and its state moves with the vfio-user migration data.
 *
 * Source: machine_new(source) - machine_start - machine_migrate_out.
 * Destination: machine_new(!source) - machine_migrate_in - machine_check - machine_start.
 *
 * One control thread calls everything here.
 */
#ifndef DT_VMM_MACHINE_H
#define DT_VMM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#include <dirtytrack/dirtytrack.h>

#include "remote.h"
#include "vdev.h"
#include "vm.h"

struct machine_opts {
	struct vm_config vm;
	struct vdev_config dev; /* every device's */
	unsigned devices;	/* bit t: a device of enum vdev_type t (default: all four) */
	/* false: the container is left out of the dirty set, so the devices' writes are not
	 * tracked (the negative control: the destination gets stale pages). */
	bool device_tracking;
	/* A vfio-user server of one test device (vdev_server.h: `dirtytrack vfio-user-device`)
	 * to use in place of the local device of its type; NULL: none. */
	const char *vfu_path;
};

void machine_opts_defaults(struct machine_opts *o);

struct machine {
	struct machine_opts o;
	struct vm vm;
	struct dt_iommu *iommu;
	struct dt_device *mailbox_dev; /* the VMM's own writes (the mailbox command) */
	struct vdev *dev[VDEV_NTYPES];
	struct dt_source *cpu;
	struct dt_dirty_set *set;
	struct remote remote; /* o.vfu_path: the device in another process */
	bool has_remote, migrating;
	bool source, tracking, running;
	struct dt_migrate_device mdev[1 + VDEV_NTYPES];
	unsigned nmdev;
	/* the caller's callbacks of machine_migrate_out (the engine's opaque is the machine) */
	void *user_opaque;
	void (*user_on_round)(void *opaque, const struct dt_round_stats *s, const char *json);
	enum dt_decision (*user_ask)(void *opaque, const struct dt_round_stats *rounds, unsigned n);
};

/* 0 or a negative errno (-ENODEV: no /dev/kvm); messages on stderr. */
int machine_new(struct machine *m, const struct machine_opts *o, bool source);
void machine_free(struct machine *m);

/* Run the vCPU and the devices (on a destination: after machine_migrate_in). */
int machine_start(struct machine *m);
/* dt_migrate_source pause/resume (opaque: the machine). */
int machine_pause(void *opaque);
void machine_resume(void *opaque);

/* Start the tracking (the dirty log and the container's dirty tracking): every page clean
 * from now. machine_migrate_out starts it if needed. */
int machine_track_start(struct machine *m);

/*
 * Migrate out over t. opts: policy, flags, max_bandwidth, on_round/ask and their opaque
 * are taken from it; the rest is filled here. The result of dt_migrate_source; on failure the
 * machine runs again and its dirty state is intact for a retry.
 */
int machine_migrate_out(struct machine *m, struct dt_transport *t,
			const struct dt_migrate_source_opts *opts, struct dt_migrate_result *res);
/* Receive into this machine's memory, vCPU and devices. The result of dt_migrate_dest. */
int machine_migrate_in(struct machine *m, struct dt_transport *t,
		       struct dt_migrate_dest_result *res);

struct machine_check {
	struct vm_verify host; /* the host's check of the guest's stamps */
	uint64_t dev_bad[VDEV_NTYPES];
	uint64_t dev_bad_gpa[VDEV_NTYPES][4]; /* the first stale pages of each device */
	uint64_t dev_bad_total;
};
/* Whether the machine has a device of type t (local or remote), and its writes so far. */
bool machine_has_dev(const struct machine *m, unsigned t);
uint64_t machine_dev_writes(struct machine *m, unsigned t);

/* Check memory against the ledger and every device's record; the VM and devices paused or
 * not started. */
void machine_check(struct machine *m, struct machine_check *out);

#endif
