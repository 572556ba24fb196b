/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_report_classes.c - telling dirty pages apart by who dirtied them:
 * DT_DEVICE_F_VMM devices (the VMM's own emulation) counted in class "vmm" instead of
 * dma_rw/logged, and per-class bitmaps of a report (struct dt_report.class_bitmap), which
 * must hold exactly each class's pages, whatever SKIP_PINNED does to the union, and may
 * alias.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "helpers.h"

#define NP 256

static void test_vmm_flag(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *vmm = attach(io, DT_DEVICE_EMULATED),
			 *dev = attach(io, DT_DEVICE_LOGGING);
	char byte = 1;

	map_region(io, IOVA_BASE, NP);
	tracking_start(io);
	EXPECT_EQ(dt_device_set_flags(vmm, 0x2), -EINVAL);
	EXPECT_EQ(dt_device_set_flags(NULL, DT_DEVICE_F_VMM), -EINVAL);
	EXPECT_EQ(dt_device_set_flags(vmm, DT_DEVICE_F_VMM), 0);
	EXPECT_EQ(dt_dma_log(vmm, IOVA_BASE + 3 * PG, 1), 0);
	EXPECT_EQ(dt_dma_rw(vmm, IOVA_BASE + 4 * PG, &byte, 1, true), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 5 * PG, 1), 0);
	EXPECT_EQ(dt_dma_rw(dev, IOVA_BASE + 6 * PG, &byte, 1, true), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 3 * PG, 1), 0); /* page 3 in two classes */

	struct dt_report rep = {.size = sizeof(rep), .iova = IOVA_BASE, .length = NP * PG};

	EXPECT_EQ(dt_iommu_report(io, &rep), 0);
	EXPECT_EQ(rep.counts.vmm, 2);
	EXPECT_EQ(rep.counts.logged, 2);
	EXPECT_EQ(rep.counts.dma_rw, 1);
	EXPECT_EQ(rep.counts.total, 4);
	/* Clearing the flag: back to the device's own classes. */
	EXPECT_EQ(dt_device_set_flags(vmm, 0), 0);
	EXPECT_EQ(dt_dma_log(vmm, IOVA_BASE + 7 * PG, 1), 0);
	EXPECT_EQ(dt_iommu_report(io, &rep), 0);
	EXPECT_EQ(rep.counts.vmm, 0);
	EXPECT_EQ(rep.counts.logged, 1);
}

static void test_class_bitmaps(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *vmm = attach(io, DT_DEVICE_EMULATED),
			 *mdev = attach(io, DT_DEVICE_EMULATED);
	struct dt_device *nic = attach(io, DT_DEVICE_LOGGING);
	uint8_t *cls[DT_REPORT_NCLASSES], *all = bm_new(NP), *dev = bm_new(NP);
	char byte = 1;

	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++)
		cls[c] = bm_new(NP);
	/* Two mappings, the second at a page offset not a multiple of 64. */
	map_region(io, IOVA_BASE, 100);
	map_region(io, IOVA_BASE + 130 * PG, 126);
	tracking_start(io);
	EXPECT_EQ(dt_device_set_flags(vmm, DT_DEVICE_F_VMM), 0);
	EXPECT_EQ(dt_pin_pages(mdev, IOVA_BASE + 10 * PG, 2, PROT_WRITE, NULL), 2);
	EXPECT_EQ(dt_pin_pages(mdev, IOVA_BASE + 20 * PG, 1, PROT_WRITE, NULL), 1);
	EXPECT_EQ(dt_unpin_pages(mdev, IOVA_BASE + 20 * PG, 1), 1);
	EXPECT_EQ(dt_dma_rw(mdev, IOVA_BASE + 140 * PG, &byte, 1, true), 0);
	EXPECT_EQ(dt_dma_log(nic, IOVA_BASE + 200 * PG, 3 * PG), 0);
	EXPECT_EQ(dt_dma_log(nic, IOVA_BASE + 10 * PG, 1), 0); /* pinned and logged */
	EXPECT_EQ(dt_dma_log(vmm, IOVA_BASE + 131 * PG, 1), 0);
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE + 50 * PG, PG), 0);

	struct dt_report rep = {.size = sizeof(rep),
				.iova = IOVA_BASE,
				.length = NP * PG,
				.flags = DT_REPORT_SKIP_PINNED,
				.bitmap = all,
				.bitmap_size = bm_bytes(NP)};

	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++)
		rep.class_bitmap[c] = cls[c];
	EXPECT_EQ(dt_iommu_report(io, &rep), 0);
	EXPECT_BITS_SPEC(cls[DT_RC_PINNED], NP, "10-11");
	EXPECT_BITS_SPEC(cls[DT_RC_UNPINNED], NP, "20");
	EXPECT_BITS_SPEC(cls[DT_RC_DMA_RW], NP, "140");
	EXPECT_BITS_SPEC(cls[DT_RC_LOGGED], NP, "10,200-202");
	EXPECT_BITS_SPEC(cls[DT_RC_REQUEUED], NP, "50");
	EXPECT_BITS_SPEC(cls[DT_RC_VMM], NP, "131");
	EXPECT_BITS_SPEC(cls[DT_RC_WHOLE], NP, "");
	/* SKIP_PINNED leaves 10 and 11 out of the union, not out of their classes. */
	EXPECT_BITS_SPEC(all, NP, "20,50,131,140,200-202");
	EXPECT_EQ(rep.counts.total, 7);

	/* Aliased outputs fold classes: the dirty set's "device" class. */
	EXPECT_EQ(dt_dma_log(nic, IOVA_BASE + 60 * PG, 1), 0);
	EXPECT_EQ(dt_dma_rw(mdev, IOVA_BASE + 61 * PG, &byte, 1, true), 0);
	memset(&rep.class_bitmap, 0, sizeof(rep.class_bitmap));
	rep.class_bitmap[DT_RC_LOGGED] = dev;
	rep.class_bitmap[DT_RC_DMA_RW] = dev;
	rep.flags = 0;
	rep.bitmap = NULL;
	EXPECT_EQ(dt_iommu_report(io, &rep), 0);
	EXPECT_BITS_SPEC(dev, NP, "60-61");

	/* Whole-mapping scope: the class is the mappings, not the holes. */
	attach(io, DT_DEVICE_PASSTHROUGH);
	memset(cls[DT_RC_WHOLE], 0, bm_bytes(NP));
	memset(&rep.class_bitmap, 0, sizeof(rep.class_bitmap));
	rep.class_bitmap[DT_RC_WHOLE] = cls[DT_RC_WHOLE];
	EXPECT_EQ(dt_iommu_report(io, &rep), 0);
	EXPECT_BITS_SPEC(cls[DT_RC_WHOLE], NP, "0-99,130-255");

	/* Class bitmaps need the container page size. */
	rep.pgsize = 2 * PG;
	EXPECT_EQ(dt_iommu_report(io, &rep), -EINVAL);
	free(all);
	free(dev);
	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++)
		free(cls[c]);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_vmm_flag),
		UT(test_class_bitmaps),
	};

	seed_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
