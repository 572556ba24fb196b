/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack/iommu.h - a DMA-mapping container with VFIO type1 dirty tracking.
 *
 * A container (struct dt_iommu) is one IOMMU address space: DMA mappings iova -> vaddr in the
 * calling process. Devices attach to it and touch guest memory by pinning pages, by
 * dt_dma_rw() and by reporting their writes with dt_dma_log(). While dirty tracking is on, a
 * report returns the pages dirtied since the previous report; pages still pinned by a device
 * that cannot track (EMULATED, or PASSTHROUGH after its first pin) are in every report.
 * The full contract, with every errno, is docs/semantics.md.
 *
 * Thread safety: every function may be called from any thread. The marking paths
 * (dt_dma_log, dt_dma_rw) are lock-free and may run concurrently with reports, maps and
 * unmaps of other mappings; dt_pin_pages/dt_unpin_pages and the control calls serialize on
 * the container's lock. A write that completed before a report started is in that report;
 * one racing with it is in that report or the next, never in neither.
 *
 * Errors: 0 (or a count) on success, a negative errno on failure; the library never prints,
 * it passes messages to the callback of dt_set_log().
 */
#ifndef DIRTYTRACK_IOMMU_H
#define DIRTYTRACK_IOMMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dt_iommu;
struct dt_device;

/* ---- container ------------------------------------------------------------------------- */

/* A new, empty container with 4 KiB pages. NULL and errno (ENOMEM) on failure. */
struct dt_iommu *dt_iommu_new(void);

/* Detaches every device, drops every mapping and frees the container. NULL is a no-op. */
void dt_iommu_free(struct dt_iommu *iommu);

/*
 * The VFIO type1 entry point: VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
 * VFIO_IOMMU_DIRTY_PAGES and VFIO_CHECK_EXTENSION with the structs of <linux/vfio.h>.
 * Returns 0 (or the extension answer) or a negative errno; -ENOTTY for other requests.
 */
int dt_vfio_ioctl(struct dt_iommu *iommu, unsigned long request, void *arg);

/* Container page size in bytes (4096). */
uint64_t dt_iommu_pgsize(const struct dt_iommu *iommu);

/* ---- devices ----------------------------------------------------------------------------- */

enum dt_device_kind {
	DT_DEVICE_EMULATED,    /* pinned pages are perpetually dirty */
	DT_DEVICE_PASSTHROUGH, /* whole mappings dirty until its first pin */
	DT_DEVICE_LOGGING,     /* only what it logs (dt_dma_log) or writes (dt_dma_rw) */
};

/* Attach a device. NULL and errno (EINVAL bad kind, ENOMEM) on failure. */
struct dt_device *dt_device_attach(struct dt_iommu *iommu, enum dt_device_kind kind);

/*
 * Detach and free a device. Pins it still holds are dropped as if unpinned (dirty once
 * more); a PASSTHROUGH device that never pinned marks every mapped page dirty once.
 * Returns 0, or -EINVAL for NULL.
 */
int dt_device_detach(struct dt_device *dev);

/*
 * Called (without the container lock held) when an unmap covers pages this device has
 * pinned, before they are dropped: the device should stop using [iova, iova + size) and may
 * unpin. Whatever it still holds afterwards is dropped by the unmap.
 */
typedef void (*dt_unmap_cb)(void *opaque, uint64_t iova, uint64_t size);
int dt_device_set_unmap_cb(struct dt_device *dev, dt_unmap_cb cb, void *opaque);

enum dt_device_kind dt_device_kind(const struct dt_device *dev);

/* The device is the VMM's own emulation: its dt_dma_rw/dt_dma_log writes are counted in
 * class "vmm" rather than "dma_rw"/"logged" (same dirty pages, told apart). */
#define DT_DEVICE_F_VMM (1u << 0)
int dt_device_set_flags(struct dt_device *dev, uint32_t flags);

/*
 * Pin npage pages from iova (page aligned) with prot PROT_READ|PROT_WRITE. Each page must be
 * in a mapping that allows prot; pages may be in adjacent mappings. Fills vaddrs[i] with the
 * host address of page i when vaddrs is not NULL. Returns npage, or -EINVAL (page outside
 * the mappings, npage <= 0, unaligned iova, bad prot) or -EPERM (mapping forbids prot);
 * on error nothing is pinned. Pins count per device and page.
 */
int dt_pin_pages(struct dt_device *dev, uint64_t iova, int npage, int prot, void **vaddrs);

/* Unpin; -EINVAL (nothing unpinned) if a page is not pinned by this device. */
int dt_unpin_pages(struct dt_device *dev, uint64_t iova, int npage);

/*
 * Copy len bytes between data and the mappings at iova (may span adjacent mappings).
 * -EINVAL outside the mappings or for len 0, -EPERM without the mapping's permission.
 * A write marks pages [iova >> shift, (iova + len - 1) >> shift] dirty.
 */
int dt_dma_rw(struct dt_device *dev, uint64_t iova, void *data, size_t len, bool write);

/* The device wrote [iova, iova + len): mark those pages. -EINVAL (nothing marked) if any
 * part is outside the mappings or len is 0. */
int dt_dma_log(struct dt_device *dev, uint64_t iova, uint64_t len);

/* One range of dt_dma_log_batch(). */
struct dt_dma_range {
	uint64_t iova, len;
};

/*
 * dt_dma_log() of n ranges, in order, as n calls would, but cheaper per range when they are
 * scattered over a large container: it looks up and prefetches the bitmap words of up to 16
 * ranges before it marks any, so their cache misses overlap (a device completing a batch of
 * descriptors should use it). Returns the number of ranges logged: n, or fewer when range
 * [ret] was rejected (nothing of it marked; a call from there returns its errno), or a
 * negative errno when the first range is rejected or dev is NULL, or ranges NULL with n > 0.
 */
int dt_dma_log_batch(struct dt_device *dev, const struct dt_dma_range *ranges, unsigned n);

/*
 * Device-level entry point: VFIO_DEVICE_FEATURE with DMA_LOGGING_START / _STOP / _REPORT
 * (and PROBE) for LOGGING devices, following <linux/vfio.h>. Other devices and features get
 * -ENOTTY, other requests -ENOTTY.
 */
int dt_device_ioctl(struct dt_device *dev, unsigned long request, void *arg);

/* ---- tracking and the native report ---------------------------------------------------- */

/* Same as VFIO_IOMMU_DIRTY_PAGES START / STOP; both idempotent. */
int dt_iommu_dirty_start(struct dt_iommu *iommu);
int dt_iommu_dirty_stop(struct dt_iommu *iommu);
bool dt_iommu_dirty_tracking(const struct dt_iommu *iommu);

/* Report flags. */
#define DT_REPORT_NO_CLEAR    (1u << 0) /* read without clearing (read, then unmap) */
#define DT_REPORT_SKIP_PINNED (1u << 1) /* leave out pages currently pinned (see dt_iommu_pinned) */

/* Per-class page counts of one report, in container pages. A page may be in several
 * classes; total counts it once. */
struct dt_report_counts {
	uint64_t pinned;   /* pinned by EMULATED / promoted PASSTHROUGH devices (perpetual) */
	uint64_t unpinned; /* unpinned since the previous report (once) */
	uint64_t dma_rw;   /* written through dt_dma_rw (once) */
	uint64_t logged;   /* reported through dt_dma_log (once) */
	uint64_t requeued; /* put back by dt_iommu_merge_back (once) */
	uint64_t vmm;	   /* written by DT_DEVICE_F_VMM devices (once) */
	uint64_t whole; /* whole-mapping fallback: unpinned PASSTHROUGH scope, promotion, detach */
	uint64_t total; /* pages in the output (union of the above, after SKIP_PINNED) */
};

/* Classes of a report, for struct dt_report.class_bitmap. */
enum dt_report_class {
	DT_RC_PINNED,
	DT_RC_UNPINNED,
	DT_RC_DMA_RW,
	DT_RC_LOGGED,
	DT_RC_REQUEUED,
	DT_RC_VMM,
	DT_RC_WHOLE,
	DT_REPORT_NCLASSES,
};

/* Called once per run of dirty report pages, in increasing iova order. A non-zero return
 * stops the report: this run and every later one are merged back (not lost), and the
 * report returns that value. It runs with the container lock held: it may call dt_dma_log,
 * dt_dma_rw and dt_iommu_merge_back*, not the calls that take the lock (pin, unpin, map,
 * unmap, start, stop, report, attach, detach). */
typedef int (*dt_run_fn)(void *opaque, uint64_t iova, uint64_t length);

struct dt_report {
	size_t size;	 /* sizeof(struct dt_report) */
	uint64_t iova;	 /* aligned to pgsize */
	uint64_t length; /* multiple of the container page size; must not cut a mapping */
	uint64_t pgsize; /* report page: power of two >= container page; 0 = container page */
	uint32_t flags;	 /* DT_REPORT_* */
	/* Outputs, all optional. bitmap: bit n = page iova + n * pgsize, OR-ed in, any
	 * alignment, bitmap_size bytes (at least ceil(bits / 64) * 8). */
	void *bitmap;
	uint64_t bitmap_size;
	dt_run_fn run;
	void *opaque;
	struct dt_report_counts counts; /* out */
	/* Optional per-class outputs, container page size only (pgsize 0 or 4096): bit n of
	 * class_bitmap[c] is page n dirty in class c, whatever SKIP_PINNED says; each at least
	 * the size of bitmap_size's rule; pointers may alias (bits are OR-ed). */
	void *class_bitmap[DT_REPORT_NCLASSES];
};

/*
 * Report and clear (unless NO_CLEAR) the pages dirtied in [iova, iova + length) since the
 * previous report. Costs in proportion to the dirty pages, not to the mapped size.
 * -EINVAL: bad size field, length 0, unaligned iova/length, bad pgsize, unknown flags, a
 * range that cuts a mapping, tracking off, bitmap too small; -EOVERFLOW: range wraps.
 */
int dt_iommu_report(struct dt_iommu *iommu, struct dt_report *rep);

/* The pinned (perpetually dirty) set in the range, same outputs; never clears. Works with
 * tracking on or off. counts.pinned and counts.total are filled. */
int dt_iommu_pinned(struct dt_iommu *iommu, struct dt_report *rep);

/*
 * Merge back: mark [iova, iova + length) dirty again (class "requeued") because the consumer
 * of a report could not send it. Parts outside the mappings are ignored; with tracking off
 * nothing is marked. Returns 0 or -EINVAL (length 0, unaligned) / -EOVERFLOW.
 */
int dt_iommu_merge_back(struct dt_iommu *iommu, uint64_t iova, uint64_t length);

/* Merge back every set bit of a bitmap at pgsize granularity (bit 0 = iova); the bitmap is
 * read as ceil(nbits / 8) bytes, at any alignment. */
int dt_iommu_merge_back_bitmap(struct dt_iommu *iommu, uint64_t iova, uint64_t pgsize,
			       const void *bitmap, uint64_t nbits);

/* Statistics of the container. */
struct dt_iommu_stats {
	uint64_t mappings;
	uint64_t mapped_bytes;
	uint64_t devices;
	uint64_t pinned_pages; /* distinct pages pinned by any device */
	uint64_t bitmap_bytes; /* memory held by dirty bitmaps */
	bool whole_scope;      /* a PASSTHROUGH device has not pinned yet */
};
int dt_iommu_get_stats(struct dt_iommu *iommu, struct dt_iommu_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYTRACK_IOMMU_H */
