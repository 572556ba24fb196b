/* SPDX-License-Identifier: MIT */
/*
 * core/bitops.h - word helpers shared by the bitmap code.
 *
 * Bit n of a bitmap is bit (n % 64) of 64-bit little-endian word n / 64, as in the VFIO
 * UAPI. Caller-supplied bitmaps may sit at any byte address, so they are read and written
 * through memcpy (one unaligned mov on x86), never through a uint64_t pointer.
 */
#ifndef DT_CORE_BITOPS_H
#define DT_CORE_BITOPS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define BITS_PER_WORD 64u

static inline uint64_t div_round_up(uint64_t n, uint64_t d)
{
	return n / d + (n % d != 0);
}

static inline uint64_t words_for_bits(uint64_t nbits)
{
	return div_round_up(nbits, BITS_PER_WORD);
}

/* Mask of bits [lo, hi) within a word, 0 <= lo < hi <= 64. */
static inline uint64_t mask_range(unsigned lo, unsigned hi)
{
	uint64_t m = hi >= 64 ? ~0ull : (1ull << hi) - 1;

	return m & (~0ull << lo);
}

static inline bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static inline unsigned ctz64(uint64_t x)
{
	return (unsigned)__builtin_ctzll(x);
}

static inline unsigned popcount64(uint64_t x)
{
	return (unsigned)__builtin_popcountll(x);
}

static inline uint64_t ubuf_load(const void *buf, uint64_t word)
{
	uint64_t v;

	memcpy(&v, (const char *)buf + word * 8, 8);
	return v;
}

static inline void ubuf_store(void *buf, uint64_t word, uint64_t v)
{
	memcpy((char *)buf + word * 8, &v, 8);
}

static inline void ubuf_or(void *buf, uint64_t word, uint64_t bits)
{
	ubuf_store(buf, word, ubuf_load(buf, word) | bits);
}

/* OR the 64 bits of w into a caller bitmap so that bit 0 of w lands on bit pos. Only words
 * that receive a set bit are touched. */
static inline void ubuf_or_at(void *buf, uint64_t pos, uint64_t w)
{
	uint64_t q = pos / 64;
	unsigned sh = pos % 64;

	if (!w)
		return;
	if (!sh) {
		ubuf_or(buf, q, w);
		return;
	}
	if (w << sh)
		ubuf_or(buf, q, w << sh);
	if (w >> (64 - sh))
		ubuf_or(buf, q + 1, w >> (64 - sh));
}

/* Set bits [first, first + n) of a caller bitmap. */
static inline void ubuf_set_range(void *buf, uint64_t first, uint64_t n)
{
	uint64_t end = first + n;

	while (first < end) {
		unsigned lo = first % 64;
		uint64_t span = end - first < 64 - lo ? end - first : 64 - lo;

		if (span == 64)
			ubuf_store(buf, first / 64, ~0ull);
		else
			ubuf_or(buf, first / 64, mask_range(lo, lo + (unsigned)span));
		first += span;
	}
}

#endif
