/* SPDX-License-Identifier: MIT */
/*
 * tests/policy/sim.c - the migration model of sim.h. It fills the round stats in the
 * engine's order: harvest (dirty counts, total_bytes so far), decide with rounds[0..k] (the
 * newest round's send fields 0), record the policy's output, then send and fill the send
 * fields and the new total.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sim.h"

double sim_link(const struct sim_cfg *c, unsigned k)
{
	return c->drop_round && k >= c->drop_round ? c->link * c->drop_factor : c->link;
}

static uint64_t ns_for(double bytes, double rate)
{
	double ns = bytes * 1e9 / rate;
	uint64_t t = (uint64_t)ns;

	return t + ((double)t < ns);
}

void sim_run(const struct sim_cfg *c, struct sim_run *r)
{
	bool defer = !c->policy.no_defer_pinned;
	uint64_t ws = c->working_set ? c->working_set : c->mem_pages - c->pinned;
	unsigned max = c->max_decisions ? c->max_decisions : SIM_MAX_ROUNDS;
	double rate = c->dirty_rate, growth = c->growth ? c->growth : 1;
	uint64_t total = 0;

	memset(r, 0, sizeof(*r));
	if (max > SIM_MAX_ROUNDS)
		max = SIM_MAX_ROUNDS;
	for (unsigned k = 0; k < max; k++) {
		struct dt_round_stats *s = &r->rounds[k];
		struct dt_policy_out *out = &r->outs[k];
		uint64_t zero = 0, bytes;

		s->round = k;
		s->page_size = SIM_PAGE;
		s->memory_bytes = c->mem_pages * SIM_PAGE;
		s->pinned_pages = c->pinned;
		s->dirty[DT_CLASS_PINNED] = c->pinned;
		s->device_bytes = c->device_bytes;
		s->fixed_cost_ns = c->fixed_cost_ns;
		s->harvest_ns = c->harvest_ns;
		if (k == 0) {
			s->dirty[DT_CLASS_CPU] = c->mem_pages - c->pinned;
			zero = c->zero_pages;
		} else {
			/* Written while round k - 1 ran, at the rate of that round. */
			double written = rate * (double)r->rounds[k - 1].round_ns / 1e9;

			s->dirty[DT_CLASS_CPU] = written < (double)ws ? (uint64_t)written : ws;
			rate *= growth;
		}
		/* Deferred pinned pages are out of every pre-copy round, round 0 included. */
		s->dirty_pages = s->dirty[DT_CLASS_CPU] + (defer ? 0 : c->pinned);
		s->total_bytes = total;

		assert_int_equal(dt_policy_decide(&c->policy, r->rounds, k + 1, out), 0);
		dt_round_stats_record(s, out);
		r->n = k + 1;
		r->last = out->decision;
		if (out->decision == DT_DECISION_SWITCHOVER) {
			uint64_t pages = s->dirty_pages + (defer ? c->pinned : 0);

			r->final_bytes = pages * (SIM_PAGE + SIM_WIRE_OVERHEAD) + c->device_bytes;
			r->actual_downtime_ns =
				ns_for((double)r->final_bytes, sim_link(c, k)) + c->fixed_cost_ns;
			break;
		}
		if (out->decision != DT_DECISION_CONTINUE)
			break;
		bytes = (s->dirty_pages - zero) * (SIM_PAGE + SIM_WIRE_OVERHEAD) +
			zero * SIM_ZERO_COST;
		s->sent_pages = s->dirty_pages;
		s->zero_pages = zero;
		s->sent_bytes = bytes;
		s->send_ns = bytes ? ns_for((double)bytes, sim_link(c, k)) : 0;
		s->round_ns = c->harvest_ns + SIM_DECIDE_NS + s->send_ns;
		total += bytes;
		s->total_bytes = total;
	}
	r->precopy_bytes = total;
}

void sim_print(const struct sim_cfg *c, const struct sim_run *r)
{
	print_message("sim: M %llu pages, link %.0f B/s, D %.0f p/s x%.2f, W %llu, P %llu, "
		      "defer %d\n",
		      (unsigned long long)c->mem_pages, c->link, c->dirty_rate,
		      c->growth ? c->growth : 1, (unsigned long long)c->working_set,
		      (unsigned long long)c->pinned, !c->policy.no_defer_pinned);
	for (unsigned k = 0; k < r->n; k++) {
		char json[512];

		dt_round_stats_json(&r->rounds[k], json, sizeof(json));
		print_message("  %s\n    %s\n", json, r->outs[k].reason);
	}
}
