/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_report.c - the cost of one dirty report over a large container.
 *
 * Guest memory is a never-touched MAP_NORESERVE region (1 TiB by default) mapped with
 * VFIO_IOMMU_MAP_DMA as one mapping or as --mappings equal ones. A LOGGING device dirties
 * 0 %, 0.01 %, 1 % or 100 % of the pages (random distinct pages from a fixed seed, or one
 * dt_dma_log over everything), then one report is timed:
 *
 *   get_bitmap   VFIO_IOMMU_DIRTY_PAGES GET_BITMAP through dt_vfio_ioctl() into a zeroed
 *                caller bitmap (one bit per page: 32 MiB for 1 TiB)
 *   report_runs  dt_iommu_report() delivering sparse (iova, length) runs to a callback
 *
 * Beside them, measured in the same run on the same pattern:
 *
 *   naive        what the kernel's type1 container does: one flat bitmap per container;
 *                a report copies all of it to the caller, clears it and sets the pinned pages
 *                again (the pinned list is empty here, as for a LOGGING device)
 *   memcpy       the physical bound: memcpy of the same number of bytes
 *   sparse       the sparse bound: read, OR out and clear only the bitmap words that hold
 *                dirty bits, in address order, their positions known for free
 *
 * Not timed: dirtying (re-done before every repetition), zeroing the caller bitmap, and the
 * checks. Every repetition checks that the GET_BITMAP output is bit for bit the pattern
 * (so equal to the naive output) and that the runs cover exactly the dirtied pages.
 */
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#define BENCH_NAME "report"
#include "bench_common.h"

#define PAGE_SHIFT 12u
#define PAGE_SIZE  (1ull << PAGE_SHIFT)
#define IOVA_BASE  (1ull << 32) /* not 0, so an iova/offset mix-up cannot go unnoticed */
#define MAX_REPS   101u

struct opts {
	uint64_t size_gib;
	uint64_t mappings;
	unsigned reps;
	uint64_t seed;
	bool quick;
	bool warm;	    /* skip the cache scrub before each timed call */
	uint64_t scrub_mib; /* 0: the default scrub size */
	bool no_thp;	    /* PR_SET_THP_DISABLE: no transparent huge pages anywhere */
	double only;	    /* --dirty: measure only this percentage (< 0: all four) */
};

/* The container under test and everything the references need, sized once. */
struct bench {
	struct dt_iommu *iommu;
	struct dt_device *dev;
	void *guest;
	uint64_t size, npages, bytes; /* bytes: of one bitmap over every page */
	uint64_t *user;		      /* caller bitmap of GET_BITMAP */
	uint64_t *naive;	      /* the naive container's flat bitmap */
	uint64_t *naive_user;	      /* caller bitmap of the naive report */
	uint64_t *copy_src, *copy_dst;
	uint64_t *pinned; /* naive: pages re-set after each report (none here) */
	uint64_t npinned;
	uint8_t *scrub; /* written before each timed call so every contender starts cold */
	uint64_t scrub_bytes;
};

/* A dirty pattern: `count` distinct random pages, or all of them. */
struct pattern {
	double pct;
	bool all;
	uint64_t count;
	uint64_t *pages;
	uint64_t *words; /* the bitmap words holding dirty bits, increasing (not when all) */
	uint64_t nwords;
	uint64_t page_sum; /* sum of the dirty page numbers, mod 2^64: checks run positions */
};

static void *alloc_prefaulted(uint64_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	BENCH_CHECK(p != MAP_FAILED, "mmap of %" PRIu64 " bytes", bytes);
	memset(p, 0x5a, bytes);
	return p;
}

/*
 * Between two reports a guest runs for a while and evicts the bitmaps from the caches, so
 * each timed call (ours, naive, memcpy alike) starts after 2x the bitmap size, at least
 * 64 MiB, has been written elsewhere (--scrub-mib N: N MiB). --warm skips this. A last-level
 * cache larger than the scrub keeps part of what was written before it: the default is
 * "recently used", --scrub-mib 1024 is cold on this machine (docs/performance.md).
 */
static void cache_scrub(struct bench *b)
{
	if (!b->scrub)
		return;
	for (uint64_t i = 0; i < b->scrub_bytes; i += 64)
		b->scrub[i]++;
	compiler_barrier();
}

/* What cache_scrub() writes: --scrub-mib, or 2x the bitmap (one bit per page), >= 64 MiB. */
static uint64_t scrub_bytes(const struct opts *o)
{
	uint64_t bitmap = (o->size_gib << 30) >> PAGE_SHIFT >> 3;

	if (o->warm)
		return 0;
	if (o->scrub_mib)
		return o->scrub_mib << 20;
	return 2 * bitmap > (64ull << 20) ? 2 * bitmap : 64ull << 20;
}

static double parse_pct(const char *opt, const char *s)
{
	char *end;
	double v;

	if (!s)
		bench_fail("%s needs a value", opt);
	v = strtod(s, &end);
	if (end == s || *end || !(v >= 0.0 && v <= 100.0))
		bench_fail("%s: not a percentage: '%s'", opt, s);
	return v;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [options]\n"
		"  --size-gib N   guest memory in GiB (default 1024)\n"
		"  --mappings N   split it into N equal MAP_DMA mappings (default 1)\n"
		"  --reps N       timed repetitions per case, median reported (default 7)\n"
		"  --dirty PCT    only this percentage of dirty pages (default 0, 0.01, 1, 100)\n"
		"  --no-thp       disable transparent huge pages for the process (library included)\n"
		"  --warm         do not evict the caches before each timed call\n"
		"  --scrub-mib N  evict them by writing N MiB (default: 2x the bitmap, >= 64)\n"
		"  --seed N       seed of the random pages (fixed by default)\n"
		"  --quick        1 GiB, 1 repetition: proves the program works (CI)\n",
		argv0);
	exit(2);
}

static struct opts parse_opts(int argc, char **argv)
{
	struct opts o = {.size_gib = 1024, .mappings = 1, .reps = 7, .seed = 0x5eed, .only = -1};
	bool size_set = false, reps_set = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--quick")) {
			o.quick = true;
		} else if (!strcmp(a, "--dirty")) {
			o.only = parse_pct(a, argv[++i]);
		} else if (!strcmp(a, "--no-thp")) {
			o.no_thp = true;
		} else if (!strcmp(a, "--warm")) {
			o.warm = true;
		} else if (!strcmp(a, "--scrub-mib")) {
			o.scrub_mib = parse_u64(a, argv[++i]);
		} else if (!strcmp(a, "--size-gib")) {
			o.size_gib = parse_u64(a, argv[++i]);
			size_set = true;
		} else if (!strcmp(a, "--mappings")) {
			o.mappings = parse_u64(a, argv[++i]);
		} else if (!strcmp(a, "--reps")) {
			o.reps = (unsigned)parse_u64(a, argv[++i]);
			reps_set = true;
		} else if (!strcmp(a, "--seed")) {
			o.seed = parse_u64(a, argv[++i]);
		} else {
			usage(argv[0]);
		}
	}
	if (o.quick) {
		if (!size_set)
			o.size_gib = 1;
		if (!reps_set)
			o.reps = 1;
	}
	if (!o.size_gib || o.size_gib > (1u << 16) || o.scrub_mib > (1u << 16) || !o.reps ||
	    o.reps > MAX_REPS || !o.mappings || ((o.size_gib << 30) / o.mappings) % PAGE_SIZE ||
	    (o.size_gib << 30) % o.mappings)
		bench_fail("bad options: size %" PRIu64 " GiB, %" PRIu64
			   " mappings (must divide it in whole pages), %u reps (1..%u)",
			   o.size_gib, o.mappings, o.reps, MAX_REPS);
	return o;
}

static void bench_setup(struct bench *b, const struct opts *o)
{
	struct vfio_iommu_type1_dirty_bitmap start = {.argsz = sizeof(start),
						      .flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START};
	uint64_t msize;
	int ret;

	memset(b, 0, sizeof(*b));
	b->size = o->size_gib << 30;
	b->npages = b->size >> PAGE_SHIFT;
	b->bytes = b->npages / 8;
	b->guest = mmap(NULL, b->size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	BENCH_CHECK(b->guest != MAP_FAILED, "mmap of %" PRIu64 " GiB of guest memory", o->size_gib);
	b->iommu = dt_iommu_new();
	BENCH_CHECK(b->iommu, "dt_iommu_new");
	b->dev = dt_device_attach(b->iommu, DT_DEVICE_LOGGING);
	BENCH_CHECK(b->dev, "dt_device_attach(LOGGING)");

	msize = b->size / o->mappings;
	for (uint64_t i = 0; i < o->mappings; i++) {
		struct vfio_iommu_type1_dma_map map = {
			.argsz = sizeof(map),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uint64_t)(uintptr_t)b->guest + i * msize,
			.iova = IOVA_BASE + i * msize,
			.size = msize,
		};

		ret = dt_vfio_ioctl(b->iommu, VFIO_IOMMU_MAP_DMA, &map);
		BENCH_CHECK(!ret, "MAP_DMA %" PRIu64 " of %" PRIu64 ": %d", i, o->mappings, ret);
	}
	ret = dt_vfio_ioctl(b->iommu, VFIO_IOMMU_DIRTY_PAGES, &start);
	BENCH_CHECK(!ret, "DIRTY_PAGES START: %d", ret);

	b->user = alloc_prefaulted(b->bytes);
	b->naive = alloc_prefaulted(b->bytes);
	b->naive_user = alloc_prefaulted(b->bytes);
	b->copy_src = alloc_prefaulted(b->bytes);
	b->copy_dst = alloc_prefaulted(b->bytes);
	memset(b->naive, 0, b->bytes);
	b->pinned = NULL;
	b->npinned = 0;
	if (!o->warm) {
		b->scrub_bytes = scrub_bytes(o);
		b->scrub = alloc_prefaulted(b->scrub_bytes);
	}
}

/* first + (first + 1) + ... + (first + n - 1), mod 2^64. */
static uint64_t series_sum(uint64_t first, uint64_t n)
{
	unsigned __int128 s = (unsigned __int128)n * (2 * (unsigned __int128)first + n - 1) / 2;

	return (uint64_t)s;
}

/* Distinct random pages, drawn with the naive bitmap as the "seen" set (left zeroed). */
static void pattern_make(struct bench *b, struct pattern *p, double pct, uint64_t seed)
{
	uint64_t state = seed;

	p->pct = pct;
	p->all = pct >= 100.0;
	p->count = p->all ? b->npages : (uint64_t)((double)b->npages * pct / 100.0 + 0.5);
	p->pages = NULL;
	p->words = NULL;
	p->nwords = 0;
	p->page_sum = p->all ? series_sum(0, b->npages) : 0;
	if (p->all || !p->count)
		return;
	p->pages = malloc(p->count * sizeof(*p->pages));
	BENCH_CHECK(p->pages, "malloc of the pattern");
	for (uint64_t n = 0; n < p->count;) {
		uint64_t pg = rand_below(&state, b->npages);
		uint64_t bit = 1ull << (pg % 64);

		if (b->naive[pg / 64] & bit)
			continue;
		b->naive[pg / 64] |= bit;
		p->pages[n++] = pg;
		p->page_sum += pg;
	}
	p->words = malloc(p->count * sizeof(*p->words));
	BENCH_CHECK(p->words, "malloc of the pattern's words");
	for (uint64_t w = 0; w < b->bytes / 8; w++)
		if (b->naive[w])
			p->words[p->nwords++] = w;
	memset(b->naive, 0, b->bytes);
}

/*
 * The sparse bound: what a report must at least do when it knows where the dirty words are
 * for free. In address order, read each word that holds dirty bits, OR it into the caller
 * bitmap and clear it. Cold, each word is a cache miss on both sides; no report that keeps
 * one bit per page can do less.
 */
static void touch_bound(struct bench *b, const struct pattern *p)
{
	uint64_t *src = b->copy_src, *dst = b->copy_dst;

	if (p->all) {
		for (uint64_t w = 0; w < b->bytes / 8; w++) {
			dst[w] |= src[w];
			src[w] = 0;
		}
	} else {
		for (uint64_t i = 0; i < p->nwords; i++) {
			uint64_t w = p->words[i];

			dst[w] |= src[w];
			src[w] = 0;
		}
	}
	compiler_barrier();
}

/* Untimed: give the sparse bound the pattern in its own flat bitmap. */
static void touch_prepare(struct bench *b, const struct pattern *p)
{
	memset(b->copy_dst, 0, b->bytes);
	if (p->all) {
		memset(b->copy_src, 0xff, b->bytes);
		return;
	}
	memset(b->copy_src, 0, b->bytes);
	for (uint64_t i = 0; i < p->count; i++)
		b->copy_src[p->pages[i] / 64] |= 1ull << (p->pages[i] % 64);
}

static void dirty_ours(struct bench *b, const struct pattern *p)
{
	int ret;

	if (p->all) {
		ret = dt_dma_log(b->dev, IOVA_BASE, b->size);
		BENCH_CHECK(!ret, "dt_dma_log over all %" PRIu64 " bytes: %d", b->size, ret);
		return;
	}
	for (uint64_t i = 0; i < p->count; i++) {
		ret = dt_dma_log(b->dev, IOVA_BASE + (p->pages[i] << PAGE_SHIFT), PAGE_SIZE);
		BENCH_CHECK(!ret, "dt_dma_log of page %" PRIu64 ": %d", p->pages[i], ret);
	}
}

/* The naive container's marking: a plain bit set in its flat bitmap. */
static void dirty_naive(struct bench *b, const struct pattern *p)
{
	if (p->all) {
		memset(b->naive, 0xff, b->bytes);
		return;
	}
	for (uint64_t i = 0; i < p->count; i++)
		b->naive[p->pages[i] / 64] |= 1ull << (p->pages[i] % 64);
}

/* The kernel's type1 report: copy the whole bitmap out, clear it, re-add the pinned pages. */
static void naive_report(struct bench *b, void *user)
{
	memcpy(user, b->naive, b->bytes);
	memset(b->naive, 0, b->bytes);
	for (uint64_t i = 0; i < b->npinned; i++)
		b->naive[b->pinned[i] / 64] |= 1ull << (b->pinned[i] % 64);
	compiler_barrier();
}

/* The header and its _get payload, laid out as the kernel reads them. */
static int get_bitmap(struct bench *b)
{
	uint64_t buf[(sizeof(struct vfio_iommu_type1_dirty_bitmap) +
		      sizeof(struct vfio_iommu_type1_dirty_bitmap_get) + 7) /
		     8] = {0};
	struct vfio_iommu_type1_dirty_bitmap *hdr = (void *)buf;
	struct vfio_iommu_type1_dirty_bitmap_get range = {
		.iova = IOVA_BASE,
		.size = b->size,
		.bitmap = {.pgsize = PAGE_SIZE, .size = b->bytes, .data = (__u64 *)b->user},
	};

	hdr->argsz = sizeof(*hdr) + sizeof(range);
	hdr->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	memcpy(hdr->data, &range, sizeof(range));
	return dt_vfio_ioctl(b->iommu, VFIO_IOMMU_DIRTY_PAGES, hdr);
}

/* What the run callback sees; cheap enough not to weigh on the timing. */
struct run_tally {
	uint64_t runs, bytes, next_iova, page_sum;
	bool ordered;
};

static int count_run(void *opaque, uint64_t iova, uint64_t length)
{
	struct run_tally *t = opaque;

	if (iova < t->next_iova || !length)
		t->ordered = false;
	t->next_iova = iova + length;
	t->runs++;
	t->bytes += length;
	t->page_sum += series_sum((iova - IOVA_BASE) >> PAGE_SHIFT, length >> PAGE_SHIFT);
	return 0;
}

struct result {
	double pct;
	uint64_t pages, runs;
	uint64_t get_bitmap, get_bitmap_min, get_bitmap_max, report_runs, naive, copy, touch;
	uint64_t naive_min, copy_min, touch_min;
	uint64_t faults_ours, faults_refs; /* page faults inside the timed sections */
};

static void measure(struct bench *b, const struct pattern *p, unsigned reps, struct result *res)
{
	uint64_t t_get[MAX_REPS], t_runs[MAX_REPS], t_naive[MAX_REPS], t_copy[MAX_REPS];
	uint64_t t_touch[MAX_REPS];
	uint64_t faults_ours = 0, faults_refs = 0;
	uint64_t runs = 0;

	/* Repetition -1 warms caches, the allocator and the double-buffered bitmaps. */
	for (int r = -1; r < (int)reps; r++) {
		struct run_tally tally = {.next_iova = IOVA_BASE, .ordered = true};
		struct dt_report rep = {.size = sizeof(rep),
					.iova = IOVA_BASE,
					.length = b->size,
					.run = count_run,
					.opaque = &tally};
		uint64_t t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, seen, f0, fo = 0, fr = 0;
		int ret;

		dirty_ours(b, p);
		dirty_naive(b, p);
		memset(b->user, 0, b->bytes);

		cache_scrub(b);
		f0 = faults_now();
		t0 = now_ns();
		ret = get_bitmap(b);
		t1 = now_ns();
		fo += faults_now() - f0;
		compiler_barrier();
		BENCH_CHECK(!ret, "GET_BITMAP: %d", ret);
		seen = popcount_buf(b->user, b->bytes);
		BENCH_CHECK(seen == p->count,
			    "GET_BITMAP at %g %%: expected %" PRIu64 " dirty pages, saw %" PRIu64,
			    p->pct, p->count, seen);
		BENCH_CHECK(!memcmp(b->user, b->naive, b->bytes),
			    "GET_BITMAP at %g %%: right count, wrong pages", p->pct);

		cache_scrub(b);
		f0 = faults_now();
		t2 = now_ns();
		naive_report(b, b->naive_user);
		t3 = now_ns();
		fr += faults_now() - f0;
		BENCH_CHECK(!memcmp(b->naive_user, b->user, b->bytes),
			    "naive report differs from GET_BITMAP at %g %%", p->pct);

		dirty_ours(b, p);
		cache_scrub(b);
		f0 = faults_now();
		t4 = now_ns();
		ret = dt_iommu_report(b->iommu, &rep);
		t5 = now_ns();
		fo += faults_now() - f0;
		compiler_barrier();
		BENCH_CHECK(!ret, "dt_iommu_report: %d", ret);
		BENCH_CHECK(tally.ordered, "dt_iommu_report: runs empty or out of order");
		BENCH_CHECK(tally.page_sum == p->page_sum,
			    "dt_iommu_report at %g %%: runs are not at the dirty pages", p->pct);
		BENCH_CHECK(tally.bytes == p->count * PAGE_SIZE && rep.counts.total == p->count &&
				    rep.counts.logged == p->count,
			    "dt_iommu_report at %g %%: expected %" PRIu64
			    " pages, runs cover %" PRIu64 ", counts.total %" PRIu64
			    ", counts.logged %" PRIu64,
			    p->pct, p->count, (uint64_t)(tally.bytes / PAGE_SIZE),
			    (uint64_t)rep.counts.total, (uint64_t)rep.counts.logged);

		cache_scrub(b);
		f0 = faults_now();
		t6 = now_ns();
		memcpy(b->copy_dst, b->copy_src, b->bytes);
		compiler_barrier();
		t7 = now_ns();
		fr += faults_now() - f0;

		touch_prepare(b, p);
		cache_scrub(b);
		f0 = faults_now();
		t8 = now_ns();
		touch_bound(b, p);
		t9 = now_ns();
		fr += faults_now() - f0;
		seen = popcount_buf(b->copy_dst, b->bytes);
		BENCH_CHECK(seen == p->count, "sparse bound: expected %" PRIu64 ", saw %" PRIu64,
			    p->count, seen);

		if (r < 0)
			continue;
		t_get[r] = t1 - t0;
		t_naive[r] = t3 - t2;
		t_runs[r] = t5 - t4;
		t_copy[r] = t7 - t6;
		t_touch[r] = t9 - t8;
		faults_ours += fo;
		faults_refs += fr;
		runs = tally.runs;
	}
	res->pct = p->pct;
	res->pages = p->count;
	res->runs = runs;
	res->get_bitmap = median_u64(t_get, reps);
	res->get_bitmap_min = min_sorted(t_get, reps);
	res->get_bitmap_max = max_sorted(t_get, reps);
	res->report_runs = median_u64(t_runs, reps);
	res->naive = median_u64(t_naive, reps);
	res->copy = median_u64(t_copy, reps);
	res->touch = median_u64(t_touch, reps);
	res->naive_min = min_sorted(t_naive, reps);
	res->copy_min = min_sorted(t_copy, reps);
	res->touch_min = min_sorted(t_touch, reps);
	res->faults_ours = faults_ours;
	res->faults_refs = faults_refs;
}

static void print_json(const struct opts *o, const struct result *r)
{
	printf("{\"bench\":\"report\",\"size_gib\":%" PRIu64 ",\"mappings\":%" PRIu64
	       ",\"cold_caches\":%s,\"scrub_mib\":%" PRIu64
	       ",\"dirty_pct\":%g,\"dirty_pages\":%" PRIu64 ",\"reps\":%u"
	       ",\"get_bitmap_ns\":%" PRIu64 ",\"get_bitmap_min_ns\":%" PRIu64
	       ",\"get_bitmap_max_ns\":%" PRIu64 ",\"report_runs_ns\":%" PRIu64 ",\"runs\":%" PRIu64
	       ",\"naive_ns\":%" PRIu64 ",\"memcpy_ns\":%" PRIu64 ",\"sparse_bound_ns\":%" PRIu64
	       ",\"naive_min_ns\":%" PRIu64 ",\"memcpy_min_ns\":%" PRIu64
	       ",\"sparse_bound_min_ns\":%" PRIu64
	       ",\"naive_over_get_bitmap\":%.3f,\"get_bitmap_over_memcpy\":%.3f"
	       ",\"get_bitmap_over_sparse_bound\":%.3f"
	       ",\"naive_over_report_runs\":%.3f,\"report_runs_over_memcpy\":%.3f"
	       ",\"timed_faults_ours\":%" PRIu64 ",\"timed_faults_refs\":%" PRIu64 "}\n",
	       o->size_gib, o->mappings, o->warm ? "false" : "true", scrub_bytes(o) >> 20, r->pct,
	       r->pages, o->reps, r->get_bitmap, r->get_bitmap_min, r->get_bitmap_max,
	       r->report_runs, r->runs, r->naive, r->copy, r->touch, r->naive_min, r->copy_min,
	       r->touch_min, ratio(r->naive, r->get_bitmap), ratio(r->get_bitmap, r->copy),
	       ratio(r->get_bitmap, r->touch), ratio(r->naive, r->report_runs),
	       ratio(r->report_runs, r->copy), r->faults_ours, r->faults_refs);
}

static void print_table(const struct opts *o, const struct result *res, unsigned n)
{
	fprintf(stderr,
		"\nbench_report: %" PRIu64 " GiB in %" PRIu64
		" mapping(s), 4 KiB pages, %s caches, median of %u (ms)\n"
		"%8s %10s %10s %11s %8s %8s %8s %10s %11s %10s\n",
		o->size_gib, o->mappings, o->warm ? "warm" : "cold", o->reps, "dirty %", "pages",
		"get_bitmap", "report_runs", "naive", "memcpy", "sparse", "naive/ours",
		"ours/memcpy", "ours/spars");
	for (unsigned i = 0; i < n; i++) {
		const struct result *r = &res[i];

		fprintf(stderr,
			"%8g %10" PRIu64 " %10.3f %11.3f %8.3f %8.3f %8.3f %10.1f %11.2f %10.2f\n",
			r->pct, r->pages, r->get_bitmap / 1e6, r->report_runs / 1e6, r->naive / 1e6,
			r->copy / 1e6, r->touch / 1e6, ratio(r->naive, r->get_bitmap),
			ratio(r->get_bitmap, r->copy), ratio(r->get_bitmap, r->touch));
	}
}

static void print_summary(const struct opts *o, const struct result *sparse,
			  const struct result *full)
{
	double sparse_ratio = ratio(sparse->naive, sparse->get_bitmap);
	double full_ratio = ratio(full->get_bitmap, full->copy);
	/* What no report that writes one bit per dirty page can beat: if it is under 20x,
	 * the 0.01 % target is out of reach on this machine, whatever the implementation. */
	double bound_ratio = ratio(sparse->naive, sparse->touch);

	printf("{\"bench\":\"report_summary\",\"size_gib\":%" PRIu64 ",\"mappings\":%" PRIu64
	       ",\"naive_over_get_bitmap_at_0.01pct\":%.2f,\"naive_over_report_runs_at_0.01pct\":%.2f"
	       ",\"target_min\":20,\"met_0.01pct\":%s,\"naive_over_sparse_bound_at_0.01pct\":%.2f"
	       ",\"get_bitmap_over_memcpy_at_100pct\":%.3f,\"report_runs_over_memcpy_at_100pct\":%.3f"
	       ",\"target_max\":1.5,\"met_100pct\":%s}\n",
	       o->size_gib, o->mappings, sparse_ratio, ratio(sparse->naive, sparse->report_runs),
	       sparse_ratio >= 20.0 ? "true" : "false", bound_ratio, full_ratio,
	       ratio(full->report_runs, full->copy), full_ratio <= 1.5 ? "true" : "false");
	fprintf(stderr,
		"GET_BITMAP: naive/ours at 0.01 %%: %.1fx (target >= 20x; the sparse bound "
		"itself: %.1fx), ours/memcpy at 100 %%: %.2fx (target <= 1.5x)%s\n",
		sparse_ratio, bound_ratio, full_ratio,
		o->quick ? "   [--quick: sizes too small for the ratios to mean anything]" : "");
}

int main(int argc, char **argv)
{
	static const double levels[] = {0.0, 0.01, 1.0, 100.0};
	enum { NLEVELS = sizeof(levels) / sizeof(levels[0]) };
	struct opts o = parse_opts(argc, argv);
	struct result res[NLEVELS];
	unsigned n = 0;
	struct bench b;

	print_env_json(BENCH_NAME, argc, argv);
	dt_set_log(dt_log_stderr, NULL, DT_LOG_WARN);
	if (o.no_thp && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		bench_fail("prctl(PR_SET_THP_DISABLE): %s", strerror(errno));
	bench_setup(&b, &o);
	for (unsigned i = 0; i < NLEVELS + (o.only >= 0); i++) {
		double pct = i < NLEVELS ? levels[i] : o.only;
		struct pattern p;

		if (o.only >= 0 && i < NLEVELS)
			continue;
		pattern_make(&b, &p, pct, o.seed + (uint64_t)(pct * 10000));
		measure(&b, &p, o.reps, &res[n]);
		free(p.pages);
		free(p.words);
		print_json(&o, &res[n++]);
		fflush(stdout);
	}
	print_table(&o, res, n);
	if (o.only < 0)
		print_summary(&o, &res[1], &res[3]);

	dt_device_detach(b.dev);
	dt_iommu_free(b.iommu);
	munmap(b.guest, b.size);
	return 0;
}
