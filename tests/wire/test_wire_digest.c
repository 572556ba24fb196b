/* SPDX-License-Identifier: MIT */
/*
 * tests/wire/test_wire_digest.c - the memory digest of END and ACK (docs/wire-format.md "The
 * memory digest"): wire_digest_regions() on 1 to 8 threads against a naive reference written
 * from the definition (plain XXH3 per page, the mix spelled out), over random memory in
 * several regions of odd sizes at odd host offsets; known answers that pin the definition;
 * what it must tell apart (a flipped bit, two pages swapped, a page moved); and the
 * destination's running digest (struct mig_digest) under random page updates, data and
 * zero, compared with a from-scratch digest, pages never applied included. Seeds printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <xxhash.h>

#include "core/alloc.h"
#include "migrate/memory.h"
#include "wire_test.h"

#define MAXREG 6

/* ---- the reference ---- */

static uint64_t naive_term(uint64_t page, const uint8_t *bytes)
{
	uint64_t z = XXH3_64bits(bytes, 4096) + page * 0x9e3779b97f4a7c15ull;

	z ^= z >> 30;
	z *= 0xbf58476d1ce4e5b9ull;
	z ^= z >> 27;
	z *= 0x94d049bb133111ebull;
	z ^= z >> 31;
	return z;
}

static uint64_t naive_digest(const struct wire_region *regions, void *const *host, uint32_t n)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < n; i++)
		for (uint64_t p = 0; p < regions[i].size / 4096; p++)
			sum += naive_term(regions[i].addr / 4096 + p,
					  (const uint8_t *)host[i] + p * 4096);
	return sum;
}

/* ---- random memory in regions ---- */

struct mem {
	struct wire_region regions[MAXREG];
	void *host[MAXREG];
	uint8_t *buf[MAXREG]; /* host[i] lies at an odd offset in buf[i] */
	uint32_t n;
	uint64_t pages;
};

static const size_t host_offs[] = {0, 2048, 0xff1, 1};

/* n regions of the given page counts, at random sorted addresses (one near the top of the
 * address space when top), random bytes with some zero and some repeated pages. */
static void mem_init(struct mem *m, const uint64_t *npages, uint32_t n, bool top)
{
	uint64_t addr = rng_below(1000) * 4096;

	memset(m, 0, sizeof(*m));
	m->n = n;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t size = npages[i] * 4096;
		size_t off = host_offs[rng_below(sizeof(host_offs) / sizeof(host_offs[0]))];

		if (top && i == n - 1)
			addr = 0ull - size;
		m->regions[i] = (struct wire_region){addr, size};
		m->buf[i] = malloc(size + 4096);
		assert_non_null(m->buf[i]);
		m->host[i] = m->buf[i] + off;
		rng_fill(m->host[i], size, (unsigned)rng_below(3));
		for (uint64_t p = 0; p < npages[i]; p++)
			if (!rng_below(5))
				memset((uint8_t *)m->host[i] + p * 4096, 0, 4096);
		if (npages[i] > 1) /* the same bytes at two places */
			memcpy(m->host[i], (uint8_t *)m->host[i] + 4096, 4096);
		m->pages += npages[i];
		addr += size + (1 + rng_below(100)) * 4096;
	}
}

static void mem_fini(struct mem *m)
{
	for (uint32_t i = 0; i < m->n; i++)
		free(m->buf[i]);
}

static uint64_t digest_of(const struct mem *m, unsigned nthreads)
{
	uint64_t d = 0x5a5a;

	assert_int_equal(wire_digest_regions_threads(m->regions, m->host, m->n, nthreads, &d), 0);
	return d;
}

/* ---- wire_digest_regions against the reference ---- */

static void test_digest_reference(void **state)
{
	static const uint64_t sizes[][MAXREG] = {
		{1}, {3, 1, 7}, {13, 2, 101, 1, 5, 64}, {65, 63}, {1, 1, 1, 1, 1, 1},
	};
	static const uint32_t counts[] = {1, 3, 6, 2, 6};
	static const unsigned threads[] = {1, 2, 3, 8, 100};

	(void)state;
	rng_seed("test_digest_reference");
	for (unsigned k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		for (int top = 0; top < 2; top++) {
			struct mem m;
			uint64_t want, got;

			mem_init(&m, sizes[k], counts[k], top);
			want = naive_digest(m.regions, m.host, m.n);
			assert_int_equal(wire_digest_regions(m.regions, m.host, m.n, &got), 0);
			if (got != want)
				fail_msg("case %u: digest %016llx, the reference %016llx", k,
					 (unsigned long long)got, (unsigned long long)want);
			for (unsigned t = 0; t < sizeof(threads) / sizeof(threads[0]); t++)
				if ((got = digest_of(&m, threads[t])) != want)
					fail_msg(
						"case %u, %u threads: %016llx, the reference %016llx",
						k, threads[t], (unsigned long long)got,
						(unsigned long long)want);
			/* The sum over one page at a time, in any grouping. */
			got = 0;
			for (uint32_t i = 0; i < m.n; i++)
				for (uint64_t p = 0; p < m.regions[i].size / 4096; p++)
					got += wire_digest_pages(m.regions[i].addr / 4096 + p,
								 (uint8_t *)m.host[i] + p * 4096,
								 1);
			assert_int_equal(got, want);
			mem_fini(&m);
		}
	}
}

/* Large enough for wire_digest_regions() to start its threads. */
static void test_digest_threaded(void **state)
{
	const uint64_t sizes[3] = {2049, 1, 3001}; /* ~20 MiB */
	struct mem m;
	uint64_t got;

	(void)state;
	rng_seed("test_digest_threaded");
	mem_init(&m, sizes, 3, false);
	assert_true(wire_digest_nthreads(m.pages * 4096) >= 1);
	assert_int_equal(wire_digest_nthreads(4096), 1);
	assert_int_equal(wire_digest_regions(m.regions, m.host, m.n, &got), 0);
	assert_int_equal(got, naive_digest(m.regions, m.host, m.n));
	assert_int_equal(digest_of(&m, 2), got);
	assert_int_equal(digest_of(&m, 7), got);
	mem_fini(&m);
}

/* The definition, pinned: a change here is a new wire version. The two values were also
 * computed by a separate Python script (ctypes over libxxhash's XXH3_64bits, the mix and the
 * sum in Python's integers). */
static void test_digest_known_answers(void **state)
{
	static uint8_t page[2 * 4096];
	const struct wire_region zero = {0, 4096}, two = {5 * 4096, 2 * 4096};
	void *host = page;
	uint64_t d;

	(void)state;
	assert_int_equal(wire_digest_page_hash(page), XXH3_64bits(page, 4096));
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(wire_digest_term(p << 50, wire_digest_page_hash(page)),
				 naive_term(p << 50, page));
	assert_int_equal(wire_digest_regions(&zero, &host, 1, &d), 0);
	assert_int_equal(d, 0x078f0e9688320c1full);
	for (unsigned i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 7 + i / 4096);
	assert_int_equal(wire_digest_regions(&two, &host, 1, &d), 0);
	assert_int_equal(d, 0x02dc79f21a9bc1b7ull);
	assert_int_equal(wire_digest_regions(NULL, NULL, 0, &d), 0);
	assert_int_equal(d, 0);
}

/* What the digest must tell apart; and regions it cannot digest. */
static void test_digest_differences(void **state)
{
	const uint64_t sizes[2] = {9, 4};
	struct wire_region odd;
	struct mem m;
	uint8_t tmp[4096], *a, *b;
	uint64_t base, d;

	(void)state;
	rng_seed("test_digest_differences");
	mem_init(&m, sizes, 2, false);
	a = m.host[0];
	b = (uint8_t *)m.host[0] + 4 * 4096;
	memset(a, 1, 4096); /* two different pages */
	memset(b, 2, 4096);
	base = digest_of(&m, 1);
	/* One bit anywhere. */
	for (unsigned i = 0; i < 64; i++) {
		uint32_t r = (uint32_t)rng_below(2);
		uint64_t at = rng_below(m.regions[r].size);

		((uint8_t *)m.host[r])[at] ^= (uint8_t)(1u << (i % 8));
		assert_true(digest_of(&m, 1) != base);
		((uint8_t *)m.host[r])[at] ^= (uint8_t)(1u << (i % 8));
	}
	assert_int_equal(digest_of(&m, 2), base);
	/* Two pages swapped: the same bytes, elsewhere. */
	memcpy(tmp, a, 4096);
	memcpy(a, b, 4096);
	memcpy(b, tmp, 4096);
	assert_true(digest_of(&m, 1) != base);
	memcpy(b, a, 4096);
	memcpy(a, tmp, 4096);
	assert_int_equal(digest_of(&m, 1), base);
	/* A region moved in the address space. */
	m.regions[1].addr += 4096;
	assert_true(digest_of(&m, 1) != base);
	m.regions[1].addr -= 4096;
	/* Not a multiple of 4 KiB. */
	odd = (struct wire_region){0, 4096 + 512};
	assert_int_equal(wire_digest_regions(&odd, m.host, 1, &d), -EINVAL);
	mem_fini(&m);
}

/* ---- the destination's running digest ---- */

static void dt_regions_of(const struct mem *m, struct dt_region *r)
{
	for (uint32_t i = 0; i < m->n; i++)
		r[i] = (struct dt_region){
			.addr = m->regions[i].addr, .size = m->regions[i].size, .host = m->host[i]};
}

static void expect_final(struct mig_digest *g, const struct mem *m, uint64_t seed, unsigned step)
{
	uint64_t want = naive_digest(m->regions, m->host, m->n), got = 0;

	assert_int_equal(mig_digest_final(g, &got), 0);
	if (got != want)
		fail_msg(
			"after %u updates: running digest %016llx, from scratch %016llx (seed %llu)",
			step, (unsigned long long)got, (unsigned long long)want,
			(unsigned long long)seed);
}

/*
 * Random updates as PAGES records make them: a page gets new bytes (random, a copy of
 * another page, all zero but sent as data) or is sent as a zero page; some pages never get
 * anything (their bytes, from before, are hashed at the end). After every few updates the
 * running digest must equal the digest from scratch.
 */
static void test_running_digest(void **state)
{
	const uint64_t sizes[4] = {17, 1, 64, 33};
	uint64_t seed = rng_seed("test_running_digest");
	struct dt_region dr[4];
	struct mig_memory mm;
	struct mig_digest g;
	uint8_t data[4096];
	struct mem m;

	(void)state;
	mem_init(&m, sizes, 4, false);
	dt_regions_of(&m, dr);
	/* The layout out of order: mig_memory sorts it, the digest is in address order. */
	assert_int_equal(mig_memory_init(&mm, (struct dt_region[]){dr[2], dr[0], dr[3], dr[1]}, 4,
					 0, 0, "test"),
			 0);
	assert_int_equal(mig_digest_init(&g, &mm), 0);
	expect_final(&g, &m, seed, 0); /* nothing applied: all from memory */
	for (unsigned step = 1; step <= 3000; step++) {
		uint32_t r = (uint32_t)rng_below(m.n);
		uint64_t p = rng_below(m.regions[r].size / 4096);
		uint8_t *dst = (uint8_t *)m.host[r] + p * 4096;
		unsigned kind = (unsigned)rng_below(4);

		/* Leave the last page of every region alone until the end. */
		if (p == m.regions[r].size / 4096 - 1)
			continue;
		if (kind == 0) {
			memset(dst, 0, 4096);
			mig_digest_apply(&g, r, p, NULL);
		} else {
			if (kind == 1)
				rng_fill(data, sizeof(data), (unsigned)rng_below(3));
			else if (kind == 2)
				memcpy(data, m.host[0], sizeof(data));
			else
				memset(data, 0, sizeof(data));
			memcpy(dst, data, 4096);
			mig_digest_apply(&g, r, p, data);
		}
		if (!(step % 97) || step < 10)
			expect_final(&g, &m, seed, step);
	}
	/* The pages never applied change behind its back: the end still hashes what is there. */
	for (uint32_t r = 0; r < m.n; r++)
		((uint8_t *)m.host[r])[m.regions[r].size - 1] ^= 0x42;
	expect_final(&g, &m, seed, 3000);
	expect_final(&g, &m, seed, 3000); /* final changes nothing */
	/* Every page applied (as round 0 does): nothing left to hash at the end, so nothing to
	 * allocate for it either. */
	for (uint32_t r = 0; r < m.n; r++)
		for (uint64_t p = 0; p < m.regions[r].size / 4096; p++)
			mig_digest_apply(&g, r, p, (uint8_t *)m.host[r] + p * 4096);
	alloc_fail_nth(1);
	expect_final(&g, &m, seed, 3001);
	alloc_fail_nth(0);
	mig_digest_fini(&g);
	mig_memory_fini(&mm);
	mem_fini(&m);
}

/* Allocation failures: -ENOMEM, nothing leaks (ASan). */
static void test_running_digest_nomem(void **state)
{
	const uint64_t sizes[2] = {5, 3};
	struct dt_region dr[2];
	struct mig_memory mm;
	struct mig_digest g;
	struct mem m;
	int nomem = 0;

	(void)state;
	rng_state = 3;
	mem_init(&m, sizes, 2, false);
	dt_regions_of(&m, dr);
	assert_int_equal(mig_memory_init(&mm, dr, 2, 0, 0, "test"), 0);
	memset((uint8_t *)m.host[0] + 4096, 0, 4096);
	for (unsigned long n = 1; n < 12; n++) {
		uint64_t d;
		int ret;

		alloc_fail_nth(n);
		ret = mig_digest_init(&g, &mm);
		if (!ret) {
			mig_digest_apply(&g, 0, 1, NULL); /* two holes for the end to list */
			ret = mig_digest_final(&g, &d);
			if (!ret)
				assert_int_equal(d, naive_digest(m.regions, m.host, m.n));
			mig_digest_fini(&g);
		}
		assert_true(ret == 0 || ret == -ENOMEM);
		nomem += ret == -ENOMEM;
	}
	alloc_fail_nth(0);
	assert_true(nomem >= 3);
	mig_memory_fini(&mm);
	mem_fini(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_reference),
		cmocka_unit_test(test_digest_threaded),
		cmocka_unit_test(test_digest_known_answers),
		cmocka_unit_test(test_digest_differences),
		cmocka_unit_test(test_running_digest),
		cmocka_unit_test(test_running_digest_nomem),
	};

	log_start();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
