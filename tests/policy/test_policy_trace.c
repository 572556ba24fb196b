/* SPDX-License-Identifier: MIT */
/*
 * tests/policy/test_policy_trace.c - replay a hand-written trace (tests/policy/traces/) and
 * compare every decision with the answer worked out by hand in the trace.
 *
 * Format, one item a line, '#' starts a comment:
 *   policy KEY VALUE    max_downtime_ms, max_rounds, max_bytes_factor, bandwidth_mbps
 *                       (the override), fixed_cost_ms, stall_rounds, no_defer_pinned
 *   memory_pages N, page_size N, device_bytes N, fixed_ms X   (apply to the rounds after)
 *   ROUND DIRTY PINNED SENT_BYTES SEND_MS ROUND_MS : VERDICT DECISION PREDICTED_MS BW_MBPS
 * A round line is one harvest: the policy decides on the rounds so far (the newest one's
 * send fields zero, as the engine has them), then the send fields (or "-" on the last line)
 * are filled in. PREDICTED_MS may be "inf" (no bandwidth); any expectation may be "-".
 * Numbers are compared to 1 ns and 1 B/s.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirtytrack/migrate.h>

#define MAX_ROUNDS 64

static const char *trace_path;

static uint64_t ms_to_ns(const char *s)
{
	return (uint64_t)(strtod(s, NULL) * 1e6 + 0.5);
}

static void parse_policy(struct dt_policy *p, const char *key, const char *val, unsigned line)
{
	double v = strtod(val, NULL);

	if (!strcmp(key, "max_downtime_ms"))
		p->max_downtime_ns = ms_to_ns(val);
	else if (!strcmp(key, "max_rounds"))
		p->max_rounds = (uint32_t)v;
	else if (!strcmp(key, "max_bytes_factor"))
		p->max_bytes_factor = v;
	else if (!strcmp(key, "bandwidth_mbps"))
		p->bandwidth_override = v * 1e6;
	else if (!strcmp(key, "fixed_cost_ms"))
		p->fixed_cost_ns = ms_to_ns(val);
	else if (!strcmp(key, "stall_rounds"))
		p->stall_rounds = (uint32_t)v;
	else if (!strcmp(key, "no_defer_pinned"))
		p->no_defer_pinned = v != 0;
	else
		fail_msg("%s:%u: unknown policy key %s", trace_path, line, key);
}

struct expect {
	char verdict[32], decision[32], predicted[32], bandwidth[32];
};

static void check_out(const struct dt_policy_out *out, const struct expect *e, unsigned line)
{
	const char *verdict = dt_verdict_name(out->verdict);
	const char *decision = dt_decision_name(out->decision);

	if (strcmp(e->verdict, "-") && strcmp(e->verdict, verdict))
		fail_msg("%s:%u: verdict %s, expected %s (%s)", trace_path, line, verdict,
			 e->verdict, out->reason);
	if (strcmp(e->decision, "-") && strcmp(e->decision, decision))
		fail_msg("%s:%u: decision %s, expected %s (%s)", trace_path, line, decision,
			 e->decision, out->reason);
	if (!strcmp(e->predicted, "inf")) {
		if (out->predicted_downtime_ns != UINT64_MAX)
			fail_msg("%s:%u: predicted %llu ns, expected none", trace_path, line,
				 (unsigned long long)out->predicted_downtime_ns);
	} else if (strcmp(e->predicted, "-")) {
		uint64_t want = ms_to_ns(e->predicted), got = out->predicted_downtime_ns;

		if (got + 1 < want || got > want + 1)
			fail_msg("%s:%u: predicted %llu ns, expected %llu (%s)", trace_path, line,
				 (unsigned long long)got, (unsigned long long)want, out->reason);
	}
	if (strcmp(e->bandwidth, "-")) {
		double want = strtod(e->bandwidth, NULL) * 1e6;

		if (fabs(out->bandwidth - want) > 1)
			fail_msg("%s:%u: bandwidth %.3f B/s, expected %.3f", trace_path, line,
				 out->bandwidth, want);
	}
	print_message("%s:%u: %s %s: %s\n", trace_path, line, verdict, decision, out->reason);
}

static void test_trace(void **state)
{
	static struct dt_round_stats r[MAX_ROUNDS];
	struct dt_policy p = {.size = sizeof(p)};
	uint64_t mem_pages = 0, device = 0, fixed = 0, total = 0;
	uint32_t page_size = 4096;
	unsigned n = 0, line = 0, checked = 0;
	char buf[512];
	FILE *f = fopen(trace_path, "r");

	if (!f)
		fail_msg("cannot open %s", trace_path);
	while (fgets(buf, sizeof(buf), f)) {
		char a[64], b[64], c[64], d[64], e[64], g[64];
		struct expect x;
		struct dt_round_stats *s;
		struct dt_policy_out out;
		char *hash = strchr(buf, '#');
		int k;

		line++;
		if (hash)
			*hash = '\0';
		k = sscanf(buf, "%63s %63s %63s", a, b, c);
		if (k <= 0)
			continue;
		if (!strcmp(a, "policy") && k == 3) {
			parse_policy(&p, b, c, line);
			continue;
		}
		if (k == 2 && !strcmp(a, "memory_pages")) {
			mem_pages = strtoull(b, NULL, 0);
			continue;
		}
		if (k == 2 && !strcmp(a, "page_size")) {
			page_size = (uint32_t)strtoul(b, NULL, 0);
			continue;
		}
		if (k == 2 && !strcmp(a, "device_bytes")) {
			device = strtoull(b, NULL, 0);
			continue;
		}
		if (k == 2 && !strcmp(a, "fixed_ms")) {
			fixed = ms_to_ns(b);
			continue;
		}
		if (sscanf(buf, "%63s %63s %63s %63s %63s %63s : %31s %31s %31s %31s", a, b, c, d,
			   e, g, x.verdict, x.decision, x.predicted, x.bandwidth) != 10)
			fail_msg("%s:%u: cannot parse '%s'", trace_path, line, buf);
		if (n == MAX_ROUNDS || strtoul(a, NULL, 0) != n)
			fail_msg("%s:%u: round %s out of order", trace_path, line, a);
		s = &r[n++];
		memset(s, 0, sizeof(*s));
		s->round = n - 1;
		s->page_size = page_size;
		s->memory_bytes = mem_pages * page_size;
		s->dirty_pages = s->dirty[DT_CLASS_CPU] = strtoull(b, NULL, 0);
		s->pinned_pages = s->dirty[DT_CLASS_PINNED] = strtoull(c, NULL, 0);
		s->device_bytes = device;
		s->fixed_cost_ns = fixed;
		s->total_bytes = total;
		assert_int_equal(dt_policy_decide(&p, r, n, &out), 0);
		check_out(&out, &x, line);
		checked++;
		dt_round_stats_record(s, &out);
		if (!strcmp(d, "-"))
			break;
		s->sent_pages = s->dirty_pages;
		s->sent_bytes = strtoull(d, NULL, 0);
		s->send_ns = ms_to_ns(e);
		s->round_ns = ms_to_ns(g);
		total += s->sent_bytes;
		s->total_bytes = total;
	}
	fclose(f);
	if (!checked)
		fail_msg("%s: no rounds", trace_path);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_trace)};

	if (argc != 2) {
		fprintf(stderr, "usage: %s TRACE\n", argv[0]);
		return 2;
	}
	trace_path = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
