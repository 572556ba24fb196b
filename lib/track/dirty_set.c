/* SPDX-License-Identifier: MIT */
/*
 * track/dirty_set.c - one harvest over every source and container of an address space,
 * into per-class bitmaps.
 *
 * Classes: CPU from the sources; from each container, VMM = its "vmm" class, PINNED = its
 * pinned set, DEVICE = dma_rw | logged | unpinned | requeued, WHOLE = its whole-mapping
 * fallback (report class bitmaps may alias, so DEVICE's four are OR-ed into one bitmap).
 *
 * Transactions: the class bitmaps of the last harvest stay in the set. A consumer that could
 * not send some pages hands them back (dt_dirty_set_merge_back): pages the containers gave
 * go back to the containers (class "requeued"), pages the sources gave wait in `pending`
 * and join the CPU class of the next harvest; so does everything a harvest read before one
 * of its steps failed.
 *
 * Pre-harvest hooks run first, before the set changes anything: a failing hook fails the
 * harvest with the set exactly as it was (what the hook marked stays in its container).
 */
#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "track/source.h"

struct set_iommu {
	struct dt_iommu *iommu;
	uint64_t iova_base;
};

struct set_hook {
	dt_pre_harvest_fn fn;
	void *opaque;
};

struct dt_dirty_set {
	uint64_t base, length, npages, nwords;
	struct set_hook *hooks;
	unsigned nhooks;
	struct dt_source **sources;
	unsigned nsources;
	struct set_iommu *iommus;
	unsigned niommus;
	uint64_t *bits[DT_NCLASSES]; /* the last harvest */
	uint64_t *all;
	uint64_t *pending; /* CPU pages to report again */
};

struct dt_dirty_set *dt_dirty_set_new(const struct dt_dirty_set_opts *opts)
{
	struct dt_dirty_set *set;
	bool ok;

	if (!opts || opts->size < sizeof(*opts) || !opts->length ||
	    (opts->base | opts->length) & (SRC_PAGE_SIZE - 1) ||
	    opts->base + opts->length - 1 < opts->base) {
		log_err("dt_dirty_set_new: bad options (base and length page aligned, length > 0)");
		errno = EINVAL;
		return NULL;
	}
	set = xzalloc(sizeof(*set));
	if (!set)
		goto nomem;
	set->base = opts->base;
	set->length = opts->length;
	set->npages = opts->length >> SRC_PAGE_SHIFT;
	set->nwords = words_for_bits(set->npages);
	ok = true;
	for (unsigned c = 0; c < DT_NCLASSES; c++)
		ok &= (set->bits[c] = xzalloc_big(set->nwords * 8)) != NULL;
	ok &= (set->all = xzalloc_big(set->nwords * 8)) != NULL;
	ok &= (set->pending = xzalloc_big(set->nwords * 8)) != NULL;
	if (ok)
		return set;
	dt_dirty_set_free(set);
nomem:
	log_err("dt_dirty_set_new: out of memory");
	errno = ENOMEM;
	return NULL;
}

void dt_dirty_set_free(struct dt_dirty_set *set)
{
	if (!set)
		return;
	for (unsigned c = 0; c < DT_NCLASSES; c++)
		xfree_big(set->bits[c], set->nwords * 8);
	xfree_big(set->all, set->nwords * 8);
	xfree_big(set->pending, set->nwords * 8);
	xfree(set->sources);
	xfree(set->iommus);
	xfree(set->hooks);
	xfree(set);
}

uint64_t dt_dirty_set_base(const struct dt_dirty_set *set)
{
	return set ? set->base : 0;
}

uint64_t dt_dirty_set_length(const struct dt_dirty_set *set)
{
	return set ? set->length : 0;
}

int dt_dirty_set_add_source(struct dt_dirty_set *set, struct dt_source *src)
{
	struct dt_source **p;

	if (!set || !src)
		return log_fail(-EINVAL, "dt_dirty_set_add_source: NULL argument");
	p = xrealloc_array(set->sources, set->nsources + 1, sizeof(*p));
	if (!p)
		return log_fail(-ENOMEM, "dt_dirty_set_add_source: out of memory");
	p[set->nsources++] = src;
	set->sources = p;
	return 0;
}

int dt_dirty_set_add_iommu(struct dt_dirty_set *set, struct dt_iommu *iommu, uint64_t iova_base)
{
	struct set_iommu *p;

	if (!set || !iommu)
		return log_fail(-EINVAL, "dt_dirty_set_add_iommu: NULL argument");
	if (iova_base & (SRC_PAGE_SIZE - 1) || iova_base + set->length - 1 < iova_base)
		return log_fail(
			-EINVAL,
			"dt_dirty_set_add_iommu: iova base 0x%llx unaligned or the range wraps",
			(unsigned long long)iova_base);
	p = xrealloc_array(set->iommus, set->niommus + 1, sizeof(*p));
	if (!p)
		return log_fail(-ENOMEM, "dt_dirty_set_add_iommu: out of memory");
	p[set->niommus++] = (struct set_iommu){iommu, iova_base};
	set->iommus = p;
	return 0;
}

int dt_dirty_set_add_pre_harvest(struct dt_dirty_set *set, dt_pre_harvest_fn fn, void *opaque)
{
	struct set_hook *p;

	if (!set || !fn)
		return log_fail(-EINVAL, "dt_dirty_set_add_pre_harvest: NULL argument");
	p = xrealloc_array(set->hooks, set->nhooks + 1, sizeof(*p));
	if (!p)
		return log_fail(-ENOMEM, "dt_dirty_set_add_pre_harvest: out of memory");
	p[set->nhooks++] = (struct set_hook){fn, opaque};
	set->hooks = p;
	return 0;
}

static uint64_t popcount_words(const uint64_t *w, uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += popcount64(w[i]);
	return c;
}

/* Keep what a failed harvest already read: it joins the next one. */
static void keep_for_next(struct dt_dirty_set *set)
{
	for (unsigned c = 0; c < DT_NCLASSES; c++)
		for (uint64_t i = 0; i < set->nwords; i++)
			set->pending[i] |= set->bits[c][i];
}

static int harvest_iommu(struct dt_dirty_set *set, const struct set_iommu *si)
{
	struct dt_report rep = {.size = sizeof(rep), .iova = si->iova_base, .length = set->length};

	rep.class_bitmap[DT_RC_PINNED] = set->bits[DT_CLASS_PINNED];
	rep.class_bitmap[DT_RC_VMM] = set->bits[DT_CLASS_VMM];
	rep.class_bitmap[DT_RC_WHOLE] = set->bits[DT_CLASS_WHOLE];
	rep.class_bitmap[DT_RC_DMA_RW] = set->bits[DT_CLASS_DEVICE];
	rep.class_bitmap[DT_RC_LOGGED] = set->bits[DT_CLASS_DEVICE];
	rep.class_bitmap[DT_RC_UNPINNED] = set->bits[DT_CLASS_DEVICE];
	rep.class_bitmap[DT_RC_REQUEUED] = set->bits[DT_CLASS_DEVICE];
	return dt_iommu_report(si->iommu, &rep);
}

int dt_dirty_set_harvest(struct dt_dirty_set *set, uint32_t flags, struct dt_harvest *out)
{
	bool skip = flags & DT_HARVEST_SKIP_PINNED;
	int ret = 0;

	if (!set || !out)
		return log_fail(-EINVAL, "dt_dirty_set_harvest: NULL argument");
	if (flags & ~DT_HARVEST_SKIP_PINNED)
		return log_fail(-EINVAL, "dt_dirty_set_harvest: unknown flags 0x%x", flags);
	for (unsigned i = 0; i < set->nhooks; i++) {
		ret = set->hooks[i].fn(set->hooks[i].opaque);
		if (ret > 0 || ret < -4095)
			ret = -EIO; /* not an errno: still a failure */
		if (ret)
			return log_fail(
				ret,
				"dt_dirty_set_harvest: pre-harvest hook %u failed (%d); nothing harvested, nothing lost",
				i, ret);
	}
	for (unsigned c = 0; c < DT_NCLASSES; c++)
		memset(set->bits[c], 0, set->nwords * 8);
	/* Pages handed back (or read by a failed harvest) come first: they are not lost. */
	memcpy(set->bits[DT_CLASS_CPU], set->pending, set->nwords * 8);
	memset(set->pending, 0, set->nwords * 8);
	for (unsigned i = 0; i < set->nsources && !ret; i++) {
		int64_t n = dt_source_harvest(set->sources[i], set->base, set->npages,
					      set->bits[DT_CLASS_CPU], 0);

		if (n < 0)
			ret = (int)n;
	}
	for (unsigned i = 0; i < set->niommus && !ret; i++)
		ret = harvest_iommu(set, &set->iommus[i]);
	if (ret) {
		keep_for_next(set);
		return log_fail(
			ret,
			"dt_dirty_set_harvest: a source failed (%d); what was read is kept for the next harvest",
			ret);
	}
	memset(out, 0, sizeof(*out));
	for (uint64_t i = 0; i < set->nwords; i++) {
		uint64_t u = set->bits[DT_CLASS_CPU][i] | set->bits[DT_CLASS_VMM][i] |
			     set->bits[DT_CLASS_DEVICE][i] | set->bits[DT_CLASS_WHOLE][i];
		uint64_t p = set->bits[DT_CLASS_PINNED][i];

		set->all[i] = skip ? u & ~p : u | p;
	}
	out->npages = set->npages;
	for (unsigned c = 0; c < DT_NCLASSES; c++) {
		out->class_bits[c] = set->bits[c];
		out->count[c] = popcount_words(set->bits[c], set->nwords);
	}
	out->all = set->all;
	out->total = popcount_words(set->all, set->nwords);
	return 0;
}

int dt_dirty_set_merge_back(struct dt_dirty_set *set, const uint64_t *bitmap)
{
	if (!set || !bitmap)
		return log_fail(-EINVAL, "dt_dirty_set_merge_back: NULL argument");
	for (uint64_t i = 0; i < set->nwords; i++) {
		uint64_t back = bitmap[i],
			 from_iommu = set->bits[DT_CLASS_VMM][i] | set->bits[DT_CLASS_DEVICE][i] |
				      set->bits[DT_CLASS_WHOLE][i] | set->bits[DT_CLASS_PINNED][i];

		if (i == set->nwords - 1 && set->npages % 64)
			back &= mask_range(0, set->npages % 64);
		/* Container pages go back to the containers; the rest (CPU pages, and pages the
		 * last harvest did not give: the caller knows best) wait here. */
		set->pending[i] |= back & ~from_iommu;
		if (!(back & from_iommu))
			continue;
		for (unsigned k = 0; k < set->niommus; k++) {
			uint64_t word = back & from_iommu;
			int ret = dt_iommu_merge_back_bitmap(
				set->iommus[k].iommu,
				set->iommus[k].iova_base + i * 64 * SRC_PAGE_SIZE, SRC_PAGE_SIZE,
				&word,
				i == set->nwords - 1 && set->npages % 64 ? set->npages % 64 : 64);

			if (ret)
				return ret;
		}
	}
	return 0;
}
