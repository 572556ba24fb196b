/* SPDX-License-Identifier: MIT */
/*
 * tests/policy/test_stats_json.c - dt_round_stats_json() parsed back: every key once, in
 * order, with its value; valid JSON (a small validator) for random stats, NaN and huge values
 * included; null for an unknown prediction; snprintf behaviour at every buffer length; the
 * same text under a locale whose decimal point is a comma; and the verdict and decision
 * names. The randomized part prints its seed.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <dirtytrack/migrate.h>

#include "policy_test.h"

static const char *const keys[] = {
	"round",      "dirty",		"dirty_pages",		 "pinned_pages", "sent_pages",
	"zero_pages", "sent_bytes",	"total_bytes",		 "send_ms",	 "round_ms",
	"dirty_rate", "bandwidth_mbps", "predicted_downtime_ms", "verdict",	 "decision",
};

static struct dt_round_stats sample(void)
{
	struct dt_round_stats s = {
		.round = 7,
		.dirty = {812, 4, 16, 3, 0},
		.dirty_pages = 819,
		.pinned_pages = 16,
		.sent_pages = 819,
		.zero_pages = 12,
		.sent_bytes = 3310123,
		.total_bytes = 1077936128ull * 3,
		.send_ns = 3310123,
		.round_ns = 4000456,
		.dirty_rate = 204736.25,
		.bandwidth = 999876543.21,
		.predicted_downtime_ns = 5432109,
		.verdict = DT_VERDICT_CONVERGING,
		.decision = DT_DECISION_SWITCHOVER,
	};

	return s;
}

/* ---- a minimal JSON validator: objects, strings without escapes, numbers, null -------- */

static const char *json_value(const char *p);

static const char *json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
		p++;
	return *p == '"' ? p + 1 : NULL;
}

static const char *json_number(const char *p)
{
	const char *start;

	if (*p == '-')
		p++;
	start = p;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == start || (*start == '0' && p - start > 1))
		return NULL;
	if (*p == '.') {
		start = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == start)
			return NULL;
	}
	return p;
}

static const char *json_object(const char *p)
{
	if (*p++ != '{')
		return NULL;
	if (*p == '}')
		return p + 1;
	for (;;) {
		if (!(p = json_string(p)) || *p++ != ':' || !(p = json_value(p)))
			return NULL;
		if (*p == '}')
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
}

static const char *json_value(const char *p)
{
	if (*p == '{')
		return json_object(p);
	if (*p == '"')
		return json_string(p);
	if (!strncmp(p, "null", 4))
		return p + 4;
	return json_number(p);
}

static bool json_valid(const char *s)
{
	const char *end = json_object(s);

	return end && *end == '\0';
}

/* ---- tests ---------------------------------------------------------------------------- */

static unsigned long long get_u64(const char *json, const char *key)
{
	char pat[64];
	const char *p;
	unsigned long long v = 0;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p || sscanf(p + strlen(pat), "%llu", &v) != 1)
		fail_msg("no integer for %s in %s", key, json);
	return v;
}

static void expect_text(const char *json, const char *key, const char *text)
{
	char pat[96];

	snprintf(pat, sizeof(pat), "\"%s\":%s", key, text);
	if (!strstr(json, pat))
		fail_msg("expected %s in %s", pat, json);
}

static void test_keys_and_values(void **state)
{
	struct dt_round_stats s = sample();
	unsigned long long cpu, vmm, pinned, device, whole;
	char json[1024];
	const char *p = json;
	int n = dt_round_stats_json(&s, json, sizeof(json));

	print_message("%s\n", json);
	assert_int_equal(n, (int)strlen(json));
	assert_true(json_valid(json));
	assert_null(strchr(json, '\n'));
	/* Every key once, in the documented order. */
	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char pat[64];
		const char *at;

		snprintf(pat, sizeof(pat), "\"%s\":", keys[i]);
		at = strstr(p, pat);
		if (!at || strstr(at + 1, pat))
			fail_msg("key %s missing, out of order or twice in %s", keys[i], json);
		p = at + strlen(pat);
	}
	assert_int_equal(
		sscanf(strstr(json, "\"dirty\":"),
		       "\"dirty\":{\"cpu\":%llu,\"vmm\":%llu,\"pinned\":%llu,\"device\":%llu,"
		       "\"whole\":%llu}",
		       &cpu, &vmm, &pinned, &device, &whole),
		5);
	assert_true(cpu == 812 && vmm == 4 && pinned == 16 && device == 3 && whole == 0);
	assert_int_equal(get_u64(json, "round"), 7);
	assert_int_equal(get_u64(json, "dirty_pages"), 819);
	assert_int_equal(get_u64(json, "pinned_pages"), 16);
	assert_int_equal(get_u64(json, "sent_pages"), 819);
	assert_int_equal(get_u64(json, "zero_pages"), 12);
	assert_int_equal(get_u64(json, "sent_bytes"), 3310123);
	assert_int_equal(get_u64(json, "total_bytes"), 1077936128ull * 3);
	expect_text(json, "send_ms", "3.310,");
	expect_text(json, "round_ms", "4.000,");
	expect_text(json, "dirty_rate", "204736.250,");
	expect_text(json, "bandwidth_mbps", "999.877,");
	expect_text(json, "predicted_downtime_ms", "5.432,");
	expect_text(json, "verdict", "\"converging\",");
	expect_text(json, "decision", "\"switchover\"}");

	s.predicted_downtime_ns = UINT64_MAX;
	s.dirty_rate = NAN;
	s.bandwidth = INFINITY;
	dt_round_stats_json(&s, json, sizeof(json));
	assert_true(json_valid(json));
	expect_text(json, "predicted_downtime_ms", "null,");
	expect_text(json, "dirty_rate", "null,");
	expect_text(json, "bandwidth_mbps", "null,");
	s.dirty_rate = -0.0004; /* rounds to zero: no "-0.000" */
	dt_round_stats_json(&s, json, sizeof(json));
	expect_text(json, "dirty_rate", "0.000,");
	s.dirty_rate = -2.5;
	dt_round_stats_json(&s, json, sizeof(json));
	expect_text(json, "dirty_rate", "-2.500,");
}

static void test_truncation(void **state)
{
	struct dt_round_stats s = sample();
	char full[1024], buf[1100];
	int n = dt_round_stats_json(&s, full, sizeof(full));

	assert_true(n > 100);
	assert_int_equal(dt_round_stats_json(&s, NULL, 0), n);
	for (size_t len = 0; len <= (size_t)n + 2; len++) {
		memset(buf, 0x5a, sizeof(buf));
		PT_CHECK(dt_round_stats_json(&s, buf, len) == n, , "len %zu", len);
		if (len) {
			size_t got = strlen(buf);

			PT_CHECK(got == (len - 1 < (size_t)n ? len - 1 : (size_t)n) &&
					 !memcmp(buf, full, got),
				 , "len %zu: '%s'", len, buf);
		}
		for (size_t i = len; i < sizeof(buf); i++)
			PT_CHECK(buf[i] == 0x5a, , "len %zu: byte %zu written", len, i);
	}
	assert_int_equal(dt_round_stats_json(NULL, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(dt_round_stats_json(&s, NULL, 10), -EINVAL);
}

/* The engine's 1024-byte line holds the largest values. */
static void test_largest(void **state)
{
	struct dt_round_stats s;
	char json[1024];
	int n;

	memset(&s, 0xff, sizeof(s));
	s.dirty_rate = -4.6e15; /* the longest numbers still printed */
	s.bandwidth = 4.6e21;
	s.verdict = DT_VERDICT_DIVERGING;
	s.decision = DT_DECISION_GIVE_UP;
	n = dt_round_stats_json(&s, json, sizeof(json));
	print_message("%s\n", json);
	assert_true(n > 0 && n < (int)sizeof(json));
	assert_true(json_valid(json));
	expect_text(json, "bandwidth_mbps", "4600000000000000.000,");
	expect_text(json, "dirty_rate", "-4600000000000000.000,");
	s.dirty_rate = 1.7e308;
	dt_round_stats_json(&s, json, sizeof(json));
	expect_text(json, "dirty_rate", "null,");
	expect_text(json, "total_bytes", "18446744073709551615,");
}

static void test_random_valid(void **state)
{
	for (unsigned i = 0; i < 5000; i++) {
		struct dt_round_stats s;
		uint64_t *w = (uint64_t *)&s;
		char json[1024];
		int n;

		for (size_t k = 0; k < sizeof(s) / sizeof(*w); k++)
			w[k] = pt_next() >> pt_below(64);
		s.verdict = (enum dt_verdict)pt_below(6);
		s.decision = (enum dt_decision)pt_below(6);
		if (pt_below(2))
			s.dirty_rate = pt_uniform(-1e6, 1e12);
		if (pt_below(2))
			s.bandwidth = pt_uniform(0, 1e11);
		n = dt_round_stats_json(&s, json, sizeof(json));
		PT_CHECK(n == (int)strlen(json) && json_valid(json), , "%s", json);
	}
}

/* A program that set a locale with a decimal comma still gets JSON. */
static void test_locale(void **state)
{
	static const char *const names[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "C.UTF-8"};
	struct dt_round_stats s = sample();
	char before[1024], after[1024], probe[16];
	const char *set = NULL;

	dt_round_stats_json(&s, before, sizeof(before));
	for (unsigned i = 0; i < 4 && !set; i++)
		set = setlocale(LC_NUMERIC, names[i]);
	snprintf(probe, sizeof(probe), "%.1f", 1.5);
	print_message("locale %s: printf says %s\n", set ? set : "(none)", probe);
	dt_round_stats_json(&s, after, sizeof(after));
	setlocale(LC_NUMERIC, "C");
	assert_string_equal(before, after);
}

static void test_names(void **state)
{
	assert_string_equal(dt_verdict_name(DT_VERDICT_UNKNOWN), "unknown");
	assert_string_equal(dt_verdict_name(DT_VERDICT_CONVERGING), "converging");
	assert_string_equal(dt_verdict_name(DT_VERDICT_STALLED), "stalled");
	assert_string_equal(dt_verdict_name(DT_VERDICT_DIVERGING), "diverging");
	assert_string_equal(dt_verdict_name((enum dt_verdict)42), "invalid");
	assert_string_equal(dt_decision_name(DT_DECISION_CONTINUE), "continue");
	assert_string_equal(dt_decision_name(DT_DECISION_SWITCHOVER), "switchover");
	assert_string_equal(dt_decision_name(DT_DECISION_GIVE_UP), "give_up");
	assert_string_equal(dt_decision_name(DT_DECISION_ASK), "ask");
	assert_string_equal(dt_decision_name((enum dt_decision) - 1), "invalid");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys_and_values), cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_largest),		cmocka_unit_test(test_random_valid),
		cmocka_unit_test(test_locale),		cmocka_unit_test(test_names),
	};

	pt_seed_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
