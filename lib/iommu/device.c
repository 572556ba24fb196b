/* SPDX-License-Identifier: MIT */
/*
 * iommu/device.c - devices: attach/detach, pin/unpin and the scope rules of their kinds.
 *
 * Pin bookkeeping (all under iommu->lock): dev->pins counts this device's pins per page;
 * iommu->pin_total counts, per page, pins of any device (low 32 bits) and pins of devices
 * whose pins dirty (high 32 bits); mapping->pinned holds the pages whose dirtying count is
 * non-zero: the perpetually dirty set re-added to every report. When a page's dirtying count
 * falls to zero while tracking is on, the page is marked "unpinned" (dirty once more).
 *
 * A pin is all-or-nothing: every page is validated and the hash maps are grown for the
 * worst case before the first count changes.
 */
#include <errno.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include "core/alloc.h"
#include "iommu/internal.h"

#define DIRTY_ONE (1ull << 32)
#define ANY_MASK  (DIRTY_ONE - 1)

struct dt_device *dt_device_attach(struct dt_iommu *iommu, enum dt_device_kind kind)
{
	struct dt_device *dev;

	if (!iommu) {
		log_err("dt_device_attach: NULL container");
		errno = EINVAL;
		return NULL;
	}
	if (kind != DT_DEVICE_EMULATED && kind != DT_DEVICE_PASSTHROUGH &&
	    kind != DT_DEVICE_LOGGING) {
		log_err("dt_device_attach: unknown device kind %d", (int)kind);
		errno = EINVAL;
		return NULL;
	}
	dev = xzalloc(sizeof(*dev));
	if (!dev) {
		log_err("dt_device_attach: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	dev->iommu = iommu;
	dev->kind = kind;
	u64map_init(&dev->pins);
	pthread_mutex_lock(&iommu->lock);
	dev->next = iommu->devices;
	iommu->devices = dev;
	iommu->ndevices++;
	if (kind == DT_DEVICE_PASSTHROUGH)
		iommu->unpinned_passthrough++;
	pthread_mutex_unlock(&iommu->lock);
	return dev;
}

enum dt_device_kind dt_device_kind(const struct dt_device *dev)
{
	return dev->kind;
}

int dt_device_set_flags(struct dt_device *dev, uint32_t flags)
{
	if (!dev)
		return log_fail(-EINVAL, "dt_device_set_flags: NULL device");
	if (flags & ~DT_DEVICE_F_VMM)
		return log_fail(-EINVAL, "dt_device_set_flags: unknown flags 0x%x", flags);
	atomic_store(&dev->flags, flags);
	return 0;
}

int dt_device_set_unmap_cb(struct dt_device *dev, dt_unmap_cb cb, void *opaque)
{
	if (!dev)
		return log_fail(-EINVAL, "dt_device_set_unmap_cb: NULL device");
	pthread_mutex_lock(&dev->iommu->lock);
	dev->unmap_cb = cb;
	dev->unmap_opaque = opaque;
	pthread_mutex_unlock(&dev->iommu->lock);
	return 0;
}

static struct dt_mapping *mapping_of_pfn(struct dt_iommu *iommu, uint64_t pfn)
{
	struct iova_node *n = iova_tree_find_locked(&iommu->tree, pfn << DT_PAGE_SHIFT);

	return n ? node_mapping(n) : NULL;
}

/* Drop one pin of dev on pfn (which it holds), in mapping m. */
static void pin_put(struct dt_device *dev, uint64_t pfn, struct dt_mapping *m)
{
	struct dt_iommu *iommu = dev->iommu;
	uint64_t *mine = u64map_find(&dev->pins, pfn);
	uint64_t *total = u64map_find(&iommu->pin_total, pfn);
	uint64_t page = pfn - (m->iova >> DT_PAGE_SHIFT);

	if (--*mine == 0)
		u64map_remove(&dev->pins, pfn);
	m->pin_refs--;
	*total -= 1;
	if (device_dirties_pins(dev)) {
		*total -= DIRTY_ONE;
		if (!(*total >> 32)) {
			sbm_clear_bit_excl(&m->pinned, page);
			if (atomic_load(&iommu->tracking))
				mark_mapping(m, page, 1, CLS_UNPIN);
		}
	}
	if (!*total)
		u64map_remove(&iommu->pin_total, pfn);
}

void device_drop_pin(struct dt_device *dev, uint64_t pfn, struct dt_mapping *m)
{
	uint64_t *mine = u64map_find(&dev->pins, pfn);

	while (mine) {
		pin_put(dev, pfn, m);
		mine = u64map_find(&dev->pins, pfn);
	}
}

/* Collect this device's pinned pfns in [lo, hi) (every pfn when m is NULL), then drop. */
static void drop_pins_between(struct dt_device *dev, struct dt_mapping *m, uint64_t lo, uint64_t hi)
{
	uint64_t it = 0, key, val, n = 0, *keys;

	keys = xcalloc(dev->pins.count ? dev->pins.count : 1, sizeof(*keys));
	if (!keys) {
		/* Slow path without memory: one pass per pin. */
		for (bool found = true; found;) {
			found = false;
			for (it = 0; u64map_next(&dev->pins, &it, &key, &val);) {
				if (key >= lo && key < hi) {
					device_drop_pin(dev, key,
							m ? m : mapping_of_pfn(dev->iommu, key));
					found = true;
					break;
				}
			}
		}
		return;
	}
	while (u64map_next(&dev->pins, &it, &key, &val))
		if (key >= lo && key < hi)
			keys[n++] = key;
	for (uint64_t i = 0; i < n; i++)
		device_drop_pin(dev, keys[i], m ? m : mapping_of_pfn(dev->iommu, keys[i]));
	xfree(keys);
}

void device_drop_pins_in(struct dt_device *dev, struct dt_mapping *m)
{
	/* in pfns: a mapping may end at 2^64, where iova + size wraps to 0 and would drop none */
	drop_pins_between(dev, m, m->iova >> DT_PAGE_SHIFT,
			  (m->iova >> DT_PAGE_SHIFT) + (m->size >> DT_PAGE_SHIFT));
}

int dt_device_detach(struct dt_device *dev)
{
	struct dt_iommu *iommu;
	struct dt_device **pp;

	if (!dev)
		return log_fail(-EINVAL, "dt_device_detach: NULL device");
	iommu = dev->iommu;
	pthread_mutex_lock(&iommu->lock);
	drop_pins_between(dev, NULL, 0, UINT64_MAX);
	if (dev->kind == DT_DEVICE_PASSTHROUGH && !dev->has_pinned) {
		iommu->unpinned_passthrough--;
		/* It may have written anywhere since the last report. */
		if (atomic_load(&iommu->tracking))
			mark_all_mappings_whole(iommu);
	}
	for (pp = &iommu->devices; *pp != dev; pp = &(*pp)->next)
		;
	*pp = dev->next;
	iommu->ndevices--;
	pthread_mutex_unlock(&iommu->lock);
	dev_log_free(atomic_exchange(&dev->log, NULL));
	u64map_destroy(&dev->pins);
	xfree(dev);
	return 0;
}

static int prot_to_flags(int prot, uint32_t *flags)
{
	if (!prot || prot & ~(PROT_READ | PROT_WRITE))
		return -EINVAL;
	*flags = (prot & PROT_READ ? VFIO_DMA_MAP_FLAG_READ : 0) |
		 (prot & PROT_WRITE ? VFIO_DMA_MAP_FLAG_WRITE : 0);
	return 0;
}

/* Check every page of a pin request; 0 or the errno of the first bad page. */
static int pin_validate(struct dt_iommu *iommu, uint64_t pfn0, int npage, uint32_t need)
{
	struct dt_mapping *m = NULL;

	for (int i = 0; i < npage; i++) {
		uint64_t iova = (pfn0 + i) << DT_PAGE_SHIFT;

		if (!m || iova > m->node.last)
			m = mapping_of_pfn(iommu, pfn0 + i);
		if (!m)
			return log_fail(-EINVAL, "dt_pin_pages: iova 0x%llx is not mapped",
					(unsigned long long)iova);
		if ((m->flags & need) != need)
			return log_fail(-EPERM, "dt_pin_pages: mapping at 0x%llx forbids %s",
					(unsigned long long)m->iova,
					need & VFIO_DMA_MAP_FLAG_WRITE ? "write" : "read");
	}
	return 0;
}

int dt_pin_pages(struct dt_device *dev, uint64_t iova, int npage, int prot, void **vaddrs)
{
	struct dt_iommu *iommu;
	struct dt_mapping *m = NULL;
	uint64_t pfn0 = iova >> DT_PAGE_SHIFT;
	uint32_t need;
	int ret;

	if (!dev)
		return log_fail(-EINVAL, "dt_pin_pages: NULL device");
	if (npage <= 0 || iova & (DT_PAGE_SIZE - 1))
		return log_fail(-EINVAL,
				"dt_pin_pages: npage %d iova 0x%llx (must be > 0, aligned)", npage,
				(unsigned long long)iova);
	if (pfn0 + (uint64_t)npage - 1 > (UINT64_MAX >> DT_PAGE_SHIFT))
		return log_fail(-EINVAL, "dt_pin_pages: range wraps");
	if (prot_to_flags(prot, &need))
		return log_fail(-EINVAL, "dt_pin_pages: prot 0x%x is not PROT_READ|PROT_WRITE",
				prot);
	iommu = dev->iommu;
	pthread_mutex_lock(&iommu->lock);
	ret = pin_validate(iommu, pfn0, npage, need);
	if (!ret && (u64map_reserve(&dev->pins, (uint64_t)npage) ||
		     u64map_reserve(&iommu->pin_total, (uint64_t)npage)))
		ret = log_fail(-ENOMEM, "dt_pin_pages: out of memory");
	for (int i = 0; i < npage && !ret; i++) {
		uint64_t *c = u64map_find(&dev->pins, pfn0 + i);

		if (c && *c >= UINT32_MAX)
			ret = log_fail(-EOVERFLOW, "dt_pin_pages: pin count overflow");
	}
	if (ret)
		goto out;
	if (dev->kind == DT_DEVICE_PASSTHROUGH && !dev->has_pinned) {
		/* Promotion: it may have written anywhere until now. */
		dev->has_pinned = true;
		iommu->unpinned_passthrough--;
		if (atomic_load(&iommu->tracking))
			mark_all_mappings_whole(iommu);
	}
	for (int i = 0; i < npage; i++) {
		uint64_t pfn = pfn0 + i, *total;

		if (!m || (pfn << DT_PAGE_SHIFT) > m->node.last)
			m = mapping_of_pfn(iommu, pfn);
		(*u64map_get(&dev->pins, pfn))++;
		total = u64map_get(&iommu->pin_total, pfn);
		*total += 1;
		m->pin_refs++;
		if (device_dirties_pins(dev)) {
			*total += DIRTY_ONE;
			if (*total >> 32 == 1)
				sbm_set_range(&m->pinned, pfn - (m->iova >> DT_PAGE_SHIFT), 1);
		}
		if (vaddrs)
			vaddrs[i] =
				(void *)(uintptr_t)(m->vaddr + ((pfn << DT_PAGE_SHIFT) - m->iova));
	}
	ret = npage;
out:
	pthread_mutex_unlock(&iommu->lock);
	return ret;
}

int dt_unpin_pages(struct dt_device *dev, uint64_t iova, int npage)
{
	struct dt_iommu *iommu;
	struct dt_mapping *m = NULL;
	uint64_t pfn0 = iova >> DT_PAGE_SHIFT;
	int ret = npage;

	if (!dev)
		return log_fail(-EINVAL, "dt_unpin_pages: NULL device");
	if (npage <= 0 || iova & (DT_PAGE_SIZE - 1))
		return log_fail(-EINVAL,
				"dt_unpin_pages: npage %d iova 0x%llx (must be > 0, aligned)",
				npage, (unsigned long long)iova);
	if (pfn0 + (uint64_t)npage - 1 > (UINT64_MAX >> DT_PAGE_SHIFT))
		return log_fail(-EINVAL, "dt_unpin_pages: range wraps");
	iommu = dev->iommu;
	pthread_mutex_lock(&iommu->lock);
	for (int i = 0; i < npage; i++) {
		uint64_t *c = u64map_find(&dev->pins, pfn0 + i);

		/* A page pinned twice in one call needs two pins. */
		if (!c || *c < 1) {
			ret = log_fail(-EINVAL,
				       "dt_unpin_pages: iova 0x%llx is not pinned by this device",
				       (unsigned long long)((pfn0 + i) << DT_PAGE_SHIFT));
			goto out;
		}
	}
	for (int i = 0; i < npage; i++) {
		uint64_t pfn = pfn0 + i;

		if (!m || (pfn << DT_PAGE_SHIFT) > m->node.last || (pfn << DT_PAGE_SHIFT) < m->iova)
			m = mapping_of_pfn(iommu, pfn);
		pin_put(dev, pfn, m);
	}
out:
	pthread_mutex_unlock(&iommu->lock);
	return ret;
}
