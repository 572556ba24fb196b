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
#include <string.h>

#include <linux/vfio.h>

#include "core/bitops.h"
#include "iommu/internal.h"
#include "sys/rcu.h"

void mark_mapping(struct dt_iommu *iommu, struct dt_mapping *m, uint64_t first_page,
		  uint64_t npages, enum dt_class cls)
{
	unsigned set = atomic_load_explicit(&m->active, memory_order_relaxed);

	sbm_set_range(&m->dirty[set][cls], first_page, npages);
}

static struct dt_mapping *find(struct dt_iommu *iommu, uint64_t iova)
{
	struct iova_node *n = iova_tree_find_lockless(&iommu->tree, iova);

	return n ? node_mapping(n) : NULL;
}

/*
 * Check that [iova, last] lies in adjacent mappings that allow `need`. Returns the first
 * mapping, or NULL with *err set. Inside a read-side section.
 */
static struct dt_mapping *range_lookup(struct dt_iommu *iommu, uint64_t iova, uint64_t last,
				       uint32_t need, const char *what, int *err)
{
	struct dt_mapping *first = find(iommu, iova), *m = first;

	for (;;) {
		if (!m) {
			*err = log_fail(-EINVAL, "%s: iova 0x%llx is not mapped", what,
					(unsigned long long)iova);
			return NULL;
		}
		if ((m->flags & need) != need) {
			*err = log_fail(-EPERM, "%s: mapping at 0x%llx forbids device %s", what,
					(unsigned long long)m->iova,
					need & VFIO_DMA_MAP_FLAG_WRITE ? "writes" : "reads");
			return NULL;
		}
		if (last <= m->node.last)
			return first;
		iova = m->node.last + 1;
		m = find(iommu, iova);
	}
}

/* Mark [iova, last] whose mappings were checked; a mapping unmapped meanwhile is skipped. */
static void mark_checked(struct dt_iommu *iommu, struct dt_mapping *m, uint64_t iova, uint64_t last,
			 enum dt_class cls)
{
	while (m) {
		uint64_t end = last < m->node.last ? last : m->node.last;
		uint64_t first_page = (iova - m->iova) >> DT_PAGE_SHIFT;
		uint64_t last_page = (end - m->iova) >> DT_PAGE_SHIFT;

		mark_mapping(iommu, m, first_page, last_page - first_page + 1, cls);
		if (end == last)
			return;
		iova = end + 1;
		m = find(iommu, iova);
	}
}

int dt_dma_log(struct dt_device *dev, uint64_t iova, uint64_t len)
{
	struct dt_iommu *iommu;
	struct dt_mapping *m;
	int err = 0;

	if (!dev)
		return log_fail(-EINVAL, "dt_dma_log: NULL device");
	if (!len || iova + len - 1 < iova)
		return log_fail(-EINVAL, "dt_dma_log: bad range iova 0x%llx len 0x%llx",
				(unsigned long long)iova, (unsigned long long)len);
	iommu = dev->iommu;
	rcu_read_lock();
	m = range_lookup(iommu, iova, iova + len - 1, 0, "dt_dma_log", &err);
	if (m) {
		if (atomic_load_explicit(&iommu->tracking, memory_order_relaxed))
			mark_checked(iommu, m, iova, iova + len - 1, CLS_LOG);
		if (atomic_load_explicit(&dev->log, memory_order_relaxed))
			dev_log_mark(dev, iova, len);
	}
	rcu_read_unlock();
	return err;
}

int dt_dma_rw(struct dt_device *dev, uint64_t iova, void *data, size_t len, bool write)
{
	uint32_t need = write ? VFIO_DMA_MAP_FLAG_WRITE : VFIO_DMA_MAP_FLAG_READ;
	struct dt_iommu *iommu;
	struct dt_mapping *m;
	uint64_t pos = iova, last;
	char *p = data;
	int err = 0;

	if (!dev || !data)
		return log_fail(-EINVAL, "dt_dma_rw: NULL %s", dev ? "buffer" : "device");
	if (!len || iova + len - 1 < iova)
		return log_fail(-EINVAL, "dt_dma_rw: bad range iova 0x%llx len 0x%zx",
				(unsigned long long)iova, len);
	iommu = dev->iommu;
	last = iova + len - 1;
	rcu_read_lock();
	m = range_lookup(iommu, iova, last, need, "dt_dma_rw", &err);
	for (struct dt_mapping *cur = m; cur;) {
		uint64_t end = last < cur->node.last ? last : cur->node.last;
		void *host = (void *)(uintptr_t)(cur->vaddr + (pos - cur->iova));
		size_t n = end - pos + 1;

		if (write)
			memcpy(host, p, n);
		else
			memcpy(p, host, n);
		p += n;
		if (end == last)
			break;
		pos = end + 1;
		cur = find(iommu, pos);
	}
	if (m && write) {
		if (atomic_load_explicit(&iommu->tracking, memory_order_relaxed))
			mark_checked(iommu, m, iova, last, CLS_RW);
		if (atomic_load_explicit(&dev->log, memory_order_relaxed))
			dev_log_mark(dev, iova, len);
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
		mark_mapping(iommu, node_mapping(n), (iova - n->start) >> DT_PAGE_SHIFT,
			     ((last < n->last ? last : n->last) - iova) / DT_PAGE_SIZE + 1, cls);
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
		uint64_t bits = ubuf_load(bitmap, w);

		if (w == nbits / 64)
			bits &= mask_range(0, (unsigned)(nbits % 64));
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
