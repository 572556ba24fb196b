/* SPDX-License-Identifier: MIT */
/*
 * core/sbitmap.h - a sparse, three-level atomic bitmap.
 *
 * Three flat arrays, each reserved with xzalloc_big() (zero-filled by the kernel on first
 * touch, so an area nobody marks costs no memory): the leaf words; a summary bit per leaf
 * word (leaf w may be non-zero: 512 KiB per TiB of 4 KiB pages); a top bit per summary word
 * (8 KiB per TiB). A scan reads the top words, the summary words they point at, and the
 * leaves those point at: its cost follows the dirty words, its accesses go in address order,
 * and flat arrays let huge pages cover them (a scan of scattered small chunks spends most of
 * its time in TLB misses).
 *
 * Invariant (the no-lost-bit rule): a set bit is always covered by set hints. Setters write
 * the leaf, then the summary, then the top; a clearer that drops a hint re-checks what it
 * covers and restores the hint if bits appeared (sbm_harvest_range_atomic). Hints may be
 * stale-set.
 *
 * Concurrency: sbm_set_range may run from any thread concurrently with itself, with
 * sbm_load_word/sbm_test and with sbm_harvest_range_atomic. Functions named *_excl need the
 * caller to guarantee that no other thread touches the bitmap.
 */
#ifndef DT_CORE_SBITMAP_H
#define DT_CORE_SBITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct arena;

struct sbitmap {
	struct arena *arena; /* the area's owner, or NULL: its own xzalloc_big() */
	uint64_t nbits;
	uint64_t nwords;   /* leaf words */
	uint64_t nsummary; /* summary words: one bit per leaf word */
	uint64_t ntop;	   /* top words: one bit per summary word */
	_Atomic uint64_t *leaf;
	_Atomic uint64_t *summary;
	_Atomic uint64_t *top;
};

/* -ENOMEM if the address space could not be reserved. */
int sbm_init(struct sbitmap *b, uint64_t nbits);
/* The same, with the area from arena when it is small enough (core/arena.h); sbm_destroy
 * then zeroes what was set (in proportion to the hinted words) and gives it back. */
int sbm_init_in(struct sbitmap *b, uint64_t nbits, struct arena *arena);
void sbm_destroy(struct sbitmap *b);

/* Set bits [first, first + n), atomically, from any thread. */
void sbm_set_range(struct sbitmap *b, uint64_t first, uint64_t n);

/* A test-and-set that skips the locked instruction when the bits are already there: a
 * marker revisiting a dirty page only reads. */
static inline void sbm_word_or(_Atomic uint64_t *w, uint64_t bits)
{
	if ((atomic_load(w) & bits) != bits)
		atomic_fetch_or(w, bits);
}

/* sbm_set_range for bits that lie in one leaf word (the common one-page mark), inline and
 * short so that the misses of consecutive calls overlap. */
static inline void sbm_set_in_word(struct sbitmap *b, uint64_t word, uint64_t bits)
{
	sbm_word_or(&b->leaf[word], bits);
	sbm_word_or(&b->summary[word / 64], 1ull << (word % 64));
	sbm_word_or(&b->top[word / 4096], 1ull << (word / 64 % 64));
}

bool sbm_test(const struct sbitmap *b, uint64_t bit);
uint64_t sbm_load_word(const struct sbitmap *b, uint64_t word);

/* The next word index >= from whose summary hint is set (it may be zero), or b->nwords. */
uint64_t sbm_next_hinted_word(const struct sbitmap *b, uint64_t from);

/* Exclusive: clear one bit, dropping hints that no longer cover anything. */
void sbm_clear_bit_excl(struct sbitmap *b, uint64_t bit);

/* Exclusive: clear every bit; costs in proportion to the hinted words. */
void sbm_reset_excl(struct sbitmap *b);

/* Number of set bits (a scan of the hinted words). */
uint64_t sbm_count(const struct sbitmap *b);

/* Bytes of address space reserved (resident only where touched). */
uint64_t sbm_reserved_bytes(const struct sbitmap *b);

/*
 * Read and clear bits [first, first + n) while setters may run concurrently. fn gets each
 * non-zero piece as (index of bit 0 of the word, bits within the range). Bits set during the
 * call are either passed to fn or left set. Returns the number of bits taken.
 */
typedef void (*sbm_word_fn)(void *opaque, uint64_t bit0, uint64_t bits);
uint64_t sbm_harvest_range_atomic(struct sbitmap *b, uint64_t first, uint64_t n, sbm_word_fn fn,
				  void *opaque);

#endif
