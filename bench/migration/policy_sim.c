/* SPDX-License-Identifier: MIT */
/*
 * bench/migration/policy_sim.c - every policy of policies.h over the simulated matrix of
 * issue 6 (sim.h): workloads x dirty rates x links x RTTs x pinned sets x memory sizes x
 * link drop x seeds. One JSON object per run on stdout, a table of medians and p95 per
 * policy x workload on stderr. Simulated, not measured: docs/migration-bench.md.
 *
 *   policy_sim [--quick] [--seeds N] [--policy NAME]
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

struct sample {
	double downtime_ms, pred_err, total_s, rounds, bytes_ratio, pinned_pre_mib;
	bool converged, within_limit;
};

struct cell {
	char workload[32];
	unsigned policy;
	struct sample *v;
	unsigned n, cap;
};

static struct cell *cells;
static unsigned ncells;

static struct cell *cell_get(const char *wl, unsigned policy)
{
	for (unsigned i = 0; i < ncells; i++)
		if (cells[i].policy == policy && !strcmp(cells[i].workload, wl))
			return &cells[i];
	cells = realloc(cells, (ncells + 1) * sizeof(*cells));
	if (!cells)
		abort();
	memset(&cells[ncells], 0, sizeof(cells[0]));
	snprintf(cells[ncells].workload, sizeof(cells[0].workload), "%s", wl);
	cells[ncells].policy = policy;
	return &cells[ncells++];
}

static void cell_add(struct cell *c, const struct sample *s)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 64;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		if (!c->v)
			abort();
	}
	c->v[c->n++] = *s;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank quantile of the field at `off` over the samples `pick` selects; NaN if none. */
static double quantile(const struct cell *c, size_t off, double q, bool converged_only)
{
	double *x = malloc((c->n + 1) * sizeof(*x)), r;
	unsigned k = 0;

	if (!x)
		abort();
	for (unsigned i = 0; i < c->n; i++)
		if (!converged_only || c->v[i].converged) {
			double v = *(const double *)((const char *)&c->v[i] + off);

			if (!isnan(v))
				x[k++] = v;
		}
	if (!k) {
		free(x);
		return NAN;
	}
	qsort(x, k, sizeof(*x), cmp_double);
	r = x[(unsigned)ceil(q * k) - 1 < k ? (unsigned)ceil(q * k) - 1 : k - 1];
	free(x);
	return r;
}

static void json_num(const char *key, double v, const char *sep)
{
	if (isfinite(v))
		printf("\"%s\":%.4f%s", key, v, sep);
	else
		printf("\"%s\":null%s", key, sep);
}

static void run_one(const struct bsim_cfg *c, unsigned pi, const char *wl)
{
	const struct bench_policy *p = &bench_policies[pi];
	struct bsim_result r;
	struct sample s;

	if (bsim_run(c, p, &r, NULL)) {
		fprintf(stderr, "policy %s failed\n", p->name);
		exit(1);
	}
	s.converged = r.converged;
	s.within_limit = r.converged && r.actual_downtime_ns <= c->max_downtime_ns;
	s.downtime_ms = r.converged ? (double)r.actual_downtime_ns / 1e6 : NAN;
	s.pred_err =
		r.converged && r.predicted_downtime_ns != UINT64_MAX
			? fabs((double)r.predicted_downtime_ns - (double)r.actual_downtime_ns) /
				  (double)r.actual_downtime_ns
			: NAN;
	s.total_s = (double)r.total_ns / 1e9;
	s.rounds = r.rounds;
	s.bytes_ratio = r.converged ? (double)r.bytes / (double)r.lower_bound : NAN;
	s.pinned_pre_mib = (double)r.pinned_precopy_bytes / MIB;
	cell_add(cell_get(wl, pi), &s);
	printf("{\"policy\":\"%s\",\"workload\":\"%s\",\"rate_x_link\":%.2f,\"link_gbps\":%.0f,"
	       "\"rtt_ms\":%.1f,\"pinned_mib\":%" PRIu64 ",\"mem_gib\":%" PRIu64
	       ",\"drop_at_s\":%.3f,\"seed\":%" PRIu64 ",",
	       p->name, bsim_workload_name(c->workload), c->rate_ratio, c->link * 8 / 1e9,
	       (double)c->rtt_ns / 1e6, c->pinned_pages * BSIM_PAGE / MIB, c->mem_bytes / GIB,
	       c->drop_at_s, c->seed);
	printf("\"converged\":%s,\"within_limit\":%s,\"decision\":\"%s\",\"rounds\":%u,"
	       "\"first_stall_round\":%d,",
	       r.converged ? "true" : "false", s.within_limit ? "true" : "false",
	       dt_decision_name(r.last), r.rounds, r.first_stall_round);
	json_num("actual_downtime_ms", s.downtime_ms, ",");
	json_num("predicted_downtime_ms",
		 r.predicted_downtime_ns == UINT64_MAX ? NAN
						       : (double)r.predicted_downtime_ns / 1e6,
		 ",");
	json_num("total_s", s.total_s, ",");
	printf("\"bytes\":%" PRIu64 ",\"lower_bound\":%" PRIu64 ",", r.bytes, r.lower_bound);
	json_num("bytes_ratio", s.bytes_ratio, ",");
	printf("\"pinned_precopy_bytes\":%" PRIu64 ",\"pinned_final_bytes\":%" PRIu64 ",",
	       r.pinned_precopy_bytes, r.pinned_final_bytes);
	json_num("max_throttle_pct", r.max_throttle, "}\n");
}

static void print_table(void)
{
	fprintf(stderr, "%-20s %-14s %5s %6s %7s %9s %9s %7s %7s %8s %7s %7s %9s\n", "policy",
		"workload", "runs", "conv%", "<=lim%", "down p50", "down p95", "err p50", "err p95",
		"total50", "rnd p50", "B/lb 50", "pinpre50");
	for (unsigned pi = 0; pi < bench_npolicies; pi++)
		for (unsigned i = 0; i < ncells; i++) {
			const struct cell *c = &cells[i];
			unsigned conv = 0, lim = 0;

			if (c->policy != pi)
				continue;
			for (unsigned j = 0; j < c->n; j++) {
				conv += c->v[j].converged;
				lim += c->v[j].within_limit;
			}
			fprintf(stderr,
				"%-20s %-14s %5u %6.1f %7.1f %9.1f %9.1f %7.3f %7.3f %8.2f %7.0f "
				"%7.3f %9.0f\n",
				bench_policies[pi].name, c->workload, c->n, 100.0 * conv / c->n,
				100.0 * lim / c->n,
				quantile(c, offsetof(struct sample, downtime_ms), 0.5, true),
				quantile(c, offsetof(struct sample, downtime_ms), 0.95, true),
				quantile(c, offsetof(struct sample, pred_err), 0.5, true),
				quantile(c, offsetof(struct sample, pred_err), 0.95, true),
				quantile(c, offsetof(struct sample, total_s), 0.5, false),
				quantile(c, offsetof(struct sample, rounds), 0.5, false),
				quantile(c, offsetof(struct sample, bytes_ratio), 0.5, true),
				quantile(c, offsetof(struct sample, pinned_pre_mib), 0.5, false));
		}
	fprintf(stderr,
		"down: actual downtime (ms) of the runs that switched over; err: "
		"|predicted - actual| / actual (none reported: nan); total50: s; B/lb: bytes "
		"/ lower bound; pinpre50: pinned MiB sent before the pause\n");
}

/* One cell of the matrix under every policy (or `only`). pin: 0, 64 MiB, 25 % of memory. */
static void run_cell(uint64_t mem, double link, uint64_t rtt, unsigned pin, unsigned drop,
		     unsigned w, double rate, uint64_t seed, unsigned only)
{
	struct bsim_cfg c = {
		.mem_bytes = mem,
		.workload = (enum bsim_workload)w,
		.rate_ratio = rate,
		.link = link,
		.rtt_ns = rtt,
		.pinned_pages = pin == 0   ? 0
				: pin == 1 ? 64 * MIB / BSIM_PAGE
					   : mem / 4 / BSIM_PAGE,
		/* Mid-run: just after round 0 would end at the full rate. */
		.drop_at_s = drop ? 1.1 * (double)mem / link : 0,
		.max_downtime_ns = 300000000ull,
		.seed = seed,
	};
	char wl[32];

	if (w == BSIM_IDLE)
		snprintf(wl, sizeof(wl), "idle");
	else
		snprintf(wl, sizeof(wl), "%s-%.1f", bsim_workload_name(c.workload), rate);
	for (unsigned pi = 0; pi < bench_npolicies; pi++)
		if (only == ~0u || only == pi)
			run_one(&c, pi, wl);
}

int main(int argc, char **argv)
{
	static const double full_rates[] = {0.1, 0.3, 0.6, 0.9, 1.2}, quick_rates[] = {0.3, 1.2};
	static const double full_links[] = {1e9 / 8, 10e9 / 8}, quick_links[] = {1e9 / 8};
	static const uint64_t full_rtt[] = {200000, 2000000}, quick_rtt[] = {200000};
	static const uint64_t full_mem[] = {GIB, 4 * GIB}, quick_mem[] = {256 * MIB};
	bool quick = false;
	unsigned seeds = 3, only = ~0u;
	const double *rates = full_rates, *links = full_links;
	const uint64_t *rtts = full_rtt, *mems = full_mem;
	unsigned nrates = 5, nlinks = 2, nrtt = 2, nmem = 2, ndrop = 2;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = true;
		} else if (!strcmp(argv[i], "--seeds") && i + 1 < argc) {
			seeds = (unsigned)strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--policy") && i + 1 < argc) {
			const struct bench_policy *p = bench_policy_find(argv[++i]);

			if (!p) {
				fprintf(stderr, "no policy %s\n", argv[i]);
				return 2;
			}
			only = (unsigned)(p - bench_policies);
		} else {
			fprintf(stderr, "usage: %s [--quick] [--seeds N] [--policy NAME]\n",
				argv[0]);
			return 2;
		}
	}
	if (quick) {
		rates = quick_rates, links = quick_links, rtts = quick_rtt, mems = quick_mem;
		nrates = 2, nlinks = 1, nrtt = 1, nmem = 1, ndrop = 1, seeds = 1;
	}
	for (unsigned mi = 0; mi < nmem; mi++)
		for (unsigned li = 0; li < nlinks; li++)
			for (unsigned ri = 0; ri < nrtt; ri++)
				for (unsigned cell = 0; cell < 3 * ndrop * BSIM_NWORKLOADS * nrates;
				     cell++) {
					unsigned pin = cell % 3, d = cell / 3 % ndrop;
					unsigned w = cell / (3 * ndrop) % BSIM_NWORKLOADS;
					unsigned q = cell / (3 * ndrop * BSIM_NWORKLOADS);

					if (w == BSIM_IDLE && q) /* idle has no rate */
						continue;
					for (unsigned sd = 1; sd <= seeds; sd++)
						run_cell(mems[mi], links[li], rtts[ri], pin, d, w,
							 w == BSIM_IDLE ? 0 : rates[q], sd, only);
				}
	print_table();
	return 0;
}
