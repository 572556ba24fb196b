/* SPDX-License-Identifier: MIT */
/*
 * iommu/lookup.h - the marking paths' cache of mappings (see lookup.c for the invariants).
 *
 * lookup_find() is what dt_dma_log, dt_dma_rw and merge-back use instead of a tree walk; its
 * hit path is inline. Everything else runs under the container lock.
 */
#ifndef DT_IOMMU_LOOKUP_H
#define DT_IOMMU_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iommu/internal.h"

/* The cache in front of the tree (65536 slots, 512 KiB; one per
 * 2 MiB to 1 GiB of IOVA, the coarsest granule every mapping of 2 MiB or more is made of) */
#define LOOKUP_SLOTS	 65536u
#define LOOKUP_TAG_SHIFT 48
int lookup_init(struct dt_iommu *iommu);
void lookup_destroy(struct dt_iommu *iommu);
/* Under the lock, when a mapping is inserted (a finer granule if it needs one) and when it
 * leaves the tree (the granule grows back to what the remaining mappings allow). */
void lookup_note_mapping(struct dt_iommu *iommu, uint64_t iova, uint64_t size);
void lookup_forget_mapping(struct dt_iommu *iommu, uint64_t iova, uint64_t size);

/* The slot that caches iova. The granule may change under us: any slot is correct, a
 * stale granule only costs a miss. */
static inline _Atomic uint64_t *lookup_slot(struct dt_iommu *iommu, uint64_t iova)
{
	unsigned shift = atomic_load_explicit(&iommu->lookup_shift, memory_order_relaxed);

	return &iommu->lookup[(iova >> shift) & (LOOKUP_SLOTS - 1)];
}
struct dt_mapping *lookup_find_slow(struct dt_iommu *iommu, uint64_t iova, uint64_t tag);

/* Lock-free, inside a read-side section: the mapping containing iova, or NULL. The slot's
 * hit path is inline; a miss walks the tree and fills the slot. */
static inline struct dt_mapping *lookup_find(struct dt_iommu *iommu, uint64_t iova)
{
	uint64_t tag = atomic_load_explicit(&iommu->lookup_gen, memory_order_acquire) & 0xffff;
	uint64_t v = atomic_load_explicit(lookup_slot(iommu, iova), memory_order_acquire);
	struct dt_mapping *m =
		(struct dt_mapping *)(uintptr_t)(v & ((1ull << LOOKUP_TAG_SHIFT) - 1));

	if (__builtin_expect(v >> LOOKUP_TAG_SHIFT == tag && tag && iova >= m->node.start &&
				     iova <= m->node.last,
			     1))
		return m;
	return lookup_find_slow(iommu, iova, tag);
}
/* Prefetch what lookup_find(iommu, iova) will read: with first, the cache slot; then the
 * mapping the slot names (unvalidated: a prefetch of a stale pointer does no harm) and the
 * descriptors of its two class-cls bitmaps. For batches, whose lookups then overlap. */
static inline void lookup_prefetch(struct dt_iommu *iommu, uint64_t iova, bool first, unsigned cls)
{
	_Atomic uint64_t *slot = lookup_slot(iommu, iova);
	uintptr_t m, descs = offsetof(struct dt_mapping, dirty) + cls * sizeof(struct sbitmap);

	if (first) {
		__builtin_prefetch((const void *)slot);
		return;
	}
	/* Integer arithmetic: the pointer may be stale or empty, it is never dereferenced. */
	m = (uintptr_t)(atomic_load_explicit(slot, memory_order_relaxed) &
			((1ull << LOOKUP_TAG_SHIFT) - 1));
	if (!m)
		return;
	__builtin_prefetch((const void *)m);
	__builtin_prefetch((const void *)(m + 64));
	__builtin_prefetch((const void *)(m + descs));
	__builtin_prefetch((const void *)(m + descs + NCLS * sizeof(struct sbitmap)));
}

/* Under the lock, after mappings left the tree and before the grace period that frees them. */
void lookup_invalidate(struct dt_iommu *iommu);

#endif
