/* SPDX-License-Identifier: MIT */
/*
 * migrate/memory.c - the migrated regions (sorted copies with host pointers), the walk of a
 * dirty bitmap as runs of contiguous pages inside one region, and the destination's running
 * digest of the memory.
 *
 * The walk visits runs in increasing address order and keeps a region cursor, so a bitmap
 * over a sparse guest-physical space costs one pass over its words plus one step per region.
 *
 * The running digest's invariant: sum == the sum of terms[i] over the pages i set in applied,
 * and terms[i] is the term of what page i was last given. The digest is a sum of per-page
 * terms, so replacing a page's term (sum -= old, += new) is exact, in any order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "migrate/memory.h"
#include "migrate/wire.h"

uint64_t mig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t mig_popcount(const uint64_t *bits, uint64_t nwords)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < nwords; i++)
		n += popcount64(bits[i]);
	return n;
}

static int region_cmp(const void *a, const void *b)
{
	const struct dt_region *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

int mig_memory_init(struct mig_memory *m, const struct dt_region *regions, unsigned n,
		    uint64_t base, uint64_t length, const char *who)
{
	struct dt_region *sorted;

	memset(m, 0, sizeof(*m));
	if (!regions || !n || n > WIRE_MAX_REGIONS)
		return log_fail(-EINVAL, "%s: 1 to %u regions needed", who, WIRE_MAX_REGIONS);
	sorted = xcalloc(n, sizeof(*sorted));
	m->regions = xcalloc(n, sizeof(*m->regions));
	m->host = xcalloc(n, sizeof(*m->host));
	if (!sorted || !m->regions || !m->host) {
		xfree(sorted);
		mig_memory_fini(m);
		return -ENOMEM;
	}
	memcpy(sorted, regions, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), region_cmp);
	for (unsigned i = 0; i < n; i++) {
		const struct dt_region *r = &sorted[i];
		const char *bad = NULL;

		if (!r->size || (r->addr | r->size) & (MIG_PAGE_SIZE - 1))
			bad = "not page aligned or empty";
		else if (r->addr + r->size < r->addr)
			bad = "wraps around";
		else if (!r->host)
			bad = "has no host mapping";
		else if (i && sorted[i - 1].addr + sorted[i - 1].size > r->addr)
			bad = "overlaps the previous one";
		else if (length && (r->addr < base || r->addr + r->size > base + length))
			bad = "lies outside the dirty set's address space";
		if (bad) {
			log_err("%s: region [0x%llx, +0x%llx) %s", who, (unsigned long long)r->addr,
				(unsigned long long)r->size, bad);
			xfree(sorted);
			mig_memory_fini(m);
			return -EINVAL;
		}
		m->regions[i].addr = r->addr;
		m->regions[i].size = r->size;
		m->host[i] = r->host;
		m->bytes += r->size;
	}
	m->count = n;
	xfree(sorted);
	return 0;
}

void mig_memory_fini(struct mig_memory *m)
{
	xfree(m->regions);
	xfree(m->host);
	memset(m, 0, sizeof(*m));
}

void mig_memory_mask(const struct mig_memory *m, uint64_t base, uint64_t npages, uint64_t *bits)
{
	for (uint32_t i = 0; i < m->count; i++) {
		uint64_t first = (m->regions[i].addr - base) >> MIG_PAGE_SHIFT;
		uint64_t n = m->regions[i].size >> MIG_PAGE_SHIFT;

		if (first < npages)
			ubuf_set_range(bits, first, n < npages - first ? n : npages - first);
	}
}

/* The next run of set bits at or after *pos: [*pos, *pos + len). false when none. */
static bool next_run(const uint64_t *bits, uint64_t nbits, uint64_t *pos, uint64_t *len)
{
	uint64_t i = *pos / 64, start, end, w;

	if (*pos >= nbits)
		return false;
	w = bits[i] & (~0ull << (*pos % 64));
	while (!w) {
		if (++i >= words_for_bits(nbits))
			return false;
		w = bits[i];
	}
	start = i * 64 + ctz64(w);
	if (start >= nbits)
		return false;
	/* The run ends at the first clear bit after start. */
	w = ~bits[i] & (~0ull << (start % 64));
	while (!w) {
		if (++i >= words_for_bits(nbits)) {
			w = 0;
			break;
		}
		w = ~bits[i];
	}
	end = w ? i * 64 + ctz64(w) : words_for_bits(nbits) * 64;
	if (end > nbits)
		end = nbits;
	*pos = start;
	*len = end - start;
	return true;
}

int mig_memory_walk(const struct mig_memory *m, uint64_t base, const uint64_t *bits,
		    uint64_t npages,
		    int (*fn)(void *arg, uint64_t page, void *host, uint64_t count), void *arg)
{
	uint64_t pos = 0, len;
	uint32_t r = 0;

	while (r < m->count && next_run(bits, npages, &pos, &len)) {
		uint64_t addr = base + (pos << MIG_PAGE_SHIFT),
			 end = addr + (len << MIG_PAGE_SHIFT);

		/* Pieces of [addr, end) inside regions r, r + 1, ... */
		while (r < m->count && addr < end) {
			const struct wire_region *reg = &m->regions[r];
			uint64_t lo, hi;
			int ret;

			if (reg->addr + reg->size <= addr) {
				r++;
				continue;
			}
			if (reg->addr >= end)
				break;
			lo = addr > reg->addr ? addr : reg->addr;
			hi = end < reg->addr + reg->size ? end : reg->addr + reg->size;
			ret = fn(arg, lo >> MIG_PAGE_SHIFT, (char *)m->host[r] + (lo - reg->addr),
				 (hi - lo) >> MIG_PAGE_SHIFT);
			if (ret)
				return ret;
			addr = hi;
		}
		pos += len;
	}
	return 0;
}

/* ---- the destination's running digest ------------------------------------------------------ */

int mig_digest_init(struct mig_digest *g, const struct mig_memory *m)
{
	static const uint8_t zero[WIRE_DIGEST_PAGE];

	memset(g, 0, sizeof(*g));
	g->mem = m;
	g->first = xcalloc(m->count ? m->count : 1, sizeof(*g->first));
	if (!g->first)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->count; i++) {
		g->first[i] = g->npages;
		g->npages += m->regions[i].size / WIRE_DIGEST_PAGE;
	}
	/* Lazily zeroed: memory a page's term never touched costs nothing. */
	g->terms = xzalloc_big(g->npages * sizeof(*g->terms));
	g->applied = xzalloc_big(words_for_bits(g->npages) * 8);
	if (!g->terms || !g->applied) {
		mig_digest_fini(g);
		return -ENOMEM;
	}
	g->zero_hash = wire_digest_page_hash(zero);
	return 0;
}

void mig_digest_fini(struct mig_digest *g)
{
	xfree(g->first);
	if (g->terms)
		xfree_big(g->terms, g->npages * sizeof(*g->terms));
	if (g->applied)
		xfree_big(g->applied, words_for_bits(g->npages) * 8);
	memset(g, 0, sizeof(*g));
}

void mig_digest_apply(struct mig_digest *g, uint32_t region, uint64_t index, const void *data)
{
	uint64_t i = g->first[region] + index, bit = 1ull << (i % 64);
	uint64_t term = wire_digest_term(g->mem->regions[region].addr / WIRE_DIGEST_PAGE + index,
					 data ? wire_digest_page_hash(data) : g->zero_hash);

	if (g->applied[i / 64] & bit)
		g->sum -= g->terms[i];
	g->applied[i / 64] |= bit;
	g->terms[i] = term;
	g->sum += term;
}

/* Call fn(arg, region, first page, pages) for every run of pages never applied. */
static void for_each_missing(const struct mig_digest *g,
			     void (*fn)(void *arg, uint32_t region, uint64_t first, uint64_t n),
			     void *arg)
{
	for (uint32_t r = 0; r < g->mem->count; r++) {
		uint64_t base = g->first[r], n = g->mem->regions[r].size / WIRE_DIGEST_PAGE;

		for (uint64_t p = 0; p < n;) {
			uint64_t q = p;

			/* A whole word applied: skip it at once (the common case). */
			if (!((base + p) % 64) && n - p >= 64 &&
			    g->applied[(base + p) / 64] == ~0ull) {
				p += 64;
				continue;
			}
			while (q < n && !(g->applied[(base + q) / 64] >> ((base + q) % 64) & 1))
				q++;
			if (q > p) {
				fn(arg, r, p, q - p);
				p = q;
			} else {
				p++;
			}
		}
	}
}

struct missing {
	const struct mig_memory *mem;
	struct wire_region *regions;
	void **host;
	uint64_t n;
};

static void count_missing(void *arg, uint32_t region, uint64_t first, uint64_t n)
{
	((struct missing *)arg)->n++;
}

static void list_missing(void *arg, uint32_t region, uint64_t first, uint64_t n)
{
	struct missing *x = arg;

	x->regions[x->n] = (struct wire_region){
		x->mem->regions[region].addr + first * WIRE_DIGEST_PAGE, n * WIRE_DIGEST_PAGE};
	x->host[x->n++] = (char *)x->mem->host[region] + first * WIRE_DIGEST_PAGE;
}

int mig_digest_final(struct mig_digest *g, uint64_t *digest)
{
	struct missing x = {.mem = g->mem};
	uint64_t rest;
	int ret;

	/* Pages the stream never sent hold what the memory holds: hash them now. With every
	 * page sent (the engine's round 0 sends them all) the list is empty and this costs a
	 * scan of the bitmap. wire_digest_regions() is called even then: bench_migrate times
	 * the destination's END digest by wrapping it (bench/meson.build). */
	for_each_missing(g, count_missing, &x);
	if (x.n > UINT32_MAX) /* 2^32 holes: 32 TiB of memory, every other page sent */
		return -ENOMEM;
	if (x.n) {
		x.regions = xcalloc(x.n, sizeof(*x.regions));
		x.host = xcalloc(x.n, sizeof(*x.host));
		if (!x.regions || !x.host) {
			xfree(x.regions);
			xfree(x.host);
			return -ENOMEM;
		}
		x.n = 0;
		for_each_missing(g, list_missing, &x);
	}
	ret = wire_digest_regions(x.regions, x.host, (uint32_t)x.n, &rest);
	xfree(x.regions);
	xfree(x.host);
	if (ret)
		return ret;
	*digest = g->sum + rest;
	return 0;
}
