/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_common.h - what every benchmark shares: the clock, medians, a seeded RNG,
 * option parsing and the correctness checks that keep a broken fast path from looking fast.
 *
 * Output convention: one JSON object per line on stdout (machine readable, one line per
 * measured case plus one summary line), the human table on stderr. A check that fails exits
 * 1 with what was expected and what was seen; nothing here ever judges speed.
 */
#ifndef DT_BENCH_COMMON_H
#define DT_BENCH_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Keep the compiler from moving or dropping memory traffic across a timing point. */
static inline void compiler_barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

/* Page faults so far (minor + major): a timed section that faults measures the kernel. */
static inline uint64_t faults_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

static inline uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias worth caring about (n < 2^40 here). */
static inline uint64_t rand_below(uint64_t *state, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)splitmix64(state) * n) >> 64);
}

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Median of n samples (sorts them in place). */
static inline uint64_t median_u64(uint64_t *v, unsigned n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* After median_u64() the samples are sorted. */
static inline uint64_t min_sorted(const uint64_t *v, unsigned n)
{
	return n ? v[0] : 0;
}

static inline uint64_t max_sorted(const uint64_t *v, unsigned n)
{
	return n ? v[n - 1] : 0;
}

static inline __attribute__((noreturn, format(printf, 1, 2))) void bench_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("bench: FAILED: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

#define BENCH_CHECK(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond))                                                                       \
			bench_fail(__VA_ARGS__);                                                   \
	} while (0)

static inline uint64_t parse_u64(const char *opt, const char *s)
{
	char *end;
	unsigned long long v;

	if (!s)
		bench_fail("%s needs a value", opt);
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-')
		bench_fail("%s: not a number: '%s'", opt, s);
	return v;
}

static inline uint64_t popcount_buf(const void *buf, uint64_t bytes)
{
	const unsigned char *p = buf;
	uint64_t n = 0, w;

	for (uint64_t i = 0; i + 8 <= bytes; i += 8) {
		memcpy(&w, p + i, 8);
		n += (uint64_t)__builtin_popcountll(w);
	}
	for (uint64_t i = bytes & ~7ull; i < bytes; i++)
		n += (uint64_t)__builtin_popcount(p[i]);
	return n;
}

/* One JSON line describing where the figures come from: other load skews them. */
static inline void print_env_json(const char *bench, int argc, char **argv)
{
	char load[64] = "", model[128] = "unknown", line[256];
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fgets(load, sizeof(load), f))
			load[strcspn(load, " ")] = 0; /* the 1-minute average */
		fclose(f);
	}
	f = fopen("/proc/cpuinfo", "r");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');

			if (!strncmp(line, "model name", 10) && colon) {
				snprintf(model, sizeof(model), "%s", colon + 2);
				model[strcspn(model, "\n\"\\")] = 0;
				break;
			}
		}
		fclose(f);
	}
	printf("{\"bench\":\"%s_env\",\"cpu\":\"%s\",\"online_cpus\":%ld,\"loadavg_1min\":%s"
	       ",\"args\":\"",
	       bench, model, sysconf(_SC_NPROCESSORS_ONLN), load[0] ? load : "null");
	for (int i = 1; i < argc; i++)
		printf("%s%s", i > 1 ? " " : "", argv[i]);
	printf("\"}\n");
	fflush(stdout);
}

static inline double ratio(uint64_t num, uint64_t den)
{
	return den ? (double)num / (double)den : 0.0;
}

#endif
