/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_vfio_dirty.c - VFIO_IOMMU_DIRTY_PAGES and the dirty side of UNMAP_DMA
 * through dt_vfio_ioctl (SEMANTICS.md sections 2 and 3): the flag rules of START / STOP /
 * GET_BITMAP, the errno order of GET_BITMAP, the numbered report scenarios of section 2,
 * ranges over several mappings and holes (words wholly in holes untouched, shared words
 * OR-ed), a mapping added while tracking starts clean, and UNMAP with and without
 * GET_DIRTY_BITMAP (exactly what a report would say, then the mapping is gone; without the
 * flag the bits go with the mapping).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define START VFIO_IOMMU_DIRTY_PAGES_FLAG_START
#define STOP  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP
#define GETBM VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP

static void log_pages(struct dt_device *dev, uint64_t iova, uint64_t first, uint64_t n)
{
	EXPECT_EQ(dt_dma_log(dev, iova + first * PG, n * PG), 0);
}

static void test_dirty_flag_rules(void **state)
{
	struct dt_iommu *io = *state;
	struct vfio_iommu_type1_dirty_bitmap arg;
	const uint32_t bad[] = {
		0,	 START | STOP,	    START | GETBM, STOP | GETBM, START | STOP | GETBM,
		1u << 3, START | (1u << 5), 1u << 31};

	for (uint32_t sz = 0; sz < 8; sz++) {
		arg.argsz = sz;
		arg.flags = START;
		ctx_set("DIRTY_PAGES START with argsz %u < 8", sz);
		EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &arg), -EINVAL);
		EXPECT_TRUE(!dt_iommu_dirty_tracking(io));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ctx_set("DIRTY_PAGES flags 0x%x", bad[i]);
		EXPECT_EQ(vfio_dirty(io, bad[i]), -EINVAL);
		EXPECT_TRUE(!dt_iommu_dirty_tracking(io));
	}
	ctx_set("START, START, STOP, STOP");
	EXPECT_EQ(vfio_dirty(io, START), 0);
	EXPECT_TRUE(dt_iommu_dirty_tracking(io));
	EXPECT_EQ(vfio_dirty(io, START), 0);
	EXPECT_TRUE(dt_iommu_dirty_tracking(io));
	EXPECT_EQ(vfio_dirty(io, STOP), 0);
	EXPECT_TRUE(!dt_iommu_dirty_tracking(io));
	EXPECT_EQ(vfio_dirty(io, STOP), 0);
	EXPECT_TRUE(!dt_iommu_dirty_tracking(io));
}

static void test_start_twice_keeps_stop_drops(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *log = attach(io, DT_DEVICE_LOGGING);
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);

	map_region(io, IOVA_BASE, 16);
	tracking_start(io);
	log_pages(log, IOVA_BASE, 1, 2);
	ctx_set("START while started keeps the bits");
	EXPECT_EQ(vfio_dirty(io, START), 0);
	EXPECT_REPORT(io, IOVA_BASE, 16, "1-2");

	log_pages(log, IOVA_BASE, 4, 1);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 9 * PG, 1, PROT_READ | PROT_WRITE, NULL), 1);
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 9 * PG, 1), 1);
	ctx_set("STOP drops every bit (logged, unpinned-once)");
	EXPECT_EQ(vfio_dirty(io, STOP), 0);
	EXPECT_EQ(vfio_dirty(io, STOP), 0);
	EXPECT_EQ(vfio_dirty(io, START), 0);
	EXPECT_REPORT(io, IOVA_BASE, 16, "");

	ctx_set("START fills in the pages pinned while stopped");
	EXPECT_EQ(vfio_dirty(io, STOP), 0);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 6 * PG, 2, PROT_READ, NULL), 2);
	EXPECT_EQ(vfio_dirty(io, START), 0);
	EXPECT_REPORT(io, IOVA_BASE, 16, "6-7");
	EXPECT_REPORT(io, IOVA_BASE, 16, "6-7");
}

/* The migration capability's max_dirty_bitmap_size. */
static uint64_t max_bitmap_size(struct dt_iommu *io)
{
	struct vfio_iommu_type1_info probe = {.argsz = sizeof(probe)};
	uint64_t max = 0;
	uint8_t *buf;

	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_GET_INFO, &probe), 0);
	buf = calloc(1, probe.argsz);
	assert_non_null(buf);
	((struct vfio_iommu_type1_info *)buf)->argsz = probe.argsz;
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_GET_INFO, buf), 0);
	for (uint32_t off = ((struct vfio_iommu_type1_info *)buf)->cap_offset; off;) {
		struct vfio_iommu_type1_info_cap_migration mig;

		memcpy(&mig.header, buf + off, sizeof(mig.header));
		if (mig.header.id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
			memcpy(&mig, buf + off, sizeof(mig));
			max = mig.max_dirty_bitmap_size;
			break;
		}
		off = mig.header.next;
	}
	free(buf);
	EXPECT_TRUE(max != 0);
	return max;
}

struct getbm {
	struct vfio_iommu_type1_dirty_bitmap hdr;
	struct vfio_iommu_type1_dirty_bitmap_get get;
};

/* A valid GET_BITMAP of 128 pages at IOVA_BASE into bm (16 bytes). */
static void getbm_init(struct getbm *a, uint64_t *bm)
{
	memset(a, 0, sizeof(*a));
	a->hdr.argsz = sizeof(*a);
	a->hdr.flags = GETBM;
	a->get.iova = IOVA_BASE;
	a->get.size = 128 * PG;
	a->get.bitmap.pgsize = PG;
	a->get.bitmap.size = 16;
	a->get.bitmap.data = (__u64 *)bm;
}

static void test_get_bitmap_errnos(void **state)
{
	struct dt_iommu *io = *state;
	uint64_t max = max_bitmap_size(io), bm[2] = {0, 0};
	struct getbm a;

	map_region(io, IOVA_BASE, 128);
	getbm_init(&a, bm);
	ctx_set("tracking off (everything else valid)");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &a), -EINVAL);
	ctx_set("tracking off, range wraps: the wrap is checked first");
	a.get.iova = UINT64_MAX - PG + 1;
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &a), -EOVERFLOW);
	tracking_start(io);

	/* Each rule alone. */
	for (uint32_t sz = 8; sz < sizeof(a); sz += 4) {
		getbm_init(&a, bm);
		a.hdr.argsz = sz;
		ctx_set("GET_BITMAP argsz %u < 48", sz);
		EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &a), -EINVAL);
	}
	struct {
		const char *what;
		uint64_t iova, size, pgsize, bm_size;
		int err;
	} cases[] = {
		{"size 0", IOVA_BASE, 0, PG, 16, -EINVAL},
		{"wrap", UINT64_MAX - PG + 1, 128 * PG, PG, 16, -EOVERFLOW},
		{"bitmap size 0", IOVA_BASE, 128 * PG, PG, 0, -EINVAL},
		{"bitmap larger than max_dirty_bitmap_size", IOVA_BASE, 128 * PG, PG, max + 8,
		 -EINVAL},
		{"bitmap size 2^64 - 1", IOVA_BASE, 128 * PG, PG, UINT64_MAX, -EINVAL},
		{"bitmap 8 bytes for 128 pages", IOVA_BASE, 128 * PG, PG, 8, -EINVAL},
		{"bitmap 8 bytes for 65 pages", IOVA_BASE, 65 * PG, PG, 8, -EINVAL},
		{"pgsize 8 KiB", IOVA_BASE, 128 * PG, 2 * PG, 16, -EINVAL},
		{"pgsize 2 KiB", IOVA_BASE, 128 * PG, PG / 2, 64, -EINVAL},
		{"pgsize 0", IOVA_BASE, 128 * PG, 0, 16, -EINVAL},
		{"iova unaligned", IOVA_BASE + 512, 127 * PG, PG, 16, -EINVAL},
		{"size unaligned", IOVA_BASE, 127 * PG + 512, PG, 16, -EINVAL},
		{"range cuts the mapping at its start", IOVA_BASE + PG, 127 * PG, PG, 16, -EINVAL},
		{"range cuts the mapping at its end", IOVA_BASE, 127 * PG, PG, 16, -EINVAL},
		/* Order: the earlier rule decides. */
		{"size 0 at the top of the IOVA space", UINT64_MAX - PG + 1, 0, PG, 16, -EINVAL},
		{"wrap and bitmap size 0", UINT64_MAX - PG + 1, 128 * PG, PG, 0, -EOVERFLOW},
		{"wrap and pgsize 8 KiB", UINT64_MAX - PG + 1, 128 * PG, 2 * PG, 16, -EOVERFLOW},
		{"wrap and iova unaligned", UINT64_MAX - 100, 128 * PG, PG, 16, -EOVERFLOW},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		getbm_init(&a, bm);
		a.get.iova = cases[i].iova;
		a.get.size = cases[i].size;
		a.get.bitmap.pgsize = cases[i].pgsize;
		a.get.bitmap.size = cases[i].bm_size;
		ctx_set("GET_BITMAP: %s", cases[i].what);
		EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &a), cases[i].err);
	}
	getbm_init(&a, bm);
	a.hdr.argsz = 20;
	a.get.iova = UINT64_MAX - PG + 1;
	ctx_set("argsz 20 and wrap: argsz is checked first");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &a), -EINVAL);
	getbm_init(&a, bm);
	ctx_set("the valid call");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &a), 0);
}

/* Section 2, scenarios 1-4: pinned pages are perpetually dirty, unpinned ones once more. */
static void test_scenarios_pin_unpin(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);

	map_region(io, IOVA_BASE, 64);
	ctx_set("1. pin x = 3 pages, start, report: x");
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE, 3, PROT_READ | PROT_WRITE, NULL), 3);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 64, "0-2");
	ctx_set("2. pin y = 2 more, report: x + y");
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 40 * PG, 2, PROT_READ, NULL), 2);
	EXPECT_REPORT(io, IOVA_BASE, 64, "0-2,40-41");
	ctx_set("3. unpin z = 2 of them, report: still x + y");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + PG, 1), 1);
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 41 * PG, 1), 1);
	EXPECT_REPORT(io, IOVA_BASE, 64, "0-2,40-41");
	ctx_set("4. report again: x + y - z");
	EXPECT_REPORT(io, IOVA_BASE, 64, "0,2,40");
	EXPECT_REPORT(io, IOVA_BASE, 64, "0,2,40");
}

/* Scenario 5: a 2-byte write across a page boundary marks 2 pages; a read marks none. */
static void test_scenario_dma_rw(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	uint8_t *host = map_region(io, IOVA_BASE, 8);
	uint8_t two[2] = {0x5a, 0xa5}, buf[300];

	tracking_start(io);
	ctx_set("dma_rw write of 2 bytes at PAGE_SIZE - 1");
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + PG - 1, two, 2, true), 0);
	EXPECT_EQ(host[PG - 1], 0x5a);
	EXPECT_EQ(host[PG], 0xa5);
	EXPECT_REPORT(io, IOVA_BASE, 8, "0-1");
	ctx_set("reported once, never again");
	EXPECT_REPORT(io, IOVA_BASE, 8, "");
	ctx_set("dma_rw read of 300 bytes across pages 2-3");
	memset(host + 3 * PG - 100, 0x77, 300);
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 3 * PG - 100, buf, sizeof(buf), false), 0);
	EXPECT_EQ(buf[0], 0x77);
	EXPECT_EQ(buf[299], 0x77);
	EXPECT_REPORT(io, IOVA_BASE, 8, "");
	ctx_set("write of exactly one page at page 5 marks 1 page");
	uint8_t page[PG];
	memset(page, 1, sizeof(page));
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 5 * PG, page, PG, true), 0);
	EXPECT_REPORT(io, IOVA_BASE, 8, "5");
}

/* Scenario 6: a LOGGING device's pins never appear; its logs appear exactly once. */
static void test_scenario_logging_device(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);

	map_region(io, IOVA_BASE, 32);
	EXPECT_EQ(dt_pin_pages(dev, IOVA_BASE + 3 * PG, 2, PROT_READ | PROT_WRITE, NULL), 2);
	tracking_start(io);
	ctx_set("LOGGING pins before start: not dirty");
	EXPECT_REPORT(io, IOVA_BASE, 32, "");
	EXPECT_EQ(dt_pin_pages(dev, IOVA_BASE + 20 * PG, 1, PROT_READ, NULL), 1);
	log_pages(dev, IOVA_BASE, 7, 2);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 30 * PG + 17, 1), 0);
	ctx_set("LOGGING device: its logs, not its pins");
	EXPECT_REPORT(io, IOVA_BASE, 32, "7-8,30");
	ctx_set("its logs once only");
	EXPECT_REPORT(io, IOVA_BASE, 32, "");
	ctx_set("its unpins never dirty");
	EXPECT_EQ(dt_unpin_pages(dev, IOVA_BASE + 3 * PG, 2), 2);
	EXPECT_EQ(dt_unpin_pages(dev, IOVA_BASE + 20 * PG, 1), 1);
	EXPECT_REPORT(io, IOVA_BASE, 32, "");
}

/* Scenario 7: two reports with no activity: only pinned pages, or all ones in whole scope. */
static void test_scenario_quiet_reports(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED), *pt;

	map_region(io, IOVA_BASE, 16);
	map_region(io, IOVA_BASE + 20 * PG, 4);
	tracking_start(io);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 5 * PG, 1, PROT_READ, NULL), 1);
	log_pages(emu, IOVA_BASE, 9, 1);
	log_pages(emu, IOVA_BASE, 21, 1);
	ctx_set("pinned scope: first report");
	EXPECT_REPORT(io, IOVA_BASE, 24, "5,9,21");
	ctx_set("pinned scope: quiet report");
	EXPECT_REPORT(io, IOVA_BASE, 24, "5");
	EXPECT_REPORT(io, IOVA_BASE, 24, "5");
	pt = attach(io, DT_DEVICE_PASSTHROUGH);
	ctx_set("whole-mapping scope: every page of every mapping, holes clear");
	EXPECT_REPORT(io, IOVA_BASE, 24, "0-15,20-23");
	EXPECT_REPORT(io, IOVA_BASE, 24, "0-15,20-23");
	(void)pt;
}

/*
 * One range over four mappings and holes, 512 pages (8 words) from IOVA_BASE:
 *   A pages 3-12, B 13-20 (adjacent, shares word 0 with A), C 200-269, D 450-511.
 * Words 1, 2 (pages 64-191), 5 (320-383) and 6 (384-447) lie wholly in holes.
 */
#define SPAN_PAGES 512
static const uint64_t hole_words[] = {1, 2, 5, 6};

static void map_span(struct dt_iommu *io)
{
	map_region(io, IOVA_BASE + 3 * PG, 10);
	map_region(io, IOVA_BASE + 13 * PG, 8);
	map_region(io, IOVA_BASE + 200 * PG, 70);
	map_region(io, IOVA_BASE + 450 * PG, 62);
}

/* A native NO_CLEAR report, then GET_BITMAP, over the span with canaries in the hole
 * words; expect spec elsewhere. */
static void expect_span(struct dt_iommu *io, const char *spec)
{
	uint64_t bm[SPAN_PAGES / 64], canary = 0xdeadbeefcafef00dull;
	uint8_t *exp = bm_new(SPAN_PAGES);

	bits_from_spec(exp, spec);
	for (int native = 1; native >= 0; native--) {
		memset(bm, 0, sizeof(bm));
		for (size_t i = 0; i < sizeof(hole_words) / sizeof(hole_words[0]); i++)
			bm[hole_words[i]] = canary;
		if (native)
			EXPECT_EQ(native_report(io, IOVA_BASE, SPAN_PAGES * PG, 0,
						DT_REPORT_NO_CLEAR, bm, sizeof(bm), NULL),
				  0);
		else
			EXPECT_EQ(
				vfio_get_bitmap(io, IOVA_BASE, SPAN_PAGES * PG, PG, bm, sizeof(bm)),
				0);
		for (size_t i = 0; i < sizeof(hole_words) / sizeof(hole_words[0]); i++) {
			ctx_set("%s: word %" PRIu64 " lies wholly in a hole: not written",
				native ? "dt_iommu_report" : "GET_BITMAP", hole_words[i]);
			EXPECT_EQ(bm[hole_words[i]], canary);
			bm[hole_words[i]] = 0;
		}
		ctx_set("%s: range over mappings A, B, C, D and holes",
			native ? "dt_iommu_report NO_CLEAR" : "GET_BITMAP");
		EXPECT_BITS(bm, exp, SPAN_PAGES);
	}
	free(exp);
}

static void test_range_over_mappings_and_holes(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);

	map_span(io);
	tracking_start(io);
	/* First and last pages of each mapping, and the pages either side of A|B. */
	log_pages(dev, IOVA_BASE, 3, 1);
	log_pages(dev, IOVA_BASE, 12, 2);
	log_pages(dev, IOVA_BASE, 20, 1);
	log_pages(dev, IOVA_BASE, 200, 1);
	log_pages(dev, IOVA_BASE, 255, 2);
	log_pages(dev, IOVA_BASE, 269, 1);
	log_pages(dev, IOVA_BASE, 450, 1);
	log_pages(dev, IOVA_BASE, 511, 1);
	expect_span(io, "3,12-13,20,200,255-256,269,450,511");
	expect_span(io, "");
	ctx_set("a log across the A|B boundary");
	log_pages(dev, IOVA_BASE, 5, 10);
	expect_span(io, "5-14");

	ctx_set("a range wholly in the hole between B and C: success, nothing written");
	uint64_t hole_bm[2] = {0x1111, 0x2222};
	EXPECT_EQ(vfio_get_bitmap(io, IOVA_BASE + 64 * PG, 128 * PG, PG, hole_bm, 16), 0);
	EXPECT_EQ(hole_bm[0], 0x1111);
	EXPECT_EQ(hole_bm[1], 0x2222);
	ctx_set("UNMAP with bitmap wholly in that hole: size 0, nothing written");
	uint64_t size = 99;
	EXPECT_EQ(vfio_unmap_bitmap(io, IOVA_BASE + 64 * PG, 128 * PG, PG, hole_bm, 16, &size), 0);
	EXPECT_EQ(size, 0);
	EXPECT_EQ(hole_bm[0], 0x1111);
	EXPECT_EQ(hole_bm[1], 0x2222);
}

static void test_range_whole_scope_holes_untouched(void **state)
{
	struct dt_iommu *io = *state;

	map_span(io);
	attach(io, DT_DEVICE_PASSTHROUGH);
	tracking_start(io);
	expect_span(io, "3-20,200-269,450-511");
	ctx_set("a range from the middle of the first hole to the end of C");
	uint64_t bm[4] = {0, 0, 0, 0};

	EXPECT_EQ(vfio_get_bitmap(io, IOVA_BASE + 64 * PG, 206 * PG, PG, bm, sizeof(bm)), 0);
	EXPECT_BITS_SPEC(bm, 206, "136-205");
}

static void test_new_mapping_starts_clean(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);

	map_region(io, IOVA_BASE, 8);
	tracking_start(io);
	log_pages(emu, IOVA_BASE, 2, 1);
	ctx_set("a mapping added while tracking");
	map_region(io, IOVA_BASE + 8 * PG, 8);
	EXPECT_REPORT(io, IOVA_BASE, 16, "2");
	log_pages(emu, IOVA_BASE, 9, 1);
	EXPECT_REPORT(io, IOVA_BASE, 16, "9");
}

static void test_unmap_without_flag_drops_bits(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	uint64_t size;

	map_region(io, IOVA_BASE, 8);
	map_region(io, IOVA_BASE + 8 * PG, 8);
	tracking_start(io);
	log_pages(emu, IOVA_BASE, 1, 1);
	log_pages(emu, IOVA_BASE, 10, 2);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 12 * PG, 1, PROT_READ, NULL), 1);
	ctx_set("unmap of the second mapping while tracking, without the flag");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE + 8 * PG, 8 * PG, 0, &size), 0);
	EXPECT_EQ(size, 8 * PG);
	map_region(io, IOVA_BASE + 8 * PG, 8);
	ctx_set("its bits (logged, pinned, unpinned) went with it; the first kept its own");
	EXPECT_REPORT(io, IOVA_BASE, 16, "1");
	EXPECT_REPORT(io, IOVA_BASE, 16, "");
}

/* Unmap with GET_DIRTY_BITMAP after a NO_CLEAR native report of the same range. */
static void unmap_matches_report(struct dt_iommu *io, uint64_t iova, uint64_t npages,
				 uint64_t mapped_bytes, const char *spec)
{
	uint8_t *seen = bm_new(npages), *report = bm_new(npages);
	uint64_t size = 0;

	EXPECT_EQ(native_report(io, iova, npages * PG, 0, DT_REPORT_NO_CLEAR, report,
				bm_bytes(npages), NULL),
		  0);
	EXPECT_EQ(vfio_unmap_bitmap(io, iova, npages * PG, PG, seen, bm_bytes(npages), &size), 0);
	EXPECT_EQ(size, mapped_bytes);
	EXPECT_BITS_SPEC(seen, npages, spec);
	EXPECT_BITS(seen, report, npages);
	free(seen);
	free(report);
}

static void test_unmap_with_bitmap(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_iommu_stats st;

	map_region(io, IOVA_BASE, 70);
	map_region(io, IOVA_BASE + 100 * PG, 30);
	tracking_start(io);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 3 * PG, 2, PROT_READ, NULL), 2);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 129 * PG, 1, PROT_READ, NULL), 1);
	log_pages(emu, IOVA_BASE, 0, 1);
	log_pages(emu, IOVA_BASE, 63, 2);
	log_pages(emu, IOVA_BASE, 69, 1);
	log_pages(emu, IOVA_BASE, 100, 1);
	ctx_set("unmap with bitmap over two mappings and a hole: pinned pages included");
	unmap_matches_report(io, IOVA_BASE, 130, 100 * PG, "0,3-4,63-64,69,100,129");
	EXPECT_EQ(dt_iommu_get_stats(io, &st), 0);
	EXPECT_EQ(st.mappings, 0);
	EXPECT_EQ(st.pinned_pages, 0);
	ctx_set("the mappings are gone: pin fails, a new mapping there starts clean");
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE, 1, PROT_READ, NULL), -EINVAL);
	map_region(io, IOVA_BASE, 130);
	EXPECT_REPORT(io, IOVA_BASE, 130, "");
}

static void test_unmap_with_bitmap_whole_scope(void **state)
{
	struct dt_iommu *io = *state;

	map_region(io, IOVA_BASE + 2 * PG, 5);
	map_region(io, IOVA_BASE + 70 * PG, 3);
	attach(io, DT_DEVICE_PASSTHROUGH);
	tracking_start(io);
	ctx_set("whole-mapping scope: all ones over the mappings, bit 0 = iova");
	unmap_matches_report(io, IOVA_BASE, 80, 8 * PG, "2-6,70-72");
}

static void test_unmap_with_bitmap_after_promotion(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);

	map_region(io, IOVA_BASE, 5);
	map_region(io, IOVA_BASE + 6 * PG, 3);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 9, "0-4,6-8");
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 7 * PG, 1, PROT_READ, NULL), 1);
	ctx_set("after the first pin of a PASSTHROUGH device: every page dirty once, in the unmap");
	unmap_matches_report(io, IOVA_BASE + 6 * PG, 3, 3 * PG, "0-2");
	EXPECT_REPORT(io, IOVA_BASE, 5, "0-4");
	EXPECT_REPORT(io, IOVA_BASE, 5, "");
}

static void test_unmap_with_bitmap_errnos(void **state)
{
	struct dt_iommu *io = *state;
	uint64_t bm[2] = {0, 0};
	struct dt_iommu_stats st;

	map_region(io, IOVA_BASE, 65);
	ctx_set("unmap with bitmap while tracking is off");
	EXPECT_EQ(vfio_unmap_bitmap(io, IOVA_BASE, 65 * PG, PG, bm, 16, NULL), -EINVAL);
	tracking_start(io);
	ctx_set("unmap with bitmap, pgsize 8 KiB");
	EXPECT_EQ(vfio_unmap_bitmap(io, IOVA_BASE, 65 * PG, 2 * PG, bm, 16, NULL), -EINVAL);
	ctx_set("unmap with bitmap, 8 bytes for 65 pages");
	EXPECT_EQ(vfio_unmap_bitmap(io, IOVA_BASE, 65 * PG, PG, bm, 8, NULL), -EINVAL);
	ctx_set("unmap with bitmap, bitmap size 0");
	EXPECT_EQ(vfio_unmap_bitmap(io, IOVA_BASE, 65 * PG, PG, bm, 0, NULL), -EINVAL);
	ctx_set("unmap with bitmap that cuts the mapping");
	EXPECT_EQ(vfio_unmap_bitmap(io, IOVA_BASE, 64 * PG, PG, bm, 16, NULL), -EINVAL);
	EXPECT_EQ(dt_iommu_get_stats(io, &st), 0);
	EXPECT_EQ(st.mappings, 1);
	EXPECT_EQ(bm[0] | bm[1], 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_dirty_flag_rules),
		UT(test_start_twice_keeps_stop_drops),
		UT(test_get_bitmap_errnos),
		UT(test_scenarios_pin_unpin),
		UT(test_scenario_dma_rw),
		UT(test_scenario_logging_device),
		UT(test_scenario_quiet_reports),
		UT(test_range_over_mappings_and_holes),
		UT(test_range_whole_scope_holes_untouched),
		UT(test_new_mapping_starts_clean),
		UT(test_unmap_without_flag_drops_bits),
		UT(test_unmap_with_bitmap),
		UT(test_unmap_with_bitmap_whole_scope),
		UT(test_unmap_with_bitmap_after_promotion),
		UT(test_unmap_with_bitmap_errnos),
	};

	return cmocka_run_group_tests_name("vfio_dirty", tests, NULL, NULL);
}
