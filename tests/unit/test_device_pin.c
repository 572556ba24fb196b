/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_device_pin.c - dt_pin_pages / dt_unpin_pages (SEMANTICS.md section 4) and
 * what an unmap does to pins (section 3): the errnos (-EINVAL outside the mappings, npage <=
 * 0, unaligned, bad prot; -EPERM when a mapping forbids prot) with nothing pinned on error,
 * pins across adjacent mappings with the host addresses filled in, pins counted per device
 * and page, unpin of a page not pinned, and the unmap callback of a device whose pinned
 * pages are unmapped (called before the pins go, which are then dropped).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"

#define PRW (PROT_READ | PROT_WRITE)

static uint64_t pinned_pages(struct dt_iommu *io)
{
	struct dt_iommu_stats st;

	EXPECT_EQ(dt_iommu_get_stats(io, &st), 0);
	return st.pinned_pages;
}

/* dt_iommu_pinned over npages from iova: expect exactly spec. */
static void expect_pinned(struct dt_iommu *io, uint64_t iova, uint64_t npages, const char *spec)
{
	uint8_t *bm = bm_new(npages);
	struct dt_report rep = {.size = sizeof(rep),
				.iova = iova,
				.length = npages * PG,
				.bitmap = bm,
				.bitmap_size = bm_bytes(npages)};

	EXPECT_EQ(dt_iommu_pinned(io, &rep), 0);
	EXPECT_BITS_SPEC(bm, npages, spec);
	free(bm);
}

static void test_pin_errnos(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	void *va[8] = {0};

	/* RW pages 0-7, hole 8-15, read-only 16-19, write-only 20-23. */
	map_region(io, IOVA_BASE, 8);
	map_region_flags(io, IOVA_BASE + 16 * PG, 4, VFIO_DMA_MAP_FLAG_READ);
	map_region_flags(io, IOVA_BASE + 20 * PG, 4, VFIO_DMA_MAP_FLAG_WRITE);
	tracking_start(io);
	struct {
		const char *what;
		uint64_t iova;
		int npage, prot, err;
	} cases[] = {
		{"a page in the hole", IOVA_BASE + 10 * PG, 1, PRW, -EINVAL},
		{"from the RW mapping into the hole", IOVA_BASE + 6 * PG, 4, PRW, -EINVAL},
		{"from the hole into the RO mapping", IOVA_BASE + 15 * PG, 2, PROT_READ, -EINVAL},
		{"below every mapping", IOVA_BASE - PG, 2, PRW, -EINVAL},
		{"npage 0", IOVA_BASE, 0, PRW, -EINVAL},
		{"npage -1", IOVA_BASE, -1, PRW, -EINVAL},
		{"iova unaligned", IOVA_BASE + 8, 1, PRW, -EINVAL},
		{"prot 0", IOVA_BASE, 1, 0, -EINVAL},
		{"prot PROT_EXEC", IOVA_BASE, 1, PROT_READ | PROT_EXEC, -EINVAL},
		{"write on the read-only mapping", IOVA_BASE + 16 * PG, 1, PROT_WRITE, -EPERM},
		{"RW on the read-only mapping", IOVA_BASE + 16 * PG, 2, PRW, -EPERM},
		{"read on the write-only mapping", IOVA_BASE + 21 * PG, 1, PROT_READ, -EPERM},
		{"RO then WO mapping, read", IOVA_BASE + 18 * PG, 4, PROT_READ, -EPERM},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ctx_set("pin: %s", cases[i].what);
		EXPECT_EQ(dt_pin_pages(emu, cases[i].iova, cases[i].npage, cases[i].prot, va),
			  cases[i].err);
		EXPECT_EQ(pinned_pages(io), 0);
	}
	ctx_set("nothing pinned and nothing dirty after the failed pins");
	expect_pinned(io, IOVA_BASE, 24, "");
	EXPECT_REPORT(io, IOVA_BASE, 24, "");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 6 * PG, 1), -EINVAL);
	ctx_set("the allowed ones");
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 16 * PG, 4, PROT_READ, NULL), 4);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 20 * PG, 4, PROT_WRITE, NULL), 4);
	expect_pinned(io, IOVA_BASE, 24, "16-23");
	EXPECT_EQ(pinned_pages(io), 8);
}

static void test_pin_adjacent_mappings(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	uint8_t *a = map_region(io, IOVA_BASE, 4);
	uint8_t *b = map_region(io, IOVA_BASE + 4 * PG, 4);
	void *va[5] = {0};

	tracking_start(io);
	ctx_set("pin of pages 2-6 across two adjacent mappings");
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 2 * PG, 5, PRW, va), 5);
	EXPECT_TRUE(va[0] == a + 2 * PG);
	EXPECT_TRUE(va[1] == a + 3 * PG);
	EXPECT_TRUE(va[2] == b);
	EXPECT_TRUE(va[3] == b + PG);
	EXPECT_TRUE(va[4] == b + 2 * PG);
	expect_pinned(io, IOVA_BASE, 8, "2-6");
	EXPECT_REPORT(io, IOVA_BASE, 8, "2-6");
	ctx_set("unpin across the boundary");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 3 * PG, 2), 2);
	expect_pinned(io, IOVA_BASE, 8, "2,5-6");
	EXPECT_REPORT(io, IOVA_BASE, 8, "2-6");
	EXPECT_REPORT(io, IOVA_BASE, 8, "2,5-6");
}

static void test_pin_counted(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_device *emu2 = attach(io, DT_DEVICE_EMULATED);

	map_region(io, IOVA_BASE, 8);
	tracking_start(io);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + PG, 1, PRW, NULL), 1);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + PG, 2, PRW, NULL), 2);
	EXPECT_REPORT(io, IOVA_BASE, 8, "1-2");
	ctx_set("page 1 pinned twice, unpinned once: still pinned, not 'unpinned'");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + PG, 1), 1);
	expect_pinned(io, IOVA_BASE, 8, "1-2");
	EXPECT_REPORT(io, IOVA_BASE, 8, "1-2");
	ctx_set("second unpin: dirty once more, then gone");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + PG, 1), 1);
	expect_pinned(io, IOVA_BASE, 8, "2");
	EXPECT_REPORT(io, IOVA_BASE, 8, "1-2");
	EXPECT_REPORT(io, IOVA_BASE, 8, "2");
	ctx_set("a third unpin of page 1: not pinned");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + PG, 1), -EINVAL);
	ctx_set("unpin of pages 2-3 where 3 is not pinned: nothing unpinned");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 2 * PG, 2), -EINVAL);
	expect_pinned(io, IOVA_BASE, 8, "2");
	EXPECT_REPORT(io, IOVA_BASE, 8, "2");
	ctx_set("unpin bad arguments");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 2 * PG, 0), -EINVAL);
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 2 * PG + 1, 1), -EINVAL);
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 2 * PG, -3), -EINVAL);
	ctx_set("another device's pin cannot be unpinned");
	EXPECT_EQ(dt_unpin_pages(emu2, IOVA_BASE + 2 * PG, 1), -EINVAL);
	ctx_set("two devices pin page 2: one unpins, the page stays pinned");
	EXPECT_EQ(dt_pin_pages(emu2, IOVA_BASE + 2 * PG, 1, PROT_READ, NULL), 1);
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 2 * PG, 1), 1);
	expect_pinned(io, IOVA_BASE, 8, "2");
	EXPECT_EQ(pinned_pages(io), 1);
	EXPECT_REPORT(io, IOVA_BASE, 8, "2");
	EXPECT_REPORT(io, IOVA_BASE, 8, "2");
	EXPECT_EQ(dt_unpin_pages(emu2, IOVA_BASE + 2 * PG, 1), 1);
	EXPECT_REPORT(io, IOVA_BASE, 8, "2");
	EXPECT_REPORT(io, IOVA_BASE, 8, "");
	EXPECT_EQ(pinned_pages(io), 0);

	ctx_set("page 6 pinned by LOGGING and EMULATED: the EMULATED unpin ends 'pinned'");
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	EXPECT_EQ(dt_pin_pages(dev, IOVA_BASE + 6 * PG, 1, PROT_READ, NULL), 1);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 6 * PG, 1, PROT_READ, NULL), 1);
	EXPECT_REPORT(io, IOVA_BASE, 8, "6");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 6 * PG, 1), 1);
	expect_pinned(io, IOVA_BASE, 8, "");
	EXPECT_EQ(pinned_pages(io), 1); /* distinct pages pinned by any device */
	EXPECT_REPORT(io, IOVA_BASE, 8, "6");
	EXPECT_REPORT(io, IOVA_BASE, 8, "");
}

struct cb_log {
	struct dt_device *dev;
	unsigned calls;
	uint64_t iova, size;
	int unpin_ret; /* what an unpin from inside the callback returned */
	bool unpin;
};

static void unmap_cb(void *opaque, uint64_t iova, uint64_t size)
{
	struct cb_log *l = opaque;

	l->calls++;
	l->iova = iova;
	l->size = size;
	if (l->unpin)
		l->unpin_ret = dt_unpin_pages(l->dev, IOVA_BASE + 2 * PG, 1);
}

static void test_unmap_drops_pins_and_calls_back(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_device *idle = attach(io, DT_DEVICE_EMULATED);
	struct cb_log log = {.dev = emu, .unpin = true}, idle_log = {.dev = idle};
	uint64_t size = 0;

	map_region(io, IOVA_BASE, 8);
	map_region(io, IOVA_BASE + 8 * PG, 8);
	EXPECT_EQ(dt_device_set_unmap_cb(emu, unmap_cb, &log), 0);
	EXPECT_EQ(dt_device_set_unmap_cb(idle, unmap_cb, &idle_log), 0);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 2 * PG, 3, PRW, NULL), 3);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 10 * PG, 1, PRW, NULL), 1);
	EXPECT_EQ(dt_pin_pages(idle, IOVA_BASE + 12 * PG, 1, PRW, NULL), 1);
	tracking_start(io);
	ctx_set("unmap of the first mapping with pages 2-4 pinned");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE, 8 * PG, 0, &size), 0);
	EXPECT_EQ(size, 8 * PG);
	EXPECT_TRUE(log.calls >= 1);
	EXPECT_TRUE(log.iova <= IOVA_BASE + 2 * PG);
	EXPECT_TRUE(log.iova >= IOVA_BASE);
	EXPECT_TRUE(log.iova + log.size >= IOVA_BASE + 5 * PG);
	EXPECT_TRUE(log.iova + log.size <= IOVA_BASE + 8 * PG);
	ctx_set("the callback runs before the pins go: an unpin from it succeeds");
	EXPECT_EQ(log.unpin_ret, 1);
	ctx_set("a device with no pin in the unmapped range is not called");
	EXPECT_EQ(idle_log.calls, 0);
	ctx_set("the pins in the unmapped mapping are dropped, the others kept");
	EXPECT_EQ(pinned_pages(io), 2);
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 3 * PG, 1), -EINVAL);
	expect_pinned(io, IOVA_BASE, 16, "10,12");
	EXPECT_REPORT(io, IOVA_BASE + 8 * PG, 8, "2,4");
	ctx_set("a device without a callback: its pins are dropped all the same");
	EXPECT_EQ(dt_device_set_unmap_cb(emu, NULL, NULL), 0);
	log.calls = 0;
	EXPECT_EQ(vfio_unmap(io, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &size), 0);
	EXPECT_EQ(size, 8 * PG);
	EXPECT_EQ(log.calls, 0);
	EXPECT_EQ(idle_log.calls, 1);
	EXPECT_EQ(pinned_pages(io), 0);
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 10 * PG, 1), -EINVAL);
}

/* A mapping that ends at the top of the iova space (iova + size == 2^64, which wraps): its
 * unmap drops its pins and calls the callback, as any other mapping's (the fuzzer found pins
 * left behind, dangling past the unmap). */
static void test_unmap_at_the_top(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct cb_log log = {.dev = emu};
	const uint64_t top = 0ull - 4 * PG;
	uint64_t size = 0;

	map_region(io, top, 4);
	EXPECT_EQ(dt_device_set_unmap_cb(emu, unmap_cb, &log), 0);
	EXPECT_EQ(dt_pin_pages(emu, top + 3 * PG, 1, PRW, NULL), 1);
	EXPECT_EQ(pinned_pages(io), 1);
	EXPECT_EQ(vfio_unmap(io, top, 4 * PG, 0, &size), 0);
	EXPECT_EQ(size, 4 * PG);
	EXPECT_EQ(log.calls, 1);
	EXPECT_EQ(pinned_pages(io), 0);
	EXPECT_EQ(dt_unpin_pages(emu, top + 3 * PG, 1), -EINVAL);
	/* and through unmap-all, then a detach that finds nothing dangling */
	map_region(io, top, 4);
	EXPECT_EQ(dt_pin_pages(emu, top, 4, PRW, NULL), 4);
	EXPECT_EQ(vfio_unmap(io, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &size), 0);
	EXPECT_EQ(pinned_pages(io), 0);
	EXPECT_EQ(dt_device_detach(emu), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_pin_errnos),	   UT(test_pin_adjacent_mappings),
		UT(test_pin_counted),	   UT(test_unmap_drops_pins_and_calls_back),
		UT(test_unmap_at_the_top),
	};

	return cmocka_run_group_tests_name("device_pin", tests, NULL, NULL);
}
