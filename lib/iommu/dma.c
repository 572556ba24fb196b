/* SPDX-License-Identifier: MIT */
/*
 * iommu/dma.c - the lock-free marking paths: dt_dma_log, dt_dma_rw and merge-back.
 *
 * Each runs inside an RCU read-side section: it finds the mappings with the lock-free tree
 * lookup, validates the whole range first (so a rejected call marks nothing), then copies
 * and marks. An unmap waits for the section to end before it reads the mapping's bits or
 * frees it, so a call that returned success is in the unmap's bitmap and never touches
 * memory that has been unmapped. Marking writes the mapping's active set; a report flips the
 * set and waits for a grace period before reading the old one.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <linux/vfio.h>

#include "core/bitops.h"
#include "iommu/internal.h"
#include "iommu/lookup.h"
#include "sys/rcu.h"

/* The class of a device's write: its own unless it is the VMM's emulation. */
static enum dt_class device_class(const struct dt_device *dev, enum dt_class cls)
{
	return atomic_load_explicit(&((struct dt_device *)dev)->flags, memory_order_relaxed) &
			       DT_DEVICE_F_VMM
		       ? CLS_VMM
		       : cls;
}

/* The mappings a range was validated against, kept so that the copy and the marks use the
 * same ones even if an unmap unpublishes them meanwhile (they stay valid until our read-side
 * section ends, and the unmap reports our marks). Longer spans are looked up again. */
#define SPAN_KEEP 8

struct span {
	struct dt_mapping *m[SPAN_KEEP];
	unsigned n; /* mappings in the range (may exceed SPAN_KEEP) */
};

/*
 * Check that [iova, last] lies in adjacent mappings that allow `need`. Returns 0 with the
 * span filled, or the errno. Inside a read-side section.
 */
static int range_lookup(struct dt_iommu *iommu, uint64_t iova, uint64_t last, uint32_t need,
			const char *what, struct span *sp)
{
	struct dt_mapping *m = lookup_find(iommu, iova);

	sp->n = 0;
	for (;;) {
		if (!m)
			return log_fail(-EINVAL, "%s: iova 0x%llx is not mapped", what,
					(unsigned long long)iova);
		if ((m->flags & need) != need)
			return log_fail(-EPERM, "%s: mapping at 0x%llx forbids device %s", what,
					(unsigned long long)m->iova,
					need & VFIO_DMA_MAP_FLAG_WRITE ? "writes" : "reads");
		if (sp->n < SPAN_KEEP)
			sp->m[sp->n] = m;
		sp->n++;
		if (last <= m->node.last)
			return 0;
		iova = m->node.last + 1;
		m = lookup_find(iommu, iova);
	}
}

/* The i-th mapping of a validated span, which starts at iova; NULL only if it lay beyond
 * SPAN_KEEP and an unmap removed it since. */
static struct dt_mapping *span_at(struct dt_iommu *iommu, const struct span *sp, unsigned i,
				  uint64_t iova)
{
	return i < SPAN_KEEP ? sp->m[i] : lookup_find(iommu, iova);
}

/* Mark [iova, last], a validated span. */
static void mark_span(struct dt_iommu *iommu, const struct span *sp, uint64_t iova, uint64_t last,
		      enum dt_class cls)
{
	for (unsigned i = 0; i < sp->n; i++) {
		struct dt_mapping *m = span_at(iommu, sp, i, iova);
		uint64_t end;

		if (!m)
			return;
		end = last < m->node.last ? last : m->node.last;
		mark_bytes(m, iova, end, cls);
		if (end == last)
			return;
		iova = end + 1;
	}
}

/* dt_dma_log's general case: a range over several mappings, or an error. Inside the
 * caller's read-side section. */
static __attribute__((noinline)) int dma_log_span(struct dt_device *dev, uint64_t iova,
						  uint64_t len)
{
	struct dt_iommu *iommu = dev->iommu;
	struct span sp;
	int err;

	err = range_lookup(iommu, iova, iova + len - 1, 0, "dt_dma_log", &sp);
	if (!err && atomic_load_explicit(&iommu->tracking, memory_order_relaxed))
		mark_span(iommu, &sp, iova, iova + len - 1, device_class(dev, CLS_LOG));
	return err;
}

int dt_dma_log(struct dt_device *dev, uint64_t iova, uint64_t len)
{
	struct dt_mapping *m;
	struct dt_iommu *iommu;
	int err = 0;

	if (!dev)
		return log_fail(-EINVAL, "dt_dma_log: NULL device");
	if (!len || iova + len - 1 < iova)
		return log_fail(-EINVAL, "dt_dma_log: bad range iova 0x%llx len 0x%llx",
				(unsigned long long)iova, (unsigned long long)len);
	iommu = dev->iommu;
	rcu_read_lock();
	m = lookup_find(iommu, iova);
	if (__builtin_expect(m && iova + len - 1 <= m->node.last, 1)) {
		/* Within one mapping (any mapping allows device logging): no span to walk. */
		if (atomic_load_explicit(&iommu->tracking, memory_order_relaxed))
			mark_bytes(m, iova, iova + len - 1, device_class(dev, CLS_LOG));
	} else {
		err = dma_log_span(dev, iova, len);
	}
	if (!err && atomic_load_explicit(&dev->log, memory_order_relaxed))
		dev_log_mark(dev, iova, len);
	rcu_read_unlock();
	return err;
}

/* The ranges dt_dma_log_batch looks up and prefetches before it marks them. */
#define BATCH_AHEAD 16

/* A range within one leaf word of one mapping: where its bits go, found ahead. */
struct batch_mark {
	struct sbitmap *b; /* NULL: not that simple, dt_dma_log's general path marks it */
	uint64_t word, bits;
};

/* Look up range r (inside a read-side section) and prefetch its leaf word and hints. */
static void batch_prepare(struct dt_iommu *iommu, enum dt_class cls, const struct dt_dma_range *r,
			  struct batch_mark *bm)
{
	uint64_t first, last;
	struct dt_mapping *m;

	bm->b = NULL;
	if (!r->len || r->iova + r->len - 1 < r->iova)
		return;
	m = lookup_find(iommu, r->iova);
	if (!m || r->iova + r->len - 1 > m->node.last)
		return;
	first = mapping_page(m, r->iova);
	last = mapping_page(m, r->iova + r->len - 1);
	if (first / 64 != last / 64)
		return;
	bm->b = &m->dirty[atomic_load_explicit(&m->active, memory_order_relaxed)][cls];
	bm->word = first / 64;
	bm->bits = mask_range(first % 64, last % 64 + 1);
	__builtin_prefetch((const void *)&bm->b->leaf[bm->word], 1);
	__builtin_prefetch((const void *)&bm->b->summary[bm->word / 64], 1);
}

int dt_dma_log_batch(struct dt_device *dev, const struct dt_dma_range *ranges, unsigned n)
{
	struct batch_mark bm[BATCH_AHEAD];
	struct dt_iommu *iommu;
	enum dt_class cls;
	unsigned done = 0;
	int err = 0;

	if (!dev)
		return log_fail(-EINVAL, "dt_dma_log_batch: NULL device");
	if ((!ranges && n) || n > INT_MAX)
		return log_fail(-EINVAL, "dt_dma_log_batch: %s",
				n > INT_MAX ? "n > INT_MAX" : "NULL ranges");
	iommu = dev->iommu;
	cls = device_class(dev, CLS_LOG);
	rcu_read_lock();
	while (done < n && !err) {
		unsigned k = n - done < BATCH_AHEAD ? n - done : BATCH_AHEAD;
		bool tracking = atomic_load_explicit(&iommu->tracking, memory_order_relaxed);
		bool fine = lookup_fine_used(iommu);

		/* Three passes, each over all k ranges so their misses overlap: the lookup
		 * slots, the mappings they name, then the lookups proper (which prefetch the
		 * bitmap words the marks will write). */
		for (unsigned pass = 0; tracking && pass < 2; pass++)
			for (unsigned j = 0; j < k; j++)
				lookup_prefetch(iommu, ranges[done + j].iova, pass == 0, fine, cls);
		for (unsigned j = 0; j < k; j++) {
			bm[j].b = NULL;
			if (tracking)
				batch_prepare(iommu, cls, &ranges[done + j], &bm[j]);
		}
		for (unsigned j = 0; j < k && !err; j++) {
			const struct dt_dma_range *r = &ranges[done];

			if (bm[j].b) {
				sbm_set_in_word(bm[j].b, bm[j].word, bm[j].bits);
				if (atomic_load_explicit(&dev->log, memory_order_relaxed))
					dev_log_mark(dev, r->iova, r->len);
			} else {
				/* Anything else, errors included, takes the single call (its own
				 * checks and messages; its section nests in ours). */
				err = dt_dma_log(dev, r->iova, r->len);
			}
			done += !err;
		}
	}
	rcu_read_unlock();
	if (err && !done)
		return err; /* the first range was rejected */
	return (int)done;
}

int dt_dma_rw(struct dt_device *dev, uint64_t iova, void *data, size_t len, bool write)
{
	uint32_t need = write ? VFIO_DMA_MAP_FLAG_WRITE : VFIO_DMA_MAP_FLAG_READ;
	struct dt_iommu *iommu;
	uint64_t pos = iova, last;
	struct span sp;
	char *p = data;
	int err;

	if (!dev || !data)
		return log_fail(-EINVAL, "dt_dma_rw: NULL %s", dev ? "buffer" : "device");
	if (!len || iova + len - 1 < iova)
		return log_fail(-EINVAL, "dt_dma_rw: bad range iova 0x%llx len 0x%zx",
				(unsigned long long)iova, len);
	iommu = dev->iommu;
	last = iova + len - 1;
	rcu_read_lock();
	err = range_lookup(iommu, iova, last, need, "dt_dma_rw", &sp);
	for (unsigned i = 0; !err && i < sp.n; i++) {
		struct dt_mapping *cur = span_at(iommu, &sp, i, pos);
		uint64_t end;
		void *host;

		if (!cur) {
			err = log_fail(-EINVAL,
				       "dt_dma_rw: iova 0x%llx was unmapped during the copy",
				       (unsigned long long)pos);
			break;
		}
		end = last < cur->node.last ? last : cur->node.last;
		host = (void *)(uintptr_t)(cur->vaddr + (pos - cur->iova));
		if (write)
			memcpy(host, p, end - pos + 1);
		else
			memcpy(p, host, end - pos + 1);
		p += end - pos + 1;
		pos = end + 1;
	}
	if (write && p != (char *)data) {
		/* Whatever was written is marked, even the part before a racing unmap. */
		if (atomic_load_explicit(&iommu->tracking, memory_order_relaxed))
			mark_span(iommu, &sp, iova, iova + (uint64_t)(p - (char *)data) - 1,
				  device_class(dev, CLS_RW));
		if (atomic_load_explicit(&dev->log, memory_order_relaxed))
			dev_log_mark(dev, iova, (uint64_t)(p - (char *)data));
	}
	rcu_read_unlock();
	return err;
}

void mark_range_lockless(struct dt_iommu *iommu, uint64_t iova, uint64_t len, enum dt_class cls)
{
	uint64_t last = iova + len - 1;

	rcu_read_lock();
	while (atomic_load_explicit(&iommu->tracking, memory_order_relaxed)) {
		struct iova_node *n = iova_tree_ceil_lockless(&iommu->tree, iova);

		if (!n || n->start > last)
			break;
		if (n->start > iova)
			iova = n->start;
		mark_bytes(node_mapping(n), iova, last < n->last ? last : n->last, cls);
		if (n->last >= last)
			break;
		iova = n->last + 1;
	}
	rcu_read_unlock();
}

int dt_iommu_merge_back(struct dt_iommu *iommu, uint64_t iova, uint64_t length)
{
	if (!iommu)
		return log_fail(-EINVAL, "dt_iommu_merge_back: NULL container");
	if (!length || (iova | length) & (DT_PAGE_SIZE - 1))
		return log_fail(
			-EINVAL,
			"dt_iommu_merge_back: iova 0x%llx length 0x%llx not page aligned or empty",
			(unsigned long long)iova, (unsigned long long)length);
	if (iova + length - 1 < iova)
		return log_fail(-EOVERFLOW, "dt_iommu_merge_back: range wraps");
	mark_range_lockless(iommu, iova, length, CLS_REQUEUE);
	return 0;
}

int dt_iommu_merge_back_bitmap(struct dt_iommu *iommu, uint64_t iova, uint64_t pgsize,
			       const void *bitmap, uint64_t nbits)
{
	unsigned shift;

	if (!iommu || (!bitmap && nbits))
		return log_fail(-EINVAL, "dt_iommu_merge_back_bitmap: NULL argument");
	if (!is_pow2(pgsize) || pgsize < DT_PAGE_SIZE || iova & (pgsize - 1))
		return log_fail(-EINVAL, "dt_iommu_merge_back_bitmap: pgsize 0x%llx iova 0x%llx",
				(unsigned long long)pgsize, (unsigned long long)iova);
	shift = (unsigned)ctz64(pgsize);
	if (nbits > (UINT64_MAX >> shift) || (nbits && iova + (nbits << shift) - 1 < iova))
		return log_fail(-EOVERFLOW, "dt_iommu_merge_back_bitmap: range wraps");
	for (uint64_t w = 0; w < words_for_bits(nbits); w++) {
		uint64_t bits = 0;

		/* The last word may be partial: read only the bytes that hold its bits. */
		if (w == nbits / 64) {
			memcpy(&bits, (const char *)bitmap + w * 8, div_round_up(nbits % 64, 8));
			bits &= mask_range(0, (unsigned)(nbits % 64));
		} else {
			bits = ubuf_load(bitmap, w);
		}
		while (bits) {
			unsigned b = ctz64(bits);
			uint64_t rest = ~(bits >> b);
			unsigned len = rest ? ctz64(rest) : 64 - b;

			mark_range_lockless(iommu, iova + ((w * 64 + b) << shift),
					    (uint64_t)len << shift, CLS_REQUEUE);
			bits = b + len >= 64 ? 0 : bits & (~0ull << (b + len));
		}
	}
	return 0;
}
