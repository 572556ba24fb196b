/* SPDX-License-Identifier: MIT */
/*
 * tests/core/test_util.h - what the randomized core tests share: a seeded PRNG (the seed is
 * printed and can be replayed with --seed N), and checks that print the context, the
 * expected and the seen value and the seed before failing the cmocka test.
 *
 * Include after <cmocka.h> (and its prerequisites).
 */
#ifndef DT_TESTS_CORE_TEST_UTIL_H
#define DT_TESTS_CORE_TEST_UTIL_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t test_seed;
static uint64_t rng_state;
static char test_ctx[256];

static inline uint64_t rng_next(void)
{
	/* splitmix64: one state word, good enough to drive random operations */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. */
static inline uint64_t rng_below(uint64_t n)
{
	return rng_next() % n;
}

static inline void rng_reseed(uint64_t salt)
{
	rng_state = test_seed ^ (salt * 0xd1b54a32d192ed03ull);
}

/* Parse --seed N (or DT_TEST_SEED), else pick one; print it either way. */
static inline void test_seed_init(int argc, char **argv)
{
	const char *env = getenv("DT_TEST_SEED");

	test_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (env)
		test_seed = strtoull(env, NULL, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			test_seed = strtoull(argv[++i], NULL, 0);
		else if (!strncmp(argv[i], "--seed=", 7))
			test_seed = strtoull(argv[i] + 7, NULL, 0);
	}
	printf("%s: seed %" PRIu64 " (replay with --seed %" PRIu64 ")\n", argv[0], test_seed,
	       test_seed);
	fflush(stdout);
	rng_reseed(0);
}

__attribute__((format(printf, 1, 2))) static inline void ctx_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(test_ctx, sizeof(test_ctx), fmt, ap);
	va_end(ap);
}

static inline void expect_failed(const char *file, int line, const char *what, uint64_t expected,
				 uint64_t seen)
{
	print_error("%s:%d: %s\n  context: %s\n  expected: %" PRIu64 " (0x%" PRIx64
		    ")\n  seen:     %" PRIu64 " (0x%" PRIx64 ")\n  seed: %" PRIu64 "\n",
		    file, line, what, test_ctx, expected, expected, seen, seen, test_seed);
	fail();
}

/* EXPECT_EQ(seen, expected): both as uint64_t. */
#define EXPECT_EQ(seen, expected)                                                                  \
	do {                                                                                       \
		uint64_t seen_ = (uint64_t)(seen), exp_ = (uint64_t)(expected);                    \
		if (seen_ != exp_)                                                                 \
			expect_failed(__FILE__, __LINE__, #seen " == " #expected, exp_, seen_);    \
	} while (0)

/* EXPECT_TRUE(cond): the values printed are 1 (expected) and 0. */
#define EXPECT_TRUE(cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			expect_failed(__FILE__, __LINE__, #cond, 1, 0);                            \
	} while (0)

#endif
