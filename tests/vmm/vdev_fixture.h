/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/vdev_fixture.h - what the tests of the DMA test devices share: "guest memory" as
 * two anonymous banks mapped in a container at iova == gpa (as the VM's two memslots),
 * optionally harvested through a dirty set, one device area per type, and the reading of
 * stamps back from memory.
 *
 * A stamp's word 0 is the device's sequence number, which only grows, so the pages whose
 * word 0 changed between two snapshots are exactly the pages stamped in between; a check of
 * vdev_verify() == 0 at every step ties that to the device's own table of expected stamps.
 *
 * Include after <cmocka.h> and ../core/test_util.h.
 */
#ifndef DT_TESTS_VMM_VDEV_FIXTURE_H
#define DT_TESTS_VMM_VDEV_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#include "guest/mailbox.h"
#include "vdev.h"

#define PAGE	   4096ull
#define MEM	   (16ull << 20) /* two banks of 8 MiB, as the VM's two memslots */
#define BANK	   (MEM / 2)
#define NPAGES	   (MEM / PAGE)
#define AREA_SIZE  (1ull << 20)
#define AREA_PAGES (AREA_SIZE / PAGE)
#define RING	   16u
#define FAST	   20000u /* writes per second: many per round, few enough to miss pages */

/* One area per type, two in each bank. */
static const uint64_t area_gpa[VDEV_NTYPES] = {
	[VDEV_EMULATED] = 3ull << 20,
	[VDEV_LOGGING] = 5ull << 20,
	[VDEV_PASSTHROUGH] = BANK + (2ull << 20),
	[VDEV_VMM] = BANK + (6ull << 20),
};

struct guest {
	struct dt_region regions[2];
	struct dt_iommu *iommu;
	struct dt_dirty_set *set;
};

static inline void guest_new(struct guest *g, bool track)
{
	struct dt_dirty_set_opts so = {.size = sizeof(so), .base = 0, .length = MEM};

	memset(g, 0, sizeof(*g));
	g->iommu = dt_iommu_new();
	assert_non_null(g->iommu);
	for (unsigned b = 0; b < 2; b++) {
		struct vfio_iommu_type1_dma_map map = {.argsz = sizeof(map),
						       .flags = VFIO_DMA_MAP_FLAG_READ |
								VFIO_DMA_MAP_FLAG_WRITE,
						       .iova = b * BANK,
						       .size = BANK};
		void *host = mmap(NULL, BANK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				  -1, 0);

		assert_true(host != MAP_FAILED);
		g->regions[b] = (struct dt_region){.addr = b * BANK, .size = BANK, .host = host};
		map.vaddr = (uintptr_t)host;
		assert_int_equal(dt_vfio_ioctl(g->iommu, VFIO_IOMMU_MAP_DMA, &map), 0);
	}
	if (!track)
		return;
	g->set = dt_dirty_set_new(&so);
	assert_non_null(g->set);
	assert_int_equal(dt_dirty_set_add_iommu(g->set, g->iommu, 0), 0);
	assert_int_equal(dt_iommu_dirty_start(g->iommu), 0);
}

static inline void guest_free(struct guest *g)
{
	dt_dirty_set_free(g->set);
	dt_iommu_free(g->iommu);
	for (unsigned b = 0; b < 2; b++)
		munmap(g->regions[b].host, BANK);
}

static inline uint8_t *host_of(const struct guest *g, uint64_t gpa)
{
	return (uint8_t *)g->regions[gpa / BANK].host + gpa % BANK;
}

static inline void guest_copy(struct guest *dst, const struct guest *src)
{
	for (unsigned b = 0; b < 2; b++)
		memcpy(dst->regions[b].host, src->regions[b].host, BANK);
}

static inline uint32_t word0(const struct guest *g, uint64_t gpa)
{
	return __atomic_load_n((uint32_t *)host_of(g, gpa), __ATOMIC_RELAXED);
}

/* Word 0 of every page of the area: the stamp it holds. */
static inline void snap(const struct guest *g, uint64_t area, uint32_t *out)
{
	for (uint64_t i = 0; i < AREA_PAGES; i++)
		out[i] = word0(g, area + i * PAGE);
}

static inline uint32_t snap_max(const uint32_t *s)
{
	uint32_t m = 0;

	for (uint64_t i = 0; i < AREA_PAGES; i++)
		m = s[i] > m ? s[i] : m;
	return m;
}

static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts))
		;
}

static inline uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline struct vdev *dev_new(struct guest *g, enum vdev_type t, uint32_t rate,
				   uint32_t pin_after)
{
	struct vdev_config cfg;
	struct vdev *d;

	vdev_config_defaults(&cfg);
	cfg.writes_per_sec = rate;
	cfg.ring_pages = RING;
	cfg.pin_after_ms = pin_after;
	cfg.seed = rng_next();
	d = vdev_new(t, g->iommu, g->regions, 2, area_gpa[t], AREA_SIZE, &cfg);
	assert_non_null(d);
	EXPECT_EQ(vdev_type(d), t);
	return d;
}

static inline void expect_verified(const struct vdev *d)
{
	uint64_t bad[4] = {0};

	EXPECT_EQ(vdev_verify(d, bad, 4), 0);
	EXPECT_EQ(bad[0], 0);
}

static inline uint8_t *save_blob(struct vdev *d, size_t *len)
{
	uint64_t size = vdev_state_size(d);
	uint8_t *buf = malloc(size);
	int64_t n;

	assert_non_null(buf);
	n = vdev_save(d, buf, size);
	EXPECT_EQ(n, size);
	*len = (size_t)n;
	return buf;
}

static inline bool bit(const uint64_t *b, uint64_t n)
{
	return b[n / 64] >> (n % 64) & 1;
}

static inline void set_bit(uint64_t *b, uint64_t n)
{
	b[n / 64] |= 1ull << (n % 64);
}

/* Pages of the area whose stamp changed from a to b, as set pages; their number. */
static inline uint64_t changed_pages(uint64_t area, const uint32_t *a, const uint32_t *b,
				     uint64_t *bm)
{
	uint64_t n = 0;

	memset(bm, 0, NPAGES / 8);
	for (uint64_t i = 0; i < AREA_PAGES; i++) {
		if (a[i] == b[i])
			continue;
		EXPECT_TRUE(b[i] > a[i]); /* stamps only grow */
		set_bit(bm, area / PAGE + i);
		n++;
	}
	return n;
}

static inline void ring_pages(uint64_t area, uint64_t *bm)
{
	memset(bm, 0, NPAGES / 8);
	for (uint64_t i = 0; i < RING; i++)
		set_bit(bm, area / PAGE + i);
}

static inline bool subset(const uint64_t *a, const uint64_t *b)
{
	for (uint64_t w = 0; w < NPAGES / 64; w++)
		if (a[w] & ~b[w])
			return false;
	return true;
}

static inline bool whole_scope(struct guest *g)
{
	struct dt_iommu_stats st;

	assert_int_equal(dt_iommu_get_stats(g->iommu, &st), 0);
	return st.whole_scope;
}

static inline uint64_t pinned_count(struct guest *g)
{
	struct dt_report rep = {.size = sizeof(rep), .iova = 0, .length = MEM};

	assert_int_equal(dt_iommu_pinned(g->iommu, &rep), 0);
	return rep.counts.pinned;
}

#endif
