/* SPDX-License-Identifier: MIT */
/*
 * tests/policy/policy_test.h - what the policy tests share: a seeded PRNG (the seed is
 * printed; replay with --seed N or DT_TEST_SEED=N) and a check that prints what was
 * expected, what was seen, a context (a simulated run, a trace line) and the seed.
 *
 * Include after <cmocka.h> and its prerequisites.
 */
#ifndef DT_TESTS_POLICY_TEST_H
#define DT_TESTS_POLICY_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t pt_seed, pt_rng;

static inline uint64_t pt_next(void)
{
	uint64_t z = (pt_rng += 0x9e3779b97f4a7c15ull); /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static inline double pt_uniform(double lo, double hi)
{
	return lo + (hi - lo) * (double)(pt_next() >> 11) / 9007199254740992.0;
}

static inline uint64_t pt_below(uint64_t n)
{
	return pt_next() % n;
}

static inline void pt_seed_init(int argc, char **argv)
{
	const char *env = getenv("DT_TEST_SEED");

	pt_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (env)
		pt_seed = strtoull(env, NULL, 0);
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--seed"))
			pt_seed = strtoull(argv[i + 1], NULL, 0);
	printf("%s: seed %" PRIu64 " (replay with --seed %" PRIu64 ")\n", argv[0], pt_seed,
	       pt_seed);
	fflush(stdout);
	pt_rng = pt_seed;
}

/* Fail with a message; `dump` (may be empty) prints the context first. */
#define PT_CHECK(cond, dump, ...)                                                                  \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			dump;                                                                      \
			print_error("%s:%d: check failed: %s\n  ", __FILE__, __LINE__, #cond);     \
			print_error(__VA_ARGS__);                                                  \
			print_error("\n  seed: %" PRIu64 "\n", pt_seed);                           \
			fail();                                                                    \
		}                                                                                  \
	} while (0)

#endif
