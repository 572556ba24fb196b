/* SPDX-License-Identifier: MIT */
/*
 * tests/core/test_iova_tree.c - the AVL interval tree (core/iova_tree.c) against a sorted
 * array of disjoint intervals: random inserts and removes, every lookup (find, ceil,
 * first_overlap, next, and the lockless find/ceil) compared after each change, and a checker
 * that walks the tree for order, disjointness, stored heights, AVL balance and the height
 * bound 1.44 log2(n + 2).
 *
 * The stress test runs one writer that inserts and removes intervals (freeing a removed node
 * only after rcu_synchronize()) against two readers whose lockless lookups of intervals that
 * are never removed must always succeed (suite 'stress').
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/iova_tree.h"
#include "sys/rcu.h"
#include "test_util.h"

/* ---- the naive model: a sorted array ----------------------------------------------------- */

struct model {
	struct iova_node **n; /* sorted by start */
	size_t count, cap;
};

static size_t model_lower(const struct model *m, uint64_t start)
{
	size_t lo = 0, hi = m->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->n[mid]->start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The lowest interval with last >= addr, or NULL: a linear scan, on purpose. */
static struct iova_node *model_ceil(const struct model *m, uint64_t addr)
{
	for (size_t i = 0; i < m->count; i++)
		if (m->n[i]->last >= addr)
			return m->n[i];
	return NULL;
}

static struct iova_node *model_find(const struct model *m, uint64_t addr)
{
	struct iova_node *n = model_ceil(m, addr);

	return n && n->start <= addr ? n : NULL;
}

static struct iova_node *model_first_overlap(const struct model *m, uint64_t start, uint64_t last)
{
	struct iova_node *n = model_ceil(m, start);

	return n && n->start <= last ? n : NULL;
}

static void model_insert(struct model *m, struct iova_node *n)
{
	size_t i = model_lower(m, n->start);

	if (m->count == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->n = realloc(m->n, m->cap * sizeof(*m->n));
		assert_non_null(m->n);
	}
	memmove(&m->n[i + 1], &m->n[i], (m->count - i) * sizeof(*m->n));
	m->n[i] = n;
	m->count++;
}

static void model_remove_at(struct model *m, size_t i)
{
	memmove(&m->n[i], &m->n[i + 1], (m->count - i - 1) * sizeof(*m->n));
	m->count--;
}

/* ---- the tree checker -------------------------------------------------------------------- */

struct walk {
	const struct model *m;
	size_t index; /* in-order position */
	int ok;
};

static int check_subtree(struct iova_node *n, struct walk *w)
{
	struct iova_node *l, *r;
	int hl, hr;

	if (!n)
		return 0;
	l = atomic_load(&n->left);
	r = atomic_load(&n->right);
	hl = check_subtree(l, w);
	/* In order: the next node of the model, disjoint from and above the previous one. */
	if (w->index >= w->m->count || w->m->n[w->index] != n) {
		ctx_set("in-order node %zu is [0x%" PRIx64 ", 0x%" PRIx64 "], model has %zu nodes",
			w->index, n->start, n->last, w->m->count);
		EXPECT_TRUE(w->index < w->m->count && w->m->n[w->index] == n);
	}
	ctx_set("node [0x%" PRIx64 ", 0x%" PRIx64 "]", n->start, n->last);
	EXPECT_TRUE(n->start <= n->last);
	if (w->index)
		EXPECT_TRUE(w->m->n[w->index - 1]->last < n->start);
	w->index++;
	hr = check_subtree(r, w);
	ctx_set("node [0x%" PRIx64 ", 0x%" PRIx64 "]: left height %d, right height %d", n->start,
		n->last, hl, hr);
	EXPECT_EQ(n->height, 1 + (hl > hr ? hl : hr));
	EXPECT_TRUE(hl - hr <= 1 && hr - hl <= 1);
	return n->height;
}

static uint64_t avl_min_nodes(int h)
{
	uint64_t a = 0, b = 1; /* N(0), N(1) */

	if (h <= 0)
		return 0;
	for (int i = 1; i < h; i++) {
		uint64_t c = a + b + 1;

		a = b;
		b = c;
	}
	return b;
}

static void check_tree(const struct iova_tree *t, const struct model *m)
{
	struct walk w = {m, 0, 1};
	int h = check_subtree(atomic_load(&t->root), &w);

	ctx_set("tree of %zu nodes", m->count);
	EXPECT_EQ(w.index, m->count);
	EXPECT_EQ(t->count, m->count);
	EXPECT_EQ(atomic_load(&t->seq) % 2, 0);
	/* AVL bound: a tree of height h has at least N(h) = N(h-1) + N(h-2) + 1 nodes, which is
	 * h < 1.4405 log2(n + 2) - 0.3277. */
	ctx_set("tree of %zu nodes: height %d needs at least N(height) nodes", m->count, h);
	EXPECT_TRUE(m->count >= avl_min_nodes(h));
}

/* ---- lookups ----------------------------------------------------------------------------- */

static void check_lookups_at(const struct iova_tree *t, const struct model *m, uint64_t addr)
{
	struct iova_node *f = model_find(m, addr), *c = model_ceil(m, addr);

	ctx_set("%zu nodes: find_locked(0x%" PRIx64 ") (expected node start / seen node start)",
		m->count, addr);
	EXPECT_EQ((uintptr_t)iova_tree_find_locked(t, addr), (uintptr_t)f);
	ctx_set("%zu nodes: find_lockless(0x%" PRIx64 ")", m->count, addr);
	EXPECT_EQ((uintptr_t)iova_tree_find_lockless(t, addr), (uintptr_t)f);
	ctx_set("%zu nodes: ceil_locked(0x%" PRIx64 ")", m->count, addr);
	EXPECT_EQ((uintptr_t)iova_tree_ceil_locked(t, addr), (uintptr_t)c);
	ctx_set("%zu nodes: ceil_lockless(0x%" PRIx64 ")", m->count, addr);
	EXPECT_EQ((uintptr_t)iova_tree_ceil_lockless(t, addr), (uintptr_t)c);
}

static uint64_t interesting_addr(const struct model *m, uint64_t universe)
{
	struct iova_node *n;

	switch (rng_below(6)) {
	case 0:
		return rng_below(universe);
	case 1:
		return rng_below(2) ? 0 : UINT64_MAX - rng_below(3);
	case 2:
		return rng_next();
	default:
		if (!m->count)
			return rng_below(universe);
		n = m->n[rng_below(m->count)];
		return (rng_below(2) ? n->start : n->last) + rng_below(3) - 1;
	}
}

static void check_lookups(const struct iova_tree *t, const struct model *m, uint64_t universe)
{
	for (int i = 0; i < 24; i++)
		check_lookups_at(t, m, interesting_addr(m, universe));
	for (int i = 0; i < 8; i++) {
		uint64_t a = interesting_addr(m, universe), b = interesting_addr(m, universe);
		uint64_t s = a < b ? a : b, l = a < b ? b : a;

		ctx_set("%zu nodes: first_overlap(0x%" PRIx64 ", 0x%" PRIx64 ")", m->count, s, l);
		EXPECT_EQ((uintptr_t)iova_tree_first_overlap(t, s, l),
			  (uintptr_t)model_first_overlap(m, s, l));
	}
	for (size_t i = 0; i < m->count; i++) {
		struct iova_node *want = i + 1 < m->count ? m->n[i + 1] : NULL;

		if (m->count > 64 && rng_below(8))
			continue;
		ctx_set("%zu nodes: next_locked of node %zu [0x%" PRIx64 ", 0x%" PRIx64 "]",
			m->count, i, m->n[i]->start, m->n[i]->last);
		EXPECT_EQ((uintptr_t)iova_tree_next_locked(t, m->n[i]), (uintptr_t)want);
	}
}

/* ---- randomized comparison ---------------------------------------------------------------- */

static void random_interval(uint64_t universe, uint64_t *start, uint64_t *last)
{
	uint64_t s, len;

	switch (rng_below(8)) {
	case 0: /* touching the top of the address space */
		len = 1 + rng_below(universe);
		*start = UINT64_MAX - len + 1;
		*last = UINT64_MAX;
		return;
	case 1: /* at zero */
		*start = 0;
		*last = rng_below(universe);
		return;
	default:
		s = rng_below(universe);
		len = 1 + rng_below(rng_below(4) ? 16 : universe / 8 + 1);
		*start = s;
		*last = len - 1 > UINT64_MAX - s ? UINT64_MAX : s + len - 1;
	}
}

static void run_random(uint64_t universe, unsigned steps, size_t target)
{
	struct iova_tree t;
	struct model m = {0};

	iova_tree_init(&t);
	check_tree(&t, &m);
	check_lookups(&t, &m, universe);
	for (unsigned step = 0; step < steps; step++) {
		/* Grow towards target, then shrink to empty in the last quarter. */
		bool grow = step < steps * 3 / 4 ? rng_below(100) < (m.count < target ? 70 : 40)
						 : rng_below(100) < 10;

		if (grow || !m.count) {
			uint64_t s, l;
			struct iova_node *over, *n;

			random_interval(universe, &s, &l);
			over = model_first_overlap(&m, s, l);
			ctx_set("step %u: first_overlap(0x%" PRIx64 ", 0x%" PRIx64
				") before insert",
				step, s, l);
			EXPECT_EQ((uintptr_t)iova_tree_first_overlap(&t, s, l), (uintptr_t)over);
			if (over)
				continue;
			n = calloc(1, sizeof(*n));
			assert_non_null(n);
			n->start = s;
			n->last = l;
			iova_tree_insert(&t, n);
			model_insert(&m, n);
		} else {
			size_t i = rng_below(m.count);
			struct iova_node *n = m.n[i];

			iova_tree_remove(&t, n);
			model_remove_at(&m, i);
			memset(n, 0x5a, sizeof(*n)); /* a stale pointer would be caught */
			free(n);
		}
		check_tree(&t, &m);
		check_lookups(&t, &m, universe);
	}
	while (m.count) {
		struct iova_node *n = m.n[m.count - 1];

		iova_tree_remove(&t, n);
		model_remove_at(&m, m.count - 1);
		free(n);
	}
	check_tree(&t, &m);
	ctx_set("empty tree");
	EXPECT_EQ((uintptr_t)atomic_load(&t.root), 0);
	free(m.n);
}

static void test_iova_tree_random(void **state)
{
	(void)state;
	rng_reseed(1);
	run_random(64, 3000, 40); /* dense: most inserts collide */
	rng_reseed(2);
	run_random(1u << 20, 4000, 600); /* sparse, deeper tree */
	rng_reseed(3);
	run_random(UINT64_MAX, 2000, 300); /* the whole 64-bit space */
}

/* Monotonic inserts and removes: the rotation-heavy patterns. */
static void test_iova_tree_sequential(void **state)
{
	enum { N = 1000 };
	struct iova_tree t;
	struct model m = {0};
	struct iova_node *nodes = calloc(N, sizeof(*nodes));

	(void)state;
	assert_non_null(nodes);
	rng_reseed(4);
	for (int pass = 0; pass < 4; pass++) {
		iova_tree_init(&t);
		for (int i = 0; i < N; i++) {
			int k = pass & 1 ? N - 1 - i : i;

			nodes[k].start = (uint64_t)k * 0x1000;
			nodes[k].last = nodes[k].start + 0xfff;
			iova_tree_insert(&t, &nodes[k]);
			model_insert(&m, &nodes[k]);
			if (i % 97 == 0) {
				check_tree(&t, &m);
				check_lookups(&t, &m, N * 0x1000ull);
			}
		}
		check_tree(&t, &m);
		check_lookups(&t, &m, N * 0x1000ull);
		for (int i = 0; i < N; i++) {
			/* remove from the front, the back or the middle */
			size_t at = pass < 2 ? 0 : m.count / 2;

			if (pass == 1)
				at = m.count - 1;
			iova_tree_remove(&t, m.n[at]);
			model_remove_at(&m, at);
			if (i % 89 == 0) {
				check_tree(&t, &m);
				check_lookups(&t, &m, N * 0x1000ull);
			}
		}
		check_tree(&t, &m);
	}
	free(nodes);
	free(m.n);
}

/* ---- concurrency: one writer, two lockless readers ----------------------------------------- */

#define CC_SLOTS 512u	    /* permanent intervals in even slots, transient ones in odd slots */
#define CC_SLOT	 0x10000ull /* bytes per slot */

struct cc {
	struct iova_tree t;
	struct iova_node perm[CC_SLOTS / 2];
	_Atomic int stop;
	_Atomic uint64_t lookups, misses, wrong, bad_transient, writes;
	uint64_t seed;
};

static uint64_t thread_rng(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct reader_arg {
	struct cc *c;
	unsigned id;
};

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	struct cc *c = a->c;
	uint64_t x = c->seed ^ (a->id + 7) * 0x9999ull, n = 0;

	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		uint64_t i = thread_rng(&x) % (CC_SLOTS / 2);
		struct iova_node *want = &c->perm[i], *got;
		uint64_t addr = want->start + thread_rng(&x) % (want->last - want->start + 1);
		uint64_t gap = (2 * i + 1) * CC_SLOT + thread_rng(&x) % CC_SLOT;

		rcu_read_lock();
		got = thread_rng(&x) & 1 ? iova_tree_find_lockless(&c->t, addr)
					 : iova_tree_ceil_lockless(&c->t, addr);
		if (!got)
			atomic_fetch_add(&c->misses, 1);
		else if (got != want)
			atomic_fetch_add(&c->wrong, 1);
		/* A transient interval may or may not be there; if found, it holds the address. */
		got = iova_tree_find_lockless(&c->t, gap);
		if (got && (got->start > gap || got->last < gap))
			atomic_fetch_add(&c->bad_transient, 1);
		/* The ceiling of a gap address is a transient interval or the next permanent. */
		got = iova_tree_ceil_lockless(&c->t, gap);
		if (i + 1 < CC_SLOTS / 2 &&
		    (!got || got->last < gap || got->start > c->perm[i + 1].start))
			atomic_fetch_add(&c->bad_transient, 1);
		rcu_read_unlock();
		n++;
	}
	atomic_fetch_add(&c->lookups, n);
	return NULL;
}

static void *writer_main(void *p)
{
	struct cc *c = p;
	struct iova_node *live[CC_SLOTS / 2] = {0}; /* transient node per odd slot */
	struct iova_node *retired[64];
	unsigned nretired = 0;
	uint64_t x = c->seed ^ 0x31415ull, ops = 0;

	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		uint64_t i = thread_rng(&x) % (CC_SLOTS / 2);

		if (live[i]) {
			iova_tree_remove(&c->t, live[i]);
			retired[nretired++] = live[i];
			live[i] = NULL;
		} else {
			struct iova_node *n = malloc(sizeof(*n));
			uint64_t lo = thread_rng(&x) % CC_SLOT, hi = thread_rng(&x) % CC_SLOT;

			if (!n)
				abort();
			if (lo > hi) {
				uint64_t tmp = lo;

				lo = hi;
				hi = tmp;
			}
			n->start = (2 * i + 1) * CC_SLOT + lo;
			n->last = (2 * i + 1) * CC_SLOT + hi;
			iova_tree_insert(&c->t, n);
			live[i] = n;
		}
		if (nretired == 64) {
			rcu_synchronize();
			for (unsigned j = 0; j < nretired; j++) {
				memset(retired[j], 0xdb, sizeof(*retired[j]));
				free(retired[j]);
			}
			nretired = 0;
		}
		ops++;
	}
	for (uint64_t i = 0; i < CC_SLOTS / 2; i++)
		if (live[i])
			iova_tree_remove(&c->t, live[i]);
	rcu_synchronize();
	for (uint64_t i = 0; i < CC_SLOTS / 2; i++)
		free(live[i]);
	for (unsigned j = 0; j < nretired; j++)
		free(retired[j]);
	atomic_store(&c->writes, ops);
	return NULL;
}

static void test_iova_tree_concurrent_lookup(void **state)
{
	struct cc *c = calloc(1, sizeof(*c));
	pthread_t w, r[2];
	struct reader_arg ra[2] = {{c, 0}, {c, 1}};
	struct timespec ts = {1, 500000000};
	struct model m = {0};

	(void)state;
	assert_non_null(c);
	rcu_init();
	iova_tree_init(&c->t);
	c->seed = test_seed;
	/* Permanent intervals in shuffled order, so the tree has varied shapes. */
	for (uint64_t i = 0; i < CC_SLOTS / 2; i++) {
		c->perm[i].start = 2 * i * CC_SLOT + i % 7;
		c->perm[i].last = 2 * i * CC_SLOT + CC_SLOT - 1 - i % 5;
	}
	for (uint64_t i = 0; i < CC_SLOTS / 2; i++) {
		uint64_t k = (i * 37) % (CC_SLOTS / 2);

		iova_tree_insert(&c->t, &c->perm[k]);
		model_insert(&m, &c->perm[k]);
	}
	check_tree(&c->t, &m);
	assert_int_equal(pthread_create(&w, NULL, writer_main, c), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader_main, &ra[i]), 0);
	nanosleep(&ts, NULL);
	atomic_store(&c->stop, 1);
	pthread_join(w, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	print_message("concurrent lookups: %" PRIu64 " lookups, %" PRIu64 " writes\n",
		      atomic_load(&c->lookups), atomic_load(&c->writes));
	ctx_set("lockless lookups of permanent intervals that found nothing");
	EXPECT_EQ(atomic_load(&c->misses), 0);
	ctx_set("lockless lookups of permanent intervals that found another node");
	EXPECT_EQ(atomic_load(&c->wrong), 0);
	ctx_set("lockless lookups in transient slots that returned a non-covering node");
	EXPECT_EQ(atomic_load(&c->bad_transient), 0);
	ctx_set("the readers made progress");
	EXPECT_TRUE(atomic_load(&c->lookups) > 0 && atomic_load(&c->writes) > 0);
	/* Only the permanent intervals are left, in a valid tree. */
	check_tree(&c->t, &m);
	free(m.n);
	free(c);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest unit[] = {
		cmocka_unit_test(test_iova_tree_random),
		cmocka_unit_test(test_iova_tree_sequential),
	};
	const struct CMUnitTest stress[] = {
		cmocka_unit_test(test_iova_tree_concurrent_lookup),
	};

	test_seed_init(argc, argv);
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--stress"))
			return cmocka_run_group_tests_name("iova_tree_stress", stress, NULL, NULL);
	return cmocka_run_group_tests_name("iova_tree", unit, NULL, NULL);
}
