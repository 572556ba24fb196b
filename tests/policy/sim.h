/* SPDX-License-Identifier: MIT */
/*
 * tests/policy/sim.h - a deterministic model of a pre-copy migration that produces round
 * stats the way the engine (lib/migrate/source.c) does and asks dt_policy_decide() after
 * every harvest.
 *
 * The model: memory of mem_pages pages; a link of `link` bytes per second (times drop_factor
 * from round drop_round on); a writer sweeping a working set of working_set pages at
 * dirty_rate pages per second (times growth each round), so a harvest after t seconds finds
 * min(working_set, rate x t) pages; pinned pages perpetually dirty. Every page costs
 * page_size + SIM_WIRE_OVERHEAD bytes on the wire, a zero page SIM_ZERO_COST. A round lasts
 * harvest_ns + SIM_DECIDE_NS + its send time. Integers and doubles only: no clock, so the
 * same config gives the same trace.
 */
#ifndef DT_TESTS_POLICY_SIM_H
#define DT_TESTS_POLICY_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include <dirtytrack/migrate.h>

#define SIM_MAX_ROUNDS	  128
#define SIM_WIRE_OVERHEAD 16
#define SIM_ZERO_COST	  16
#define SIM_DECIDE_NS	  20000
#define SIM_PAGE	  4096u

struct sim_cfg {
	uint64_t mem_pages;
	double link;	      /* bytes per second */
	double dirty_rate;    /* pages per second during round 0 */
	double growth;	      /* dirty_rate multiplier per round; 0 means 1 */
	uint64_t working_set; /* pages; 0: all the unpinned memory */
	uint64_t pinned;
	uint64_t zero_pages; /* of round 0's pages */
	uint64_t device_bytes;
	uint64_t fixed_cost_ns;
	uint64_t harvest_ns;
	unsigned drop_round; /* 0: the link never changes */
	double drop_factor;
	unsigned max_decisions; /* 0: SIM_MAX_ROUNDS */
	struct dt_policy policy;
};

struct sim_run {
	struct dt_round_stats rounds[SIM_MAX_ROUNDS];
	struct dt_policy_out outs[SIM_MAX_ROUNDS];
	unsigned n;		     /* decisions made (rounds harvested) */
	enum dt_decision last;	     /* the last decision */
	uint64_t precopy_bytes;	     /* sent before the switchover */
	uint64_t final_bytes;	     /* stop-and-copy (0 without a switchover) */
	uint64_t actual_downtime_ns; /* the model's downtime at the switchover */
};

/* Run until SWITCHOVER, ASK or max_decisions; fails the cmocka test if decide fails. */
void sim_run(const struct sim_cfg *c, struct sim_run *r);

/* Link rate in effect during round k. */
double sim_link(const struct sim_cfg *c, unsigned k);

/* Print the run, one line per round, for a failure message. */
void sim_print(const struct sim_cfg *c, const struct sim_run *r);

#endif
