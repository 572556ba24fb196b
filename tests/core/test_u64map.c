/* SPDX-License-Identifier: MIT */
/*
 * tests/core/test_u64map.c - the linear-probing hash map (core/u64map.c) against an unsorted
 * array of (key, value) pairs: random get / find / remove / reserve, with key sets built to
 * collide on one home slot and runs that wrap around the end of the table, many removals
 * (backward-shift deletion must keep every key reachable), and iteration that must visit
 * every key exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>

#include "core/u64map.h"
#include "test_util.h"

/* ---- the naive model --------------------------------------------------------------------- */

struct pair {
	uint64_t key, val;
};

struct model {
	struct pair *p;
	size_t n, cap;
};

static struct pair *model_find(const struct model *m, uint64_t key)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->p[i].key == key)
			return &m->p[i];
	return NULL;
}

static struct pair *model_get(struct model *m, uint64_t key)
{
	struct pair *p = model_find(m, key);

	if (p)
		return p;
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->p = realloc(m->p, m->cap * sizeof(*m->p));
		assert_non_null(m->p);
	}
	m->p[m->n] = (struct pair){key, 0};
	return &m->p[m->n++];
}

static void model_remove(struct model *m, uint64_t key)
{
	struct pair *p = model_find(m, key);

	if (p)
		*p = m->p[--m->n];
}

/* ---- key pools ---------------------------------------------------------------------------- */

/*
 * The home slot as u64map.c computes it, only to build keys that collide: if the hash
 * changes the test stays correct, it just collides less.
 */
static uint64_t home_of(uint64_t key, uint64_t cap)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ull;

	return (h ^ (h >> 29)) & (cap - 1);
}

#define POOL 2048

static uint64_t pool[POOL];
static size_t pool_n;

static void pool_add(uint64_t key)
{
	if (pool_n < POOL && key != UINT64_MAX)
		pool[pool_n++] = key;
}

/* Keys with the same home slot at several capacities, some homed at the last slot (their
 * runs wrap to slot 0), small keys, and the extremes. */
static void pool_build(void)
{
	pool_n = 0;
	pool_add(0);
	pool_add(UINT64_MAX - 1);
	pool_add(1ull << 63);
	for (uint64_t k = 1; k < 64; k++)
		pool_add(k);
	for (uint64_t cap = 16; cap <= 1024; cap *= 4) {
		uint64_t target = rng_below(cap), found = 0;

		for (uint64_t k = rng_next() >> 8; found < 24; k++)
			if (home_of(k, cap) == target) {
				pool_add(k);
				found++;
			}
		found = 0;
		for (uint64_t k = rng_next() >> 8; found < 16; k++)
			if (home_of(k, cap) >= cap - 2) {
				pool_add(k);
				found++;
			}
	}
	while (pool_n < 600)
		pool_add(rng_next() >> (rng_below(64)));
}

/* ---- comparisons -------------------------------------------------------------------------- */

static void check_all(const struct u64map *map, const struct model *m, const char *after)
{
	uint8_t *seen = calloc(m->n + 1, 1);
	uint64_t it = 0, key, val, visits = 0;

	assert_non_null(seen);
	ctx_set("after %s: count", after);
	EXPECT_EQ(map->count, m->n);
	EXPECT_TRUE(!map->cap || (map->cap & (map->cap - 1)) == 0);
	EXPECT_TRUE(map->count <= map->cap / 2);
	for (size_t i = 0; i < m->n; i++) {
		uint64_t *v = u64map_find(map, m->p[i].key);

		ctx_set("after %s: u64map_find(0x%" PRIx64 ") (expected value / seen: NULL = 0)",
			after, m->p[i].key);
		EXPECT_TRUE(v != NULL);
		if (v)
			EXPECT_EQ(*v, m->p[i].val);
	}
	/* Iteration: every key exactly once, with its value, nothing else. */
	while (u64map_next(map, &it, &key, &val)) {
		struct pair *p = model_find(m, key);

		ctx_set("after %s: u64map_next returned key 0x%" PRIx64, after, key);
		EXPECT_TRUE(p != NULL);
		if (!p)
			continue;
		EXPECT_EQ(val, p->val);
		EXPECT_EQ(seen[p - m->p], 0);
		seen[p - m->p] = 1;
		visits++;
		if (visits > m->n + 1)
			break;
	}
	ctx_set("after %s: keys visited by iteration", after);
	EXPECT_EQ(visits, m->n);
	free(seen);
}

static void check_absent(const struct u64map *map, const struct model *m, uint64_t key)
{
	if (model_find(m, key))
		return;
	ctx_set("u64map_find(0x%" PRIx64 ") of a key not in the map", key);
	EXPECT_EQ((uintptr_t)u64map_find(map, key), 0);
}

/* ---- randomized comparison ---------------------------------------------------------------- */

static void run_random(size_t keys, unsigned steps)
{
	struct u64map map;
	struct model m = {0};
	char what[96];

	u64map_init(&map);
	check_all(&map, &m, "init");
	for (unsigned step = 0; step < steps; step++) {
		uint64_t key = pool[rng_below(keys)], op = rng_below(100);
		uint64_t *v;

		if (op < 45) {
			snprintf(what, sizeof(what), "step %u get(0x%" PRIx64 ")", step, key);
			v = u64map_get(&map, key);
			ctx_set("%s", what);
			EXPECT_TRUE(v != NULL);
			if (!v)
				continue;
			EXPECT_EQ(*v, model_get(&m, key)->val);
			*v = model_get(&m, key)->val = rng_next();
		} else if (op < 85) {
			snprintf(what, sizeof(what), "step %u remove(0x%" PRIx64 ")", step, key);
			u64map_remove(&map, key);
			model_remove(&m, key);
			check_absent(&map, &m, key);
		} else if (op < 90) {
			uint64_t more = rng_below(64), cap = map.cap;

			snprintf(what, sizeof(what), "step %u reserve(%" PRIu64 ")", step, more);
			ctx_set("%s", what);
			EXPECT_EQ(u64map_reserve(&map, more), 0);
			EXPECT_TRUE(map.cap >= cap && map.cap / 2 >= map.count + more);
		} else if (op < 92) {
			/* Empty it through removals only: every shift must keep the rest reachable. */
			snprintf(what, sizeof(what), "step %u remove everything", step);
			while (m.n) {
				uint64_t k = m.p[rng_below(m.n)].key;

				u64map_remove(&map, k);
				model_remove(&m, k);
				check_absent(&map, &m, k);
				if (m.n % 8 == 0)
					check_all(&map, &m, what);
			}
		} else if (op < 95) {
			/* Remove while iterating, restarting from i - 1 as u64map.h allows. */
			uint64_t it = 0, k, val, parity = rng_below(2);

			snprintf(what, sizeof(what), "step %u remove-if while iterating", step);
			while (u64map_next(&map, &it, &k, &val))
				if ((val & 1) == parity) {
					u64map_remove(&map, k);
					model_remove(&m, k);
					it--;
				}
			for (size_t i = 0; i < m.n; i++) {
				ctx_set("%s: key 0x%" PRIx64 " should be gone", what, m.p[i].key);
				EXPECT_TRUE((m.p[i].val & 1) != parity);
			}
		} else {
			snprintf(what, sizeof(what), "step %u find(0x%" PRIx64 ")", step, key);
			v = u64map_find(&map, key);
			ctx_set("%s", what);
			EXPECT_EQ(v != NULL, model_find(&m, key) != NULL);
		}
		check_all(&map, &m, what);
	}
	u64map_destroy(&map);
	ctx_set("destroy");
	EXPECT_EQ(map.count, 0);
	EXPECT_EQ((uintptr_t)u64map_find(&map, pool[0]), 0);
	free(m.p);
}

static void test_u64map_random(void **state)
{
	(void)state;
	rng_reseed(1);
	pool_build();
	run_random(12, 4000);	   /* few keys: a small table, dense collisions */
	run_random(100, 8000);	   /* the colliding sets at cap 16 and 64 */
	run_random(pool_n, 12000); /* everything, growing to 1024+ slots */
}

/* All keys on one home slot, removed from the middle of their run one by one. */
static void test_u64map_one_run(void **state)
{
	struct u64map map;
	struct model m = {0};
	uint64_t keys[20], n = 0, target;

	(void)state;
	rng_reseed(2);
	u64map_init(&map);
	assert_int_equal(u64map_reserve(&map, 20), 0);
	ctx_set("reserve(20) on an empty map");
	EXPECT_EQ(map.cap, 64);
	target = map.cap - 3; /* the run wraps past the end of the table */
	for (uint64_t k = 1; n < 20; k++)
		if (home_of(k, map.cap) == target)
			keys[n++] = k;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t *v = u64map_get(&map, keys[i]);

		assert_non_null(v);
		*v = model_get(&m, keys[i])->val = i + 100;
	}
	ctx_set("one run of 20 keys at slot %" PRIu64, target);
	EXPECT_EQ(map.cap, 64); /* reserved: no rehash */
	check_all(&map, &m, "filling one run");
	for (uint64_t i = 0; i < n; i++) {
		uint64_t k = keys[(i * 7 + 3) % n];
		char what[64];

		u64map_remove(&map, k);
		model_remove(&m, k);
		snprintf(what, sizeof(what), "removing key %" PRIu64 " of the run",
			 (i * 7 + 3) % n);
		check_absent(&map, &m, k);
		check_all(&map, &m, what);
	}
	u64map_destroy(&map);
	free(m.p);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_u64map_random),
		cmocka_unit_test(test_u64map_one_run),
	};

	test_seed_init(argc, argv);
	return cmocka_run_group_tests_name("u64map", tests, NULL, NULL);
}
