/* SPDX-License-Identifier: MIT */
/*
 * core/emit.h - the output side of a report: turns dirty container pages into a caller
 * bitmap at the report page size and/or coalesced runs (iova, length).
 *
 * Pages are given relative to the report base (which is aligned to the report page size),
 * in increasing order. Report page r covers container pages [r << k, (r + 1) << k); its bit
 * is set if any of them is dirty. Bitmap bits are OR-ed in; words that receive no set bit
 * are never touched. When the run callback fails, that run and every later page go to the
 * requeue hook instead (merge-back), so nothing harvested is lost.
 */
#ifndef DT_CORE_EMIT_H
#define DT_CORE_EMIT_H

#include <stdint.h>

#include <dirtytrack/iommu.h>

struct emit_sink {
	uint64_t base_iova;  /* report base, aligned to the report page */
	uint64_t end_iova;   /* base + length modulo 2^64 (runs are clipped to it) */
	unsigned page_shift; /* container page shift */
	unsigned k;	     /* log2(report page / container page) */
	void *bitmap;	     /* optional */
	dt_run_fn run;	     /* optional */
	void *opaque;
	/* Merge-back of container pages [page_rel, page_rel + n) after a run failure. */
	void (*requeue)(void *ctx, uint64_t page_rel, uint64_t n);
	void *requeue_ctx;
	/* private */
	uint64_t run_start, run_len; /* pending run, in report pages; run_len 0: none */
	int err;
};

void emit_init(struct emit_sink *s);
void emit_word(struct emit_sink *s, uint64_t page_rel, uint64_t w);
/* Container pages [page_rel, page_rel + n) all dirty. */
void emit_range(struct emit_sink *s, uint64_t page_rel, uint64_t n);
/* Flush the pending run; returns the first non-zero run result, or 0. */
int emit_finish(struct emit_sink *s);

#endif
