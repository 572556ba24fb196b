/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack/track.h - trackers of CPU writes, and one harvest over every source.
 *
 * A *source* reports the pages of an address space written since its previous harvest:
 * the KVM dirty log or dirty ring of a VM the caller owns, userfaultfd write-protection with
 * PAGEMAP_SCAN for memory of the calling process, soft-dirty bits where they work, or the
 * all-dirty fallback that is always correct (and always pessimistic).
 *
 * A *dirty set* binds sources and dt_iommu containers to one address space (guest-physical
 * for a VM, virtual for a process) and harvests them in one call into per-class bitmaps:
 * CPU writes, VMM writes (dt_dma_rw), pinned device pages, device writes reported once
 * (dt_dma_log, unpins), and the whole-mapping fallback; with their union and counts. A
 * consumer that cannot send what it harvested gives it back (dt_dirty_set_merge_back), so an
 * abandoned round loses nothing.
 *
 * Addresses: page n of an address space [base, base + length) is base + n * 4096; every
 * bitmap here has bit n for page n (bit n % 64 of u64 word n / 64, little endian).
 *
 * Thread safety: a source or a dirty set is used by one thread at a time, except
 * dt_source_kvm_ring_full(), which vCPU threads may call concurrently with a harvest.
 */
#ifndef DIRTYTRACK_TRACK_H
#define DIRTYTRACK_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dirtytrack/iommu.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dt_source_type {
	DT_SOURCE_AUTO = 0,   /* the best the kernel offers for the options given */
	DT_SOURCE_KVM_RING,   /* KVM_CAP_DIRTY_LOG_RING(_ACQ_REL): per-vCPU rings */
	DT_SOURCE_KVM_LOG,    /* KVM_GET_DIRTY_LOG (+ KVM_CLEAR_DIRTY_LOG with MANUAL_PROTECT2) */
	DT_SOURCE_UFFD_WP,    /* userfaultfd async write-protect + PAGEMAP_SCAN (process memory) */
	DT_SOURCE_SOFT_DIRTY, /* /proc/self/clear_refs + pagemap soft-dirty bit (process memory) */
	DT_SOURCE_ALL_DIRTY,  /* every page, every harvest */
};

/*
 * One region of memory inside the address space. KVM sources report guest-physical pages of
 * the memslot at addr. Process sources (uffd-wp, soft-dirty) track the memory at host and
 * report it at addr: pass host == addr (or host NULL) for the process's own addresses.
 */
struct dt_region {
	uint64_t addr;	     /* guest-physical (VM) or virtual (process) address, page aligned */
	uint64_t size;	     /* bytes, page multiple */
	void *host;	     /* where the memory is mapped in this process */
	uint32_t slot;	     /* KVM sources: the memslot id of this region */
	uint32_t slot_flags; /* KVM sources: the memslot's other flags (KVM_MEM_READONLY) */
};

struct dt_source_opts {
	size_t size;		  /* sizeof(struct dt_source_opts) */
	enum dt_source_type type; /* DT_SOURCE_AUTO picks, logs the choice and why */
	const struct dt_region *regions;
	unsigned nregions;
	int vm_fd;	     /* KVM sources: the VM (-1: a process source) */
	const int *vcpu_fds; /* KVM ring: every vCPU, created after the ring was enabled */
	unsigned nvcpus;
	uint32_t ring_entries; /* KVM ring: as returned by dt_kvm_dirty_ring_enable() */
};

struct dt_source;

/*
 * A source. NULL and errno: EINVAL (bad options), ENODEV (the type forced is not offered by
 * this kernel; the log says why), EBUSY (the memory is already tracked by another
 * userfaultfd, or another soft-dirty source is started), ENOMEM. DT_SOURCE_AUTO tries the
 * types in order (KVM ring, KVM log, uffd-wp, soft-dirty, all-dirty) and takes the first
 * that probes and sets up; the log says which and why each better one was passed over.
 *
 * Soft-dirty: clear_refs is process-wide, so one started soft-dirty source per process; and
 * it cannot read and clear in one step, so it is exact only if writers pause during a
 * harvest. The automatic choice prefers uffd-wp, which has neither limit.
 */
struct dt_source *dt_source_new(const struct dt_source_opts *opts);
void dt_source_free(struct dt_source *src);
enum dt_source_type dt_source_type(const struct dt_source *src);
const char *dt_source_name(const struct dt_source *src);

/* Capabilities. */
#define DT_SOURCE_CAP_EXACT	    (1u << 0) /* reports only written pages (not all-dirty) */
#define DT_SOURCE_CAP_DEFER_CLEAR   (1u << 1) /* harvest can leave re-protection to dt_source_clear */
#define DT_SOURCE_CAP_KERNEL_WRITES (1u << 2) /* sees writes by the kernel (read(2) into memory) */
uint32_t dt_source_caps(const struct dt_source *src);

/* Start tracking: every page counts as clean from now on. Stop: tracking off. */
int dt_source_start(struct dt_source *src);
int dt_source_stop(struct dt_source *src);

#define DT_HARVEST_DEFER_CLEAR (1u << 0) /* KVM log: GET only; dt_source_clear() re-arms */

/*
 * OR the pages written since the previous harvest into bitmap, which covers [base, base +
 * npages * 4096) (regions may lie partly outside it: those pages are not reported, but they
 * are consumed). Returns the number of pages reported or a negative errno: -ENXIO when the
 * tracked memory was unmapped or moved (mremap), which is never reported as "clean".
 */
int64_t dt_source_harvest(struct dt_source *src, uint64_t base, uint64_t npages, void *bitmap,
			  uint32_t flags);

/* After a DT_HARVEST_DEFER_CLEAR harvest: re-arm tracking of [addr, addr + len) just before
 * those pages are copied (KVM: KVM_CLEAR_DIRTY_LOG, 64-page aligned). Others: no-op. */
int dt_source_clear(struct dt_source *src, uint64_t addr, uint64_t len);

/* KVM dirty ring: enable it on a VM before creating vCPUs. *entries is rounded to a power
 * of two within the kernel's limits and written back; 0 asks for a default. */
int dt_kvm_dirty_ring_enable(int vm_fd, uint32_t *entries);

/* KVM dirty ring: a vCPU exited with KVM_EXIT_DIRTY_RING_FULL. Drains the rings into the
 * source (kept for the next harvest) and resets them, so the vCPU can run again. */
int dt_source_kvm_ring_full(struct dt_source *src);

/* ---- the dirty set -------------------------------------------------------------------- */

enum dt_dirty_class {
	DT_CLASS_CPU,	 /* sources: vCPUs or process threads */
	DT_CLASS_VMM,	 /* dt_dma_rw: the VMM's own device emulation */
	DT_CLASS_PINNED, /* pages pinned by devices that cannot track (perpetual) */
	DT_CLASS_DEVICE, /* dt_dma_log, unpins, merge-back: written once */
	DT_CLASS_WHOLE,	 /* whole-mapping fallback */
	DT_NCLASSES,
};

struct dt_dirty_set_opts {
	size_t size;	 /* sizeof(struct dt_dirty_set_opts) */
	uint64_t base;	 /* page aligned */
	uint64_t length; /* page multiple */
};

struct dt_dirty_set;

struct dt_dirty_set *dt_dirty_set_new(const struct dt_dirty_set_opts *opts);
void dt_dirty_set_free(struct dt_dirty_set *set);
/* The address space of the set: [base, base + length). */
uint64_t dt_dirty_set_base(const struct dt_dirty_set *set);
uint64_t dt_dirty_set_length(const struct dt_dirty_set *set);

/* Add a source (class CPU), or a container whose iova_base is the set's base: address a of
 * the set is iova (a - base + iova_base) of the container. The set does not own them. */
int dt_dirty_set_add_source(struct dt_dirty_set *set, struct dt_source *src);
int dt_dirty_set_add_iommu(struct dt_dirty_set *set, struct dt_iommu *iommu, uint64_t iova_base);

/*
 * A pre-harvest hook: called at the start of every dt_dirty_set_harvest(), before any
 * source or container is read, in the order added. It brings remote dirty state into a
 * container of the set, typically a device's DMA log fetched over a socket and replayed with
 * dt_dma_log() on a LOGGING device of a local mirror container (the vfio-user client does
 * this: dt_vfu_client_add_to_set()), so those pages land in DT_CLASS_DEVICE of this very
 * harvest. Returns 0 or a negative errno: the harvest then fails with that errno before it
 * touches anything (pages the hook already marked stay in its container, pages waiting in
 * the set stay waiting), so nothing is lost; later hooks do not run. The hook must not call
 * the set.
 */
typedef int (*dt_pre_harvest_fn)(void *opaque);
int dt_dirty_set_add_pre_harvest(struct dt_dirty_set *set, dt_pre_harvest_fn fn, void *opaque);

#define DT_HARVEST_SKIP_PINNED (1u << 1) /* pinned pages out of every class but PINNED's count */

/* The result of one harvest; the bitmaps belong to the set and stay valid until its next
 * harvest. class_bits[DT_CLASS_PINNED] is filled even with DT_HARVEST_SKIP_PINNED. */
struct dt_harvest {
	uint64_t npages;
	const uint64_t *class_bits[DT_NCLASSES];
	const uint64_t *all; /* union of the classes sent now */
	uint64_t count[DT_NCLASSES];
	uint64_t total; /* pages in all */
};

int dt_dirty_set_harvest(struct dt_dirty_set *set, uint32_t flags, struct dt_harvest *out);

/* Give back pages of a harvest that could not be sent: every set bit of bitmap (npages of
 * the set's pages) becomes dirty again in its source (the containers' "requeued" class;
 * sources without merge-back keep them in the set for the next harvest). */
int dt_dirty_set_merge_back(struct dt_dirty_set *set, const uint64_t *bitmap);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYTRACK_TRACK_H */
