/* SPDX-License-Identifier: MIT */
/*
 * tests/core/test_emit_harvest.c - the report output (core/emit.c) and the per-mapping
 * harvest loop (core/harvest.c) against a naive per-page model.
 *
 * emit: random dirty words at page offsets that are not multiples of 64, report page shifts
 * k = 0..9, caller bitmaps at unaligned addresses (their other bytes must not change), runs
 * coalesced and clipped to end_iova, and a run callback that fails: that run and every later
 * page must reach the requeue hook, and no page may be both delivered and requeued.
 *
 * harvest: up to 4 one-shot classes + a pinned set, whole / skip_pinned / take / read,
 * several mappings into one sink: the exact union and the per-class counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>

#include "core/emit.h"
#include "core/harvest.h"
#include "core/sbitmap.h"
#include "test_util.h"

#define PAGE_SHIFT 12u

static const size_t buf_offsets[] = {0, 1, 7, 2048, 4096, 0xff1};

/* ---- what the sink saw ------------------------------------------------------------------- */

struct run_rec {
	uint64_t iova, len;
	int ret;
};

struct rq_rec {
	uint64_t page_rel, n;
};

struct seen {
	struct run_rec *runs;
	size_t nruns, cap_runs;
	struct rq_rec *rq;
	size_t nrq, cap_rq;
	long fail_at; /* index of the run whose callback fails, or -1 */
};

static int record_run(void *opaque, uint64_t iova, uint64_t len)
{
	struct seen *s = opaque;
	int ret = (long)s->nruns == s->fail_at ? -100 - (int)s->nruns : 0;

	if (s->nruns == s->cap_runs) {
		s->cap_runs = s->cap_runs ? 2 * s->cap_runs : 64;
		s->runs = realloc(s->runs, s->cap_runs * sizeof(*s->runs));
		assert_non_null(s->runs);
	}
	s->runs[s->nruns++] = (struct run_rec){iova, len, ret};
	return ret;
}

static void record_requeue(void *ctx, uint64_t page_rel, uint64_t n)
{
	struct seen *s = ctx;

	if (s->nrq == s->cap_rq) {
		s->cap_rq = s->cap_rq ? 2 * s->cap_rq : 64;
		s->rq = realloc(s->rq, s->cap_rq * sizeof(*s->rq));
		assert_non_null(s->rq);
	}
	s->rq[s->nrq++] = (struct rq_rec){page_rel, n};
}

static void seen_free(struct seen *s)
{
	free(s->runs);
	free(s->rq);
}

/* ---- the naive expectation ---------------------------------------------------------------- */

/*
 * Given the dirty container pages (dirty[p], p < npages, relative to the report base), the
 * report page shift k, the base and end iova: the runs of dirty report pages.
 */
struct exp_run {
	uint64_t rp_first, rp_last; /* report pages */
	uint64_t iova, len;	    /* clipped to end */
};

static size_t expected_runs(const uint8_t *dirty, uint64_t npages, unsigned k, uint64_t base,
			    uint64_t end, struct exp_run *out)
{
	uint64_t nrp = (npages + (1ull << k) - 1) >> k;
	size_t n = 0;

	for (uint64_t rp = 0; rp < nrp; rp++) {
		bool d = false;

		for (uint64_t p = rp << k; p < ((rp + 1) << k) && p < npages; p++)
			d |= dirty[p];
		if (!d)
			continue;
		if (n && out[n - 1].rp_last + 1 == rp) {
			out[n - 1].rp_last = rp;
		} else {
			out[n].rp_first = out[n].rp_last = rp;
			n++;
		}
	}
	for (size_t i = 0; i < n; i++) {
		out[i].iova = base + (out[i].rp_first << (PAGE_SHIFT + k));
		out[i].len = (out[i].rp_last - out[i].rp_first + 1) << (PAGE_SHIFT + k);
		if (out[i].len > end - out[i].iova)
			out[i].len = end - out[i].iova;
	}
	return n;
}

/* The caller buffer: garbage around and in the bitmap; the bitmap bits are OR-ed in. */
struct ubuf {
	uint8_t *mem, *before;
	size_t off, bytes; /* bitmap at mem + off, bytes long; mem holds off + bytes */
};

static void ubuf_make(struct ubuf *b, size_t off, uint64_t nbits)
{
	b->off = off;
	b->bytes = (nbits + 63) / 64 * 8;
	/* Exactly off + bytes: ASan catches a write past the bitmap. */
	b->mem = malloc(off + b->bytes + 1);
	b->before = malloc(off + b->bytes + 1);
	assert_non_null(b->mem);
	assert_non_null(b->before);
	for (size_t i = 0; i < off + b->bytes; i++)
		b->mem[i] = rng_below(3) ? 0 : (uint8_t)rng_next();
	memcpy(b->before, b->mem, off + b->bytes);
}

static void ubuf_check(const struct ubuf *b, const uint8_t *report_dirty, uint64_t nbits)
{
	for (size_t i = 0; i < b->off + b->bytes; i++) {
		uint8_t want = b->before[i];

		if (i >= b->off) {
			uint64_t bit0 = (i - b->off) * 8;

			for (unsigned j = 0; j < 8; j++)
				if (bit0 + j < nbits && report_dirty[bit0 + j])
					want |= 1u << j;
		}
		if (b->mem[i] != want) {
			ctx_set("caller bitmap at +0x%zx: byte %zd from the bitmap start", b->off,
				(ssize_t)i - (ssize_t)b->off);
			EXPECT_EQ(b->mem[i], want);
			return;
		}
	}
}

static void ubuf_free(struct ubuf *b)
{
	free(b->mem);
	free(b->before);
}

/*
 * Check the runs and the requeues against the dirty set. fail_at: the failing run or -1.
 * Every dirty page is in exactly one of: a run delivered with 0, a requeued range; the
 * requeued ranges cover whole report pages of the failed runs, within [0, npages).
 */
static void check_runs(const struct seen *s, const uint8_t *dirty, uint64_t npages, unsigned k,
		       uint64_t base, uint64_t end, int finish_ret)
{
	struct exp_run *er = calloc(npages + 1, sizeof(*er));
	uint8_t *rq = calloc(npages + 1, 1);
	size_t n = expected_runs(dirty, npages, k, base, end, er);
	size_t calls = s->fail_at >= 0 && (size_t)s->fail_at < n ? (size_t)s->fail_at + 1 : n;

	assert_non_null(er);
	assert_non_null(rq);
	ctx_set("k %u, %" PRIu64 " pages: run callbacks (%zu runs, failing run %ld)", k, npages, n,
		s->fail_at);
	EXPECT_EQ(s->nruns, calls);
	for (size_t i = 0; i < s->nruns && i < calls; i++) {
		ctx_set("k %u, %" PRIu64 " pages: run %zu of %zu (report pages %" PRIu64
			"..%" PRIu64 "): iova",
			k, npages, i, n, er[i].rp_first, er[i].rp_last);
		EXPECT_EQ(s->runs[i].iova, er[i].iova);
		ctx_set("k %u, %" PRIu64 " pages: run %zu of %zu (report pages %" PRIu64
			"..%" PRIu64 "): length",
			k, npages, i, n, er[i].rp_first, er[i].rp_last);
		EXPECT_EQ(s->runs[i].len, er[i].len);
	}
	ctx_set("k %u: emit_finish() return", k);
	EXPECT_EQ((int64_t)finish_ret,
		  (int64_t)(s->fail_at >= 0 && (size_t)s->fail_at < n ? -100 - s->fail_at : 0));

	/* Requeued container pages: in range, each at most once. */
	for (size_t i = 0; i < s->nrq; i++) {
		ctx_set("k %u, %" PRIu64 " pages: requeue %zu [%" PRIu64 ", +%" PRIu64
			") must lie in the report",
			k, npages, i, s->rq[i].page_rel, s->rq[i].n);
		EXPECT_TRUE(s->rq[i].n > 0);
		EXPECT_TRUE(s->rq[i].page_rel + s->rq[i].n <= npages);
		for (uint64_t p = s->rq[i].page_rel;
		     p < s->rq[i].page_rel + s->rq[i].n && p < npages; p++) {
			ctx_set("k %u, %" PRIu64 " pages: page %" PRIu64 " requeued twice", k,
				npages, p);
			EXPECT_EQ(rq[p], 0);
			rq[p] = 1;
		}
	}
	/* A dirty page: requeued iff its run failed or came after the failed one. */
	for (size_t i = 0; i < n; i++) {
		bool failed = s->fail_at >= 0 && i >= (size_t)s->fail_at;

		for (uint64_t p = er[i].rp_first << k; p < ((er[i].rp_last + 1) << k) && p < npages;
		     p++) {
			ctx_set("k %u, %" PRIu64 " pages: page %" PRIu64 " (run %zu, %s): requeued",
				k, npages, p, i, failed ? "failed" : "delivered");
			if (failed)
				EXPECT_EQ(rq[p], 1); /* the whole report page goes back */
			else
				EXPECT_EQ(rq[p], 0);
			rq[p] = 0;
		}
	}
	/* Nothing else was requeued (pages outside any run). */
	for (uint64_t p = 0; p < npages; p++) {
		ctx_set("k %u, %" PRIu64 " pages: page %" PRIu64 " requeued outside any failed run",
			k, npages, p);
		EXPECT_EQ(rq[p], 0);
	}
	free(er);
	free(rq);
}

static void report_pages_of(const uint8_t *dirty, uint64_t npages, unsigned k, uint8_t *rdirty)
{
	for (uint64_t p = 0; p < npages; p++)
		if (dirty[p])
			rdirty[p >> k] = 1;
}

/* ---- emit vs naive ------------------------------------------------------------------------- */

static uint64_t random_word(void)
{
	switch (rng_below(6)) {
	case 0:
		return 0;
	case 1:
		return ~0ull;
	case 2:
		return 1ull << rng_below(64);
	case 3:
		return rng_next() & rng_next() & rng_next();
	case 4: /* one run */
	{
		unsigned lo = (unsigned)rng_below(64), hi = lo + 1 + (unsigned)rng_below(64 - lo);

		return (hi >= 64 ? ~0ull : (1ull << hi) - 1) & (~0ull << lo);
	}
	default:
		return rng_next();
	}
}

static void emit_case(unsigned k, size_t buf_off, bool with_bitmap, bool with_runs, long fail_at,
		      uint64_t npages)
{
	uint64_t nrp = (npages + (1ull << k) - 1) >> k;
	uint64_t base = rng_below(1u << 20) << (PAGE_SHIFT + k);
	uint64_t end = base + (npages << PAGE_SHIFT);
	uint8_t *dirty = calloc(npages + 64, 1), *rdirty = calloc(nrp + 1, 1);
	struct seen seen = {.fail_at = fail_at};
	struct emit_sink s = {0};
	struct ubuf ub = {0};
	int ret;

	assert_non_null(dirty);
	assert_non_null(rdirty);
	if (with_bitmap)
		ubuf_make(&ub, buf_off, nrp);
	s.base_iova = base;
	s.end_iova = end;
	s.page_shift = PAGE_SHIFT;
	s.k = k;
	s.bitmap = with_bitmap ? ub.mem + ub.off : NULL;
	s.run = with_runs ? record_run : NULL;
	s.opaque = &seen;
	s.requeue = record_requeue;
	s.requeue_ctx = &seen;
	emit_init(&s);

	/* Words at increasing, mostly unaligned page offsets; never past npages. */
	for (uint64_t p = rng_below(130); p < npages;) {
		uint64_t w = random_word();

		if (npages - p < 64)
			w &= (1ull << (npages - p)) - 1;
		for (unsigned j = 0; j < 64; j++)
			if ((w >> j) & 1)
				dirty[p + j] = 1;
		emit_word(&s, p, w);
		p += 64 + (rng_below(3) ? 0 : rng_below(rng_below(2) ? 5 : 700));
	}
	ret = emit_finish(&s);
	report_pages_of(dirty, npages, k, rdirty);
	if (with_bitmap) {
		ctx_set("k %u, %" PRIu64 " pages, bitmap at +0x%zx", k, npages, buf_off);
		ubuf_check(&ub, rdirty, nrp);
		ubuf_free(&ub);
	}
	if (with_runs) {
		check_runs(&seen, dirty, npages, k, base, end, ret);
	} else {
		ctx_set("k %u: no run callback: emit_finish() and requeues", k);
		EXPECT_EQ(ret, 0);
		EXPECT_EQ(seen.nrq, 0);
	}
	seen_free(&seen);
	free(dirty);
	free(rdirty);
}

/* Report page sizes whose page count is a multiple of the report page, so runs never reach
 * past end_iova; the clipping of the last run is tested on its own below. */
static uint64_t npages_for(unsigned k, bool multiple)
{
	uint64_t n = 1 + rng_below(rng_below(4) ? 3000 : 40000);

	if (multiple)
		n = ((n + (1ull << k) - 1) >> k) << k;
	return n;
}

static void test_emit_vs_naive(void **state)
{
	(void)state;
	rng_reseed(1);
	for (unsigned k = 0; k <= 9; k++)
		for (unsigned i = 0; i < 60; i++) {
			bool bm = rng_below(4), runs = !bm || rng_below(4);
			long fail_at = rng_below(2) ? -1 : (long)rng_below(rng_below(2) ? 3 : 40);

			emit_case(k, buf_offsets[rng_below(6)], bm, runs, fail_at,
				  npages_for(k, true));
		}
}

/* The last report page reaches past end_iova: the run is clipped, bits still land. */
static void test_emit_clip_to_end(void **state)
{
	(void)state;
	rng_reseed(2);
	for (unsigned k = 1; k <= 9; k++)
		for (unsigned i = 0; i < 30; i++)
			emit_case(k, buf_offsets[rng_below(6)], rng_below(2), true, -1,
				  npages_for(k, false));
}

/* Same, with a failing run: the requeued pages must stay inside the report. */
static void test_emit_requeue_clipped_to_end(void **state)
{
	(void)state;
	rng_reseed(3);
	for (unsigned k = 1; k <= 9; k++)
		for (unsigned i = 0; i < 30; i++)
			emit_case(k, buf_offsets[rng_below(6)], rng_below(2), true,
				  (long)rng_below(4), npages_for(k, false));
}

/* A fixed case for the report: 3 pages at k = 1 (8 KiB report pages over 12 KiB), all
 * dirty, the only run fails. Requeue must be pages [0, 3), not [0, 4). */
static void test_emit_requeue_last_page(void **state)
{
	struct seen seen = {.fail_at = 0};
	struct emit_sink s = {.base_iova = 0x100000,
			      .end_iova = 0x100000 + 3 * 4096,
			      .page_shift = PAGE_SHIFT,
			      .k = 1,
			      .run = record_run,
			      .opaque = &seen,
			      .requeue = record_requeue,
			      .requeue_ctx = &seen};

	(void)state;
	emit_init(&s);
	emit_word(&s, 0, 0x7);
	ctx_set("emit_finish with the run failing");
	EXPECT_EQ((int64_t)emit_finish(&s), -100);
	ctx_set("the run: iova 0x100000, length clipped to 0x3000");
	EXPECT_EQ(seen.nruns, 1);
	EXPECT_EQ(seen.runs[0].len, 0x3000);
	ctx_set("requeue calls");
	EXPECT_EQ(seen.nrq, 1);
	ctx_set("requeued page_rel");
	EXPECT_EQ(seen.rq[0].page_rel, 0);
	ctx_set("requeued pages of a 3-page report (page 3 lies past end_iova)");
	EXPECT_EQ(seen.rq[0].n, 3);
	seen_free(&seen);
}

/* ---- harvest vs naive ------------------------------------------------------------------------ */

struct hmap {
	uint64_t npages, page_rel;
	struct sbitmap cls[HARVEST_MAX_CLASSES], pinned;
	uint8_t *mcls[HARVEST_MAX_CLASSES], *mpinned; /* the model, one byte per page */
	bool has_cls[HARVEST_MAX_CLASSES], has_pinned;
	struct harvest_src src;
};

static void fill_random(struct sbitmap *b, uint8_t *model, uint64_t npages)
{
	unsigned kind = (unsigned)rng_below(7);
	uint64_t n;

	switch (kind) {
	case 5: /* whole blocks of 64 words (one summary word), the bulk-copy case */
	case 6:
		n = 1 + rng_below(3);
		for (uint64_t i = 0; i < n && npages >= 4096; i++) {
			uint64_t f = rng_below(npages / 4096) * 4096;

			sbm_set_range(b, f, 4096);
			memset(model + f, 1, 4096);
		}
		if (kind == 6 && npages > 64) {
			/* ... and more than 8 dirty words in a summary word elsewhere */
			for (uint64_t i = 0; i < 12; i++) {
				uint64_t p = rng_below(npages);

				sbm_set_range(b, p, 1);
				model[p] = 1;
			}
		}
		return;
	case 0: /* empty */
		return;
	case 1: /* a few bits */
		n = 1 + rng_below(8);
		break;
	case 2: /* ranges */
		n = 1 + rng_below(6);
		for (uint64_t i = 0; i < n; i++) {
			uint64_t f = rng_below(npages), len = 1 + rng_below(npages - f);

			if (rng_below(2) && len > 200)
				len = 1 + rng_below(200);
			sbm_set_range(b, f, len);
			memset(model + f, 1, len);
		}
		return;
	case 3: /* dense */
		n = npages / 2 + 1;
		break;
	default:
		n = 1 + rng_below(npages / 16 + 1);
		break;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = rng_below(npages);

		sbm_set_range(b, p, 1);
		model[p] = 1;
	}
}

static void hmap_make(struct hmap *h, uint64_t npages, uint64_t page_rel, unsigned ncls, bool take,
		      bool whole, bool skip_pinned)
{
	memset(h, 0, sizeof(*h));
	h->npages = npages;
	h->page_rel = page_rel;
	h->src.ncls = ncls;
	h->src.take = take;
	h->src.whole = whole;
	h->src.skip_pinned = skip_pinned;
	h->src.npages = npages;
	/* Every class present (harvest.h: none NULL); the pinned set is optional, and with
	 * no class at all (the pinned-only query) it is the geometry. */
	h->has_pinned = !ncls || rng_below(4) != 0;
	for (unsigned i = 0; i < ncls; i++)
		h->has_cls[i] = true;
	/* A third of the mappings have a single dirty class, so whole summary words of one
	 * class (the bulk path) are common. */
	unsigned only = rng_below(3) ? HARVEST_MAX_CLASSES : (unsigned)rng_below(ncls ? ncls : 1);

	for (unsigned i = 0; i < ncls; i++) {
		assert_int_equal(sbm_init(&h->cls[i], npages), 0);
		h->mcls[i] = calloc(npages, 1);
		assert_non_null(h->mcls[i]);
		if (only == HARVEST_MAX_CLASSES || only == i)
			fill_random(&h->cls[i], h->mcls[i], npages);
		h->src.cls[i] = &h->cls[i];
	}
	if (h->has_pinned) {
		assert_int_equal(sbm_init(&h->pinned, npages), 0);
		h->mpinned = calloc(npages, 1);
		assert_non_null(h->mpinned);
		if (only == HARVEST_MAX_CLASSES)
			fill_random(&h->pinned, h->mpinned, npages);
		h->src.pinned = &h->pinned;
	}
}

static void hmap_free(struct hmap *h)
{
	for (unsigned i = 0; i < HARVEST_MAX_CLASSES; i++) {
		if (h->has_cls[i])
			sbm_destroy(&h->cls[i]);
		free(h->mcls[i]);
	}
	if (h->has_pinned)
		sbm_destroy(&h->pinned);
	free(h->mpinned);
}

/* Naive output and counts of one mapping; sets out[page_rel + p]. */
static void hmap_expect(const struct hmap *h, uint8_t *out, struct harvest_counts *c)
{
	for (uint64_t p = 0; p < h->npages; p++) {
		bool u = false, pin = h->has_pinned && h->mpinned[p];

		for (unsigned i = 0; i < h->src.ncls; i++)
			if (h->has_cls[i] && h->mcls[i][p]) {
				c->cls[i]++;
				u = true;
			}
		c->pinned += pin;
		if (h->src.whole) {
			c->whole++;
			u = true;
		}
		if (h->src.skip_pinned)
			u = u && !pin;
		else
			u = u || pin;
		c->total += u;
		if (u)
			out[h->page_rel + p] = 1;
	}
}

static void hmap_check_after(struct hmap *h, unsigned m)
{
	for (unsigned i = 0; i < h->src.ncls; i++) {
		if (!h->has_cls[i])
			continue;
		for (uint64_t w = 0; w < h->cls[i].nwords; w++) {
			uint64_t want = 0;

			if (!h->src.take)
				for (unsigned j = 0; j < 64 && w * 64 + j < h->npages; j++)
					want |= (uint64_t)h->mcls[i][w * 64 + j] << j;
			if (sbm_load_word(&h->cls[i], w) != want) {
				ctx_set("mapping %u class %u after %s: word %" PRIu64, m, i,
					h->src.take ? "take" : "read", w);
				EXPECT_EQ(sbm_load_word(&h->cls[i], w), want);
				break;
			}
		}
		if (h->src.take) {
			ctx_set("mapping %u class %u after take: hints left", m, i);
			EXPECT_EQ(sbm_next_hinted_word(&h->cls[i], 0), h->cls[i].nwords);
		} else {
			/* A read leaves every set word reachable. */
			for (uint64_t w = 0; w < h->cls[i].nwords; w++)
				if (sbm_load_word(&h->cls[i], w)) {
					ctx_set("mapping %u class %u after read: hint of word %" PRIu64,
						m, i, w);
					EXPECT_TRUE(sbm_next_hinted_word(&h->cls[i], w) == w);
				}
		}
	}
	if (h->has_pinned)
		for (uint64_t p = 0; p < h->npages; p++)
			if (sbm_test(&h->pinned, p) != h->mpinned[p]) {
				ctx_set("mapping %u: pinned bit %" PRIu64 " (never cleared)", m, p);
				EXPECT_EQ(sbm_test(&h->pinned, p), h->mpinned[p]);
				break;
			}
}

static const uint64_t harvest_sizes[] = {1,    4,     63,    64,    65,	   160,
					 4096, 16384, 32768, 32769, 70000, 262145};

static void harvest_case(unsigned iter)
{
	unsigned nmaps = 1 + (unsigned)rng_below(3), k = rng_below(2) ? 0 : (unsigned)rng_below(4);
	unsigned ncls = (unsigned)rng_below(HARVEST_MAX_CLASSES + 1);
	/* Output: bitmap only (the fast path when k = 0), runs only, or both. */
	unsigned out_mode = (unsigned)rng_below(3);
	bool aligned = rng_below(2); /* mappings at multiples of 64 pages */
	bool take = rng_below(2), whole_any = rng_below(4) == 0, skip = rng_below(3) == 0;
	struct hmap h[3];
	struct harvest_counts got, want, start;
	uint64_t rel = aligned ? 64 * rng_below(3) : rng_below(150), total_pages, nrp;
	uint8_t *out, *rout;
	struct seen seen = {.fail_at = -1};
	struct emit_sink s = {0};
	struct ubuf ub;
	int ret;

	for (unsigned m = 0; m < nmaps; m++) {
		uint64_t np = harvest_sizes[rng_below(sizeof(harvest_sizes) / 8)];

		if (np > 20000 && rng_below(2))
			np = 1 + rng_below(3000);
		hmap_make(&h[m], np, rel, ncls, take, whole_any && rng_below(2), skip);
		/* The next mapping: adjacent, or after a hole. */
		rel += np + (rng_below(2) ? 0 : rng_below(300));
		if (aligned)
			rel = (rel + 63) / 64 * 64;
	}
	total_pages = rel;
	nrp = (total_pages + (1ull << k) - 1) >> k;
	out = calloc(total_pages + 1, 1);
	rout = calloc(nrp + 1, 1);
	assert_non_null(out);
	assert_non_null(rout);
	ubuf_make(&ub, buf_offsets[rng_below(6)], nrp);
	s.base_iova = 0x40000000ull;
	s.end_iova = s.base_iova + (total_pages << PAGE_SHIFT);
	s.page_shift = PAGE_SHIFT;
	s.k = k;
	s.bitmap = out_mode != 1 ? ub.mem + ub.off : NULL;
	s.run = out_mode != 0 ? record_run : NULL;
	s.opaque = &seen;
	s.requeue = record_requeue;
	s.requeue_ctx = &seen;
	emit_init(&s);
	/* Counts add up: start from garbage. */
	start.pinned = rng_next() >> 8;
	start.whole = rng_next() >> 8;
	start.total = rng_next() >> 8;
	for (unsigned i = 0; i < HARVEST_MAX_CLASSES; i++)
		start.cls[i] = rng_next() >> 8;
	got = start;
	want = start;
	for (unsigned m = 0; m < nmaps; m++) {
		harvest_mapping(&h[m].src, h[m].page_rel, &s, &got);
		hmap_expect(&h[m], out, &want);
	}
	ret = emit_finish(&s);
	ctx_set("harvest case %u: %u mappings, %u classes, take %d, skip_pinned %d, whole %d%d%d, k "
		"%u, output %s, aligned %d",
		iter, nmaps, ncls, take, skip, nmaps > 0 && h[0].src.whole,
		nmaps > 1 && h[1].src.whole, nmaps > 2 && h[2].src.whole, k,
		out_mode == 0	? "bitmap"
		: out_mode == 1 ? "runs"
				: "both",
		aligned);
	for (unsigned i = 0; i < HARVEST_MAX_CLASSES; i++)
		EXPECT_EQ(got.cls[i] - start.cls[i], want.cls[i] - start.cls[i]);
	EXPECT_EQ(got.pinned - start.pinned, want.pinned - start.pinned);
	EXPECT_EQ(got.whole - start.whole, want.whole - start.whole);
	EXPECT_EQ(got.total - start.total, want.total - start.total);
	report_pages_of(out, total_pages, k, rout);
	if (s.bitmap)
		ubuf_check(&ub, rout, nrp);
	if (s.run)
		check_runs(&seen, out, total_pages, k, s.base_iova, s.end_iova, ret);
	for (unsigned m = 0; m < nmaps; m++) {
		hmap_check_after(&h[m], m);
		hmap_free(&h[m]);
	}
	ubuf_free(&ub);
	seen_free(&seen);
	free(out);
	free(rout);
}

static void test_harvest_vs_naive(void **state)
{
	(void)state;
	rng_reseed(4);
	for (unsigned i = 0; i < 400; i++)
		harvest_case(i);
}

/*
 * Rounds of mark, take, mark again on the same bitmaps, as a migration does: chunks parked
 * for reuse by one take must come back zeroed for the next marks. The second harvest of a
 * round (nothing marked in between) holds only the pinned pages.
 */
static void test_harvest_take_rounds(void **state)
{
	(void)state;
	rng_reseed(5);
	for (unsigned iter = 0; iter < 30; iter++) {
		uint64_t np = harvest_sizes[rng_below(sizeof(harvest_sizes) / 8)];
		struct hmap h;

		hmap_make(&h, np, 0, HARVEST_MAX_CLASSES, true, false, rng_below(2));
		for (unsigned round = 0; round < 6; round++) {
			struct harvest_counts got = {0}, want = {0};
			struct emit_sink s = {0};
			struct ubuf ub;
			uint8_t *out = calloc(np, 1);

			assert_non_null(out);
			ubuf_make(&ub, buf_offsets[rng_below(6)], np);
			for (size_t i = 0; i < ub.off + ub.bytes; i++)
				ub.mem[i] = ub.before[i] = 0;
			s.page_shift = PAGE_SHIFT;
			s.end_iova = np << PAGE_SHIFT;
			s.bitmap = ub.mem + ub.off;
			emit_init(&s);
			if (round % 2 == 0)
				for (unsigned i = 0; i < HARVEST_MAX_CLASSES; i++)
					fill_random(&h.cls[i], h.mcls[i], np);
			harvest_mapping(&h.src, 0, &s, &got);
			hmap_expect(&h, out, &want);
			ctx_set("take rounds: iteration %u round %u, %" PRIu64 " pages", iter,
				round, np);
			for (unsigned i = 0; i < HARVEST_MAX_CLASSES; i++)
				EXPECT_EQ(got.cls[i], want.cls[i]);
			EXPECT_EQ(got.pinned, want.pinned);
			EXPECT_EQ(got.total, want.total);
			ubuf_check(&ub, out, np);
			hmap_check_after(&h, 0);
			for (unsigned i = 0; i < HARVEST_MAX_CLASSES; i++)
				memset(h.mcls[i], 0, np);
			ubuf_free(&ub);
			free(out);
		}
		hmap_free(&h);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_emit_vs_naive),
		cmocka_unit_test(test_emit_clip_to_end),
		cmocka_unit_test(test_emit_requeue_clipped_to_end),
		cmocka_unit_test(test_emit_requeue_last_page),
		cmocka_unit_test(test_harvest_vs_naive),
		cmocka_unit_test(test_harvest_take_rounds),
	};

	test_seed_init(argc, argv);
	return cmocka_run_group_tests_name("emit_harvest", tests, NULL, NULL);
}
