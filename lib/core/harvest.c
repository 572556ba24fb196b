/* SPDX-License-Identifier: MIT */
/*
 * core/harvest.c - the per-mapping report loop (see harvest.h).
 *
 * It walks chunk by chunk over the union of the top hints of every bitmap, then summary by
 * summary over the union of the chunks' hints, so a class that holds nothing costs one load
 * per 64 chunks. In take mode the caller owns the class bitmaps (the report swapped them out
 * and waited for a grace period), so leaves and hints are cleared with plain stores: no
 * locked instruction per word, which is what keeps a 100 % dirty report near memcpy speed.
 */
#include "core/harvest.h"

#include "core/bitops.h"

#define RELAXED memory_order_relaxed

static uint64_t chunk_word_mask(uint32_t nwords, unsigned s)
{
	uint32_t lo = s * 64;

	if (nwords <= lo)
		return 0;
	return nwords - lo >= 64 ? ~0ull : (1ull << (nwords - lo)) - 1;
}

struct chunk_view {
	struct sbm_chunk *cls[HARVEST_MAX_CLASSES];
	struct sbm_chunk *pinned;
};

static void harvest_word(const struct harvest_src *src, const struct chunk_view *v, uint32_t wi,
			 uint64_t word, struct emit_sink *sink, uint64_t page_rel,
			 struct harvest_counts *counts)
{
	uint64_t u = 0, p = 0;

	for (unsigned i = 0; i < src->ncls; i++) {
		uint64_t x;

		if (!v->cls[i])
			continue;
		x = atomic_load_explicit(&v->cls[i]->leaf[wi], RELAXED);
		if (!x)
			continue;
		if (src->take)
			atomic_store_explicit(&v->cls[i]->leaf[wi], 0, RELAXED);
		counts->cls[i] += popcount64(x);
		u |= x;
	}
	if (v->pinned) {
		p = atomic_load_explicit(&v->pinned->leaf[wi], RELAXED);
		counts->pinned += popcount64(p);
	}
	if (src->whole) {
		uint64_t valid = (word + 1) * 64 <= src->npages
					 ? ~0ull
					 : mask_range(0, (unsigned)(src->npages - word * 64));

		counts->whole += popcount64(valid);
		u = valid;
	}
	if (src->skip_pinned)
		u &= ~p;
	else
		u |= p;
	counts->total += popcount64(u);
	emit_word(sink, page_rel + word * 64, u);
}

static void harvest_chunk(const struct harvest_src *src, uint64_t c, struct emit_sink *sink,
			  uint64_t page_rel, struct harvest_counts *counts)
{
	struct sbitmap *any = src->ncls ? src->cls[0] : NULL;
	const struct sbitmap *geom = any ? any : src->pinned;
	uint32_t nwords = sbm_chunk_words(geom, c);
	struct chunk_view v = {0};

	for (unsigned i = 0; i < src->ncls; i++)
		v.cls[i] = src->cls[i] ? sbm_chunk(src->cls[i], c) : NULL;
	v.pinned = src->pinned ? sbm_chunk(src->pinned, c) : NULL;

	for (unsigned s = 0; s < SBM_SUM_WORDS; s++) {
		uint64_t su = 0;

		if (src->whole) {
			su = chunk_word_mask(nwords, s);
		} else {
			for (unsigned i = 0; i < src->ncls; i++)
				if (v.cls[i])
					su |= atomic_load_explicit(&v.cls[i]->summary[s], RELAXED);
			if (v.pinned)
				su |= atomic_load_explicit(&v.pinned->summary[s], RELAXED);
			su &= chunk_word_mask(nwords, s);
		}
		while (su) {
			uint32_t wi = s * 64 + ctz64(su);

			su &= su - 1;
			harvest_word(src, &v, wi, c * SBM_CHUNK_WORDS + wi, sink, page_rel, counts);
		}
		if (src->take)
			for (unsigned i = 0; i < src->ncls; i++)
				if (v.cls[i])
					atomic_store_explicit(&v.cls[i]->summary[s], 0, RELAXED);
	}
	if (src->take)
		for (unsigned i = 0; i < src->ncls; i++)
			if (src->cls[i])
				atomic_fetch_and_explicit(&src->cls[i]->top[c / 64],
							  ~(1ull << (c % 64)), RELAXED);
}

void harvest_mapping(const struct harvest_src *src, uint64_t page_rel, struct emit_sink *sink,
		     struct harvest_counts *counts)
{
	const struct sbitmap *geom = src->ncls && src->cls[0] ? src->cls[0] : src->pinned;
	uint64_t nchunks = geom->nchunks;

	for (uint64_t t = 0; t < words_for_bits(nchunks); t++) {
		uint64_t tu = 0;

		if (src->whole) {
			tu = nchunks - t * 64 >= 64 ? ~0ull : (1ull << (nchunks - t * 64)) - 1;
		} else {
			for (unsigned i = 0; i < src->ncls; i++)
				if (src->cls[i])
					tu |= atomic_load_explicit(&src->cls[i]->top[t], RELAXED);
			if (src->pinned)
				tu |= atomic_load_explicit(&src->pinned->top[t], RELAXED);
		}
		while (tu) {
			uint64_t c = t * 64 + ctz64(tu);

			tu &= tu - 1;
			harvest_chunk(src, c, sink, page_rel, counts);
		}
	}
}
