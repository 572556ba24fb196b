/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_server_report.c - the server's dirty reports: DMA_LOGGING_REPORT
 * with exact bits at 4 KiB, 2 KiB, 8 KiB and 2 MiB over a range spanning two DMA regions,
 * read-and-clear (a second report has only the new writes), a sub-range that cuts mappings
 * (the rest is kept for later), pinned pages in every report, a PASSTHROUGH device's whole
 * scope, every refusal (leaving the dirty state alone), the bitmap size limit negotiated
 * exactly, DMA_UNMAP with a dirty bitmap, and a randomized comparison of reports against a
 * naive model (seed printed; DT_SEED=n replays).
 */
#include "vfu_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

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
		if (want != bm_bit(bm, n))
			fail_msg(
				"report [0x%llx, +0x%llx) at %llu: bit %llu (0x%llx) is %d, want %d",
				(unsigned long long)iova, (unsigned long long)length,
				(unsigned long long)ps, (unsigned long long)n,
				(unsigned long long)lo, bm_bit(bm, n), want);
	}
	/* Bits past the range are zero. */
	for (uint64_t n = length / ps; n % 64; n++)
		assert_false(bm_bit(bm, n));
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

static const uint64_t page_sizes[] = {4 * KB, 2 * KB, 8 * KB, 2 * MB};

static void test_report_exact(void **state)
{
	struct vfu_dma_logging_range all = {.iova = M_BASE, .length = M_SIZE};
	struct vfu_dma_logging_control ctl;
	const uint8_t *bm;
	int fds[2];

	srv_start_kind(&T, DT_DEVICE_LOGGING);
	two_regions(fds);
	assert_int_equal(srv_logging_start(&T, &all, 1, 4 * KB), 0);
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
		assert_int_equal(srv_report(&T, M_BASE, M_SIZE, ps, &bm), 0);
		model_check(M_BASE, M_SIZE, ps, bm);
		/* Spot checks of the model itself at 4 KiB. */
		if (ps == 4 * KB) {
			assert_true(bm_bit(bm, 0));
			assert_false(bm_bit(bm, 1));
			assert_true(bm_bit(bm, 5) && bm_bit(bm, 8));
			assert_false(bm_bit(bm, 9));
			assert_true(bm_bit(bm, 510) && bm_bit(bm, 511) && bm_bit(bm, 512) &&
				    bm_bit(bm, 513));
			assert_true(bm_bit(bm, 512 + 76) && bm_bit(bm, 512 + 77));
			assert_true(bm_bit(bm, 1023));
		}
		if (ps == 2 * MB) {
			assert_int_equal(bm[0], 3);
		}
		/* A second report has nothing; a new write is all it has. */
		assert_int_equal(srv_report(&T, M_BASE, M_SIZE, ps, &bm), 0);
		model_check(M_BASE, M_SIZE, ps, bm);
		for (uint64_t i = 0; i < M_SIZE / ps / 8; i++)
			assert_int_equal(bm[i], 0);
		dev_write(M_BASE + 2 * MB + 3 * PG, 1, 1);
		assert_int_equal(srv_report(&T, M_BASE, M_SIZE, ps, &bm), 0);
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

	srv_start_kind(&T, DT_DEVICE_LOGGING);
	two_regions(fds);
	/* Two adjacent logged ranges, given out of order, make one. */
	assert_int_equal(srv_logging_start(&T, r, 2, 64 * KB), 0);
	dev_write(M_BASE + 10 * PG, 30 * PG, 0);
	dev_write(M_BASE + 2 * MB - PG, 2 * PG, 1);
	/* A range that cuts both mappings: only its pages, the rest is kept. */
	assert_int_equal(srv_report(&T, M_BASE + 16 * PG, 2 * MB, 4 * KB, &bm), 0);
	model_check(M_BASE + 16 * PG, 2 * MB, 4 * KB, bm);
	assert_true(bm_bit(bm, 0));
	assert_false(bm_bit(bm, 30 - 6));
	/* 2 KiB pages, a range not aligned to 4 KiB: the half page stays dirty. */
	assert_int_equal(srv_report(&T, M_BASE + 12 * PG + 2048, 2048 * 3, 2 * KB, &bm), 0);
	model_check(M_BASE + 12 * PG + 2048, 2048 * 3, 2 * KB, bm);
	assert_int_equal(bm[0], 7);
	assert_int_equal(srv_report(&T, M_BASE, M_SIZE, 4 * KB, &bm), 0);
	model_check(M_BASE, M_SIZE, 4 * KB, bm);
	/* Pages 10..11 and 12 (half reported), 13 reported, 14..15 kept. */
	assert_true(bm_bit(bm, 10) && bm_bit(bm, 11) && bm_bit(bm, 12) && bm_bit(bm, 14) &&
		    bm_bit(bm, 15));
	assert_false(bm_bit(bm, 13));
	assert_false(bm_bit(bm, 16));
	close(fds[0]);
	close(fds[1]);
}

static void test_report_pinned(void **state)
{
	struct vfu_dma_logging_range all = {.iova = M_BASE, .length = M_SIZE};
	struct dt_device *dev;
	const uint8_t *bm;
	int fds[2];

	srv_start_kind(&T, DT_DEVICE_EMULATED);
	two_regions(fds);
	dev = dt_vfu_server_device(T.s);
	assert_int_equal(dt_pin_pages(dev, M_BASE + 2 * MB - PG, 2, 3, NULL), 2);
	assert_int_equal(srv_logging_start(&T, &all, 1, 4 * KB), 0);
	/* Still-pinned pages are in every report. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(srv_report(&T, M_BASE, M_SIZE, 4 * KB, &bm), 0);
		assert_int_equal(bm[63], 0x80);
		assert_int_equal(bm[64], 0x01);
		assert_int_equal(bm[0], 0);
	}
	/* Unpinned: once more, then gone. */
	assert_int_equal(dt_unpin_pages(dev, M_BASE + 2 * MB - PG, 2), 2);
	assert_int_equal(srv_report(&T, M_BASE, M_SIZE, 2 * MB, &bm), 0);
	assert_int_equal(bm[0], 3);
	assert_int_equal(srv_report(&T, M_BASE, M_SIZE, 2 * MB, &bm), 0);
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

	srv_start_kind(&T, DT_DEVICE_PASSTHROUGH);
	two_regions(fds);
	fds[2] = memfd_new(2 * MB, NULL);
	/* A third mapping after a 2 MiB hole. */
	assert_int_equal(srv_dma_map(&T, M_BASE + M_SIZE + 2 * MB, 2 * MB, fds[2], 0, 3), 0);
	assert_int_equal(srv_logging_start(&T, &all, 0, PG), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(srv_report(&T, M_BASE, M_SIZE + 4 * MB, 2 * MB, &bm), 0);
		assert_int_equal(bm[0], 0x0b); /* mappings 0, 1 and 3; the hole (2) clean */
	}
	assert_int_equal(srv_report(&T, M_BASE + M_SIZE, 2 * MB, PG, &bm), 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(bm[i], 0);
	assert_int_equal(dt_pin_pages(dt_vfu_server_device(T.s), M_BASE, 1, 3, NULL), 1);
	/* The promotion marks everything once more, then only the pinned page. */
	assert_int_equal(srv_report(&T, M_BASE, M_SIZE + 4 * MB, 2 * MB, &bm), 0);
	assert_int_equal(bm[0], 0x0b);
	assert_int_equal(srv_report(&T, M_BASE, 2 * MB, PG, &bm), 0);
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

	srv_start_kind(&T, DT_DEVICE_LOGGING);
	two_regions(fds);
	assert_int_equal(srv_report(&T, M_BASE, 2 * MB, PG, &bm), -EINVAL); /* logging off */
	/* START refusals leave logging off. */
	struct vfu_dma_logging_range bad[2] = {{M_BASE, 2 * PG}, {M_BASE + PG, 2 * PG}};

	assert_int_equal(srv_logging_start(&T, bad, 2, PG), -EINVAL);
	bad[0] = (struct vfu_dma_logging_range){M_BASE + 1, PG};
	assert_int_equal(srv_logging_start(&T, bad, 1, PG), -EINVAL);
	bad[0] = (struct vfu_dma_logging_range){M_BASE, 0};
	assert_int_equal(srv_logging_start(&T, bad, 1, PG), -EINVAL);
	bad[0] = (struct vfu_dma_logging_range){UINT64_MAX - PG + 1, 2 * PG};
	assert_int_equal(srv_logging_start(&T, bad, 1, PG), -EINVAL);
	assert_int_equal(srv_logging_start(&T, &r, 1, 3000), -EINVAL);
	assert_false(dt_iommu_dirty_tracking(dt_vfu_server_iommu(T.s)));
	/* A hint below 4 KiB gets 4 KiB back; a second START is refused. */
	assert_int_equal(srv_logging_start(&T, &r, 1, 512), 0);
	struct vfu_dma_logging_control ctl;

	memcpy(&ctl, T.reply.payload + 8, sizeof(ctl));
	assert_int_equal(ctl.page_size, PG);
	assert_int_equal(srv_logging_start(&T, &r, 1, PG), -EBUSY);

	dev_write(M_BASE, 64 * PG, 0);
	assert_int_equal(srv_report(&T, M_BASE, 64 * PG, 3 * KB, &bm), -EINVAL);
	assert_int_equal(srv_report(&T, M_BASE, 64 * PG, 0, &bm), -EINVAL);
	assert_int_equal(srv_report(&T, M_BASE + 2 * KB, 64 * PG, PG, &bm), -EINVAL);
	assert_int_equal(srv_report(&T, M_BASE, 64 * PG + 2 * KB, PG, &bm), -EINVAL);
	assert_int_equal(srv_report(&T, M_BASE, 0, PG, &bm), -EINVAL);
	assert_int_equal(srv_report(&T, M_BASE + MB, 2 * MB, PG, &bm),
			 -EINVAL); /* not all logged */
	assert_int_equal(srv_report(&T, M_BASE + 2 * MB, PG, PG, &bm), -EINVAL);
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
	assert_int_equal(srv_report(&T, M_BASE, 2 * MB, PG, &bm), 0);
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
	assert_int_equal(srv_report(&T, M_BASE, 2 * MB, PG, &bm), -EINVAL);
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
	assert_int_equal(srv_logging_start(&T, &all, 0, PG), 0); /* no ranges: everything */
	dev_write(M_BASE + 511 * PG, PG, 0);
	dev_write(M_BASE + 512 * PG, PG, 0);
	assert_int_equal(srv_report(&T, M_BASE, 513 * PG, PG, &bm), -EINVAL);
	assert_int_equal(srv_report(&T, M_BASE, 512 * PG, PG, &bm), 0);
	model_check(M_BASE, 512 * PG, PG, bm);
	assert_int_equal(bm[63], 0x80);
	/* 2 KiB pages: 512 bits are 1 MiB. */
	assert_int_equal(srv_report(&T, M_BASE + 512 * PG, MB + 2 * KB, 2 * KB, &bm), -EINVAL);
	assert_int_equal(srv_report(&T, M_BASE + 512 * PG, MB, 2 * KB, &bm), 0);
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

	srv_start_kind(&T, DT_DEVICE_LOGGING);
	two_regions(fds);
	dev_write(M_BASE, PG, 0);
	/* Logging off: refused, still mapped. */
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, PG, 64, 0, &bm), -EINVAL);
	assert_int_equal(srv_logging_start(&T, &all, 1, PG), 0);
	dev_write(M_BASE + 3 * PG, 1, 0);
	dev_write(M_BASE + 2 * MB - 1, 1, 1);
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, 3000, 64, 0, &bm), -EINVAL);
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, PG, 63, 0, &bm), -EINVAL);
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, PG, 64, 1, &bm), -EINVAL);
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, 2 * KB, 64, 0, &bm), -EINVAL);
	assert_int_equal(unmap_bitmap(M_BASE, MB, PG, 64, 0, &bm), -EINVAL);
	assert_int_equal(srv_mappings(&T), 2);
	/* At 2 KiB pages: 1024 bits, 128 bytes. */
	assert_int_equal(unmap_bitmap(M_BASE, 2 * MB, 2 * KB, 128, 0, &bm), 0);
	assert_int_equal(bm[0], 0xc0);
	assert_int_equal(bm[127], 0xc0);
	for (int i = 1; i < 127; i++)
		assert_int_equal(bm[i], 0);
	assert_int_equal(srv_mappings(&T), 1);
	/* At 8 KiB, over the other mapping. */
	dev_write(M_BASE + 2 * MB + 2 * PG, 3 * PG, 0);
	assert_int_equal(unmap_bitmap(M_BASE + 2 * MB, 2 * MB, 8 * KB, 32, 0, &bm), 0);
	assert_int_equal(bm[0], 0x06);
	assert_int_equal(srv_mappings(&T), 0);
	close(fds[0]);
	close(fds[1]);
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
	const char *env = getenv("DT_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	const uint8_t *bm;
	int fds[2];

	print_message("test_report_random: seed %llu (DT_SEED=%llu to replay)\n",
		      (unsigned long long)seed, (unsigned long long)seed);
	rng = seed * 2654435761u + 1;
	srv_start_kind(&T, DT_DEVICE_LOGGING);
	two_regions(fds);
	assert_int_equal(srv_logging_start(&T, &all, 1, PG), 0);
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
		if (srv_report(&T, M_BASE + first * ps, count * ps, ps, &bm))
			fail_msg("seed %llu round %d: report refused", (unsigned long long)seed,
				 round);
		model_check(M_BASE + first * ps, count * ps, ps, bm);
	}
	/* Whatever is left is all in one last report. */
	assert_int_equal(srv_report(&T, M_BASE, M_SIZE, PG, &bm), 0);
	model_check(M_BASE, M_SIZE, PG, bm);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_report_exact, srv_teardown),
		cmocka_unit_test_teardown(test_report_subrange, srv_teardown),
		cmocka_unit_test_teardown(test_report_pinned, srv_teardown),
		cmocka_unit_test_teardown(test_report_passthrough, srv_teardown),
		cmocka_unit_test_teardown(test_report_refused, srv_teardown),
		cmocka_unit_test_teardown(test_report_bitmap_limit, srv_teardown),
		cmocka_unit_test_teardown(test_unmap_bitmap, srv_teardown),
		cmocka_unit_test_teardown(test_report_random, srv_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
