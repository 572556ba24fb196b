/* SPDX-License-Identifier: MIT */
/*
 * tests/policy/test_policy_unit.c - dt_policy_decide() on small hand-made inputs with
 * answers worked out by hand: every -EINVAL path (and its log line), the defaults and the
 * size field of struct dt_policy, the bandwidth smoothing against its formula, a short noisy
 * round that must not swing the estimate, the verdict rules one by one, the order of the ASK
 * reasons, and purity over random inputs (the seed is printed).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <dirtytrack/log.h>
#include <dirtytrack/migrate.h>

#include "policy_test.h"

#define MS	  1000000ull
#define PAGE	  4096u
#define MEM_PAGES 262144ull /* 1 GiB */

static struct dt_policy policy = {.size = sizeof(struct dt_policy)};

/*
 * Rounds 0..n-1: round i harvested dirty[i] pages; rounds before the newest sent them at
 * `rate` bytes per second, each lasting send + 1 ms. Round 0 sends the whole memory.
 */
static void make_trace(struct dt_round_stats *r, unsigned n, const uint64_t *dirty, double rate)
{
	uint64_t total = 0;

	memset(r, 0, n * sizeof(*r));
	for (unsigned i = 0; i < n; i++) {
		r[i].round = i;
		r[i].page_size = PAGE;
		r[i].memory_bytes = MEM_PAGES * PAGE;
		r[i].dirty_pages = i ? dirty[i] : MEM_PAGES;
		r[i].dirty[DT_CLASS_CPU] = r[i].dirty_pages;
		r[i].fixed_cost_ns = MS;
		r[i].total_bytes = total;
		if (i + 1 == n)
			break;
		r[i].sent_pages = r[i].dirty_pages;
		r[i].sent_bytes = r[i].dirty_pages * PAGE;
		r[i].send_ns = (uint64_t)((double)r[i].sent_bytes * 1e9 / rate);
		r[i].round_ns = r[i].send_ns + MS;
		total += r[i].sent_bytes;
		r[i].total_bytes = total;
	}
}

static struct dt_policy_out decide(const struct dt_round_stats *r, unsigned n)
{
	struct dt_policy_out out;

	assert_int_equal(dt_policy_decide(&policy, r, n, &out), 0);
	return out;
}

/* ---- input checks --------------------------------------------------------------------- */

static char last_log[512];
static int nlogs;

static void capture(void *opaque, enum dt_log_level level, const char *msg)
{
	if (level == DT_LOG_ERR) {
		snprintf(last_log, sizeof(last_log), "%s", msg);
		nlogs++;
	}
}

static void expect_einval(const struct dt_policy *p, const struct dt_round_stats *r, unsigned n,
			  const char *what)
{
	struct dt_policy_out out;
	int before = nlogs, ret;

	memset(&out, 0xa5, sizeof(out));
	ret = dt_policy_decide(p, r, n, &out);
	PT_CHECK(ret == -EINVAL, , "%s: returned %d", what, ret);
	PT_CHECK(nlogs == before + 1 && strstr(last_log, "dt_policy_decide"), , "%s: log '%s'",
		 what, last_log);
	PT_CHECK(out.decision == DT_DECISION_CONTINUE && out.predicted_downtime_ns == 0, ,
		 "%s: out not cleared", what);
}

static void test_einval(void **state)
{
	static const uint64_t dirty[] = {0, 1000, 500};
	struct dt_round_stats r[3], bad[3];
	struct dt_policy p = policy;
	struct dt_policy_out out;

	dt_set_log(capture, NULL, DT_LOG_DEBUG);
	make_trace(r, 3, dirty, 1e9);
	assert_int_equal(dt_policy_decide(&policy, r, 3, &out), 0);

	expect_einval(&policy, r, 0, "n == 0");
	expect_einval(NULL, r, 3, "NULL policy");
	expect_einval(&policy, NULL, 3, "NULL rounds");
	assert_int_equal(dt_policy_decide(&policy, r, 3, NULL), -EINVAL);

#define MUTATE(i, stmt, what)                                                                      \
	do {                                                                                       \
		memcpy(bad, r, sizeof(r));                                                         \
		stmt;                                                                              \
		expect_einval(&policy, bad, 3, what);                                              \
		(void)i;                                                                           \
	} while (0)
	for (unsigned i = 0; i < 3; i++) {
		MUTATE(i, bad[i].page_size = 0, "page size 0");
		MUTATE(i, bad[i].page_size = 3000, "page size not a power of two");
		MUTATE(i, bad[i].page_size = 8192, "page size changes");
		MUTATE(i, bad[i].memory_bytes = 0, "memory 0");
		MUTATE(i, bad[i].memory_bytes += PAGE, "memory changes");
		MUTATE(i, bad[i].round = i + 1, "round misnumbered");
		MUTATE(i, bad[i].dirty_pages = MEM_PAGES + 1, "more dirty pages than memory");
		MUTATE(i, bad[i].pinned_pages = MEM_PAGES + 1, "more pinned pages than memory");
	}
	MUTATE(0, bad[1].total_bytes = bad[0].total_bytes - 1, "total_bytes falls");
	MUTATE(0, bad[0].zero_pages = bad[0].sent_pages + 1, "zero pages > sent");
	MUTATE(0, bad[1].send_ns = bad[1].round_ns + 1, "send_ns > round_ns");
	MUTATE(0, (bad[0].round = 1, bad[1].round = 0), "rounds swapped");
	MUTATE(0, bad[0].page_size = bad[1].page_size = bad[2].page_size = 3000,
	       "page size not a power of two in every round");
#undef MUTATE
	/* The newest round is not sent yet: its send fields are not checked. */
	memcpy(bad, r, sizeof(r));
	bad[2].zero_pages = 5;
	bad[2].send_ns = 9;
	bad[2].round_ns = 1;
	bad[2].total_bytes = UINT64_MAX; /* nor its total: a recorded trace has the one after */
	assert_int_equal(dt_policy_decide(&policy, bad, 3, &out), 0);
	{
		struct dt_policy_out ref;

		assert_int_equal(dt_policy_decide(&policy, r, 3, &ref), 0);
		PT_CHECK(!memcmp(&out, &ref, sizeof(out)), , "'%s' vs '%s'", out.reason,
			 ref.reason);
	}

	p.max_bytes_factor = -1;
	expect_einval(&p, r, 3, "negative byte factor");
	p.max_bytes_factor = NAN;
	expect_einval(&p, r, 3, "NaN byte factor");
	p = policy;
	p.bandwidth_override = -5;
	expect_einval(&p, r, 3, "negative override");
	p.bandwidth_override = INFINITY;
	expect_einval(&p, r, 3, "infinite override");
	dt_set_log(NULL, NULL, DT_LOG_DEBUG);
}

/* ---- policy struct -------------------------------------------------------------------- */

static void test_defaults(void **state)
{
	struct dt_policy p = {0}, q = {.size = sizeof(q), .max_rounds = 7, .max_downtime_ns = 5};

	dt_policy_defaults(&p);
	assert_int_equal(p.size, sizeof(p));
	assert_int_equal(p.max_downtime_ns, 300 * MS);
	assert_int_equal(p.max_rounds, 30);
	assert_true(p.max_bytes_factor == 3.0);
	assert_int_equal(p.stall_rounds, 3);
	assert_true(p.bandwidth_override == 0 && p.fixed_cost_ns == 0 && !p.no_defer_pinned);
	dt_policy_defaults(&q);
	assert_int_equal(q.max_rounds, 7);
	assert_int_equal(q.max_downtime_ns, 5);
	dt_policy_defaults(NULL);
}

/* size 0 (embedded in the migration options) reads every field; a shorter size only the
 * fields inside it. */
static void test_policy_size(void **state)
{
	static const uint64_t dirty[] = {0, 1000, 900};
	struct dt_round_stats r[3];
	struct dt_policy p = {.max_downtime_ns = 1, .max_rounds = 2};
	struct dt_policy_out out;

	make_trace(r, 3, dirty, 1e9);
	assert_int_equal(dt_policy_decide(&p, r, 3, &out), 0);
	assert_int_equal(out.decision, DT_DECISION_ASK); /* both fields read */
	p.size = offsetof(struct dt_policy, max_rounds); /* only max_downtime_ns inside */
	assert_int_equal(dt_policy_decide(&p, r, 3, &out), 0);
	assert_int_equal(out.decision, DT_DECISION_CONTINUE);
	p.size = sizeof(size_t); /* nothing inside: 1000 pages at 1 GB/s fit 300 ms */
	assert_int_equal(dt_policy_decide(&p, r, 3, &out), 0);
	assert_int_equal(out.decision, DT_DECISION_SWITCHOVER);
}

/* ---- bandwidth ------------------------------------------------------------------------ */

/* Rounds at 1, 0.5 and 0.25 GB/s, all over 4 MiB: weights 1, 1/2, 1/4 (newest first) on the
 * time per byte: 1/bw = (1 x 4 + 0.5 x 2 + 0.25 x 1) / 1.75 ns per byte. */
static void test_bandwidth_formula(void **state)
{
	static const uint64_t dirty[] = {0, 10000, 10000, 10000};
	struct dt_round_stats r[4];
	struct dt_policy_out out;
	double expect = 1.75 / (4 + 1 + 0.25) * 1e9;

	make_trace(r, 4, dirty, 1e9);
	r[1].send_ns *= 2, r[1].round_ns = r[1].send_ns + MS;
	r[2].send_ns *= 4, r[2].round_ns = r[2].send_ns + MS;
	out = decide(r, 4);
	PT_CHECK(fabs(out.bandwidth - expect) < 1e-6 * expect, , "bandwidth %.3f, expected %.3f",
		 out.bandwidth, expect);
	/* Predicted = 10000 pages x 4096 / bw + 1 ms fixed, rounded up to the ns. */
	PT_CHECK(out.predicted_downtime_ns ==
			 (uint64_t)ceil(10000.0 * PAGE * 1e9 / out.bandwidth) + MS,
		 , "predicted %llu", (unsigned long long)out.predicted_downtime_ns);
	/* The policy's fixed cost overrides the measured one. */
	policy.fixed_cost_ns = 7 * MS;
	out = decide(r, 4);
	policy.fixed_cost_ns = 0;
	PT_CHECK(out.predicted_downtime_ns ==
			 (uint64_t)ceil(10000.0 * PAGE * 1e9 / out.bandwidth) + 7 * MS,
		 , "predicted %llu with a fixed cost override",
		 (unsigned long long)out.predicted_downtime_ns);
}

/* A 40 KiB round timed at a tenth of the rate (a 0.4 ms scheduling hiccup) moves the
 * estimate by less than 2 %; a snapshot of it would say 100 MB/s. A 2 MiB round (a quarter
 * of the full weight) at half the rate, by 10 to 30 %. */
static void test_bandwidth_short_round(void **state)
{
	static const uint64_t dirty[] = {0, 65536, 65536, 10, 65536};
	struct dt_round_stats r[5];
	double before, after;

	make_trace(r, 5, dirty, 1e9);
	before = decide(r, 3).bandwidth;
	r[3].send_ns *= 10, r[3].round_ns = r[3].send_ns + MS;
	after = decide(r, 5).bandwidth;
	PT_CHECK(after > 0.98 * before && after <= before * 1.000001, ,
		 "%.0f B/s before the short round, %.0f after", before, after);
	make_trace(r, 5, dirty, 1e9);
	r[3].dirty_pages = r[3].sent_pages = 512;
	r[3].sent_bytes = 512 * PAGE;
	r[3].send_ns = r[3].sent_bytes * 2, r[3].round_ns = r[3].send_ns + MS;
	after = decide(r, 5).bandwidth;
	PT_CHECK(after > 0.7 * before && after < 0.9 * before, ,
		 "%.0f B/s after a slow 2 MiB round", after);
}

/* Device state is in the prediction. */
static void test_device_bytes(void **state)
{
	static const uint64_t dirty[] = {0, 1000};
	struct dt_round_stats r[2];
	struct dt_policy_out out;

	make_trace(r, 2, dirty, 1e9);
	r[1].device_bytes = 100000000; /* 100 ms at 1 GB/s */
	out = decide(r, 2);
	assert_int_equal(out.predicted_downtime_ns,
			 (uint64_t)ceil((1000.0 * PAGE + 1e8) * 1e9 / out.bandwidth) + MS);
}

/* A round the socket buffer swallowed did not cross the link: only what left counts. */
static void test_queued_bytes(void **state)
{
	static const uint64_t dirty[] = {0, 1000, 1000};
	struct dt_round_stats r[3];
	double plain, queued;

	make_trace(r, 3, dirty, 1e9);
	plain = decide(r, 3).bandwidth;
	for (unsigned i = 0; i < 2; i++) /* half of what each round sent is still queued */
		r[i].queued_bytes = (int64_t)r[i].sent_bytes / 2;
	queued = decide(r, 3).bandwidth;
	PT_CHECK(queued < 0.55 * plain && queued > 0.45 * plain, , "%.0f B/s, %.0f without a queue",
		 queued, plain);
	for (unsigned i = 0; i < 2; i++) /* all of it: nothing was measured */
		r[i].queued_bytes = (int64_t)r[i].sent_bytes;
	PT_CHECK(decide(r, 3).bandwidth == 0, , "swallowed rounds measured %.0f B/s",
		 decide(r, 3).bandwidth);
}

/* Bytes still queued from earlier rounds cross the link before the final pages. */
static void test_backlog(void **state)
{
	static const uint64_t dirty[] = {0, 1000};
	struct dt_round_stats r[2];
	struct dt_policy_out out;

	make_trace(r, 2, dirty, 1e9);
	out = decide(r, 2);
	r[1].backlog_bytes = 4u << 20;
	assert_int_equal(decide(r, 2).predicted_downtime_ns,
			 (uint64_t)ceil((1000.0 * PAGE + (4u << 20)) * 1e9 / out.bandwidth) + MS);
}

/* Work beside the final send (the source's digest) counts only where it outlasts it. */
static void test_overlap(void **state)
{
	static const uint64_t dirty[] = {0, 1000};
	struct dt_round_stats r[2];
	struct dt_policy_out out;
	uint64_t transfer;

	make_trace(r, 2, dirty, 1e9);
	out = decide(r, 2);
	transfer = out.predicted_downtime_ns - MS;
	r[1].overlap_ns = transfer / 2; /* hidden by the send */
	assert_int_equal(decide(r, 2).predicted_downtime_ns, transfer + MS);
	r[1].overlap_ns = 3 * transfer; /* the send is hidden by it */
	assert_int_equal(decide(r, 2).predicted_downtime_ns, 3 * transfer + MS);
}

/* ---- verdicts ------------------------------------------------------------------------- */

struct verdict_case {
	const char *what;
	uint64_t dirty[6]; /* dirty[0] unused: round 0 is the whole memory */
	unsigned n;
	enum dt_verdict expect;
};

static void test_verdicts(void **state)
{
	/* At 1 GB/s with 1 ms rounds around the send, dirty/link of round n-1 is about
	 * dirty[n-1] / dirty[n-2] (the previous round lasted its send): a count that does not
	 * shrink means a link that does not drain it. */
	static const struct verdict_case cases[] = {
		{"round 0 only", {0}, 1, DT_VERDICT_UNKNOWN},
		{"one count, low ratio", {0, 50000}, 2, DT_VERDICT_UNKNOWN},
		{"halving", {0, 80000, 40000}, 3, DT_VERDICT_CONVERGING},
		{"halving, 4 counts", {0, 80000, 40000, 20000, 10000}, 5, DT_VERDICT_CONVERGING},
		{"flat", {0, 50000, 50000, 50000}, 4, DT_VERDICT_STALLED},
		{"flat within 5 %", {0, 50000, 51000, 49500, 50500}, 5, DT_VERDICT_STALLED},
		{"flat at zero", {0, 0, 0, 0}, 4, DT_VERDICT_STALLED},
		{"creeping up 2 % a round", {0, 50000, 51000, 52000, 53000}, 5, DT_VERDICT_STALLED},
		{"creeping up 6 % a round",
		 {0, 50000, 53000, 56000, 59000},
		 5,
		 DT_VERDICT_DIVERGING},
		{"rising", {0, 20000, 30000, 45000}, 4, DT_VERDICT_DIVERGING},
		{"fell, then rises (last 4)",
		 {0, 90000, 10000, 12000, 15000, 19000},
		 6,
		 DT_VERDICT_DIVERGING},
		{"falling 4 % a round", {0, 50000, 48000, 46080}, 4, DT_VERDICT_STALLED},
		{"fell, but the link no longer drains",
		 {0, 90000, 40000, 39000},
		 4,
		 DT_VERDICT_STALLED},
		{"falling 10 %, ratio 0.9", {0, 50000, 45000, 40500}, 4, DT_VERDICT_CONVERGING},
	};

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct verdict_case *c = &cases[i];
		struct dt_round_stats r[6];
		struct dt_policy_out out;

		make_trace(r, c->n, c->dirty, 1e9);
		/* Rounds that last exactly their send, so the ratio is exact. */
		for (unsigned k = 0; k + 1 < c->n; k++)
			r[k].round_ns = r[k].send_ns;
		out = decide(r, c->n);
		PT_CHECK(out.verdict == c->expect, , "%s: %s, expected %s (%s)", c->what,
			 dt_verdict_name(out.verdict), dt_verdict_name(c->expect), out.reason);
	}
}

/*
 * The fit covers the last 4 counts: 80000 then 50000 three times is still falling (-16 % of
 * the mean a round); one more 50000 and the 80000 has left the window: flat. The rounds
 * last 4x their send (a saturated working set), so dirty/link stays low and out of the way.
 */
static void test_trend_window(void **state)
{
	static const uint64_t dirty[] = {0, 80000, 50000, 50000, 50000, 50000};
	struct dt_round_stats r[6];
	struct dt_policy_out out;

	make_trace(r, 6, dirty, 1e9);
	for (unsigned k = 1; k < 5; k++)
		r[k].round_ns = 4 * r[k].send_ns;
	out = decide(r, 5);
	PT_CHECK(out.verdict == DT_VERDICT_CONVERGING &&
			 fabs(out.rel_slope + 9000.0 / 57500) < 1e-9,
		 , "%s, slope %.4f (%s)", dt_verdict_name(out.verdict), out.rel_slope, out.reason);
	PT_CHECK(fabs(out.slope + 9000) < 1e-6, , "slope %.3f pages/round", out.slope);
	out = decide(r, 6);
	PT_CHECK(out.verdict == DT_VERDICT_STALLED && out.rel_slope == 0, , "%s, slope %.4f",
		 dt_verdict_name(out.verdict), out.rel_slope);
	/* The dirty rate is over the whole previous round, not its send. */
	PT_CHECK(out.dirty_rate == 50000 * 1e9 / (double)r[4].round_ns, , "dirty rate %.3f",
		 out.dirty_rate);
	PT_CHECK(fabs(out.link_ratio - 0.25) < 1e-4, , "dirty/link %.5f", out.link_ratio);
}

/*
 * With a single post-round-0 count, only the link ratio speaks. Round 0 lasted its send, so
 * dirty/link = pages dirtied / pages' worth of bytes round 0 sent.
 */
static void test_verdict_ratio_one_count(void **state)
{
	static const uint64_t dirty[] = {0, 100000};
	struct dt_round_stats r[2];
	struct dt_policy_out out;

	make_trace(r, 2, dirty, 1e9);
	r[0].round_ns = r[0].send_ns;
	r[1].dirty_pages = MEM_PAGES / 4;
	out = decide(r, 2);
	PT_CHECK(out.verdict == DT_VERDICT_UNKNOWN && fabs(out.link_ratio - 0.25) < 1e-6, ,
		 "ratio %.4f: %s", out.link_ratio, dt_verdict_name(out.verdict));
	r[1].dirty_pages = MEM_PAGES * 97 / 100;
	out = decide(r, 2);
	PT_CHECK(out.verdict == DT_VERDICT_STALLED, , "ratio %.4f: %s", out.link_ratio,
		 dt_verdict_name(out.verdict));
	/* Half the memory was zero pages, sent as flags: round 0 was quick, and the guest
	 * dirtied more than the link carries in the time. */
	r[0].sent_bytes = MEM_PAGES * PAGE / 2;
	r[0].send_ns = r[0].round_ns = r[0].sent_bytes; /* 1 GB/s */
	r[0].total_bytes = r[1].total_bytes = r[0].sent_bytes;
	r[1].dirty_pages = MEM_PAGES * 6 / 10;
	out = decide(r, 2);
	PT_CHECK(out.verdict == DT_VERDICT_DIVERGING && fabs(out.link_ratio - 1.2) < 1e-4, ,
		 "ratio %.4f: %s", out.link_ratio, dt_verdict_name(out.verdict));
}

/*
 * Where the counts settle: a writer of w pages/ns, uniform over a working set of `set` pages,
 * dirties set (1 - exp(-w t / set)) pages in a window of t ns. Each round lasts its send plus
 * 1 ms at 1 GB/s. The expected settled count is the fixed point of that recurrence, found
 * here by plain iteration (the policy bisects on a curve it fits from two counts).
 */
struct settle_case {
	const char *what;
	double set, ratio; /* working set (pages); write rate x page / link */
	enum dt_verdict expect;
};

static double uniform_writer(double set, double w, double t_ns)
{
	return set * -expm1(-w * t_ns / set);
}

static void test_settle_projection(void **state)
{
	static const struct settle_case cases[] = {
		{"whole memory at 1.2 x link", MEM_PAGES, 1.2, DT_VERDICT_STALLED},
		/* Writes outrun the link, but rewrites of the same pages are free: settles at
		 * 28635 pages, 117 ms. */
		{"whole memory at 1.05 x link", MEM_PAGES, 1.05, DT_VERDICT_CONVERGING},
		{"whole memory at 1.5 x link", MEM_PAGES, 1.5, DT_VERDICT_STALLED},
		{"whole memory at 0.8 x link", MEM_PAGES, 0.8, DT_VERDICT_CONVERGING},
		{"whole memory at 0.3 x link", MEM_PAGES, 0.3, DT_VERDICT_CONVERGING},
		{"40000-page set at 3 x link (160 ms: fits)", 40000, 3, DT_VERDICT_CONVERGING},
		{"120000-page set at 1.5 x link (490 ms)", 120000, 1.5, DT_VERDICT_STALLED},
	};
	const double bw = 1e9, ns_per_page = PAGE * 1e9 / bw;

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct settle_case *c = &cases[i];
		double w = c->ratio / ns_per_page, t, fixed = MEM_PAGES;
		uint64_t dirty[3] = {0};
		struct dt_round_stats r[3];
		struct dt_policy_out out;

		t = MEM_PAGES * ns_per_page + MS; /* round 0 */
		dirty[1] = (uint64_t)uniform_writer(c->set, w, t);
		t = (double)dirty[1] * ns_per_page + MS;
		dirty[2] = (uint64_t)uniform_writer(c->set, w, t);
		make_trace(r, 3, dirty, bw);
		out = decide(r, 3);
		for (int k = 0; k < 100000; k++)
			fixed = uniform_writer(c->set, w, fixed * ns_per_page + MS);
		PT_CHECK(out.verdict == c->expect, ,
			 "%s: %s, expected %s (counts %" PRIu64 " %" PRIu64
			 ", settle %.0f, fixed point %.0f; %s)",
			 c->what, dt_verdict_name(out.verdict), dt_verdict_name(c->expect),
			 dirty[1], dirty[2], out.settle_pages, fixed, out.reason);
		/* The fit is exact for this writer, but for the integer counts. */
		PT_CHECK(fabs(out.settle_pages - fixed) <= 0.01 * fixed + 2, ,
			 "%s: settles at %.1f pages, expected %.1f", c->what, out.settle_pages,
			 fixed);
	}
}

/* No projection from too little, or from counts a stationary writer cannot make. */
static void test_settle_unknown(void **state)
{
	static const uint64_t rising[] = {0, 50000, 60000};
	struct dt_round_stats r[3];
	struct dt_policy_out out;

	make_trace(r, 2, rising, 1e9);
	out = decide(r, 2);
	PT_CHECK(out.settle_pages == -1, , "one count: settle %.1f", out.settle_pages);
	/* The window shrank (50000 pages sent, not the memory) but the count rose. */
	make_trace(r, 3, rising, 1e9);
	out = decide(r, 3);
	PT_CHECK(out.settle_pages == -1 && out.verdict == DT_VERDICT_DIVERGING, ,
		 "rising: settle %.1f, %s", out.settle_pages, dt_verdict_name(out.verdict));
	/* Bad input leaves it at -1 too. */
	assert_int_equal(dt_policy_decide(&policy, r, 0, &out), -EINVAL);
	PT_CHECK(out.settle_pages == -1, , "EINVAL: settle %.1f", out.settle_pages);
}

/*
 * A switchover floor over the limit (here the work beside the final send, as the digest of a
 * large memory): the counts converge and the verdict says so, but no round makes progress
 * towards the limit, so after stall_rounds rounds the policy asks, naming the floor.
 */
static void test_floor(void **state)
{
	static const uint64_t dirty[] = {0, 80000, 40000, 20000, 10000, 5000};
	struct dt_round_stats r[6];
	struct dt_policy_out out;

	make_trace(r, 6, dirty, 1e9);
	for (unsigned k = 0; k < 6; k++)
		r[k].overlap_ns = 400 * MS; /* > 270 ms, the limit less the margin */
	for (unsigned n = 2; n <= 6; n++) {
		out = decide(r, n);
		PT_CHECK(out.not_converging == (n - 1 < 3 ? n - 1 : 3), , "n %u: streak %u (%s)", n,
			 out.not_converging, out.reason);
		if (n >= 3)
			PT_CHECK(out.verdict == DT_VERDICT_CONVERGING, , "n %u: %s", n,
				 dt_verdict_name(out.verdict));
		PT_CHECK((out.decision == DT_DECISION_ASK) == (n >= 4), , "n %u: %s (%s)", n,
			 dt_decision_name(out.decision), out.reason);
	}
	PT_CHECK(strstr(out.reason, "the floor 401.0 ms"), , "reason: %s", out.reason);
	/* Without it the same counts switch over once 5000 pages fit. */
	for (unsigned k = 0; k < 6; k++)
		r[k].overlap_ns = 0;
	out = decide(r, 6);
	PT_CHECK(out.decision == DT_DECISION_SWITCHOVER, , "%s (%s)",
		 dt_decision_name(out.decision), out.reason);
}

/* A decision recorded into its round: exactly the five fields, nothing else touched. */
static void test_record(void **state)
{
	static const uint64_t dirty[] = {0, 80000, 40000};
	struct dt_round_stats r[3], before;
	struct dt_policy_out out;

	make_trace(r, 3, dirty, 1e9);
	out = decide(r, 3);
	before = r[2];
	dt_round_stats_record(&r[2], &out);
	PT_CHECK(r[2].dirty_rate == out.dirty_rate && r[2].bandwidth == out.bandwidth &&
			 r[2].predicted_downtime_ns == out.predicted_downtime_ns &&
			 r[2].verdict == out.verdict && r[2].decision == out.decision,
		 , "the recorded fields differ from the decision");
	before.dirty_rate = r[2].dirty_rate;
	before.bandwidth = r[2].bandwidth;
	before.predicted_downtime_ns = r[2].predicted_downtime_ns;
	before.verdict = r[2].verdict;
	before.decision = r[2].decision;
	PT_CHECK(!memcmp(&before, &r[2], sizeof(before)), , "a field other than the five changed");
}

/* ---- decisions ------------------------------------------------------------------------ */

static void test_ask_order(void **state)
{
	/* Flat at 100000 pages (410 ms at 1 GB/s): stalled from round 2. */
	static const uint64_t dirty[] = {0, 100000, 100000, 100000, 100000};
	struct dt_round_stats r[5];
	struct dt_policy_out out;

	make_trace(r, 5, dirty, 1e9);
	out = decide(r, 4); /* stalled at rounds 2 and 3: not yet */
	PT_CHECK(out.decision == DT_DECISION_CONTINUE && out.not_converging == 2, ,
		 "round 3: %s, %u (%s)", dt_decision_name(out.decision), out.not_converging,
		 out.reason);
	out = decide(r, 5);
	PT_CHECK(out.decision == DT_DECISION_ASK && out.not_converging == 3 &&
			 strstr(out.reason, "stalled, not converging for 3 rounds"),
		 , "round 4: %s (%s)", dt_decision_name(out.decision), out.reason);
	/* The stall is named before the caps that also apply. */
	policy.max_rounds = 4;
	policy.max_bytes_factor = 1.2;
	out = decide(r, 5);
	PT_CHECK(strstr(out.reason, "not converging"), , "%s", out.reason);
	policy.stall_rounds = 10;
	out = decide(r, 5);
	PT_CHECK(out.decision == DT_DECISION_ASK && strstr(out.reason, "4 pre-copy rounds"), , "%s",
		 out.reason);
	policy.max_rounds = 0;
	out = decide(r, 5);
	PT_CHECK(out.decision == DT_DECISION_ASK && strstr(out.reason, "MiB sent > 1.2 x 1024"), ,
		 "%s", out.reason);
	/* A fit wins over every cap. */
	policy.max_downtime_ns = 500 * MS;
	out = decide(r, 5);
	PT_CHECK(out.decision == DT_DECISION_SWITCHOVER, , "%s", out.reason);
	policy = (struct dt_policy){.size = sizeof(policy)};
	/* The streak is recomputed, not read from the rounds' recorded verdicts. */
	for (unsigned i = 0; i < 5; i++)
		r[i].verdict = DT_VERDICT_CONVERGING;
	out = decide(r, 5);
	PT_CHECK(out.decision == DT_DECISION_ASK, , "%s", out.reason);
}

/* Without a margin, a prediction exactly at the limit switches over; one ns more continues.
 * With the default margin (0.1) the prediction must fit 90 % of the limit; a margin of 1 or
 * more, or not finite, is -EINVAL. */
static void test_limit_inclusive(void **state)
{
	static const uint64_t dirty[] = {0, 1000};
	struct dt_round_stats r[2];
	struct dt_policy_out out;

	make_trace(r, 2, dirty, 1e9);
	out = decide(r, 2);
	policy.margin = -1;
	policy.max_downtime_ns = out.predicted_downtime_ns;
	assert_int_equal(decide(r, 2).decision, DT_DECISION_SWITCHOVER);
	policy.max_downtime_ns = out.predicted_downtime_ns - 1;
	assert_int_equal(decide(r, 2).decision, DT_DECISION_CONTINUE);
	policy.margin = 0; /* the default */
	policy.max_downtime_ns = out.predicted_downtime_ns;
	assert_int_equal(decide(r, 2).decision, DT_DECISION_CONTINUE);
	policy.max_downtime_ns = (uint64_t)(out.predicted_downtime_ns / 0.9) + 2;
	assert_int_equal(decide(r, 2).decision, DT_DECISION_SWITCHOVER);
	policy.margin = 0.5;
	assert_int_equal(decide(r, 2).decision, DT_DECISION_CONTINUE);
	policy.max_downtime_ns = 2 * out.predicted_downtime_ns + 2;
	assert_int_equal(decide(r, 2).decision, DT_DECISION_SWITCHOVER);
	{
		static const double bad[] = {1.0, 2.0, INFINITY, NAN};
		struct dt_policy_out o;

		for (unsigned i = 0; i < 4; i++) {
			policy.margin = bad[i];
			assert_int_equal(dt_policy_decide(&policy, r, 2, &o), -EINVAL);
		}
	}
	policy = (struct dt_policy){.size = sizeof(policy)};
}

/* Random valid traces: the same input twice gives the same bytes out, and the recorded
 * outputs in the rounds do not change anything. */
static void test_purity_random(void **state)
{
	for (unsigned iter = 0; iter < 2000; iter++) {
		struct dt_round_stats r[12];
		struct dt_policy p = {.size = pt_below(2) ? sizeof(p) : 0};
		struct dt_policy_out a, b;
		unsigned n = 1 + pt_below(12);
		uint64_t dirty[12];

		for (unsigned i = 0; i < 12; i++)
			dirty[i] = pt_below(MEM_PAGES + 1);
		make_trace(r, n, dirty, 1e7 * (double)(1 + pt_below(1000)));
		for (unsigned i = 0; i < n; i++) {
			r[i].pinned_pages = pt_below(1000);
			r[i].device_bytes = pt_below(1 << 24);
			r[i].fixed_cost_ns = pt_below(50 * MS);
		}
		p.no_defer_pinned = pt_below(2);
		p.bandwidth_override = pt_below(4) ? 0 : 1e6 * (double)(1 + pt_below(10000));
		p.stall_rounds = (uint32_t)pt_below(5);
		p.max_rounds = (uint32_t)pt_below(12);
		assert_int_equal(dt_policy_decide(&p, r, n, &a), 0);
		for (unsigned i = 0; i < n; i++) {
			r[i].dirty_rate = (double)pt_next();
			r[i].bandwidth = -1;
			r[i].predicted_downtime_ns = pt_next();
			r[i].verdict = (enum dt_verdict)pt_below(4);
			r[i].decision = (enum dt_decision)pt_below(4);
		}
		assert_int_equal(dt_policy_decide(&p, r, n, &b), 0);
		PT_CHECK(!memcmp(&a, &b, sizeof(a)), , "iteration %u: '%s' vs '%s'", iter, a.reason,
			 b.reason);
		PT_CHECK(strlen(a.reason) > 0 && a.decision != DT_DECISION_GIVE_UP, ,
			 "iteration %u: %s '%s'", iter, dt_decision_name(a.decision), a.reason);
		PT_CHECK(n > 1 || a.decision == DT_DECISION_CONTINUE, , "round 0: %s",
			 dt_decision_name(a.decision));
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_einval),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_policy_size),
		cmocka_unit_test(test_bandwidth_formula),
		cmocka_unit_test(test_bandwidth_short_round),
		cmocka_unit_test(test_device_bytes),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_backlog),
		cmocka_unit_test(test_queued_bytes),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_trend_window),
		cmocka_unit_test(test_verdict_ratio_one_count),
		cmocka_unit_test(test_settle_projection),
		cmocka_unit_test(test_settle_unknown),
		cmocka_unit_test(test_floor),
		cmocka_unit_test(test_record),
		cmocka_unit_test(test_ask_order),
		cmocka_unit_test(test_limit_inclusive),
		cmocka_unit_test(test_purity_random),
	};

	pt_seed_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
