/* SPDX-License-Identifier: MIT */
/*
 * tests/policy/test_policy_sim.c - dt_policy_decide() driven round by round by the model of
 * sim.h, as the engine drives it: a converging workload switches over at the first round
 * whose prediction fits, close to the fewest bytes possible; a dirty rate at or above the
 * link stalls within 3 rounds and ends in ASK; rising counts are DIVERGING; pinned pages are
 * in the prediction from round one with deferral and not twice without; the bandwidth
 * override is used; the round and byte caps ask; a link slowdown shows in the estimate
 * within 2 rounds; the same input gives the same output. The randomized test prints its
 * seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "policy_test.h"
#include "sim.h"

#define MS	   1000000ull
#define LIMIT_NS   (300 * MS)
#define SWITCH_NS  (LIMIT_NS * 9 / 10) /* what fits it with the default margin, 0.1 */
#define WIRE_PAGE  (SIM_PAGE + SIM_WIRE_OVERHEAD)
#define GIB_PAGES  262144ull
#define DUMP(c, r) sim_print(c, r)

static struct sim_run run, run2;

static struct sim_cfg base_cfg(double dirty_ratio)
{
	return (struct sim_cfg){
		.mem_pages = GIB_PAGES,
		.link = 1e9,
		.dirty_rate = dirty_ratio * 1e9 / WIRE_PAGE,
		.harvest_ns = 100000,
		.fixed_cost_ns = 2 * MS,
		.policy = {.size = sizeof(struct dt_policy)},
	};
}

/* Exactly what the prediction should be, from the stats and the bandwidth. */
static uint64_t expected_prediction(const struct dt_round_stats *s, uint64_t extra_pages, double bw,
				    uint64_t fixed)
{
	double ns =
		((double)(s->dirty_pages + extra_pages) * s->page_size + (double)s->device_bytes) *
		1e9 / bw;
	uint64_t t = (uint64_t)ns;

	return t + ((double)t < ns) + fixed;
}

/* Switch-over run checks shared by the fixed and the random converging tests. */
static void check_converged(const struct sim_cfg *c, const struct sim_run *r, bool check_bytes)
{
	const struct dt_policy_out *last = &r->outs[r->n - 1];
	uint64_t lb, total;

	PT_CHECK(r->last == DT_DECISION_SWITCHOVER, DUMP(c, r), "expected switchover, saw %s",
		 dt_decision_name(r->last));
	PT_CHECK(last->predicted_downtime_ns <= SWITCH_NS, DUMP(c, r), "predicted %llu ns",
		 (unsigned long long)last->predicted_downtime_ns);
	/* The model's downtime: the prediction leaves out only the 16 B a page of framing. */
	PT_CHECK(r->actual_downtime_ns <= last->predicted_downtime_ns * 1.01 + 1000, DUMP(c, r),
		 "actual %llu ns, predicted %llu ns", (unsigned long long)r->actual_downtime_ns,
		 (unsigned long long)last->predicted_downtime_ns);
	/* At the first round it could: every earlier prediction was over the limit. */
	for (unsigned k = 1; k + 1 < r->n; k++)
		PT_CHECK(r->outs[k].predicted_downtime_ns > SWITCH_NS, DUMP(c, r),
			 "round %u predicted %llu ns but continued", k,
			 (unsigned long long)r->outs[k].predicted_downtime_ns);
	if (!check_bytes || r->n < 2)
		return;
	/* The fewest bytes possible: round 0, then switch over at round 1. */
	lb = r->rounds[0].sent_bytes + (r->rounds[1].dirty_pages + c->pinned) * WIRE_PAGE +
	     c->device_bytes;
	total = r->precopy_bytes + r->final_bytes;
	PT_CHECK(total <= 1.10 * lb, DUMP(c, r), "%llu bytes sent, lower bound %llu (x%.3f)",
		 (unsigned long long)total, (unsigned long long)lb, (double)total / lb);
}

static void test_converging(void **state)
{
	struct sim_cfg c = base_cfg(0.3);

	sim_run(&c, &run);
	check_converged(&c, &run, true);
	PT_CHECK(run.outs[run.n - 1].verdict == DT_VERDICT_CONVERGING, DUMP(&c, &run), "verdict %s",
		 dt_verdict_name(run.outs[run.n - 1].verdict));
	print_message("converging: switchover at round %u, predicted %.1f ms, model %.1f ms, "
		      "%.3f x memory\n",
		      run.n - 1, run.outs[run.n - 1].predicted_downtime_ns / 1e6,
		      run.actual_downtime_ns / 1e6,
		      (double)(run.precopy_bytes + run.final_bytes) / (GIB_PAGES * SIM_PAGE));
}

static void test_converging_random(void **state)
{
	for (unsigned i = 0; i < 400; i++) {
		struct sim_cfg c = {.policy = {.size = sizeof(struct dt_policy)}};
		double afford; /* bytes the limit leaves for pinned, device and working set */
		uint64_t cap;

		c.mem_pages = 4096 + pt_below(1 << 20);
		c.link = 1e8 * (double)(1 + pt_below(100));
		c.dirty_rate = pt_uniform(0.0, 0.3) * c.link / WIRE_PAGE;
		c.harvest_ns = pt_below(200000);
		c.fixed_cost_ns = pt_below(20 * MS);
		c.zero_pages = pt_below(c.mem_pages / 20 + 1);
		c.policy.no_defer_pinned = pt_below(4) == 0;
		afford = (0.8 * LIMIT_NS - c.fixed_cost_ns) / 1e9 * c.link;
		cap = (uint64_t)(afford / 3 / WIRE_PAGE);
		c.pinned = pt_below((cap < c.mem_pages / 8 ? cap : c.mem_pages / 8) + 1);
		c.device_bytes = pt_below((uint64_t)(afford / 3) + 1);
		if (pt_below(4)) {
			uint64_t most = c.mem_pages - c.pinned < cap ? c.mem_pages - c.pinned : cap;

			c.working_set = 1 + pt_below(most ? most : 1);
		}
		sim_run(&c, &run);
		check_converged(&c, &run, !c.policy.no_defer_pinned);
		PT_CHECK(run.n <= 12, DUMP(&c, &run), "%u rounds", run.n);
	}
}

static void test_stall(void **state)
{
	static const double ratios[] = {1.0, 1.5, 3.0};

	for (unsigned w = 0; w < 2; w++) {
		for (unsigned i = 0; i < 3; i++) {
			struct sim_cfg c = base_cfg(ratios[i]);
			unsigned first = 0;

			c.working_set = w ? GIB_PAGES / 2 : 0;
			sim_run(&c, &run);
			for (unsigned k = 1; k < run.n && !first; k++)
				if (run.outs[k].verdict == DT_VERDICT_STALLED ||
				    run.outs[k].verdict == DT_VERDICT_DIVERGING)
					first = k;
			PT_CHECK(first && first <= 3, DUMP(&c, &run),
				 "dirty rate %.1f x link: first stall verdict at round %u",
				 ratios[i], first);
			for (unsigned k = first; k < run.n; k++)
				PT_CHECK(run.outs[k].verdict == DT_VERDICT_STALLED ||
						 run.outs[k].verdict == DT_VERDICT_DIVERGING,
					 DUMP(&c, &run), "round %u: %s", k,
					 dt_verdict_name(run.outs[k].verdict));
			PT_CHECK(run.last == DT_DECISION_ASK && run.n == first + 3, DUMP(&c, &run),
				 "%s after %u rounds, first stall at %u",
				 dt_decision_name(run.last), run.n, first);
			PT_CHECK(strstr(run.outs[run.n - 1].reason, "not converging for 3 rounds"),
				 DUMP(&c, &run), "reason: %s", run.outs[run.n - 1].reason);
		}
	}
}

/* A dirty rate doubling every round: the counts fall, then rise. */
static void test_diverging(void **state)
{
	struct sim_cfg c = base_cfg(0.2);
	unsigned rise = 0, diverging = 0;

	c.growth = 2;
	c.policy.max_downtime_ns = 10 * MS;
	sim_run(&c, &run);
	for (unsigned k = 2; k < run.n && !rise; k++)
		if (run.rounds[k].dirty_pages > run.rounds[k - 1].dirty_pages)
			rise = k;
	for (unsigned k = rise; k < run.n && !diverging; k++)
		if (run.outs[k].verdict == DT_VERDICT_DIVERGING)
			diverging = k;
	PT_CHECK(rise && diverging && diverging <= rise + 2, DUMP(&c, &run),
		 "counts rise from round %u, first DIVERGING at %u", rise, diverging);
	for (unsigned k = 1; k < rise; k++)
		PT_CHECK(run.outs[k].verdict != DT_VERDICT_DIVERGING, DUMP(&c, &run),
			 "round %u diverging while the counts fall", k);
	PT_CHECK(run.last == DT_DECISION_ASK, DUMP(&c, &run), "ended with %s",
		 dt_decision_name(run.last));
}

static void test_pinned(void **state)
{
	struct sim_cfg c = base_cfg(0.5);
	uint64_t pinned = 16384, ws = 8192, predicted[2];

	c.pinned = pinned;
	c.working_set = ws;
	c.device_bytes = 1 << 20;
	for (unsigned nodefer = 0; nodefer < 2; nodefer++) {
		struct sim_run *r = nodefer ? &run2 : &run;
		const struct dt_round_stats *r0 = &r->rounds[0], *r1 = &r->rounds[1];
		double bw;

		c.policy.no_defer_pinned = nodefer;
		c.policy.max_downtime_ns = 50 * MS; /* (W + P) pages need 98 ms: never fits */
		sim_run(&c, r);
		PT_CHECK(r->n >= 3, DUMP(&c, r), "%u rounds", r->n);
		PT_CHECK(r0->dirty_pages == GIB_PAGES - (nodefer ? 0 : pinned), DUMP(&c, r),
			 "round 0 sends %llu pages", (unsigned long long)r0->dirty_pages);
		PT_CHECK(r1->dirty_pages == ws + (nodefer ? pinned : 0), DUMP(&c, r),
			 "round 1 has %llu dirty", (unsigned long long)r1->dirty_pages);
		bw = (double)r0->sent_bytes * 1e9 / (double)r0->send_ns;
		PT_CHECK(r->outs[1].bandwidth > bw * 0.999999 &&
				 r->outs[1].bandwidth < bw * 1.000001,
			 DUMP(&c, r), "bandwidth %.0f, round 0 goodput %.0f", r->outs[1].bandwidth,
			 bw);
		/* From round one: the deferred pages are added; sent ones are not added again. */
		predicted[nodefer] = r->outs[1].predicted_downtime_ns;
		PT_CHECK(predicted[nodefer] == expected_prediction(r1, nodefer ? 0 : pinned,
								   r->outs[1].bandwidth,
								   c.fixed_cost_ns),
			 DUMP(&c, r), "predicted %llu ns", (unsigned long long)predicted[nodefer]);
	}
	PT_CHECK(predicted[0] == predicted[1], DUMP(&c, &run);
		 DUMP(&c, &run2), "deferred %llu ns, not deferred %llu ns",
		 (unsigned long long)predicted[0], (unsigned long long)predicted[1]);
	/* What deferral buys: the pinned pages crossed the link once per round without it. */
	PT_CHECK(run2.precopy_bytes >= run.precopy_bytes + (run2.n - 1) * pinned * WIRE_PAGE,
		 DUMP(&c, &run2), "%llu vs %llu bytes", (unsigned long long)run2.precopy_bytes,
		 (unsigned long long)run.precopy_bytes);
}

static void test_override(void **state)
{
	struct sim_cfg c = base_cfg(0.1);
	unsigned measured_n;

	sim_run(&c, &run);
	check_converged(&c, &run, false);
	measured_n = run.n;
	c.policy.bandwidth_override = 2.5e8;
	sim_run(&c, &run);
	check_converged(&c, &run, false);
	PT_CHECK(run.n > measured_n, DUMP(&c, &run), "%u rounds with the override, %u without",
		 run.n, measured_n);
	for (unsigned k = 0; k < run.n; k++) {
		PT_CHECK(run.outs[k].bandwidth == 2.5e8, DUMP(&c, &run), "round %u: %.0f B/s", k,
			 run.outs[k].bandwidth);
		PT_CHECK(run.outs[k].predicted_downtime_ns ==
				 expected_prediction(&run.rounds[k], 0, 2.5e8, c.fixed_cost_ns),
			 DUMP(&c, &run), "round %u", k);
	}
	/* Known before anything is sent, but round 0 still goes first. */
	PT_CHECK(run.outs[0].decision == DT_DECISION_CONTINUE &&
			 run.outs[0].predicted_downtime_ns < UINT64_MAX,
		 DUMP(&c, &run), "round 0");
}

/* Round 0 alone: nothing measured, nothing predicted. */
static void test_round0_unmeasured(void **state)
{
	struct sim_cfg c = base_cfg(0.1);

	c.mem_pages = 16; /* would fit in no time */
	c.max_decisions = 1;
	sim_run(&c, &run);
	PT_CHECK(run.outs[0].decision == DT_DECISION_CONTINUE &&
			 run.outs[0].verdict == DT_VERDICT_UNKNOWN &&
			 run.outs[0].predicted_downtime_ns == UINT64_MAX &&
			 run.outs[0].bandwidth == 0,
		 DUMP(&c, &run), "round 0: %s", run.outs[0].reason);
}

/* A stalled workload that no cap but the one under test stops. */
static struct sim_cfg stalled_cfg(void)
{
	struct sim_cfg c = base_cfg(1.0);

	c.working_set = GIB_PAGES / 2;
	c.policy.stall_rounds = 1000;
	c.policy.max_rounds = 1000;
	c.policy.max_bytes_factor = 1000;
	return c;
}

static void test_max_rounds(void **state)
{
	struct sim_cfg c = stalled_cfg();

	c.policy.max_rounds = 5;
	sim_run(&c, &run);
	PT_CHECK(run.last == DT_DECISION_ASK && run.n == 6, DUMP(&c, &run), "%s at round %u",
		 dt_decision_name(run.last), run.n - 1);
	PT_CHECK(strstr(run.outs[5].reason, "5 pre-copy rounds sent (max 5)"), DUMP(&c, &run),
		 "reason: %s", run.outs[5].reason);
	c.policy.max_rounds = 0; /* the default, 30 */
	sim_run(&c, &run);
	PT_CHECK(run.last == DT_DECISION_ASK && run.n == 31, DUMP(&c, &run), "%s at round %u",
		 dt_decision_name(run.last), run.n - 1);
}

static void test_bytes_cap(void **state)
{
	static const double factors[] = {0 /* default 3 */, 1.5, 4.25};

	for (unsigned i = 0; i < 3; i++) {
		struct sim_cfg c = stalled_cfg();
		double cap = (factors[i] ? factors[i] : 3.0) * GIB_PAGES * SIM_PAGE;
		unsigned expect = 0;

		c.policy.max_bytes_factor = factors[i];
		sim_run(&c, &run);
		/* Decision n sees the bytes sent by rounds 0..n-2. */
		for (unsigned n = 2; n <= run.n && !expect; n++)
			if ((double)run.rounds[n - 2].total_bytes > cap)
				expect = n;
		PT_CHECK(run.last == DT_DECISION_ASK && expect && run.n == expect, DUMP(&c, &run),
			 "factor %.2f: %s after %u rounds, cap passed at %u", factors[i],
			 dt_decision_name(run.last), run.n, expect);
		PT_CHECK(strstr(run.outs[run.n - 1].reason, "MiB sent >"), DUMP(&c, &run),
			 "reason: %s", run.outs[run.n - 1].reason);
	}
}

/* The link slows to a quarter at round 4: the estimate follows within two rounds. */
static void test_rate_drop(void **state)
{
	struct sim_cfg c = base_cfg(0.5);
	double slow = 0.25e9;

	c.working_set = GIB_PAGES / 4;
	c.policy.max_downtime_ns = MS / 10;
	c.policy.stall_rounds = 1000;
	c.drop_round = 4;
	c.drop_factor = 0.25;
	c.max_decisions = 10;
	sim_run(&c, &run);
	PT_CHECK(run.n == 10, DUMP(&c, &run), "%u rounds", run.n);
	PT_CHECK(run.outs[4].bandwidth > 0.99e9 && run.outs[4].bandwidth < 1.01e9, DUMP(&c, &run),
		 "before the drop: %.0f", run.outs[4].bandwidth);
	PT_CHECK(run.outs[5].bandwidth < 0.5e9, DUMP(&c, &run), "one round after: %.0f",
		 run.outs[5].bandwidth);
	PT_CHECK(run.outs[6].bandwidth < 1.3 * slow, DUMP(&c, &run), "two rounds after: %.0f",
		 run.outs[6].bandwidth);
	for (unsigned k = 5; k < run.n; k++)
		PT_CHECK(run.outs[k].bandwidth >= slow * 0.999, DUMP(&c, &run),
			 "round %u: %.0f below the link", k, run.outs[k].bandwidth);
}

static void test_determinism(void **state)
{
	struct sim_cfg cfgs[] = {base_cfg(0.3), base_cfg(1.5), stalled_cfg()};

	cfgs[1].pinned = 1000;
	cfgs[2].drop_round = 3;
	cfgs[2].drop_factor = 0.5;
	cfgs[2].max_decisions = 12;
	for (unsigned i = 0; i < 3; i++) {
		sim_run(&cfgs[i], &run);
		sim_run(&cfgs[i], &run2);
		PT_CHECK(!memcmp(&run, &run2, sizeof(run)), DUMP(&cfgs[i], &run), "config %u", i);
		/* Replay every prefix from the recorded trace, whose outputs are scribbled over:
		 * they are not inputs; nor are the newest round's send fields and total. */
		for (unsigned k = 0; k < run.n; k++) {
			struct dt_round_stats saved = run2.rounds[k];
			struct dt_policy_out out;

			run2.rounds[k].dirty_rate = -1;
			run2.rounds[k].bandwidth = 12345;
			run2.rounds[k].predicted_downtime_ns = 7;
			run2.rounds[k].verdict = DT_VERDICT_DIVERGING;
			run2.rounds[k].decision = DT_DECISION_ASK;
			saved = run2.rounds[k];
			run2.rounds[k].sent_bytes = 1;
			run2.rounds[k].sent_pages = 0;
			run2.rounds[k].zero_pages = 5;
			run2.rounds[k].send_ns = 9;
			run2.rounds[k].round_ns = 1;
			run2.rounds[k].total_bytes = UINT64_MAX;
			assert_int_equal(
				dt_policy_decide(&cfgs[i].policy, run2.rounds, k + 1, &out), 0);
			run2.rounds[k] = saved;
			PT_CHECK(!memcmp(&out, &run.outs[k], sizeof(out)), DUMP(&cfgs[i], &run),
				 "config %u round %u: %s / %s", i, k, out.reason,
				 run.outs[k].reason);
		}
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_converging),
		cmocka_unit_test(test_converging_random),
		cmocka_unit_test(test_stall),
		cmocka_unit_test(test_diverging),
		cmocka_unit_test(test_pinned),
		cmocka_unit_test(test_override),
		cmocka_unit_test(test_round0_unmeasured),
		cmocka_unit_test(test_max_rounds),
		cmocka_unit_test(test_bytes_cap),
		cmocka_unit_test(test_rate_drop),
		cmocka_unit_test(test_determinism),
	};

	pt_seed_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
