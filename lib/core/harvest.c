/* SPDX-License-Identifier: MIT */
/*
 * core/harvest.c - the per-mapping report loop (see harvest.h).
 *
 * Walk: the union of the top hints of every bitmap, then the summary words they point at,
 * so a class that holds nothing costs one load per 4096 leaf words. Each dirty leaf word is
 * queued in a small ring and prefetched (with the caller's output word) when queued, and
 * read when it leaves the ring: the cache misses of a sparse report overlap instead of
 * queueing one behind the other. A summary word whose 64 leaf words are all dirty in one
 * class, with nothing else there, is copied in bulk.
 *
 * In take mode the caller owns the class bitmaps (the report swapped them out and waited for
 * a grace period): nothing else reads or writes them, so leaves and hints are read and
 * cleared with plain memory operations, no locked instruction per word.
 */
#include "core/harvest.h"

#include <string.h>

#include "core/bitops.h"

#define RELAXED memory_order_relaxed
#define RING	32u /* leaf words in flight */

struct ring_entry {
	uint64_t w;	/* leaf word index */
	uint8_t cls;	/* classes with a hint on this word */
	uint8_t pinned; /* the pinned set has a hint on this word */
};

struct harvest_state {
	const struct harvest_src *src;
	struct emit_sink *sink;
	uint64_t page_rel;
	bool fast_bitmap; /* emit is a plain OR into the caller's bitmap */
	bool bulk_ok;	  /* take mode, fast bitmap, output words aligned with leaf words */
	struct ring_entry ring[RING];
	unsigned head, len;
	struct harvest_counts c;
};

static uint64_t valid_mask(uint64_t n, uint64_t word)
{
	uint64_t lo = word * 64;

	return n - lo >= 64 ? ~0ull : (1ull << (n - lo)) - 1;
}

static inline void emit(struct harvest_state *h, uint64_t word, uint64_t u)
{
	if (h->fast_bitmap)
		ubuf_or_at(h->sink->bitmap, h->page_rel + word * 64, u);
	else
		emit_word(h->sink, h->page_rel + word * 64, u);
}

static void process(struct harvest_state *h, const struct ring_entry *e)
{
	const struct harvest_src *src = h->src;
	uint64_t w = e->w, u = 0, p = 0;

	for (unsigned i = 0; i < src->ncls; i++) {
		uint64_t x;

		if (!(e->cls >> i & 1))
			continue;
		x = atomic_load_explicit(&src->cls[i]->leaf[w], RELAXED);
		if (src->take && x)
			atomic_store_explicit(&src->cls[i]->leaf[w], 0, RELAXED);
		h->c.cls[i] += popcount64(x);
		u |= x;
		if (src->class_out && src->cls_out[i])
			ubuf_or_at(src->cls_out[i], h->page_rel + w * 64, x);
	}
	if (e->pinned) {
		p = atomic_load_explicit(&src->pinned->leaf[w], RELAXED);
		h->c.pinned += popcount64(p);
		if (src->class_out && src->pinned_out)
			ubuf_or_at(src->pinned_out, h->page_rel + w * 64, p);
	}
	if (src->whole) {
		u = valid_mask(src->npages, w);
		h->c.whole += popcount64(u);
		if (src->class_out && src->whole_out)
			ubuf_or_at(src->whole_out, h->page_rel + w * 64, u);
	}
	u = src->skip_pinned ? u & ~p : u | p;
	h->c.total += popcount64(u);
	if (u)
		emit(h, w, u);
}

static void drain(struct harvest_state *h)
{
	while (h->len) {
		process(h, &h->ring[h->head]);
		h->head = (h->head + 1) % RING;
		h->len--;
	}
}

static void push(struct harvest_state *h, const struct ring_entry *e, bool prefetch)
{
	const struct harvest_src *src = h->src;

	if (h->len == RING) {
		process(h, &h->ring[h->head]);
		h->head = (h->head + 1) % RING;
		h->len--;
	}
	h->ring[(h->head + h->len++) % RING] = *e;
	if (!prefetch)
		return;
	for (unsigned i = 0; i < src->ncls; i++)
		if (e->cls >> i & 1)
			__builtin_prefetch((const void *)&src->cls[i]->leaf[e->w], 1);
	if (h->fast_bitmap)
		__builtin_prefetch((char *)h->sink->bitmap + (h->page_rel + e->w * 64) / 8, 1);
}

/*
 * 64 leaf words all dirty in class i alone, output aligned with the leaf words: copy them out
 * and zero them in one loop (a full block of a runs-only report extends the run at once).
 * The bitmap is exclusively ours (take mode), so plain loads and stores, which the compiler
 * may vectorize.
 */
static void bulk_summary(struct harvest_state *h, unsigned i, uint64_t s)
{
	uint64_t *leaf = (uint64_t *)h->src->cls[i]->leaf + s * 64;
	uint64_t q0 = h->page_rel / 64 + s * 64, n = 0, all = ~0ull;
	void *out = h->sink->bitmap;

	drain(h);
	if (h->fast_bitmap) {
		for (unsigned j = 0; j < 64; j++) {
			uint64_t x = leaf[j];

			n += popcount64(x);
			ubuf_or(out, q0 + j, x);
		}
	} else {
		for (unsigned j = 0; j < 64; j++) {
			n += popcount64(leaf[j]);
			all &= leaf[j];
		}
		if (all == ~0ull)
			emit_range(h->sink, q0 * 64, 4096);
		else
			for (unsigned j = 0; j < 64; j++)
				if (leaf[j])
					emit(h, s * 64 + j, leaf[j]);
	}
	memset(leaf, 0, 64 * sizeof(*leaf));
	h->c.cls[i] += n;
	h->c.total += n;
}

/*
 * The common case, one class and nothing else under a top word: gather its dirty leaf words
 * (clearing the summaries), prefetching each leaf and output word as it is found, then read
 * them in order. Two tight loops instead of the general per-word class juggling.
 */
/* Read (and in take mode clear) the gathered leaf words of class bitmap b, in order. */
static void take_words(struct harvest_state *h, unsigned i, const uint64_t *idx, unsigned n)
{
	struct sbitmap *b = h->src->cls[i];
	uint64_t cnt = 0;

	for (unsigned j = 0; j < n; j++) {
		uint64_t x = atomic_load_explicit(&b->leaf[idx[j]], RELAXED);

		if (!x)
			continue;
		if (h->src->take)
			atomic_store_explicit(&b->leaf[idx[j]], 0, RELAXED);
		cnt += popcount64(x);
		emit(h, idx[j], x);
	}
	h->c.cls[i] += cnt;
	h->c.total += cnt;
}

static void harvest_top_single(struct harvest_state *h, unsigned i, uint64_t t, uint64_t tc)
{
	struct sbitmap *b = h->src->cls[i];
	uint64_t idx[512];
	unsigned nidx = 0;

	drain(h);
	for (; tc; tc &= tc - 1) {
		uint64_t s = t * 64 + ctz64(tc);
		uint64_t sc = atomic_load_explicit(&b->summary[s], RELAXED);

		if (h->src->take)
			atomic_store_explicit(&b->summary[s], 0, RELAXED);
		if (h->bulk_ok && sc == ~0ull) {
			take_words(h, i, idx, nidx); /* in order: what came before goes first */
			nidx = 0;
			bulk_summary(h, i, s);
			continue;
		}
		for (; sc; sc &= sc - 1) {
			uint64_t w = s * 64 + ctz64(sc);

			__builtin_prefetch((const void *)&b->leaf[w], 1);
			if (h->fast_bitmap)
				__builtin_prefetch(
					(char *)h->sink->bitmap + (h->page_rel + w * 64) / 8, 1);
			idx[nidx++] = w;
			if (nidx == sizeof(idx) / sizeof(idx[0])) {
				take_words(h, i, idx, nidx);
				nidx = 0;
			}
		}
	}
	take_words(h, i, idx, nidx);
	if (h->src->take)
		atomic_store_explicit(&b->top[t], 0, RELAXED);
}

static void harvest_top_word(struct harvest_state *h, const struct sbitmap *geom, uint64_t t)
{
	const struct harvest_src *src = h->src;
	uint64_t tc[HARVEST_MAX_CLASSES] = {0}, tp = 0, tu = 0;
	unsigned live = 0; /* classes with a hint under this top word */

	for (unsigned i = 0; i < src->ncls; i++) {
		tc[i] = atomic_load_explicit(&src->cls[i]->top[t], RELAXED);
		tu |= tc[i];
		live |= (tc[i] != 0) << i;
	}
	if (src->pinned) {
		tp = atomic_load_explicit(&src->pinned->top[t], RELAXED);
		tu |= tp;
	}
	if (src->whole)
		tu = valid_mask(geom->nsummary, t);
	else if (!tp && is_pow2(live) && !src->class_out) {
		harvest_top_single(h, ctz64(live), t, tu);
		return;
	}
	for (uint64_t bits = tu; bits; bits &= bits - 1) {
		uint64_t s = t * 64 + ctz64(bits), sbit = 1ull << (s % 64);
		uint64_t sc[HARVEST_MAX_CLASSES] = {0}, sp = 0, su = 0;
		unsigned cls = 0, only = 0;

		for (unsigned i = 0; i < src->ncls; i++) {
			if (!(tc[i] & sbit))
				continue;
			sc[i] = atomic_load_explicit(&src->cls[i]->summary[s], RELAXED);
			if (src->take)
				atomic_store_explicit(&src->cls[i]->summary[s], 0, RELAXED);
			su |= sc[i];
			if (sc[i]) {
				cls |= 1u << i;
				only = i;
			}
		}
		if (tp & sbit) {
			sp = atomic_load_explicit(&src->pinned->summary[s], RELAXED);
			su |= sp;
		}
		su = src->whole ? valid_mask(geom->nwords, s) : su & valid_mask(geom->nwords, s);
		if (h->bulk_ok && !src->whole && !sp && popcount64(cls) == 1 && sc[only] == ~0ull &&
		    su == ~0ull) {
			bulk_summary(h, only, s);
			continue;
		}
		bool prefetch = popcount64(su) <= 8;

		for (uint64_t wb = su; wb; wb &= wb - 1) {
			unsigned b = ctz64(wb);
			struct ring_entry e = {.w = s * 64 + b, .pinned = (uint8_t)(sp >> b & 1)};

			for (unsigned i = 0; i < src->ncls; i++)
				e.cls |= (uint8_t)((sc[i] >> b & 1) << i);
			push(h, &e, prefetch);
		}
	}
	if (src->take)
		for (unsigned i = 0; i < src->ncls; i++)
			if (live >> i & 1)
				atomic_store_explicit(&src->cls[i]->top[t], 0, RELAXED);
}

void harvest_mapping(const struct harvest_src *src, uint64_t page_rel, struct emit_sink *sink,
		     struct harvest_counts *counts)
{
	const struct sbitmap *geom = src->ncls ? src->cls[0] : src->pinned;
	struct harvest_state h = {.src = src, .sink = sink, .page_rel = page_rel};
	h.fast_bitmap = sink->bitmap && !sink->run && !sink->k;
	h.bulk_ok = src->take && page_rel % 64 == 0 && !src->class_out && !sink->k;
	for (uint64_t t = 0; t < geom->ntop; t++)
		harvest_top_word(&h, geom, t);
	drain(&h);
	for (unsigned i = 0; i < HARVEST_MAX_CLASSES; i++)
		counts->cls[i] += h.c.cls[i];
	counts->pinned += h.c.pinned;
	counts->whole += h.c.whole;
	counts->total += h.c.total;
}
