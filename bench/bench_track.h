/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_track.h - what the two parts of bench_track share: options, dirty patterns,
 * the cache scrub and memory helpers. Part 1 (each source alone) and main() are in
 * bench_track.c, part 2 (the dirty set) in bench_track_set.c.
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

/* Part 2. */
void run_set(const struct opts *o);

#endif
