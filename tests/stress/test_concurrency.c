/* SPDX-License-Identifier: MIT */
/*
 * tests/stress/test_concurrency.c - the no-lost-bit rule under concurrency.
 *
 * Two writer threads mark random pages of several mappings with dt_dma_log, dt_dma_rw and
 * dt_dma_log_batch (up to 20 ranges, each counted as a write spanning the whole call) while
 * the main thread reports in a loop (GET_BITMAP and dt_iommu_report alternately).
 * One global atomic counter orders everything: a writer takes a number before its call and
 * one after it returned; the reporter takes one before each report starts and one after it
 * finished. Afterwards (one last report once every thread has stopped):
 *
 *  - no lost bit: every write appears in the first report that started after it completed,
 *    or in an earlier report that had not finished before the write started;
 *  - no invented bit: a page in a report is explained by a write to it that started before
 *    the report finished and had not completed before the page's previous report started.
 *
 * Variants: a third thread maps and unmaps an unrelated mapping inside the reported range
 * (its pages must never appear, its GET_DIRTY_BITMAP must be empty), or pins and unpins
 * pages with an EMULATED device (a pinned page is in every report between its pin and its
 * unpin; a pin-unpin cycle counts as a write for the two rules above).
 *
 * Writers use disjoint blocks of pages so that their dma_rw copies never race on the same
 * bytes (ThreadSanitizer would rightly call that a race in the test).
 *
 * Options: --seed N, --seconds S (per variant, default 2).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#define PG	    4096ull
#define BASE	    0x100000000ull
#define NPAGES	    4088u /* the reported range: pages [0, NPAGES) */
#define BLOCK	    8u	  /* writer t owns the blocks with (page / BLOCK) % 2 == t */
#define MAX_WRITES  (1u << 20)
#define MAX_PINS    (1u << 18)
#define MAX_REPORTS (1u << 19)

/* Writer mappings: A and B adjacent, a hole (with the unrelated mapping), C and D adjacent. */
static const struct {
	uint32_t start, n;
} wmaps[] = {{0, 1000}, {1000, 1100}, {2164, 900}, {3064, 1024}};
#define UNREL_START 2120u
#define UNREL_N	    16u

struct interval {
	uint32_t first, last; /* pages */
	uint64_t s, e;	      /* sequence numbers before the call and after it returned */
};

struct pin_event {
	uint32_t page;
	uint64_t ps, pe, us, ue;
};

struct report_rec {
	uint64_t s, e;
	uint64_t off, n; /* pages in report_pages[off, off + n) */
};

enum variant { V_BASE, V_MAPPER, V_PINNER };

static uint64_t seed;
static int break_rule; /* self-test of the checks: 1 drops a reported page, 2 invents one */
static double seconds = 2.0;

static _Atomic uint64_t gseq;
static _Atomic bool stop;
static struct dt_iommu *io;
static uint8_t *arena;
static struct dt_device *wdev[2], *pindev;

static struct interval *writes[2];
static uint64_t nwrites[2];
static struct pin_event *pins;
static uint64_t npins;
static struct report_rec *reports;
static uint64_t nreports;
static uint32_t *report_pages;
static uint64_t nreport_pages, cap_report_pages;
static uint64_t map_cycles, unmap_bitmaps;
static char thread_error[512];
static _Atomic bool thread_failed;

__attribute__((format(printf, 1, 2))) static void thread_fail(const char *fmt, ...)
{
	va_list ap;
	bool was = false;

	if (!atomic_compare_exchange_strong(&thread_failed, &was, true))
		return;
	va_start(ap, fmt);
	vsnprintf(thread_error, sizeof(thread_error), fmt, ap);
	va_end(ap);
	atomic_store(&stop, true);
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t seq(void)
{
	return atomic_fetch_add(&gseq, 1) + 1;
}

static bool page_in_writer_map(uint32_t p)
{
	for (unsigned i = 0; i < sizeof(wmaps) / sizeof(wmaps[0]); i++)
		if (p >= wmaps[i].start && p < wmaps[i].start + wmaps[i].n)
			return true;
	return false;
}

static uint32_t random_writer_page(uint64_t *rs)
{
	for (;;) {
		uint32_t p = rnd(rs) % NPAGES;

		if (page_in_writer_map(p))
			return p;
	}
}

/* One dt_dma_log_batch of the range given and up to 19 more single pages of writer t's
 * block, each recorded as a write from before the call to after it. Non-zero on failure. */
static int batch_write(int t, uint64_t *rs, uint64_t iova, uint64_t len)
{
	struct dt_dma_range r[20] = {{iova, len}};
	unsigned n = 1;
	uint64_t s, e;
	int ret;

	for (unsigned k = (unsigned)(rnd(rs) % 20); k && n < 20; k--) {
		uint32_t p = random_writer_page(rs);

		if ((p / BLOCK) % 2 == (unsigned)t)
			r[n++] = (struct dt_dma_range){BASE + p * PG + rnd(rs) % PG, 1};
	}
	s = seq();
	ret = dt_dma_log_batch(wdev[t], r, n);
	e = seq();
	if (ret != (int)n) {
		thread_fail("writer %d: batch of %u at 0x%llx: %d", t, n, (unsigned long long)iova,
			    ret);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		uint32_t first = (uint32_t)((r[i].iova - BASE) / PG);
		uint32_t last = (uint32_t)((r[i].iova + r[i].len - 1 - BASE) / PG);

		writes[t][nwrites[t]++] = (struct interval){first, last, s, e};
	}
	return 0;
}

/* ---- threads ------------------------------------------------------------------------- */

struct writer_arg {
	int t;
};

static void *writer(void *opaque)
{
	struct writer_arg *a = opaque;
	uint64_t rs = seed ^ (0x1234567ull * (a->t + 1));
	uint8_t buf[2 * 4096];
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!atomic_load_explicit(&stop, memory_order_relaxed) && nwrites[a->t] < MAX_WRITES) {
		uint32_t p = random_writer_page(&rs), last;
		uint64_t off = rnd(&rs) % PG, len, iova, s, e;
		int ret;

		/* Spread the record budget over the run: writes stay sparse between reports. */
		if (nwrites[a->t] % 256 == 0) {
			double el;

			clock_gettime(CLOCK_MONOTONIC, &t);
			el = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
			if (nwrites[a->t] > el / seconds * 0.9 * MAX_WRITES) {
				struct timespec nap = {0, 200000};

				nanosleep(&nap, NULL);
				continue;
			}
		}
		/* Stay in this writer's block of pages and in the mappings. */
		if ((p / BLOCK) % 2 != (unsigned)a->t)
			continue;
		len = 1 + rnd(&rs) % (rnd(&rs) % 4 ? 64 : PG);
		last = (uint32_t)((off + len - 1) / PG) + p;
		if (last / BLOCK != p / BLOCK || !page_in_writer_map(last))
			len = PG - off, last = p;
		iova = BASE + p * PG + off;
		memset(buf, (int)(rnd(&rs) & 0xff), len);
		if (rnd(&rs) % 3 == 0 && nwrites[a->t] + 20 < MAX_WRITES) {
			if (batch_write(a->t, &rs, iova, len))
				break;
			continue;
		}
		s = seq();
		if (rnd(&rs) % 2)
			ret = dt_dma_log(wdev[a->t], iova, len);
		else
			ret = dt_dma_rw(wdev[a->t], iova, buf, len, true);
		e = seq();
		if (ret) {
			thread_fail("writer %d: write at 0x%llx len %llu: %d", a->t,
				    (unsigned long long)iova, (unsigned long long)len, ret);
			break;
		}
		writes[a->t][nwrites[a->t]++] = (struct interval){p, last, s, e};
	}
	return NULL;
}

static void *mapper(void *opaque)
{
	uint64_t rs = seed ^ 0xabcdefull;
	uint64_t bitmap[1];

	(void)opaque;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct vfio_iommu_type1_dma_map mp = {
			.argsz = sizeof(mp),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uint64_t)(uintptr_t)(arena + UNREL_START * PG),
			.iova = BASE + UNREL_START * PG,
			.size = UNREL_N * PG};
		uint64_t raw[8] = {0};
		struct vfio_iommu_type1_dma_unmap *u = (void *)raw;
		struct vfio_bitmap *vb = (void *)((char *)raw + sizeof(*u));
		bool want = rnd(&rs) % 2;
		int ret = dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &mp);

		if (ret) {
			thread_fail("mapper: MAP_DMA: %d", ret);
			break;
		}
		for (unsigned i = rnd(&rs) % 4; i; i--)
			sched_yield();
		bitmap[0] = 0;
		u->argsz = sizeof(*u) + (want ? sizeof(*vb) : 0);
		u->flags = want ? VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP : 0;
		u->iova = mp.iova;
		u->size = mp.size;
		vb->pgsize = PG;
		vb->size = sizeof(bitmap);
		vb->data = (void *)bitmap;
		ret = dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, u);
		if (ret || u->size != mp.size) {
			thread_fail("mapper: UNMAP_DMA: %d, size 0x%llx", ret,
				    (unsigned long long)u->size);
			break;
		}
		if (want && bitmap[0]) {
			thread_fail("mapper: UNMAP_DMA bitmap of a mapping nobody wrote: 0x%llx",
				    (unsigned long long)bitmap[0]);
			break;
		}
		map_cycles++;
		unmap_bitmaps += want;
	}
	return NULL;
}

static void *pinner(void *opaque)
{
	uint64_t rs = seed ^ 0x5151ull;

	(void)opaque;
	while (!atomic_load_explicit(&stop, memory_order_relaxed) && npins + 4 <= MAX_PINS) {
		struct pin_event ev[4];
		unsigned n = 1 + rnd(&rs) % 4;

		for (unsigned i = 0; i < n; i++) {
			int ret;

			ev[i].page = random_writer_page(&rs);
			ev[i].ps = seq();
			ret = dt_pin_pages(pindev, BASE + ev[i].page * PG, 1,
					   PROT_READ | PROT_WRITE, NULL);
			ev[i].pe = seq();
			if (ret != 1) {
				thread_fail("pinner: pin 0x%x: %d", ev[i].page, ret);
				return NULL;
			}
		}
		for (unsigned i = rnd(&rs) % 8; i; i--)
			sched_yield();
		for (unsigned i = 0; i < n; i++) {
			int ret;

			ev[i].us = seq();
			ret = dt_unpin_pages(pindev, BASE + ev[i].page * PG, 1);
			ev[i].ue = seq();
			if (ret != 1) {
				thread_fail("pinner: unpin 0x%x: %d", ev[i].page, ret);
				return NULL;
			}
			pins[npins++] = ev[i];
		}
	}
	return NULL;
}

/* ---- the reporter ------------------------------------------------------------------- */

static void add_report_page(uint32_t p)
{
	if (nreport_pages == cap_report_pages) {
		cap_report_pages = cap_report_pages ? cap_report_pages * 2 : 1u << 20;
		report_pages = realloc(report_pages, cap_report_pages * sizeof(*report_pages));
		assert_non_null(report_pages);
	}
	report_pages[nreport_pages++] = p;
}

static int report_run(void *opaque, uint64_t iova, uint64_t length)
{
	(void)opaque;
	for (uint64_t a = iova; a < iova + length; a += PG)
		add_report_page((uint32_t)((a - BASE) / PG));
	return 0;
}

static void report_once(uint64_t i, uint64_t *bitmap)
{
	size_t words = (NPAGES + 63) / 64;
	struct report_rec *r = &reports[nreports];
	int ret;

	memset(bitmap, 0, words * 8);
	r->off = nreport_pages;
	if (i % 2 == 0) {
		uint64_t raw[8] = {0};
		struct vfio_iommu_type1_dirty_bitmap *db = (void *)raw;
		struct vfio_iommu_type1_dirty_bitmap_get *g = (void *)db->data;

		db->argsz = sizeof(*db) + sizeof(*g);
		db->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
		g->iova = BASE;
		g->size = NPAGES * PG;
		g->bitmap.pgsize = PG;
		g->bitmap.size = words * 8;
		g->bitmap.data = (void *)bitmap;
		r->s = seq();
		ret = dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, db);
		r->e = seq();
	} else {
		bool runs = i % 4 == 3;
		struct dt_report rep = {.size = sizeof(rep),
					.iova = BASE,
					.length = NPAGES * PG,
					.bitmap = runs ? NULL : bitmap,
					.bitmap_size = words * 8,
					.run = runs ? report_run : NULL};

		r->s = seq();
		ret = dt_iommu_report(io, &rep);
		r->e = seq();
	}
	if (ret)
		fail_msg("report %llu failed: %d", (unsigned long long)i, ret);
	for (size_t w = 0; w < words; w++)
		for (uint64_t b = bitmap[w]; b; b &= b - 1)
			add_report_page((uint32_t)(w * 64 + __builtin_ctzll(b)));
	r->n = nreport_pages - r->off;
	if (break_rule == 1 && nreports == 1000 && r->n)
		r->n--;
	if (break_rule == 2 && nreports == 1000) {
		add_report_page(UNREL_START + 1);
		r->n++;
	}
	nreports++;
}

/* ---- the checks --------------------------------------------------------------------- */

/* Per page: the reports holding it (ascending) and the intervals touching it (by start). */
struct page_index {
	uint64_t *roff, *rlist; /* CSR of report indices */
	uint64_t *ioff;		/* CSR of intervals */
	struct interval *ilist; /* sorted by s */
	uint64_t *imax_e;	/* prefix maximum of e */
};

static int cmp_interval(const void *a, const void *b)
{
	const struct interval *x = a, *y = b;

	return x->s < y->s ? -1 : x->s > y->s;
}

static void index_build(struct page_index *ix, const struct interval *iv, uint64_t niv)
{
	uint64_t *fill = calloc(NPAGES + 1, sizeof(*fill));

	ix->roff = calloc(NPAGES + 1, sizeof(*ix->roff));
	ix->ioff = calloc(NPAGES + 1, sizeof(*ix->ioff));
	assert_true(fill && ix->roff && ix->ioff);
	for (uint64_t i = 0; i < nreport_pages; i++)
		ix->roff[report_pages[i] + 1]++;
	for (uint64_t i = 0; i < niv; i++)
		for (uint32_t p = iv[i].first; p <= iv[i].last; p++)
			ix->ioff[p + 1]++;
	for (uint32_t p = 0; p < NPAGES; p++) {
		ix->roff[p + 1] += ix->roff[p];
		ix->ioff[p + 1] += ix->ioff[p];
	}
	ix->rlist = malloc((nreport_pages + 1) * sizeof(*ix->rlist));
	ix->ilist = malloc((ix->ioff[NPAGES] + 1) * sizeof(*ix->ilist));
	ix->imax_e = malloc((ix->ioff[NPAGES] + 1) * sizeof(*ix->imax_e));
	assert_true(ix->rlist && ix->ilist && ix->imax_e);
	for (uint64_t r = 0; r < nreports; r++)
		for (uint64_t j = 0; j < reports[r].n; j++) {
			uint32_t p = report_pages[reports[r].off + j];

			ix->rlist[ix->roff[p] + fill[p]++] = r;
		}
	memset(fill, 0, (NPAGES + 1) * sizeof(*fill));
	for (uint64_t i = 0; i < niv; i++)
		for (uint32_t p = iv[i].first; p <= iv[i].last; p++)
			ix->ilist[ix->ioff[p] + fill[p]++] = iv[i];
	for (uint32_t p = 0; p < NPAGES; p++) {
		uint64_t n = ix->ioff[p + 1] - ix->ioff[p], m = 0;

		qsort(ix->ilist + ix->ioff[p], n, sizeof(struct interval), cmp_interval);
		for (uint64_t j = ix->ioff[p]; j < ix->ioff[p + 1]; j++) {
			if (ix->ilist[j].e > m)
				m = ix->ilist[j].e;
			ix->imax_e[j] = m;
		}
	}
	free(fill);
}

static void index_free(struct page_index *ix)
{
	free(ix->roff);
	free(ix->rlist);
	free(ix->ioff);
	free(ix->ilist);
	free(ix->imax_e);
}

/* First report index whose start is > seq (reports are in sequence order). */
static uint64_t first_report_starting_after(uint64_t s)
{
	uint64_t lo = 0, hi = nreports;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (reports[mid].s > s)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static uint64_t first_report_ending_after(uint64_t s)
{
	uint64_t lo = 0, hi = nreports;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (reports[mid].e > s)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static void report_failure(const char *what, uint32_t page, uint64_t s, uint64_t e)
{
	print_error("%s: page %u (iova 0x%llx), interval seq [%llu, %llu]\n", what, page,
		    (unsigned long long)(BASE + page * PG), (unsigned long long)s,
		    (unsigned long long)e);
	uint64_t r0 = first_report_ending_after(s > 200 ? s - 200 : 0);
	for (uint64_t r = r0; r < nreports && reports[r].s < e + 200 && r < r0 + 8; r++) {
		bool has = false;

		for (uint64_t j = 0; j < reports[r].n; j++)
			has |= report_pages[reports[r].off + j] == page;
		print_error("  report %llu seq [%llu, %llu] %s the page\n", (unsigned long long)r,
			    (unsigned long long)reports[r].s, (unsigned long long)reports[r].e,
			    has ? "holds" : "lacks");
	}
	print_error("  seed=%llu (replay with --seed %llu)\n", (unsigned long long)seed,
		    (unsigned long long)seed);
	fail();
}

static void check_all(const struct interval *iv, uint64_t niv, uint64_t *in_first,
		      uint64_t *in_racing)
{
	struct page_index ix;

	index_build(&ix, iv, niv);
	/* No lost bit. */
	for (uint64_t i = 0; i < niv; i++) {
		uint64_t hi = first_report_starting_after(iv[i].e);
		uint64_t lo = first_report_ending_after(iv[i].s);

		if (hi >= nreports)
			fail_msg("no report started after seq %llu", (unsigned long long)iv[i].e);
		for (uint32_t p = iv[i].first; p <= iv[i].last; p++) {
			uint64_t *l = ix.rlist + ix.roff[p], n = ix.roff[p + 1] - ix.roff[p];
			uint64_t a = 0, b = n;

			while (a < b) { /* first report index >= lo holding p */
				uint64_t mid = a + (b - a) / 2;

				if (l[mid] >= lo)
					b = mid;
				else
					a = mid + 1;
			}
			if (a == n || l[a] > hi)
				report_failure(
					"LOST: a write is in no report (neither the first that "
					"started after it completed nor an earlier racing one)",
					p, iv[i].s, iv[i].e);
			if (l[a] == hi)
				(*in_first)++;
			else
				(*in_racing)++;
		}
	}
	/* No invented bit. */
	for (uint32_t p = 0; p < NPAGES; p++) {
		for (uint64_t j = ix.roff[p]; j < ix.roff[p + 1]; j++) {
			const struct report_rec *r = &reports[ix.rlist[j]];
			uint64_t prev_s = j > ix.roff[p] ? reports[ix.rlist[j - 1]].s : 0;
			uint64_t a = ix.ioff[p], b = ix.ioff[p + 1];

			while (a < b) { /* intervals [ioff, a) start before the report ended */
				uint64_t mid = a + (b - a) / 2;

				if (ix.ilist[mid].s < r->e)
					a = mid + 1;
				else
					b = mid;
			}
			if (a == ix.ioff[p] || ix.imax_e[a - 1] <= prev_s)
				report_failure("INVENTED: a report holds a page no pending write "
					       "explains",
					       p, r->s, r->e);
		}
	}
	index_free(&ix);
}

/* A pinned page is in every report that started after the pin and ended before the unpin. */
static void check_pins(void)
{
	for (uint64_t i = 0; i < npins; i++) {
		const struct pin_event *ev = &pins[i];

		for (uint64_t r = first_report_starting_after(ev->pe);
		     r < nreports && reports[r].e < ev->us; r++) {
			bool has = false;

			for (uint64_t j = 0; j < reports[r].n && !has; j++)
				has = report_pages[reports[r].off + j] == ev->page;
			if (!has)
				report_failure("PINNED page missing from a report during the pin",
					       ev->page, ev->pe, ev->us);
		}
	}
}

/* ---- driver ------------------------------------------------------------------------- */

static void run_variant(enum variant v)
{
	static const char *const names[] = {"writers", "writers+mapper", "writers+pinner"};
	uint64_t words = (NPAGES + 63) / 64, *bitmap = calloc(words, 8), in_first = 0,
		 in_racing = 0, niv = 0;
	struct writer_arg wa[2] = {{0}, {1}};
	pthread_t wt[2], third;
	struct timespec t0, t;
	struct interval *iv;

	assert_non_null(bitmap);
	atomic_store(&gseq, 0);
	atomic_store(&stop, false);
	atomic_store(&thread_failed, false);
	nreports = nreport_pages = npins = map_cycles = unmap_bitmaps = 0;
	nwrites[0] = nwrites[1] = 0;
	arena = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(arena != MAP_FAILED);
	io = dt_iommu_new();
	assert_non_null(io);
	for (unsigned i = 0; i < sizeof(wmaps) / sizeof(wmaps[0]); i++) {
		struct vfio_iommu_type1_dma_map mp = {
			.argsz = sizeof(mp),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uint64_t)(uintptr_t)(arena + wmaps[i].start * PG),
			.iova = BASE + wmaps[i].start * PG,
			.size = wmaps[i].n * PG};

		assert_int_equal(dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &mp), 0);
	}
	wdev[0] = dt_device_attach(io, DT_DEVICE_LOGGING);
	wdev[1] = dt_device_attach(io, DT_DEVICE_EMULATED);
	pindev = dt_device_attach(io, DT_DEVICE_EMULATED);
	assert_true(wdev[0] && wdev[1] && pindev);
	assert_int_equal(dt_iommu_dirty_start(io), 0);

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&wt[i], NULL, writer, &wa[i]), 0);
	if (v == V_MAPPER)
		assert_int_equal(pthread_create(&third, NULL, mapper, NULL), 0);
	if (v == V_PINNER)
		assert_int_equal(pthread_create(&third, NULL, pinner, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t i = 0; nreports + 1 < MAX_REPORTS; i++) {
		report_once(i, bitmap);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds ||
		    atomic_load(&stop))
			break;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(wt[i], NULL);
	if (v != V_BASE)
		pthread_join(third, NULL);
	if (atomic_load(&thread_failed))
		fail_msg("%s (seed=%llu)", thread_error, (unsigned long long)seed);
	report_once(1, bitmap); /* after every write: the report that collects the rest */

	iv = malloc((nwrites[0] + nwrites[1] + npins + 1) * sizeof(*iv));
	assert_non_null(iv);
	for (int t2 = 0; t2 < 2; t2++)
		for (uint64_t i = 0; i < nwrites[t2]; i++)
			iv[niv++] = writes[t2][i];
	for (uint64_t i = 0; i < npins; i++)
		iv[niv++] = (struct interval){pins[i].page, pins[i].page, pins[i].ps, pins[i].ue};
	check_all(iv, niv, &in_first, &in_racing);
	check_pins();
	printf("%s: seed=%llu writes %llu+%llu, reports %llu, pages reported %llu (in the first "
	       "report after the write %llu, in an earlier racing one %llu), pin cycles %llu, "
	       "map/unmap cycles %llu (%llu with bitmap)\n",
	       names[v], (unsigned long long)seed, (unsigned long long)nwrites[0],
	       (unsigned long long)nwrites[1], (unsigned long long)nreports,
	       (unsigned long long)nreport_pages, (unsigned long long)in_first,
	       (unsigned long long)in_racing, (unsigned long long)npins,
	       (unsigned long long)map_cycles, (unsigned long long)unmap_bitmaps);
	fflush(stdout);
	if (nreports < 10 || nwrites[0] + nwrites[1] < 100)
		fail_msg("too little work to check anything: %llu reports, %llu writes",
			 (unsigned long long)nreports,
			 (unsigned long long)(nwrites[0] + nwrites[1]));
	free(iv);
	free(bitmap);
	dt_iommu_free(io);
	munmap(arena, NPAGES * PG);
}

static void test_writers(void **state)
{
	(void)state;
	run_variant(V_BASE);
}

static void test_writers_mapper(void **state)
{
	(void)state;
	run_variant(V_MAPPER);
}

static void test_writers_pinner(void **state)
{
	(void)state;
	run_variant(V_PINNER);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writers),
		cmocka_unit_test(test_writers_mapper),
		cmocka_unit_test(test_writers_pinner),
	};
	int ret;

	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (getenv("DT_TEST_SEED"))
		seed = strtoull(getenv("DT_TEST_SEED"), NULL, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--break") && i + 1 < argc)
			break_rule = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--seed N] [--seconds S] [--break 1|2]\n",
				argv[0]);
			return 2;
		}
	}
	printf("seed=%llu seconds=%g per variant\n", (unsigned long long)seed, seconds);
	fflush(stdout);
	for (int t = 0; t < 2; t++)
		writes[t] = malloc(MAX_WRITES * sizeof(struct interval));
	pins = malloc(MAX_PINS * sizeof(*pins));
	reports = malloc(MAX_REPORTS * sizeof(*reports));
	if (!writes[0] || !writes[1] || !pins || !reports)
		return 1;
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	free(writes[0]);
	free(writes[1]);
	free(pins);
	free(reports);
	free(report_pages);
	return ret;
}
