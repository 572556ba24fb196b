/* SPDX-License-Identifier: MIT */
/*
 * core/emit.c - report output: caller bitmap and coalesced runs (see emit.h).
 *
 * Invariant: every page handed to emit_word() ends up in the bitmap (if any) and either in
 * a run delivered with a zero return or in the requeue hook. Never both dropped.
 */
#include "core/emit.h"

#include "core/bitops.h"

void emit_init(struct emit_sink *s)
{
	s->run_len = 0;
	s->run_start = 0;
	s->err = 0;
}

/* Hand report pages [rp, rp + n) back, clipped to the report's range: the last report page
 * may reach past it, and pages beyond the range are not this report's. */
static void requeue_report_pages(struct emit_sink *s, uint64_t rp, uint64_t n)
{
	uint64_t first = rp << s->k, count = n << s->k;
	uint64_t range_pages = (s->end_iova - s->base_iova) >> s->page_shift;

	if (first >= range_pages)
		return;
	if (count > range_pages - first)
		count = range_pages - first;
	if (s->requeue)
		s->requeue(s->requeue_ctx, first, count);
}

static void run_flush(struct emit_sink *s)
{
	unsigned shift = s->page_shift + s->k;
	uint64_t iova, len;
	int ret;

	if (!s->run_len)
		return;
	if (s->err) {
		requeue_report_pages(s, s->run_start, s->run_len);
		s->run_len = 0;
		return;
	}
	iova = s->base_iova + (s->run_start << shift);
	len = s->run_len << shift;
	if (len > s->end_iova - iova) /* modulo 2^64: end_iova 0 is the top of the space */
		len = s->end_iova - iova;
	ret = s->run(s->opaque, iova, len);
	if (ret) {
		s->err = ret;
		requeue_report_pages(s, s->run_start, s->run_len);
	}
	s->run_len = 0;
}

/* Add report pages [rp, rp + n) to the runs; they never start before the pending run. */
static void run_add(struct emit_sink *s, uint64_t rp, uint64_t n)
{
	if (s->run_len && rp <= s->run_start + s->run_len) {
		uint64_t end = rp + n;

		if (end > s->run_start + s->run_len)
			s->run_len = end - s->run_start;
		return;
	}
	run_flush(s);
	s->run_start = rp;
	s->run_len = n;
}

static void emit_word_runs(struct emit_sink *s, uint64_t page_rel, uint64_t w)
{
	/* A full word that continues the pending run (a dense report): extend it. */
	if (w == ~0ull && !s->k && s->run_len && page_rel == s->run_start + s->run_len) {
		s->run_len += 64;
		return;
	}
	while (w) {
		unsigned b = ctz64(w);
		uint64_t rest = ~(w >> b);
		unsigned len = rest ? ctz64(rest) : 64 - b;
		uint64_t first = (page_rel + b) >> s->k, last = (page_rel + b + len - 1) >> s->k;

		run_add(s, first, last - first + 1);
		w = b + len >= 64 ? 0 : w & (~0ull << (b + len));
	}
}

static void emit_word_bitmap(struct emit_sink *s, uint64_t page_rel, uint64_t w)
{
	if (!s->k) {
		ubuf_or_at(s->bitmap, page_rel, w);
		return;
	}
	while (w) {
		uint64_t p = page_rel + ctz64(w), rp = p >> s->k;
		uint64_t next = (rp + 1) << s->k; /* first page of the next report page */

		ubuf_or(s->bitmap, rp / 64, 1ull << (rp % 64));
		if (next - page_rel >= 64)
			break;
		w &= ~0ull << (next - page_rel);
	}
}

void emit_word(struct emit_sink *s, uint64_t page_rel, uint64_t w)
{
	if (!w)
		return;
	if (s->bitmap)
		emit_word_bitmap(s, page_rel, w);
	if (s->run)
		emit_word_runs(s, page_rel, w);
}

void emit_range(struct emit_sink *s, uint64_t page_rel, uint64_t n)
{
	uint64_t first = page_rel >> s->k, last = (page_rel + n - 1) >> s->k;

	if (!n)
		return;
	if (s->bitmap)
		ubuf_set_range(s->bitmap, first, last - first + 1);
	if (s->run)
		run_add(s, first, last - first + 1);
}

int emit_finish(struct emit_sink *s)
{
	if (s->run)
		run_flush(s);
	return s->err;
}
