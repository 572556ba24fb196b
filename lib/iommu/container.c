/* SPDX-License-Identifier: MIT */
/*
 * iommu/container.c - the container: creation, DMA mappings (map/unmap with VFIO type1 v2
 * rules), dirty tracking start/stop and statistics.
 *
 * Invariants: mappings never overlap and are never split; a mapping leaves the tree before
 * its memory is freed, with a grace period in between (lock-free markers may hold it);
 * every validation happens before the first change, so a rejected call changes nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/vfio.h>

#include "core/alloc.h"
#include "iommu/internal.h"
#include "iommu/lookup.h"
#include "sys/rcu.h"
#include "sys/sys.h"

struct dt_iommu *dt_iommu_new(void)
{
	struct dt_iommu *iommu = xzalloc(sizeof(*iommu));

	if (!iommu) {
		log_err("dt_iommu_new: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	rcu_init();
	alloc_set_big_backend(sys_zalloc_lazy, sys_free_lazy);
	if (lookup_init(iommu)) {
		log_err("dt_iommu_new: out of memory");
		xfree(iommu);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&iommu->lock, NULL);
	for (unsigned i = 0; i < 2 * NCLS + 1; i++)
		arena_init(&iommu->planes[i]);
	iova_tree_init(&iommu->tree);
	u64map_init(&iommu->pin_total);
	return iommu;
}

static void mapping_free(struct dt_mapping *m)
{
	for (unsigned b = 0; b < 2; b++)
		for (unsigned c = 0; c < NCLS; c++)
			sbm_destroy(&m->dirty[b][c]);
	sbm_destroy(&m->pinned);
	xfree(m);
}

static struct dt_mapping *mapping_alloc(struct dt_iommu *iommu, uint64_t vaddr, uint64_t iova,
					uint64_t size, uint32_t flags)
{
	struct dt_mapping *m = xzalloc(sizeof(*m));
	uint64_t npages = size >> DT_PAGE_SHIFT;
	int ret = 0;

	if (!m)
		return NULL;
	m->iova = iova;
	m->size = size;
	m->vaddr = vaddr;
	m->npages = npages;
	m->flags = flags;
	m->node.start = iova;
	m->node.last = iova + size - 1;
	for (unsigned b = 0; b < 2; b++)
		for (unsigned c = 0; c < NCLS; c++)
			ret |= sbm_init_in(&m->dirty[b][c], npages, &iommu->planes[b * NCLS + c]);
	ret |= sbm_init_in(&m->pinned, npages, &iommu->planes[2 * NCLS]);
	if (ret) {
		mapping_free(m);
		return NULL;
	}
	return m;
}

struct dt_mapping *mapping_first_in(struct dt_iommu *iommu, uint64_t iova, uint64_t last)
{
	struct iova_node *n = iova_tree_first_overlap(&iommu->tree, iova, last);

	return n ? node_mapping(n) : NULL;
}

struct dt_mapping *mapping_next_in(struct dt_iommu *iommu, struct dt_mapping *m, uint64_t last)
{
	struct iova_node *n = iova_tree_next_locked(&iommu->tree, &m->node);

	return n && n->start <= last ? node_mapping(n) : NULL;
}

int range_check_uncut(struct dt_iommu *iommu, uint64_t iova, uint64_t last, const char *what)
{
	struct iova_node *n = iova_tree_find_locked(&iommu->tree, iova);

	if (n && n->start != iova)
		return log_fail(-EINVAL, "%s: 0x%llx cuts the mapping [0x%llx, 0x%llx]", what,
				(unsigned long long)iova, (unsigned long long)n->start,
				(unsigned long long)n->last);
	n = iova_tree_find_locked(&iommu->tree, last);
	if (n && n->last != last)
		return log_fail(-EINVAL, "%s: range end 0x%llx cuts the mapping [0x%llx, 0x%llx]",
				what, (unsigned long long)last + 1, (unsigned long long)n->start,
				(unsigned long long)n->last);
	return 0;
}

void mark_all_mappings_whole(struct dt_iommu *iommu)
{
	for (struct dt_mapping *m = mapping_first_in(iommu, 0, UINT64_MAX); m;
	     m = mapping_next_in(iommu, m, UINT64_MAX))
		atomic_store(&m->whole_pending, 1);
}

int iommu_map(struct dt_iommu *iommu, uint64_t vaddr, uint64_t iova, uint64_t size, uint32_t flags)
{
	struct dt_mapping *m;
	struct iova_node *n;
	int ret;

	if (flags & ~(uint32_t)(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE))
		return log_fail(-EINVAL, "MAP_DMA: unsupported flags 0x%x", flags);
	if (!flags)
		return log_fail(-EINVAL, "MAP_DMA: neither READ nor WRITE");
	if (!size || (vaddr | iova | size) & (DT_PAGE_SIZE - 1))
		return log_fail(
			-EINVAL,
			"MAP_DMA: vaddr 0x%llx iova 0x%llx size 0x%llx not page aligned or empty",
			(unsigned long long)vaddr, (unsigned long long)iova,
			(unsigned long long)size);
	if (iova + size - 1 < iova || vaddr + size - 1 < vaddr)
		return log_fail(-EINVAL, "MAP_DMA: iova 0x%llx or vaddr 0x%llx + size 0x%llx wraps",
				(unsigned long long)iova, (unsigned long long)vaddr,
				(unsigned long long)size);
	ret = sys_range_mapped(vaddr, size);
	if (ret)
		return log_fail(ret,
				"MAP_DMA: vaddr [0x%llx, +0x%llx) is not mapped in the process",
				(unsigned long long)vaddr, (unsigned long long)size);
	m = mapping_alloc(iommu, vaddr, iova, size, flags);
	if (!m)
		return log_fail(-ENOMEM, "MAP_DMA: out of memory");

	pthread_mutex_lock(&iommu->lock);
	n = iova_tree_first_overlap(&iommu->tree, iova, iova + size - 1);
	if (n) {
		ret = log_fail(-EEXIST, "MAP_DMA: [0x%llx, +0x%llx) overlaps [0x%llx, 0x%llx]",
			       (unsigned long long)iova, (unsigned long long)size,
			       (unsigned long long)n->start, (unsigned long long)n->last);
	} else if (iommu->tree.count >= DT_MAX_MAPPINGS) {
		ret = log_fail(-ENOSPC, "MAP_DMA: %u mappings already", DT_MAX_MAPPINGS);
	} else {
		iova_tree_insert(&iommu->tree, &m->node);
		lookup_note_mapping(iommu, iova, size);
		iommu->mapped_bytes += size;
		m = NULL;
	}
	pthread_mutex_unlock(&iommu->lock);
	if (m)
		mapping_free(m);
	return ret;
}

struct unmap_note {
	dt_unmap_cb cb;
	void *opaque;
	uint64_t iova, size;
};

/* The unmap callbacks due: one per (device with a callback, mapping it has pins in). */
static int collect_unmap_notes(struct dt_iommu *iommu, uint64_t iova, uint64_t last,
			       struct unmap_note **notes, unsigned *count)
{
	unsigned n = 0, cap = 0;

	*notes = NULL;
	for (struct dt_mapping *m = mapping_first_in(iommu, iova, last); m;
	     m = mapping_next_in(iommu, m, last)) {
		if (!m->pin_refs)
			continue;
		for (struct dt_device *d = iommu->devices; d; d = d->next) {
			uint64_t it = 0, key, val;

			if (!d->unmap_cb)
				continue;
			while (u64map_next(&d->pins, &it, &key, &val)) {
				/* in pfns: a mapping may end at 2^64, where iova + size wraps */
				if (key < m->iova >> DT_PAGE_SHIFT ||
				    key - (m->iova >> DT_PAGE_SHIFT) >= m->size >> DT_PAGE_SHIFT)
					continue;
				if (n == cap) {
					struct unmap_note *p;

					cap = cap ? cap * 2 : 8;
					p = xrealloc_array(*notes, cap, sizeof(*p));
					if (!p) {
						xfree(*notes);
						*notes = NULL;
						return log_fail(-ENOMEM,
								"UNMAP_DMA: out of memory");
					}
					*notes = p;
				}
				(*notes)[n++] = (struct unmap_note){d->unmap_cb, d->unmap_opaque,
								    m->iova, m->size};
				break;
			}
		}
	}
	*count = n;
	return 0;
}

static int unmap_validate(struct dt_iommu *iommu, uint64_t iova, uint64_t size, bool all,
			  void *bitmap, uint64_t *last)
{
	if (all) {
		if (iova || size)
			return log_fail(-EINVAL, "UNMAP_DMA: FLAG_ALL needs iova and size 0");
		*last = UINT64_MAX;
		return 0;
	}
	if (!size || (iova | size) & (DT_PAGE_SIZE - 1))
		return log_fail(-EINVAL,
				"UNMAP_DMA: iova 0x%llx size 0x%llx not page aligned or empty",
				(unsigned long long)iova, (unsigned long long)size);
	if (iova + size - 1 < iova)
		return log_fail(-EINVAL, "UNMAP_DMA: range wraps");
	if (bitmap && !atomic_load(&iommu->tracking))
		return log_fail(-EINVAL, "UNMAP_DMA: GET_DIRTY_BITMAP while dirty tracking is off");
	*last = iova + size - 1;
	return range_check_uncut(iommu, iova, *last, "UNMAP_DMA");
}

int iommu_unmap(struct dt_iommu *iommu, uint64_t iova, uint64_t size, bool all, uint64_t *unmapped,
		void *bitmap, uint64_t bitmap_size)
{
	struct dt_mapping *gone = NULL, **tail = &gone, *m, *next;
	bool notified = false;
	uint64_t last, total = 0;
	int ret;

	pthread_mutex_lock(&iommu->lock);
again:
	ret = unmap_validate(iommu, iova, size, all, bitmap, &last);
	if (ret)
		goto out;
	if (!notified) {
		struct unmap_note *notes;
		unsigned n = 0;

		/* Tell pinning devices first, unlocked so they may unpin; then start over. */
		ret = collect_unmap_notes(iommu, iova, last, &notes, &n);
		if (ret)
			goto out;
		notified = true;
		if (n) {
			pthread_mutex_unlock(&iommu->lock);
			for (unsigned i = 0; i < n; i++)
				notes[i].cb(notes[i].opaque, notes[i].iova, notes[i].size);
			xfree(notes);
			pthread_mutex_lock(&iommu->lock);
			goto again;
		}
	}
	/* Unpublish, dropping pins (dirty once more if tracking), then wait for markers. */
	for (m = mapping_first_in(iommu, iova, last); m; m = next) {
		next = mapping_next_in(iommu, m, last);
		for (struct dt_device *d = iommu->devices; d && m->pin_refs; d = d->next)
			device_drop_pins_in(d, m);
		iova_tree_remove(&iommu->tree, &m->node);
		lookup_forget_mapping(iommu, m->iova, m->size);
		iommu->mapped_bytes -= m->size;
		total += m->size;
		m->next_gone = NULL;
		*tail = m;
		tail = &m->next_gone;
	}
	if (gone) {
		lookup_invalidate(iommu);
		rcu_synchronize();
		if (bitmap) {
			struct dt_report rep = {.size = sizeof(rep),
						.iova = iova,
						.length = size,
						.bitmap = bitmap,
						.bitmap_size = bitmap_size};

			report_gone_mappings(iommu, &rep, gone);
		}
	}
	while (gone) {
		m = gone;
		gone = m->next_gone;
		mapping_free(m);
	}
	*unmapped = total;
out:
	pthread_mutex_unlock(&iommu->lock);
	return ret;
}

int dt_iommu_dirty_start(struct dt_iommu *iommu)
{
	if (!iommu)
		return -EINVAL;
	pthread_mutex_lock(&iommu->lock);
	atomic_store(&iommu->tracking, 1);
	pthread_mutex_unlock(&iommu->lock);
	return 0;
}

int dt_iommu_dirty_stop(struct dt_iommu *iommu)
{
	if (!iommu)
		return -EINVAL;
	pthread_mutex_lock(&iommu->lock);
	if (atomic_exchange(&iommu->tracking, 0)) {
		rcu_synchronize();
		for (struct dt_mapping *m = mapping_first_in(iommu, 0, UINT64_MAX); m;
		     m = mapping_next_in(iommu, m, UINT64_MAX)) {
			for (unsigned b = 0; b < 2; b++)
				for (unsigned c = 0; c < NCLS; c++)
					sbm_reset_excl(&m->dirty[b][c]);
			atomic_store(&m->whole_pending, 0);
		}
	}
	pthread_mutex_unlock(&iommu->lock);
	return 0;
}

bool dt_iommu_dirty_tracking(const struct dt_iommu *iommu)
{
	return iommu && atomic_load(&((struct dt_iommu *)iommu)->tracking);
}

uint64_t dt_iommu_pgsize(const struct dt_iommu *iommu)
{
	return DT_PAGE_SIZE;
}

int dt_iommu_get_stats(struct dt_iommu *iommu, struct dt_iommu_stats *st)
{
	if (!iommu || !st)
		return log_fail(-EINVAL, "dt_iommu_get_stats: NULL argument");
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&iommu->lock);
	st->mappings = iommu->tree.count;
	st->mapped_bytes = iommu->mapped_bytes;
	st->devices = iommu->ndevices;
	st->pinned_pages = iommu->pin_total.count;
	st->whole_scope = whole_scope(iommu);
	for (struct dt_mapping *m = mapping_first_in(iommu, 0, UINT64_MAX); m;
	     m = mapping_next_in(iommu, m, UINT64_MAX)) {
		for (unsigned b = 0; b < 2; b++)
			for (unsigned c = 0; c < NCLS; c++)
				st->bitmap_bytes += sbm_reserved_bytes(&m->dirty[b][c]);
		st->bitmap_bytes += sbm_reserved_bytes(&m->pinned);
	}
	pthread_mutex_unlock(&iommu->lock);
	return 0;
}

void dt_iommu_free(struct dt_iommu *iommu)
{
	uint64_t unmapped;

	if (!iommu)
		return;
	while (iommu->devices)
		dt_device_detach(iommu->devices);
	iommu_unmap(iommu, 0, 0, true, &unmapped, NULL, 0);
	u64map_destroy(&iommu->pin_total);
	lookup_destroy(iommu);
	for (unsigned i = 0; i < 2 * NCLS + 1; i++)
		arena_destroy(&iommu->planes[i]);
	pthread_mutex_destroy(&iommu->lock);
	xfree(iommu);
}
