/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_track.c - the cost of a harvest: each CPU-write source alone (part 1, here), and
 * the merged harvest of a dirty set into per-class bitmaps (part 2, bench_track_set.c).
 *
 * Part 1, sources (--size-mib, 1 GiB by default). Anonymous MAP_NORESERVE memory with THP
 * off (MADV_NOHUGEPAGE: pages are tracked and reported one by one), every page written once
 * before tracking starts as a running program's memory is resident (--untouched: never
 * touched, which is cheaper to harvest on this machine), is tracked by each source type
 * forced in turn. Between two harvests the program writes one byte into 0 %, 1 %
 * (distinct random pages, fixed seed) or 100 % of the pages; only the harvest is timed, into
 * a zeroed bitmap. Beside it, on the same pattern, in the same repetition loop:
 *
 *   naive         uffd-wp: one PAGEMAP_SCAN (report and re-protect) per page, the same
 *                 kernel walk without batching; all-dirty: the bits set one at a time
 *   pagemap read  pread() of /proc/self/pagemap over the range, 8 bytes per page in 4 KiB
 *                 chunks, testing the soft-dirty bit: the read half of a soft-dirty harvest
 *                 (process sources only)
 *   naive (KVM)   dirty log: KVM_GET_DIRTY_LOG, then one KVM_CLEAR_DIRTY_LOG per reported
 *                 64-page word; its GET alone goes in the pagemap column ("g", kvm_get_ns)
 *   memcpy        the physical bound: memcpy of the bitmap's bytes (one bit per page)
 *   pte memcpy    memcpy of 8 bytes per page, the size of the page-table entries a kernel
 *                 walk must read at least (the bound for uffd-wp and soft-dirty)
 *
 * Sources that cannot run here (soft-dirty where its self-test fails, the KVM ones without
 * /dev/kvm) are reported as skipped, with the reason. KVM logs guest writes only: the KVM
 * sources run a guest over the same memory, in bench_track_kvm.c.
 *
 * Part 2, the dirty set, is bench_track_set.c.
 *
 * Not timed: writing the pages, zeroing the output bitmap, the checks. Every repetition
 * checks each output against the pattern bit for bit (exact sources) or all ones
 * (all-dirty), the naive output too. Before each timed call 64 MiB are written elsewhere, so
 * every contender starts with cold caches (--warm skips it). Output: one JSON object per
 * line on stdout, the tables on stderr. This file also holds what both parts share
 * (bench_track.h) and main().
 */
#include "sys/compat.h"

#define BENCH_NAME "track"
#include "bench_track.h"

#define PM_SOFT_DIRTY (1ull << 55)
#define PM_CHUNK      512u /* pagemap entries per pread, as the soft-dirty source reads */

/* ---- shared ------------------------------------------------------------------------------ */

uint8_t *scrub;
uint64_t scrub_bytes;

void cache_scrub(void)
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

void *alloc_zeroed(uint64_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	BENCH_CHECK(p != MAP_FAILED, "mmap of %" PRIu64 " bytes", bytes);
	memset(p, 0, bytes);
	return p;
}

char *map_tracked(uint64_t size, bool untouched)
{
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	BENCH_CHECK(p != MAP_FAILED, "mmap of %" PRIu64 " MiB", size >> 20);
	madvise(p, size, MADV_NOHUGEPAGE);
	for (uint64_t off = 0; !untouched && off < size; off += PAGE_SIZE)
		((volatile char *)p)[off] = 1;
	return p;
}

void pattern_make(struct pattern *p, uint64_t npages, double pct, uint64_t seed)
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

void pattern_free(struct pattern *p)
{
	free(p->pages);
	free(p->bits);
}

/* The untimed "guest": one byte into every page of the pattern. */
void write_pages(char *mem, const struct pattern *p, unsigned round)
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

/* ---- part 1: each source alone --------------------------------------------------------------- */

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

void check_bitmap(const char *who, const char *src, const struct pattern *p, const uint64_t *got,
		  uint64_t npages, bool exact)
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
	uint64_t t_h[MAX_REPS], t_n[MAX_REPS], t_p[MAX_REPS], t_c[MAX_REPS], t_pte[MAX_REPS];
	uint64_t faults = 0;
	enum dt_source_type type = dt_source_type(src);
	bool exact = dt_source_caps(src) & DT_SOURCE_CAP_EXACT;

	memset(res, 0, sizeof(*res));
	res->has_naive = type == DT_SOURCE_UFFD_WP || type == DT_SOURCE_ALL_DIRTY;
	res->has_pagemap = type != DT_SOURCE_ALL_DIRTY;
	/* Repetition -1 warms up. */
	for (int r = -1; r < (int)reps; r++) {
		uint64_t t0, t1, t2 = 0, t3 = 0, t4 = 0, t5 = 0, t6, t7, t8, t9, f0;
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
		if (!warm)
			cache_scrub();
		t8 = now_ns();
		memcpy(b->copy_dst, b->copy_src, b->npages * 8);
		compiler_barrier();
		t9 = now_ns();
		if (r < 0)
			continue;
		t_h[r] = t1 - t0;
		t_n[r] = t3 - t2;
		t_p[r] = t5 - t4;
		t_c[r] = t7 - t6;
		t_pte[r] = t9 - t8;
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
	res->copy_pte = median_u64(t_pte, reps);
	res->faults = faults;
}

void print_source_json(const struct opts *o, const char *name, const struct src_result *r,
		       uint64_t size)
{
	printf("{\"bench\":\"track_source\",\"source\":\"%s\",\"size_mib\":%" PRIu64
	       ",\"resident\":%s,\"cold_caches\":%s,\"dirty_pct\":%g,\"written_pages\":%" PRIu64
	       ",\"reported_pages\":%" PRIu64 ",\"reps\":%u"
	       ",\"harvest_ns\":%" PRIu64 ",\"harvest_min_ns\":%" PRIu64
	       ",\"harvest_max_ns\":%" PRIu64 ",\"ns_per_gib\":%.0f,\"gb_per_s\":%.2f",
	       name, size >> 20, o->untouched ? "false" : "true", o->warm ? "false" : "true",
	       r->pct, r->written, r->pages, o->reps, r->harvest, r->harvest_min, r->harvest_max,
	       ns_per_gib(r->harvest, size), ratio(size, r->harvest));
	if (r->has_naive)
		printf(",\"naive_ns\":%" PRIu64 ",\"naive_over_harvest\":%.3f", r->naive,
		       ratio(r->naive, r->harvest));
	if (r->has_pagemap)
		printf(",\"pagemap_read_ns\":%" PRIu64, r->pagemap);
	if (r->has_get)
		printf(",\"kvm_get_ns\":%" PRIu64, r->get);
	printf(",\"memcpy_bytes\":%" PRIu64 ",\"memcpy_ns\":%" PRIu64
	       ",\"harvest_over_memcpy\":%.1f,\"memcpy_pte_bytes\":%" PRIu64
	       ",\"memcpy_pte_ns\":%" PRIu64 ",\"harvest_over_memcpy_pte\":%.2f"
	       ",\"timed_faults\":%" PRIu64 "}\n",
	       (uint64_t)(size / PAGE_SIZE / 8), r->copy, ratio(r->harvest, r->copy),
	       (uint64_t)(size / PAGE_SIZE * 8), r->copy_pte, ratio(r->harvest, r->copy_pte),
	       r->faults);
	fflush(stdout);
}

void print_skip(const char *bench, const char *name, const char *reason)
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
		" MiB (%s), 4 KiB pages, %s caches, median of %u\n"
		"%-14s %7s %9s %10s %10s %7s %9s %6s %9s %9s %8s %9s %8s\n",
		size >> 20, o->untouched ? "never touched" : "resident", o->warm ? "warm" : "cold",
		o->reps, "source", "dirty %", "reported", "harvest ms", "ns/GiB", "GB/s",
		"naive ms", "n/ours", "pagemap", "memcpy us", "ours/cpy", "pte cp ms", "ours/pte");
}

void source_table_row(const char *name, const struct src_result *r, uint64_t size)
{
	char naive[32] = "-", nratio[16] = "-", pm[32] = "-";

	if (r->has_naive) {
		snprintf(naive, sizeof(naive), "%.3f", r->naive / 1e6);
		snprintf(nratio, sizeof(nratio), "%.1f", ratio(r->naive, r->harvest));
	}
	if (r->has_pagemap)
		snprintf(pm, sizeof(pm), "%.3f", r->pagemap / 1e6);
	else if (r->has_get) /* KVM log: the column shows the naive's GET alone */
		snprintf(pm, sizeof(pm), "g %.3f", r->get / 1e6);
	fprintf(stderr,
		"%-14s %7g %9" PRIu64 " %10.3f %10.0f %7.1f %9s %6s %9s %9.2f %8.0f %9.3f %8.1f\n",
		name, r->pct, r->pages, r->harvest / 1e6, ns_per_gib(r->harvest, size),
		ratio(size, r->harvest), naive, nratio, pm, r->copy / 1e3,
		ratio(r->harvest, r->copy), r->copy_pte / 1e6, ratio(r->harvest, r->copy_pte));
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
	b.mem = map_tracked(b.size, o->untouched);
	b.bitmap = alloc_zeroed(b.nwords * 8);
	b.naive_bm = alloc_zeroed(b.nwords * 8);
	b.copy_src = alloc_zeroed(b.npages * 8);
	b.copy_dst = alloc_zeroed(b.npages * 8);
	memset(b.copy_src, 0x5a, b.npages * 8);
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
			run_kvm_source(o, &b, types[i], names[i], pats);
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
	munmap(b.copy_dst, b.npages * 8);
	munmap(b.copy_src, b.npages * 8);
	munmap(b.naive_bm, b.nwords * 8);
	munmap(b.bitmap, b.nwords * 8);
	munmap(b.mem, b.size); /* the memory written at 100 % goes back now */
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
		"  --untouched    do not write every page once before tracking starts\n"
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
		} else if (!strcmp(a, "--untouched")) {
			o.untouched = true;
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
