/* SPDX-License-Identifier: MIT */
/*
 * tests/core/test_sbitmap.c - the three-level bitmap (core/sbitmap.c) against a plain
 * uint64_t[] bitmap: random set_range / clear_bit_excl / reset_excl / harvest_range_atomic
 * over edge sizes, ranges that cross leaf-word, summary-word (4096 bits) and top-word
 * (262144 bits) boundaries, with every word, the count and the hints compared after each
 * operation (a set bit must always be reachable through sbm_next_hinted_word).
 *
 * A second test runs two setter threads against one harvester and checks that every bit set
 * was harvested exactly once or is still set, and still hinted (suite 'stress').
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/sbitmap.h"
#include "test_util.h"

/* Bits covered by one summary word (64 leaf words) and by one top word. */
#define SUM_BITS (64u * 64u)
#define TOP_BITS (64u * SUM_BITS)

static const uint64_t sizes[] = {1,	4,     8,     32,     64,	    160,
				 16384, 32768, 32769, 100000, TOP_BITS + 1, 300000};

/* ---- the naive model ---------------------------------------------------------------- */

struct model {
	uint64_t nbits, nwords;
	uint64_t *w;
};

static bool model_test(const struct model *m, uint64_t bit)
{
	return (m->w[bit / 64] >> (bit % 64)) & 1;
}

static void model_set(struct model *m, uint64_t bit)
{
	m->w[bit / 64] |= 1ull << (bit % 64);
}

static void model_clear(struct model *m, uint64_t bit)
{
	m->w[bit / 64] &= ~(1ull << (bit % 64));
}

static uint64_t model_count(const struct model *m)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < m->nwords; i++)
		n += (uint64_t)__builtin_popcountll(m->w[i]);
	return n;
}

/* ---- random ranges that like word and chunk edges ------------------------------------- */

static uint64_t pick_bit_near_edge(uint64_t nbits)
{
	uint64_t edge;

	switch (rng_below(5)) {
	case 0:
		return rng_below(nbits);
	case 1:
		edge = rng_below(nbits / 64 + 1) * 64;
		break;
	case 2:
		edge = rng_below(nbits / SUM_BITS + 1) * SUM_BITS;
		break;
	case 3:
		edge = rng_below(nbits / TOP_BITS + 1) * TOP_BITS;
		break;
	default:
		edge = nbits;
		break;
	}
	edge = edge + rng_below(9) - 4 + (edge < 4 ? 4 - edge : 0);
	return edge < nbits ? edge : nbits - 1;
}

static void pick_range(uint64_t nbits, uint64_t *first, uint64_t *n)
{
	uint64_t f = pick_bit_near_edge(nbits), len;

	switch (rng_below(5)) {
	case 0:
		len = 1;
		break;
	case 1:
		len = 1 + rng_below(64);
		break;
	case 2:
		len = 1 + rng_below(300);
		break;
	case 3:
		len = 1 + rng_below(2 * SUM_BITS + 200);
		break;
	default:
		len = 1 + rng_below(nbits);
		break;
	}
	if (len > nbits - f)
		len = nbits - f;
	*first = f;
	*n = len;
}

/* ---- comparisons ---------------------------------------------------------------------- */

static void check_hints(const struct sbitmap *b, const struct model *m)
{
	uint64_t prev = 0, stale = 0;
	bool first = true;
	uint64_t next_set;

	/* Walk every hinted word: strictly increasing, in range. */
	uint8_t *hinted = calloc(m->nwords + 1, 1);

	assert_non_null(hinted);
	for (uint64_t w = sbm_next_hinted_word(b, 0); w < b->nwords;
	     w = sbm_next_hinted_word(b, w + 1)) {
		if (!first)
			EXPECT_TRUE(w > prev);
		first = false;
		prev = w;
		hinted[w] = 1;
		stale += !m->w[w];
	}
	EXPECT_EQ(sbm_next_hinted_word(b, b->nwords), b->nwords);
	/* No lost bit: every non-zero word is reachable. */
	for (uint64_t w = 0; w < m->nwords; w++)
		if (m->w[w] && !hinted[w]) {
			ctx_set("nbits %" PRIu64 ": word %" PRIu64 " = 0x%" PRIx64
				" is not reachable through the hints",
				m->nbits, w, m->w[w]);
			EXPECT_EQ(hinted[w], 1);
		}
	/* From any position, the next hinted word is at or before the next non-zero one. */
	next_set = m->nwords;
	for (uint64_t i = m->nwords; i-- > 0;) {
		if (m->w[i])
			next_set = i;
		if (m->nwords > 256 && rng_below(16))
			continue;
		uint64_t h = sbm_next_hinted_word(b, i);

		ctx_set("nbits %" PRIu64 ": sbm_next_hinted_word(%" PRIu64
			"), next non-zero word %" PRIu64,
			m->nbits, i, next_set);
		EXPECT_TRUE(h >= i);
		EXPECT_TRUE(h <= next_set);
	}
	(void)stale;
	free(hinted);
}

static void check_all(const struct sbitmap *b, const struct model *m, const char *after)
{
	ctx_set("nbits %" PRIu64 " after %s", m->nbits, after);
	EXPECT_EQ(b->nwords, m->nwords);
	for (uint64_t w = 0; w < m->nwords; w++) {
		uint64_t seen = sbm_load_word(b, w);

		if (seen != m->w[w]) {
			ctx_set("nbits %" PRIu64 " after %s: sbm_load_word(%" PRIu64 ")", m->nbits,
				after, w);
			EXPECT_EQ(seen, m->w[w]);
		}
	}
	for (int i = 0; i < 64; i++) {
		uint64_t bit = rng_below(m->nbits);

		ctx_set("nbits %" PRIu64 " after %s: sbm_test(%" PRIu64 ")", m->nbits, after, bit);
		EXPECT_EQ(sbm_test(b, bit), model_test(m, bit));
	}
	ctx_set("nbits %" PRIu64 " after %s: sbm_count", m->nbits, after);
	EXPECT_EQ(sbm_count(b), model_count(m));
	check_hints(b, m);
}

/* ---- harvest collection ---------------------------------------------------------------- */

struct piece {
	uint64_t bit0, bits;
};

struct harvest_log {
	struct piece *p;
	size_t n, cap;
};

static void collect_piece(void *opaque, uint64_t bit0, uint64_t bits)
{
	struct harvest_log *h = opaque;

	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 64;
		h->p = realloc(h->p, h->cap * sizeof(*h->p));
		assert_non_null(h->p);
	}
	h->p[h->n++] = (struct piece){bit0, bits};
}

static void do_harvest(struct sbitmap *b, struct model *m, uint64_t first, uint64_t n)
{
	struct harvest_log h = {0};
	uint64_t expect_taken = 0, taken, end = first + n;
	struct model got = {m->nbits, m->nwords, calloc(m->nwords, 8)};

	assert_non_null(got.w);
	taken = sbm_harvest_range_atomic(b, first, n, collect_piece, &h);
	ctx_set("nbits %" PRIu64 ": harvest [%" PRIu64 ", +%" PRIu64 ")", m->nbits, first, n);
	for (size_t i = 0; i < h.n; i++) {
		EXPECT_EQ(h.p[i].bit0 % 64, 0);
		EXPECT_TRUE(h.p[i].bits != 0);
		if (i)
			EXPECT_TRUE(h.p[i].bit0 > h.p[i - 1].bit0);
		for (unsigned j = 0; j < 64; j++) {
			uint64_t bit = h.p[i].bit0 + j;

			if (!((h.p[i].bits >> j) & 1))
				continue;
			ctx_set("nbits %" PRIu64 ": harvest [%" PRIu64 ", +%" PRIu64
				") passed bit %" PRIu64,
				m->nbits, first, n, bit);
			EXPECT_TRUE(bit >= first && bit < end);
			EXPECT_TRUE(model_test(m, bit));
			EXPECT_TRUE(!model_test(&got, bit));
			model_set(&got, bit);
		}
	}
	for (uint64_t bit = first; bit < end; bit++) {
		if (model_test(m, bit)) {
			ctx_set("nbits %" PRIu64 ": harvest [%" PRIu64 ", +%" PRIu64
				") must pass bit %" PRIu64,
				m->nbits, first, n, bit);
			EXPECT_TRUE(model_test(&got, bit));
			expect_taken++;
			model_clear(m, bit);
		}
	}
	ctx_set("nbits %" PRIu64 ": harvest [%" PRIu64 ", +%" PRIu64 ") return", m->nbits, first,
		n);
	EXPECT_EQ(taken, expect_taken);
	free(got.w);
	free(h.p);
}

/* ---- the randomized comparison --------------------------------------------------------- */

static void run_size(uint64_t nbits, unsigned steps)
{
	struct sbitmap b;
	struct model m = {nbits, (nbits + 63) / 64, calloc((nbits + 63) / 64, 8)};
	char what[128];

	assert_non_null(m.w);
	ctx_set("sbm_init(%" PRIu64 ")", nbits);
	EXPECT_EQ(sbm_init(&b, nbits), 0);
	EXPECT_EQ(b.nbits, nbits);
	check_all(&b, &m, "init");
	for (unsigned step = 0; step < steps; step++) {
		uint64_t first, n, op = rng_below(100);

		pick_range(nbits, &first, &n);
		if (op < 40) {
			snprintf(what, sizeof(what),
				 "step %u sbm_set_range(%" PRIu64 ", %" PRIu64 ")", step, first, n);
			sbm_set_range(&b, first, n);
			for (uint64_t i = first; i < first + n; i++)
				model_set(&m, i);
		} else if (op < 60) {
			/* Clear set bits (a whole word now and then, so hints must drop). */
			uint64_t w = rng_below(m.nwords);

			snprintf(what, sizeof(what), "step %u sbm_clear_bit_excl in word %" PRIu64,
				 step, w);
			for (unsigned j = 0; j < 64 && w * 64 + j < nbits; j++) {
				if (rng_below(4) && !model_test(&m, w * 64 + j))
					continue;
				sbm_clear_bit_excl(&b, w * 64 + j);
				model_clear(&m, w * 64 + j);
			}
		} else if (op < 62) {
			snprintf(what, sizeof(what), "step %u sbm_clear_bit_excl(%" PRIu64 ")",
				 step, first);
			sbm_clear_bit_excl(&b, first);
			model_clear(&m, first);
		} else if (op < 90) {
			snprintf(what, sizeof(what),
				 "step %u sbm_harvest_range_atomic(%" PRIu64 ", %" PRIu64 ")", step,
				 first, n);
			do_harvest(&b, &m, first, n);
		} else if (op < 96) {
			snprintf(what, sizeof(what), "step %u sbm_set_range(%" PRIu64 ", 0)", step,
				 first);
			sbm_set_range(&b, first, 0);
		} else if (op < 98) {
			snprintf(what, sizeof(what), "step %u sbm_reset_excl", step);
			sbm_reset_excl(&b);
			memset(m.w, 0, m.nwords * 8);
			ctx_set("%s: hints left", what);
			EXPECT_EQ(sbm_next_hinted_word(&b, 0), b.nwords);
		} else {
			snprintf(what, sizeof(what), "step %u harvest of n = 0", step);
			ctx_set("%s", what);
			EXPECT_EQ(sbm_harvest_range_atomic(&b, first, 0, collect_piece, NULL), 0);
		}
		check_all(&b, &m, what);
	}
	/* Harvesting everything leaves no bit and no hint: scans cost nothing afterwards. */
	do_harvest(&b, &m, 0, nbits);
	check_all(&b, &m, "final full harvest");
	ctx_set("nbits %" PRIu64 ": hints left after a full harvest", nbits);
	EXPECT_EQ(sbm_next_hinted_word(&b, 0), b.nwords);
	sbm_destroy(&b);
	free(m.w);
}

static void test_sbitmap_vs_naive(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		rng_reseed(i + 1);
		run_size(sizes[i], sizes[i] > 10000 ? 600 : 1500);
	}
}

/* Ranges across summary-word and top-word edges, set as a whole and bit by bit. */
static void test_sbitmap_hint_edges(void **state)
{
	struct sbitmap b;
	uint64_t nbits = 2 * TOP_BITS + 100;
	struct model m = {nbits, (nbits + 63) / 64, calloc((nbits + 63) / 64, 8)};
	const uint64_t edges[] = {SUM_BITS, 3 * SUM_BITS, TOP_BITS, TOP_BITS + SUM_BITS,
				  2 * TOP_BITS};

	(void)state;
	assert_non_null(m.w);
	assert_int_equal(sbm_init(&b, nbits), 0);
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		uint64_t e = edges[i];

		if (i % 2) {
			sbm_set_range(&b, e - 3, 4);
		} else {
			for (uint64_t j = e - 3; j <= e; j++)
				sbm_set_range(&b, j, 1);
		}
		for (uint64_t j = e - 3; j <= e; j++)
			model_set(&m, j);
	}
	/* One range over a whole top word and more. */
	sbm_set_range(&b, TOP_BITS - 70, TOP_BITS + 140);
	for (uint64_t j = TOP_BITS - 70; j < 2 * TOP_BITS + 70; j++)
		model_set(&m, j);
	check_all(&b, &m, "edges");
	do_harvest(&b, &m, SUM_BITS - 2, 4);
	check_all(&b, &m, "harvest across a summary edge");
	do_harvest(&b, &m, TOP_BITS - 1, 2);
	check_all(&b, &m, "harvest across a top edge");
	do_harvest(&b, &m, TOP_BITS + 64, TOP_BITS - 64);
	check_all(&b, &m, "harvest of most of a top word");
	do_harvest(&b, &m, 0, nbits);
	check_all(&b, &m, "harvest all");
	ctx_set("hints after harvest all");
	EXPECT_EQ(sbm_next_hinted_word(&b, 0), b.nwords);
	sbm_destroy(&b);
	free(m.w);
}

/* ---- concurrency: setters vs a harvester ------------------------------------------------ */

#define ST_BITS	 (TOP_BITS + 3 * SUM_BITS + 96) /* two top words; a multiple of 2 * ST_BLOCK */
#define ST_BLOCK 8u /* bits per block; blocks alternate between the two setters */

struct stress {
	struct sbitmap b;
	uint8_t *harvested; /* written by the harvester only */
	_Atomic int setters_done;
	_Atomic uint64_t bad_piece; /* a piece outside its range, or 0 */
	uint64_t seed;
};

struct setter_arg {
	struct stress *s;
	unsigned id;
};

static uint64_t thread_rng(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void *setter_main(void *p)
{
	struct setter_arg *a = p;
	uint64_t nblocks = ST_BITS / ST_BLOCK / 2, x = a->s->seed ^ (a->id + 1) * 0x1234567ull;
	uint64_t *order = malloc(nblocks * sizeof(*order));

	if (!order)
		abort();
	for (uint64_t i = 0; i < nblocks; i++)
		order[i] = i;
	for (uint64_t i = nblocks - 1; i > 0; i--) {
		uint64_t j = thread_rng(&x) % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (uint64_t i = 0; i < nblocks; i++) {
		uint64_t first = (order[i] * 2 + a->id) * ST_BLOCK;

		if (thread_rng(&x) & 1) {
			sbm_set_range(&a->s->b, first, ST_BLOCK);
		} else {
			for (unsigned j = 0; j < ST_BLOCK; j++)
				sbm_set_range(&a->s->b, first + j, 1);
		}
	}
	free(order);
	atomic_fetch_add(&a->s->setters_done, 1);
	return NULL;
}

struct st_range {
	struct stress *s;
	uint64_t first, end;
};

static void stress_piece(void *opaque, uint64_t bit0, uint64_t bits)
{
	struct st_range *r = opaque;

	for (unsigned j = 0; j < 64; j++) {
		if (!((bits >> j) & 1))
			continue;
		if (bit0 + j < r->first || bit0 + j >= r->end)
			atomic_store(&r->s->bad_piece, bit0 + j + 1);
		else
			r->s->harvested[bit0 + j]++;
	}
}

static void *harvester_main(void *p)
{
	struct stress *s = p;
	uint64_t x = s->seed ^ 0xabcdefull;

	while (atomic_load(&s->setters_done) < 2) {
		uint64_t first = thread_rng(&x) % ST_BITS;
		uint64_t n = 1 + thread_rng(&x) % (thread_rng(&x) & 1 ? 4096 : ST_BITS);
		struct st_range r;

		if (n > ST_BITS - first)
			n = ST_BITS - first;
		r = (struct st_range){s, first, first + n};
		sbm_harvest_range_atomic(&s->b, first, n, stress_piece, &r);
	}
	return NULL;
}

static void test_sbitmap_concurrent_harvest(void **state)
{
	struct stress s;
	struct timespec t0, t1;
	unsigned rounds = 0;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		pthread_t set[2], harv;
		struct setter_arg a[2] = {{&s, 0}, {&s, 1}};
		uint64_t left = 0, taken = 0;
		struct model m = {ST_BITS, (ST_BITS + 63) / 64, calloc((ST_BITS + 63) / 64, 8)};

		assert_non_null(m.w);
		assert_int_equal(sbm_init(&s.b, ST_BITS), 0);
		s.harvested = calloc(ST_BITS, 1);
		assert_non_null(s.harvested);
		atomic_init(&s.setters_done, 0);
		atomic_init(&s.bad_piece, 0);
		s.seed = test_seed + rounds;
		assert_int_equal(pthread_create(&harv, NULL, harvester_main, &s), 0);
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&set[i], NULL, setter_main, &a[i]), 0);
		for (int i = 0; i < 2; i++)
			pthread_join(set[i], NULL);
		pthread_join(harv, NULL);

		ctx_set("round %u: a piece outside its harvest range (bit + 1)", rounds);
		EXPECT_EQ(atomic_load(&s.bad_piece), 0);
		for (uint64_t bit = 0; bit < ST_BITS; bit++) {
			bool still = sbm_test(&s.b, bit);

			ctx_set("round %u: bit %" PRIu64
				" set once: harvested %u times, still set %d",
				rounds, bit, s.harvested[bit], still);
			EXPECT_EQ(s.harvested[bit] + still, 1);
			if (still)
				model_set(&m, bit);
			left += still;
			taken += s.harvested[bit];
		}
		/* What is left must still be hinted and counted. */
		check_all(&s.b, &m, "concurrent setters and harvester");
		ctx_set("round %u: every bit accounted for", rounds);
		EXPECT_EQ(left + taken, ST_BITS);
		sbm_destroy(&s.b);
		free(s.harvested);
		free(m.w);
		rounds++;
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while (rounds < 4 || (t1.tv_sec - t0.tv_sec < 2 && rounds < 200));
	print_message("concurrent harvest: %u rounds of %u bits\n", rounds, ST_BITS);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest unit[] = {
		cmocka_unit_test(test_sbitmap_vs_naive),
		cmocka_unit_test(test_sbitmap_hint_edges),
	};
	const struct CMUnitTest stress[] = {
		cmocka_unit_test(test_sbitmap_concurrent_harvest),
	};
	bool want_stress = false;

	test_seed_init(argc, argv);
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--stress"))
			want_stress = true;
	if (want_stress)
		return cmocka_run_group_tests_name("sbitmap_stress", stress, NULL, NULL);
	return cmocka_run_group_tests_name("sbitmap", unit, NULL, NULL);
}
