/* SPDX-License-Identifier: MIT */
/*
 * vmm/vdev.h - DMA test devices of the micro-VM, one per kind of the 2020 thread, each a
 * thread writing guest memory behind the vCPU's back, in its own device area:
 *
 *	EMULATED     pins a ring of pages (dt_pin_pages, with vaddrs) and keeps writing it
 *		     through the pinned addresses: the container reports pinned pages dirty.
 *	LOGGING      writes random pages of its area through the host mapping and reports each
 *		     with dt_dma_log.
 *	PASSTHROUGH  writes random pages of its area without telling anybody (the container
 *		     reports every mapping dirty), until it pins its ring after pin_after_ms;
 *		     from then on writes only the ring.
 *	VMM	     the VMM's own emulated device: writes random pages with dt_dma_rw (device
 *		     flag DT_DEVICE_F_VMM: class VMM).
 *
 * Every write stamps a page as the guest does (guest/mailbox.h: guest_mix) with the
 * device's sequence number and records it in the device's table of expected stamps, which is
 * the device state migrated. vdev_verify() compares guest memory with that table: after a
 * migration without device dirty tracking it names the stale pages.
 *
 * Threads: one control thread calls everything here; the device has its own writer thread.
 */
#ifndef DT_VMM_VDEV_H
#define DT_VMM_VDEV_H

#include <stdbool.h>
#include <stdint.h>

#include <dirtytrack/dirtytrack.h>

enum vdev_type { VDEV_EMULATED, VDEV_LOGGING, VDEV_PASSTHROUGH, VDEV_VMM, VDEV_NTYPES };

struct vdev_config {
	uint32_t writes_per_sec; /* page stamps per second (default 2000); 0: stays idle */
	uint32_t ring_pages;	 /* EMULATED and PASSTHROUGH: pages of the ring (default 16) */
	uint32_t pin_after_ms;	 /* PASSTHROUGH: writes unpinned this long (default 200) */
	uint64_t seed;		 /* the random pages */
};

void vdev_config_defaults(struct vdev_config *cfg);

struct vdev;

/*
 * A device of this type on the container, writing the area [area_gpa, area_gpa + area_size)
 * (page aligned, inside one of the regions, and mapped in the container at iova == gpa).
 * regions: the guest memory, to find the host address of a gpa. Attaches to the container
 * (dt_device_attach) but writes nothing before vdev_start(). NULL and errno on failure.
 */
struct vdev *vdev_new(enum vdev_type type, struct dt_iommu *iommu, const struct dt_region *regions,
		      unsigned nregions, uint64_t area_gpa, uint64_t area_size,
		      const struct vdev_config *cfg);
/* Stops the thread, unpins, detaches, frees. NULL is a no-op. */
void vdev_free(struct vdev *d);

const char *vdev_name(const struct vdev *d); /* "emulated", "logging", "passthrough", "vmm" */
/* The name of a type (NULL out of range), and the type of a name (-EINVAL: none). */
const char *vdev_type_name(enum vdev_type t);
int vdev_type_parse(const char *name);
enum vdev_type vdev_type(const struct vdev *d);
struct dt_device *vdev_device(const struct vdev *d);

/* Start writing (EMULATED pins its ring first). */
int vdev_start(struct vdev *d);
/* Stop writing; returns once no write is in flight. Idempotent. */
int vdev_pause(struct vdev *d);
int vdev_resume(struct vdev *d);

/* State of a paused device: type, config, sequence, whether and where it pinned, and the
 * table of expected stamps. Length, or -ENOSPC when cap < vdev_state_size(). */
uint64_t vdev_state_size(const struct vdev *d);
int64_t vdev_save(struct vdev *d, void *buf, size_t cap);
/* Load into a device of the same type and area that never started: -EINVAL otherwise.
 * Re-takes its pins (a destination device pins what the source's had pinned). */
int vdev_load(struct vdev *d, const void *buf, size_t len);

/* Compare guest memory with the expected stamps: the number of bad pages, and up to maxbad
 * of their guest-physical addresses. Call with the device paused or not yet resumed. */
uint64_t vdev_verify(const struct vdev *d, uint64_t *bad, unsigned maxbad);

/* Stamps written so far. */
uint64_t vdev_writes(const struct vdev *d);

/* The dt_migrate_device of this device (name = vdev_name, opaque = d). */
void vdev_migrate_device(struct vdev *d, struct dt_migrate_device *out);

#endif
