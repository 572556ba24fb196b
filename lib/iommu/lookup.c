/* SPDX-License-Identifier: MIT */
/*
 * iommu/lookup.c - a lock-free cache in front of the mapping tree for the marking paths.
 *
 * The tree walk of a large container is a chain of a dozen dependent loads over nodes
 * spread across the heap, with a branch each that the CPU cannot predict. The cache is a
 * direct-mapped table of LOOKUP_SLOTS words indexed by (iova >> shift): one load gives a
 * mapping, and the mapping is the answer if it contains the iova (mappings never overlap).
 * The shift is the largest power of two (1 GiB at most) that divides the iova and size of
 * every mapping of 2 MiB or more (never below 2 MiB): 4096 mappings of 256 MiB then use
 * 4096 slots (32 KiB of table that stays in cache), and a terabyte of any mappings aligned
 * to 16 MiB hits every time once warm. A slot whose granule holds several mappings (those
 * under 2 MiB) just misses more often; then the tree answers, as without the cache. A count
 * of mappings per granule (under the lock) lets the shift come down as mappings are made
 * and go back up when the ones that needed it are unmapped. A reader may use a stale shift:
 * a slot only ever claims what its mapping covers, so any slot is right or misses.
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
#include "iommu/lookup.h"
#include "sys/rcu.h"

int lookup_init(struct dt_iommu *iommu)
{
	iommu->lookup = xzalloc_big(LOOKUP_SLOTS * sizeof(*iommu->lookup));
	if (!iommu->lookup)
		return -ENOMEM;
	atomic_store(&iommu->lookup_gen, 1);
	atomic_store(&iommu->lookup_shift, LOOKUP_SHIFT_MAX);
	return 0;
}

/* The granule a mapping allows: the largest power of two dividing its iova and size, up to
 * LOOKUP_SHIFT_MAX; 0 below LOOKUP_SHIFT_MIN (small or oddly aligned mappings share slots
 * and miss more, rather than make the whole table fine). */
static unsigned granule_of(uint64_t iova, uint64_t size)
{
	unsigned g = (unsigned)__builtin_ctzll(iova | size | (1ull << LOOKUP_SHIFT_MAX));

	return g < LOOKUP_SHIFT_MIN ? 0 : g;
}

/* The coarsest granule every counted mapping allows. */
static void shift_update(struct dt_iommu *iommu)
{
	unsigned shift = LOOKUP_SHIFT_MAX;

	for (unsigned g = LOOKUP_SHIFT_MIN; g < LOOKUP_SHIFT_MAX; g++)
		if (iommu->lookup_granules[g - LOOKUP_SHIFT_MIN]) {
			shift = g;
			break;
		}
	atomic_store_explicit(&iommu->lookup_shift, shift, memory_order_relaxed);
}

void lookup_note_mapping(struct dt_iommu *iommu, uint64_t iova, uint64_t size)
{
	unsigned g = granule_of(iova, size);

	if (g) {
		iommu->lookup_granules[g - LOOKUP_SHIFT_MIN]++;
		shift_update(iommu);
	}
}

void lookup_forget_mapping(struct dt_iommu *iommu, uint64_t iova, uint64_t size)
{
	unsigned g = granule_of(iova, size);

	if (g) {
		iommu->lookup_granules[g - LOOKUP_SHIFT_MIN]--;
		shift_update(iommu);
	}
}

void lookup_destroy(struct dt_iommu *iommu)
{
	xfree_big((void *)iommu->lookup, LOOKUP_SLOTS * sizeof(*iommu->lookup));
	iommu->lookup = NULL;
}

struct dt_mapping *lookup_find_slow(struct dt_iommu *iommu, uint64_t iova, uint64_t tag)
{
	_Atomic uint64_t *slot = lookup_slot(iommu, iova);
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
