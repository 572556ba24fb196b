/* SPDX-License-Identifier: MIT */
/*
 * migrate/memory.c - the migrated regions (sorted copies with host pointers) and the walk of
 * a dirty bitmap as runs of contiguous pages inside one region.
 *
 * The walk visits runs in increasing address order and keeps a region cursor, so a bitmap
 * over a sparse guest-physical space costs one pass over its words plus one step per region.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "migrate/memory.h"

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
