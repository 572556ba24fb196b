/* SPDX-License-Identifier: MIT */
/*
 * iommu/device_log.c - VFIO device DMA logging (VFIO_DEVICE_FEATURE DMA_LOGGING_START /
 * _STOP / _REPORT) for LOGGING devices, independent of the container's tracking.
 *
 * START records up to 256 disjoint IOVA ranges and a granule (the requested page size,
 * at least the container page); each range gets a sparse atomic bitmap of granules. The
 * device's dt_dma_log and dt_dma_rw writes set granules inside the ranges (lock-free, under
 * RCU). REPORT reads and clears the granules that lie wholly inside the requested range,
 * reports (without clearing) the ones it only partly covers, at any power-of-two page size:
 * coarser pages OR granules together, finer ones replicate them. It only sets bits.
 * START/STOP/REPORT serialize on the container lock; STOP waits for a grace period.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <linux/vfio.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "iommu/internal.h"
#include "sys/rcu.h"

#define LOG_MAX_RANGES 256u
/* Granules a log may track in all (2^35: 128 TiB of 4 KiB pages, as a container report's
 * bitmap): a report walks every range's top hints, so its cost grows with this. */
#define LOG_MAX_GRANULES  (8 * DT_MAX_BITMAP_BYTES)
#define offsetofend(T, m) (offsetof(T, m) + sizeof(((T *)0)->m))

struct dev_log_range {
	uint64_t iova, length;
	struct sbitmap granules;
};

struct dev_log {
	unsigned shift;	  /* log2(granule) */
	_Atomic int lost; /* a mark found no memory: the log is incomplete */
	uint32_t nranges;
	struct dev_log_range ranges[]; /* sorted by iova */
};

void dev_log_free(struct dev_log *log)
{
	if (!log)
		return;
	rcu_synchronize();
	for (uint32_t i = 0; i < log->nranges; i++)
		sbm_destroy(&log->ranges[i].granules);
	xfree(log);
}

/* Index of the first range whose end is above iova. */
static uint32_t range_search(const struct dev_log *log, uint64_t iova)
{
	uint32_t lo = 0, hi = log->nranges;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct dev_log_range *r = &log->ranges[mid];

		if (r->iova + r->length - 1 < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void dev_log_mark(struct dt_device *dev, uint64_t iova, uint64_t len)
{
	struct dev_log *log = atomic_load_explicit(&dev->log, memory_order_acquire);
	uint64_t last = iova + len - 1;

	if (!log)
		return;
	for (uint32_t i = range_search(log, iova); i < log->nranges; i++) {
		struct dev_log_range *r = &log->ranges[i];
		uint64_t lo = iova > r->iova ? iova : r->iova;
		uint64_t hi = last < r->iova + r->length - 1 ? last : r->iova + r->length - 1;
		uint64_t g0, g1;

		if (r->iova > last)
			break;
		g0 = (lo - r->iova) >> log->shift;
		g1 = (hi - r->iova) >> log->shift;
		sbm_set_range(&r->granules, g0, g1 - g0 + 1);
	}
}

static int check_feature(uint32_t flags, uint32_t argsz, uint32_t supported, size_t minsz)
{
	if ((flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)) & ~supported)
		return log_fail(-EINVAL, "DEVICE_FEATURE: %s not supported by this feature",
				flags & VFIO_DEVICE_FEATURE_GET ? "GET" : "SET");
	if (flags & VFIO_DEVICE_FEATURE_PROBE)
		return 0;
	if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)))
		return log_fail(-EINVAL, "DEVICE_FEATURE: neither GET nor SET");
	if (argsz < minsz)
		return log_fail(-EINVAL, "DEVICE_FEATURE: argsz %u < %zu", argsz, minsz);
	return 1;
}

static int range_cmp(const void *a, const void *b)
{
	const struct vfio_device_feature_dma_logging_range *x = a, *y = b;

	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

static int log_start(struct dt_device *dev, struct vfio_device_feature_dma_logging_control *ctl)
{
	struct vfio_device_feature_dma_logging_range *in;
	struct dev_log *log;
	uint64_t gran, total;
	int ret = 0;

	if (!ctl->num_ranges)
		return log_fail(-EINVAL, "DMA_LOGGING_START: no ranges");
	if (ctl->num_ranges > LOG_MAX_RANGES)
		return log_fail(-E2BIG, "DMA_LOGGING_START: %u ranges, at most %u", ctl->num_ranges,
				LOG_MAX_RANGES);
	if (!ctl->ranges)
		return log_fail(-EFAULT, "DMA_LOGGING_START: NULL ranges");
	if (!is_pow2(ctl->page_size))
		return log_fail(-EINVAL,
				"DMA_LOGGING_START: page size 0x%llx is not a power of two",
				(unsigned long long)ctl->page_size);
	in = xcalloc(ctl->num_ranges, sizeof(*in));
	if (!in)
		return log_fail(-ENOMEM, "DMA_LOGGING_START: out of memory");
	memcpy(in, (void *)(uintptr_t)ctl->ranges, ctl->num_ranges * sizeof(*in));
	for (uint32_t i = 0; i < ctl->num_ranges && !ret; i++) {
		if (!in[i].length || (in[i].iova | in[i].length) & (ctl->page_size - 1))
			ret = log_fail(
				-EINVAL,
				"DMA_LOGGING_START: range %u [0x%llx, +0x%llx) empty or not aligned to 0x%llx",
				i, (unsigned long long)in[i].iova, (unsigned long long)in[i].length,
				(unsigned long long)ctl->page_size);
		else if (in[i].iova + in[i].length - 1 < in[i].iova)
			ret = log_fail(-EOVERFLOW, "DMA_LOGGING_START: range %u wraps", i);
	}
	if (ret)
		goto out;
	qsort(in, ctl->num_ranges, sizeof(*in), range_cmp);
	for (uint32_t i = 1; i < ctl->num_ranges; i++)
		if (in[i].iova <= in[i - 1].iova + in[i - 1].length - 1) {
			ret = log_fail(
				-EINVAL, "DMA_LOGGING_START: ranges at 0x%llx and 0x%llx overlap",
				(unsigned long long)in[i - 1].iova, (unsigned long long)in[i].iova);
			goto out;
		}
	gran = ctl->page_size < DT_PAGE_SIZE ? DT_PAGE_SIZE : ctl->page_size;
	total = 0;
	for (uint32_t i = 0; i < ctl->num_ranges && total <= LOG_MAX_GRANULES; i++)
		total += div_round_up(in[i].length, gran);
	if (total > LOG_MAX_GRANULES) {
		ret = log_fail(-E2BIG,
			       "DMA_LOGGING_START: more than %llu granules of 0x%llx in all",
			       (unsigned long long)LOG_MAX_GRANULES, (unsigned long long)gran);
		goto out;
	}
	log = xzalloc(sizeof(*log) + ctl->num_ranges * sizeof(log->ranges[0]));
	if (!log) {
		ret = log_fail(-ENOMEM, "DMA_LOGGING_START: out of memory");
		goto out;
	}
	log->shift = ctz64(gran);
	for (uint32_t i = 0; i < ctl->num_ranges; i++) {
		log->ranges[i].iova = in[i].iova;
		log->ranges[i].length = in[i].length;
		log->nranges = i + 1;
		if (sbm_init(&log->ranges[i].granules, div_round_up(in[i].length, gran))) {
			dev_log_free(log);
			ret = log_fail(-ENOMEM, "DMA_LOGGING_START: out of memory");
			goto out;
		}
	}
	if (atomic_load(&dev->log)) {
		dev_log_free(log);
		ret = log_fail(-EBUSY, "DMA_LOGGING_START: logging already started; STOP first");
		goto out;
	}
	atomic_store_explicit(&dev->log, log, memory_order_release);
	ctl->page_size = gran;
out:
	xfree(in);
	return ret;
}

struct report_out {
	void *bitmap;
	uint64_t iova, last; /* report range [iova, last] */
	unsigned pshift;     /* log2(report page) */
	uint64_t r_iova;     /* the logged range */
	unsigned gshift;     /* log2(granule) */
};

static void out_granule_bits(void *opaque, uint64_t bit0, uint64_t bits)
{
	struct report_out *o = opaque;

	while (bits) {
		uint64_t g = bit0 + ctz64(bits);
		uint64_t lo = o->r_iova + (g << o->gshift), hi = lo + (1ull << o->gshift) - 1;

		bits &= bits - 1;
		if (lo < o->iova)
			lo = o->iova;
		if (hi > o->last)
			hi = o->last;
		ubuf_set_range(o->bitmap, (lo - o->iova) >> o->pshift,
			       ((hi - o->iova) >> o->pshift) - ((lo - o->iova) >> o->pshift) + 1);
	}
}

static int log_report(struct dt_device *dev, struct vfio_device_feature_dma_logging_report *rep)
{
	struct dev_log *log = atomic_load(&dev->log);
	struct report_out o;
	uint64_t last;

	if (rep->page_size < DT_PAGE_SIZE || !is_pow2(rep->page_size))
		return log_fail(
			-EINVAL,
			"DMA_LOGGING_REPORT: page size 0x%llx is not a power of two >= 4 KiB",
			(unsigned long long)rep->page_size);
	if (!rep->length)
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: length 0");
	if (rep->iova + rep->length - 1 < rep->iova)
		return log_fail(-EOVERFLOW, "DMA_LOGGING_REPORT: range wraps");
	if (!rep->bitmap)
		return log_fail(-EFAULT, "DMA_LOGGING_REPORT: NULL bitmap");
	if (!log)
		return log_fail(-EINVAL, "DMA_LOGGING_REPORT: logging is not started");
	last = rep->iova + rep->length - 1;
	o = (struct report_out){(void *)(uintptr_t)rep->bitmap, rep->iova, last,
				ctz64(rep->page_size),		0,	   log->shift};
	if (atomic_exchange(&log->lost, 0))
		return log_fail(
			-ENOMEM,
			"DMA_LOGGING_REPORT: marks were lost for lack of memory; treat everything as dirty");
	for (uint32_t i = range_search(log, rep->iova); i < log->nranges; i++) {
		struct dev_log_range *r = &log->ranges[i];
		uint64_t lo = rep->iova > r->iova ? rep->iova : r->iova;
		uint64_t hi = last < r->iova + r->length - 1 ? last : r->iova + r->length - 1;
		uint64_t gmask = (1ull << log->shift) - 1, g0, g1, full0, full1;
		bool part_lo, part_hi;

		if (r->iova > last)
			break;
		o.r_iova = r->iova;
		g0 = (lo - r->iova) >> log->shift;
		g1 = (hi - r->iova) >> log->shift;
		/* Granules wholly inside [lo, hi] are taken; the edge ones only read. */
		part_lo = (lo - r->iova) & gmask;
		part_hi = (hi - r->iova + 1) & gmask;
		full0 = g0 + part_lo;
		full1 = g1 + 1 - part_hi;
		if (part_lo && sbm_test(&r->granules, g0))
			out_granule_bits(&o, g0, 1);
		if (part_hi && (g1 != g0 || !part_lo) && sbm_test(&r->granules, g1))
			out_granule_bits(&o, g1, 1);
		if (full1 > full0)
			sbm_harvest_range_atomic(&r->granules, full0, full1 - full0,
						 out_granule_bits, &o);
	}
	return 0;
}

int dev_feature(struct dt_device *dev, void *arg)
{
	size_t minsz = offsetofend(struct vfio_device_feature, flags);
	uint32_t known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET |
			 VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
	struct vfio_device_feature *f = arg;
	struct dt_iommu *iommu = dev->iommu;
	uint32_t feature;
	int ret;

	if (f->argsz < minsz)
		return log_fail(-EINVAL, "DEVICE_FEATURE: argsz %u < %zu", f->argsz, minsz);
	if (f->flags & ~known)
		return log_fail(-EINVAL, "DEVICE_FEATURE: unknown flags 0x%x", f->flags);
	if (!(f->flags & VFIO_DEVICE_FEATURE_PROBE) && (f->flags & VFIO_DEVICE_FEATURE_GET) &&
	    (f->flags & VFIO_DEVICE_FEATURE_SET))
		return log_fail(-EINVAL, "DEVICE_FEATURE: GET and SET together");
	feature = f->flags & VFIO_DEVICE_FEATURE_MASK;
	if (dev->kind != DT_DEVICE_LOGGING || (feature != VFIO_DEVICE_FEATURE_DMA_LOGGING_START &&
					       feature != VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP &&
					       feature != VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT))
		return log_fail(-ENOTTY, "DEVICE_FEATURE: feature %u not supported by this device",
				feature);
	switch (feature) {
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
		ret = check_feature(f->flags, f->argsz, VFIO_DEVICE_FEATURE_SET,
				    minsz + sizeof(struct vfio_device_feature_dma_logging_control));
		if (ret != 1)
			return ret;
		pthread_mutex_lock(&iommu->lock);
		ret = log_start(dev, (void *)f->data);
		pthread_mutex_unlock(&iommu->lock);
		return ret;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
		ret = check_feature(f->flags, f->argsz, VFIO_DEVICE_FEATURE_SET, 0);
		if (ret != 1)
			return ret;
		pthread_mutex_lock(&iommu->lock);
		dev_log_free(atomic_exchange(&dev->log, NULL));
		pthread_mutex_unlock(&iommu->lock);
		return 0;
	default:
		ret = check_feature(f->flags, f->argsz, VFIO_DEVICE_FEATURE_GET,
				    minsz + sizeof(struct vfio_device_feature_dma_logging_report));
		if (ret != 1)
			return ret;
		pthread_mutex_lock(&iommu->lock);
		ret = log_report(dev, (void *)f->data);
		pthread_mutex_unlock(&iommu->lock);
		return ret;
	}
}

int dt_device_ioctl(struct dt_device *dev, unsigned long request, void *arg)
{
	if (!dev)
		return log_fail(-EINVAL, "dt_device_ioctl: NULL device");
	if (request != VFIO_DEVICE_FEATURE)
		return log_fail(-ENOTTY, "dt_device_ioctl: unknown request 0x%lx", request);
	if (!arg)
		return log_fail(-EFAULT, "dt_device_ioctl: NULL argument");
	return dev_feature(dev, arg);
}
