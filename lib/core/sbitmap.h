/* SPDX-License-Identifier: MIT */
/*
 * core/sbitmap.h - a sparse, three-level atomic bitmap.
 *
 * Leaf words hold the bits. They live in chunks of up to 512 words (32768 bits, 128 MiB of
 * 4 KiB pages) allocated on first use, so a bitmap over 1 TiB that nobody marks costs 64 KiB
 * of chunk pointers. Each chunk has a summary word per 64 leaf words (bit w: leaf w may be
 * non-zero), and the bitmap a top word per 64 chunks (bit c: chunk c may hold bits). A scan
 * costs in proportion to the words that hold bits, not to nbits.
 *
 * Invariant (the no-lost-bit rule): a set bit is always covered by set hints. Setters write
 * leaf, then summary, then top; a clearer that drops a hint re-checks what it covers and
 * restores the hint if bits appeared (sbm_harvest_range_atomic). Hints may be stale-set.
 *
 * Concurrency: sbm_set_* may run from any thread concurrently with each other, with
 * sbm_load_word/sbm_test and with sbm_harvest_range_atomic. Functions named *_excl need the
 * caller to guarantee that no other thread touches the bitmap.
 */
#ifndef DT_CORE_SBITMAP_H
#define DT_CORE_SBITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SBM_CHUNK_WORDS 512u
#define SBM_CHUNK_BITS	(SBM_CHUNK_WORDS * 64u)
#define SBM_SUM_WORDS	(SBM_CHUNK_WORDS / 64u)

struct sbm_chunk {
	_Atomic uint64_t summary[SBM_SUM_WORDS];
	_Atomic uint64_t leaf[]; /* sbm_chunk_words() of them */
};

struct sbitmap {
	uint64_t nbits;
	uint64_t nwords;
	uint64_t nchunks;
	_Atomic(struct sbm_chunk *) *chunks;
	_Atomic uint64_t *top;	/* words_for_bits(nchunks) words */
	_Atomic uint64_t bytes; /* memory held by chunks */
};

int sbm_init(struct sbitmap *b, uint64_t nbits);
void sbm_destroy(struct sbitmap *b);

/* Set bits [first, first + n). -ENOMEM if a chunk could not be allocated: bits in the
 * chunks that exist are set, the caller must treat the rest as lost and fall back. */
int sbm_set_range(struct sbitmap *b, uint64_t first, uint64_t n);

/* Allocate the chunks covering [first, first + n) so that setting those bits cannot fail. */
int sbm_reserve(struct sbitmap *b, uint64_t first, uint64_t n);

bool sbm_test(const struct sbitmap *b, uint64_t bit);
uint64_t sbm_load_word(const struct sbitmap *b, uint64_t word);

/* The next word index >= from whose hints are set (it may be zero), or b->nwords. */
uint64_t sbm_next_hinted_word(const struct sbitmap *b, uint64_t from);

/* Exclusive: clear one bit, dropping hints that no longer cover anything. */
void sbm_clear_bit_excl(struct sbitmap *b, uint64_t bit);

/* Exclusive: free every chunk (all bits clear). */
void sbm_reset_excl(struct sbitmap *b);

/* Number of set bits (a full scan of the hinted words). */
uint64_t sbm_count(const struct sbitmap *b);

/*
 * Read and clear bits [first, first + n) while setters may run concurrently. fn gets each
 * non-zero piece as (index of bit 0 of the word, bits within the range). Bits set during the
 * call are either passed to fn or left set. Returns the number of bits taken.
 */
typedef void (*sbm_word_fn)(void *opaque, uint64_t bit0, uint64_t bits);
uint64_t sbm_harvest_range_atomic(struct sbitmap *b, uint64_t first, uint64_t n, sbm_word_fn fn,
				  void *opaque);

static inline uint32_t sbm_chunk_words(const struct sbitmap *b, uint64_t c)
{
	uint64_t left = b->nwords - c * SBM_CHUNK_WORDS;

	return left < SBM_CHUNK_WORDS ? (uint32_t)left : SBM_CHUNK_WORDS;
}

static inline struct sbm_chunk *sbm_chunk(const struct sbitmap *b, uint64_t c)
{
	return atomic_load_explicit(&b->chunks[c], memory_order_acquire);
}

#endif
