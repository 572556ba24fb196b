/* SPDX-License-Identifier: MIT */
/*
 * iommu/lookup.c - a lock-free cache in front of the mapping tree for the marking paths.
 *
 * The tree walk of a large container is a chain of a dozen dependent loads over nodes
 * spread across the heap, with a branch each that the CPU cannot predict. The cache is a
 * direct-mapped table of LOOKUP_SLOTS words indexed by (iova >> LOOKUP_SHIFT): one load
 * gives a mapping, and the mapping is the answer if it contains the iova (mappings never
 * overlap). With the defaults a terabyte of mappings aligned to 16 MiB hits every time once
 * warm; a slot whose granule holds several mappings just misses more often (then the tree
 * answers, as without the cache).
 *
 * A slot is (tag << 48) | mapping pointer, 0 when empty. A slot is valid while its tag
 * equals the low 16 bits of iommu->lookup_gen and the tag is not 0.
 *
 * Why a stale mapping is never used. An unmap first removes its mappings from the tree,
 * then bumps lookup_gen (lookup_invalidate), then waits for a grace period, then frees.
 * - A reader that fills a slot reads the generation (acquire) before its tree walk. If the
 *   walk found a mapping that is being unmapped, the walk ran before the removal, so the
 *   generation it read is the old one and the slot it writes is already invalid.
 * - A reader that uses a slot read the generation inside its read-side section; if that
 *   was the current one, its section began before the unmap's grace period, which waits for
 *   it, so the mapping is still allocated (and, as with the tree, its marks are in the
 *   unmap's bitmap).
 * - Tags wrap after 65535 unmaps. Tag 0 is never valid: when the generation reaches it the
 *   unmap waits for a grace period (no filler holding an older generation is left), empties
 *   the table and moves on to tag 1, so no slot written 65536 generations ago comes back.
 * Inserting a mapping invalidates nothing: a slot only ever claims what its mapping covers.
 */
#include <errno.h>

#include "core/alloc.h"
#include "iommu/internal.h"
#include "sys/rcu.h"

int lookup_init(struct dt_iommu *iommu)
{
	iommu->lookup = xzalloc_big(LOOKUP_SLOTS * sizeof(*iommu->lookup));
	if (!iommu->lookup)
		return -ENOMEM;
	atomic_store(&iommu->lookup_gen, 1);
	return 0;
}

void lookup_destroy(struct dt_iommu *iommu)
{
	xfree_big((void *)iommu->lookup, LOOKUP_SLOTS * sizeof(*iommu->lookup));
	iommu->lookup = NULL;
}

struct dt_mapping *lookup_find_slow(struct dt_iommu *iommu, uint64_t iova, uint64_t tag)
{
	_Atomic uint64_t *slot = &iommu->lookup[(iova >> LOOKUP_SHIFT) & (LOOKUP_SLOTS - 1)];
	struct iova_node *n = iova_tree_find_lockless(&iommu->tree, iova);
	uint64_t v = (tag << LOOKUP_TAG_SHIFT) | (uintptr_t)node_mapping(n);

	/* Pointers above 2^48 (not produced by Linux's allocators) are just not cached. */
	if (n && tag && !((uintptr_t)n >> LOOKUP_TAG_SHIFT) &&
	    atomic_load_explicit(slot, memory_order_relaxed) != v)
		atomic_store_explicit(slot, v, memory_order_relaxed);
	return n ? node_mapping(n) : NULL;
}

void lookup_invalidate(struct dt_iommu *iommu)
{
	uint64_t gen = atomic_fetch_add_explicit(&iommu->lookup_gen, 1, memory_order_release) + 1;

	if (gen & 0xffff)
		return;
	rcu_synchronize();
	for (unsigned i = 0; i < LOOKUP_SLOTS; i++)
		if (atomic_load_explicit(&iommu->lookup[i], memory_order_relaxed))
			atomic_store_explicit(&iommu->lookup[i], 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&iommu->lookup_gen, 1, memory_order_release);
}
