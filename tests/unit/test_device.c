/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_device.c - device kinds and the container scope (SEMANTICS.md section 1):
 * a PASSTHROUGH device that never pinned makes every report all ones over every mapping
 * (holes stay clear, dt_iommu_get_stats says whole_scope); its first pin while tracking
 * marks every mapped page dirty once (the next report all ones, the one after only pinned
 * pages); its detach while unpinned and tracking marks every page dirty once; a detach with
 * pins drops them as unpins (dirty once more). Attach/detach argument errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"

#define PRW (PROT_READ | PROT_WRITE)

static bool whole_scope(struct dt_iommu *io)
{
	struct dt_iommu_stats st;

	EXPECT_EQ(dt_iommu_get_stats(io, &st), 0);
	return st.whole_scope;
}

/* A (8 pages at page 0), hole, B (4 pages at page 12): 16 pages from IOVA_BASE. */
static void map_two(struct dt_iommu *io)
{
	map_region(io, IOVA_BASE, 8);
	map_region(io, IOVA_BASE + 12 * PG, 4);
}

#define ALL "0-7,12-15"

static void test_attach_detach_args(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev;
	struct dt_iommu_stats st;

	errno = 0;
	ctx_set("attach with kind 7");
	EXPECT_TRUE(dt_device_attach(io, (enum dt_device_kind)7) == NULL);
	EXPECT_EQ(errno, EINVAL);
	errno = 0;
	EXPECT_TRUE(dt_device_attach(NULL, DT_DEVICE_EMULATED) == NULL);
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(dt_device_detach(NULL), -EINVAL);
	dev = attach(io, DT_DEVICE_LOGGING);
	EXPECT_EQ(dt_device_kind(dev), DT_DEVICE_LOGGING);
	EXPECT_EQ(dt_device_kind(attach(io, DT_DEVICE_PASSTHROUGH)), DT_DEVICE_PASSTHROUGH);
	EXPECT_EQ(dt_device_kind(attach(io, DT_DEVICE_EMULATED)), DT_DEVICE_EMULATED);
	EXPECT_EQ(dt_iommu_get_stats(io, &st), 0);
	EXPECT_EQ(st.devices, 3);
	EXPECT_EQ(dt_device_detach(dev), 0);
	EXPECT_EQ(dt_iommu_get_stats(io, &st), 0);
	EXPECT_EQ(st.devices, 2);
}

static void test_passthrough_whole_scope(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);

	map_two(io);
	ctx_set("no PASSTHROUGH device: pinned scope");
	EXPECT_TRUE(!whole_scope(io));
	attach(io, DT_DEVICE_PASSTHROUGH);
	ctx_set("a PASSTHROUGH device that never pinned");
	EXPECT_TRUE(whole_scope(io));
	tracking_start(io);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + PG, 1, PRW, NULL), 1);
	EXPECT_EQ(dt_dma_log(emu, IOVA_BASE + 13 * PG, PG), 0);
	for (int i = 0; i < 3; i++) {
		ctx_set("whole-mapping scope, report %d: all ones over every mapping", i);
		EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	}
	ctx_set("whole-mapping scope: a range over one mapping");
	EXPECT_REPORT(io, IOVA_BASE + 12 * PG, 4, "0-3");
	ctx_set("whole-mapping scope: a mapping added while tracking is all ones too");
	map_region(io, IOVA_BASE + 9 * PG, 2);
	EXPECT_REPORT(io, IOVA_BASE, 16, "0-7,9-10,12-15");
	EXPECT_TRUE(whole_scope(io));
}

static void test_passthrough_first_pin_while_tracking(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);

	map_two(io);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	ctx_set("first pin of the PASSTHROUGH device: pinned scope from now on");
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 2 * PG, 1, PRW, NULL), 1);
	EXPECT_TRUE(!whole_scope(io));
	ctx_set("the report after the first pin: every mapped page dirty once");
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	ctx_set("the one after: only the pinned page");
	EXPECT_REPORT(io, IOVA_BASE, 16, "2");
	ctx_set("a promoted PASSTHROUGH device behaves like EMULATED: unpinned once more");
	EXPECT_EQ(dt_unpin_pages(pt, IOVA_BASE + 2 * PG, 1), 1);
	EXPECT_TRUE(!whole_scope(io));
	EXPECT_REPORT(io, IOVA_BASE, 16, "2");
	EXPECT_REPORT(io, IOVA_BASE, 16, "");
	ctx_set("a second pin does not mark everything again");
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 13 * PG, 1, PROT_READ, NULL), 1);
	EXPECT_REPORT(io, IOVA_BASE, 16, "13");
}

static void test_two_passthrough_devices(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *a = attach(io, DT_DEVICE_PASSTHROUGH);
	struct dt_device *b = attach(io, DT_DEVICE_PASSTHROUGH);

	map_two(io);
	tracking_start(io);
	ctx_set("one of two PASSTHROUGH devices pins: still whole scope");
	EXPECT_EQ(dt_pin_pages(a, IOVA_BASE, 1, PRW, NULL), 1);
	EXPECT_TRUE(whole_scope(io));
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	ctx_set("the second pins: pinned scope after one all-ones report");
	EXPECT_EQ(dt_pin_pages(b, IOVA_BASE + 14 * PG, 1, PRW, NULL), 1);
	EXPECT_TRUE(!whole_scope(io));
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	EXPECT_REPORT(io, IOVA_BASE, 16, "0,14");
}

static void test_passthrough_failed_pin_does_not_promote(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);

	map_two(io);
	tracking_start(io);
	ctx_set("a failed first pin of a PASSTHROUGH device: still whole scope");
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 9 * PG, 1, PRW, NULL), -EINVAL);
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 7 * PG, 2, PRW, NULL), -EINVAL);
	EXPECT_TRUE(whole_scope(io));
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
}

static void test_stop_drops_promotion_marks(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);
	struct dt_device *pt2 = attach(io, DT_DEVICE_PASSTHROUGH);

	map_two(io);
	tracking_start(io);
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + PG, 1, PRW, NULL), 1);
	EXPECT_EQ(dt_device_detach(pt2), 0);
	ctx_set("STOP after a promotion and a detach, then START: only the pinned page");
	EXPECT_EQ(vfio_dirty(io, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP), 0);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 16, "1");
}

static void test_passthrough_pin_while_off(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);

	map_two(io);
	ctx_set("first pin while tracking is off, then START: only the pinned pages");
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 5 * PG, 2, PRW, NULL), 2);
	EXPECT_TRUE(!whole_scope(io));
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 16, "5-6");
	EXPECT_REPORT(io, IOVA_BASE, 16, "5-6");
}

static void test_detach_unpinned_passthrough(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);

	map_two(io);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 3 * PG, 1, PRW, NULL), 1);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	ctx_set("detach of an unpinned PASSTHROUGH device while tracking");
	EXPECT_EQ(dt_device_detach(pt), 0);
	EXPECT_TRUE(!whole_scope(io));
	ctx_set("after the detach: every page dirty once");
	EXPECT_REPORT(io, IOVA_BASE, 16, ALL);
	ctx_set("then only the pinned page");
	EXPECT_REPORT(io, IOVA_BASE, 16, "3");
}

static void test_detach_unpinned_passthrough_while_off(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);

	map_two(io);
	ctx_set("detach of an unpinned PASSTHROUGH device while tracking is off");
	EXPECT_EQ(dt_device_detach(pt), 0);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 16, "");
}

static void test_detach_with_pins(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_device *pt = attach(io, DT_DEVICE_PASSTHROUGH);
	struct dt_device *other = attach(io, DT_DEVICE_EMULATED);
	struct dt_iommu_stats st;

	map_two(io);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 3 * PG, 2, PRW, NULL), 2);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 3 * PG, 1, PRW, NULL), 1); /* page 3 twice */
	EXPECT_EQ(dt_pin_pages(pt, IOVA_BASE + 13 * PG, 1, PRW, NULL), 1);
	EXPECT_EQ(dt_pin_pages(other, IOVA_BASE + 4 * PG, 1, PRW, NULL), 1);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 16, "3-4,13");
	ctx_set("detach of EMULATED holding pages 3 (twice) and 4 (also pinned by another)");
	EXPECT_EQ(dt_device_detach(emu), 0);
	EXPECT_REPORT(io, IOVA_BASE, 16, "3-4,13");
	EXPECT_REPORT(io, IOVA_BASE, 16, "4,13");
	ctx_set("detach of a promoted PASSTHROUGH device holding page 13");
	EXPECT_EQ(dt_device_detach(pt), 0);
	EXPECT_TRUE(!whole_scope(io));
	EXPECT_REPORT(io, IOVA_BASE, 16, "4,13");
	EXPECT_REPORT(io, IOVA_BASE, 16, "4");
	EXPECT_EQ(dt_iommu_get_stats(io, &st), 0);
	EXPECT_EQ(st.pinned_pages, 1);
	EXPECT_EQ(st.devices, 1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_attach_detach_args),
		UT(test_passthrough_whole_scope),
		UT(test_passthrough_first_pin_while_tracking),
		UT(test_two_passthrough_devices),
		UT(test_passthrough_failed_pin_does_not_promote),
		UT(test_stop_drops_promotion_marks),
		UT(test_passthrough_pin_while_off),
		UT(test_detach_unpinned_passthrough),
		UT(test_detach_unpinned_passthrough_while_off),
		UT(test_detach_with_pins),
	};

	return cmocka_run_group_tests_name("device", tests, NULL, NULL);
}
