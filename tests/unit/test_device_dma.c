/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_device_dma.c - dt_dma_rw and dt_dma_log (SEMANTICS.md sections 2 and 4):
 * copies across adjacent mappings land at the right host bytes and mark
 * [iova >> shift, (iova + len - 1) >> shift]; -EINVAL outside the mappings (a hole, len 0),
 * -EPERM without the mapping's permission, and on any error nothing is copied or marked;
 * while tracking is off pins, dma_rw and logs succeed and mark nothing.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"
#include "iommu/internal.h" /* white box: the lookup cache's tables */
#include "iommu/lookup.h"

static void test_dma_rw_across_mappings(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	uint8_t *a = map_region(io, IOVA_BASE, 2);
	uint8_t *b = map_region(io, IOVA_BASE + 2 * PG, 1);
	uint8_t *c = map_region(io, IOVA_BASE + 3 * PG, 3);
	const uint64_t len = 3 * PG + 200, at = PG + 100; /* pages 1-4 */
	uint8_t *src = malloc(len), *back = malloc(len);

	assert_non_null(src);
	assert_non_null(back);
	for (uint64_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 7 + 3);
	tracking_start(io);
	ctx_set("write of %" PRIu64 " bytes at iova +0x%" PRIx64 " across three mappings", len, at);
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + at, src, len, true), 0);
	EXPECT_EQ(memcmp(a + at, src, PG - 100), 0);
	EXPECT_EQ(memcmp(b, src + PG - 100, PG), 0);
	EXPECT_EQ(memcmp(c, src + 2 * PG - 100, PG + 300), 0);
	EXPECT_EQ(a[at - 1], 0);
	EXPECT_EQ(c[PG + 300], 0);
	EXPECT_REPORT(io, IOVA_BASE, 6, "1-4");
	ctx_set("read back across the same mappings");
	memset(back, 0, len);
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + at, back, len, false), 0);
	EXPECT_EQ(memcmp(back, src, len), 0);
	EXPECT_REPORT(io, IOVA_BASE, 6, "");
	ctx_set("a one-byte write at the last byte of a mapping");
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 3 * PG - 1, src, 1, true), 0);
	EXPECT_EQ(b[PG - 1], src[0]);
	EXPECT_REPORT(io, IOVA_BASE, 6, "2");
	free(src);
	free(back);
}

/* Longer spans than the library keeps at hand: 12 adjacent one-page mappings. */
static void test_dma_rw_many_mappings(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	uint8_t *host[12], *src = malloc(12 * PG), *back = calloc(1, 12 * PG);

	assert_non_null(src);
	assert_non_null(back);
	for (unsigned i = 0; i < 12; i++)
		host[i] = map_region(io, IOVA_BASE + i * PG, 1);
	for (uint64_t i = 0; i < 12 * PG; i++)
		src[i] = (uint8_t)(i % 251 + 1);
	tracking_start(io);
	ctx_set("write of 11 pages - 2 bytes from byte 1 across 12 one-page mappings");
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 1, src, 11 * PG - 2, true), 0);
	EXPECT_EQ(host[0][0], 0);
	for (unsigned i = 0; i < 11; i++) {
		ctx_set("mapping %u", i);
		EXPECT_EQ(memcmp(host[i] + (i ? 0 : 1), src + (i ? i * PG - 1 : 0),
				 i ? (i == 10 ? PG - 1 : PG) : PG - 1),
			  0);
	}
	EXPECT_EQ(host[10][PG - 1], 0);
	EXPECT_EQ(host[11][0], 0);
	ctx_set("marks: pages 0-10");
	EXPECT_REPORT(io, IOVA_BASE, 12, "0-10");
	ctx_set("read back across the 12 mappings");
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 1, back, 11 * PG - 2, false), 0);
	EXPECT_EQ(memcmp(back, src, 11 * PG - 2), 0);
	ctx_set("a log across the 12 mappings");
	EXPECT_EQ(dt_dma_log(emu, IOVA_BASE + PG + 5, 11 * PG - 5), 0);
	EXPECT_REPORT(io, IOVA_BASE, 12, "1-11");
	ctx_set("a write over 12 mappings into a hole: rejected, nothing written or marked");
	memset(back, 0xee, 12 * PG);
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 2 * PG, back, 11 * PG, true), -EINVAL);
	EXPECT_EQ(host[2][0], src[2 * PG - 1]);
	EXPECT_REPORT(io, IOVA_BASE, 12, "");
	free(src);
	free(back);
}

static void test_dma_rw_errnos(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	/* RW pages 0-3, hole 4-7, RO 8-9, WO 10-11 */
	uint8_t *rw = map_region(io, IOVA_BASE, 4);
	uint8_t *ro = map_region_flags(io, IOVA_BASE + 8 * PG, 2, VFIO_DMA_MAP_FLAG_READ);
	uint8_t *wo = map_region_flags(io, IOVA_BASE + 10 * PG, 2, VFIO_DMA_MAP_FLAG_WRITE);
	uint8_t buf[2 * 4096];
	struct {
		const char *what;
		uint64_t iova, len;
		bool write;
		int err;
	} cases[] = {
		{"write wholly in the hole", IOVA_BASE + 5 * PG, 16, true, -EINVAL},
		{"read wholly in the hole", IOVA_BASE + 5 * PG, 16, false, -EINVAL},
		{"write from RW into the hole", IOVA_BASE + 4 * PG - 8, 16, true, -EINVAL},
		{"write from the hole into RO", IOVA_BASE + 8 * PG - 8, 16, true, -EINVAL},
		{"write below every mapping", IOVA_BASE - 8, 16, true, -EINVAL},
		{"write of length 0", IOVA_BASE, 0, true, -EINVAL},
		{"write to the read-only mapping", IOVA_BASE + 8 * PG, 16, true, -EPERM},
		{"write across RO into WO", IOVA_BASE + 10 * PG - 8, 16, true, -EPERM},
		{"read of the write-only mapping", IOVA_BASE + 10 * PG, 16, false, -EPERM},
		{"read across RO into WO", IOVA_BASE + 10 * PG - 8, 16, false, -EPERM},
	};

	tracking_start(io);
	memset(buf, 0x6b, sizeof(buf));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ctx_set("dma_rw: %s", cases[i].what);
		EXPECT_EQ(dt_dma_rw(emu, cases[i].iova, buf, cases[i].len, cases[i].write),
			  cases[i].err);
	}
	ctx_set("nothing written and nothing marked by the failed calls");
	for (uint64_t i = 0; i < 4 * PG; i++)
		EXPECT_EQ(rw[i], 0);
	for (uint64_t i = 0; i < 2 * PG; i++)
		EXPECT_EQ(ro[i] | wo[i], 0);
	EXPECT_REPORT(io, IOVA_BASE, 12, "");
	ctx_set("what is allowed: read RO, write WO");
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 8 * PG, buf, 16, false), 0);
	EXPECT_EQ(buf[0], 0);
	memset(buf, 0x6b, sizeof(buf));
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 11 * PG, buf, 16, true), 0);
	EXPECT_EQ(wo[PG], 0x6b);
	EXPECT_REPORT(io, IOVA_BASE, 12, "11");
}

static void test_dma_log(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);

	map_region(io, IOVA_BASE, 4);
	map_region(io, IOVA_BASE + 4 * PG, 4);
	map_region(io, IOVA_BASE + 12 * PG, 4);
	tracking_start(io);
	ctx_set("dma_log errnos");
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE, 0), -EINVAL);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 9 * PG, PG), -EINVAL);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 6 * PG, 4 * PG), -EINVAL);  /* into the hole */
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 11 * PG, 2 * PG), -EINVAL); /* from the hole */
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE, 16 * PG), -EINVAL);	  /* over the hole */
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE - 1, 2), -EINVAL);
	EXPECT_EQ(dt_dma_log(dev, UINT64_MAX - 10, 100), -EINVAL); /* wraps */
	ctx_set("nothing marked by the failed logs");
	EXPECT_REPORT(io, IOVA_BASE, 16, "");
	ctx_set("a log across two adjacent mappings, unaligned bytes");
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 3 * PG + 4000, 200), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 15 * PG + 4095, 1), 0);
	EXPECT_REPORT(io, IOVA_BASE, 16, "3-4,15");
	EXPECT_REPORT(io, IOVA_BASE, 16, "");
}

/*
 * The marking paths' lookup cache (lib/iommu/lookup.c) keeps one mapping per granule of
 * IOVA. A slot must never outlive its mapping: after an unmap, a log at the old address
 * fails, and one into a new mapping at the same address marks the new mapping (under ASan a
 * stale slot is a use after free). Two mappings sharing a granule take turns in its slot.
 */
static void test_lookup_cache(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	uint8_t *mem = guest_mem(8 * PG);

	tracking_start(io);
	ctx_set("a log fills the slot, the unmap empties it");
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE, 8 * PG, 3), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 5 * PG, 1), 0);
	EXPECT_EQ(vfio_unmap(io, IOVA_BASE, 8 * PG, 0, NULL), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 5 * PG, 1), -EINVAL);
	ctx_set("a smaller mapping at the same address");
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE, 2 * PG, 3), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 5 * PG, 1), -EINVAL);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + PG, 1), 0);
	EXPECT_REPORT(io, IOVA_BASE, 8, "1");
	ctx_set("two mappings in one granule, logged in turns");
	EXPECT_EQ(vfio_map(io, mem + 4 * PG, IOVA_BASE + 4 * PG, 4 * PG, 3), 0);
	for (unsigned i = 0; i < 8; i++)
		EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + (i % 2 ? 4 + i / 2 : i / 4) * PG, 1), 0);
	EXPECT_REPORT(io, IOVA_BASE, 8, "0-1,4-7");
	ctx_set("a log at the granule's start goes to the mapping there, not the cached one");
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 7 * PG, 1), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE, 1), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 3 * PG, 1), -EINVAL);
	EXPECT_REPORT(io, IOVA_BASE, 8, "0,7");
}

/* The cache's granule comes down from 1 GiB as finer mappings arrive; slots filled at the
 * old granule and readers racing with the change stay correct (a slot is only ever right or
 * a miss). A 1 GiB mapping, then a 2 MiB one beside it, then 4 MiB: every log lands. */
static void test_lookup_cache_granule(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	const uint64_t gib = 1ull << 30, mib2 = 2ull << 20;
	uint8_t *mem = guest_mem(gib + 3 * mib2);
	const uint64_t base = 4 * gib;

	tracking_start(io);
	EXPECT_EQ(vfio_map(io, mem, base, gib, 3), 0);
	EXPECT_EQ(dt_dma_log(dev, base + 5 * PG, 1), 0);
	EXPECT_EQ(dt_dma_log(dev, base + gib - PG, 1), 0);
	EXPECT_EQ(vfio_map(io, mem + gib, base + gib, mib2, 3), 0);
	EXPECT_EQ(vfio_map(io, mem + gib + mib2, base + gib + mib2, 2 * mib2, 3), 0);
	for (uint64_t at = 0; at < gib + 3 * mib2; at += mib2 / 2)
		EXPECT_EQ(dt_dma_log(dev, base + at, 1), 0);
	EXPECT_EQ(dt_dma_log(dev, base + gib + 3 * mib2, 1), -EINVAL);
	ctx_set("a log every 1 MiB over 1 GiB + 6 MiB, and the two before");
	{
		uint64_t npages = (gib + 3 * mib2) / PG;
		uint8_t *bm = bm_new(npages);

		EXPECT_EQ(vfio_get_bitmap(io, base, npages * PG, PG, bm, bm_bytes(npages)), 0);
		EXPECT_EQ(bits_count(bm, npages), (gib + 3 * mib2) / (mib2 / 2) + 2);
		EXPECT_TRUE(bit_test(bm, 5) && bit_test(bm, gib / PG - 1) &&
			    bit_test(bm, gib / PG));
		free(bm);
	}
}

/*
 * White box: each table of the lookup cache has the coarsest granule its mappings allow (the
 * largest power of two dividing iova and size): the coarse table, 2 MiB to 1 GiB, from the
 * mappings of 2 MiB or more that are aligned to 2 MiB; the fine table, 4 KiB to 1 MiB, from
 * the smaller ones (2 MiB while there are none). Both as mappings come and as they go, for
 * a random sequence checked against a recomputation here.
 */
static void expected_shifts(const uint64_t *iova, const uint64_t *size, unsigned n,
			    unsigned *coarse, unsigned *fine)
{
	*coarse = LOOKUP_SHIFT_MAX;
	*fine = LOOKUP_SHIFT_MIN;
	for (unsigned i = 0; i < n; i++) {
		unsigned g;

		if (!size[i])
			continue;
		g = (unsigned)__builtin_ctzll(iova[i] | size[i]);
		if (size[i] < 1ull << LOOKUP_SHIFT_MIN && g < *fine)
			*fine = g;
		else if (size[i] >= 1ull << LOOKUP_SHIFT_MIN && g >= LOOKUP_SHIFT_MIN &&
			 g < *coarse)
			*coarse = g;
	}
}

/* Table t holds the mapping that contains iova, under the current generation. */
static bool filed_in(struct dt_iommu *io, struct lookup_table *t, uint64_t iova)
{
	uint64_t tag = atomic_load(&io->lookup_gen) & 0xffff;

	return lookup_hit(atomic_load(lookup_slot(t, iova)), tag, iova) != NULL;
}

static void test_lookup_granule_follows_mappings(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	const uint64_t slot = 1ull << 30; /* each mapping in its own GiB */
	enum { N = 12 };
	uint64_t iova[N] = {0}, size[N] = {0};
	uint8_t *mem = guest_mem(slot);
	unsigned coarse, fine;

	EXPECT_EQ(atomic_load(&io->coarse.shift), LOOKUP_SHIFT_MAX);
	EXPECT_EQ(atomic_load(&io->fine.shift), LOOKUP_SHIFT_MIN);
	for (unsigned op = 0; op < 400; op++) {
		unsigned i = (unsigned)rng_below(N);
		uint64_t at = (1ull << 40) + i * slot;

		if (size[i]) {
			ctx_set("op %u: unmap %" PRIu64 " KiB at +0x%" PRIx64, op, size[i] >> 10,
				iova[i] - at);
			EXPECT_EQ(vfio_unmap(io, iova[i], size[i], 0, NULL), 0);
			size[i] = 0;
		} else {
			/* 4 KiB to 1 GiB, at an offset in the slot that is a multiple of 4 KiB to
			 * 512 MiB: granules from "none" to 1 GiB. */
			unsigned ls = 12 + (unsigned)rng_below(19),
				 lo = 12 + (unsigned)rng_below(18);

			size[i] = 1ull << ls;
			iova[i] = at + (size[i] + (1ull << lo) <= slot ? 1ull << lo : 0);
			ctx_set("op %u: map %" PRIu64 " KiB at +0x%" PRIx64, op, size[i] >> 10,
				iova[i] - at);
			EXPECT_EQ(vfio_map(io, mem, iova[i], size[i], 3), 0);
			/* A lookup files the mapping in its own table. */
			EXPECT_EQ(dt_dma_log(dev, iova[i] + size[i] - 1, 1), 0);
			EXPECT_TRUE(filed_in(
				io, size[i] < 1ull << LOOKUP_SHIFT_MIN ? &io->fine : &io->coarse,
				iova[i] + size[i] - 1));
		}
		expected_shifts(iova, size, N, &coarse, &fine);
		EXPECT_EQ(atomic_load(&io->coarse.shift), coarse);
		EXPECT_EQ(atomic_load(&io->fine.shift), fine);
	}
}

/* Slots carry a 16-bit generation that every unmap bumps; after 2^16 unmaps it wraps, and
 * both tables must be emptied then so that no slot from 65536 unmaps ago becomes valid
 * again: a page mapping (fine table) and a 2 MiB one (coarse table) are logged and unmapped,
 * then 70 000 rounds map, log and unmap a page whose slots are neither of theirs. Two
 * mappings that stay keep each table's granule where it was, so the old slots stay the
 * ones a log at their addresses reads. */
static void test_lookup_cache_wraps(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	const uint64_t gib = 1ull << 30, mib2 = 2ull << 20;
	const uint64_t small = IOVA_BASE, big = IOVA_BASE + gib, round = IOVA_BASE + 2 * gib + PG;
	uint8_t *mem = guest_mem(mib2);
	const unsigned rounds = 70000;
	unsigned bad = 0;

	tracking_start(io);
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE + 3 * gib, mib2, 3), 0);
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE + 3 * gib + 2 * mib2, PG, 3), 0);
	EXPECT_EQ(vfio_map(io, mem, small, PG, 3), 0);
	EXPECT_EQ(vfio_map(io, mem, big, mib2, 3), 0);
	EXPECT_EQ(dt_dma_log(dev, small, 1), 0);
	EXPECT_EQ(dt_dma_log(dev, big, 1), 0);
	EXPECT_EQ(vfio_unmap(io, small, PG, 0, NULL), 0);
	EXPECT_EQ(vfio_unmap(io, big, mib2, 0, NULL), 0);
	for (unsigned i = 0; i < rounds; i++) {
		bad += vfio_map(io, mem, round, PG, 3) != 0;
		bad += dt_dma_log(dev, round, 1) != 0;
		bad += vfio_unmap(io, round, PG, 0, NULL) != 0;
		bad += dt_dma_log(dev, small, 1) != -EINVAL;
		bad += dt_dma_log(dev, big, 1) != -EINVAL;
	}
	ctx_set("%u map/log/unmap rounds", rounds);
	EXPECT_EQ(bad, 0);
}

/* The same layout in two containers: 72 pages in two adjacent mappings, a hole of 4 pages,
 * 200 pages, and 16 pages 1 GiB further on (another lookup granule). */
#define BATCH_FAR_PAGE	 (1u << 18)
#define BATCH_SPAN_PAGES (BATCH_FAR_PAGE + 16)

static void batch_layout(struct dt_iommu *io, uint8_t *mem)
{
	EXPECT_EQ(vfio_map(io, mem, IOVA_BASE, 64 * PG, 3), 0);
	EXPECT_EQ(vfio_map(io, mem + 64 * PG, IOVA_BASE + 64 * PG, 8 * PG, 3), 0);
	EXPECT_EQ(vfio_map(io, mem + 76 * PG, IOVA_BASE + 76 * PG, 200 * PG, 1), 0);
	EXPECT_EQ(vfio_map(io, mem + 300 * PG, IOVA_BASE + BATCH_FAR_PAGE * PG, 16 * PG, 3), 0);
	tracking_start(io);
}

static struct dt_dma_range random_range(void)
{
	uint64_t pg = rng_below(8) ? rng_below(300) : BATCH_FAR_PAGE - 2 + rng_below(20);
	struct dt_dma_range r = {IOVA_BASE + pg * PG + rng_below(PG), 1 + rng_below(3 * PG)};

	if (!rng_below(60))
		r.len = 0;
	if (!rng_below(80))
		r = (struct dt_dma_range){UINT64_MAX - 100, 200}; /* wraps */
	return r;
}

/*
 * dt_dma_log_batch against its reference, dt_dma_log called on each range in order until
 * one fails: same return (the index of the rejected range, or its errno when it is the
 * first), same report, over random batches that cross mappings, fall in the hole or outside
 * and are longer than what the batch looks up ahead.
 */
static void test_dma_log_batch_vs_single(void **state)
{
	struct dt_iommu *io = *state, *ref = dt_iommu_new();
	uint8_t *mem = guest_mem(316 * PG);
	uint8_t *got = bm_new(BATCH_SPAN_PAGES), *want = bm_new(BATCH_SPAN_PAGES);
	struct dt_device *dev, *rdev;
	struct dt_dma_range r[100];

	assert_non_null(ref);
	batch_layout(io, mem);
	batch_layout(ref, mem);
	dev = attach(io, DT_DEVICE_LOGGING);
	rdev = attach(ref, DT_DEVICE_LOGGING);
	for (unsigned iter = 0; iter < 400; iter++) {
		unsigned n = 1 + (unsigned)rng_below(iter % 2 ? 100 : 20);
		int ret, want_ret = (int)n;

		for (unsigned i = 0; i < n; i++)
			r[i] = random_range();
		for (unsigned i = 0; i < n; i++) {
			int err = dt_dma_log(rdev, r[i].iova, r[i].len);

			if (err) {
				want_ret = i ? (int)i : err;
				break;
			}
		}
		ret = dt_dma_log_batch(dev, r, n);
		ctx_set("iteration %u, %u ranges (seed %" PRIu64 ")", iter, n, seed_value());
		EXPECT_EQ(ret, want_ret);
		memset(got, 0, bm_bytes(BATCH_SPAN_PAGES));
		memset(want, 0, bm_bytes(BATCH_SPAN_PAGES));
		EXPECT_EQ(vfio_get_bitmap(io, IOVA_BASE, BATCH_SPAN_PAGES * PG, PG, got,
					  bm_bytes(BATCH_SPAN_PAGES)),
			  0);
		EXPECT_EQ(vfio_get_bitmap(ref, IOVA_BASE, BATCH_SPAN_PAGES * PG, PG, want,
					  bm_bytes(BATCH_SPAN_PAGES)),
			  0);
		EXPECT_EQ(memcmp(got, want, bm_bytes(BATCH_SPAN_PAGES)), 0);
	}
	free(got);
	free(want);
	dt_iommu_free(ref);
}

static void test_dma_log_batch_errnos(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	struct dt_dma_range r[3] = {{IOVA_BASE, 1}, {IOVA_BASE + 2 * PG, PG}, {IOVA_BASE, 0}};

	map_region(io, IOVA_BASE, 4);
	ctx_set("NULL device, NULL ranges, too many, none");
	EXPECT_EQ(dt_dma_log_batch(NULL, r, 1), -EINVAL);
	EXPECT_EQ(dt_dma_log_batch(dev, NULL, 1), -EINVAL);
	EXPECT_EQ(dt_dma_log_batch(dev, r, (unsigned)INT_MAX + 1), -EINVAL);
	EXPECT_EQ(dt_dma_log_batch(dev, NULL, 0), 0);
	ctx_set("tracking off: logged, nothing marked");
	EXPECT_EQ(dt_dma_log_batch(dev, r, 2), 2);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 4, "");
	ctx_set("the third range is rejected: two logged");
	EXPECT_EQ(dt_dma_log_batch(dev, r, 3), 2);
	EXPECT_REPORT(io, IOVA_BASE, 4, "0,2");
	ctx_set("the first range is rejected: its errno, nothing marked");
	EXPECT_EQ(dt_dma_log_batch(dev, r + 2, 1), -EINVAL);
	EXPECT_REPORT(io, IOVA_BASE, 4, "");
}

static void test_tracking_off_marks_nothing(void **state)
{
	struct dt_iommu *io = *state;
	struct dt_device *emu = attach(io, DT_DEVICE_EMULATED);
	struct dt_device *dev = attach(io, DT_DEVICE_LOGGING);
	uint8_t data[64];

	memset(data, 1, sizeof(data));
	map_region(io, IOVA_BASE, 16);
	ctx_set("while tracking is off every call succeeds");
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE, 2 * PG), 0);
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 3 * PG, data, sizeof(data), true), 0);
	EXPECT_EQ(dt_dma_rw(dev, IOVA_BASE + 4 * PG, data, sizeof(data), true), 0);
	EXPECT_EQ(dt_pin_pages(emu, IOVA_BASE + 6 * PG, 1, PROT_READ, NULL), 1);
	EXPECT_EQ(dt_unpin_pages(emu, IOVA_BASE + 6 * PG, 1), 1);
	EXPECT_EQ(dt_pin_pages(dev, IOVA_BASE + 8 * PG, 1, PROT_READ, NULL), 1);
	EXPECT_EQ(dt_iommu_merge_back(io, IOVA_BASE + 10 * PG, PG), 0);
	ctx_set("and marks nothing: START, then report");
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 16, "");
	ctx_set("after a STOP the same calls mark nothing either");
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 12 * PG, PG), 0);
	EXPECT_EQ(vfio_dirty(io, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP), 0);
	EXPECT_EQ(dt_dma_log(dev, IOVA_BASE + 13 * PG, PG), 0);
	EXPECT_EQ(dt_dma_rw(emu, IOVA_BASE + 14 * PG, data, sizeof(data), true), 0);
	tracking_start(io);
	EXPECT_REPORT(io, IOVA_BASE, 16, "");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		UT(test_dma_rw_across_mappings),
		UT(test_dma_rw_many_mappings),
		UT(test_dma_rw_errnos),
		UT(test_dma_log),
		UT(test_lookup_cache),
		UT(test_lookup_cache_granule),
		UT(test_lookup_cache_wraps),
		UT(test_lookup_granule_follows_mappings),
		UT(test_dma_log_batch_vs_single),
		UT(test_dma_log_batch_errnos),
		UT(test_tracking_off_marks_nothing),
	};

	seed_init(argc, argv);
	return cmocka_run_group_tests_name("device_dma", tests, NULL, NULL);
}
