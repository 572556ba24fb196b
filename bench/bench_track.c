/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_track.c - the cost of a harvest: each CPU-write source alone, and the merged
 * harvest of a dirty set into per-class bitmaps.
 *
 * Part 1, sources (--size-mib, 1 GiB by default). Anonymous MAP_NORESERVE memory with THP
 * off (MADV_NOHUGEPAGE: pages are tracked and reported one by one) is tracked by each source
 * type forced in turn. Between two harvests the program writes one byte into 0 %, 1 %
 * (distinct random pages, fixed seed) or 100 % of the pages; only the harvest is timed, into
 * a zeroed bitmap. Beside it, on the same pattern, in the same repetition loop:
 *
 *   naive         uffd-wp: one PAGEMAP_SCAN (report and re-protect) per page, the same
 *                 kernel walk without batching; all-dirty: the bits set one at a time
 *   pagemap read  pread() of /proc/self/pagemap over the range, 8 bytes per page in 4 KiB
 *                 chunks, testing the soft-dirty bit: the read half of a soft-dirty harvest
 *                 (process sources only)
 *   memcpy        the physical bound: memcpy of the bitmap's bytes (one bit per page)
 *
 * Sources that cannot run here (soft-dirty where its self-test fails, the KVM ones without
 * /dev/kvm) are reported as skipped, with the reason. The KVM sources are never measured:
 * host writes into guest memory are not logged by KVM, dirtying needs a running guest.
 *
 * Part 2, the dirty set (--set-mib, 8 GiB by default), three producers over one range: a
 * uffd-wp source (class CPU), and a container mapping the same memory with an EMULATED
 * device that pins one page in 1024 (class PINNED, in every harvest) and a VMM device
 * (DT_DEVICE_F_VMM) that dt_dma_log()s as many pages as the CPU writes plus 64 dt_dma_rw()
 * writes (class VMM; a dt_dma_rw also writes the memory, so those pages are CPU too). Timed:
 * dt_dirty_set_harvest(). Beside it:
 *
 *   naive    every producer harvested into its own zeroed bitmap (the source, then
 *            dt_iommu_report with one bitmap per report class), then OR-ed word by word into
 *            the five classes and their union, and counted; its parts are reported apart
 *   memcpy   the physical bound: memcpy of the bytes the harvest hands out (five class
 *            bitmaps and the union)
 *
 * Not timed: writing the pages, zeroing output bitmaps of the single-source case, checks.
 * Every repetition checks each output against the pattern bit for bit (exact sources) or
 * all ones (all-dirty), the naive outputs too, and every class count of the set. Before each
 * timed call 64 MiB are written elsewhere, so every contender starts with cold caches
 * (--warm skips it). Output: one JSON object per line on stdout, the tables on stderr.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#include "sys/compat.h"

#define BENCH_NAME "track"
#include "bench_common.h"

#define PAGE_SHIFT    12u
#define PAGE_SIZE     (1ull << PAGE_SHIFT)
#define IOVA_BASE     (1ull << 32)
#define MAX_REPS      101u
#define PIN_EVERY     1024u /* the EMULATED device pins one page in this many */
#define RW_PAGES      64u   /* dt_dma_rw writes of the VMM device per round */
#define PM_SOFT_DIRTY (1ull << 55)
#define PM_CHUNK      512u /* pagemap entries per pread, as the soft-dirty source reads */

struct opts {
	uint64_t size_mib, set_mib;
	unsigned reps;
	uint64_t seed;
	bool quick, warm, no_sources, no_set;
};

static const double levels[] = {0.0, 1.0, 100.0};
#define NLEVELS (sizeof(levels) / sizeof(levels[0]))

/* ---- shared ------------------------------------------------------------------------------ */

static uint8_t *scrub;
static uint64_t scrub_bytes;

static void cache_scrub(void)
{
	for (uint64_t i = 0; i < scrub_bytes; i += 64)
		scrub[i]++;
	compiler_barrier();
}

/* The last message of the library, for the reason of a skip; echoed when it is a warning. */
static char last_log[512];
static bool echo_log = true;

static void capture_log(void *opaque, enum dt_log_level level, const char *msg)
{
	snprintf(last_log, sizeof(last_log), "%s", msg);
	if (echo_log)
		dt_log_stderr(opaque, level, msg);
}

static void *alloc_zeroed(uint64_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	BENCH_CHECK(p != MAP_FAILED, "mmap of %" PRIu64 " bytes", bytes);
	memset(p, 0, bytes);
	return p;
}

static char *map_tracked(uint64_t size)
{
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	BENCH_CHECK(p != MAP_FAILED, "mmap of %" PRIu64 " MiB", size >> 20);
	madvise(p, size, MADV_NOHUGEPAGE);
	return p;
}

static void bit_set(uint64_t *b, uint64_t n)
{
	b[n / 64] |= 1ull << (n % 64);
}

/* `count` distinct random pages of npages (all of them at 100 %), and their bitmap. */
struct pattern {
	double pct;
	bool all;
	uint64_t count;
	uint64_t *pages;
	uint64_t *bits;
};

static void pattern_make(struct pattern *p, uint64_t npages, double pct, uint64_t seed)
{
	uint64_t state = seed, nwords = (npages + 63) / 64;

	p->pct = pct;
	p->all = pct >= 100.0;
	p->count = p->all ? npages : (uint64_t)((double)npages * pct / 100.0 + 0.5);
	p->pages = NULL;
	p->bits = calloc(nwords, 8);
	BENCH_CHECK(p->bits, "calloc of a pattern");
	if (p->all) {
		for (uint64_t n = 0; n < npages; n++)
			bit_set(p->bits, n);
		return;
	}
	p->pages = malloc((p->count ? p->count : 1) * sizeof(*p->pages));
	BENCH_CHECK(p->pages, "malloc of a pattern");
	for (uint64_t n = 0; n < p->count;) {
		uint64_t pg = rand_below(&state, npages);

		if (p->bits[pg / 64] >> (pg % 64) & 1)
			continue;
		bit_set(p->bits, pg);
		p->pages[n++] = pg;
	}
}

static void pattern_free(struct pattern *p)
{
	free(p->pages);
	free(p->bits);
}

/* The untimed "guest": one byte into every page of the pattern. */
static void write_pages(char *mem, const struct pattern *p, unsigned round)
{
	volatile char *m = mem;
	char v = (char)(round + 1);

	if (p->all) {
		for (uint64_t n = 0; n < p->count; n++)
			m[n << PAGE_SHIFT] = v;
		return;
	}
	for (uint64_t n = 0; n < p->count; n++)
		m[p->pages[n] << PAGE_SHIFT] = v;
}

static uint64_t popcount_words(const uint64_t *w, uint64_t nwords)
{
	return popcount_buf(w, nwords * 8);
}

static double ns_per_gib(uint64_t ns, uint64_t bytes)
{
	return (double)ns * (double)(1ull << 30) / (double)bytes;
}

/* ---- part 1: each source alone --------------------------------------------------------------- */

struct src_bench {
	char *mem;
	uint64_t size, npages, nwords;
	uint64_t *bitmap, *naive_bm, *copy_src, *copy_dst;
	uint64_t *entries; /* PM_CHUNK pagemap entries */
	int pagemap;
};

struct src_result {
	double pct;
	uint64_t written, pages; /* pages written, pages reported */
	uint64_t harvest, harvest_min, harvest_max, naive, pagemap, copy, faults;
	bool has_naive, has_pagemap;
};

/* uffd-wp's naive: the same kernel walk one page per call. */
static void naive_uffd(struct src_bench *b)
{
	struct page_region vec[1];

	for (uint64_t n = 0; n < b->npages; n++) {
		uint64_t a = (uint64_t)(uintptr_t)b->mem + (n << PAGE_SHIFT);
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = a,
			.end = a + PAGE_SIZE,
			.vec = (uint64_t)(uintptr_t)vec,
			.vec_len = 1,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		int ret = ioctl(b->pagemap, PAGEMAP_SCAN, &arg);

		BENCH_CHECK(ret >= 0, "naive PAGEMAP_SCAN of page %" PRIu64 ": %s", n,
			    strerror(errno));
		if (ret)
			bit_set(b->naive_bm, n);
	}
	compiler_barrier();
}

static void naive_all(struct src_bench *b)
{
	for (uint64_t n = 0; n < b->npages; n++)
		b->naive_bm[n / 64] |= 1ull << (n % 64);
	compiler_barrier();
}

/* The read half of a soft-dirty harvest; the bits go to naive_bm (the bit is 0 here). */
static void pagemap_read(struct src_bench *b)
{
	uint64_t first = (uint64_t)(uintptr_t)b->mem >> PAGE_SHIFT;

	for (uint64_t n = 0; n < b->npages; n += PM_CHUNK) {
		uint64_t chunk = b->npages - n < PM_CHUNK ? b->npages - n : PM_CHUNK;
		ssize_t got = pread(b->pagemap, b->entries, chunk * 8, (off_t)((first + n) * 8));

		BENCH_CHECK(got == (ssize_t)(chunk * 8), "pagemap pread: %s", strerror(errno));
		for (uint64_t k = 0; k < chunk; k++)
			if (b->entries[k] & PM_SOFT_DIRTY)
				bit_set(b->naive_bm, n + k);
	}
	compiler_barrier();
}

static void check_bitmap(const char *who, const char *src, const struct pattern *p,
			 const uint64_t *got, uint64_t npages, bool exact)
{
	uint64_t nwords = (npages + 63) / 64;
	uint64_t seen = popcount_words(got, nwords), want = exact ? p->count : npages;

	if (!exact)
		BENCH_CHECK(seen == want,
			    "%s of %s at %g %%: expected all %" PRIu64 " pages, saw %" PRIu64, who,
			    src, p->pct, want, seen);
	else
		BENCH_CHECK(seen == want && !memcmp(got, p->bits, nwords * 8),
			    "%s of %s at %g %%: expected %" PRIu64 " pages, saw %" PRIu64 "%s", who,
			    src, p->pct, want, seen, seen == want ? " (wrong pages)" : "");
}

static void measure_source(struct src_bench *b, struct dt_source *src, const struct pattern *p,
			   unsigned reps, bool warm, struct src_result *res)
{
	uint64_t t_h[MAX_REPS], t_n[MAX_REPS], t_p[MAX_REPS], t_c[MAX_REPS], faults = 0;
	enum dt_source_type type = dt_source_type(src);
	bool exact = dt_source_caps(src) & DT_SOURCE_CAP_EXACT;

	memset(res, 0, sizeof(*res));
	res->has_naive = type == DT_SOURCE_UFFD_WP || type == DT_SOURCE_ALL_DIRTY;
	res->has_pagemap = type != DT_SOURCE_ALL_DIRTY;
	/* Repetition -1 warms up. */
	for (int r = -1; r < (int)reps; r++) {
		uint64_t t0, t1, t2 = 0, t3 = 0, t4 = 0, t5 = 0, t6, t7, f0;
		int64_t n;

		memset(b->bitmap, 0, b->nwords * 8);
		write_pages(b->mem, p, (unsigned)(r + 1));
		if (!warm)
			cache_scrub();
		f0 = faults_now();
		t0 = now_ns();
		n = dt_source_harvest(src, (uint64_t)(uintptr_t)b->mem, b->npages, b->bitmap, 0);
		t1 = now_ns();
		faults += r >= 0 ? faults_now() - f0 : 0;
		BENCH_CHECK(n >= 0, "dt_source_harvest(%s): %" PRId64, dt_source_name(src), n);
		BENCH_CHECK((uint64_t)n == (exact ? p->count : b->npages),
			    "dt_source_harvest(%s) at %g %% returned %" PRId64, dt_source_name(src),
			    p->pct, n);
		check_bitmap("harvest", dt_source_name(src), p, b->bitmap, b->npages, exact);

		if (res->has_naive) {
			memset(b->naive_bm, 0, b->nwords * 8);
			write_pages(b->mem, p, (unsigned)(r + 1));
			if (!warm)
				cache_scrub();
			t2 = now_ns();
			if (type == DT_SOURCE_UFFD_WP)
				naive_uffd(b);
			else
				naive_all(b);
			t3 = now_ns();
			check_bitmap("naive", dt_source_name(src), p, b->naive_bm, b->npages,
				     exact);
		}
		if (res->has_pagemap) {
			memset(b->naive_bm, 0, b->nwords * 8);
			if (!warm)
				cache_scrub();
			t4 = now_ns();
			pagemap_read(b);
			t5 = now_ns();
		}
		if (!warm)
			cache_scrub();
		t6 = now_ns();
		memcpy(b->copy_dst, b->copy_src, b->nwords * 8);
		compiler_barrier();
		t7 = now_ns();
		if (r < 0)
			continue;
		t_h[r] = t1 - t0;
		t_n[r] = t3 - t2;
		t_p[r] = t5 - t4;
		t_c[r] = t7 - t6;
	}
	res->pct = p->pct;
	res->written = p->count;
	res->pages = exact ? p->count : b->npages;
	res->harvest = median_u64(t_h, reps);
	res->harvest_min = min_sorted(t_h, reps);
	res->harvest_max = max_sorted(t_h, reps);
	res->naive = median_u64(t_n, reps);
	res->pagemap = median_u64(t_p, reps);
	res->copy = median_u64(t_c, reps);
	res->faults = faults;
}

static void print_source_json(const struct opts *o, const char *name, const struct src_result *r,
			      uint64_t size)
{
	printf("{\"bench\":\"track_source\",\"source\":\"%s\",\"size_mib\":%" PRIu64
	       ",\"cold_caches\":%s,\"dirty_pct\":%g,\"written_pages\":%" PRIu64
	       ",\"reported_pages\":%" PRIu64 ",\"reps\":%u"
	       ",\"harvest_ns\":%" PRIu64 ",\"harvest_min_ns\":%" PRIu64
	       ",\"harvest_max_ns\":%" PRIu64 ",\"ns_per_gib\":%.0f,\"gb_per_s\":%.2f",
	       name, size >> 20, o->warm ? "false" : "true", r->pct, r->written, r->pages, o->reps,
	       r->harvest, r->harvest_min, r->harvest_max, ns_per_gib(r->harvest, size),
	       ratio(size, r->harvest));
	if (r->has_naive)
		printf(",\"naive_ns\":%" PRIu64 ",\"naive_over_harvest\":%.3f", r->naive,
		       ratio(r->naive, r->harvest));
	if (r->has_pagemap)
		printf(",\"pagemap_read_ns\":%" PRIu64, r->pagemap);
	printf(",\"memcpy_bytes\":%" PRIu64 ",\"memcpy_ns\":%" PRIu64
	       ",\"harvest_over_memcpy\":%.1f,\"timed_faults\":%" PRIu64 "}\n",
	       (uint64_t)(size / PAGE_SIZE / 8), r->copy, ratio(r->harvest, r->copy), r->faults);
	fflush(stdout);
}

static void print_skip(const char *bench, const char *name, const char *reason)
{
	printf("{\"bench\":\"%s\",\"source\":\"%s\",\"skipped\":true,\"reason\":\"", bench, name);
	for (const char *c = reason; *c; c++)
		printf(*c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
	printf("\"}\n");
	fflush(stdout);
	fprintf(stderr, "%-14s skipped: %s\n", name, reason);
}

static void source_table_header(const struct opts *o, uint64_t size)
{
	fprintf(stderr,
		"\nbench_track: each source over %" PRIu64
		" MiB, 4 KiB pages, %s caches, median of %u\n"
		"%-14s %7s %9s %10s %10s %7s %9s %6s %9s %9s %9s\n",
		size >> 20, o->warm ? "warm" : "cold", o->reps, "source", "dirty %", "reported",
		"harvest ms", "ns/GiB", "GB/s", "naive ms", "n/ours", "pagemap", "memcpy us",
		"ours/cpy");
}

static void source_table_row(const char *name, const struct src_result *r, uint64_t size)
{
	char naive[32] = "-", nratio[16] = "-", pm[32] = "-";

	if (r->has_naive) {
		snprintf(naive, sizeof(naive), "%.3f", r->naive / 1e6);
		snprintf(nratio, sizeof(nratio), "%.1f", ratio(r->naive, r->harvest));
	}
	if (r->has_pagemap)
		snprintf(pm, sizeof(pm), "%.3f", r->pagemap / 1e6);
	fprintf(stderr, "%-14s %7g %9" PRIu64 " %10.3f %10.0f %7.1f %9s %6s %9s %9.2f %9.0f\n",
		name, r->pct, r->pages, r->harvest / 1e6, ns_per_gib(r->harvest, size),
		ratio(size, r->harvest), naive, nratio, pm, r->copy / 1e3,
		ratio(r->harvest, r->copy));
}

/* Why a KVM source is not measured here. */
static void kvm_reason(char *why, size_t len)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, len, "no /dev/kvm (%s)", strerror(errno));
		return;
	}
	close(fd);
	snprintf(why, len,
		 "not measured: KVM logs guest writes only, dirtying needs a running "
		 "guest");
}

static void run_sources(const struct opts *o)
{
	static const enum dt_source_type types[] = {DT_SOURCE_UFFD_WP, DT_SOURCE_SOFT_DIRTY,
						    DT_SOURCE_ALL_DIRTY, DT_SOURCE_KVM_LOG,
						    DT_SOURCE_KVM_RING};
	static const char *const names[] = {"uffd-wp", "soft-dirty", "all-dirty", "kvm-dirty-log",
					    "kvm-dirty-ring"};
	struct src_bench b = {.size = o->size_mib << 20};
	struct pattern pats[NLEVELS];

	b.npages = b.size >> PAGE_SHIFT;
	b.nwords = (b.npages + 63) / 64;
	b.mem = map_tracked(b.size);
	b.bitmap = alloc_zeroed(b.nwords * 8);
	b.naive_bm = alloc_zeroed(b.nwords * 8);
	b.copy_src = alloc_zeroed(b.nwords * 8);
	b.copy_dst = alloc_zeroed(b.nwords * 8);
	memset(b.copy_src, 0x5a, b.nwords * 8);
	b.entries = alloc_zeroed(PM_CHUNK * 8);
	b.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	BENCH_CHECK(b.pagemap >= 0, "/proc/self/pagemap: %s", strerror(errno));
	for (unsigned l = 0; l < NLEVELS; l++)
		pattern_make(&pats[l], b.npages, levels[l], o->seed + l);

	source_table_header(o, b.size);
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct dt_region region = {.addr = (uintptr_t)b.mem, .size = b.size, .host = b.mem};
		struct dt_source_opts so = {.size = sizeof(so),
					    .type = types[i],
					    .regions = &region,
					    .nregions = 1,
					    .vm_fd = -1};
		struct dt_source *src;
		char why[600];
		int ret;

		if (types[i] == DT_SOURCE_KVM_LOG || types[i] == DT_SOURCE_KVM_RING) {
			kvm_reason(why, sizeof(why));
			print_skip("track_source", names[i], why);
			continue;
		}
		echo_log = false;
		last_log[0] = 0;
		src = dt_source_new(&so);
		echo_log = true;
		if (!src) {
			snprintf(why, sizeof(why), "%s (%s)",
				 last_log[0] ? last_log : "no reason logged", strerror(errno));
			print_skip("track_source", names[i], why);
			continue;
		}
		ret = dt_source_start(src);
		BENCH_CHECK(!ret, "dt_source_start(%s): %d", names[i], ret);
		for (unsigned l = 0; l < NLEVELS; l++) {
			struct src_result res;

			measure_source(&b, src, &pats[l], o->reps, o->warm, &res);
			print_source_json(o, names[i], &res, b.size);
			source_table_row(names[i], &res, b.size);
		}
		dt_source_free(src);
	}
	for (unsigned l = 0; l < NLEVELS; l++)
		pattern_free(&pats[l]);
	close(b.pagemap);
	munmap(b.entries, PM_CHUNK * 8);
	munmap(b.copy_dst, b.nwords * 8);
	munmap(b.copy_src, b.nwords * 8);
	munmap(b.naive_bm, b.nwords * 8);
	munmap(b.bitmap, b.nwords * 8);
	munmap(b.mem, b.size); /* the memory written at 100 % goes back now */
}

/* ---- part 2: the dirty set ------------------------------------------------------------------- */

#define NOUT (DT_NCLASSES + 1) /* the classes and their union */

struct set_bench {
	char *mem;
	uint64_t size, npages, nwords;
	struct dt_iommu *iommu;
	struct dt_device *emu, *vmm;
	struct dt_source *cpu;
	bool cpu_exact;
	struct dt_dirty_set *set;
	uint64_t npinned;
	uint64_t *pinned_bits;
	uint64_t *cpu_in, *rc_in[DT_REPORT_NCLASSES]; /* naive: one bitmap per producer */
	uint64_t *naive_out[NOUT];
	uint64_t naive_count[NOUT];
	uint64_t *want[NOUT];
	uint64_t want_count[NOUT];
	uint64_t *copy_src, *copy_dst; /* NOUT bitmaps each */
};

/* What the VMM device writes in one round besides the CPU's pattern. */
struct vmm_round {
	struct pattern log;
	uint64_t rw_pages[RW_PAGES];
	unsigned nrw;
};

struct set_result {
	double pct;
	uint64_t count[NOUT];
	uint64_t harvest, harvest_min, harvest_max;
	uint64_t naive, naive_sources, naive_merge, copy, faults;
};

static void set_setup(struct set_bench *b, const struct opts *o)
{
	struct vfio_iommu_type1_dma_map map = {.argsz = sizeof(map),
					       .flags = VFIO_DMA_MAP_FLAG_READ |
							VFIO_DMA_MAP_FLAG_WRITE,
					       .iova = IOVA_BASE};
	struct dt_dirty_set_opts dso = {.size = sizeof(dso)};
	struct dt_region region;
	struct dt_source_opts so = {.size = sizeof(so),
				    .type = DT_SOURCE_UFFD_WP,
				    .regions = &region,
				    .nregions = 1,
				    .vm_fd = -1};
	uint64_t state = o->seed ^ 0x9175;
	struct dt_harvest h;
	int ret;

	memset(b, 0, sizeof(*b));
	b->size = o->set_mib << 20;
	b->npages = b->size >> PAGE_SHIFT;
	b->nwords = (b->npages + 63) / 64;
	b->mem = map_tracked(b->size);
	region = (struct dt_region){.addr = (uintptr_t)b->mem, .size = b->size, .host = b->mem};
	b->cpu = dt_source_new(&so);
	if (!b->cpu) {
		fprintf(stderr,
			"bench_track: no uffd-wp here (%s): the CPU source of the set is "
			"all-dirty\n",
			strerror(errno));
		so.type = DT_SOURCE_ALL_DIRTY;
		b->cpu = dt_source_new(&so);
		BENCH_CHECK(b->cpu, "dt_source_new(all-dirty): %s", strerror(errno));
	}
	b->cpu_exact = dt_source_caps(b->cpu) & DT_SOURCE_CAP_EXACT;

	b->iommu = dt_iommu_new();
	BENCH_CHECK(b->iommu, "dt_iommu_new");
	map.vaddr = (uintptr_t)b->mem;
	map.size = b->size;
	ret = dt_vfio_ioctl(b->iommu, VFIO_IOMMU_MAP_DMA, &map);
	BENCH_CHECK(!ret, "MAP_DMA of %" PRIu64 " MiB: %d", o->set_mib, ret);
	b->emu = dt_device_attach(b->iommu, DT_DEVICE_EMULATED);
	b->vmm = dt_device_attach(b->iommu, DT_DEVICE_EMULATED);
	BENCH_CHECK(b->emu && b->vmm, "dt_device_attach(EMULATED)");
	ret = dt_device_set_flags(b->vmm, DT_DEVICE_F_VMM);
	BENCH_CHECK(!ret, "dt_device_set_flags(VMM): %d", ret);

	dso.base = (uintptr_t)b->mem;
	dso.length = b->size;
	b->set = dt_dirty_set_new(&dso);
	BENCH_CHECK(b->set, "dt_dirty_set_new: %s", strerror(errno));
	ret = dt_dirty_set_add_source(b->set, b->cpu);
	BENCH_CHECK(!ret, "dt_dirty_set_add_source: %d", ret);
	ret = dt_dirty_set_add_iommu(b->set, b->iommu, IOVA_BASE);
	BENCH_CHECK(!ret, "dt_dirty_set_add_iommu: %d", ret);
	ret = dt_source_start(b->cpu);
	BENCH_CHECK(!ret, "dt_source_start: %d", ret);
	ret = dt_iommu_dirty_start(b->iommu);
	BENCH_CHECK(!ret, "dt_iommu_dirty_start: %d", ret);

	/* Pinned pages: one random page in every PIN_EVERY, pinned for the whole run. */
	b->pinned_bits = alloc_zeroed(b->nwords * 8);
	for (uint64_t blk = 0; blk < b->npages / PIN_EVERY; blk++) {
		uint64_t pg = blk * PIN_EVERY + rand_below(&state, PIN_EVERY);

		ret = dt_pin_pages(b->emu, IOVA_BASE + (pg << PAGE_SHIFT), 1,
				   PROT_READ | PROT_WRITE, NULL);
		BENCH_CHECK(ret == 1, "dt_pin_pages of page %" PRIu64 ": %d", pg, ret);
		bit_set(b->pinned_bits, pg);
		b->npinned++;
	}

	b->cpu_in = alloc_zeroed(b->nwords * 8);
	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++)
		b->rc_in[c] = alloc_zeroed(b->nwords * 8);
	for (unsigned c = 0; c < NOUT; c++) {
		b->naive_out[c] = alloc_zeroed(b->nwords * 8);
		b->want[c] = alloc_zeroed(b->nwords * 8);
	}
	b->copy_src = alloc_zeroed(NOUT * b->nwords * 8);
	b->copy_dst = alloc_zeroed(NOUT * b->nwords * 8);
	memset(b->copy_src, 0x5a, NOUT * b->nwords * 8);

	ret = dt_dirty_set_harvest(b->set, 0, &h); /* start from clean */
	BENCH_CHECK(!ret, "first dt_dirty_set_harvest: %d", ret);
}

static void set_teardown(struct set_bench *b)
{
	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++)
		munmap(b->rc_in[c], b->nwords * 8);
	for (unsigned c = 0; c < NOUT; c++) {
		munmap(b->naive_out[c], b->nwords * 8);
		munmap(b->want[c], b->nwords * 8);
	}
	munmap(b->cpu_in, b->nwords * 8);
	munmap(b->pinned_bits, b->nwords * 8);
	munmap(b->copy_src, NOUT * b->nwords * 8);
	munmap(b->copy_dst, NOUT * b->nwords * 8);
	dt_dirty_set_free(b->set);
	dt_source_free(b->cpu);
	dt_iommu_free(b->iommu); /* drops the pins and both devices */
	munmap(b->mem, b->size);
}

static void vmm_round_make(struct set_bench *b, struct vmm_round *v, double pct, uint64_t seed)
{
	uint64_t state = seed ^ 0x7277;

	pattern_make(&v->log, b->npages, pct, seed);
	v->nrw = pct > 0 ? (b->npages < RW_PAGES ? (unsigned)b->npages : RW_PAGES) : 0;
	for (unsigned i = 0; i < v->nrw; i++)
		v->rw_pages[i] = rand_below(&state, b->npages);
}

/* The expected classes of one round: what the checks compare against. */
static void set_expect(struct set_bench *b, const struct pattern *cpu, const struct vmm_round *v)
{
	for (unsigned c = 0; c < NOUT; c++)
		memset(b->want[c], 0, b->nwords * 8);
	memcpy(b->want[DT_CLASS_CPU], cpu->bits, b->nwords * 8);
	memcpy(b->want[DT_CLASS_VMM], v->log.bits, b->nwords * 8);
	memcpy(b->want[DT_CLASS_PINNED], b->pinned_bits, b->nwords * 8);
	for (unsigned i = 0; i < v->nrw; i++) {
		bit_set(b->want[DT_CLASS_CPU], v->rw_pages[i]); /* dt_dma_rw writes the memory */
		bit_set(b->want[DT_CLASS_VMM], v->rw_pages[i]);
	}
	if (!b->cpu_exact)
		memset(b->want[DT_CLASS_CPU], 0xff, b->nwords * 8);
	if (b->npages % 64)
		b->want[DT_CLASS_CPU][b->nwords - 1] &= (1ull << (b->npages % 64)) - 1;
	for (uint64_t w = 0; w < b->nwords; w++) {
		uint64_t u = 0;

		for (unsigned c = 0; c < DT_NCLASSES; c++)
			u |= b->want[c][w];
		b->want[DT_NCLASSES][w] = u;
	}
	for (unsigned c = 0; c < NOUT; c++)
		b->want_count[c] = popcount_words(b->want[c], b->nwords);
}

static void set_dirty(struct set_bench *b, const struct pattern *cpu, const struct vmm_round *v,
		      unsigned round)
{
	char data[64];
	int ret;

	write_pages(b->mem, cpu, round);
	if (v->log.all) {
		ret = dt_dma_log(b->vmm, IOVA_BASE, b->size);
		BENCH_CHECK(!ret, "dt_dma_log of everything: %d", ret);
	}
	for (uint64_t n = 0; !v->log.all && n < v->log.count; n++) {
		ret = dt_dma_log(b->vmm, IOVA_BASE + (v->log.pages[n] << PAGE_SHIFT), PAGE_SIZE);
		BENCH_CHECK(!ret, "dt_dma_log: %d", ret);
	}
	memset(data, (int)round, sizeof(data));
	for (unsigned i = 0; i < v->nrw; i++) {
		ret = dt_dma_rw(b->vmm, IOVA_BASE + (v->rw_pages[i] << PAGE_SHIFT) + 128, data,
				sizeof(data), true);
		BENCH_CHECK(!ret, "dt_dma_rw: %d", ret);
	}
}

static void check_set_output(const struct set_bench *b, const char *who, double pct,
			     const uint64_t *const bits[NOUT], const uint64_t count[NOUT])
{
	static const char *const cname[NOUT] = {"cpu", "vmm", "pinned", "device", "whole", "all"};

	for (unsigned c = 0; c < NOUT; c++)
		BENCH_CHECK(
			count[c] == b->want_count[c] && !memcmp(bits[c], b->want[c], b->nwords * 8),
			"%s at %g %%: class %s: expected %" PRIu64 " pages, counted %" PRIu64 "%s",
			who, pct, cname[c], b->want_count[c], count[c],
			count[c] == b->want_count[c] ? " (wrong pages)" : "");
}

/* The naive merge: each producer into its own bitmap, then OR word by word. Returns the time
 * its producers took; the merge is the rest. */
static uint64_t naive_set_harvest(struct set_bench *b)
{
	struct dt_report rep = {.size = sizeof(rep), .iova = IOVA_BASE, .length = b->size};
	uint64_t t0 = now_ns(), t1;
	int64_t n;
	int ret;

	memset(b->cpu_in, 0, b->nwords * 8);
	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++) {
		memset(b->rc_in[c], 0, b->nwords * 8);
		rep.class_bitmap[c] = b->rc_in[c];
	}
	n = dt_source_harvest(b->cpu, (uint64_t)(uintptr_t)b->mem, b->npages, b->cpu_in, 0);
	BENCH_CHECK(n >= 0, "naive: dt_source_harvest: %" PRId64, n);
	ret = dt_iommu_report(b->iommu, &rep);
	BENCH_CHECK(!ret, "naive: dt_iommu_report: %d", ret);
	t1 = now_ns();
	memset(b->naive_count, 0, sizeof(b->naive_count));
	for (uint64_t w = 0; w < b->nwords; w++) {
		uint64_t cls[DT_NCLASSES], u = 0;

		cls[DT_CLASS_CPU] = b->cpu_in[w];
		cls[DT_CLASS_VMM] = b->rc_in[DT_RC_VMM][w];
		cls[DT_CLASS_PINNED] = b->rc_in[DT_RC_PINNED][w];
		cls[DT_CLASS_DEVICE] = b->rc_in[DT_RC_DMA_RW][w] | b->rc_in[DT_RC_LOGGED][w] |
				       b->rc_in[DT_RC_UNPINNED][w] | b->rc_in[DT_RC_REQUEUED][w];
		cls[DT_CLASS_WHOLE] = b->rc_in[DT_RC_WHOLE][w];
		for (unsigned c = 0; c < DT_NCLASSES; c++) {
			b->naive_out[c][w] = cls[c];
			b->naive_count[c] += (uint64_t)__builtin_popcountll(cls[c]);
			u |= cls[c];
		}
		b->naive_out[DT_NCLASSES][w] = u;
		b->naive_count[DT_NCLASSES] += (uint64_t)__builtin_popcountll(u);
	}
	compiler_barrier();
	return t1 - t0;
}

static void measure_set(struct set_bench *b, const struct pattern *cpu, const struct vmm_round *v,
			unsigned reps, bool warm, struct set_result *res)
{
	uint64_t t_h[MAX_REPS], t_n[MAX_REPS], t_ns[MAX_REPS], t_nm[MAX_REPS], t_c[MAX_REPS];
	uint64_t faults = 0;

	memset(res, 0, sizeof(*res));
	set_expect(b, cpu, v);
	for (int r = -1; r < (int)reps; r++) {
		const uint64_t *bits[NOUT];
		uint64_t count[NOUT], t0, t1, t2, t3, t4, t5, f0, sources;
		struct dt_harvest h;
		int ret;

		set_dirty(b, cpu, v, (unsigned)(r + 1));
		if (!warm)
			cache_scrub();
		f0 = faults_now();
		t0 = now_ns();
		ret = dt_dirty_set_harvest(b->set, 0, &h);
		t1 = now_ns();
		faults += r >= 0 ? faults_now() - f0 : 0;
		BENCH_CHECK(!ret, "dt_dirty_set_harvest: %d", ret);
		BENCH_CHECK(h.npages == b->npages, "dt_dirty_set_harvest: %" PRIu64 " pages",
			    h.npages);
		for (unsigned c = 0; c < DT_NCLASSES; c++) {
			bits[c] = h.class_bits[c];
			count[c] = h.count[c];
		}
		bits[DT_NCLASSES] = h.all;
		count[DT_NCLASSES] = h.total;
		check_set_output(b, "dt_dirty_set_harvest", cpu->pct, bits, count);

		set_dirty(b, cpu, v, (unsigned)(r + 1));
		if (!warm)
			cache_scrub();
		t2 = now_ns();
		sources = naive_set_harvest(b);
		t3 = now_ns();
		check_set_output(b, "naive", cpu->pct, (const uint64_t *const *)b->naive_out,
				 b->naive_count);

		if (!warm)
			cache_scrub();
		t4 = now_ns();
		memcpy(b->copy_dst, b->copy_src, NOUT * b->nwords * 8);
		compiler_barrier();
		t5 = now_ns();
		if (r < 0)
			continue;
		t_h[r] = t1 - t0;
		t_n[r] = t3 - t2;
		t_ns[r] = sources;
		t_nm[r] = t3 - t2 - sources;
		t_c[r] = t5 - t4;
	}
	res->pct = cpu->pct;
	memcpy(res->count, b->want_count, sizeof(res->count));
	res->harvest = median_u64(t_h, reps);
	res->harvest_min = min_sorted(t_h, reps);
	res->harvest_max = max_sorted(t_h, reps);
	res->naive = median_u64(t_n, reps);
	res->naive_sources = median_u64(t_ns, reps);
	res->naive_merge = median_u64(t_nm, reps);
	res->copy = median_u64(t_c, reps);
	res->faults = faults;
}

static void print_set_json(const struct opts *o, const struct set_bench *b,
			   const struct set_result *r)
{
	printf("{\"bench\":\"track_set\",\"size_mib\":%" PRIu64
	       ",\"cpu_source\":\"%s\",\"cold_caches\":%s,\"dirty_pct\":%g,\"reps\":%u"
	       ",\"pinned_pages\":%" PRIu64 ",\"cpu_pages\":%" PRIu64 ",\"vmm_pages\":%" PRIu64
	       ",\"device_pages\":%" PRIu64 ",\"whole_pages\":%" PRIu64 ",\"total_pages\":%" PRIu64
	       ",\"harvest_ns\":%" PRIu64 ",\"harvest_min_ns\":%" PRIu64
	       ",\"harvest_max_ns\":%" PRIu64 ",\"ns_per_gib\":%.0f,\"gb_per_s\":%.2f"
	       ",\"naive_ns\":%" PRIu64 ",\"naive_sources_ns\":%" PRIu64
	       ",\"naive_merge_ns\":%" PRIu64 ",\"memcpy_bytes\":%" PRIu64 ",\"memcpy_ns\":%" PRIu64
	       ",\"naive_over_harvest\":%.3f,\"harvest_over_memcpy\":%.2f"
	       ",\"timed_faults\":%" PRIu64 "}\n",
	       b->size >> 20, dt_source_name(b->cpu), o->warm ? "false" : "true", r->pct, o->reps,
	       r->count[DT_CLASS_PINNED], r->count[DT_CLASS_CPU], r->count[DT_CLASS_VMM],
	       r->count[DT_CLASS_DEVICE], r->count[DT_CLASS_WHOLE], r->count[DT_NCLASSES],
	       r->harvest, r->harvest_min, r->harvest_max, ns_per_gib(r->harvest, b->size),
	       ratio(b->size, r->harvest), r->naive, r->naive_sources, r->naive_merge,
	       NOUT * b->nwords * 8, r->copy, ratio(r->naive, r->harvest),
	       ratio(r->harvest, r->copy), r->faults);
	fflush(stdout);
}

static void run_set(const struct opts *o)
{
	struct set_result res[NLEVELS];
	struct set_bench b;

	set_setup(&b, o);
	for (unsigned l = 0; l < NLEVELS; l++) {
		struct pattern cpu;
		struct vmm_round v;

		pattern_make(&cpu, b.npages, levels[l], o->seed + 100 + l);
		vmm_round_make(&b, &v, levels[l], o->seed + 200 + l);
		measure_set(&b, &cpu, &v, o->reps, o->warm, &res[l]);
		print_set_json(o, &b, &res[l]);
		pattern_free(&cpu);
		pattern_free(&v.log);
	}
	fprintf(stderr,
		"\nbench_track: dirty set over %" PRIu64 " MiB: %s source + container (EMULATED "
		"device pinning %" PRIu64 " pages, VMM device), %s caches, median of %u\n"
		"%7s %9s %9s %7s %9s %10s %9s %6s %9s %9s %9s %9s %6s %8s\n",
		b.size >> 20, dt_source_name(b.cpu), b.npinned, o->warm ? "warm" : "cold", o->reps,
		"dirty %", "cpu", "vmm", "pinned", "total", "harvest ms", "ns/GiB", "GB/s",
		"naive ms", "(sources", "+ merge)", "memcpy us", "n/ours", "ours/cpy");
	for (unsigned l = 0; l < NLEVELS; l++) {
		const struct set_result *r = &res[l];

		fprintf(stderr,
			"%7g %9" PRIu64 " %9" PRIu64 " %7" PRIu64 " %9" PRIu64
			" %10.3f %9.0f %6.1f %9.3f %9.3f %9.3f %9.3f %6.2f %8.1f\n",
			r->pct, r->count[DT_CLASS_CPU], r->count[DT_CLASS_VMM],
			r->count[DT_CLASS_PINNED], r->count[DT_NCLASSES], r->harvest / 1e6,
			ns_per_gib(r->harvest, b.size), ratio(b.size, r->harvest), r->naive / 1e6,
			r->naive_sources / 1e6, r->naive_merge / 1e6, r->copy / 1e3,
			ratio(r->naive, r->harvest), ratio(r->harvest, r->copy));
	}
	set_teardown(&b);
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [options]\n"
		"  --size-mib N   memory per source in MiB (default 1024)\n"
		"  --set-mib N    memory of the dirty set in MiB (default 8192)\n"
		"  --reps N       timed repetitions per case, median reported (default 5)\n"
		"  --no-sources   skip part 1 (each source alone)\n"
		"  --no-set       skip part 2 (the dirty set)\n"
		"  --warm         do not evict the caches before each timed call\n"
		"  --seed N       seed of the random pages (fixed by default)\n"
		"  --quick        16 MiB and 64 MiB, 1 repetition: proves the program works (CI)\n",
		argv0);
	exit(2);
}

static struct opts parse_opts(int argc, char **argv)
{
	struct opts o = {.size_mib = 1024, .set_mib = 8192, .reps = 5, .seed = 0x7eac};
	bool size_set = false, set_set = false, reps_set = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--quick")) {
			o.quick = true;
		} else if (!strcmp(a, "--warm")) {
			o.warm = true;
		} else if (!strcmp(a, "--no-sources")) {
			o.no_sources = true;
		} else if (!strcmp(a, "--no-set")) {
			o.no_set = true;
		} else if (!strcmp(a, "--size-mib")) {
			o.size_mib = parse_u64(a, argv[++i]);
			size_set = true;
		} else if (!strcmp(a, "--set-mib")) {
			o.set_mib = parse_u64(a, argv[++i]);
			set_set = true;
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
		o.size_mib = size_set ? o.size_mib : 16;
		o.set_mib = set_set ? o.set_mib : 64;
		o.reps = reps_set ? o.reps : 1;
	}
	if (!o.size_mib || o.size_mib > (1u << 20) || !o.set_mib || o.set_mib > (1u << 20) ||
	    !o.reps || o.reps > MAX_REPS)
		bench_fail("bad options: --size-mib %" PRIu64 ", --set-mib %" PRIu64
			   " (1..1048576), --reps %u (1..%u)",
			   o.size_mib, o.set_mib, o.reps, MAX_REPS);
	return o;
}

int main(int argc, char **argv)
{
	struct opts o = parse_opts(argc, argv);

	print_env_json(BENCH_NAME, argc, argv);
	dt_set_log(capture_log, NULL, DT_LOG_WARN);
	if (!o.warm) {
		scrub_bytes = 64ull << 20;
		scrub = alloc_zeroed(scrub_bytes);
	}
	if (!o.no_sources)
		run_sources(&o);
	if (!o.no_set)
		run_set(&o);
	if (o.quick)
		fprintf(stderr, "[--quick: sizes too small for the figures to mean anything]\n");
	return 0;
}
