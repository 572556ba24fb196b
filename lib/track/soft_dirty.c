/* SPDX-License-Identifier: MIT */
/*
 * track/soft_dirty.c - writes to memory of the calling process through the soft-dirty bit:
 * "4" written to /proc/self/clear_refs clears it (and write-protects every page); a write
 * sets it again; bit 55 of a page's /proc/self/pagemap entry shows it.
 *
 * Whether it works is decided by a self-test, once per process: map a scratch page, clear,
 * write the page, read its bit. A kernel built without CONFIG_MEM_SOFT_DIRTY accepts the
 * clear_refs write and never sets the bit, so asking the kernel is not enough.
 *
 * Addresses: as uffd-wp, each region is read at its host mapping (host NULL: addr is the
 * virtual address) and reported at its addr; opts.vm_fd must be -1.
 *
 * Process-wide state: clear_refs clears the bit of every page of the process, so there can
 * be one started soft-dirty source per process (a second start fails with EBUSY), and any
 * other user of clear_refs in the process (CRIU-like code) breaks it. The self-test runs
 * only while no soft-dirty source is started.
 *
 * Exactness needs quiet writers: a harvest reads the bits, then clears them all; a write
 * that lands between the read and the clear is lost (soft-dirty has no atomic
 * read-and-clear). Use it only with writers paused during the harvest; the automatic choice
 * prefers uffd-wp, which has no such window.
 *
 * Moved memory: each harvest checks every region is still mapped and returns -ENXIO (for
 * good) otherwise. A harvest that fails half way reports every page at the next one.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/log.h"
#include "sys/sys.h"
#include "track/source.h"

#define PM_SOFT_DIRTY	 (1ull << 55)
#define PAGEMAP_CHUNK	 512u /* entries per pread: 4 KiB */
#define CLEAR_SOFT_DIRTY "4"

enum selftest_state { SELFTEST_UNKNOWN, SELFTEST_WORKS, SELFTEST_BROKEN };

/* Process-wide: the self-test verdict, and the one started source. */
static pthread_mutex_t sd_lock = PTHREAD_MUTEX_INITIALIZER;
static enum selftest_state sd_selftest;
static struct dt_source *sd_owner;

struct soft_dirty {
	int pagemap;
	int clear_refs;
	bool moved;
	bool resync;
	uint64_t entries[PAGEMAP_CHUNK];
};

static uint64_t region_host(const struct dt_region *r)
{
	return r->host ? (uint64_t)(uintptr_t)r->host : r->addr;
}

static int clear_soft_dirty(int fd)
{
	int64_t n = sys_write(fd, CLEAR_SOFT_DIRTY, 1);

	return n == 1 ? 0 : n < 0 ? (int)n : -EIO;
}

/* The functional test: 0 works, -ENOTSUP broken, another errno when it could not run. */
static int selftest_run(char *why, size_t whylen)
{
	volatile char *page;
	uint64_t entry = 0;
	int err, pagemap, clear_refs, ret;
	int64_t n;

	page = sys_mmap(NULL, SRC_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0, &err);
	if (!page) {
		snprintf(why, whylen, "self-test mmap: %s", strerror(-err));
		return err;
	}
	page[0] = 1; /* populate it first: the VMA's own soft-dirty flag would answer for holes */
	pagemap = sys_open("/proc/self/pagemap", O_RDONLY);
	clear_refs = sys_open("/proc/self/clear_refs", O_WRONLY);
	if (pagemap < 0 || clear_refs < 0) {
		ret = pagemap < 0 ? pagemap : clear_refs;
		snprintf(why, whylen, "/proc/self/%s: %s", pagemap < 0 ? "pagemap" : "clear_refs",
			 strerror(-ret));
		goto out;
	}
	ret = clear_soft_dirty(clear_refs);
	if (ret) {
		snprintf(why, whylen, "clear_refs: %s", strerror(-ret));
		goto out;
	}
	page[0] = 2;
	n = sys_pread(pagemap, &entry, sizeof(entry),
		      (uint64_t)(uintptr_t)page / SRC_PAGE_SIZE * 8);
	if (n != sizeof(entry)) {
		ret = n < 0 ? (int)n : -EIO;
		snprintf(why, whylen, "pagemap read: %s", strerror(-ret));
		goto out;
	}
	if (!(entry & PM_SOFT_DIRTY)) {
		snprintf(why, whylen,
			 "soft-dirty compiled out or broken: a written page has no soft-dirty bit");
		ret = -ENOTSUP;
		goto out;
	}
	/* And the clear must clear: a bit that is always set would make us all-dirty. */
	ret = clear_soft_dirty(clear_refs);
	n = ret ? ret
		: sys_pread(pagemap, &entry, sizeof(entry),
			    (uint64_t)(uintptr_t)page / SRC_PAGE_SIZE * 8);
	if (n != sizeof(entry)) {
		ret = n < 0 ? (int)n : -EIO;
		snprintf(why, whylen, "pagemap read: %s", strerror(-ret));
		goto out;
	}
	if (entry & PM_SOFT_DIRTY) {
		snprintf(why, whylen, "soft-dirty broken: clear_refs does not clear the bit");
		ret = -ENOTSUP;
		goto out;
	}
	ret = 0;
out:
	if (pagemap >= 0)
		sys_close(pagemap);
	if (clear_refs >= 0)
		sys_close(clear_refs);
	sys_munmap((void *)page, SRC_PAGE_SIZE);
	return ret;
}

/* The cached verdict; only a test that ran to the end is cached. */
static int selftest(char *why, size_t whylen)
{
	int ret;

	pthread_mutex_lock(&sd_lock);
	if (sd_selftest == SELFTEST_UNKNOWN && !sd_owner) {
		ret = selftest_run(why, whylen);
		if (!ret || ret == -ENOTSUP)
			sd_selftest = ret ? SELFTEST_BROKEN : SELFTEST_WORKS;
	} else {
		ret = sd_selftest == SELFTEST_BROKEN ? -ENOTSUP : 0;
		if (ret)
			snprintf(why, whylen,
				 "soft-dirty compiled out or broken (self-test failed)");
	}
	pthread_mutex_unlock(&sd_lock);
	return ret;
}

static int sd_probe(const struct dt_source_opts *opts, char *why, size_t whylen)
{
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
	return selftest(why, whylen);
}

static void sd_release(struct soft_dirty *s)
{
	if (s->pagemap >= 0)
		sys_close(s->pagemap);
	if (s->clear_refs >= 0)
		sys_close(s->clear_refs);
	xfree(s);
}

static int sd_init(struct dt_source *src)
{
	struct soft_dirty *s = xzalloc(sizeof(*s));
	int ret;

	if (!s)
		return log_fail(-ENOMEM, "soft-dirty: out of memory");
	s->pagemap = sys_open("/proc/self/pagemap", O_RDONLY);
	s->clear_refs = sys_open("/proc/self/clear_refs", O_WRONLY);
	if (s->pagemap < 0 || s->clear_refs < 0) {
		ret = s->pagemap < 0 ? s->pagemap : s->clear_refs;
		log_err("soft-dirty: opening /proc/self/%s: %s",
			s->pagemap < 0 ? "pagemap" : "clear_refs", strerror(-ret));
		sd_release(s);
		return ret;
	}
	src->priv = s;
	return 0;
}

static int sd_start(struct dt_source *src)
{
	struct soft_dirty *s = src->priv;
	int ret;

	if (s->moved)
		return log_fail(-ENXIO, "soft-dirty: tracked memory was unmapped or moved");
	pthread_mutex_lock(&sd_lock);
	if (sd_owner && sd_owner != src) {
		pthread_mutex_unlock(&sd_lock);
		return log_fail(
			-EBUSY,
			"soft-dirty: another soft-dirty source is started in this process (clear_refs is process-wide)");
	}
	ret = clear_soft_dirty(s->clear_refs);
	if (!ret)
		sd_owner = src;
	pthread_mutex_unlock(&sd_lock);
	if (ret)
		return log_fail(ret, "soft-dirty: clear_refs: %s", strerror(-ret));
	s->resync = false;
	return 0;
}

static int sd_stop(struct dt_source *src)
{
	pthread_mutex_lock(&sd_lock);
	if (sd_owner == src)
		sd_owner = NULL;
	pthread_mutex_unlock(&sd_lock);
	return 0;
}

static int harvest_region(struct soft_dirty *s, unsigned i, const struct dt_region *r,
			  struct harvest_target *t)
{
	uint64_t host = region_host(r), npages = r->size >> SRC_PAGE_SHIFT;

	if (sys_range_mapped(host, r->size)) {
		s->moved = true;
		return log_fail(
			-ENXIO,
			"soft-dirty: region %u [0x%llx, +0x%llx) is no longer mapped: it was unmapped or moved, its writes are lost",
			i, (unsigned long long)host, (unsigned long long)r->size);
	}
	for (uint64_t p = 0; p < npages;) {
		uint64_t chunk = npages - p < PAGEMAP_CHUNK ? npages - p : PAGEMAP_CHUNK;
		int64_t n = sys_pread(s->pagemap, s->entries, chunk * 8,
				      (host >> SRC_PAGE_SHIFT) * 8 + p * 8);

		if (n <= 0 || n % 8)
			return log_fail(n < 0 ? (int)n : -EIO,
					"soft-dirty: reading pagemap at 0x%llx: %s",
					(unsigned long long)(host + (p << SRC_PAGE_SHIFT)),
					n < 0 ? strerror((int)-n) : "short read");
		chunk = (uint64_t)n / 8;
		for (uint64_t k = 0; k < chunk;) {
			uint64_t run = 0;

			while (k + run < chunk && s->entries[k + run] & PM_SOFT_DIRTY)
				run++;
			if (run) {
				target_set_pages(t, r->addr + ((p + k) << SRC_PAGE_SHIFT), run);
				k += run;
			} else {
				k++;
			}
		}
		p += chunk;
	}
	return 0;
}

static int64_t sd_harvest(struct dt_source *src, struct harvest_target *t, uint32_t flags)
{
	struct soft_dirty *s = src->priv;
	bool resync = s->resync;
	int ret;

	if (s->moved)
		return log_fail(-ENXIO, "soft-dirty: tracked memory was unmapped or moved");
	for (unsigned i = 0; i < src->nregions; i++) {
		const struct dt_region *r = &src->regions[i];

		ret = harvest_region(s, i, r, t);
		if (ret)
			return ret; /* nothing cleared yet: the next harvest sees these pages */
		if (resync)
			target_set_pages(t, r->addr, r->size >> SRC_PAGE_SHIFT);
	}
	ret = clear_soft_dirty(s->clear_refs);
	if (ret) {
		/* Perhaps cleared, perhaps not: be pessimistic next time. */
		s->resync = true;
		return log_fail(ret, "soft-dirty: clear_refs: %s", strerror(-ret));
	}
	s->resync = false;
	return 0;
}

static void sd_destroy(struct dt_source *src)
{
	if (!src->priv)
		return;
	sd_stop(src);
	sd_release(src->priv);
	src->priv = NULL;
}

const struct source_ops soft_dirty_ops = {
	.type = DT_SOURCE_SOFT_DIRTY,
	.name = "soft-dirty",
	.caps = DT_SOURCE_CAP_EXACT | DT_SOURCE_CAP_KERNEL_WRITES,
	.probe = sd_probe,
	.init = sd_init,
	.start = sd_start,
	.stop = sd_stop,
	.harvest = sd_harvest,
	.destroy = sd_destroy,
};
