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

/* The cache in front of the tree: two tables of 65536 slots (512 KiB each), indexed by
 * iova >> shift. The coarse one holds the mappings of 2 MiB or more, one slot per 2 MiB to
 * 1 GiB (the coarsest granule all of them that are aligned to 2 MiB allow); the fine one the
 * smaller ones (a vIOMMU's), one slot per 4 KiB to 1 MiB likewise. */
#define LOOKUP_SLOTS	 65536u
#define LOOKUP_TAG_SHIFT 48
int lookup_init(struct dt_iommu *iommu);
void lookup_destroy(struct dt_iommu *iommu);
/* Under the lock, when a mapping is inserted (a finer granule if it needs one) and when it
 * leaves the tree (the granule grows back to what the remaining mappings allow). */
void lookup_note_mapping(struct dt_iommu *iommu, uint64_t iova, uint64_t size);
void lookup_forget_mapping(struct dt_iommu *iommu, uint64_t iova, uint64_t size);

/* The slot of table t that caches iova. The granule may change under us: any slot is
 * correct, a stale granule only costs a miss. */
static inline _Atomic uint64_t *lookup_slot(struct lookup_table *t, uint64_t iova)
{
	unsigned shift = atomic_load_explicit(&t->shift, memory_order_relaxed);

	return &t->slots[(iova >> shift) & (LOOKUP_SLOTS - 1)];
}

/* The mapping a slot value names if the value is valid (tag) and the mapping holds iova. */
static inline struct dt_mapping *lookup_hit(uint64_t v, uint64_t tag, uint64_t iova)
{
	struct dt_mapping *m =
		(struct dt_mapping *)(uintptr_t)(v & ((1ull << LOOKUP_TAG_SHIFT) - 1));

	if (v >> LOOKUP_TAG_SHIFT == tag && tag && iova >= m->node.start && iova <= m->node.last)
		return m;
	return NULL;
}
/* The fine table, then the tree (filling the slot of the table the mapping belongs in). */
struct dt_mapping *lookup_find_fine(struct dt_iommu *iommu, uint64_t iova, uint64_t tag);

/* Lock-free, inside a read-side section: the mapping containing iova, or NULL. The coarse
 * table's hit path is inline; the rest is out of line. */
static inline struct dt_mapping *lookup_find(struct dt_iommu *iommu, uint64_t iova)
{
	uint64_t tag = atomic_load_explicit(&iommu->lookup_gen, memory_order_acquire) & 0xffff;
	uint64_t v = atomic_load_explicit(lookup_slot(&iommu->coarse, iova), memory_order_acquire);
	struct dt_mapping *m = lookup_hit(v, tag, iova);

	if (__builtin_expect(m != NULL, 1))
		return m;
	return lookup_find_fine(iommu, iova, tag);
}

/* Prefetch the mapping that slot value v names and the descriptors of its two class-cls
 * bitmaps. Integer arithmetic: the pointer may be stale or empty, it is never dereferenced. */
static inline void lookup_prefetch_mapping(uint64_t v, unsigned cls)
{
	uintptr_t m = (uintptr_t)(v & ((1ull << LOOKUP_TAG_SHIFT) - 1));
	uintptr_t descs = offsetof(struct dt_mapping, dirty) + cls * sizeof(struct sbitmap);

	if (!m)
		return;
	__builtin_prefetch((const void *)m);
	__builtin_prefetch((const void *)(m + 64));
	__builtin_prefetch((const void *)(m + descs));
	__builtin_prefetch((const void *)(m + descs + NCLS * sizeof(struct sbitmap)));
}

/* Whether the fine table holds anything (lookup_prefetch leaves it alone otherwise). */
static inline bool lookup_fine_used(struct dt_iommu *iommu)
{
	return atomic_load_explicit(&iommu->fine.shift, memory_order_relaxed) < LOOKUP_SHIFT_MIN;
}

/* Prefetch what lookup_find(iommu, iova) will read: with first, the cache slots; then the
 * mappings they name (lookup_prefetch_mapping). For batches, whose lookups then overlap. The
 * fine table's too when fine (lookup_fine_used(), read once per batch). */
static inline void lookup_prefetch(struct dt_iommu *iommu, uint64_t iova, bool first, bool fine,
				   unsigned cls)
{
	_Atomic uint64_t *coarse = lookup_slot(&iommu->coarse, iova);

	if (first) {
		__builtin_prefetch((const void *)coarse);
		if (fine)
			__builtin_prefetch((const void *)lookup_slot(&iommu->fine, iova));
		return;
	}
	lookup_prefetch_mapping(atomic_load_explicit(coarse, memory_order_relaxed), cls);
	if (fine)
		lookup_prefetch_mapping(
			atomic_load_explicit(lookup_slot(&iommu->fine, iova), memory_order_relaxed),
			cls);
}

/* Under the lock, after mappings left the tree and before the grace period that frees them. */
void lookup_invalidate(struct dt_iommu *iommu);

#endif
