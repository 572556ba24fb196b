/* SPDX-License-Identifier: MIT */
/*
 * core/harvest.h - one mapping's report: the union of its one-shot class bitmaps, its pinned
 * set and the whole-mapping fallback, with a count per class, emitted word by word.
 *
 * The cost is in proportion to the words that hold bits in any class (hints), except in
 * whole-mapping mode where every word is dirty anyway.
 */
#ifndef DT_CORE_HARVEST_H
#define DT_CORE_HARVEST_H

#include <stdbool.h>
#include <stdint.h>

#include "core/emit.h"
#include "core/sbitmap.h"

#define HARVEST_MAX_CLASSES 5

struct harvest_src {
	struct sbitmap *cls[HARVEST_MAX_CLASSES]; /* one-shot classes, ncls of them, none NULL */
	unsigned ncls;
	bool take;		      /* read and clear: the caller guarantees exclusivity */
	const struct sbitmap *pinned; /* perpetual class, never cleared; may be NULL */
	bool skip_pinned;	      /* leave pinned pages out of the output */
	bool whole;		      /* every page is dirty */
	uint64_t npages;	      /* all bitmaps have this many bits */
	/* Optional per-class outputs (container pages, at the sink's page_rel): each class's
	 * bits are OR-ed in before the union; outputs may alias. */
	void *cls_out[HARVEST_MAX_CLASSES];
	void *pinned_out, *whole_out;
	bool class_out; /* any of them set */
};

struct harvest_counts {
	uint64_t cls[HARVEST_MAX_CLASSES];
	uint64_t pinned, whole, total;
};

/* Emit the mapping's dirty pages with page 0 at page_rel; adds to *counts. */
void harvest_mapping(const struct harvest_src *src, uint64_t page_rel, struct emit_sink *sink,
		     struct harvest_counts *counts);

#endif
