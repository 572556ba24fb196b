/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_report_native.c - the native report, dt_iommu_report (SEMANTICS.md
 * section 5): report page sizes 4 KiB, 8 KiB and 2 MiB (a bit is set if any page in it is
 * dirty), NO_CLEAR, exact per-class counts (a page in two classes counted once in total),
 * SKIP_PINNED with dt_iommu_pinned returning exactly the pinned set, sparse runs (coalesced,
 * in order, exact iova and length), a failing run callback (its value is returned, that run
 * and the later ones come back in the next report as "requeued"), dt_iommu_merge_back and
 * _bitmap, and every errno of dt_iommu_report.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"

#define PRW (PROT_READ | PROT_WRITE)

static void log_pages(struct dt_device *dev, uint64_t first, uint64_t n)
{
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + first * PG, n * PG), 0);
}

static void expect_counts(const struct dt_report_counts *c, uint64_t pinned, uint64_t unpinned,
			  uint64_t dma_rw, uint64_t logged, uint64_t requeued, uint64_t whole,
			  uint64_t total)
{
	EXPECT_EQ(c->pinned, pinned);
	EXPECT_EQ(c->unpinned, unpinned);
	EXPECT_EQ(c->dma_rw, dma_rw);
	EXPECT_EQ(c->logged, logged);
	EXPECT_EQ(c->requeued, requeued);
	EXPECT_EQ(c->whole, whole);
	EXPECT_EQ(c->total, total);
}

/* A report at pgsize over npages container pages from IOVA_BASE: expect spec, counts out. */
static void expect_at_pgsize(struct dt_iommu *io, uint64_t npages, uint64_t pgsize,
			     const char *spec, struct dt_report_counts *c)
{
	uint64_t nbits = (npages * PG + pgsize - 1) / pgsize;
	uint8_t *bm = bm_new(nbits);

	EXPECT_EQ(native_report(io, IOVA_BASE, npages * PG, pgsize, 0, bm, bm_bytes(nbits), c), 0);
	EXPECT_BITS_SPEC(bm, nbits, spec);
	free(bm);
}

static void test_report_page_sizes(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	struct dt_report_counts c;
	/* A: pages 0-1023 (4 MiB at a 2 MiB-aligned iova), B: 1029-1040, 1041 pages. */
	const uint64_t n = 1041;
	const uint64_t pgs[] = {PG, 2 * PG, 512 * PG, 0};
	const char *spec[] = {"0,3,5,519,1023,1029,1040", "0-2,259,511,514,520", "0-2",
			      "0,3,5,519,1023,1029,1040"};

	map_region(io, IOVA_BASE, 1024);
	map_region(io, IOVA_BASE + 1029 * PG, 12);
	tracking_start(io);
	for (size_t i = 0; i < sizeof(pgs) / sizeof(pgs[0]); i++) {
		ctx_set("report page size 0x%" PRIx64 " (0: the container page)", pgs[i]);
		log_pages(dev, 0, 1);
		log_pages(dev, 3, 1);
		log_pages(dev, 5, 1);
		log_pages(dev, 519, 1);
		log_pages(dev, 1023, 1);
		log_pages(dev, 1029, 1);
		log_pages(dev, 1040, 1);
		expect_at_pgsize(io, n, pgs[i] ? pgs[i] : PG, spec[i], &c);
		/* Counts are in container pages whatever the report page. */
		expect_counts(&c, 0, 0, 0, 7, 0, 0, 7);
		expect_at_pgsize(io, n, pgs[i] ? pgs[i] : PG, "", &c);
		expect_counts(&c, 0, 0, 0, 0, 0, 0, 0);
	}
	ctx_set("2 MiB report pages over pages 1024-3071: B and a hole");
	log_pages(dev, 1030, 2);
	uint64_t bm = 0;
	EXPECT_EQ(native_report(io, IOVA_BASE + 1024 * PG, 2048 * PG, 512 * PG, 0, &bm, 8, &c), 0);
	EXPECT_EQ(bm, 1);
	EXPECT_EQ(c.logged, 2);
}

static void test_report_pages_shared_and_partial(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_EMULATED);
	struct dt_report_counts c;
	uint64_t bm[2] = {0, 0};
	struct dt_report rep = {.size = sizeof(rep),
				.iova = IOVA_BASE,
				.length = 8 * PG,
				.pgsize = 4 * PG,
				.bitmap = bm,
				.bitmap_size = 8};

	/* A pages 0-4, B 5-6: the 16 KiB report page 1 (pages 4-7) holds both. */
	map_region(io, IOVA_BASE, 5);
	map_region(io, IOVA_BASE + 5 * PG, 2);
	tracking_start(io);
	log_pages(dev, 4, 2);
	ctx_set("one 16 KiB report page over the end of A and the start of B");
	EXPECT_EQ(native_report(io, IOVA_BASE, 7 * PG, 4 * PG, 0, bm, 8, &c), 0);
	EXPECT_EQ(bm[0], 2);
	expect_counts(&c, 0, 0, 0, 2, 0, 0, 2);
	ctx_set("length 7 pages at 8 KiB: 4 bits, the last report page half in the range");
	log_pages(dev, 6, 1);
	bm[0] = 0;
	EXPECT_EQ(native_report(io, IOVA_BASE, 7 * PG, 2 * PG, 0, bm, 8, &c), 0);
	EXPECT_EQ(bm[0], 8);
	ctx_set("dt_iommu_pinned at 16 KiB report pages");
	EXPECT_EQ(dt_pin_pages(dev, IOVA_BASE + 5 * PG, 1, PROT_READ, NULL), 1);
	bm[0] = 0;
	EXPECT_EQ(dt_iommu_pinned(io, &rep), 0);
	EXPECT_EQ(bm[0], 2);
	EXPECT_EQ(rep.counts.pinned, 1);
	EXPECT_EQ(rep.counts.total, 1);
}

static void test_report_no_clear(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_report_counts c;

	map_region(io, IOVA_BASE, 32);
	tracking_start(io);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 30 * PG, 1, PRW, NULL), 1);
	log_pages(emu, 2, 3);
	ctx_set("NO_CLEAR twice: the same both times");
	EXPECT_NATIVE(io, IOVA_BASE, 32, DT_REPORT_NO_CLEAR, "2-4,30", &c);
	expect_counts(&c, 1, 0, 0, 3, 0, 0, 4);
	EXPECT_NATIVE(io, IOVA_BASE, 32, DT_REPORT_NO_CLEAR, "2-4,30", &c);
	expect_counts(&c, 1, 0, 0, 3, 0, 0, 4);
	ctx_set("a clearing report after NO_CLEAR still has them");
	log_pages(emu, 7, 1);
	EXPECT_NATIVE(io, IOVA_BASE, 32, 0, "2-4,7,30", &c);
	expect_counts(&c, 1, 0, 0, 4, 0, 0, 5);
	EXPECT_NATIVE(io, IOVA_BASE, 32, 0, "30", NULL);
	ctx_set("NO_CLEAR keeps the whole-mapping marks of a promotion");
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 31 * PG, 1, PRW, NULL), 1);
	EXPECT_NATIVE(io, IOVA_BASE, 32, DT_REPORT_NO_CLEAR, "0-31", &c);
	EXPECT_EQ(c.whole, 32);
	EXPECT_NATIVE(io, IOVA_BASE, 32, 0, "0-31", &c);
	EXPECT_NATIVE(io, IOVA_BASE, 32, 0, "30-31", &c);
	ctx_set("GET_BITMAP after NO_CLEAR also has them");
	log_pages(emu, 9, 1);
	EXPECT_NATIVE(io, IOVA_BASE, 32, DT_REPORT_NO_CLEAR, "9,30-31", NULL);
	EXPECT_REPORT(io, IOVA_BASE, 32, "9,30-31");
	ctx_set("a range with no mapping: success, nothing");
	EXPECT_NATIVE(io, IOVA_BASE + 64 * PG, 64, 0, "", &c);
	expect_counts(&c, 0, 0, 0, 0, 0, 0, 0);
}

static void test_report_counts(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_report_counts c;
	uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};

	map_region(io, IOVA_BASE, 16);
	map_region(io, IOVA_BASE + 20 * PG, 4);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE, 3, PRW, NULL), 3);
	tracking_start(io);
	EXPECT_NATIVE(io, IOVA_BASE, 24, 0, "0-2", &c);
	expect_counts(&c, 3, 0, 0, 0, 0, 0, 3);
	ctx_set("one page per class, some pages in two classes");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 2 * PG, 1), 1);	 /* unpinned: 2 */
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + PG, data, 8, true), 0);	 /* dma_rw: 1 */
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 5 * PG, data, 8, true), 0); /* dma_rw: 5 */
	log_pages(emu, 5, 3);						 /* logged: 5-7 */
	log_pages(emu, 21, 1);						 /* logged: 21 */
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE, PG), 0);		 /* requeued: 0 */
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE + 9 * PG, PG), 0);	 /* requeued: 9 */
	EXPECT_NATIVE(io, IOVA_BASE, 24, 0, "0-2,5-7,9,21", &c);
	expect_counts(&c, 2, 1, 2, 4, 2, 0, 8);
	ctx_set("a quiet report: only the pinned pages");
	EXPECT_NATIVE(io, IOVA_BASE, 24, 0, "0-1", &c);
	expect_counts(&c, 2, 0, 0, 0, 0, 0, 2);
	ctx_set("counts without a bitmap or a run callback");
	log_pages(emu, 12, 2);
	EXPECT_EQ(native_report(io, IOVA_BASE, 24 * PG, 0, 0, NULL, 0, &c), 0);
	expect_counts(&c, 2, 0, 0, 2, 0, 0, 4);
	ctx_set("whole-mapping scope: 'whole' counts every mapped page");
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);
	log_pages(emu, 3, 1);
	EXPECT_NATIVE(io, IOVA_BASE, 24, 0, "0-15,20-23", &c);
	expect_counts(&c, 2, 0, 0, 1, 0, 20, 20);
	ctx_set("promotion by the first pin: 'whole' once more, then pinned only");
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 22 * PG, 1, PRW, NULL), 1);
	EXPECT_NATIVE(io, IOVA_BASE, 24, 0, "0-15,20-23", &c);
	expect_counts(&c, 3, 0, 0, 0, 0, 20, 20);
	EXPECT_NATIVE(io, IOVA_BASE, 24, 0, "0-1,22", &c);
	expect_counts(&c, 3, 0, 0, 0, 0, 0, 3);
}

static void expect_pinned_set(struct dt_iommu *io, uint64_t npages, const char *spec,
			      uint64_t count)
{
	uint8_t *bm = bm_new(npages);
	struct dt_report rep = {.size = sizeof(rep),
				.iova = IOVA_BASE,
				.length = npages * PG,
				.bitmap = bm,
				.bitmap_size = bm_bytes(npages)};

	EXPECT_EQ(dt_iommu_pinned(io, &rep), 0);
	EXPECT_BITS_SPEC(bm, npages, spec);
	EXPECT_EQ(rep.counts.pinned, count);
	EXPECT_EQ(rep.counts.total, count);
	free(bm);
}

static void test_skip_pinned(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	struct dt_report_counts c;

	map_region(io, IOVA_BASE, 70);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 62 * PG, 4, PRW, NULL), 4);
	EXPECT_EQ(dt_pin_pages(dev, IOVA_BASE + 10 * PG, 1, PRW, NULL), 1);
	ctx_set("dt_iommu_pinned with tracking off: the EMULATED pins, not the LOGGING one");
	expect_pinned_set(io, 70, "62-65", 4);
	tracking_start(io);
	log_pages(emu, 63, 1);
	log_pages(emu, 4, 2);
	ctx_set("SKIP_PINNED leaves the pinned pages out");
	EXPECT_NATIVE(io, IOVA_BASE, 70, DT_REPORT_SKIP_PINNED, "4-5", &c);
	EXPECT_EQ(c.total, 2);
	EXPECT_EQ(c.logged, 2 + 1);
	ctx_set("dt_iommu_pinned: exactly the pinned set, twice (it never clears)");
	expect_pinned_set(io, 70, "62-65", 4);
	expect_pinned_set(io, 70, "62-65", 4);
	EXPECT_NATIVE(io, IOVA_BASE, 70, DT_REPORT_SKIP_PINNED, "", &c);
	EXPECT_EQ(c.total, 0);
	ctx_set("a report without SKIP_PINNED still has them");
	EXPECT_NATIVE(io, IOVA_BASE, 70, 0, "62-65", &c);
	EXPECT_EQ(c.total, 4);
	ctx_set("an unpinned page leaves the pinned set and is reported once");
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 65 * PG, 1), 1);
	expect_pinned_set(io, 70, "62-64", 3);
	EXPECT_NATIVE(io, IOVA_BASE, 70, DT_REPORT_SKIP_PINNED, "65", &c);
	EXPECT_EQ(c.total, 1);
	EXPECT_EQ(c.unpinned, 1);
}

#define MAX_RUNS 32
struct runs {
	unsigned n, fail_at; /* fail_at: 1-based index of the run that fails, 0 none */
	uint64_t iova[MAX_RUNS], len[MAX_RUNS];
};

static int collect_run(void *opaque, uint64_t iova, uint64_t length)
{
	struct runs *r = opaque;

	if (r->n < MAX_RUNS) {
		r->iova[r->n] = iova;
		r->len[r->n] = length;
	}
	r->n++;
	return r->n == r->fail_at ? -42 : 0;
}

static int report_runs(struct dt_iommu *io, uint64_t npages, uint64_t pgsize, struct runs *r,
		       struct dt_report_counts *c)
{
	struct dt_report rep = {.size = sizeof(rep),
				.iova = IOVA_BASE,
				.length = npages * PG,
				.pgsize = pgsize,
				.run = collect_run,
				.opaque = r};
	int ret = dt_iommu_report(io, &rep);

	if (c)
		*c = rep.counts;
	return ret;
}

/* Runs expected as pairs of page numbers (first, count), relative to IOVA_BASE. */
static void expect_runs(const struct runs *r, const uint64_t (*exp)[2], unsigned n)
{
	EXPECT_EQ(r->n, n);
	for (unsigned i = 0; i < n && i < MAX_RUNS; i++) {
		ctx_set("run %u of %u", i, n);
		EXPECT_EQ(r->iova[i], IOVA_BASE + exp[i][0] * PG);
		EXPECT_EQ(r->len[i], exp[i][1] * PG);
	}
}

/* A pages 0-99, B 100-199 (adjacent), hole, C 300-363. */
static void sparse_map(struct dt_iommu *io)
{
	map_region(io, IOVA_BASE, 100);
	map_region(io, IOVA_BASE + 100 * PG, 100);
	map_region(io, IOVA_BASE + 300 * PG, 64);
	tracking_start(io);
}

/* Dirty pages 3, 5-9, 99-101, 199, 300-363 (74 pages, 5 runs). */
static void sparse_dirty(struct dt_device *dev)
{
	log_pages(dev, 3, 1);
	log_pages(dev, 5, 5);
	log_pages(dev, 99, 3);
	log_pages(dev, 199, 1);
	log_pages(dev, 300, 64);
}

static void test_sparse_runs(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	struct runs r = {0};
	const uint64_t at_4k[][2] = {{3, 1}, {5, 5}, {99, 3}, {199, 1}, {300, 64}};
	const uint64_t at_8k[][2] = {{2, 8}, {98, 4}, {198, 2}, {300, 64}};
	struct dt_report_counts c;

	sparse_map(io);
	sparse_dirty(dev);
	ctx_set("runs at 4 KiB: coalesced across the A|B boundary, in order");
	EXPECT_EQ(report_runs(io, 364, 0, &r, &c), 0);
	expect_runs(&r, at_4k, 5);
	EXPECT_EQ(c.total, 74);
	memset(&r, 0, sizeof(r));
	EXPECT_EQ(report_runs(io, 364, 0, &r, NULL), 0);
	EXPECT_EQ(r.n, 0);
	ctx_set("runs at 8 KiB report pages");
	sparse_dirty(dev);
	memset(&r, 0, sizeof(r));
	EXPECT_EQ(report_runs(io, 364, 2 * PG, &r, NULL), 0);
	expect_runs(&r, at_8k, 4);
}

static void test_run_callback_fails(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	struct runs r = {.fail_at = 3};
	struct dt_report_counts c;
	const uint64_t first3[][2] = {{3, 1}, {5, 5}, {99, 3}};

	sparse_map(io);
	sparse_dirty(dev);
	ctx_set("the third run's callback returns -42");
	EXPECT_EQ(report_runs(io, 364, 0, &r, NULL), -42);
	expect_runs(&r, first3, 3);
	ctx_set("the next report: that run and the later ones, as 'requeued'");
	EXPECT_NATIVE(io, IOVA_BASE, 364, 0, "99-101,199,300-363", &c);
	expect_counts(&c, 0, 0, 0, 0, 68, 0, 68);
	EXPECT_NATIVE(io, IOVA_BASE, 364, 0, "", NULL);
	ctx_set("a callback failing on the first run: everything comes back");
	sparse_dirty(dev);
	memset(&r, 0, sizeof(r));
	r.fail_at = 1;
	EXPECT_EQ(report_runs(io, 364, 0, &r, NULL), -42);
	EXPECT_EQ(r.n, 1);
	EXPECT_NATIVE(io, IOVA_BASE, 364, 0, "3,5-9,99-101,199,300-363", &c);
	EXPECT_EQ(c.requeued, 74);
}

static void test_merge_back(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_report_counts c;
	uint64_t bm[2] = {0x9, 0};

	map_region(io, IOVA_BASE, 16);
	map_region(io, IOVA_BASE + 20 * PG, 8);
	ctx_set("merge back while tracking is off: nothing marked");
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE, 4 * PG), 0);
	tracking_start(io);
	EXPECT_NATIVE(io, IOVA_BASE, 28, 0, "", NULL);
	ctx_set("merge back over a hole: the mapped parts only");
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE + 14 * PG, 8 * PG), 0);
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE - 8 * PG, 9 * PG), 0);
	EXPECT_NATIVE(io, IOVA_BASE, 28, 0, "0,14-15,20-21", &c);
	expect_counts(&c, 0, 0, 0, 0, 5, 0, 5);
	ctx_set("merge back of a bitmap at 8 KiB: bits 0 and 3 = pages 0-1, 6-7");
	EXPECT_EQ(dt_iommu_merge_back_bitmap(io, IOVA_BASE, 2 * PG, bm, 4), 0);
	EXPECT_NATIVE(io, IOVA_BASE, 28, 0, "0-1,6-7", &c);
	EXPECT_EQ(c.requeued, 4);
	ctx_set("merge back of a bitmap at 4 KiB past the first word, over a hole");
	bm[0] = 1ull << 63;
	bm[1] = 0x3;
	EXPECT_EQ(dt_iommu_merge_back_bitmap(io, IOVA_BASE - 50 * PG, PG, bm, 66), 0);
	EXPECT_NATIVE(io, IOVA_BASE, 28, 0, "13-15", &c);
	ctx_set("nbits cuts the bitmap: bit 65 is not used");
	EXPECT_EQ(dt_iommu_merge_back_bitmap(io, IOVA_BASE - 50 * PG, PG, bm, 65), 0);
	EXPECT_NATIVE(io, IOVA_BASE, 28, 0, "13-14", &c);
	ctx_set("merge back errnos");
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE, 0), -EINVAL);
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE + 1, PG), -EINVAL);
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE, PG + 1), -EINVAL);
	EXPECT_EQ(dt_iommu_merge_back(io, UINT64_MAX - PG + 1, 2 * PG), -EOVERFLOW);
	EXPECT_EQ(dt_iommu_merge_back_bitmap(io, IOVA_BASE, 3 * PG, bm, 4), -EINVAL);
	EXPECT_EQ(dt_iommu_merge_back_bitmap(io, IOVA_BASE, PG / 2, bm, 4), -EINVAL);
	EXPECT_NATIVE(io, IOVA_BASE, 28, 0, "", NULL);
}

static void test_report_errnos(void **state)
{
	struct dt_iommu *io = *state;
	uint64_t bm[4] = {0};
	struct dt_report rep;
	struct {
		const char *what;
		size_t size;
		uint64_t iova, length, pgsize, bm_size;
		uint32_t flags;
		int err;
	} cases[] = {
		{"size field too small", sizeof(rep) - 1, IOVA_BASE, 128 * PG, 0, 16, 0, -EINVAL},
		{"size field 0", 0, IOVA_BASE, 128 * PG, 0, 16, 0, -EINVAL},
		{"length 0", sizeof(rep), IOVA_BASE, 0, 0, 16, 0, -EINVAL},
		{"iova unaligned", sizeof(rep), IOVA_BASE + 8, 127 * PG, 0, 16, 0, -EINVAL},
		{"length unaligned", sizeof(rep), IOVA_BASE, 127 * PG + 8, 0, 16, 0, -EINVAL},
		{"pgsize 3 pages", sizeof(rep), IOVA_BASE, 128 * PG, 3 * PG, 16, 0, -EINVAL},
		{"pgsize 2 KiB", sizeof(rep), IOVA_BASE, 128 * PG, PG / 2, 32, 0, -EINVAL},
		{"pgsize 1", sizeof(rep), IOVA_BASE, 128 * PG, 1, 32, 0, -EINVAL},
		{"iova not aligned to an 8 KiB pgsize", sizeof(rep), IOVA_BASE + PG, 2 * PG, 2 * PG,
		 16, 0, -EINVAL},
		{"range cuts the mapping at its start", sizeof(rep), IOVA_BASE + PG, 127 * PG, 0,
		 16, 0, -EINVAL},
		{"range cuts the mapping at its end", sizeof(rep), IOVA_BASE, 127 * PG, 0, 16, 0,
		 -EINVAL},
		{"bitmap 8 bytes for 65 pages", sizeof(rep), IOVA_BASE - 63 * PG, 65 * PG, 0, 8, 0,
		 -EINVAL},
		{"bitmap 8 bytes for 65 8 KiB pages", sizeof(rep), IOVA_BASE, 130 * PG, 2 * PG, 8,
		 0, -EINVAL},
		{"unknown flag", sizeof(rep), IOVA_BASE, 128 * PG, 0, 16, 1u << 7, -EINVAL},
		{"range wraps", sizeof(rep), UINT64_MAX - PG + 1, 2 * PG, 0, 16, 0, -EOVERFLOW},
	};

	map_region(io, IOVA_BASE, 128);
	map_region(io, IOVA_BASE + 128 * PG, 2);
	ctx_set("tracking off");
	EXPECT_EQ(native_report(io, IOVA_BASE, 128 * PG, 0, 0, bm, 16, NULL), -EINVAL);
	tracking_start(io);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&rep, 0, sizeof(rep));
		rep.size = cases[i].size;
		rep.iova = cases[i].iova;
		rep.length = cases[i].length;
		rep.pgsize = cases[i].pgsize;
		rep.flags = cases[i].flags;
		rep.bitmap = bm;
		rep.bitmap_size = cases[i].bm_size;
		ctx_set("dt_iommu_report: %s", cases[i].what);
		EXPECT_EQ(dt_iommu_report(io, &rep), cases[i].err);
	}
	ctx_set("the valid call; 65 bits need 16 bytes");
	EXPECT_EQ(native_report(io, IOVA_BASE, 130 * PG, 2 * PG, 0, bm, 16, NULL), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_report_page_sizes),  UT(test_report_pages_shared_and_partial),
		UT(test_report_no_clear),    UT(test_report_counts),
		UT(test_skip_pinned),	     UT(test_sparse_runs),
		UT(test_run_callback_fails), UT(test_merge_back),
		UT(test_report_errnos),
	};

	return cmocka_run_group_tests_name("report_native", tests, NULL, NULL);
}
