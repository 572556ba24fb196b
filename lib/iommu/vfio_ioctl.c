/* SPDX-License-Identifier: MIT */
/*
 * iommu/vfio_ioctl.c - dt_vfio_ioctl(): the VFIO type1 v2 container ioctls with the kernel's
 * argument rules and errnos (SEMANTICS.md section 3), decoded here and carried out by the
 * container (map, unmap) and the native report.
 *
 * Only the argsz-declared part of each struct is read; outputs are written only within it.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <linux/vfio.h>

#include "core/bitops.h"
#include "iommu/internal.h"

#define offsetofend(T, m) (offsetof(T, m) + sizeof(((T *)0)->m))

/* The IOVA-range capability with its one range: the UAPI struct ends in a flexible array,
 * which cannot sit inside another struct; this mirrors it (checked below). */
struct iova_range_cap_one {
	struct vfio_info_cap_header header;
	uint32_t nr_iovas;
	uint32_t reserved;
	struct vfio_iova_range range;
};

_Static_assert(offsetof(struct iova_range_cap_one, nr_iovas) ==
		       offsetof(struct vfio_iommu_type1_info_cap_iova_range, nr_iovas),
	       "mirrors the UAPI layout");
_Static_assert(offsetof(struct iova_range_cap_one, range) ==
		       offsetof(struct vfio_iommu_type1_info_cap_iova_range, iova_ranges),
	       "mirrors the UAPI layout");

/* Capabilities of GET_INFO, in the kernel's order: migration, DMA entries, IOVA ranges. */
struct info_caps {
	struct vfio_iommu_type1_info_cap_migration mig;
	struct vfio_iommu_type1_info_dma_avail avail;
	uint32_t avail_pad;
	struct iova_range_cap_one iova;
};

static void build_caps(struct dt_iommu *iommu, struct info_caps *caps, uint32_t base)
{
	memset(caps, 0, sizeof(*caps));
	caps->mig.header.id = VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION;
	caps->mig.header.version = 1;
	caps->mig.header.next = base + offsetof(struct info_caps, avail);
	caps->mig.flags = 0;
	caps->mig.pgsize_bitmap = DT_PAGE_SIZE;
	caps->mig.max_dirty_bitmap_size = DT_MAX_BITMAP_BYTES;
	caps->avail.header.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
	caps->avail.header.version = 1;
	caps->avail.header.next = base + offsetof(struct info_caps, iova);
	pthread_mutex_lock(&iommu->lock);
	caps->avail.avail = DT_MAX_MAPPINGS - (uint32_t)iommu->tree.count;
	pthread_mutex_unlock(&iommu->lock);
	caps->iova.header.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
	caps->iova.header.version = 1;
	caps->iova.header.next = 0;
	caps->iova.nr_iovas = 1;
	caps->iova.range.start = 0;
	caps->iova.range.end = UINT64_MAX;
}

_Static_assert(offsetof(struct info_caps, avail) % 8 == 0, "caps are 8-byte aligned");
_Static_assert(offsetof(struct info_caps, iova) % 8 == 0, "caps are 8-byte aligned");

static int get_info(struct dt_iommu *iommu, struct vfio_iommu_type1_info *arg)
{
	size_t minsz = offsetofend(struct vfio_iommu_type1_info, iova_pgsizes);
	struct vfio_iommu_type1_info info;
	struct info_caps caps;

	memcpy(&info, arg, minsz);
	if (info.argsz < minsz)
		return log_fail(-EINVAL, "GET_INFO: argsz %u < %zu", info.argsz, minsz);
	info.flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
	info.iova_pgsizes = DT_PAGE_SIZE;
	if (info.argsz >= offsetofend(struct vfio_iommu_type1_info, cap_offset)) {
		minsz = offsetofend(struct vfio_iommu_type1_info, cap_offset);
		info.cap_offset = 0;
	}
	if (info.argsz < sizeof(info) + sizeof(caps)) {
		info.argsz = sizeof(info) + sizeof(caps);
	} else {
		build_caps(iommu, &caps, sizeof(info));
		memcpy((char *)arg + sizeof(info), &caps, sizeof(caps));
		info.cap_offset = sizeof(info);
	}
	memcpy(arg, &info, minsz);
	return 0;
}

static int map_dma(struct dt_iommu *iommu, struct vfio_iommu_type1_dma_map *arg)
{
	size_t minsz = offsetofend(struct vfio_iommu_type1_dma_map, size);

	if (arg->argsz < minsz)
		return log_fail(-EINVAL, "MAP_DMA: argsz %u < %zu", arg->argsz, minsz);
	return iommu_map(iommu, arg->vaddr, arg->iova, arg->size, arg->flags);
}

/* Kernel rule for caller bitmaps: non-empty, at most the advertised maximum, and at least
 * one bit per page rounded up to whole u64 words. */
static int check_bitmap_size(uint64_t npages, uint64_t bitmap_size, const char *what)
{
	if (!npages || !bitmap_size || bitmap_size > DT_MAX_BITMAP_BYTES)
		return log_fail(-EINVAL, "%s: bitmap size %llu for %llu pages", what,
				(unsigned long long)bitmap_size, (unsigned long long)npages);
	if (bitmap_size < words_for_bits(npages) * 8)
		return log_fail(-EINVAL, "%s: bitmap of %llu bytes, %llu needed", what,
				(unsigned long long)bitmap_size,
				(unsigned long long)(words_for_bits(npages) * 8));
	return 0;
}

static unsigned pgshift_of(uint64_t pgsize)
{
	return pgsize ? ctz64(pgsize) : DT_PAGE_SHIFT;
}

static int unmap_dma(struct dt_iommu *iommu, struct vfio_iommu_type1_dma_unmap *arg)
{
	size_t minsz = offsetofend(struct vfio_iommu_type1_dma_unmap, size);
	uint32_t known = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL |
			 VFIO_DMA_UNMAP_FLAG_VADDR;
	struct vfio_bitmap bm;
	uint64_t unmapped = 0;
	bool want_bitmap;
	int ret;

	if (arg->argsz < minsz || arg->flags & ~known)
		return log_fail(-EINVAL, "UNMAP_DMA: argsz %u flags 0x%x", arg->argsz, arg->flags);
	want_bitmap = arg->flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
	if (want_bitmap && arg->argsz < minsz + sizeof(bm))
		return log_fail(-EINVAL, "UNMAP_DMA: argsz %u too small for the bitmap",
				arg->argsz);
	if (want_bitmap && arg->flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR))
		return log_fail(-EINVAL, "UNMAP_DMA: GET_DIRTY_BITMAP with ALL or VADDR");
	if (arg->flags & VFIO_DMA_UNMAP_FLAG_VADDR)
		return log_fail(-EINVAL, "UNMAP_DMA: FLAG_VADDR is not supported");
	if (want_bitmap) {
		memcpy(&bm, arg->data, sizeof(bm));
		ret = check_bitmap_size(arg->size >> pgshift_of(bm.pgsize), bm.size, "UNMAP_DMA");
		if (ret)
			return ret;
		if (bm.pgsize != DT_PAGE_SIZE)
			return log_fail(-EINVAL,
					"UNMAP_DMA: bitmap pgsize 0x%llx, container 0x%llx",
					(unsigned long long)bm.pgsize, DT_PAGE_SIZE);
		if (!bm.data)
			return log_fail(-EINVAL, "UNMAP_DMA: NULL bitmap");
	}
	ret = iommu_unmap(iommu, arg->iova, arg->size, arg->flags & VFIO_DMA_UNMAP_FLAG_ALL,
			  &unmapped, want_bitmap ? (void *)bm.data : NULL,
			  want_bitmap ? bm.size : 0);
	if (!ret)
		arg->size = unmapped;
	return ret;
}

static int get_bitmap(struct dt_iommu *iommu, struct vfio_iommu_type1_dirty_bitmap *arg)
{
	struct vfio_iommu_type1_dirty_bitmap_get range;
	struct dt_report rep = {.size = sizeof(rep)};
	int ret;

	if (arg->argsz < sizeof(*arg) + sizeof(range))
		return log_fail(-EINVAL, "GET_BITMAP: argsz %u < %zu", arg->argsz,
				sizeof(*arg) + sizeof(range));
	memcpy(&range, arg->data, sizeof(range));
	if (!range.size)
		return log_fail(-EINVAL, "GET_BITMAP: size 0");
	if (range.iova + range.size - 1 < range.iova)
		return log_fail(-EOVERFLOW, "GET_BITMAP: range wraps");
	ret = check_bitmap_size(range.size >> pgshift_of(range.bitmap.pgsize), range.bitmap.size,
				"GET_BITMAP");
	if (ret)
		return ret;
	if (range.bitmap.pgsize != DT_PAGE_SIZE)
		return log_fail(-EINVAL, "GET_BITMAP: bitmap pgsize 0x%llx, container 0x%llx",
				(unsigned long long)range.bitmap.pgsize, DT_PAGE_SIZE);
	if ((range.iova | range.size) & (DT_PAGE_SIZE - 1))
		return log_fail(-EINVAL, "GET_BITMAP: iova 0x%llx size 0x%llx not page aligned",
				(unsigned long long)range.iova, (unsigned long long)range.size);
	if (!range.bitmap.data)
		return log_fail(-EINVAL, "GET_BITMAP: NULL bitmap");
	rep.iova = range.iova;
	rep.length = range.size;
	rep.bitmap = range.bitmap.data;
	rep.bitmap_size = range.bitmap.size;
	pthread_mutex_lock(&iommu->lock);
	ret = report_locked(iommu, &rep, false);
	pthread_mutex_unlock(&iommu->lock);
	return ret;
}

static int dirty_pages(struct dt_iommu *iommu, struct vfio_iommu_type1_dirty_bitmap *arg)
{
	uint32_t known = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
			 VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	uint32_t flags;

	if (arg->argsz < sizeof(*arg))
		return log_fail(-EINVAL, "DIRTY_PAGES: argsz %u < %zu", arg->argsz, sizeof(*arg));
	flags = arg->flags;
	if (!flags || flags & ~known || !is_pow2(flags))
		return log_fail(-EINVAL,
				"DIRTY_PAGES: flags 0x%x (exactly one of START, STOP, GET_BITMAP)",
				flags);
	if (flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_START)
		return dt_iommu_dirty_start(iommu);
	if (flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)
		return dt_iommu_dirty_stop(iommu);
	return get_bitmap(iommu, arg);
}

int dt_vfio_ioctl(struct dt_iommu *iommu, unsigned long request, void *arg)
{
	if (!iommu)
		return log_fail(-EINVAL, "dt_vfio_ioctl: NULL container");
	switch (request) {
	case VFIO_GET_API_VERSION:
		return VFIO_API_VERSION;
	case VFIO_CHECK_EXTENSION:
		switch ((unsigned long)arg) {
		case VFIO_TYPE1v2_IOMMU:
		case VFIO_UNMAP_ALL:
			return 1;
		default:
			return 0;
		}
	}
	switch (request) {
	case VFIO_IOMMU_GET_INFO:
	case VFIO_IOMMU_MAP_DMA:
	case VFIO_IOMMU_UNMAP_DMA:
	case VFIO_IOMMU_DIRTY_PAGES:
		if (!arg)
			return log_fail(-EFAULT, "dt_vfio_ioctl: NULL argument");
		break;
	default:
		return log_fail(-ENOTTY, "dt_vfio_ioctl: unknown request 0x%lx", request);
	}
	switch (request) {
	case VFIO_IOMMU_GET_INFO:
		return get_info(iommu, arg);
	case VFIO_IOMMU_MAP_DMA:
		return map_dma(iommu, arg);
	case VFIO_IOMMU_UNMAP_DMA:
		return unmap_dma(iommu, arg);
	default:
		return dirty_pages(iommu, arg);
	}
}
