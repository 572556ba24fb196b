/* SPDX-License-Identifier: MIT */
/*
 * tests/track/test_dirty_set.c - the merged harvest: one call over a CPU source and a
 * container returns each class apart (CPU, VMM, PINNED, DEVICE, WHOLE), counts a page in
 * two classes once in the union, leaves pinned pages out with SKIP_PINNED, and puts back
 * what a consumer could not send (merge-back) into the class it came from; pre-harvest hooks
 * feed a container in the same harvest, and a failing hook fails the harvest losing nothing.
 *
 * The CPU source is userfaultfd write-protect over this process's memory when the kernel
 * has it, else the all-dirty fallback (then only the container-side checks are exact).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>
#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#define PAGE   4096ull
#define NPAGES 256ull
#define IOVA   0x40000000ull

struct fixture {
	char *mem;
	struct dt_iommu *iommu;
	struct dt_source *cpu;
	struct dt_dirty_set *set;
	struct dt_device *vmm, *mdev, *nic;
};

static bool bit(const uint64_t *b, uint64_t n)
{
	return b[n / 64] >> (n % 64) & 1;
}

static int setup(void **state)
{
	static struct fixture f;
	struct dt_region region;
	struct dt_source_opts so = {.size = sizeof(so), .vm_fd = -1, .nregions = 1};
	struct dt_dirty_set_opts dso = {.size = sizeof(dso), .length = NPAGES * PAGE};
	struct vfio_iommu_type1_dma_map map = {.argsz = sizeof(map),
					       .flags = VFIO_DMA_MAP_FLAG_READ |
							VFIO_DMA_MAP_FLAG_WRITE,
					       .iova = IOVA,
					       .size = NPAGES * PAGE};

	memset(&f, 0, sizeof(f));
	f.mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		     0);
	assert_true(f.mem != MAP_FAILED);
	memset(f.mem, 1, NPAGES * PAGE);
	region = (struct dt_region){.addr = (uintptr_t)f.mem, .size = NPAGES * PAGE, .host = f.mem};
	so.regions = &region;
	so.type = DT_SOURCE_UFFD_WP;
	f.cpu = dt_source_new(&so);
	if (!f.cpu) {
		so.type = DT_SOURCE_ALL_DIRTY;
		f.cpu = dt_source_new(&so);
	}
	assert_non_null(f.cpu);
	f.iommu = dt_iommu_new();
	map.vaddr = (uintptr_t)f.mem;
	assert_int_equal(dt_vfio_ioctl(f.iommu, VFIO_IOMMU_MAP_DMA, &map), 0);
	f.vmm = dt_device_attach(f.iommu, DT_DEVICE_EMULATED);
	assert_int_equal(dt_device_set_flags(f.vmm, DT_DEVICE_F_VMM), 0);
	f.mdev = dt_device_attach(f.iommu, DT_DEVICE_EMULATED);
	f.nic = dt_device_attach(f.iommu, DT_DEVICE_LOGGING);
	dso.base = (uintptr_t)f.mem;
	f.set = dt_dirty_set_new(&dso);
	assert_non_null(f.set);
	assert_int_equal(dt_dirty_set_add_source(f.set, f.cpu), 0);
	assert_int_equal(dt_dirty_set_add_iommu(f.set, f.iommu, IOVA), 0);
	assert_int_equal(dt_source_start(f.cpu), 0);
	assert_int_equal(dt_iommu_dirty_start(f.iommu), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dt_dirty_set_free(f->set);
	dt_source_free(f->cpu);
	dt_iommu_free(f->iommu);
	munmap(f->mem, NPAGES * PAGE);
	return 0;
}

static bool cpu_exact(const struct fixture *f)
{
	return dt_source_caps(f->cpu) & DT_SOURCE_CAP_EXACT;
}

static void test_three_classes(void **state)
{
	struct fixture *f = *state;
	struct dt_harvest h;

	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);     /* start from clean */
	f->mem[10 * PAGE] = 7;					      /* a CPU write */
	assert_int_equal(dt_dma_log(f->vmm, IOVA + 20 * PAGE, 1), 0); /* the VMM's device */
	assert_int_equal(dt_pin_pages(f->mdev, IOVA + 30 * PAGE, 1, PROT_WRITE, NULL), 1);
	assert_int_equal(dt_dma_log(f->nic, IOVA + 40 * PAGE, PAGE), 0); /* a real device */
	f->mem[20 * PAGE] = 8; /* page 20 now in two classes: CPU and VMM */

	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_int_equal(h.npages, NPAGES);
	assert_true(bit(h.class_bits[DT_CLASS_CPU], 10));
	assert_true(bit(h.class_bits[DT_CLASS_VMM], 20));
	assert_true(bit(h.class_bits[DT_CLASS_PINNED], 30));
	assert_true(bit(h.class_bits[DT_CLASS_DEVICE], 40));
	assert_false(bit(h.class_bits[DT_CLASS_VMM], 10));
	assert_false(bit(h.class_bits[DT_CLASS_PINNED], 20));
	assert_int_equal(h.count[DT_CLASS_VMM], 1);
	assert_int_equal(h.count[DT_CLASS_PINNED], 1);
	assert_int_equal(h.count[DT_CLASS_DEVICE], 1);
	assert_int_equal(h.count[DT_CLASS_WHOLE], 0);
	if (cpu_exact(f)) {
		assert_int_equal(h.count[DT_CLASS_CPU], 2); /* pages 10 and 20 */
		assert_true(bit(h.class_bits[DT_CLASS_CPU], 20));
		assert_int_equal(h.total, 4); /* 10, 20 (once), 30, 40 */
	}
	for (uint64_t p = 0; p < NPAGES; p++) {
		bool any = false;

		for (unsigned c = 0; c < DT_NCLASSES; c++)
			any |= bit(h.class_bits[c], p);
		assert_int_equal(bit(h.all, p), any);
	}

	/* Next harvest: only the pinned page (and nothing from the CPU if exact). */
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_int_equal(h.count[DT_CLASS_PINNED], 1);
	assert_int_equal(h.count[DT_CLASS_VMM] + h.count[DT_CLASS_DEVICE], 0);
	if (cpu_exact(f))
		assert_int_equal(h.total, 1);

	/* SKIP_PINNED: counted in PINNED, left out of `all`. */
	assert_int_equal(dt_dirty_set_harvest(f->set, DT_HARVEST_SKIP_PINNED, &h), 0);
	assert_int_equal(h.count[DT_CLASS_PINNED], 1);
	assert_false(bit(h.all, 30));
	assert_int_equal(dt_unpin_pages(f->mdev, IOVA + 30 * PAGE, 1), 1);
}

static void test_merge_back(void **state)
{
	struct fixture *f = *state;
	uint64_t back[NPAGES / 64] = {0};
	struct dt_harvest h;

	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	f->mem[5 * PAGE] = 1;
	assert_int_equal(dt_dma_log(f->nic, IOVA + 6 * PAGE, PAGE), 0);
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_true(bit(h.all, 6));
	/* The send of both failed: give them back. */
	back[0] = 1ull << 5 | 1ull << 6;
	assert_int_equal(dt_dirty_set_merge_back(f->set, back), 0);
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_true(bit(h.class_bits[DT_CLASS_CPU], 5));    /* back where it came from */
	assert_true(bit(h.class_bits[DT_CLASS_DEVICE], 6)); /* the container's "requeued" */
	if (cpu_exact(f)) {
		assert_false(bit(h.class_bits[DT_CLASS_CPU], 6));
		assert_int_equal(h.total, 2);
	}
	/* Given once, gone after. */
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_false(bit(h.class_bits[DT_CLASS_DEVICE], 6));
	if (cpu_exact(f))
		assert_int_equal(h.total, 0);
}

/* A pre-harvest hook standing for a remote device's DMA log: it logs `pages` on the LOGGING
 * device, then returns `ret` (after logging, to show a failure loses nothing). */
struct hook_state {
	struct fixture *f;
	uint64_t pages[4];
	unsigned npages;
	int ret;
	unsigned calls;
	unsigned order; /* calls of the other hook seen when this one ran */
	struct hook_state *other;
};

static int log_hook(void *opaque)
{
	struct hook_state *hs = opaque;

	hs->calls++;
	if (hs->other)
		hs->order = hs->other->calls;
	for (unsigned i = 0; i < hs->npages; i++)
		assert_int_equal(dt_dma_log(hs->f->nic, IOVA + hs->pages[i] * PAGE, PAGE), 0);
	hs->npages = 0;
	return hs->ret;
}

static void test_pre_harvest_hook(void **state)
{
	struct fixture *f = *state;
	struct hook_state a = {.f = f}, b = {.f = f};
	uint64_t back[NPAGES / 64] = {0};
	struct dt_harvest h;

	assert_int_equal(dt_dirty_set_add_pre_harvest(f->set, NULL, &a), -EINVAL);
	assert_int_equal(dt_dirty_set_add_pre_harvest(NULL, log_hook, &a), -EINVAL);
	assert_int_equal(dt_dirty_set_add_pre_harvest(f->set, log_hook, &a), 0);
	assert_int_equal(dt_dirty_set_add_pre_harvest(f->set, log_hook, &b), 0);
	b.other = &a;
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0); /* clean start */
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.order, 1); /* in the order added */

	/* What the hooks log appears in DEVICE of this very harvest, and only once. */
	a.pages[0] = 7, a.pages[1] = 200, a.npages = 2;
	b.pages[0] = 255, b.npages = 1;
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_int_equal(h.count[DT_CLASS_DEVICE], 3);
	assert_true(bit(h.class_bits[DT_CLASS_DEVICE], 7));
	assert_true(bit(h.class_bits[DT_CLASS_DEVICE], 200));
	assert_true(bit(h.class_bits[DT_CLASS_DEVICE], 255));
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_int_equal(h.count[DT_CLASS_DEVICE], 0);

	/* Hook a fails after logging page 9: the harvest fails with its errno, hook b does not
	 * run, and neither page 9 nor the CPU page waiting from a merge-back is lost. */
	back[1] = 1ull << 2; /* page 66 */
	assert_int_equal(dt_dirty_set_merge_back(f->set, back), 0);
	a.pages[0] = 9, a.npages = 1, a.ret = -ECONNRESET;
	b.pages[0] = 11, b.npages = 1;
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), -ECONNRESET);
	assert_int_equal(b.calls, 3);
	a.ret = 0;
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_true(bit(h.class_bits[DT_CLASS_DEVICE], 9));
	assert_true(bit(h.class_bits[DT_CLASS_DEVICE], 11));
	assert_true(bit(h.class_bits[DT_CLASS_CPU], 66));
	assert_int_equal(h.count[DT_CLASS_DEVICE], 2);
	if (cpu_exact(f))
		assert_int_equal(h.total, 3);

	/* A hook returning something that is not a negative errno still fails the harvest. */
	a.ret = 1;
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), -EIO);
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	struct dt_dirty_set_opts bad = {.size = sizeof(bad), .base = 1, .length = PAGE};
	struct dt_harvest h;

	assert_null(dt_dirty_set_new(&bad));
	assert_int_equal(errno, EINVAL);
	bad.base = 0;
	bad.length = 0;
	assert_null(dt_dirty_set_new(&bad));
	assert_int_equal(dt_dirty_set_harvest(f->set, 0x80, &h), -EINVAL);
	assert_int_equal(dt_dirty_set_harvest(NULL, 0, &h), -EINVAL);
	assert_int_equal(dt_dirty_set_merge_back(f->set, NULL), -EINVAL);
	assert_int_equal(dt_dirty_set_add_iommu(f->set, f->iommu, 3), -EINVAL);
	/* A container with tracking off fails the harvest; what sources gave is kept. */
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	f->mem[3 * PAGE] = 2;
	assert_int_equal(dt_iommu_dirty_stop(f->iommu), 0);
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), -EINVAL);
	assert_int_equal(dt_iommu_dirty_start(f->iommu), 0);
	assert_int_equal(dt_dirty_set_harvest(f->set, 0, &h), 0);
	assert_true(bit(h.class_bits[DT_CLASS_CPU], 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_three_classes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_merge_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pre_harvest_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
