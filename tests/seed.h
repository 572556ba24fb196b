/* SPDX-License-Identifier: MIT */
/*
 * tests/seed.h - the seed of a randomized test (taken from DT_SEED, else the time, and
 * printed so that a failure can be replayed) and the PRNG the test draws from (splitmix64,
 * one state word the caller keeps, so that every thread or part can have its own stream).
 */
#ifndef DT_TESTS_SEED_H
#define DT_TESTS_SEED_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t seed;

static inline uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* seed from DT_SEED (else the time), printed after `prefix` with how to replay it. */
static inline void seed_init(const char *prefix)
{
	const char *s = getenv("DT_SEED");

	seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);
	printf("%sseed %llu (DT_SEED=%llu to replay)\n", prefix, (unsigned long long)seed,
	       (unsigned long long)seed);
}

#endif
