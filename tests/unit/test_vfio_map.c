/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_vfio_map.c - VFIO_IOMMU_MAP_DMA and VFIO_IOMMU_UNMAP_DMA through
 * dt_vfio_ioctl (SEMANTICS.md section 3, type1 v2 rules): every errno of MAP (alignment,
 * size 0, wrap, overlap, vaddr not mapped in the process, flags, argsz), and of UNMAP (a
 * range that cuts a mapping, FLAG_ALL, GET_DIRTY_BITMAP with ALL, argsz); the size UNMAP
 * returns (the bytes unmapped, 0 for a hole); a rejected call changes nothing (checked with
 * dt_iommu_get_stats). A terabyte of mappings, as one and as 4096, costs the process well
 * under the "few hundred MiB" the library promises, marks and reports included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "helpers.h"

static void expect_mapped(struct dt_iommu *io, uint64_t mappings, uint64_t bytes)
{
	struct dt_iommu_stats st;

	EXPECT_EQ(dt_iommu_get_stats(io, &st), 0);
	EXPECT_EQ(st.mappings, mappings);
	EXPECT_EQ(st.mapped_bytes, bytes);
}

static void test_map_ok_and_overlap(void **state)
{
	struct dt_iommu *io = *state;
	uint8_t *mem = guest_mem(16 * PG);
	const uint64_t a = IOVA_BASE + 4 * PG; /* [a, a + 4 pages) */

	EXPECT_EQ(vfio_map(io, mem, a, 4 * PG, RW), 0);
	expect_mapped(io, 1, 4 * PG);
	ctx_set("same range again");
	EXPECT_EQ(vfio_map(io, mem, a, 4 * PG, RW), -EEXIST);
	ctx_set("overlaps the first page");
	EXPECT_EQ(vfio_map(io, mem + 4 * PG, a - 2 * PG, 3 * PG, RW), -EEXIST);
	ctx_set("overlaps the last page");
	EXPECT_EQ(vfio_map(io, mem + 4 * PG, a + 3 * PG, 2 * PG, RW), -EEXIST);
	ctx_set("inside");
	EXPECT_EQ(vfio_map(io, mem + 4 * PG, a + PG, PG, RW), -EEXIST);
	ctx_set("contains it");
	EXPECT_EQ(vfio_map(io, mem + 4 * PG, a - PG, 6 * PG, RW), -EEXIST);
	expect_mapped(io, 1, 4 * PG);
	ctx_set("adjacent before and after: allowed");
	EXPECT_EQ(vfio_map(io, mem + 8 * PG, a - PG, PG, RW), 0);
	EXPECT_EQ(vfio_map(io, mem + 9 * PG, a + 4 * PG, 2 * PG, VFIO_DMA_MAP_FLAG_READ), 0);
	EXPECT_EQ(vfio_map(io, mem + 11 * PG, a + 6 * PG, PG, VFIO_DMA_MAP_FLAG_WRITE), 0);
	expect_mapped(io, 4, 8 * PG);
	ctx_set("the same vaddr at another iova: allowed (aliases)");
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE + 64 * PG, 4 * PG, RW), 0);
	expect_mapped(io, 5, 12 * PG);
}

static void test_map_alignment(void **state)
{
	struct dt_iommu *io = *state;
	uint8_t *mem = guest_mem(8 * PG);

	ctx_set("vaddr + 1");
	EXPECT_EQ(vfio_map(io, mem + 1, IOVA_BASE, 2 * PG, RW), -EINVAL);
	ctx_set("vaddr + 2048");
	EXPECT_EQ(vfio_map(io, mem + 2048, IOVA_BASE, 2 * PG, RW), -EINVAL);
	ctx_set("iova + 512");
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE + 512, 2 * PG, RW), -EINVAL);
	ctx_set("size 2 pages + 1");
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE, 2 * PG + 1, RW), -EINVAL);
	ctx_set("size 2048");
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE, 2048, RW), -EINVAL);
	ctx_set("size 0");
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE, 0, RW), -EINVAL);
	expect_mapped(io, 0, 0);
}

static void test_map_wrap(void **state)
{
	struct dt_iommu *io = *state;
	uint8_t *mem = guest_mem(2 * PG);
	int ret;

	ctx_set("iova 2^64 - 1 page, size 2 pages: wraps");
	ret = vfio_map(io, mem, UINT64_MAX - PG + 1, 2 * PG, RW);
	EXPECT_TRUE(ret == -EINVAL || ret == -EOVERFLOW);
	if (ret != -EINVAL && ret != -EOVERFLOW)
		EXPECT_EQ(ret, -EINVAL);
	ctx_set("iova 4 GiB, size 2^64 - 4 KiB: wraps");
	ret = vfio_map(io, mem, IOVA_BASE, UINT64_MAX - PG + 1, RW);
	EXPECT_TRUE(ret == -EINVAL || ret == -EOVERFLOW);
	expect_mapped(io, 0, 0);
	ctx_set("the last page of the IOVA space does not wrap");
	EXPECT_EQ(vfio_map(io, mem, UINT64_MAX - PG + 1, PG, RW), 0);
	expect_mapped(io, 1, PG);
}

static void test_map_vaddr_not_mapped(void **state)
{
	struct dt_iommu *io = *state;
	void *hole = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *part;

	assert_true(hole != MAP_FAILED);
	assert_int_equal(munmap(hole, 4 * PG), 0);
	ctx_set("vaddr range mmap'd then munmap'd");
	EXPECT_EQ(vfio_map(io, hole, IOVA_BASE, 4 * PG, RW), -EFAULT);

	part = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(part != MAP_FAILED);
	assert_int_equal(munmap(part + 3 * PG, PG), 0);
	ctx_set("vaddr range whose last page is not mapped");
	EXPECT_EQ(vfio_map(io, part, IOVA_BASE, 4 * PG, RW), -EFAULT);
	expect_mapped(io, 0, 0);
	ctx_set("the part still mapped");
	EXPECT_EQ(vfio_map(io, part, IOVA_BASE, 3 * PG, RW), 0);
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE, 3 * PG, 0, NULL), 0);
	munmap(part, 3 * PG);
}

static void test_map_flags_and_argsz(void **state)
{
	struct dt_iommu *io = *state;
	uint8_t *mem = guest_mem(2 * PG);
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = RW,
		.vaddr = (uint64_t)(uintptr_t)mem,
		.iova = IOVA_BASE,
		.size = 2 * PG,
	};
	const uint32_t bad[] = {0, RW | (1u << 3), RW | VFIO_DMA_MAP_FLAG_VADDR, 1u << 31};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ctx_set("MAP_DMA flags 0x%x", bad[i]);
		EXPECT_EQ(vfio_map(io, mem, IOVA_BASE, 2 * PG, bad[i]), -EINVAL);
	}
	map.argsz = offsetof(struct vfio_iommu_type1_dma_map, size) + sizeof(map.size) - 1;
	ctx_set("MAP_DMA argsz %u (one byte short of size)", map.argsz);
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &map), -EINVAL);
	map.argsz = 0;
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &map), -EINVAL);
	expect_mapped(io, 0, 0);
	map.argsz = sizeof(map);
	ctx_set("the same call with a right argsz");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &map), 0);
	expect_mapped(io, 1, 2 * PG);
}

static void test_unmap_cut_rejected(void **state)
{
	struct dt_iommu *io = *state;
	const uint64_t a = IOVA_BASE, b = IOVA_BASE + 8 * PG; /* 8 + 8 pages, adjacent */
	uint64_t size = 12345;

	map_region(io, a, 8);
	map_region(io, b, 8);
	ctx_set("unmap starting inside the first mapping");
	EXPECT_EQ(vfio_unmap(io, a + PG, 7 * PG, 0, NULL), -EINVAL);
	ctx_set("unmap ending inside the first mapping");
	EXPECT_EQ(vfio_unmap(io, a, 7 * PG, 0, NULL), -EINVAL);
	ctx_set("unmap strictly inside");
	EXPECT_EQ(vfio_unmap(io, a + PG, PG, 0, NULL), -EINVAL);
	ctx_set("unmap of the first mapping and half the second");
	EXPECT_EQ(vfio_unmap(io, a, 12 * PG, 0, NULL), -EINVAL);
	ctx_set("unmap from a hole before into the first mapping");
	EXPECT_EQ(vfio_unmap(io, a - 4 * PG, 6 * PG, 0, NULL), -EINVAL);
	expect_mapped(io, 2, 16 * PG);
	ctx_set("unmap of exactly the second mapping");
	EXPECT_EQ(vfio_unmap(io, b, 8 * PG, 0, &size), 0);
	EXPECT_EQ(size, 8 * PG);
	expect_mapped(io, 1, 8 * PG);
}

static void test_unmap_sizes(void **state)
{
	struct dt_iommu *io = *state;
	uint64_t size = 777;

	map_region(io, IOVA_BASE, 4);
	map_region(io, IOVA_BASE + 10 * PG, 2);
	map_region(io, IOVA_BASE + 12 * PG, 3);
	map_region(io, IOVA_BASE + 100 * PG, 1);
	ctx_set("unmap of a hole");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE + 50 * PG, 10 * PG, 0, &size), 0);
	EXPECT_EQ(size, 0);
	expect_mapped(io, 4, 10 * PG);
	ctx_set("unmap of [base - 1 page, base + 20 pages): three mappings and holes");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE - PG, 21 * PG, 0, &size), 0);
	EXPECT_EQ(size, 9 * PG);
	expect_mapped(io, 1, PG);
	ctx_set("unmap again: nothing left there");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE - PG, 21 * PG, 0, &size), 0);
	EXPECT_EQ(size, 0);
	ctx_set("the iova can be mapped again");
	map_region(io, IOVA_BASE, 4);
	expect_mapped(io, 2, 5 * PG);
}

static void test_unmap_bad_args(void **state)
{
	struct dt_iommu *io = *state;
	struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof(u), .iova = IOVA_BASE, .size = PG};

	map_region(io, IOVA_BASE, 4);
	ctx_set("unmap iova unaligned");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE + 16, 4 * PG, 0, NULL), -EINVAL);
	ctx_set("unmap size unaligned");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE, 4 * PG - 16, 0, NULL), -EINVAL);
	ctx_set("unmap size 0 without FLAG_ALL");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE, 0, 0, NULL), -EINVAL);
	ctx_set("unmap range wraps");
	EXPECT_EQ(vfio_unmap(io, UINT64_MAX - PG + 1, 2 * PG, 0, NULL), -EINVAL);
	ctx_set("unmap unknown flag");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE, 4 * PG, 1u << 7, NULL), -EINVAL);
	u.argsz = offsetof(struct vfio_iommu_type1_dma_unmap, size) + sizeof(u.size) - 1;
	ctx_set("unmap argsz %u (one short)", u.argsz);
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, &u), -EINVAL);
	expect_mapped(io, 1, 4 * PG);
}

static void test_unmap_all(void **state)
{
	struct dt_iommu *io = *state;
	uint64_t size = 1;

	map_region(io, IOVA_BASE, 4);
	map_region(io, IOVA_BASE + 16 * PG, 3);
	map_region(io, 0x7000000000ull, 5);
	ctx_set("FLAG_ALL with iova != 0");
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE, 0, VFIO_DMA_UNMAP_FLAG_ALL, NULL), -EINVAL);
	ctx_set("FLAG_ALL with size != 0");
	EXPECT_EQ(vfio_unmap(io, 0, 4 * PG, VFIO_DMA_UNMAP_FLAG_ALL, NULL), -EINVAL);
	expect_mapped(io, 3, 12 * PG);
	ctx_set("FLAG_ALL with iova 0 and size 0");
	EXPECT_EQ(vfio_unmap(io, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &size), 0);
	EXPECT_EQ(size, 12 * PG);
	expect_mapped(io, 0, 0);
	ctx_set("FLAG_ALL on an empty container");
	EXPECT_EQ(vfio_unmap(io, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &size), 0);
	EXPECT_EQ(size, 0);
}

static void test_unmap_bitmap_with_all_or_short_argsz(void **state)
{
	struct dt_iommu *io = *state;
	uint64_t bm[1] = {0};
	struct {
		struct vfio_iommu_type1_dma_unmap hdr;
		struct vfio_bitmap bitmap;
	} arg;

	map_region(io, IOVA_BASE, 4);
	tracking_start(io);
	memset(&arg, 0, sizeof(arg));
	arg.hdr.argsz = sizeof(arg);
	arg.hdr.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL;
	arg.bitmap.pgsize = PG;
	arg.bitmap.size = sizeof(bm);
	arg.bitmap.data = (__u64 *)bm;
	ctx_set("GET_DIRTY_BITMAP | ALL, iova 0 size 0");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, &arg), -EINVAL);
	arg.hdr.iova = IOVA_BASE;
	arg.hdr.size = 4 * PG;
	ctx_set("GET_DIRTY_BITMAP | ALL over the mapping");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, &arg), -EINVAL);
	arg.hdr.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR;
	ctx_set("GET_DIRTY_BITMAP | VADDR");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, &arg), -EINVAL);
	arg.hdr.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
	for (uint32_t sz = sizeof(arg.hdr); sz < sizeof(arg); sz += 4) {
		arg.hdr.argsz = sz;
		ctx_set("GET_DIRTY_BITMAP with argsz %u < 48", sz);
		EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, &arg), -EINVAL);
	}
	expect_mapped(io, 1, 4 * PG);
	arg.hdr.argsz = sizeof(arg);
	ctx_set("GET_DIRTY_BITMAP alone, argsz 48");
	EXPECT_EQ(dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, &arg), 0);
	EXPECT_EQ(arg.hdr.size, 4 * PG);
	expect_mapped(io, 0, 0);
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
	fclose(f);
	return (uint64_t)resident * 4096;
}

/* 1 TiB of never-touched guest memory mapped as `n` equal mappings, tracking on, 100 000
 * random pages logged and reported: the process grows by less than 256 MiB. */
static void terabyte_in(struct dt_iommu *io, uint64_t n)
{
	const uint64_t tib = 1ull << 40, each = tib / n;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	struct dt_report rep = {.size = sizeof(rep), .iova = IOVA_BASE, .length = tib};
	uint64_t before = rss_bytes(), grew;
	char *mem = mmap(NULL, tib, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	assert_true(mem != MAP_FAILED);
	for (uint64_t i = 0; i < n; i++)
		EXPECT_EQ(vfio_map(io, mem + i * each, IOVA_BASE + i * each, each, 3), 0);
	tracking_start(io);
	for (unsigned i = 0; i < 100000; i++)
		EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + rng_below(tib / PG) * PG, 1), 0);
	EXPECT_EQ(dt_iommu_report(io, &rep), 0);
	EXPECT_TRUE(rep.counts.logged > 99000 && rep.counts.logged <= 100000);
	grew = rss_bytes() - before;
	ctx_set("%" PRIu64 " mappings: the process grew by %" PRIu64 " KiB", n, grew >> 10);
	EXPECT_TRUE(grew < (256ull << 20));
	EXPECT_EQ(vfio_unmap(io, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, NULL), 0);
	munmap(mem, tib);
}

static void test_terabyte_one_mapping(void **state)
{
	terabyte_in(*state, 1);
}

static void test_terabyte_4096_mappings(void **state)
{
	terabyte_in(*state, 4096);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_map_ok_and_overlap),
		UT(test_map_alignment),
		UT(test_map_wrap),
		UT(test_map_vaddr_not_mapped),
		UT(test_map_flags_and_argsz),
		UT(test_unmap_cut_rejected),
		UT(test_unmap_sizes),
		UT(test_unmap_bad_args),
		UT(test_unmap_all),
		UT(test_unmap_bitmap_with_all_or_short_argsz),
		UT(test_terabyte_one_mapping),
		UT(test_terabyte_4096_mappings),
	};

	return cmocka_run_group_tests_name("vfio_map", tests, NULL, NULL);
}
