/* SPDX-License-Identifier: MIT */
/*
 * core/sbitmap.c - the sparse three-level atomic bitmap (see sbitmap.h for the invariants).
 *
 * Memory order: setters use seq_cst read-modify-writes on the leaf, then test-and-set the
 * hints (a seq_cst load first, to skip the locked op when the hint is already there). A
 * clearer that drops a hint does it with a seq_cst RMW and then re-loads what the hint
 * covers: in the single total order either it sees the new bit, or the setter sees the hint
 * clear and sets it again.
 */
#include "core/sbitmap.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/bitops.h"

/* One area per bitmap, [top | summary | leaf]: a small bitmap's hints share cache lines
 * with each other and with the first leaves. */
static uint64_t area_bytes(const struct sbitmap *b)
{
	return (b->ntop + b->nsummary + b->nwords) * sizeof(uint64_t);
}

int sbm_init_in(struct sbitmap *b, uint64_t nbits, struct arena *arena)
{
	memset(b, 0, sizeof(*b));
	b->nbits = nbits;
	b->nwords = words_for_bits(nbits) ? words_for_bits(nbits) : 1;
	b->nsummary = words_for_bits(b->nwords);
	b->ntop = words_for_bits(b->nsummary);
	if (arena && area_bytes(b) <= ARENA_MAX_BLOCK) {
		b->arena = arena;
		b->top = arena_zalloc(arena, area_bytes(b));
	} else {
		b->top = xzalloc_big(area_bytes(b));
	}
	if (!b->top) {
		memset(b, 0, sizeof(*b));
		return -ENOMEM;
	}
	b->summary = b->top + b->ntop;
	b->leaf = b->summary + b->nsummary;
	return 0;
}

int sbm_init(struct sbitmap *b, uint64_t nbits)
{
	return sbm_init_in(b, nbits, NULL);
}

void sbm_destroy(struct sbitmap *b)
{
	if (b->top && b->arena) {
		sbm_reset_excl(b);
		arena_free_zeroed(b->arena, (void *)b->top, area_bytes(b));
	} else if (b->top) {
		xfree_big((void *)b->top, area_bytes(b));
	}
	memset(b, 0, sizeof(*b));
}

uint64_t sbm_reserved_bytes(const struct sbitmap *b)
{
	return area_bytes(b);
}

/* Set the hints above leaf words [w0, w1]: summary bits, then top bits. */
static void hints_set(struct sbitmap *b, uint64_t w0, uint64_t w1)
{
	for (uint64_t s = w0 / 64; s <= w1 / 64; s++) {
		unsigned lo = s == w0 / 64 ? w0 % 64 : 0;
		unsigned hi = s == w1 / 64 ? w1 % 64 + 1 : 64;

		sbm_word_or(&b->summary[s], mask_range(lo, hi));
	}
	for (uint64_t t = w0 / 4096; t <= w1 / 4096; t++) {
		unsigned lo = t == w0 / 4096 ? w0 / 64 % 64 : 0;
		unsigned hi = t == w1 / 4096 ? w1 / 64 % 64 + 1 : 64;

		sbm_word_or(&b->top[t], mask_range(lo, hi));
	}
}

void sbm_set_range(struct sbitmap *b, uint64_t first, uint64_t n)
{
	uint64_t end = first + n, w0 = first / 64;

	if (!n)
		return;
	while (first < end) {
		unsigned lo = first % 64;
		uint64_t span = end - first < 64 - lo ? end - first : 64 - lo;
		uint64_t bits = mask_range(lo, lo + (unsigned)span);
		sbm_word_or(&b->leaf[first / 64], bits);
		first += span;
	}
	hints_set(b, w0, (end - 1) / 64);
}

bool sbm_test(const struct sbitmap *b, uint64_t bit)
{
	return (sbm_load_word(b, bit / 64) >> (bit % 64)) & 1;
}

uint64_t sbm_load_word(const struct sbitmap *b, uint64_t word)
{
	return atomic_load_explicit(&b->leaf[word], memory_order_relaxed);
}

uint64_t sbm_next_hinted_word(const struct sbitmap *b, uint64_t from)
{
	while (from < b->nwords) {
		uint64_t s = from / 64, t = s / 64;
		uint64_t top = atomic_load_explicit(&b->top[t], memory_order_acquire);
		uint64_t sum;

		top &= ~0ull << (s % 64);
		if (!top) {
			from = (t + 1) * 4096;
			continue;
		}
		if (ctz64(top) != s % 64) {
			from = (t * 64 + ctz64(top)) * 64;
			continue;
		}
		sum = atomic_load_explicit(&b->summary[s], memory_order_acquire);
		sum &= ~0ull << (from % 64);
		if (sum)
			return s * 64 + ctz64(sum);
		from = (s + 1) * 64;
	}
	return b->nwords;
}

void sbm_clear_bit_excl(struct sbitmap *b, uint64_t bit)
{
	uint64_t w = bit / 64, v;

	v = atomic_load_explicit(&b->leaf[w], memory_order_relaxed) & ~(1ull << (bit % 64));
	atomic_store_explicit(&b->leaf[w], v, memory_order_relaxed);
	if (v)
		return;
	v = atomic_load_explicit(&b->summary[w / 64], memory_order_relaxed) & ~(1ull << (w % 64));
	atomic_store_explicit(&b->summary[w / 64], v, memory_order_relaxed);
	if (!v)
		atomic_fetch_and_explicit(&b->top[w / 4096], ~(1ull << (w / 64 % 64)),
					  memory_order_relaxed);
}

void sbm_reset_excl(struct sbitmap *b)
{
	for (uint64_t t = 0; t < b->ntop; t++) {
		uint64_t top = atomic_load_explicit(&b->top[t], memory_order_relaxed);

		for (; top; top &= top - 1) {
			uint64_t s = t * 64 + ctz64(top);
			uint64_t sum = atomic_load_explicit(&b->summary[s], memory_order_relaxed);

			for (; sum; sum &= sum - 1)
				atomic_store_explicit(&b->leaf[s * 64 + ctz64(sum)], 0,
						      memory_order_relaxed);
			atomic_store_explicit(&b->summary[s], 0, memory_order_relaxed);
		}
		atomic_store_explicit(&b->top[t], 0, memory_order_relaxed);
	}
}

uint64_t sbm_count(const struct sbitmap *b)
{
	uint64_t n = 0;

	for (uint64_t w = sbm_next_hinted_word(b, 0); w < b->nwords;
	     w = sbm_next_hinted_word(b, w + 1))
		n += popcount64(sbm_load_word(b, w));
	return n;
}

/* Drop the summary hint of leaf word w if the word is empty, re-checking after; then the
 * top hint of its summary word likewise. */
static void hints_drop_if_empty(struct sbitmap *b, uint64_t w)
{
	uint64_t sbit = 1ull << (w % 64), tbit = 1ull << (w / 64 % 64);

	if (atomic_load(&b->leaf[w]))
		return;
	atomic_fetch_and(&b->summary[w / 64], ~sbit);
	if (atomic_load(&b->leaf[w])) {
		atomic_fetch_or(&b->summary[w / 64], sbit);
		return;
	}
	if (atomic_load(&b->summary[w / 64]))
		return;
	atomic_fetch_and(&b->top[w / 4096], ~tbit);
	if (atomic_load(&b->summary[w / 64]))
		atomic_fetch_or(&b->top[w / 4096], tbit);
}

uint64_t sbm_harvest_range_atomic(struct sbitmap *b, uint64_t first, uint64_t n, sbm_word_fn fn,
				  void *opaque)
{
	uint64_t end = first + n, taken = 0;

	if (!n)
		return 0;
	for (uint64_t w = sbm_next_hinted_word(b, first / 64); w < b->nwords && w * 64 < end;
	     w = sbm_next_hinted_word(b, w + 1)) {
		unsigned lo = w * 64 < first ? (unsigned)(first - w * 64) : 0;
		unsigned hi = end - w * 64 < 64 ? (unsigned)(end - w * 64) : 64;
		uint64_t mask = mask_range(lo, hi), got;

		got = atomic_fetch_and(&b->leaf[w], ~mask) & mask;
		if (got) {
			taken += popcount64(got);
			fn(opaque, w * 64, got);
		}
		hints_drop_if_empty(b, w);
	}
	return taken;
}
