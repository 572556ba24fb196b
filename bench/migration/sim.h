/* SPDX-License-Identifier: MIT */
/*
 * bench/migration/sim.h - a deterministic simulated pre-copy migration (no real memory) that
 * fills struct dt_round_stats as the engine does and runs any policy of policies.h on them.
 *
 * The model, in short (docs/migration-bench.md "The simulator"): memory of mem_bytes in 4 KiB
 * pages, all non-zero; a CPU workload whose distinct dirty pages over an interval come from
 * its write rate analytically (uniform: W (1 - exp(-X / W)); Zipf s = 1: the same per page,
 * summed over geometric buckets of ranks), plus a seeded noise of about sqrt(count); pinned
 * pages written continuously by a device; a link of `link` bytes per second, halved from
 * drop_at_s on, with a seeded +-3 % jitter per round. The same config and seed give the same
 * result.
 */
#ifndef DT_BENCH_MIGRATION_SIM_H
#define DT_BENCH_MIGRATION_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include <dirtytrack/migrate.h>

#include "policies.h"

#define BSIM_PAGE	   4096u
#define BSIM_WIRE_PAGE	   (BSIM_PAGE + 16u) /* a page and its header on the wire */
#define BSIM_MAX_ROUNDS	   QEMU_HARNESS_MAX_ROUNDS
#define BSIM_DECIDE_NS	   20000ull
#define BSIM_PAUSE_NS	   1000000ull /* stop vCPUs and devices, resume on the destination */
#define BSIM_DEVICE_BYTES  (256u << 10)
#define BSIM_IDLE_HOT	   0.001 /* idle: 0.1 % of the memory hot */
#define BSIM_PHASE_LOW	   0.1	 /* phase change: this x link, then the cell's rate */
#define BSIM_PHASE_AT_FULL 1.5	 /* ... from this x (memory / link) seconds on */

enum bsim_workload { BSIM_IDLE, BSIM_UNIFORM, BSIM_ZIPF, BSIM_PHASE, BSIM_NWORKLOADS };

struct bsim_cfg {
	uint64_t mem_bytes;
	enum bsim_workload workload;
	double rate_ratio; /* CPU write rate, in pages of the wire, as x link (0 for idle) */
	double link;	   /* bytes per second */
	uint64_t rtt_ns;
	uint64_t pinned_pages; /* written continuously by a device */
	double drop_at_s;      /* the link halves from this time on; 0: never */
	uint64_t max_downtime_ns;
	uint64_t seed;
};

struct bsim_result {
	bool converged;			/* switched over within QEMU_HARNESS_MAX_ROUNDS, not ASK */
	enum dt_decision last;		/* the last decision */
	unsigned rounds;		/* pre-copy rounds sent, round 0 included */
	int first_stall_round;		/* first round with verdict STALLED or DIVERGING; -1 */
	uint64_t actual_downtime_ns;	/* 0 without a switchover */
	uint64_t predicted_downtime_ns; /* the policy's, at the switchover; UINT64_MAX: none */
	uint64_t total_ns;		/* start to the end of the stop-and-copy (or the stop) */
	uint64_t bytes;			/* pre-copy and stop-and-copy */
	uint64_t lower_bound; /* every page once + the final CPU dirty set + device state */
	uint64_t pinned_precopy_bytes;
	uint64_t pinned_final_bytes;
	uint64_t final_pages;
	double max_throttle; /* QEMU auto-converge: the highest throttle applied, percent */
};

/* Runs c under p; trace (may be NULL) gets up to BSIM_MAX_ROUNDS rounds. 0 or the
 * policy's negative errno. */
int bsim_run(const struct bsim_cfg *c, const struct bench_policy *p, struct bsim_result *r,
	     struct dt_round_stats *trace);

const char *bsim_workload_name(enum bsim_workload w);

#endif
