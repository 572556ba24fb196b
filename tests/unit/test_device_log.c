/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_device_log.c - VFIO device DMA logging through dt_device_ioctl
 * (VFIO_DEVICE_FEATURE with DMA_LOGGING_START / STOP / REPORT, SEMANTICS.md section 5) on a
 * LOGGING device: PROBE, the range rules (none: -EINVAL, more than 256 or more than 2^35
 * granules in all: -E2BIG, overlapping or unaligned: -EINVAL), the page size written back, reports at 4 KiB, 8 KiB,
 * 64 KiB and 2 MiB over a range spanning two logged ranges, read-and-clear, bits only ever
 * set in the caller's bitmap, REPORT without START, -ENOTTY on other device kinds, GET and
 * SET together.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"

#define F_START	 VFIO_DEVICE_FEATURE_DMA_LOGGING_START
#define F_STOP	 VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP
#define F_REPORT VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT
#define HDR	 sizeof(struct vfio_device_feature)

typedef struct vfio_device_feature_dma_logging_range log_range;

/* A feature call with `flags` and a payload of len bytes; the payload is copied back. */
static int feature(struct dt_device *dev, uint32_t flags, void *payload, size_t len)
{
	uint64_t buf[16];
	struct vfio_device_feature *f = (void *)buf;
	int ret;

	assert_true(HDR + len <= sizeof(buf));
	memset(buf, 0, sizeof(buf));
	f->argsz = (uint32_t)(HDR + len);
	f->flags = flags;
	if (len)
		memcpy(f->data, payload, len);
	ret = dt_device_ioctl(dev, VFIO_DEVICE_FEATURE, f);
	if (len)
		memcpy(payload, f->data, len);
	return ret;
}

static int log_start(struct dt_device *dev, uint64_t page_size, log_range *r, uint32_t n,
		     uint64_t *page_size_out)
{
	struct vfio_device_feature_dma_logging_control ctl = {
		.page_size = page_size,
		.num_ranges = n,
		.ranges = (uint64_t)(uintptr_t)r,
	};
	int ret = feature(dev, VFIO_DEVICE_FEATURE_SET | F_START, &ctl, sizeof(ctl));

	if (page_size_out)
		*page_size_out = ctl.page_size;
	return ret;
}

static int log_stop(struct dt_device *dev)
{
	return feature(dev, VFIO_DEVICE_FEATURE_SET | F_STOP, NULL, 0);
}

static int log_report(struct dt_device *dev, uint64_t iova, uint64_t length, uint64_t page_size,
		      void *bm)
{
	struct vfio_device_feature_dma_logging_report rep = {
		.iova = iova,
		.length = length,
		.page_size = page_size,
		.bitmap = (uint64_t)(uintptr_t)bm,
	};

	return feature(dev, VFIO_DEVICE_FEATURE_GET | F_REPORT, &rep, sizeof(rep));
}

/* Logged ranges: R1 pages 0-511, R2 pages 1024-1535, inside one 2048-page mapping. */
static struct dt_device *setup_two_ranges(struct dt_iommu *io, uint64_t page_size)
{
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	log_range r[2] = {{IOVA_BASE + 1024 * PG, 512 * PG}, {IOVA_BASE, 512 * PG}};
	uint64_t back = 0;

	map_region(io, IOVA_BASE, 2048);
	EXPECT_EQ(log_start(dev, page_size, r, 2, &back), 0);
	EXPECT_EQ(back, page_size);
	return dev;
}

static void log_pages(struct dt_device *dev, uint64_t first, uint64_t n)
{
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + first * PG, n * PG), 0);
}

static void test_probe_and_kinds(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);
	log_range r = {IOVA_BASE, 16 * PG};
	uint64_t bm = 0;

	map_region(io, IOVA_BASE, 16);
	ctx_set("PROBE of the three features on a LOGGING device");
	EXPECT_EQ(feature(dev, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | F_START, NULL,
			  0),
		  0);
	EXPECT_EQ(
		feature(dev, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | F_STOP, NULL, 0),
		0);
	EXPECT_EQ(feature(dev, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | F_REPORT, NULL,
			  0),
		  0);
	ctx_set("PROBE of GET on START (a SET-only feature)");
	EXPECT_EQ(feature(dev, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | F_START, NULL,
			  0),
		  -EINVAL);
	ctx_set("EMULATED and PASSTHROUGH devices have no DMA logging");
	EXPECT_EQ(feature(emu, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | F_START, NULL,
			  0),
		  -ENOTTY);
	EXPECT_EQ(log_start(emu, PG, &r, 1, NULL), -ENOTTY);
	EXPECT_EQ(log_report(emu, IOVA_BASE, 16 * PG, PG, &bm), -ENOTTY);
	EXPECT_EQ(log_stop(emu), -ENOTTY);
	EXPECT_EQ(log_start(pt, PG, &r, 1, NULL), -ENOTTY);
	ctx_set("another request than VFIO_DEVICE_FEATURE");
	EXPECT_EQ(dt_device_ioctl(dev, VFIO_DEVICE_GET_INFO, &bm), -ENOTTY);
	ctx_set("GET and SET together");
	EXPECT_EQ(
		feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | F_REPORT, NULL, 0),
		-EINVAL);
	struct vfio_device_feature_dma_logging_control ctl = {
		.page_size = PG, .num_ranges = 1, .ranges = (uint64_t)(uintptr_t)&r};
	EXPECT_EQ(feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | F_START, &ctl,
			  sizeof(ctl)),
		  -EINVAL);
	ctx_set("the GET/SET of START was not carried out: REPORT fails");
	EXPECT_TRUE(log_report(dev, IOVA_BASE, 16 * PG, PG, &bm) < 0);
}

static void test_start_range_rules(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	log_range *r = calloc(257, sizeof(*r));
	uint64_t back = 0, bm = 0;

	assert_non_null(r);
	map_region(io, IOVA_BASE, 1024);
	for (unsigned i = 0; i < 257; i++)
		r[i] = (log_range){IOVA_BASE + i * 4 * PG, PG};
	ctx_set("0 ranges");
	EXPECT_EQ(log_start(dev, PG, r, 0, NULL), -EINVAL);
	ctx_set("257 ranges");
	EXPECT_EQ(log_start(dev, PG, r, 257, NULL), -E2BIG);
	ctx_set("two ranges overlapping by one page");
	log_range ov[3] = {
		{IOVA_BASE, 4 * PG}, {IOVA_BASE + 8 * PG, PG}, {IOVA_BASE + 3 * PG, 2 * PG}};
	EXPECT_EQ(log_start(dev, PG, ov, 3, NULL), -EINVAL);
	ctx_set("the same range twice");
	log_range same[2] = {{IOVA_BASE, 4 * PG}, {IOVA_BASE, 4 * PG}};
	EXPECT_EQ(log_start(dev, PG, same, 2, NULL), -EINVAL);
	ctx_set("range iova not aligned to the page size");
	log_range un1 = {IOVA_BASE + 0x800, PG};
	EXPECT_EQ(log_start(dev, PG, &un1, 1, NULL), -EINVAL);
	ctx_set("range length not aligned to the page size");
	log_range un2 = {IOVA_BASE, PG + 0x800};
	EXPECT_EQ(log_start(dev, PG, &un2, 1, NULL), -EINVAL);
	ctx_set("range iova aligned to 4 KiB, not to the 8 KiB page size");
	log_range un3 = {IOVA_BASE + PG, 2 * PG};
	EXPECT_EQ(log_start(dev, 2 * PG, &un3, 1, NULL), -EINVAL);
	ctx_set("2^35 granules in all are accepted, one more is -E2BIG");
	log_range huge[2] = {{1ull << 40, 1ull << 46}, {1ull << 47, 1ull << 46}};
	EXPECT_EQ(log_start(dev, PG, huge, 2, NULL), 0);
	EXPECT_EQ(log_stop(dev), 0);
	huge[1].length += PG;
	EXPECT_EQ(log_start(dev, PG, huge, 2, NULL), -E2BIG);
	ctx_set("the same bytes at 8 KiB granules are half as many");
	huge[1].length += PG;
	EXPECT_EQ(log_start(dev, 2 * PG, huge, 2, NULL), 0);
	EXPECT_EQ(log_stop(dev), 0);
	ctx_set("after the failed STARTs, REPORT fails (not started)");
	EXPECT_TRUE(log_report(dev, IOVA_BASE, 64 * PG, PG, &bm) < 0);
	ctx_set("256 disjoint ranges, adjacent ones included");
	r[1].iova = IOVA_BASE + PG; /* adjacent to r[0] */
	EXPECT_EQ(log_start(dev, PG, r, 256, &back), 0);
	EXPECT_EQ(back, PG);
	EXPECT_EQ(log_stop(dev), 0);
	ctx_set("page size 512 bytes: the page size used (>= 4 KiB) is written back");
	EXPECT_EQ(log_start(dev, 512, &r[0], 1, &back), 0);
	/* Reports are at >= 4 KiB: a finer page would claim what no report can use. */
	EXPECT_TRUE(back >= PG && !(back & (back - 1)));
	EXPECT_EQ(log_stop(dev), 0);
	ctx_set("page size 8 KiB is written back");
	log_range big = {IOVA_BASE, 64 * PG};
	EXPECT_EQ(log_start(dev, 2 * PG, &big, 1, &back), 0);
	EXPECT_EQ(back, 2 * PG);
	EXPECT_EQ(log_stop(dev), 0);
	ctx_set("REPORT after STOP fails");
	EXPECT_TRUE(log_report(dev, IOVA_BASE, 64 * PG, PG, &bm) < 0);
	EXPECT_EQ(bm, 0);
	free(r);
}

static void test_report_page_sizes(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = setup_two_ranges(io, PG);
	const uint64_t pgs[] = {PG, 2 * PG, 16 * PG, 512 * PG};
	const char *spec[] = {"1-2,17,511,1024,1500", "0-1,8,255,512,750", "0-1,31,64,93", "0,2"};

	for (size_t i = 0; i < sizeof(pgs) / sizeof(pgs[0]); i++) {
		uint64_t nbits = 2048 * PG / pgs[i];
		uint8_t *bm = bm_new(nbits);

		ctx_set("DMA_LOGGING_REPORT at page size 0x%" PRIx64 " over both ranges", pgs[i]);
		log_pages(dev, 1, 2);
		log_pages(dev, 17, 1);
		log_pages(dev, 511, 1);
		log_pages(dev, 700, 3); /* mapped, not in a logged range */
		log_pages(dev, 1024, 1);
		EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 1500 * PG + 100, 8), 0);
		EXPECT_EQ(log_report(dev, IOVA_BASE, 2048 * PG, pgs[i], bm), 0);
		EXPECT_BITS_SPEC(bm, nbits, spec[i]);
		ctx_set("read-and-clear: the second report at 0x%" PRIx64 " is empty", pgs[i]);
		memset(bm, 0, bm_bytes(nbits));
		EXPECT_EQ(log_report(dev, IOVA_BASE, 2048 * PG, pgs[i], bm), 0);
		EXPECT_BITS_SPEC(bm, nbits, "");
		free(bm);
	}
}

static void test_report_sub_range(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = setup_two_ranges(io, PG);
	uint8_t *bm = bm_new(1024);

	log_pages(dev, 1, 1);
	log_pages(dev, 511, 1);
	log_pages(dev, 1024, 1);
	log_pages(dev, 1530, 1);
	ctx_set("report of pages 500-1099: bit 0 = page 500");
	EXPECT_EQ(log_report(dev, IOVA_BASE + 500 * PG, 600 * PG, PG, bm), 0);
	EXPECT_BITS_SPEC(bm, 600, "11,524");
	ctx_set("pages outside the reported range were not cleared");
	memset(bm, 0, bm_bytes(1024));
	EXPECT_EQ(log_report(dev, IOVA_BASE, 2048 * PG, 2 * PG, bm), 0);
	EXPECT_BITS_SPEC(bm, 1024, "0,765");
	free(bm);
}

static void test_coarse_log_page(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = setup_two_ranges(io, 4 * PG);
	uint64_t bm[32] = {0};

	log_pages(dev, 5, 1);
	log_pages(dev, 1030, 1);
	ctx_set("logged at 16 KiB, reported at 4 KiB: the whole 16 KiB page is dirty");
	EXPECT_EQ(log_report(dev, IOVA_BASE, 2048 * PG, PG, bm), 0);
	EXPECT_BITS_SPEC(bm, 2048, "4-7,1028-1031");
}

static void test_report_only_sets_bits(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = setup_two_ranges(io, PG);
	uint64_t bm[8], preset = 0xf0f0f0f0f0f0f0f0ull;
	uint8_t data[4] = {1, 2, 3, 4};

	for (int i = 0; i < 8; i++)
		bm[i] = preset;
	ctx_set("bits already set in the caller's bitmap stay set");
	log_pages(dev, 0, 1);
	log_pages(dev, 5, 1);
	EXPECT_EQ(dt_dma_rw(dev, IOVA_BASE + 64 * PG, data, sizeof(data), true), 0);
	EXPECT_EQ(log_report(dev, IOVA_BASE, 512 * PG, PG, bm), 0);
	EXPECT_EQ(bm[0], preset | 0x21);
	EXPECT_EQ(bm[1], preset | 1);
	for (int i = 2; i < 8; i++)
		EXPECT_EQ(bm[i], preset);
	ctx_set("a second report clears nothing in the caller's bitmap");
	EXPECT_EQ(log_report(dev, IOVA_BASE, 512 * PG, PG, bm), 0);
	EXPECT_EQ(bm[0], preset | 0x21);
	EXPECT_EQ(bm[1], preset | 1);
}

static void test_report_rules(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = setup_two_ranges(io, PG);
	uint64_t bm[64] = {0};

	log_pages(dev, 3, 1);
	ctx_set("report page size 2 KiB");
	EXPECT_EQ(log_report(dev, IOVA_BASE, 64 * PG, PG / 2, bm), -EINVAL);
	ctx_set("report page size 12 KiB");
	EXPECT_EQ(log_report(dev, IOVA_BASE, 64 * PG, 3 * PG, bm), -EINVAL);
	ctx_set("report length 0");
	EXPECT_EQ(log_report(dev, IOVA_BASE, 0, PG, bm), -EINVAL);
	ctx_set("the failed reports cleared nothing");
	EXPECT_EQ(log_report(dev, IOVA_BASE, 64 * PG, PG, bm), 0);
	EXPECT_EQ(bm[0], 1ull << 3);
	ctx_set("the log does not depend on the container's dirty tracking");
	EXPECT_TRUE(!dt_iommu_dirty_tracking(io));
	log_pages(dev, 1030, 1);
	bm[0] = 0;
	EXPECT_EQ(log_report(dev, IOVA_BASE + 1024 * PG, 64 * PG, PG, bm), 0);
	EXPECT_EQ(bm[0], 1ull << 6);
	ctx_set("STOP, then REPORT fails; START again starts clean");
	log_pages(dev, 9, 1);
	EXPECT_EQ(log_stop(dev), 0);
	EXPECT_TRUE(log_report(dev, IOVA_BASE, 64 * PG, PG, bm) < 0);
	log_range r = {IOVA_BASE, 64 * PG};
	EXPECT_EQ(log_start(dev, PG, &r, 1, NULL), 0);
	bm[0] = 0;
	EXPECT_EQ(log_report(dev, IOVA_BASE, 64 * PG, PG, bm), 0);
	EXPECT_EQ(bm[0], 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_probe_and_kinds),   UT(test_start_range_rules),
		UT(test_report_page_sizes), UT(test_report_sub_range),
		UT(test_coarse_log_page),   UT(test_report_only_sets_bits),
		UT(test_report_rules),
	};

	return cmocka_run_group_tests_name("device_log", tests, NULL, NULL);
}
