/* SPDX-License-Identifier: MIT */
/*
 * migrate/memory.h - the migrated memory as the engine sees it: regions sorted by address,
 * each with its host mapping, and the walk of a page bitmap as runs of pages that lie inside
 * one region (what a PAGES record carries).
 */
#ifndef DT_MIGRATE_MEMORY_H
#define DT_MIGRATE_MEMORY_H

#include <stdint.h>

#include <dirtytrack/track.h>

#include "migrate/wire.h"

#define MIG_PAGE_SHIFT 12u
#define MIG_PAGE_SIZE  (1u << MIG_PAGE_SHIFT)

struct mig_memory {
	struct wire_region *regions; /* sorted by addr */
	void **host;		     /* host[i]: where region i is mapped */
	uint32_t count;
	uint64_t bytes; /* sum of the sizes */
};

/* Copy and check regions (page aligned, non-empty, host mapped, no overlap, inside
 * [base, base + length) when length != 0). 0, -EINVAL (logged as `who`), -ENOMEM. */
int mig_memory_init(struct mig_memory *m, const struct dt_region *regions, unsigned n,
		    uint64_t base, uint64_t length, const char *who);
void mig_memory_fini(struct mig_memory *m);

/* Set in bits (page n = address base + n * 4096, npages bits) every page of the regions. */
void mig_memory_mask(const struct mig_memory *m, uint64_t base, uint64_t npages, uint64_t *bits);

/*
 * Call fn for every run of set bits of bits (npages, page n at base + n * 4096), split at
 * region boundaries; pages outside every region are skipped. fn gets the address space's
 * page index of the run's first page, its host memory and its length in pages; a nonzero
 * return stops the walk and is returned.
 */
int mig_memory_walk(const struct mig_memory *m, uint64_t base, const uint64_t *bits,
		    uint64_t npages,
		    int (*fn)(void *arg, uint64_t page, void *host, uint64_t count), void *arg);

/*
 * The destination's digest of its memory, kept up to date as pages are applied, so that END
 * costs no pass over the memory: the term (wire_digest_term()) of every page as last applied,
 * which pages were applied, and the sum of their terms. The digest is that sum plus the terms
 * of the pages never applied, hashed from memory by mig_digest_final(). Pages are 4 KiB
 * (WIRE_DIGEST_PAGE); the regions of m are (mig_memory_init() checks it).
 */
struct mig_digest {
	const struct mig_memory *mem;
	uint64_t *terms;   /* per page of the regions, in layout order */
	uint64_t *applied; /* bitmap over the same pages */
	uint64_t *first;   /* per region: the index of its first page in terms */
	uint64_t npages;
	uint64_t sum;	    /* of the terms of the applied pages */
	uint64_t zero_hash; /* wire_digest_page_hash() of a zero page */
};

/* For the regions of m, which must outlive it. 0 or -ENOMEM. */
int mig_digest_init(struct mig_digest *g, const struct mig_memory *m);
void mig_digest_fini(struct mig_digest *g);
/* Page `index` of region `region` now holds the WIRE_DIGEST_PAGE bytes at data (any copy of
 * them), or zeros if data is NULL. */
void mig_digest_apply(struct mig_digest *g, uint32_t region, uint64_t index, const void *data);
/* The digest of the whole memory: the running sum, plus the pages never applied hashed from
 * memory now (none if every page was sent). 0, -ENOMEM. */
int mig_digest_final(struct mig_digest *g, uint64_t *digest);

uint64_t mig_now_ns(void);
uint64_t mig_popcount(const uint64_t *bits, uint64_t nwords);

#endif
