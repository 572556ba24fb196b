/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_bitmap_layout.c - the caller's bitmap, bit for bit (SEMANTICS.md section 3,
 * "works for any alignment of the caller's buffer"; DESIGN.md edge sizes). Mappings of 4, 8,
 * 32, 64, 160 and 16384 pages; caller bitmaps at page-aligned, +2048 and +0xff1 byte offsets
 * inside a larger buffer whose other bytes hold a canary; random dirty patterns (sparse,
 * dense, runs, all, none; the seed is printed) written with dt_dma_log; read back through
 * GET_BITMAP, dt_iommu_report and UNMAP_DMA with GET_DIRTY_BITMAP, over the mapping alone
 * and over a range with holes of 37 pages before and 5 after it (bit 0 = range start).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define CANARY	    0xa5
#define HOLE_BEFORE 37
#define HOLE_AFTER  5
#define MAP_IOVA    (IOVA_BASE + 1024 * PG)

static const size_t offsets[] = {0, 2048, 0xff1};

enum pattern { PAT_SPARSE, PAT_DENSE, PAT_RUNS, PAT_ALL, PAT_NONE, NPAT };
static const char *const pat_name[] = {"sparse", "dense", "runs", "all", "none"};
enum via { VIA_GET_BITMAP, VIA_NATIVE, VIA_UNMAP, NVIA };
static const char *const via_name[] = {"GET_BITMAP", "dt_iommu_report", "UNMAP_DMA+bitmap"};

/* A random pattern of npages bits into exp (zeroed first). */
static void make_pattern(uint8_t *exp, uint64_t npages, enum pattern pat)
{
	memset(exp, 0, bm_bytes(npages));
	switch (pat) {
	case PAT_SPARSE:
		for (uint64_t i = 0, n = 1 + rng_below(npages / 4 + 1); i < n; i++)
			bit_set(exp, rng_below(npages));
		break;
	case PAT_DENSE:
		for (uint64_t i = 0; i < npages; i++)
			if (rng_below(2))
				bit_set(exp, i);
		break;
	case PAT_RUNS:
		for (uint64_t i = 0, n = 1 + rng_below(8); i < n; i++) {
			uint64_t first = rng_below(npages);
			uint64_t len = 1 + rng_below(npages - first);

			bits_set(exp, first, len > 200 ? 1 + rng_below(200) : len);
		}
		break;
	case PAT_ALL:
		bits_set(exp, 0, npages);
		break;
	default:
		break;
	}
}

/* Write the pattern: each run of set pages as one log, or byte-sized logs inside pages. */
static void apply_pattern(struct dt_device *dev, const uint8_t *exp, uint64_t npages)
{
	for (uint64_t i = 0; i < npages; i++) {
		uint64_t j = i;

		if (!bit_test(exp, i))
			continue;
		while (j + 1 < npages && bit_test(exp, j + 1))
			j++;
		if (rng_below(4)) {
			EXPECT_EQ(dt_dma_log(dev, MAP_IOVA + i * PG, (j - i + 1) * PG), 0);
		} else {
			for (uint64_t p = i; p <= j; p++)
				EXPECT_EQ(dt_dma_log(dev, MAP_IOVA + p * PG + rng_below(PG), 1), 0);
		}
		i = j;
	}
}

/* Read the dirty pages of [iova, iova + nbits pages) into a bitmap at byte `off` of a
 * canary-filled buffer, check the canary, and copy the bitmap out to seen. */
static void read_bitmap(struct dt_iommu *io, enum via via, uint64_t iova, uint64_t nbits,
			size_t off, uint8_t *seen)
{
	uint64_t bytes = bm_bytes(nbits), size = 0;
	size_t total = (off + bytes + 2 * PG - 1) / PG * PG;
	uint8_t *buf = aligned_alloc(PG, total), *bm = buf + off;

	assert_non_null(buf);
	memset(buf, CANARY, total);
	memset(bm, 0, bytes);
	switch (via) {
	case VIA_GET_BITMAP:
		EXPECT_EQ(vfio_get_bitmap(io, iova, nbits * PG, PG, bm, bytes), 0);
		break;
	case VIA_NATIVE:
		EXPECT_EQ(native_report(io, iova, nbits * PG, 0, 0, bm, bytes, NULL), 0);
		break;
	default:
		EXPECT_EQ(vfio_unmap_bitmap(io, iova, nbits * PG, PG, bm, bytes, &size), 0);
		break;
	}
	for (size_t i = 0; i < total; i++) {
		if (i == off) {
			i += bytes - 1;
			continue;
		}
		if (buf[i] != CANARY) {
			print_error("byte %zu of the caller buffer (bitmap at +%zu, %" PRIu64
				    " bytes) changed\n",
				    i, off, bytes);
			EXPECT_EQ(buf[i], CANARY);
		}
	}
	/* Bits past nbits in the last word are not pages: they stay zero. */
	for (uint64_t b = nbits; b < bytes * 8; b++)
		EXPECT_EQ(bit_test(bm, b), 0);
	memcpy(seen, bm, bytes);
	free(buf);
}

static void run_layout(struct dt_iommu *io, uint64_t npages)
{
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	uint64_t wide = HOLE_BEFORE + npages + HOLE_AFTER;
	uint8_t *exp = bm_new(npages), *exp_wide = bm_new(wide), *seen = bm_new(wide);
	void *host = map_region(io, MAP_IOVA, npages);

	tracking_start(io);
	for (int via = 0; via < NVIA; via++) {
		for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
			for (int pat = 0; pat < NPAT; pat++) {
				for (int holes = 0; holes < 2; holes++) {
					uint64_t iova = MAP_IOVA - (holes ? HOLE_BEFORE * PG : 0);
					uint64_t nbits = holes ? wide : npages;

					ctx_set("%" PRIu64 " pages, via %s, bitmap at +0x%zx, "
						"pattern %s, %s",
						npages, via_name[via], offsets[o], pat_name[pat],
						holes ? "range with holes (37 before, 5 after)"
						      : "range = mapping");
					make_pattern(exp, npages, (enum pattern)pat);
					apply_pattern(dev, exp, npages);
					memset(exp_wide, 0, bm_bytes(wide));
					for (uint64_t i = 0; i < npages; i++)
						if (bit_test(exp, i))
							bit_set(exp_wide,
								i + (holes ? HOLE_BEFORE : 0));
					read_bitmap(io, (enum via)via, iova, nbits, offsets[o],
						    seen);
					EXPECT_BITS(seen, exp_wide, nbits);
					if (via == VIA_UNMAP)
						EXPECT_EQ(vfio_map(io, host, MAP_IOVA, npages * PG,
								   RW),
							  0);
				}
			}
		}
	}
	free(exp);
	free(exp_wide);
	free(seen);
}

static void test_layout_4(void **state)
{
	run_layout(*state, 4);
}

static void test_layout_8(void **state)
{
	run_layout(*state, 8);
}

static void test_layout_32(void **state)
{
	run_layout(*state, 32);
}

static void test_layout_64(void **state)
{
	run_layout(*state, 64);
}

static void test_layout_160(void **state)
{
	run_layout(*state, 160);
}

static void test_layout_16384(void **state)
{
	run_layout(*state, 16384);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_layout_4),  UT(test_layout_8),	 UT(test_layout_32),
		UT(test_layout_64), UT(test_layout_160), UT(test_layout_16384),
	};

	seed_init(argc, argv);
	return cmocka_run_group_tests_name("bitmap_layout", tests, NULL, NULL);
}
