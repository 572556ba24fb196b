/* SPDX-License-Identifier: MIT */
/*
 * iommu/lookup.c - a lock-free cache in front of the mapping tree for the marking paths.
 *
 * The tree walk of a large container is a chain of a dozen dependent loads over nodes
 * spread across the heap, with a branch each that the CPU cannot predict. The cache is two
 * direct-mapped tables of LOOKUP_SLOTS words indexed by (iova >> shift): one load gives a
 * mapping, and the mapping is the answer if it contains the iova (mappings never overlap).
 * - The coarse table holds the mappings of 2 MiB or more. Its shift is the largest power
 *   of two (1 GiB at most) that divides the iova and size of every one of them aligned to
 *   2 MiB: 4096 mappings of 256 MiB use 4096 slots (32 KiB of table that stays in cache),
 *   and a terabyte of any mappings aligned to 16 MiB hits every time once warm. A large
 *   mapping not aligned to 2 MiB shares its end slots with its neighbours.
 * - The fine table holds the smaller ones (a vIOMMU maps 4 KiB pages one by one), with the
 *   largest power of two dividing all of their iovas and sizes (4 KiB to 1 MiB): 65536
 *   mappings of 4 KiB, or 256 MiB of IOVA, fit it without two sharing a slot. It is looked
 *   at when the coarse slot misses, so the big mappings pay nothing for it.
 * A slot that two mappings share takes turns and misses more often; then the tree answers,
 * as without the cache. A count of mappings per granule (under the lock) lets each shift come
 * down as mappings are made and go back up when the ones that needed it are unmapped. A
 * reader may use a stale shift: a slot only ever claims what its mapping covers, so any slot
 * is right or misses.
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
 *   both tables and moves on to tag 1, so no slot written 65536 generations ago comes back.
 * Inserting a mapping invalidates nothing: a slot only ever claims what its mapping covers.
 */
#include <errno.h>
#include <stdbool.h>

#include "core/alloc.h"
#include "iommu/internal.h"
#include "iommu/lookup.h"
#include "sys/rcu.h"

static int table_init(struct lookup_table *t, unsigned shift)
{
	t->slots = xzalloc_big(LOOKUP_SLOTS * sizeof(*t->slots));
	atomic_store(&t->shift, shift);
	return t->slots ? 0 : -ENOMEM;
}

static void table_destroy(struct lookup_table *t)
{
	xfree_big((void *)t->slots, LOOKUP_SLOTS * sizeof(*t->slots));
	t->slots = NULL;
}

int lookup_init(struct dt_iommu *iommu)
{
	if (table_init(&iommu->coarse, LOOKUP_SHIFT_MAX) ||
	    table_init(&iommu->fine, LOOKUP_SHIFT_MIN)) {
		lookup_destroy(iommu);
		return -ENOMEM;
	}
	atomic_store(&iommu->lookup_gen, 1);
	return 0;
}

void lookup_destroy(struct dt_iommu *iommu)
{
	table_destroy(&iommu->coarse);
	table_destroy(&iommu->fine);
}

/* Mappings of 2 MiB or more live in the coarse table, smaller ones in the fine table. */
static bool is_coarse(uint64_t size)
{
	return size >= 1ull << LOOKUP_SHIFT_MIN;
}

/* The granule a mapping asks of its table: the largest power of two dividing its iova and
 * size, up to LOOKUP_SHIFT_MAX; 0 (nothing) for a coarse mapping not aligned to 2 MiB,
 * which rather shares its end slots with its neighbours than make the whole table fine. */
static unsigned granule_of(uint64_t iova, uint64_t size)
{
	unsigned g = (unsigned)__builtin_ctzll(iova | size | (1ull << LOOKUP_SHIFT_MAX));

	return is_coarse(size) && g < LOOKUP_SHIFT_MIN ? 0 : g;
}

/* Each table's shift: the coarsest granule all of its mappings allow (the fine table's is
 * LOOKUP_SHIFT_MIN while it has none: lookup_prefetch then leaves it alone). */
static void shifts_update(struct dt_iommu *iommu)
{
	unsigned coarse = LOOKUP_SHIFT_MAX, fine = LOOKUP_SHIFT_MIN;

	for (unsigned g = LOOKUP_SHIFT_MAX; g-- > LOOKUP_FINE_SHIFT_MIN;) {
		if (!iommu->lookup_granules[g - LOOKUP_FINE_SHIFT_MIN])
			continue;
		if (g >= LOOKUP_SHIFT_MIN)
			coarse = g;
		else
			fine = g;
	}
	atomic_store_explicit(&iommu->coarse.shift, coarse, memory_order_relaxed);
	atomic_store_explicit(&iommu->fine.shift, fine, memory_order_relaxed);
}

void lookup_note_mapping(struct dt_iommu *iommu, uint64_t iova, uint64_t size)
{
	unsigned g = granule_of(iova, size);

	if (g) {
		iommu->lookup_granules[g - LOOKUP_FINE_SHIFT_MIN]++;
		shifts_update(iommu);
	}
}

void lookup_forget_mapping(struct dt_iommu *iommu, uint64_t iova, uint64_t size)
{
	unsigned g = granule_of(iova, size);

	if (g) {
		iommu->lookup_granules[g - LOOKUP_FINE_SHIFT_MIN]--;
		shifts_update(iommu);
	}
}

struct dt_mapping *lookup_find_fine(struct dt_iommu *iommu, uint64_t iova, uint64_t tag)
{
	_Atomic uint64_t *slot = lookup_slot(&iommu->fine, iova);
	struct dt_mapping *m =
		lookup_hit(atomic_load_explicit(slot, memory_order_acquire), tag, iova);
	struct iova_node *n;
	uint64_t v;

	if (m)
		return m;
	n = iova_tree_find_lockless(&iommu->tree, iova);
	if (!n)
		return NULL;
	m = node_mapping(n);
	if (is_coarse(m->size))
		slot = lookup_slot(&iommu->coarse, iova);
	v = (tag << LOOKUP_TAG_SHIFT) | (uintptr_t)m;
	/* Pointers above 2^48 (not produced by Linux's allocators) are just not cached. */
	if (tag && !((uintptr_t)m >> LOOKUP_TAG_SHIFT) &&
	    atomic_load_explicit(slot, memory_order_relaxed) != v)
		atomic_store_explicit(slot, v, memory_order_relaxed);
	return m;
}

static void table_empty(struct lookup_table *t)
{
	for (unsigned i = 0; i < LOOKUP_SLOTS; i++)
		if (atomic_load_explicit(&t->slots[i], memory_order_relaxed))
			atomic_store_explicit(&t->slots[i], 0, memory_order_relaxed);
}

void lookup_invalidate(struct dt_iommu *iommu)
{
	uint64_t gen = atomic_fetch_add_explicit(&iommu->lookup_gen, 1, memory_order_release) + 1;

	if (gen & 0xffff)
		return;
	rcu_synchronize();
	table_empty(&iommu->coarse);
	table_empty(&iommu->fine);
	atomic_fetch_add_explicit(&iommu->lookup_gen, 1, memory_order_release);
}
