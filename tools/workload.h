/* SPDX-License-Identifier: MIT */
/*
 * tools/workload.h - a test workload to migrate: a region of anonymous memory filled from a
 * seed, a writer thread dirtying pages at a set rate, and a fake DMA device (EMULATED) that
 * pins a ring of pages and keeps writing it; with the tracking over all of it (a CPU source
 * and a container in one dirty set), ready for dt_migrate_source().
 */
#ifndef DT_TOOLS_WORKLOAD_H
#define DT_TOOLS_WORKLOAD_H

#include <stdint.h>

#include <dirtytrack/dirtytrack.h>

#define WORKLOAD_PAGE 4096ull
/* Where the region lies in the dirty set's address space ("guest-physical"): the same on
 * both sides, so a destination that maps its own region of the same size matches the
 * stream's layout. */
#define WORKLOAD_GPA 0x100000000ull

/* How the writer picks the pages it dirties. */
enum workload_pattern {
	WORKLOAD_UNIFORM, /* uniform over the region (or the hot set) */
	WORKLOAD_ZIPF,	  /* page popularity ~ 1/rank (exponent 1.0), ranks shuffled by the seed */
	WORKLOAD_PHASE,	  /* uniform, the rate alternating between dirty_rate and a tenth of it */
};

struct workload_opts {
	uint64_t size;	     /* bytes, a positive multiple of WORKLOAD_PAGE */
	uint64_t seed;	     /* the initial contents and the writer's choice of pages */
	uint64_t dirty_rate; /* pages per second the writer dirties; 0: no writer */
	uint64_t hot_pages;  /* 0: uniform over the region; else a hot set of this many pages */
	uint64_t ring_pages; /* pages the fake DMA device pins and writes; 0: no device */
	enum workload_pattern pattern;
	uint64_t phase_ms; /* WORKLOAD_PHASE: the length of each phase (high first); > 0 */
};

struct workload;

/* Map and fill the memory, set up the tracking (not started yet). 0 or a negative errno:
 * -EINVAL for options out of range (the caller checks them first, to say which), else what
 * the library returned (it logged why). */
int workload_new(const struct workload_opts *opts, struct workload **out);
/* Stops the threads and the tracking and frees everything. NULL is a no-op. */
void workload_free(struct workload *w);

/* Start the tracking (every page clean from now), pin the ring, start both threads. */
int workload_start(struct workload *w);

/* dt_migrate_source callbacks (opaque: the workload). Pause returns once the writer and the
 * device have stopped writing (their threads are joined); resume starts them again. */
int workload_pause(void *opaque);
void workload_resume(void *opaque);

struct dt_dirty_set *workload_set(const struct workload *w);
const struct dt_region *workload_region(const struct workload *w);
const char *workload_source_name(const struct workload *w);
/* Slow the writer to (100 - pct) % of its rate from now on, as a CPU throttle would (QEMU's
 * auto-converge). pct is clamped to 0..99. */
void workload_throttle(struct workload *w, unsigned pct);
/* Pages written so far by the writer, and by the device. */
uint64_t workload_writes(const struct workload *w);
uint64_t workload_device_writes(const struct workload *w);

#endif
