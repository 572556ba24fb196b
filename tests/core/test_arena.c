/* SPDX-License-Identifier: MIT */
/*
 * tests/core/test_arena.c - the bitmap arena (core/arena.c): size classes never hand out less
 * than asked nor more than 25 % (+64 bytes) over, random allocations and frees against a
 * model of live blocks (no two overlap, each is zero and 64-byte aligned when handed out,
 * freed blocks come back), a failed chunk allocation leaves the arena usable, and a bitmap
 * in an arena (sbm_init_in) comes back all zero after sbm_destroy however it was marked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/sbitmap.h"
#include "test_util.h"

static void test_arena_classes(void **state)
{
	size_t prev_bytes = 0;
	unsigned prev_cls = 0;

	(void)state;
	for (size_t size = 1; size <= ARENA_MAX_BLOCK; size += 1 + size / 97) {
		size_t bytes;
		unsigned cls = arena_class(size, &bytes);

		ctx_set("size %zu: class %u of %zu bytes", size, cls, bytes);
		EXPECT_TRUE(cls < ARENA_CLASSES);
		EXPECT_TRUE(bytes >= size);
		EXPECT_TRUE(bytes <= size + size / 4 + 64);
		EXPECT_EQ(bytes % 64, 0);
		/* Classes grow with the size, and a class always has the same block size. */
		EXPECT_TRUE(cls >= prev_cls);
		if (cls == prev_cls && prev_bytes)
			EXPECT_EQ(bytes, prev_bytes);
		prev_cls = cls;
		prev_bytes = bytes;
	}
	EXPECT_EQ(arena_class(ARENA_MAX_BLOCK, &prev_bytes), ARENA_CLASSES - 1);
}

struct live {
	uint8_t *p;
	size_t size;
};

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static size_t random_size(void)
{
	switch (rng_below(4)) {
	case 0:
		return 1 + rng_below(600);
	case 1:
		return 1 + rng_below(20000);
	case 2:
		return 8512; /* one bitmap of a 256 MiB mapping: many of one class */
	default:
		return 1 + rng_below(ARENA_MAX_BLOCK);
	}
}

static void test_arena_random(void **state)
{
	enum { NLIVE = 300, OPS = 6000 };
	static struct live live[NLIVE];
	struct arena a;

	(void)state;
	arena_init(&a);
	memset(live, 0, sizeof(live));
	for (unsigned op = 0; op < OPS; op++) {
		struct live *l = &live[rng_below(NLIVE)];

		if (l->p) {
			/* Dirty it, as a bitmap would be, then hand it back zeroed. */
			memset(l->p, 0, l->size);
			arena_free_zeroed(&a, l->p, l->size);
			l->p = NULL;
			continue;
		}
		l->size = random_size();
		l->p = arena_zalloc(&a, l->size);
		ctx_set("op %u: block of %zu bytes", op, l->size);
		EXPECT_TRUE(l->p != NULL);
		EXPECT_EQ((uintptr_t)l->p % 64, 0);
		EXPECT_TRUE(all_zero(l->p, l->size));
		for (unsigned i = 0; i < NLIVE; i++) {
			const struct live *o = &live[i];

			if (o == l || !o->p)
				continue;
			EXPECT_TRUE(o->p + o->size <= l->p || l->p + l->size <= o->p);
		}
		memset(l->p, 0xa5, l->size);
	}
	ctx_set("chunks reserved after %u operations: %" PRIu64 " bytes", OPS, a.reserved);
	/* At most 300 live blocks of at most 1.25 MiB, plus what doubling chunks waste. */
	EXPECT_TRUE(a.reserved < 3 * (uint64_t)NLIVE * (ARENA_MAX_BLOCK + ARENA_MAX_BLOCK / 4));
	arena_destroy(&a);
}

static void test_arena_chunk_failure(void **state)
{
	struct arena a;
	void *p, *q;

	(void)state;
	arena_init(&a);
	ctx_set("the first chunk cannot be had");
	alloc_fail_nth(1);
	EXPECT_TRUE(arena_zalloc(&a, 100) == NULL);
	alloc_fail_nth(2);
	EXPECT_TRUE(arena_zalloc(&a, 100) == NULL);
	alloc_fail_nth(0);
	EXPECT_EQ(a.reserved, 0);
	ctx_set("then it can");
	p = arena_zalloc(&a, 100);
	q = arena_zalloc(&a, 100);
	EXPECT_TRUE(p && q && p != q);
	ctx_set("size 0 and oversize");
	EXPECT_TRUE(arena_zalloc(&a, 0) == NULL);
	EXPECT_TRUE(arena_zalloc(&a, ARENA_MAX_BLOCK + 1) == NULL);
	arena_destroy(&a);
}

/* sbm_destroy of an arena bitmap zeroes it through its hints before the block is reused. */
static void test_sbitmap_in_arena(void **state)
{
	static const uint64_t sizes[] = {1, 64, 160, 4096, 65536, 100000};
	struct arena a;

	(void)state;
	arena_init(&a);
	for (unsigned iter = 0; iter < 200; iter++) {
		uint64_t nbits = sizes[rng_below(sizeof(sizes) / sizeof(sizes[0]))];
		struct sbitmap b;
		void *area;

		EXPECT_EQ(sbm_init_in(&b, nbits, &a), 0);
		area = (void *)b.top;
		ctx_set("iteration %u, %" PRIu64 " bits", iter, nbits);
		EXPECT_EQ(sbm_count(&b), 0);
		EXPECT_TRUE(all_zero(area, sbm_reserved_bytes(&b)));
		for (unsigned k = rng_below(40); k; k--) {
			uint64_t f = rng_below(nbits);

			sbm_set_range(&b, f, 1 + rng_below(nbits - f));
		}
		if (rng_below(2))
			sbm_clear_bit_excl(&b, rng_below(nbits));
		sbm_destroy(&b);
	}
	arena_destroy(&a);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arena_classes),
		cmocka_unit_test(test_arena_random),
		cmocka_unit_test(test_arena_chunk_failure),
		cmocka_unit_test(test_sbitmap_in_arena),
	};

	test_seed_init(argc, argv);
	return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
