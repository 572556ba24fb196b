/* SPDX-License-Identifier: MIT */
/*
 * tests/fault/test_fault.c - allocation and system-call failures (suite 'fault').
 *
 * For each scenario (map, attach, pin, unmap with unmap notes, DMA_LOGGING_START) the n-th
 * allocation of the call is made to fail, for n = 1, 2, ... until the call makes fewer than
 * n allocations. Each time the call must either fail with -ENOMEM (NULL + errno ENOMEM)
 * leaving the container exactly as it was (stats, pinned set, dirty report, unmap-callback
 * calls), after which the same call without injection succeeds and leaves the container
 * exactly as in a run that never failed; or absorb the failure without losing a dirty page
 * (its report is a superset of the reference). ASan's leak check runs at exit.
 *
 * dt_dma_log with tracking on cannot fail for lack of memory: a chunk that cannot be
 * allocated makes the next report hold the whole mapping. sys_fail_nth makes MAP_DMA's
 * vaddr check fail with -EFAULT. The core structures' own ENOMEM paths are checked too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include <dirtytrack/iommu.h>

#include "core/alloc.h"
#include "core/sbitmap.h"
#include "core/u64map.h"
#include "sys/sys.h"
#include "test_util.h"

#define PG    4096ull
#define IOVA0 0x10000000ull
#define NPG   64u /* pages of the IOVA window every snapshot covers */

static uint8_t *ram; /* NPG pages of host memory behind the mappings */

/* ---- the world a scenario runs in ---------------------------------------------------------- */

struct world {
	struct dt_iommu *io;
	struct dt_device *emu, *logdev, *pt, *added;
	unsigned cb_calls;
	bool cb_unpins;
	uint64_t out;	   /* the call's output bitmap (unmap GET_DIRTY_BITMAP) */
	uint64_t out_size; /* bytes unmapped */
};

struct snap {
	struct dt_iommu_stats st;
	uint64_t pinned, report, out, out_size;
	struct dt_report_counts counts;
	unsigned cb_calls;
	int report_ret;
};

static int map(struct dt_iommu *io, uint64_t page, uint64_t npages)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uint64_t)(uintptr_t)(ram + page * PG),
		.iova = IOVA0 + page * PG,
		.size = npages * PG,
	};

	return dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &m);
}

static void unmap_cb(void *opaque, uint64_t iova, uint64_t size)
{
	struct world *w = opaque;

	w->cb_calls++;
	if (w->cb_unpins)
		dt_unpin_pages(w->emu, IOVA0 + 2 * PG, 1); /* one of its pins in A */
}

/*
 * Mappings A = pages [0, 16), B = [16, 32) (adjacent), C = [40, 48). An EMULATED device
 * with pins in A and B and an unmap callback, a LOGGING device that logged pages of B and
 * C, a dma_rw write across two pages of A; tracking on.
 */
static void world_setup(struct world *w)
{
	char two[2] = {1, 2};

	memset(w, 0, sizeof(*w));
	w->io = dt_iommu_new();
	assert_non_null(w->io);
	assert_int_equal(map(w->io, 0, 16), 0);
	assert_int_equal(map(w->io, 16, 16), 0);
	assert_int_equal(map(w->io, 40, 8), 0);
	w->emu = dt_device_attach(w->io, DT_DEVICE_EMULATED);
	w->logdev = dt_device_attach(w->io, DT_DEVICE_LOGGING);
	assert_non_null(w->emu);
	assert_non_null(w->logdev);
	assert_int_equal(dt_device_set_unmap_cb(w->emu, unmap_cb, w), 0);
	assert_int_equal(dt_pin_pages(w->emu, IOVA0 + 2 * PG, 3, PROT_READ | PROT_WRITE, NULL), 3);
	assert_int_equal(dt_iommu_dirty_start(w->io), 0);
	assert_int_equal(dt_pin_pages(w->emu, IOVA0 + 17 * PG, 2, PROT_READ, NULL), 2);
	assert_int_equal(dt_dma_log(w->logdev, IOVA0 + 20 * PG + 5, 3 * PG), 0);
	assert_int_equal(dt_dma_log(w->logdev, IOVA0 + 41 * PG, 1), 0);
	assert_int_equal(dt_dma_rw(w->logdev, IOVA0 + 8 * PG - 1, two, 2, true), 0);
}

/* The same plus a PASSTHROUGH device that has not pinned: whole-mapping scope. */
static void world_setup_pt(struct world *w)
{
	world_setup(w);
	w->pt = dt_device_attach(w->io, DT_DEVICE_PASSTHROUGH);
	assert_non_null(w->pt);
}

static void world_teardown(struct world *w)
{
	dt_iommu_free(w->io);
	memset(w, 0, sizeof(*w));
}

/* What can be observed without changing anything. */
static void snapshot(struct world *w, struct snap *s)
{
	struct dt_report rep = {.size = sizeof(rep), .iova = IOVA0, .length = NPG * PG};

	memset(s, 0, sizeof(*s));
	assert_int_equal(dt_iommu_get_stats(w->io, &s->st), 0);
	s->st.bitmap_bytes = 0; /* memory held may differ after a failure; nothing else */
	rep.bitmap = &s->pinned;
	rep.bitmap_size = sizeof(s->pinned);
	assert_int_equal(dt_iommu_pinned(w->io, &rep), 0);
	rep = (struct dt_report){.size = sizeof(rep),
				 .iova = IOVA0,
				 .length = NPG * PG,
				 .flags = DT_REPORT_NO_CLEAR,
				 .bitmap = &s->report,
				 .bitmap_size = sizeof(s->report)};
	s->report_ret = dt_iommu_report(w->io, &rep);
	s->counts = rep.counts;
	s->out = w->out;
	s->out_size = w->out_size;
	s->cb_calls = w->cb_calls;
}

/* Two clearing reports; the second shows what stays (pinned pages, whole scope). */
static void final_reports(struct world *w, uint64_t bm[2], struct dt_report_counts c[2])
{
	for (int i = 0; i < 2; i++) {
		struct dt_report rep = {.size = sizeof(rep),
					.iova = IOVA0,
					.length = NPG * PG,
					.bitmap = &bm[i],
					.bitmap_size = sizeof(bm[i])};

		bm[i] = 0;
		assert_int_equal(dt_iommu_report(w->io, &rep), 0);
		c[i] = rep.counts;
	}
}

static void expect_counts_equal(const struct dt_report_counts *seen,
				const struct dt_report_counts *want)
{
	EXPECT_EQ(seen->pinned, want->pinned);
	EXPECT_EQ(seen->unpinned, want->unpinned);
	EXPECT_EQ(seen->dma_rw, want->dma_rw);
	EXPECT_EQ(seen->logged, want->logged);
	EXPECT_EQ(seen->requeued, want->requeued);
	EXPECT_EQ(seen->whole, want->whole);
	EXPECT_EQ(seen->total, want->total);
}

static void expect_stats_equal(const struct snap *seen, const struct snap *want)
{
	EXPECT_EQ(seen->st.mappings, want->st.mappings);
	EXPECT_EQ(seen->st.mapped_bytes, want->st.mapped_bytes);
	EXPECT_EQ(seen->st.devices, want->st.devices);
	EXPECT_EQ(seen->st.pinned_pages, want->st.pinned_pages);
	EXPECT_EQ(seen->st.whole_scope, want->st.whole_scope);
	EXPECT_EQ(seen->pinned, want->pinned);
	EXPECT_EQ(seen->cb_calls, want->cb_calls);
	EXPECT_EQ(seen->out_size, want->out_size);
}

static void expect_snap_equal(const struct snap *seen, const struct snap *want)
{
	expect_stats_equal(seen, want);
	EXPECT_EQ((int64_t)seen->report_ret, (int64_t)want->report_ret);
	EXPECT_EQ(seen->report, want->report);
	EXPECT_EQ(seen->out, want->out);
	expect_counts_equal(&seen->counts, &want->counts);
}

/* A failure absorbed inside the call: same state, and no dirty page lost. */
static void expect_snap_superset(const struct snap *seen, const struct snap *want)
{
	expect_stats_equal(seen, want);
	EXPECT_EQ((int64_t)seen->report_ret, (int64_t)want->report_ret);
	EXPECT_EQ(seen->report & want->report, want->report);
	EXPECT_EQ(seen->out & want->out, want->out);
}

/* ---- the fail-nth loop ----------------------------------------------------------------------- */

struct scenario {
	const char *name;
	void (*setup)(struct world *w);
	int (*call)(struct world *w); /* 0 or a negative errno */
};

static void run_scenario(const struct scenario *sc)
{
	struct world w;
	struct snap ref, before, after;
	uint64_t ref_bm[2], bm[2];
	struct dt_report_counts ref_c[2], c[2];
	unsigned long n, made = 0, failed = 0, absorbed = 0;
	int ret;

	/* The reference: the call succeeds at once. */
	sc->setup(&w);
	ctx_set("%s: reference call", sc->name);
	EXPECT_EQ((int64_t)sc->call(&w), 0);
	snapshot(&w, &ref);
	final_reports(&w, ref_bm, ref_c);
	world_teardown(&w);

	for (n = 1; n < 10000; n++) {
		sc->setup(&w);
		snapshot(&w, &before);
		alloc_fail_nth(n);
		ret = sc->call(&w);
		made = alloc_fail_nth(0);
		if (made < n) {
			/* Past the last allocation: nothing failed. */
			ctx_set("%s: %lu allocations, no injection", sc->name, made);
			EXPECT_EQ((int64_t)ret, 0);
			snapshot(&w, &after);
			expect_snap_equal(&after, &ref);
			world_teardown(&w);
			break;
		}
		if (ret) {
			failed++;
			ctx_set("%s: allocation %lu of %lu failed: return", sc->name, n, made);
			EXPECT_EQ((int64_t)ret, -ENOMEM);
			snapshot(&w, &after);
			ctx_set("%s: allocation %lu failed: the state must be unchanged", sc->name,
				n);
			expect_snap_equal(&after, &before);
			ctx_set("%s: allocation %lu failed: the call again, without injection",
				sc->name, n);
			EXPECT_EQ((int64_t)sc->call(&w), 0);
			snapshot(&w, &after);
			ctx_set("%s: allocation %lu failed, then the call succeeded: as if it "
				"never failed",
				sc->name, n);
			expect_snap_equal(&after, &ref);
			final_reports(&w, bm, c);
			for (int i = 0; i < 2; i++) {
				ctx_set("%s: allocation %lu failed, then success: report %d after",
					sc->name, n, i);
				EXPECT_EQ(bm[i], ref_bm[i]);
				expect_counts_equal(&c[i], &ref_c[i]);
			}
		} else {
			absorbed++;
			snapshot(&w, &after);
			ctx_set("%s: allocation %lu of %lu failed and was absorbed: no page lost",
				sc->name, n, made);
			expect_snap_superset(&after, &ref);
			/* A fallback to the whole mapping is reported once; then all is as usual. */
			final_reports(&w, bm, c);
			ctx_set("%s: allocation %lu absorbed: the report after the next", sc->name,
				n);
			EXPECT_EQ(bm[1], ref_bm[1]);
			expect_counts_equal(&c[1], &ref_c[1]);
		}
		world_teardown(&w);
	}
	ctx_set("%s: the loop ends", sc->name);
	EXPECT_TRUE(n < 10000);
	print_message("%-28s %lu allocations: %lu failed with ENOMEM, %lu absorbed\n", sc->name,
		      n - 1, failed, absorbed);
}

/* ---- the calls ------------------------------------------------------------------------------ */

static int call_map(struct world *w)
{
	return map(w->io, 52, 8);
}

static int call_attach(struct world *w, enum dt_device_kind kind)
{
	errno = 0;
	w->added = dt_device_attach(w->io, kind);
	if (w->added)
		return 0;
	ctx_set("attach returned NULL: errno");
	EXPECT_EQ(errno, ENOMEM);
	return -errno;
}

static int call_attach_emulated(struct world *w)
{
	return call_attach(w, DT_DEVICE_EMULATED);
}

static int call_attach_passthrough(struct world *w)
{
	return call_attach(w, DT_DEVICE_PASSTHROUGH);
}

/* 20 pages from A page 8 into B page 11: both mappings, the device's map must grow. */
static int call_pin_emulated(struct world *w)
{
	void *va[20];
	int ret = dt_pin_pages(w->emu, IOVA0 + 8 * PG, 20, PROT_READ, va);

	if (ret == 20) {
		ctx_set("pin: host address of page 10");
		EXPECT_EQ((uintptr_t)va[10], (uintptr_t)(ram + 18 * PG));
	}
	return ret == 20 ? 0 : ret;
}

/* A LOGGING device pins (never dirtying): only the pin maps change. */
static int call_pin_logging(struct world *w)
{
	int ret = dt_pin_pages(w->logdev, IOVA0 + 30 * PG, 2, PROT_READ, NULL);

	return ret == 2 ? 0 : ret;
}

/* The first pin of a PASSTHROUGH device: promotion marks every mapping whole, once. */
static int call_pin_passthrough_first(struct world *w)
{
	int ret = dt_pin_pages(w->pt, IOVA0 + 42 * PG, 4, PROT_READ | PROT_WRITE, NULL);

	return ret == 4 ? 0 : ret;
}

static int unmap_with_bitmap(struct world *w, uint64_t page, uint64_t npages)
{
	struct {
		struct vfio_iommu_type1_dma_unmap u;
		struct vfio_bitmap bm;
	} arg = {
		.u = {.argsz = sizeof(arg),
		      .flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
		      .iova = IOVA0 + page * PG,
		      .size = npages * PG},
		.bm = {.pgsize = PG, .size = sizeof(w->out), .data = (void *)&w->out},
	};
	int ret;

	w->out = 0;
	ret = dt_vfio_ioctl(w->io, VFIO_IOMMU_UNMAP_DMA, &arg);
	if (!ret)
		w->out_size = arg.u.size;
	return ret;
}

/* A and B, both with pins of a device that has an unmap callback. */
static int call_unmap_notes(struct world *w)
{
	return unmap_with_bitmap(w, 0, 32);
}

static void world_setup_unpinning_cb(struct world *w)
{
	world_setup(w);
	w->cb_unpins = true;
}

static int call_unmap_notes_plain(struct world *w)
{
	struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof(u), .iova = IOVA0, .size = 16 * PG};
	int ret = dt_vfio_ioctl(w->io, VFIO_IOMMU_UNMAP_DMA, &u);

	if (!ret)
		w->out_size = u.size;
	return ret;
}

static void test_fault_scenarios(void **state)
{
	static const struct scenario scenarios[] = {
		{"map", world_setup, call_map},
		{"map (whole scope)", world_setup_pt, call_map},
		{"attach emulated", world_setup, call_attach_emulated},
		{"attach passthrough", world_setup, call_attach_passthrough},
		{"pin emulated", world_setup, call_pin_emulated},
		{"pin logging", world_setup, call_pin_logging},
		{"pin passthrough (first)", world_setup_pt, call_pin_passthrough_first},
		{"unmap with notes", world_setup, call_unmap_notes},
		{"unmap, callback unpins", world_setup_unpinning_cb, call_unmap_notes},
		{"unmap with notes, no bitmap", world_setup, call_unmap_notes_plain},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		run_scenario(&scenarios[i]);
}

static void test_fault_iommu_new(void **state)
{
	struct dt_iommu *io;
	unsigned long made;

	(void)state;
	alloc_fail_nth(1);
	errno = 0;
	io = dt_iommu_new();
	made = alloc_fail_nth(0);
	ctx_set("dt_iommu_new with its first allocation failing");
	EXPECT_EQ((uintptr_t)io, 0);
	EXPECT_EQ(errno, ENOMEM);
	EXPECT_EQ(made, 1);
	io = dt_iommu_new();
	assert_non_null(io);
	dt_iommu_free(io);
}

/* ---- dt_dma_log: a failing chunk allocation falls back to the whole mapping ----------------- */

static uint64_t report(struct dt_iommu *io, struct dt_report_counts *c)
{
	uint64_t bm = 0;
	struct dt_report rep = {.size = sizeof(rep),
				.iova = IOVA0,
				.length = NPG * PG,
				.bitmap = &bm,
				.bitmap_size = sizeof(bm)};

	assert_int_equal(dt_iommu_report(io, &rep), 0);
	if (c)
		*c = rep.counts;
	return bm;
}

/*
 * dt_dma_log has no error for lack of memory: if marking needs an allocation and it fails,
 * the next report must still hold the page (the mapping reports whole, once); if marking
 * allocates nothing, the report is exact. Pages 14..17 span A (0..15) and B (16..31).
 */
static void test_fault_dma_log_never_loses(void **state)
{
	const uint64_t exact = 0xfull << 14;
	unsigned long n, made = 0;

	(void)state;
	for (n = 1; n < 100; n++) {
		struct dt_iommu *io = dt_iommu_new();
		struct dt_device *dev;
		struct dt_report_counts c;
		uint64_t bm, whole_a = 0xffffull, whole_b = 0xffffull << 16;
		int ret;

		assert_non_null(io);
		assert_int_equal(map(io, 0, 16), 0);
		assert_int_equal(map(io, 16, 16), 0);
		dev = dt_device_attach(io, DT_DEVICE_LOGGING);
		assert_non_null(dev);
		assert_int_equal(dt_iommu_dirty_start(io), 0);
		alloc_fail_nth(n);
		ret = dt_dma_log(dev, IOVA0 + 14 * PG + 100, 3 * PG);
		made = alloc_fail_nth(0);
		ctx_set("dt_dma_log with allocation %lu failing (%lu made)", n, made);
		EXPECT_EQ((int64_t)ret, 0);
		bm = report(io, &c);
		ctx_set("the report after dt_dma_log with allocation %lu failing (%lu made)", n,
			made);
		EXPECT_EQ(bm & exact, exact);
		EXPECT_EQ(c.logged, 4);
		/* More than exact only as whole mappings. */
		EXPECT_TRUE((bm & ~exact & whole_a) == 0 || (bm & whole_a) == whole_a);
		EXPECT_TRUE((bm & ~exact & whole_b) == 0 || (bm & whole_b) == whole_b);
		EXPECT_EQ(bm & ~(whole_a | whole_b), 0);
		if (made < n)
			EXPECT_EQ(bm, exact);
		ctx_set("the report after that (allocation %lu failed before)", n);
		EXPECT_EQ(report(io, &c), 0);
		EXPECT_EQ(c.total, 0);
		assert_int_equal(dt_dma_log(dev, IOVA0 + 3 * PG, 1), 0);
		ctx_set("a log after the failure (allocation %lu)", n);
		EXPECT_EQ(report(io, &c), 1ull << 3);
		dt_iommu_free(io);
		if (made < n)
			break;
	}
	print_message("%-28s %lu allocations\n", "dt_dma_log", n - 1);
}

/* ---- device DMA logging ---------------------------------------------------------------------- */

struct feature_buf {
	struct vfio_device_feature f;
	union {
		struct vfio_device_feature_dma_logging_control ctl;
		struct vfio_device_feature_dma_logging_report rep;
	};
};

static int log_start(struct dt_device *dev, struct vfio_device_feature_dma_logging_range *r,
		     uint32_t n)
{
	struct feature_buf b = {
		.f = {.argsz = sizeof(b),
		      .flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START},
		.ctl = {.page_size = PG, .num_ranges = n, .ranges = (uint64_t)(uintptr_t)r},
	};

	return dt_device_ioctl(dev, VFIO_DEVICE_FEATURE, &b);
}

static int log_report(struct dt_device *dev, uint64_t *bm)
{
	struct feature_buf b = {
		.f = {.argsz = sizeof(b),
		      .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT},
		.rep = {.iova = IOVA0,
			.length = NPG * PG,
			.page_size = PG,
			.bitmap = (uint64_t)(uintptr_t)bm},
	};

	*bm = 0;
	return dt_device_ioctl(dev, VFIO_DEVICE_FEATURE, &b);
}

static void test_fault_dma_logging_start(void **state)
{
	struct vfio_device_feature_dma_logging_range ranges[3] = {
		{IOVA0 + 40 * PG, 8 * PG}, {IOVA0, 16 * PG}, {IOVA0 + 16 * PG, 4 * PG}};
	const uint64_t want = (1ull << 2) | (0x7ull << 15) | (1ull << 19) | (1ull << 44);
	unsigned long n, made = 0, failed = 0;

	(void)state;
	for (n = 1; n < 1000; n++) {
		struct dt_iommu *io = dt_iommu_new();
		struct dt_device *dev;
		uint64_t bm;
		int ret;

		assert_non_null(io);
		assert_int_equal(map(io, 0, 32), 0);
		assert_int_equal(map(io, 40, 8), 0);
		dev = dt_device_attach(io, DT_DEVICE_LOGGING);
		assert_non_null(dev);
		alloc_fail_nth(n);
		ret = log_start(dev, ranges, 3);
		made = alloc_fail_nth(0);
		if (made >= n) {
			failed++;
			ctx_set("DMA_LOGGING_START with allocation %lu of %lu failing", n, made);
			EXPECT_EQ((int64_t)ret, -ENOMEM);
			ctx_set("DMA_LOGGING_REPORT after a failed START (allocation %lu)", n);
			EXPECT_EQ((int64_t)log_report(dev, &bm), -EINVAL);
			ret = log_start(dev, ranges, 3);
		}
		ctx_set("DMA_LOGGING_START without injection (after allocation %lu failed)", n);
		EXPECT_EQ((int64_t)ret, 0);
		assert_int_equal(dt_dma_log(dev, IOVA0 + 2 * PG, 1), 0);
		assert_int_equal(dt_dma_log(dev, IOVA0 + 15 * PG + 8, 2 * PG), 0); /* 15..17 */
		assert_int_equal(dt_dma_log(dev, IOVA0 + 19 * PG, PG), 0);
		assert_int_equal(dt_dma_log(dev, IOVA0 + 22 * PG, PG), 0); /* not logged range */
		assert_int_equal(dt_dma_log(dev, IOVA0 + 44 * PG, PG), 0);
		ctx_set("DMA_LOGGING_REPORT after START (allocation %lu failed before)", n);
		EXPECT_EQ((int64_t)log_report(dev, &bm), 0);
		EXPECT_EQ(bm, want);
		EXPECT_EQ((int64_t)log_report(dev, &bm), 0);
		EXPECT_EQ(bm, 0);
		dt_iommu_free(io);
		if (made < n)
			break;
	}
	print_message("%-28s %lu allocations failed with ENOMEM\n", "DMA_LOGGING_START", failed);
	ctx_set("DMA_LOGGING_START: the loop ends and some allocation failed");
	EXPECT_TRUE(n < 1000 && failed > 0);
}

/* Marking with device DMA logging on: a failed allocation inside dt_dma_log must show in
 * the next DMA_LOGGING_REPORT (the page, or ENOMEM: treat everything as dirty). */
static void test_fault_dma_logging_mark(void **state)
{
	struct vfio_device_feature_dma_logging_range r = {IOVA0, 16 * PG};
	unsigned long n, made = 0;

	(void)state;
	for (n = 1; n < 100; n++) {
		struct dt_iommu *io = dt_iommu_new();
		struct dt_device *dev;
		uint64_t bm;
		int ret;

		assert_non_null(io);
		assert_int_equal(map(io, 0, 16), 0);
		dev = dt_device_attach(io, DT_DEVICE_LOGGING);
		assert_non_null(dev);
		assert_int_equal(dt_iommu_dirty_start(io), 0);
		assert_int_equal(log_start(dev, &r, 1), 0);
		alloc_fail_nth(n);
		ret = dt_dma_log(dev, IOVA0 + 5 * PG, 1);
		made = alloc_fail_nth(0);
		ctx_set("dt_dma_log with DMA logging on, allocation %lu failing (%lu made)", n,
			made);
		EXPECT_EQ((int64_t)ret, 0);
		ctx_set("the container report after allocation %lu failed", n);
		EXPECT_EQ(report(io, NULL) & (1ull << 5), 1ull << 5);
		ret = log_report(dev, &bm);
		ctx_set("DMA_LOGGING_REPORT after allocation %lu failed: ENOMEM or the page", n);
		EXPECT_TRUE(ret == -ENOMEM || (ret == 0 && (bm & (1ull << 5))));
		if (made < n)
			EXPECT_TRUE(ret == 0 && bm == 1ull << 5);
		ctx_set("DMA_LOGGING_REPORT after that");
		EXPECT_EQ((int64_t)log_report(dev, &bm), 0);
		assert_int_equal(dt_dma_log(dev, IOVA0 + 6 * PG, 1), 0);
		EXPECT_EQ((int64_t)log_report(dev, &bm), 0);
		EXPECT_EQ(bm, 1ull << 6);
		dt_iommu_free(io);
		if (made < n)
			break;
	}
}

/* ---- system call failure ---------------------------------------------------------------------- */

static void test_fault_map_vaddr_check(void **state)
{
	struct dt_iommu *io = dt_iommu_new();
	struct dt_iommu_stats st;
	uint8_t *gone;

	(void)state;
	assert_non_null(io);
	sys_fail_nth(1);
	ctx_set("MAP_DMA with the vaddr check failing");
	EXPECT_EQ((int64_t)map(io, 0, 16), -EFAULT);
	sys_fail_nth(0);
	assert_int_equal(dt_iommu_get_stats(io, &st), 0);
	ctx_set("mappings after a failed MAP_DMA");
	EXPECT_EQ(st.mappings, 0);
	EXPECT_EQ(st.mapped_bytes, 0);
	ctx_set("MAP_DMA again without injection");
	EXPECT_EQ((int64_t)map(io, 0, 16), 0);
	/* A vaddr that really is not mapped. */
	gone = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(gone != MAP_FAILED);
	munmap(gone, 4 * PG);
	{
		struct vfio_iommu_type1_dma_map m = {
			.argsz = sizeof(m),
			.flags = VFIO_DMA_MAP_FLAG_READ,
			.vaddr = (uint64_t)(uintptr_t)gone,
			.iova = IOVA0 + 32 * PG,
			.size = 4 * PG,
		};

		ctx_set("MAP_DMA of an unmapped vaddr");
		EXPECT_EQ((int64_t)dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &m), -EFAULT);
	}
	assert_int_equal(dt_iommu_get_stats(io, &st), 0);
	ctx_set("mappings after MAP_DMA of an unmapped vaddr");
	EXPECT_EQ(st.mappings, 1);
	dt_iommu_free(io);
}

/* ---- the core structures ------------------------------------------------------------------------ */

static void test_fault_core(void **state)
{
	struct sbitmap b;
	struct u64map m;
	unsigned long made;

	(void)state;
	/* sbm_init: every allocation in turn; a failed init leaves nothing to free. */
	for (unsigned long n = 1;; n++) {
		int ret;

		alloc_fail_nth(n);
		ret = sbm_init(&b, 300000);
		made = alloc_fail_nth(0);
		if (made < n) {
			assert_int_equal(ret, 0);
			sbm_set_range(&b, 5, 70000);
			ctx_set("sbm_init without injection, then a set");
			EXPECT_EQ(sbm_count(&b), 70000);
			sbm_destroy(&b);
			break;
		}
		ctx_set("sbm_init with allocation %lu failing", n);
		EXPECT_EQ((int64_t)ret, -ENOMEM);
		sbm_destroy(&b); /* must be safe after a failed init */
	}
	/* Marking never allocates. */
	assert_int_equal(sbm_init(&b, 300000), 0);
	alloc_fail_nth(1);
	sbm_set_range(&b, 100, 200000);
	made = alloc_fail_nth(0);
	ctx_set("allocations made by sbm_set_range");
	EXPECT_EQ(made, 0);
	EXPECT_EQ(sbm_count(&b), 200000);
	sbm_destroy(&b);

	/* u64map: a failed grow leaves the map as it was. */
	u64map_init(&m);
	for (uint64_t k = 0; k < 8; k++)
		*u64map_get(&m, k * 1000) = k + 1;
	alloc_fail_nth(1);
	ctx_set("u64map_get of a new key when the map must grow and cannot");
	EXPECT_EQ((uintptr_t)u64map_get(&m, 8000), 0);
	EXPECT_EQ(m.count, 8);
	alloc_fail_nth(1);
	ctx_set("u64map_reserve failing");
	EXPECT_EQ((int64_t)u64map_reserve(&m, 100), -ENOMEM);
	alloc_fail_nth(0);
	for (uint64_t k = 0; k < 8; k++) {
		uint64_t *v = u64map_find(&m, k * 1000);

		ctx_set("u64map key %" PRIu64 " after failed grows", k * 1000);
		EXPECT_TRUE(v && *v == k + 1);
	}
	ctx_set("u64map_get of an existing key needs no memory");
	alloc_fail_nth(1);
	EXPECT_TRUE(u64map_get(&m, 3000) != NULL);
	alloc_fail_nth(0);
	u64map_destroy(&m);
}

static int group_setup(void **state)
{
	(void)state;
	ram = mmap(NULL, NPG * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return ram == MAP_FAILED ? -1 : 0;
}

static int group_teardown(void **state)
{
	(void)state;
	munmap(ram, NPG * PG);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_iommu_new),
		cmocka_unit_test(test_fault_scenarios),
		cmocka_unit_test(test_fault_dma_log_never_loses),
		cmocka_unit_test(test_fault_dma_logging_start),
		cmocka_unit_test(test_fault_dma_logging_mark),
		cmocka_unit_test(test_fault_map_vaddr_check),
		cmocka_unit_test(test_fault_core),
	};

	test_seed_init(argc, argv);
	return cmocka_run_group_tests_name("fault", tests, group_setup, group_teardown);
}
