/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_server_dma.c - the server's DMA space and dirty reports:
 * DMA_MAP / DMA_UNMAP with memfds (the device sees the client's memory; overlap, alignment,
 * flags, short files, limits, UNMAP_ALL, the dma_map / dma_unmap callbacks and a refusing
 * dma_map), DMA_LOGGING_REPORT with exact bits at 4 KiB, 2 KiB, 8 KiB and 2 MiB over a range
 * spanning two DMA regions, read-and-clear (a second report has only the new writes), a
 * sub-range that cuts mappings (the rest is kept for later), pinned pages in every report,
 * every refusal (leaving the dirty state alone), the bitmap size limit negotiated exactly,
 * DMA_UNMAP with a dirty bitmap, message mappings reached with DMA_READ / DMA_WRITE (split
 * at the client's transfer size, tracked, queued commands, the client's error), and a
 * randomized comparison of reports against a naive model (seed printed; VFU_SEED=n replays).
 */
#include "vfu_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define KB 1024ull
#define MB (1024ull * KB)
#define PG 4096ull

static struct test_srv T;

static int teardown(void **state)
{
	srv_free(&T);
	return 0;
}

static int logging_start(const struct vfu_dma_logging_range *r, uint32_t n, uint64_t page_size)
{
	uint8_t buf[16 + 16 * 8];
	struct vfu_dma_logging_control ctl = {.page_size = page_size, .num_ranges = n};

	assert_true(n <= 8);
	memcpy(buf, &ctl, sizeof(ctl));
	memcpy(buf + sizeof(ctl), r, n * sizeof(*r));
	return srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START,
			   (uint32_t)(8 + sizeof(ctl) + n * sizeof(*r)), buf,
			   sizeof(ctl) + n * sizeof(*r));
}

/* DMA_LOGGING_REPORT; on success *bitmap points at the reply's bitmap. */
static int report(uint64_t iova, uint64_t length, uint64_t page_size, const uint8_t **bitmap)
{
	struct vfu_dma_logging_report rep = {
		.iova = iova, .length = length, .page_size = page_size};
	uint64_t nbits = page_size ? length / page_size : 0, bytes = (nbits + 63) / 64 * 8;
	int r = srv_feature(&T, VFU_FEATURE_GET | VFU_FEATURE_DMA_LOGGING_REPORT,
			    (uint32_t)(8 + 24 + bytes), &rep, sizeof(rep));

	if (r)
		return r;
	assert_int_equal(T.reply.len, 8 + 24 + bytes);
	assert_memory_equal(T.reply.payload + 8, &rep, sizeof(rep));
	*bitmap = T.reply.payload + 8 + 24;
	return 0;
}

static bool bit(const uint8_t *bm, uint64_t n)
{
	return bm[n / 8] & (1u << (n % 8));
}

/* ---- the naive model: a set of dirty 4 KiB pages over [base, base + size) ---------------- */

#define M_BASE	(2 * MB)
#define M_SIZE	(4 * MB) /* two mappings of 2 MiB: [2 MiB, 4 MiB) and [4 MiB, 6 MiB) */
#define M_PAGES (M_SIZE / PG)

static bool model[M_PAGES];

static void model_write(uint64_t iova, uint64_t len)
{
	for (uint64_t p = iova / PG; p <= (iova + len - 1) / PG; p++)
		model[p - M_BASE / PG] = true;
}

/* Check a report's bitmap against the model, then clear the pages wholly inside. */
static void model_check(uint64_t iova, uint64_t length, uint64_t ps, const uint8_t *bm)
{
	for (uint64_t n = 0; n < length / ps; n++) {
		uint64_t lo = iova + n * ps, hi = lo + ps;
		bool want = false;

		for (uint64_t p = lo / PG * PG; p < hi; p += PG)
			want |= model[p / PG - M_BASE / PG];
		if (want != bit(bm, n))
			fail_msg(
				"report [0x%llx, +0x%llx) at %llu: bit %llu (0x%llx) is %d, want %d",
				(unsigned long long)iova, (unsigned long long)length,
				(unsigned long long)ps, (unsigned long long)n,
				(unsigned long long)lo, bit(bm, n), want);
	}
	/* Bits past the range are zero. */
	for (uint64_t n = length / ps; n % 64; n++)
		assert_false(bit(bm, n));
	for (uint64_t p = (iova + PG - 1) / PG * PG; p + PG <= iova + length; p += PG)
		model[p / PG - M_BASE / PG] = false;
}

/* Two memfd mappings over the model's range, logging on over all of it. */
static void *two_regions(int *fds)
{
	void *va[2];

	fds[0] = memfd_new(2 * MB, &va[0]);
	fds[1] = memfd_new(2 * MB, &va[1]);
	assert_int_equal(srv_dma_map(&T, M_BASE, 2 * MB, fds[0], 0, 3), 0);
	assert_int_equal(srv_dma_map(&T, M_BASE + 2 * MB, 2 * MB, fds[1], 0, 3), 0);
	munmap(va[1], 2 * MB);
	memset(model, 0, sizeof(model));
	return va[0];
}

static void start_server(enum dt_device_kind kind)
{
	struct dt_vfu_server_opts o;

	srv_default_opts(&T, &o);
	o.dma_kind = kind;
	srv_start(&T, &o);
	srv_negotiate(&T);
}

/* The device writes len bytes at iova: through dt_dma_rw (even n) or dt_dma_log (odd). */
static void dev_write(uint64_t iova, uint64_t len, unsigned n)
{
	struct dt_device *dev = dt_vfu_server_device(T.s);
	static uint8_t junk[64 * 1024];

	if (n % 2 && len <= sizeof(junk))
		assert_int_equal(dt_dma_rw(dev, iova, junk, len, true), 0);
	else
		assert_int_equal(dt_dma_log(dev, iova, len), 0);
	model_write(iova, len);
}

/* ---- tests ------------------------------------------------------------------------------ */

static int maps_seen, unmaps_seen, refuse_map;
static void *last_host;

static int cb_dma_map(void *opaque, uint64_t iova, uint64_t size, void *host, uint32_t prot)
{
	if (refuse_map)
		return -ENOMEM;
	maps_seen++;
	last_host = host;
	return 0;
}

static void cb_dma_unmap(void *opaque, uint64_t iova, uint64_t size)
{
	unmaps_seen++;
}

static uint64_t mappings(void)
{
	struct dt_iommu_stats st;

	assert_int_equal(dt_iommu_get_stats(dt_vfu_server_iommu(T.s), &st), 0);
	return st.mappings;
}

static void test_map_unmap(void **state)
{
	struct dt_vfu_server_opts o;
	struct dt_vfu_server_ops ops;
	struct vfu_dma_unmap u;
	uint8_t *va, buf[16];
	int fd = memfd_new(64 * KB, (void **)&va);
	int small = memfd_new(4 * KB, NULL);

	srv_default_opts(&T, &o);
	ops = *o.ops;
	ops.dma_map = cb_dma_map;
	ops.dma_unmap = cb_dma_unmap;
	o.ops = &ops;
	o.max_dma_maps = 3;
	maps_seen = unmaps_seen = refuse_map = 0;
	srv_start(&T, &o);
	srv_negotiate(&T);

	assert_int_equal(srv_dma_map(&T, 1 * MB, 32 * KB, fd, 16 * KB, 3), 0);
	assert_int_equal(maps_seen, 1);
	assert_non_null(last_host);
	/* The device reaches the client's memory at the offset. */
	memcpy(va + 16 * KB + 100, "client", 6);
	assert_int_equal(dt_dma_rw(dt_vfu_server_device(T.s), 1 * MB + 100, buf, 6, false), 0);
	assert_memory_equal(buf, "client", 6);
	assert_int_equal(dt_vfu_dma_rw(T.s, 1 * MB + 200, "server", 6, true), 0);
	assert_memory_equal(va + 16 * KB + 200, "server", 6);
	assert_memory_equal((uint8_t *)last_host + 200, "server", 6);

	/* Refusals, none of which maps anything. */
	assert_int_equal(srv_dma_map(&T, 1 * MB + 16 * KB, 32 * KB, fd, 0, 3), -EEXIST);
	assert_int_equal(srv_dma_map(&T, 1 * MB - 4 * KB, 8 * KB, fd, 0, 3), -EEXIST);
	assert_int_equal(srv_dma_map(&T, 2 * MB + 1, 4 * KB, fd, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB + 1, fd, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 0, fd, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, UINT64_MAX - 4095, 8 * KB, fd, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, fd, 0, 0), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, fd, 0, 4), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, fd, 100, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 8 * KB, small, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, small, 4 * KB, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, -1, 4 * KB, 3), -EINVAL);
	refuse_map = 1;
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, fd, 0, 3), -ENOMEM);
	refuse_map = 0;
	assert_int_equal(mappings(), 1);
	assert_int_equal(maps_seen, 1);
	assert_int_equal(dt_dma_log(dt_vfu_server_device(T.s), 2 * MB, 1), -EINVAL);

	/* Read-only and message mappings; then the limit of 3. */
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, small, 0, VFU_DMA_MAP_F_READ), 0);
	assert_int_equal(dt_vfu_dma_rw(T.s, 2 * MB, buf, 4, true), -EPERM);
	assert_int_equal(srv_dma_map(&T, 3 * MB, 4 * KB, -1, 0, 3), 0);
	assert_null(last_host);
	assert_int_equal(srv_dma_map(&T, 4 * MB, 4 * KB, -1, 0, 3), -E2BIG);
	assert_int_equal(mappings(), 3);

	/* DMA_UNMAP must match a mapping exactly. */
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 16 * KB, 0), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB + 4 * KB, 28 * KB, 0), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 64 * KB, 0), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 5 * MB, 4 * KB, 0), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 32 * KB, 4), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 32 * KB, 3), -EINVAL);
	assert_int_equal(unmaps_seen, 0);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 32 * KB, 0), 0);
	assert_int_equal(unmaps_seen, 1);
	/* The reply is the entry. */
	assert_int_equal(T.reply.len, sizeof(u));
	memcpy(&u, T.reply.payload, sizeof(u));
	assert_int_equal(u.argsz, sizeof(u));
	assert_int_equal(u.addr, 1 * MB);
	assert_int_equal(u.size, 32 * KB);
	assert_int_equal(dt_dma_rw(dt_vfu_server_device(T.s), 1 * MB + 100, buf, 6, false),
			 -EINVAL);
	assert_int_equal(mappings(), 2);
	/* UNMAP_ALL: with a range it is refused; without, everything goes. */
	assert_int_equal(srv_dma_unmap(&T, 2 * MB, 0, VFU_DMA_UNMAP_F_ALL), -EINVAL);
	assert_int_equal(mappings(), 2);
	assert_int_equal(srv_dma_unmap(&T, 0, 0, VFU_DMA_UNMAP_F_ALL), 0);
	assert_int_equal(mappings(), 0);
	assert_int_equal(unmaps_seen, 3);
	/* Mapped again after, and dropped when the client goes. */
	assert_int_equal(srv_dma_map(&T, 1 * MB, 32 * KB, fd, 0, 3), 0);
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(mappings(), 0);
	assert_int_equal(unmaps_seen, 4);
	munmap(va, 64 * KB);
	close(fd);
	close(small);
}

static const uint64_t page_sizes[] = {4 * KB, 2 * KB, 8 * KB, 2 * MB};

static void test_report_exact(void **state)
{
	struct vfu_dma_logging_range all = {.iova = M_BASE, .length = M_SIZE};
	struct vfu_dma_logging_control ctl;
	const uint8_t *bm;
	int fds[2];

	start_server(DT_DEVICE_LOGGING);
	two_regions(fds);
	assert_int_equal(logging_start(&all, 1, 4 * KB), 0);
	memcpy(&ctl, T.reply.payload + 8, sizeof(ctl));
	assert_int_equal(ctl.page_size, 4 * KB);
	assert_true(dt_iommu_dirty_tracking(dt_vfu_server_iommu(T.s)));

	for (size_t k = 0; k < sizeof(page_sizes) / sizeof(page_sizes[0]); k++) {
		uint64_t ps = page_sizes[k];

		/* Writes in both regions, one across their border, one 2-byte write over a
		 * page boundary. */
		dev_write(M_BASE, 1, 0);
		dev_write(M_BASE + 5 * PG + 100, 3 * PG, 1);
		dev_write(M_BASE + 2 * MB - 2 * PG, 4 * PG, 2);
		dev_write(M_BASE + 2 * MB + 77 * PG - 1, 2, 3);
		dev_write(M_BASE + M_SIZE - 1, 1, 4);
		assert_int_equal(report(M_BASE, M_SIZE, ps, &bm), 0);
		model_check(M_BASE, M_SIZE, ps, bm);
		/* Spot checks of the model itself at 4 KiB. */
		if (ps == 4 * KB) {
			assert_true(bit(bm, 0));
			assert_false(bit(bm, 1));
			assert_true(bit(bm, 5) && bit(bm, 8));
			assert_false(bit(bm, 9));
			assert_true(bit(bm, 510) && bit(bm, 511) && bit(bm, 512) && bit(bm, 513));
			assert_true(bit(bm, 512 + 76) && bit(bm, 512 + 77));
			assert_true(bit(bm, 1023));
		}
		if (ps == 2 * MB) {
			assert_int_equal(bm[0], 3);
		}
		/* A second report has nothing; a new write is all it has. */
		assert_int_equal(report(M_BASE, M_SIZE, ps, &bm), 0);
		model_check(M_BASE, M_SIZE, ps, bm);
		for (uint64_t i = 0; i < M_SIZE / ps / 8; i++)
			assert_int_equal(bm[i], 0);
		dev_write(M_BASE + 2 * MB + 3 * PG, 1, 1);
		assert_int_equal(report(M_BASE, M_SIZE, ps, &bm), 0);
		model_check(M_BASE, M_SIZE, ps, bm);
	}
	close(fds[0]);
	close(fds[1]);
}

static void test_report_subrange(void **state)
{
	struct vfu_dma_logging_range r[2] = {{.iova = M_BASE + 2 * MB, .length = 2 * MB},
					     {.iova = M_BASE, .length = 2 * MB}};
	const uint8_t *bm;
	int fds[2];

	start_server(DT_DEVICE_LOGGING);
	two_regions(fds);
	/* Two adjacent logged ranges, given out of order, make one. */
	assert_int_equal(logging_start(r, 2, 64 * KB), 0);
	dev_write(M_BASE + 10 * PG, 30 * PG, 0);
	dev_write(M_BASE + 2 * MB - PG, 2 * PG, 1);
	/* A range that cuts both mappings: only its pages, the rest is kept. */
	assert_int_equal(report(M_BASE + 16 * PG, 2 * MB, 4 * KB, &bm), 0);
	model_check(M_BASE + 16 * PG, 2 * MB, 4 * KB, bm);
	assert_true(bit(bm, 0));
	assert_false(bit(bm, 30 - 6));
	/* 2 KiB pages, a range not aligned to 4 KiB: the half page stays dirty. */
	assert_int_equal(report(M_BASE + 12 * PG + 2048, 2048 * 3, 2 * KB, &bm), 0);
	model_check(M_BASE + 12 * PG + 2048, 2048 * 3, 2 * KB, bm);
	assert_int_equal(bm[0], 7);
	assert_int_equal(report(M_BASE, M_SIZE, 4 * KB, &bm), 0);
	model_check(M_BASE, M_SIZE, 4 * KB, bm);
	/* Pages 10..11 and 12 (half reported), 13 reported, 14..15 kept. */
	assert_true(bit(bm, 10) && bit(bm, 11) && bit(bm, 12) && bit(bm, 14) && bit(bm, 15));
	assert_false(bit(bm, 13));
	assert_false(bit(bm, 16));
	close(fds[0]);
	close(fds[1]);
}

static void test_report_pinned(void **state)
{
	struct vfu_dma_logging_range all = {.iova = M_BASE, .length = M_SIZE};
	struct dt_device *dev;
	const uint8_t *bm;
	int fds[2];

	start_server(DT_DEVICE_EMULATED);
	two_regions(fds);
	dev = dt_vfu_server_device(T.s);
	assert_int_equal(dt_pin_pages(dev, M_BASE + 2 * MB - PG, 2, 3, NULL), 2);
	assert_int_equal(logging_start(&all, 1, 4 * KB), 0);
	/* Still-pinned pages are in every report. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(report(M_BASE, M_SIZE, 4 * KB, &bm), 0);
		assert_int_equal(bm[63], 0x80);
		assert_int_equal(bm[64], 0x01);
		assert_int_equal(bm[0], 0);
	}
	/* Unpinned: once more, then gone. */
	assert_int_equal(dt_unpin_pages(dev, M_BASE + 2 * MB - PG, 2), 2);
	assert_int_equal(report(M_BASE, M_SIZE, 2 * MB, &bm), 0);
	assert_int_equal(bm[0], 3);
	assert_int_equal(report(M_BASE, M_SIZE, 2 * MB, &bm), 0);
	assert_int_equal(bm[0], 0);
	close(fds[0]);
	close(fds[1]);
}

/* A PASSTHROUGH device that never pinned: every page of every mapping, every report; holes
 * never. After its first pin: the pinned scope. */
static void test_report_passthrough(void **state)
{
	struct vfu_dma_logging_range all = {.iova = 0, .length = 0};
	const uint8_t *bm;
	int fds[3];

	start_server(DT_DEVICE_PASSTHROUGH);
	two_regions(fds);
	fds[2] = memfd_new(2 * MB, NULL);
	/* A third mapping after a 2 MiB hole. */
	assert_int_equal(srv_dma_map(&T, M_BASE + M_SIZE + 2 * MB, 2 * MB, fds[2], 0, 3), 0);
	assert_int_equal(logging_start(&all, 0, PG), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(report(M_BASE, M_SIZE + 4 * MB, 2 * MB, &bm), 0);
		assert_int_equal(bm[0], 0x0b); /* mappings 0, 1 and 3; the hole (2) clean */
	}
	assert_int_equal(report(M_BASE + M_SIZE, 2 * MB, PG, &bm), 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(bm[i], 0);
	assert_int_equal(dt_pin_pages(dt_vfu_server_device(T.s), M_BASE, 1, 3, NULL), 1);
	/* The promotion marks everything once more, then only the pinned page. */
	assert_int_equal(report(M_BASE, M_SIZE + 4 * MB, 2 * MB, &bm), 0);
	assert_int_equal(bm[0], 0x0b);
	assert_int_equal(report(M_BASE, 2 * MB, PG, &bm), 0);
	assert_int_equal(bm[0], 0x01);
	for (int i = 1; i < 64; i++)
		assert_int_equal(bm[i], 0);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

static void test_report_refused(void **state)
{
	struct vfu_dma_logging_range r = {.iova = M_BASE, .length = 2 * MB};
	struct vfu_dma_logging_report rep = {.iova = M_BASE, .length = 64 * PG, .page_size = PG};
	const uint8_t *bm;
	int fds[2];

	start_server(DT_DEVICE_LOGGING);
	two_regions(fds);
	assert_int_equal(report(M_BASE, 2 * MB, PG, &bm), -EINVAL); /* logging off */
	/* START refusals leave logging off. */
	struct vfu_dma_logging_range bad[2] = {{M_BASE, 2 * PG}, {M_BASE + PG, 2 * PG}};

	assert_int_equal(logging_start(bad, 2, PG), -EINVAL);
	bad[0] = (struct vfu_dma_logging_range){M_BASE + 1, PG};
	assert_int_equal(logging_start(bad, 1, PG), -EINVAL);
	bad[0] = (struct vfu_dma_logging_range){M_BASE, 0};
	assert_int_equal(logging_start(bad, 1, PG), -EINVAL);
	bad[0] = (struct vfu_dma_logging_range){UINT64_MAX - PG + 1, 2 * PG};
	assert_int_equal(logging_start(bad, 1, PG), -EINVAL);
	assert_int_equal(logging_start(&r, 1, 3000), -EINVAL);
	assert_false(dt_iommu_dirty_tracking(dt_vfu_server_iommu(T.s)));
	/* A hint below 4 KiB gets 4 KiB back; a second START is refused. */
	assert_int_equal(logging_start(&r, 1, 512), 0);
	struct vfu_dma_logging_control ctl;

	memcpy(&ctl, T.reply.payload + 8, sizeof(ctl));
	assert_int_equal(ctl.page_size, PG);
	assert_int_equal(logging_start(&r, 1, PG), -EBUSY);

	dev_write(M_BASE, 64 * PG, 0);
	assert_int_equal(report(M_BASE, 64 * PG, 3 * KB, &bm), -EINVAL);
	assert_int_equal(report(M_BASE, 64 * PG, 0, &bm), -EINVAL);
	assert_int_equal(report(M_BASE + 2 * KB, 64 * PG, PG, &bm), -EINVAL);
	assert_int_equal(report(M_BASE, 64 * PG + 2 * KB, PG, &bm), -EINVAL);
	assert_int_equal(report(M_BASE, 0, PG, &bm), -EINVAL);
	assert_int_equal(report(M_BASE + MB, 2 * MB, PG, &bm), -EINVAL); /* not all logged */
	assert_int_equal(report(M_BASE + 2 * MB, PG, PG, &bm), -EINVAL);
	/* argsz too small; SET instead of GET; GET and SET. */
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | VFU_FEATURE_DMA_LOGGING_REPORT,
				     8 + 24 + 7, &rep, sizeof(rep)),
			 -EINVAL);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_REPORT,
				     8 + 24 + 8, &rep, sizeof(rep)),
			 -EINVAL);
	assert_int_equal(
		srv_feature(&T, VFU_FEATURE_GET | VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_REPORT,
			    8 + 24 + 8, &rep, sizeof(rep)),
		-EINVAL);
	/* None of that cleared anything. */
	assert_int_equal(report(M_BASE, 2 * MB, PG, &bm), 0);
	model_check(M_BASE, 2 * MB, PG, bm);
	assert_int_equal(bm[0], 0xff);
	assert_int_equal(bm[7], 0xff);
	assert_int_equal(bm[8], 0);
	/* PROBE answers with the request. */
	assert_int_equal(
		srv_feature(&T,
			    VFU_FEATURE_PROBE | VFU_FEATURE_GET | VFU_FEATURE_DMA_LOGGING_REPORT, 8,
			    NULL, 0),
		0);
	assert_int_equal(
		srv_feature(&T,
			    VFU_FEATURE_PROBE | VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_REPORT, 8,
			    NULL, 0),
		-EINVAL);
	/* STOP drops everything; twice is fine; REPORT then refused. */
	dev_write(M_BASE, PG, 0);
	assert_int_equal(
		srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_STOP, 8, NULL, 0), 0);
	assert_int_equal(
		srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_STOP, 8, NULL, 0), 0);
	assert_int_equal(report(M_BASE, 2 * MB, PG, &bm), -EINVAL);
	assert_false(dt_iommu_dirty_tracking(dt_vfu_server_iommu(T.s)));
	close(fds[0]);
	close(fds[1]);
}

static void test_report_bitmap_limit(void **state)
{
	struct vfu_dma_logging_range all = {.iova = 0, .length = 0};
	const uint8_t *bm;
	int fds[2];

	srv_start(&T, NULL);
	/* The client takes bitmaps of at most 64 bytes: 512 bits. */
	assert_int_equal(srv_version(&T, "{\"capabilities\":{\"max_msg_fds\":8,\"migration\":"
					 "{\"pgsize\":4096,\"max_bitmap_size\":64}}}"),
			 0);
	two_regions(fds);
	assert_int_equal(logging_start(&all, 0, PG), 0); /* no ranges: everything */
	dev_write(M_BASE + 511 * PG, PG, 0);
	dev_write(M_BASE + 512 * PG, PG, 0);
	assert_int_equal(report(M_BASE, 513 * PG, PG, &bm), -EINVAL);
	assert_int_equal(report(M_BASE, 512 * PG, PG, &bm), 0);
	model_check(M_BASE, 512 * PG, PG, bm);
	assert_int_equal(bm[63], 0x80);
	/* 2 KiB pages: 512 bits are 1 MiB. */
	assert_int_equal(report(M_BASE + 512 * PG, MB + 2 * KB, 2 * KB, &bm), -EINVAL);
	assert_int_equal(report(M_BASE + 512 * PG, MB, 2 * KB, &bm), 0);
	assert_int_equal(bm[0], 3);
	close(fds[0]);
	close(fds[1]);
}

static int unmap_bitmap(uint64_t iova, uint64_t size, uint64_t pgsize, uint64_t bmsize,
			uint32_t argsz_less, const uint8_t **bm)
{
	uint8_t buf[64];
	struct vfu_dma_unmap u = {.argsz = (uint32_t)(24 + 16 + bmsize - argsz_less),
				  .flags = VFU_DMA_UNMAP_F_GET_DIRTY_BITMAP,
				  .addr = iova,
				  .size = size};
	struct vfu_bitmap b = {.pgsize = pgsize, .size = bmsize};
	int r;

	memcpy(buf, &u, sizeof(u));
	memcpy(buf + sizeof(u), &b, sizeof(b));
	r = srv_call(&T, VFU_CMD_DMA_UNMAP, buf, sizeof(u) + sizeof(b), NULL, 0);
	if (r)
		return r;
	assert_int_equal(T.reply.len, 24 + 16 + bmsize);
	memcpy(&u, T.reply.payload, sizeof(u));
	assert_int_equal(u.argsz, 24 + 16 + bmsize);
	assert_int_equal(u.addr, iova);
	assert_memory_equal(T.reply.payload + 24, &b, sizeof(b));
	*bm = T.reply.payload + 40;
	return 0;
}

static void test_unmap_bitmap(void **state)
{
	struct vfu_dma_logging_range all = {.iova = M_BASE, .length = M_SIZE};
	const uint8_t *bm;
	int fds[2];

	start_server(DT_DEVICE_LOGGING);
	two_regions(fds);
	dev_write(M_BASE, PG, 0);
	/* Logging off: refused, still mapped. */
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, PG, 64, 0, &bm), -EINVAL);
	assert_int_equal(logging_start(&all, 1, PG), 0);
	dev_write(M_BASE + 3 * PG, 1, 0);
	dev_write(M_BASE + 2 * MB - 1, 1, 1);
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, 3000, 64, 0, &bm), -EINVAL);
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, PG, 63, 0, &bm), -EINVAL);
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, PG, 64, 1, &bm), -EINVAL);
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, 2 * KB, 64, 0, &bm), -EINVAL);
	assert_int_equal(unmap_bitmap(M_BASE, MB, PG, 64, 0, &bm), -EINVAL);
	assert_int_equal(mappings(), 2);
	/* At 2 KiB pages: 1024 bits, 128 bytes. */
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, 2 * KB, 128, 0, &bm), 0);
	assert_int_equal(bm[0], 0xc0);
	assert_int_equal(bm[127], 0xc0);
	for (int i = 1; i < 127; i++)
		assert_int_equal(bm[i], 0);
	assert_int_equal(mappings(), 1);
	/* At 8 KiB, over the other mapping. */
	dev_write(M_BASE + 2 * MB + 2 * PG, 3 * PG, 0);
	assert_int_equal(unmap_bitmap(M_BASE + 2 * MB, 2 * MB, 8 * KB, 32, 0, &bm), 0);
	assert_int_equal(bm[0], 0x06);
	assert_int_equal(mappings(), 0);
	close(fds[0]);
	close(fds[1]);
}

/* ---- message mappings --------------------------------------------------------------------- */

static uint8_t client_mem[64 * 1024]; /* the client's memory behind [8 MiB, +64 KiB) */
#define MSG_BASE (8 * MB)

static int dma_rw_result;
static uint64_t dma_iova;
static size_t dma_len;
static bool dma_write;
static uint8_t dma_buf[64 * 1024];

static void on_write2(struct test_dev *td, uint64_t offset, const void *buf, uint32_t n)
{
	dma_rw_result = dt_vfu_dma_rw(td->srv, dma_iova, dma_buf, dma_len, dma_write);
}

/* Answer the server's DMA requests until the reply to our command (id) comes. */
static int serve_until_reply(uint16_t id, int fail_with, int *requests)
{
	for (;;) {
		struct vfu_dma_access a;

		assert_int_equal(srv_recv(&T), 0);
		if (vfu_hdr_is_reply(&T.reply.hdr)) {
			assert_int_equal(T.reply.hdr.msg_id, id);
			return T.reply.hdr.flags & VFU_F_ERROR ? -(int)T.reply.hdr.error : 0;
		}
		(*requests)++;
		memcpy(&a, T.reply.payload, sizeof(a));
		assert_true(a.addr >= MSG_BASE &&
			    a.addr + a.count <= MSG_BASE + sizeof(client_mem));
		if (fail_with) {
			assert_int_equal(vfu_reply_error(T.fd, &T.reply.hdr, fail_with), 0);
			continue;
		}
		if (T.reply.hdr.cmd == VFU_CMD_DMA_WRITE) {
			assert_int_equal(T.reply.len, 16 + a.count);
			memcpy(client_mem + a.addr - MSG_BASE, T.reply.payload + 16, a.count);
			assert_int_equal(vfu_reply(T.fd, &T.reply.hdr, &a, sizeof(a), NULL, 0), 0);
		} else {
			assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DMA_READ);
			assert_int_equal(T.reply.len, 16);
			struct iovec iov[2] = {
				{.iov_base = &a, .iov_len = sizeof(a)},
				{.iov_base = client_mem + a.addr - MSG_BASE, .iov_len = a.count}};

			assert_int_equal(vfu_replyv(T.fd, &T.reply.hdr, iov, 2, NULL, 0), 0);
		}
	}
}

/* A REGION_WRITE to region 2 makes the device do the DMA set up in dma_*. */
static int device_dma(int fail_with, int *requests)
{
	uint8_t buf[20] = {0};
	struct vfu_region_access a = {.offset = 0, .region = 2, .count = 4};

	memcpy(buf, &a, sizeof(a));
	*requests = 0;
	srv_send(&T, VFU_CMD_REGION_WRITE, 0, buf, sizeof(buf), NULL, 0);
	assert_int_equal(serve_until_reply(T.id, fail_with, requests), 0);
	return dma_rw_result;
}

static void test_message_mapping(void **state)
{
	struct vfu_dma_logging_range all = {.iova = 0, .length = 0};
	const uint8_t *bm;
	uint8_t *fdmem;
	int fd = memfd_new(16 * KB, (void **)&fdmem), n;

	srv_start(&T, NULL);
	/* The client takes 4 KiB per DMA message. */
	assert_int_equal(srv_version(&T, "{\"capabilities\":{\"max_msg_fds\":8,"
					 "\"max_data_xfer_size\":4096,\"migration\":"
					 "{\"pgsize\":4096,\"max_bitmap_size\":65536}}}"),
			 0);
	T.dev.on_write2 = on_write2;
	assert_int_equal(srv_dma_map(&T, MSG_BASE, sizeof(client_mem), -1, 0, 3), 0);
	/* An fd mapping right after it. */
	assert_int_equal(srv_dma_map(&T, MSG_BASE + sizeof(client_mem), 16 * KB, fd, 0, 3), 0);
	assert_int_equal(logging_start(&all, 0, PG), 0);

	/* A 10000-byte write: three DMA_WRITE messages of at most 4096 bytes. */
	for (size_t i = 0; i < sizeof(dma_buf); i++)
		dma_buf[i] = (uint8_t)(i * 13 + 1);
	dma_iova = MSG_BASE + 100;
	dma_len = 10000;
	dma_write = true;
	assert_int_equal(device_dma(0, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(client_mem + 100, dma_buf, 10000);
	assert_int_equal(client_mem[99], 0);
	assert_int_equal(client_mem[10100], 0);
	/* Tracked: pages 0..2 of the message mapping. */
	assert_int_equal(report(MSG_BASE, 16 * PG, PG, &bm), 0);
	assert_int_equal(bm[0], 0x07);
	assert_int_equal(bm[1], 0);

	/* A read across the message mapping into the fd mapping. */
	memset(fdmem, 0xab, 16 * KB);
	memcpy(client_mem + sizeof(client_mem) - 8, "ABCDEFGH", 8);
	dma_iova = MSG_BASE + sizeof(client_mem) - 8;
	dma_len = 16;
	dma_write = false;
	memset(dma_buf, 0, sizeof(dma_buf));
	assert_int_equal(device_dma(0, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(dma_buf, "ABCDEFGH", 8);
	assert_int_equal(dma_buf[8], 0xab);
	assert_int_equal(dma_buf[15], 0xab);
	/* Reads mark nothing. */
	assert_int_equal(report(MSG_BASE, 16 * PG, PG, &bm), 0);
	assert_int_equal(bm[0], 0);

	/* The client refuses: -EIO, no page marked. */
	dma_iova = MSG_BASE + 10 * PG;
	dma_len = 8;
	dma_write = true;
	assert_int_equal(device_dma(EFAULT, &n), -EIO);
	assert_int_equal(n, 1);
	assert_int_equal(report(MSG_BASE, 16 * PG, PG, &bm), 0);
	assert_int_equal(bm[1], 0);
	/* The same write accepted: marked. */
	assert_int_equal(device_dma(0, &n), 0);
	assert_int_equal(report(MSG_BASE, 16 * PG, PG, &bm), 0);
	assert_int_equal(bm[1], 0x04);
	/* Outside the mappings: refused before any message. */
	dma_iova = MSG_BASE - 4;
	assert_int_equal(device_dma(0, &n), -EINVAL);
	assert_int_equal(n, 0);
	close(fd);
	munmap(fdmem, 16 * KB);
}

/* A command the client pipelines while the server waits for its DMA reply is queued and
 * answered after the command that caused the DMA. */
static void test_message_mapping_queue(void **state)
{
	uint8_t buf[20] = {0};
	struct vfu_region_access a = {.offset = 0, .region = 2, .count = 4};
	struct vfu_dma_access d;
	uint16_t write_id;

	srv_start(&T, NULL);
	srv_negotiate(&T);
	T.dev.on_write2 = on_write2;
	assert_int_equal(srv_dma_map(&T, MSG_BASE, sizeof(client_mem), -1, 0, 3), 0);
	dma_iova = MSG_BASE;
	dma_len = 4;
	dma_write = false;
	memcpy(client_mem, "WXYZ", 4);
	memcpy(buf, &a, sizeof(a));
	srv_send(&T, VFU_CMD_REGION_WRITE, 0, buf, sizeof(buf), NULL, 0);
	write_id = T.id;
	/* The DMA_READ request comes; before answering, send a reset. */
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DMA_READ);
	int many[20];
	struct vfu_device_info di = {.argsz = sizeof(di)};
	int before = open_fds();

	memcpy(&d, T.reply.payload, sizeof(d));
	for (int i = 0; i < 20; i++)
		many[i] = T.fd;
	srv_send(&T, VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0);
	srv_send(&T, VFU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), many, 20);
	assert_int_equal(d.addr, MSG_BASE);
	assert_int_equal(d.count, 4);
	struct iovec iov[2] = {{.iov_base = &d, .iov_len = sizeof(d)},
			       {.iov_base = client_mem, .iov_len = 4}};

	assert_int_equal(vfu_replyv(T.fd, &T.reply.hdr, iov, 2, NULL, 0), 0);
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.msg_id, write_id);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_REGION_WRITE);
	assert_int_equal(dma_rw_result, 0);
	assert_memory_equal(dma_buf, "WXYZ", 4);
	/* The reset comes after: the replies are in order. */
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DEVICE_RESET);
	assert_int_equal(T.reply.hdr.flags, VFU_F_TYPE_REPLY);
	assert_int_equal(T.dev.resets, 1);
	/* The command with too many descriptors, refused in its turn, all of them closed. */
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DEVICE_GET_INFO);
	assert_int_equal(T.reply.hdr.msg_id, T.id);
	assert_int_equal(T.reply.hdr.flags, VFU_F_TYPE_REPLY | VFU_F_ERROR);
	assert_int_equal(T.reply.hdr.error, EINVAL);
	assert_int_equal(open_fds(), before);
	/* And serving goes on. */
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), 0);
}

/* The client goes while the device waits for its DMA reply: the device gets -ENOTCONN, the
 * server cleans up. */
static void test_message_mapping_client_gone(void **state)
{
	uint8_t buf[20] = {0};
	struct vfu_region_access a = {.offset = 0, .region = 2, .count = 4};

	srv_start(&T, NULL);
	srv_negotiate(&T);
	T.dev.on_write2 = on_write2;
	assert_int_equal(srv_dma_map(&T, MSG_BASE, sizeof(client_mem), -1, 0, 3), 0);
	dma_iova = MSG_BASE;
	dma_len = 4;
	dma_write = true;
	dma_rw_result = 0;
	memcpy(buf, &a, sizeof(a));
	srv_send(&T, VFU_CMD_REGION_WRITE, 0, buf, sizeof(buf), NULL, 0);
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DMA_WRITE);
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(dma_rw_result, -ENOTCONN);
	assert_int_equal(T.dev.client_lost, 1);
	assert_int_equal(mappings(), 0);
	assert_false(dt_vfu_server_connected(T.s));
}

/* A device thread doing DMA on one fd mapping while the client maps and unmaps others (the
 * list grows and moves): every access succeeds and sees the memory. */
static _Atomic int dma_thread_stop;
static int dma_thread_errors, dma_thread_runs;

static void *dma_thread(void *arg)
{
	uint64_t v = 0, got;

	while (!dma_thread_stop) {
		v++;
		if (dt_vfu_dma_rw(T.s, 64 * MB + 8, &v, sizeof(v), true) ||
		    dt_vfu_dma_rw(T.s, 64 * MB + 8, &got, sizeof(got), false) || got != v)
			dma_thread_errors++;
		dma_thread_runs++;
	}
	return NULL;
}

static void test_dma_rw_concurrent(void **state)
{
	pthread_t th;
	int fd = memfd_new(64 * KB, NULL), other = memfd_new(4 * KB, NULL);

	start_server(DT_DEVICE_EMULATED);
	assert_int_equal(srv_dma_map(&T, 64 * MB, 64 * KB, fd, 0, 3), 0);
	dma_thread_stop = 0;
	dma_thread_errors = dma_thread_runs = 0;
	assert_int_equal(pthread_create(&th, NULL, dma_thread, NULL), 0);
	for (int round = 0; round < 4; round++) {
		for (uint64_t k = 0; k < 40; k++)
			assert_int_equal(
				srv_dma_map(&T, (k + 1) * MB, 4 * KB, k % 2 ? other : -1, 0, 3), 0);
		for (uint64_t k = 0; k < 40; k++)
			assert_int_equal(srv_dma_unmap(&T, (k + 1) * MB, 4 * KB, 0), 0);
	}
	dma_thread_stop = 1;
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(dma_thread_errors, 0);
	assert_true(dma_thread_runs > 0);
	close(fd);
	close(other);
}

/* ---- randomized ----------------------------------------------------------------------------- */

static uint64_t rng;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_report_random(void **state)
{
	struct vfu_dma_logging_range all = {.iova = M_BASE, .length = M_SIZE};
	const char *env = getenv("VFU_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	const uint8_t *bm;
	int fds[2];

	print_message("test_report_random: seed %llu (VFU_SEED=%llu replays)\n",
		      (unsigned long long)seed, (unsigned long long)seed);
	rng = seed * 2654435761u + 1;
	start_server(DT_DEVICE_LOGGING);
	two_regions(fds);
	assert_int_equal(logging_start(&all, 1, PG), 0);
	for (int round = 0; round < 200; round++) {
		unsigned nw = next_rand() % 8;
		uint64_t ps = 1ull << (9 + next_rand() % 13); /* 512 B .. 2 MiB */
		uint64_t npg = M_SIZE / ps, first, count;

		for (unsigned i = 0; i < nw; i++) {
			uint64_t at = M_BASE + next_rand() % M_SIZE;
			uint64_t len = 1 + next_rand() % (next_rand() % 2 ? 64 : 3 * PG);

			if (at + len > M_BASE + M_SIZE)
				len = M_BASE + M_SIZE - at;
			dev_write(at, len, i);
		}
		first = next_rand() % npg;
		count = 1 + next_rand() % (npg - first);
		if (report(M_BASE + first * ps, count * ps, ps, &bm))
			fail_msg("seed %llu round %d: report refused", (unsigned long long)seed,
				 round);
		model_check(M_BASE + first * ps, count * ps, ps, bm);
	}
	/* Whatever is left is all in one last report. */
	assert_int_equal(report(M_BASE, M_SIZE, PG, &bm), 0);
	model_check(M_BASE, M_SIZE, PG, bm);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_map_unmap, teardown),
		cmocka_unit_test_teardown(test_report_exact, teardown),
		cmocka_unit_test_teardown(test_report_subrange, teardown),
		cmocka_unit_test_teardown(test_report_pinned, teardown),
		cmocka_unit_test_teardown(test_report_passthrough, teardown),
		cmocka_unit_test_teardown(test_report_refused, teardown),
		cmocka_unit_test_teardown(test_report_bitmap_limit, teardown),
		cmocka_unit_test_teardown(test_unmap_bitmap, teardown),
		cmocka_unit_test_teardown(test_message_mapping, teardown),
		cmocka_unit_test_teardown(test_message_mapping_queue, teardown),
		cmocka_unit_test_teardown(test_message_mapping_client_gone, teardown),
		cmocka_unit_test_teardown(test_dma_rw_concurrent, teardown),
		cmocka_unit_test_teardown(test_report_random, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
