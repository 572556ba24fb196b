/* SPDX-License-Identifier: MIT */
/*
 * tools/demo_container.c - `dirtytrack demo`: the flow argued on the kernel list in 2020,
 * run step by step against a dirtytrack container, printing each report by class and
 * checking it against what SEMANTICS.md says it must be. Exit status 0 only if every
 * report matched.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#include "cli.h"

#define PAGE	  4096ull
#define MEM_PAGES 16384ull /* 64 MiB of guest memory */
#define IOVA	  0x100000000ull

struct demo {
	struct dt_iommu *iommu;
	int failures;
	int step;
};

static void report(struct demo *d, const char *what, uint64_t expect_total)
{
	struct dt_report rep = {.size = sizeof(rep), .iova = IOVA, .length = MEM_PAGES * PAGE};
	int ret = dt_iommu_report(d->iommu, &rep);
	const struct dt_report_counts *c = &rep.counts;
	int ok = !ret && c->total == expect_total;

	printf("%2d  %-44s %7llu %7llu %8llu %6llu %6llu %6llu  %s\n", ++d->step, what,
	       (unsigned long long)c->total, (unsigned long long)c->pinned,
	       (unsigned long long)c->unpinned, (unsigned long long)c->dma_rw,
	       (unsigned long long)c->logged, (unsigned long long)c->whole, ok ? "ok" : "MISMATCH");
	if (!ok) {
		printf("    expected %llu dirty pages, report returned %d with %llu\n",
		       (unsigned long long)expect_total, ret, (unsigned long long)c->total);
		d->failures++;
	}
}

static int map_guest(struct dt_iommu *iommu, void *mem)
{
	struct vfio_iommu_type1_dma_map map = {.argsz = sizeof(map),
					       .flags = VFIO_DMA_MAP_FLAG_READ |
							VFIO_DMA_MAP_FLAG_WRITE,
					       .vaddr = (uintptr_t)mem,
					       .iova = IOVA,
					       .size = MEM_PAGES * PAGE};

	return dt_vfio_ioctl(iommu, VFIO_IOMMU_MAP_DMA, &map);
}

int demo_container(int argc, char **argv)
{
	struct vfio_iommu_type1_dirty_bitmap start = {.argsz = sizeof(start),
						      .flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START};
	struct dt_device *mdev, *vf, *nic;
	struct demo d = {0};
	char buf[2] = {1, 2};
	void *mem;

	(void)argc;
	(void)argv;
	dt_set_log(dt_log_stderr, NULL, DT_LOG_WARN);
	mem = mmap(NULL, MEM_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		   0);
	d.iommu = dt_iommu_new();
	if (mem == MAP_FAILED || !d.iommu || map_guest(d.iommu, mem)) {
		fprintf(stderr, "demo: setup failed: %s\n", strerror(errno));
		return 1;
	}
	printf("dirtytrack %s: the 2020 VFIO dirty-page thread, step by step\n", dt_version());
	printf("64 MiB of guest memory mapped at iova 0x%llx; counts are 4 KiB pages\n\n",
	       (unsigned long long)IOVA);
	printf("    %-44s %7s %7s %8s %6s %6s %6s\n", "step", "dirty", "pinned", "unpinned",
	       "dma_rw", "logged", "whole");

	mdev = dt_device_attach(d.iommu, DT_DEVICE_EMULATED);
	dt_pin_pages(mdev, IOVA, 100, PROT_READ | PROT_WRITE, NULL);
	dt_vfio_ioctl(d.iommu, VFIO_IOMMU_DIRTY_PAGES, &start);
	report(&d, "mdev pinned x=100, START, report: x", 100);
	dt_pin_pages(mdev, IOVA + 100 * PAGE, 50, PROT_READ | PROT_WRITE, NULL);
	report(&d, "mdev pins y=50 more: x+y", 150);
	dt_unpin_pages(mdev, IOVA, 30);
	report(&d, "mdev unpins z=30: still x+y", 150);
	report(&d, "report again: x+y-z, the inflection point", 120);
	dt_dma_rw(mdev, IOVA + 1000 * PAGE + PAGE - 1, buf, 2, true);
	report(&d, "dma_rw of 2 bytes across a page edge: +2", 122);
	report(&d, "no activity: only the pinned pages", 120);

	vf = dt_device_attach(d.iommu, DT_DEVICE_LOGGING);
	dt_pin_pages(vf, IOVA + 5000 * PAGE, 64, PROT_READ | PROT_WRITE, NULL);
	dt_dma_log(vf, IOVA + 6000 * PAGE, 10 * PAGE);
	report(&d, "logging VF pins 64, logs 10: only the 10", 130);
	report(&d, "and the logged pages only once", 120);

	nic = dt_device_attach(d.iommu, DT_DEVICE_PASSTHROUGH);
	report(&d, "passthrough NIC attached: whole mapping", MEM_PAGES);
	report(&d, "until it pins, every report", MEM_PAGES);
	dt_pin_pages(nic, IOVA + 8000 * PAGE, 8, PROT_READ | PROT_WRITE, NULL);
	report(&d, "NIC pins 8: everything once more", MEM_PAGES);
	report(&d, "then pinned scope: 120 + 8", 128);

	struct dt_report skip = {.size = sizeof(skip),
				 .iova = IOVA,
				 .length = MEM_PAGES * PAGE,
				 .flags = DT_REPORT_SKIP_PINNED};
	struct dt_report pinned = {
		.size = sizeof(pinned), .iova = IOVA, .length = MEM_PAGES * PAGE};

	dt_dma_log(vf, IOVA + 7000 * PAGE, PAGE);
	dt_iommu_report(d.iommu, &skip);
	dt_iommu_pinned(d.iommu, &pinned);
	printf("\npre-copy round with SKIP_PINNED: %llu page to send now; the %llu pinned pages "
	       "wait for stop-and-copy\n",
	       (unsigned long long)skip.counts.total, (unsigned long long)pinned.counts.total);
	if (skip.counts.total != 1 || pinned.counts.total != 128)
		d.failures++;

	dt_iommu_free(d.iommu);
	munmap(mem, MEM_PAGES * PAGE);
	printf("\n%s: %d of %d reports as SEMANTICS.md says\n", d.failures ? "FAIL" : "PASS",
	       d.step + 1 - d.failures, d.step + 1);
	return d.failures ? 1 : 0;
}
