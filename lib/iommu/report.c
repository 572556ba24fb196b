/* SPDX-License-Identifier: MIT */
/*
 * iommu/report.c - reports: the native dt_iommu_report(), the pinned-set query, and the
 * report of mappings being unmapped with GET_DIRTY_BITMAP. GET_BITMAP of the VFIO path is a
 * native report with the kernel's argument rules in front (vfio_ioctl.c).
 *
 * A clearing report, under iommu->lock: check the range, flip every covered mapping's
 * active set, one grace period (no marker still writes an old set), then per mapping emit
 * the union of the old set, the pinned set and the whole-mapping fallback, zeroing the old
 * set as it is read. Nothing is allocated, so nothing can fail half-way.
 */
#include <errno.h>

#include "core/bitops.h"
#include "core/emit.h"
#include "core/harvest.h"
#include "iommu/internal.h"
#include "sys/rcu.h"

int validate_report(struct dt_iommu *iommu, const struct dt_report *rep, bool pinned_only)
{
	const char *what = pinned_only ? "dt_iommu_pinned" : "dt_iommu_report";
	uint64_t pgsize, nbits;

	if (!iommu || !rep)
		return log_fail(-EINVAL, "%s: NULL argument", what);
	if (rep->size < sizeof(*rep))
		return log_fail(-EINVAL, "%s: struct size %zu, expected %zu", what, rep->size,
				sizeof(*rep));
	if (rep->flags & ~(DT_REPORT_NO_CLEAR | DT_REPORT_SKIP_PINNED))
		return log_fail(-EINVAL, "%s: unknown flags 0x%x", what, rep->flags);
	pgsize = rep->pgsize ? rep->pgsize : DT_PAGE_SIZE;
	if (!is_pow2(pgsize) || pgsize < DT_PAGE_SIZE)
		return log_fail(-EINVAL,
				"%s: report page size 0x%llx is not a power of two >= 4 KiB", what,
				(unsigned long long)pgsize);
	if (!rep->length)
		return log_fail(-EINVAL, "%s: length 0", what);
	if (rep->iova + rep->length - 1 < rep->iova)
		return log_fail(-EOVERFLOW, "%s: range wraps", what);
	if (rep->iova & (pgsize - 1) || rep->length & (DT_PAGE_SIZE - 1))
		return log_fail(-EINVAL, "%s: iova 0x%llx / length 0x%llx not aligned", what,
				(unsigned long long)rep->iova, (unsigned long long)rep->length);
	nbits = div_round_up(rep->length, pgsize);
	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++)
		if (rep->class_bitmap[c] && (pgsize != DT_PAGE_SIZE || pinned_only))
			return log_fail(-EINVAL, "%s: class bitmaps need the container page size",
					what);
	if (rep->bitmap && rep->bitmap_size < words_for_bits(nbits) * 8)
		return log_fail(-EINVAL, "%s: bitmap of %llu bytes, %llu needed", what,
				(unsigned long long)rep->bitmap_size,
				(unsigned long long)(words_for_bits(nbits) * 8));
	return 0;
}

struct requeue_ctx {
	struct dt_iommu *iommu;
	uint64_t base;
};

static void requeue_pages(void *opaque, uint64_t page_rel, uint64_t n)
{
	struct requeue_ctx *c = opaque;
	uint64_t iova = c->base + (page_rel << DT_PAGE_SHIFT);

	mark_range_lockless(c->iommu, iova, n << DT_PAGE_SHIFT, CLS_REQUEUE);
}

static void sink_init(struct emit_sink *sink, const struct dt_report *rep, struct requeue_ctx *rq)
{
	uint64_t pgsize = rep->pgsize ? rep->pgsize : DT_PAGE_SIZE;

	emit_init(sink);
	sink->base_iova = rep->iova;
	sink->end_iova = rep->iova + rep->length; /* 0 when the range ends at 2^64 */
	sink->page_shift = DT_PAGE_SHIFT;
	sink->k = ctz64(pgsize) - DT_PAGE_SHIFT;
	sink->bitmap = rep->bitmap;
	sink->run = rep->run;
	sink->opaque = rep->opaque;
	sink->requeue = requeue_pages;
	sink->requeue_ctx = rq;
}

static void counts_store(struct dt_report_counts *out, const struct harvest_counts *hc)
{
	out->unpinned = hc->cls[CLS_UNPIN];
	out->dma_rw = hc->cls[CLS_RW];
	out->logged = hc->cls[CLS_LOG];
	out->requeued = hc->cls[CLS_REQUEUE];
	out->vmm = hc->cls[CLS_VMM];
	out->pinned = hc->pinned;
	out->whole = hc->whole;
	out->total = hc->total;
}

/* Harvest one mapping from its bitmap set `set` (take: read and clear, exclusively). */
static void harvest_one(struct dt_iommu *iommu, struct dt_mapping *m, unsigned set, bool take,
			bool whole, bool skip_pinned, const struct dt_report *rep,
			struct emit_sink *sink, struct harvest_counts *hc)
{
	struct harvest_src src = {.ncls = NCLS,
				  .take = take,
				  .pinned = &m->pinned,
				  .skip_pinned = skip_pinned,
				  .whole = whole,
				  .npages = m->npages};

	static const enum dt_report_class rc_of[NCLS] = {
		[CLS_UNPIN] = DT_RC_UNPINNED,	[CLS_RW] = DT_RC_DMA_RW, [CLS_LOG] = DT_RC_LOGGED,
		[CLS_REQUEUE] = DT_RC_REQUEUED, [CLS_VMM] = DT_RC_VMM,
	};

	for (unsigned c = 0; c < NCLS; c++) {
		src.cls[c] = &m->dirty[set][c];
		src.cls_out[c] = rep->class_bitmap[rc_of[c]];
	}
	src.pinned_out = rep->class_bitmap[DT_RC_PINNED];
	src.whole_out = rep->class_bitmap[DT_RC_WHOLE];
	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++)
		src.class_out |= rep->class_bitmap[c] != NULL;
	harvest_mapping(&src, (m->iova - rep->iova) >> DT_PAGE_SHIFT, sink, hc);
}

int report_locked(struct dt_iommu *iommu, struct dt_report *rep, bool pinned_only)
{
	const char *what = pinned_only ? "dt_iommu_pinned" : "dt_iommu_report";
	uint64_t last = rep->iova + rep->length - 1;
	bool clear = !pinned_only && !(rep->flags & DT_REPORT_NO_CLEAR);
	struct harvest_counts hc = {0};
	struct requeue_ctx rq = {iommu, rep->iova};
	struct emit_sink sink;
	struct dt_mapping *m;
	int ret;

	if (!pinned_only && !atomic_load(&iommu->tracking))
		return log_fail(-EINVAL, "%s: dirty tracking is off", what);
	ret = range_check_uncut(iommu, rep->iova, last, what);
	if (ret)
		return ret;
	if (clear) {
		for (m = mapping_first_in(iommu, rep->iova, last); m;
		     m = mapping_next_in(iommu, m, last))
			atomic_store(&m->active, !atomic_load(&m->active));
		rcu_synchronize();
	}
	sink_init(&sink, rep, &rq);
	for (m = mapping_first_in(iommu, rep->iova, last); m; m = mapping_next_in(iommu, m, last)) {
		if (pinned_only) {
			struct harvest_src src = {.pinned = &m->pinned, .npages = m->npages};

			harvest_mapping(&src, (m->iova - rep->iova) >> DT_PAGE_SHIFT, &sink, &hc);
			continue;
		}
		bool whole = whole_scope(iommu) || (clear ? atomic_exchange(&m->whole_pending, 0)
							  : atomic_load(&m->whole_pending));
		unsigned active = atomic_load(&m->active);

		harvest_one(iommu, m, clear ? !active : active, clear, whole,
			    rep->flags & DT_REPORT_SKIP_PINNED, rep, &sink, &hc);
	}
	counts_store(&rep->counts, &hc);
	return emit_finish(&sink);
}

int report_gone_mappings(struct dt_iommu *iommu, struct dt_report *rep, struct dt_mapping *gone)
{
	struct harvest_counts hc = {0};
	struct emit_sink sink;

	sink_init(&sink, rep, NULL);
	sink.requeue = NULL;
	for (struct dt_mapping *m = gone; m; m = m->next_gone) {
		bool whole = whole_scope(iommu) || atomic_load(&m->whole_pending);

		/* Unpublished and past a grace period: the active set is ours alone. */
		harvest_one(iommu, m, atomic_load(&m->active), true, whole, false, rep, &sink, &hc);
	}
	counts_store(&rep->counts, &hc);
	return emit_finish(&sink);
}

int dt_iommu_report(struct dt_iommu *iommu, struct dt_report *rep)
{
	int ret = validate_report(iommu, rep, false);

	if (ret)
		return ret;
	pthread_mutex_lock(&iommu->lock);
	ret = report_locked(iommu, rep, false);
	pthread_mutex_unlock(&iommu->lock);
	return ret;
}

int dt_iommu_pinned(struct dt_iommu *iommu, struct dt_report *rep)
{
	int ret = validate_report(iommu, rep, true);

	if (ret)
		return ret;
	if (rep->flags)
		return log_fail(-EINVAL, "dt_iommu_pinned: flags 0x%x (none apply)", rep->flags);
	pthread_mutex_lock(&iommu->lock);
	ret = report_locked(iommu, rep, true);
	pthread_mutex_unlock(&iommu->lock);
	return ret;
}
