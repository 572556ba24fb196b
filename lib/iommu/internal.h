/* SPDX-License-Identifier: MIT */
/*
 * iommu/internal.h - the container's data structures, shared by the files of lib/iommu.
 *
 * Locking: iommu->lock (a mutex) serializes every change: map, unmap, attach, detach, pin,
 * unpin, start, stop and reports. The marking paths (dt_dma_log, dt_dma_rw, merge-back)
 * take no lock: they find mappings with iova_tree_find_lockless() inside an RCU read-side
 * section and set bits atomically in the mapping's *active* one-shot bitmaps.
 *
 * Double buffering: each mapping has two sets of one-shot class bitmaps. A clearing report
 * flips `active` for every mapping it covers, waits for a grace period (so no marker still
 * writes the old set), then reads and zeroes the old set with plain stores. Between reports
 * the inactive set is always empty.
 *
 * Dirty classes: the one-shot ones live in bitmaps (CLS_*); "pinned" is derived from pin
 * counts (mapping->pinned, pages with a pin by an EMULATED or promoted PASSTHROUGH device);
 * "whole" from the container scope and mapping->whole_pending.
 */
#ifndef DT_IOMMU_INTERNAL_H
#define DT_IOMMU_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <dirtytrack/iommu.h>

#include "core/arena.h"
#include "core/bitops.h"
#include "core/iova_tree.h"
#include "core/log.h"
#include "core/sbitmap.h"
#include "core/u64map.h"

#define DT_PAGE_SHIFT	    12u
#define DT_PAGE_SIZE	    (1ull << DT_PAGE_SHIFT)
#define DT_MAX_MAPPINGS	    65535u
#define DT_MAX_BITMAP_BYTES (1ull << 32) /* 128 TiB of 4 KiB pages per report */

/* The granules of the marking paths' lookup cache (lookup.h): the coarse table's (mappings
 * of 2 MiB or more) are 2 MiB to 1 GiB of IOVA, the fine table's (smaller mappings) from
 * 4 KiB up to, at most, 1 MiB. */
#define LOOKUP_SHIFT_MIN      21u
#define LOOKUP_SHIFT_MAX      30u
#define LOOKUP_FINE_SHIFT_MIN 12u

/* One direct-mapped table of the lookup cache. */
struct lookup_table {
	_Atomic unsigned shift;	 /* log2 of the IOVA granule of a slot */
	_Atomic uint64_t *slots; /* LOOKUP_SLOTS cached mappings */
};

/* One-shot classes. CLS_VMM takes the dt_dma_rw/dt_dma_log writes of devices flagged
 * DT_DEVICE_F_VMM (the VMM's own emulation) instead of CLS_RW/CLS_LOG. */
enum dt_class { CLS_UNPIN, CLS_RW, CLS_LOG, CLS_REQUEUE, CLS_VMM, NCLS };

struct dt_mapping {
	/* Hot for the lock-free markers: the tree node, the range, the permissions and the
	 * active set, together at the front. */
	struct iova_node node; /* [iova, iova + size - 1]; first member */
	uint64_t iova, size, vaddr, npages;
	uint32_t flags;		       /* VFIO_DMA_MAP_FLAG_READ / _WRITE */
	_Atomic unsigned active;       /* the set markers write */
	_Atomic int whole_pending;     /* report every page once */
	struct sbitmap dirty[2][NCLS]; /* one-shot classes, double buffered */
	struct sbitmap pinned;	       /* pages with a dirtying pin (lock) */
	uint64_t pin_refs;	       /* pins of any device in this mapping (lock) */
	struct dt_mapping *next_gone;  /* unmap: list of unpublished mappings */
};

struct dev_log;

struct dt_device {
	struct dt_iommu *iommu;
	enum dt_device_kind kind;
	bool has_pinned;	/* PASSTHROUGH promoted to pinned scope */
	_Atomic uint32_t flags; /* DT_DEVICE_F_* */
	struct u64map pins;	/* pfn -> pin count of this device */
	dt_unmap_cb unmap_cb;
	void *unmap_opaque;
	struct dt_device *next;
	_Atomic(struct dev_log *) log; /* device DMA logging, NULL when stopped */
};

struct dt_iommu {
	pthread_mutex_t lock;
	struct iova_tree tree;
	_Atomic int tracking;
	struct u64map pin_total; /* pfn -> (dirtying pins << 32) | pins of any device */
	struct dt_device *devices;
	unsigned ndevices;
	unsigned unpinned_passthrough; /* > 0: whole-mapping scope */
	uint64_t mapped_bytes;
	/* The small bitmaps of all mappings, one plane per set and class, one for the pinned
	 * sets: the markers' writes stay within one dense plane (core/arena.h). */
	struct arena planes[2 * NCLS + 1];
	_Atomic uint64_t lookup_gen; /* lookup.c: bumped by every unmap */
	struct lookup_table coarse;  /* lookup.c: mappings of 2 MiB granules or coarser */
	struct lookup_table fine;    /* lookup.c: the others */
	/* lookup.c: how many mappings allow each granule (index: log2 - LOOKUP_FINE_SHIFT_MIN) */
	uint32_t lookup_granules[LOOKUP_SHIFT_MAX - LOOKUP_FINE_SHIFT_MIN + 1];
};

static inline struct dt_mapping *node_mapping(struct iova_node *n)
{
	return (struct dt_mapping *)n;
}

static inline bool device_dirties_pins(const struct dt_device *d)
{
	return d->kind == DT_DEVICE_EMULATED || (d->kind == DT_DEVICE_PASSTHROUGH && d->has_pinned);
}

static inline bool whole_scope(const struct dt_iommu *iommu)
{
	return iommu->unpinned_passthrough > 0;
}

/* container.c */
struct dt_mapping *mapping_first_in(struct dt_iommu *iommu, uint64_t iova, uint64_t last);
struct dt_mapping *mapping_next_in(struct dt_iommu *iommu, struct dt_mapping *m, uint64_t last);
int range_check_uncut(struct dt_iommu *iommu, uint64_t iova, uint64_t last, const char *what);
void mark_all_mappings_whole(struct dt_iommu *iommu);
int iommu_map(struct dt_iommu *iommu, uint64_t vaddr, uint64_t iova, uint64_t size, uint32_t flags);
int iommu_unmap(struct dt_iommu *iommu, uint64_t iova, uint64_t size, bool all, uint64_t *unmapped,
		void *bitmap, uint64_t bitmap_size);

/* device.c */
void device_drop_pin(struct dt_device *dev, uint64_t pfn, struct dt_mapping *m);
void device_drop_pins_in(struct dt_device *dev, struct dt_mapping *m);

/* dma.c: lock-free marking */
/* Mark pages [first_page, first_page + npages) of m in its active set; inline because the
 * one-page mark of dt_dma_log is the hottest path of the library. */
static inline void mark_mapping(struct dt_mapping *m, uint64_t first_page, uint64_t npages,
				enum dt_class cls)
{
	struct sbitmap *b = &m->dirty[atomic_load_explicit(&m->active, memory_order_relaxed)][cls];
	uint64_t last = first_page + npages - 1;

	if (first_page / 64 == last / 64)
		sbm_set_in_word(b, first_page / 64, mask_range(first_page % 64, last % 64 + 1));
	else
		sbm_set_range(b, first_page, npages);
}

/* The page of m that holds iova (inside m). */
static inline uint64_t mapping_page(const struct dt_mapping *m, uint64_t iova)
{
	return (iova - m->iova) >> DT_PAGE_SHIFT;
}

/* Mark the pages of m that bytes [iova, last] touch (both inside m). */
static inline void mark_bytes(struct dt_mapping *m, uint64_t iova, uint64_t last, enum dt_class cls)
{
	mark_mapping(m, mapping_page(m, iova), mapping_page(m, last) - mapping_page(m, iova) + 1,
		     cls);
}

void mark_range_lockless(struct dt_iommu *iommu, uint64_t iova, uint64_t len, enum dt_class cls);

/* report.c */
int report_locked(struct dt_iommu *iommu, struct dt_report *rep, bool pinned_only);
int validate_report(struct dt_iommu *iommu, const struct dt_report *rep, bool pinned_only);
int report_gone_mappings(struct dt_iommu *iommu, struct dt_report *rep, struct dt_mapping *gone);

/* device_log.c */
void dev_log_mark(struct dt_device *dev, uint64_t iova, uint64_t len);
void dev_log_free(struct dev_log *log);
int dev_feature(struct dt_device *dev, void *arg);

#endif
