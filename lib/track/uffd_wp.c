/* SPDX-License-Identifier: MIT */
/*
 * track/uffd_wp.c - CPU (and kernel) writes to memory of the calling process, seen through
 * userfaultfd asynchronous write-protection and read-and-re-protected with PAGEMAP_SCAN.
 *
 * How it works: every region is registered on one userfaultfd in UFFDIO_REGISTER_MODE_WP
 * with UFFD_FEATURE_WP_ASYNC (a write to a protected page is resolved by the kernel itself:
 * the protection is dropped, nobody is woken) and WP_UNPOPULATED (protection also holds for
 * pages never touched, through PTE markers). start() write-protects every region. A page
 * whose protection is gone has been written since, by a thread or by the kernel on the
 * process's behalf (read(2) into it, a page fault of O_DIRECT...). harvest() asks
 * PAGEMAP_SCAN for exactly those pages (category_mask = return_mask = PAGE_IS_WRITTEN) and,
 * with PM_SCAN_WP_MATCHING, re-protects each one under the page-table lock as it reports
 * it, so a write racing the harvest lands either in this harvest or in the next one.
 *
 * Addresses: the source tracks each region at its host mapping and reports it at its addr
 * (page host + i is reported as addr + i). For memory of the process itself, pass host ==
 * addr, or host NULL, which means "addr is the virtual address". A VM's memory is left to
 * the KVM sources: the probe refuses opts.vm_fd >= 0.
 *
 * Moved memory: a munmap or mremap of tracked memory must never read as "nothing written".
 * PAGEMAP_SCAN silently skips holes, so every harvest checks, before and after the scan,
 * that each region is still mapped (sys_range_mapped), and scans with PM_SCAN_CHECK_WPASYNC,
 * which fails with EPERM on any VMA in the range that is not async-write-protected by a
 * userfaultfd (a new mapping placed at the old address, an mremap that dropped the
 * registration). Either makes this and every later harvest return -ENXIO: once memory has
 * moved, the source is done. We do not use UFFD_FEATURE_EVENT_REMAP/UNMAP/REMOVE, though the
 * kernel accepts them together with WP_ASYNC: those events are synchronous, the thread that
 * calls munmap/mremap/madvise sleeps until somebody read(2)s the userfaultfd, so a caller
 * that unmaps and then harvests from the same thread would hang forever (measured on 6.18).
 * MADV_DONTNEED and mremap(MREMAP_DONTUNMAP) of a tracked range leave it mapped; the kernel
 * then reports the zapped pages as written, which is what they are.
 *
 * Failures: a harvest that fails half way has already re-protected some pages it reported
 * into a bitmap the caller will likely drop, so the next harvest reports every page of every
 * region (once) besides what the scan finds.
 *
 * Limits: one userfaultfd-wp registration per page: two uffd-wp sources (or another
 * userfaultfd user) over the same memory conflict, and the probe says so (EBUSY). The
 * pagemap fd is this process's: after fork() the child must create its own source. Memory
 * types: anonymous, shmem and hugetlbfs (hugetlb pages are reported whole).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "sys/compat.h"
#include "sys/sys.h"
#include "track/source.h"

/*
 * page_region entries per PAGEMAP_SCAN call (12 KiB); a scan that fills it continues from
 * walk_end, so this bounds memory, not what one harvest can report. Not more than 512: the
 * kernel gathers at most 512 ranges (PAGEMAP_WALK_SIZE >> PAGE_SHIFT) per internal walk,
 * and when a call with a longer vector needs a second internal walk that then completes,
 * 6.18 leaves walk_end where the first one stopped, behind ranges it has already reported
 * (observed: 537 ranges up to 0x...fdb000 with walk_end 0x...b1d000). Resuming there is
 * safe but rescans, and re-reports pages written again since.
 */
#define SCAN_VEC_LEN	 512u

#define UFFD_WP_FEATURES ((__u64)(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED))

struct uffd_wp {
	int uffd;
	int pagemap;
	struct page_region *vec;
	bool moved;  /* sticky: some region was unmapped or moved */
	bool resync; /* a harvest failed after consuming pages: report everything next time */
};

static uint64_t region_host(const struct dt_region *r)
{
	return r->host ? (uint64_t)(uintptr_t)r->host : r->addr;
}

/* A userfaultfd with async write-protect enabled, or a negative errno and why. */
static int uffd_open_async(char *why, size_t whylen)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_WP_FEATURES};
	int fd = sys_userfaultfd(O_NONBLOCK), ret;

	if (fd < 0) {
		snprintf(why, whylen, "userfaultfd unavailable: %s", strerror(-fd));
		return fd;
	}
	ret = sys_ioctl(fd, UFFDIO_API, &api);
	if (ret < 0 || (api.features & UFFD_WP_FEATURES) != UFFD_WP_FEATURES) {
		snprintf(why, whylen, "userfaultfd has no async write-protect (UFFDIO_API: %s)",
			 ret < 0 ? strerror(-ret) : "features missing");
		sys_close(fd);
		return ret < 0 ? ret : -ENOTSUP;
	}
	return fd;
}

/* One PAGEMAP_SCAN call; the kernel returns the number of page_region entries filled. */
static int pagemap_scan(int pagemap, struct pm_scan_arg *arg)
{
	arg->size = sizeof(*arg);
	return sys_ioctl(pagemap, PAGEMAP_SCAN, arg);
}

/* PAGEMAP_SCAN exists: a read-only scan of one page of our own data. */
static int pagemap_scan_probe(char *why, size_t whylen)
{
	static char page_probe[SRC_PAGE_SIZE] __attribute__((aligned(4096)));
	struct page_region vec[1];
	struct pm_scan_arg arg = {
		.start = (uint64_t)(uintptr_t)page_probe,
		.end = (uint64_t)(uintptr_t)page_probe + SRC_PAGE_SIZE,
		.vec = (uint64_t)(uintptr_t)vec,
		.vec_len = 1,
		.return_mask = PAGE_IS_PRESENT,
	};
	int fd = sys_open("/proc/self/pagemap", O_RDONLY), ret;

	if (fd < 0) {
		snprintf(why, whylen, "/proc/self/pagemap: %s", strerror(-fd));
		return fd;
	}
	ret = pagemap_scan(fd, &arg);
	sys_close(fd);
	if (ret < 0) {
		snprintf(why, whylen, "PAGEMAP_SCAN not supported (%s; needs Linux 6.7)",
			 strerror(-ret));
		return ret == -ENOTTY || ret == -EINVAL ? -ENOTSUP : ret;
	}
	return 0;
}

static int uffd_register(int uffd, uint64_t host, uint64_t size)
{
	struct uffdio_register reg = {
		.range = {.start = host, .len = size},
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	int ret = sys_ioctl(uffd, UFFDIO_REGISTER, &reg);

	if (ret < 0)
		return ret;
	return reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT) ? 0 : -ENOTSUP;
}

static int uffd_unregister(int uffd, uint64_t host, uint64_t size)
{
	struct uffdio_range range = {.start = host, .len = size};

	return sys_ioctl(uffd, UFFDIO_UNREGISTER, &range);
}

static int uffd_protect(int uffd, uint64_t host, uint64_t size, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = {.start = host, .len = size},
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	int ret, tries = 0;

	/* EAGAIN: the address space is changing under us (another userfaultfd's event). */
	do
		ret = sys_ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
	while (ret == -EAGAIN && ++tries < 100);
	return ret;
}

static int uffd_probe(const struct dt_source_opts *opts, char *why, size_t whylen)
{
	int uffd, ret;

	if (opts->vm_fd >= 0) {
		snprintf(why, whylen, "tracks process memory; a VM's is for the KVM sources");
		return -ENOTSUP;
	}
	for (unsigned i = 0; i < opts->nregions; i++) {
		const struct dt_region *r = &opts->regions[i];

		if (sys_range_mapped(region_host(r), r->size)) {
			snprintf(why, whylen, "region %u at 0x%llx is not mapped in this process",
				 i, (unsigned long long)region_host(r));
			return -EINVAL;
		}
	}
	ret = pagemap_scan_probe(why, whylen);
	if (ret)
		return ret;
	uffd = uffd_open_async(why, whylen);
	if (uffd < 0)
		return uffd;
	/* A trial registration on a scratch userfaultfd: the memory type must support it and
	 * nobody else may hold it. Nothing is protected; the registration is undone. */
	for (unsigned i = 0; i < opts->nregions && !ret; i++) {
		const struct dt_region *r = &opts->regions[i];

		ret = uffd_register(uffd, region_host(r), r->size);
		if (ret)
			snprintf(why, whylen, "region %u at 0x%llx cannot be write-protected: %s%s",
				 i, (unsigned long long)region_host(r), strerror(-ret),
				 ret == -EBUSY ? " (registered by another userfaultfd)" : "");
		else
			uffd_unregister(uffd, region_host(r), r->size);
	}
	sys_close(uffd);
	return ret;
}

static void uffd_release(struct uffd_wp *u)
{
	if (u->pagemap >= 0)
		sys_close(u->pagemap);
	if (u->uffd >= 0)
		sys_close(u->uffd); /* drops every registration still held */
	xfree(u->vec);
	xfree(u);
}

static int uffd_init(struct dt_source *src)
{
	struct uffd_wp *u = xzalloc(sizeof(*u));
	char why[160] = "";
	int ret;

	if (!u)
		return log_fail(-ENOMEM, "uffd-wp: out of memory");
	u->uffd = u->pagemap = -1;
	u->vec = xcalloc(SCAN_VEC_LEN, sizeof(*u->vec));
	if (!u->vec) {
		ret = log_fail(-ENOMEM, "uffd-wp: out of memory");
		goto fail;
	}
	u->uffd = uffd_open_async(why, sizeof(why));
	if (u->uffd < 0) {
		ret = log_fail(u->uffd, "uffd-wp: %s", why);
		goto fail;
	}
	for (unsigned i = 0; i < src->nregions; i++) {
		const struct dt_region *r = &src->regions[i];

		ret = uffd_register(u->uffd, region_host(r), r->size);
		if (ret) {
			log_err("uffd-wp: UFFDIO_REGISTER of region %u [0x%llx, +0x%llx): %s", i,
				(unsigned long long)region_host(r), (unsigned long long)r->size,
				strerror(-ret));
			goto fail;
		}
	}
	u->pagemap = sys_open("/proc/self/pagemap", O_RDONLY);
	if (u->pagemap < 0) {
		ret = log_fail(u->pagemap, "uffd-wp: /proc/self/pagemap: %s",
			       strerror(-u->pagemap));
		goto fail;
	}
	src->priv = u;
	return 0;
fail:
	uffd_release(u);
	return ret;
}

static int uffd_start(struct dt_source *src)
{
	struct uffd_wp *u = src->priv;

	if (u->moved)
		return log_fail(-ENXIO, "uffd-wp: tracked memory was unmapped or moved");
	for (unsigned i = 0; i < src->nregions; i++) {
		const struct dt_region *r = &src->regions[i];
		int ret = uffd_protect(u->uffd, region_host(r), r->size, true);

		if (ret) {
			/* Unprotect what we protected, so a failed start changes nothing. */
			for (unsigned j = 0; j < i; j++)
				uffd_protect(u->uffd, region_host(&src->regions[j]),
					     src->regions[j].size, false);
			if (ret == -ENOENT)
				u->moved = true;
			return log_fail(ret == -ENOENT ? -ENXIO : ret,
					"uffd-wp: write-protecting region %u [0x%llx, +0x%llx): %s",
					i, (unsigned long long)region_host(r),
					(unsigned long long)r->size, strerror(-ret));
		}
	}
	u->resync = false;
	return 0;
}

static int uffd_stop(struct dt_source *src)
{
	struct uffd_wp *u = src->priv;
	int first = 0;

	for (unsigned i = 0; i < src->nregions; i++) {
		const struct dt_region *r = &src->regions[i];
		int ret;

		if (sys_range_mapped(region_host(r), r->size))
			continue; /* gone: nothing left to unprotect */
		ret = uffd_protect(u->uffd, region_host(r), r->size, false);
		if (ret && !first)
			first = log_fail(ret, "uffd-wp: unprotecting region %u: %s", i,
					 strerror(-ret));
	}
	return first;
}

static int region_moved(struct uffd_wp *u, unsigned i, const struct dt_region *r, const char *how)
{
	u->moved = true;
	return log_fail(
		-ENXIO,
		"uffd-wp: region %u [0x%llx, +0x%llx) (reported at 0x%llx) %s: it was unmapped or moved, its writes are lost",
		i, (unsigned long long)region_host(r), (unsigned long long)r->size,
		(unsigned long long)r->addr, how);
}

/* Report and re-protect the written pages of one region. The walk only moves forward, so a
 * range starting below what this harvest already reported is clipped, and a page is counted
 * once per harvest even when the kernel hands it out twice (the stale walk_end above, should
 * it show up with a short vector too). Clipping loses nothing: the page is reported, and a
 * write between the two reports is re-protected by the second and copied after this
 * harvest. */
static int harvest_region(struct uffd_wp *u, unsigned i, const struct dt_region *r,
			  struct harvest_target *t)
{
	uint64_t host = region_host(r), end = host + r->size, pos = host, reported = host;

	if (sys_range_mapped(host, r->size))
		return region_moved(u, i, r, "is no longer mapped");
	while (pos < end) {
		struct pm_scan_arg arg = {
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = pos,
			.end = end,
			.vec = (uint64_t)(uintptr_t)u->vec,
			.vec_len = SCAN_VEC_LEN,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		int n = pagemap_scan(u->pagemap, &arg);

		if (n == -EPERM)
			return region_moved(u, i, r, "is no longer write-protected by us");
		if (n < 0)
			return log_fail(n, "uffd-wp: PAGEMAP_SCAN of region %u at 0x%llx: %s", i,
					(unsigned long long)pos, strerror(-n));
		for (int k = 0; k < n; k++) {
			uint64_t lo = u->vec[k].start, hi = u->vec[k].end;

			if (lo < reported) {
				log_debug(
					"uffd-wp: PAGEMAP_SCAN reported [0x%llx, 0x%llx) again (walk_end behind its ranges), clipped",
					(unsigned long long)lo, (unsigned long long)reported);
				lo = reported;
			}
			if (hi > end)
				hi = end;
			if (lo >= hi)
				continue;
			target_set_pages(t, r->addr + (lo - host), (hi - lo) >> SRC_PAGE_SHIFT);
			reported = hi;
		}
		if (arg.walk_end <= pos || arg.walk_end > end)
			return log_fail(
				-EIO,
				"uffd-wp: PAGEMAP_SCAN made no progress at 0x%llx (walk_end 0x%llx)",
				(unsigned long long)pos, (unsigned long long)arg.walk_end);
		pos = arg.walk_end;
	}
	/* Unmapped while we scanned: the scan skipped the hole without a word. */
	if (sys_range_mapped(host, r->size))
		return region_moved(u, i, r, "was unmapped during the harvest");
	return 0;
}

static int64_t uffd_harvest(struct dt_source *src, struct harvest_target *t, uint32_t flags)
{
	struct uffd_wp *u = src->priv;
	bool resync = u->resync;

	if (u->moved)
		return log_fail(-ENXIO, "uffd-wp: tracked memory was unmapped or moved");
	for (unsigned i = 0; i < src->nregions; i++) {
		const struct dt_region *r = &src->regions[i];
		int ret = harvest_region(u, i, r, t);

		if (ret) {
			u->resync = true;
			return ret;
		}
		if (resync)
			target_set_pages(t, r->addr, r->size >> SRC_PAGE_SHIFT);
	}
	u->resync = false;
	return 0;
}

static void uffd_destroy(struct dt_source *src)
{
	struct uffd_wp *u = src->priv;

	if (!u)
		return;
	for (unsigned i = 0; i < src->nregions; i++) {
		const struct dt_region *r = &src->regions[i];

		if (!sys_range_mapped(region_host(r), r->size))
			uffd_unregister(u->uffd, region_host(r), r->size);
	}
	uffd_release(u);
	src->priv = NULL;
}

const struct source_ops uffd_wp_ops = {
	.type = DT_SOURCE_UFFD_WP,
	.name = "uffd-wp",
	.caps = DT_SOURCE_CAP_EXACT | DT_SOURCE_CAP_KERNEL_WRITES,
	.probe = uffd_probe,
	.init = uffd_init,
	.start = uffd_start,
	.stop = uffd_stop,
	.harvest = uffd_harvest,
	.destroy = uffd_destroy,
};
