/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_track.h - what the two parts of bench_track share: options, dirty patterns,
 * the cache scrub and memory helpers. Part 1 (each source alone) and main() are in
 * bench_track.c, its KVM sources in bench_track_kvm.c, part 2 (the dirty set) in
 * bench_track_set.c.
 */
#ifndef DT_BENCH_TRACK_H
#define DT_BENCH_TRACK_H

#include <fcntl.h>
#include <inttypes.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <dirtytrack/dirtytrack.h>

#include "bench_common.h"

#define PAGE_SHIFT 12u
#define PAGE_SIZE  (1ull << PAGE_SHIFT)
#define MAX_REPS   101u

struct opts {
	uint64_t size_mib, set_mib;
	unsigned reps;
	uint64_t seed;
	bool quick, warm, untouched, no_sources, no_set;
};

/* Percentages of pages written between two harvests. */
static const double levels[] = {0.0, 1.0, 100.0};
#define NLEVELS (sizeof(levels) / sizeof(levels[0]))

static inline void bit_set(uint64_t *b, uint64_t n)
{
	b[n / 64] |= 1ull << (n % 64);
}

static inline uint64_t popcount_words(const uint64_t *w, uint64_t nwords)
{
	return popcount_buf(w, nwords * 8);
}

/* A time for `bytes` of tracked memory, per GiB of it. */
static inline double ns_per_gib(uint64_t ns, uint64_t bytes)
{
	return (double)ns * (double)(1ull << 30) / (double)bytes;
}

/* `count` distinct random pages of npages (all of them at 100 %), and their bitmap. */
struct pattern {
	double pct;
	bool all;
	uint64_t count;
	uint64_t *pages;
	uint64_t *bits;
};

void pattern_make(struct pattern *p, uint64_t npages, double pct, uint64_t seed);
void pattern_free(struct pattern *p);
/* The untimed "guest": one byte into every page of the pattern. */
void write_pages(char *mem, const struct pattern *p, unsigned round);

/* Written before each timed call unless --warm (NULL then). */
extern uint8_t *scrub;
extern uint64_t scrub_bytes;
void cache_scrub(void);

void *alloc_zeroed(uint64_t bytes);
/* Anonymous MAP_NORESERVE memory, THP off, to be tracked: every page written once unless
 * untouched (a running guest's or program's memory is resident). */
char *map_tracked(uint64_t size, bool untouched);

/* ---- part 1: each source alone ---- */

struct src_bench {
	char *mem;
	uint64_t size, npages, nwords;
	uint64_t *bitmap, *naive_bm;
	uint64_t *copy_src, *copy_dst; /* 8 bytes per page: the bitmap bound uses the start */
	uint64_t *entries;	       /* PM_CHUNK pagemap entries */
	int pagemap;
};

struct src_result {
	double pct;
	uint64_t written, pages; /* pages written, pages reported */
	uint64_t harvest, harvest_min, harvest_max, naive, pagemap, copy, copy_pte, faults;
	uint64_t get; /* KVM log: the naive's KVM_GET_DIRTY_LOG alone */
	bool has_naive, has_pagemap, has_get;
};

/* Fails unless got holds exactly the pattern's pages (exact) or every page. */
void check_bitmap(const char *who, const char *src, const struct pattern *p, const uint64_t *got,
		  uint64_t npages, bool exact);
void print_source_json(const struct opts *o, const char *name, const struct src_result *r,
		       uint64_t size);
void print_skip(const char *bench, const char *name, const char *reason);
void source_table_row(const char *name, const struct src_result *r, uint64_t size);

/* The KVM sources (bench_track_kvm.c): a guest writes the patterns into b->mem. */
void run_kvm_source(const struct opts *o, struct src_bench *b, enum dt_source_type type,
		    const char *name, const struct pattern pats[NLEVELS]);

/* Part 2. */
void run_set(const struct opts *o);

#endif
