/* SPDX-License-Identifier: MIT */
/*
 * core/sbitmap.c - the sparse three-level atomic bitmap (see sbitmap.h for the invariants).
 *
 * Memory order: setters use seq_cst read-modify-writes on the leaf, then test-and-set the
 * hints (a seq_cst load first, to skip the locked op when the hint is already there). A
 * clearer that drops a hint does it with a seq_cst RMW and then re-loads the covered words:
 * in the single total order either it sees the new bit, or the setter sees the hint clear
 * and sets it again. Chunk pointers are published with a CAS (release) and read with
 * acquire, so a chunk's zeroed memory is visible before its pointer.
 */
#include "core/sbitmap.h"

#include <errno.h>
#include <stddef.h>

#include "core/alloc.h"
#include "core/bitops.h"

int sbm_init(struct sbitmap *b, uint64_t nbits)
{
	b->nbits = nbits;
	b->nwords = words_for_bits(nbits);
	b->nchunks = div_round_up(b->nwords, SBM_CHUNK_WORDS);
	atomic_init(&b->bytes, 0);
	b->chunks = xcalloc(b->nchunks ? b->nchunks : 1, sizeof(*b->chunks));
	b->top = xcalloc(words_for_bits(b->nchunks) ? words_for_bits(b->nchunks) : 1,
			 sizeof(*b->top));
	if (!b->chunks || !b->top) {
		xfree(b->chunks);
		xfree(b->top);
		b->chunks = NULL;
		b->top = NULL;
		return -ENOMEM;
	}
	return 0;
}

void sbm_reset_excl(struct sbitmap *b)
{
	for (uint64_t c = 0; c < b->nchunks; c++) {
		xfree(atomic_load_explicit(&b->chunks[c], memory_order_relaxed));
		atomic_store_explicit(&b->chunks[c], NULL, memory_order_relaxed);
	}
	for (uint64_t t = 0; t < words_for_bits(b->nchunks); t++)
		atomic_store_explicit(&b->top[t], 0, memory_order_relaxed);
	atomic_store_explicit(&b->bytes, 0, memory_order_relaxed);
}

void sbm_destroy(struct sbitmap *b)
{
	if (!b->chunks)
		return;
	sbm_reset_excl(b);
	xfree(b->chunks);
	xfree(b->top);
	b->chunks = NULL;
	b->top = NULL;
}

static struct sbm_chunk *chunk_get_or_alloc(struct sbitmap *b, uint64_t c)
{
	struct sbm_chunk *ch = sbm_chunk(b, c), *expected = NULL;
	size_t size;

	if (ch)
		return ch;
	size = sizeof(*ch) + sbm_chunk_words(b, c) * sizeof(ch->leaf[0]);
	ch = xzalloc(size);
	if (!ch)
		return NULL;
	if (!atomic_compare_exchange_strong_explicit(&b->chunks[c], &expected, ch,
						     memory_order_acq_rel, memory_order_acquire)) {
		xfree(ch);
		return expected;
	}
	atomic_fetch_add_explicit(&b->bytes, size, memory_order_relaxed);
	return ch;
}

static inline void hint_set(_Atomic uint64_t *w, uint64_t bits)
{
	if ((atomic_load(w) & bits) != bits)
		atomic_fetch_or(w, bits);
}

int sbm_set_range(struct sbitmap *b, uint64_t first, uint64_t n)
{
	uint64_t end = first + n;
	int ret = 0;

	while (first < end) {
		uint64_t c = first / SBM_CHUNK_BITS;
		uint64_t chunk_end =
			(c + 1) * SBM_CHUNK_BITS < end ? (c + 1) * SBM_CHUNK_BITS : end;
		struct sbm_chunk *ch = chunk_get_or_alloc(b, c);
		uint64_t sum[SBM_SUM_WORDS] = {0};

		if (!ch) {
			ret = -ENOMEM;
			first = chunk_end;
			continue;
		}
		while (first < chunk_end) {
			unsigned lo = first % 64;
			uint64_t span = chunk_end - first < 64 - lo ? chunk_end - first : 64 - lo;
			uint32_t w = (uint32_t)(first / 64 - c * SBM_CHUNK_WORDS);
			uint64_t bits = mask_range(lo, lo + (unsigned)span);

			if ((atomic_load(&ch->leaf[w]) & bits) != bits)
				atomic_fetch_or(&ch->leaf[w], bits);
			sum[w / 64] |= 1ull << (w % 64);
			first += span;
		}
		for (unsigned s = 0; s < SBM_SUM_WORDS; s++)
			if (sum[s])
				hint_set(&ch->summary[s], sum[s]);
		hint_set(&b->top[c / 64], 1ull << (c % 64));
	}
	return ret;
}

int sbm_reserve(struct sbitmap *b, uint64_t first, uint64_t n)
{
	if (!n)
		return 0;
	for (uint64_t c = first / SBM_CHUNK_BITS; c <= (first + n - 1) / SBM_CHUNK_BITS; c++)
		if (!chunk_get_or_alloc(b, c))
			return -ENOMEM;
	return 0;
}

bool sbm_test(const struct sbitmap *b, uint64_t bit)
{
	return (sbm_load_word(b, bit / 64) >> (bit % 64)) & 1;
}

uint64_t sbm_load_word(const struct sbitmap *b, uint64_t word)
{
	struct sbm_chunk *ch = sbm_chunk(b, word / SBM_CHUNK_WORDS);

	if (!ch)
		return 0;
	return atomic_load_explicit(&ch->leaf[word % SBM_CHUNK_WORDS], memory_order_relaxed);
}

uint64_t sbm_next_hinted_word(const struct sbitmap *b, uint64_t from)
{
	while (from < b->nwords) {
		uint64_t c = from / SBM_CHUNK_WORDS;
		uint64_t t = atomic_load_explicit(&b->top[c / 64], memory_order_acquire);
		struct sbm_chunk *ch;
		uint32_t w;

		t &= ~0ull << (c % 64);
		if (!t) {
			from = (c / 64 + 1) * 64 * (uint64_t)SBM_CHUNK_WORDS;
			continue;
		}
		if (ctz64(t) != c % 64) {
			from = (c - c % 64 + ctz64(t)) * SBM_CHUNK_WORDS;
			continue;
		}
		ch = sbm_chunk(b, c);
		w = (uint32_t)(from % SBM_CHUNK_WORDS);
		while (ch && w < sbm_chunk_words(b, c)) {
			uint64_t s =
				atomic_load_explicit(&ch->summary[w / 64], memory_order_acquire);

			s &= ~0ull << (w % 64);
			if (s)
				return c * SBM_CHUNK_WORDS + (w - w % 64) + ctz64(s);
			w = (w / 64 + 1) * 64;
		}
		from = (c + 1) * SBM_CHUNK_WORDS;
	}
	return b->nwords;
}

void sbm_clear_bit_excl(struct sbitmap *b, uint64_t bit)
{
	uint64_t c = bit / SBM_CHUNK_BITS;
	struct sbm_chunk *ch = sbm_chunk(b, c);
	uint32_t w = (uint32_t)(bit / 64 % SBM_CHUNK_WORDS);
	uint64_t v;

	if (!ch)
		return;
	v = atomic_load_explicit(&ch->leaf[w], memory_order_relaxed) & ~(1ull << (bit % 64));
	atomic_store_explicit(&ch->leaf[w], v, memory_order_relaxed);
	if (v)
		return;
	v = atomic_load_explicit(&ch->summary[w / 64], memory_order_relaxed) & ~(1ull << (w % 64));
	atomic_store_explicit(&ch->summary[w / 64], v, memory_order_relaxed);
	for (unsigned s = 0; s < SBM_SUM_WORDS; s++)
		if (atomic_load_explicit(&ch->summary[s], memory_order_relaxed))
			return;
	atomic_fetch_and_explicit(&b->top[c / 64], ~(1ull << (c % 64)), memory_order_relaxed);
}

uint64_t sbm_count(const struct sbitmap *b)
{
	uint64_t n = 0;

	for (uint64_t w = sbm_next_hinted_word(b, 0); w < b->nwords;
	     w = sbm_next_hinted_word(b, w + 1))
		n += popcount64(sbm_load_word(b, w));
	return n;
}

/* Drop the summary hint of leaf word w of chunk ch if the word is empty, re-checking after. */
static void summary_drop_if_empty(struct sbm_chunk *ch, uint32_t w)
{
	uint64_t bit = 1ull << (w % 64);

	if (atomic_load(&ch->leaf[w]))
		return;
	atomic_fetch_and(&ch->summary[w / 64], ~bit);
	if (atomic_load(&ch->leaf[w]))
		atomic_fetch_or(&ch->summary[w / 64], bit);
}

static void top_drop_if_empty(struct sbitmap *b, struct sbm_chunk *ch, uint64_t c)
{
	uint64_t bit = 1ull << (c % 64);

	for (unsigned s = 0; s < SBM_SUM_WORDS; s++)
		if (atomic_load(&ch->summary[s]))
			return;
	atomic_fetch_and(&b->top[c / 64], ~bit);
	for (unsigned s = 0; s < SBM_SUM_WORDS; s++)
		if (atomic_load(&ch->summary[s])) {
			atomic_fetch_or(&b->top[c / 64], bit);
			return;
		}
}

uint64_t sbm_harvest_range_atomic(struct sbitmap *b, uint64_t first, uint64_t n, sbm_word_fn fn,
				  void *opaque)
{
	uint64_t end = first + n, taken = 0, prev_c = UINT64_MAX;

	if (!n)
		return 0;
	for (uint64_t w = sbm_next_hinted_word(b, first / 64); w < b->nwords && w * 64 < end;
	     w = sbm_next_hinted_word(b, w + 1)) {
		uint64_t c = w / SBM_CHUNK_WORDS;
		struct sbm_chunk *ch = sbm_chunk(b, c);
		uint32_t cw = (uint32_t)(w % SBM_CHUNK_WORDS);
		unsigned lo = w * 64 < first ? (unsigned)(first - w * 64) : 0;
		unsigned hi = end - w * 64 < 64 ? (unsigned)(end - w * 64) : 64;
		uint64_t mask = mask_range(lo, hi), got;

		if (prev_c != UINT64_MAX && prev_c != c)
			top_drop_if_empty(b, sbm_chunk(b, prev_c), prev_c);
		prev_c = c;
		got = atomic_fetch_and(&ch->leaf[cw], ~mask) & mask;
		if (got) {
			taken += popcount64(got);
			fn(opaque, w * 64, got);
		}
		summary_drop_if_empty(ch, cw);
	}
	if (prev_c != UINT64_MAX)
		top_drop_if_empty(b, sbm_chunk(b, prev_c), prev_c);
	return taken;
}
