/* SPDX-License-Identifier: MIT */
/*
 * bench/bench_track_set.c - part 2 of bench_track: the merged harvest of a dirty set.
 *
 * The dirty set (--set-mib, 8 GiB by default, resident as in part 1), three producers over
 * one range: a uffd-wp source (class CPU), and a container mapping the same memory with an
 * EMULATED device that pins one page in 1024 (class PINNED, in every harvest) and a VMM
 * device (DT_DEVICE_F_VMM) that dt_dma_log()s as many pages as the CPU writes plus 64
 * dt_dma_rw() writes (class VMM; a dt_dma_rw also writes the memory, so those pages are CPU
 * too). Timed: dt_dirty_set_harvest(). Beside it:
 *
 *   naive    every producer harvested into its own zeroed bitmap (the source, then
 *            dt_iommu_report with one bitmap per report class), then OR-ed word by word into
 *            the five classes and their union, and counted; its parts are reported apart
 *   memcpy   the physical bound: memcpy of the bytes the harvest hands out (five class
 *            bitmaps and the union)
 *
 * Not timed: writing the pages and the devices' marks, the checks. Every repetition checks
 * every class bitmap and count, and the union, against the expected pages, for ours and for
 * the naive merge. Before each timed call the caches are scrubbed as in part 1.
 */
#include <linux/vfio.h>

#include "bench_track.h"

#define IOVA_BASE (1ull << 32)
#define PIN_EVERY 1024u /* the EMULATED device pins one page in this many */
#define RW_PAGES  64u	/* dt_dma_rw writes of the VMM device per round */

#define NOUT	  (DT_NCLASSES + 1) /* the classes and their union */

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
	uint64_t naive, naive_sources, naive_cpu, naive_iommu, naive_merge, copy, faults;
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
	b->mem = map_tracked(b->size, o->untouched);
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
 * its producers took, zeroing included (the merge is the rest), and each producer's. */
static uint64_t naive_set_harvest(struct set_bench *b, uint64_t *t_cpu, uint64_t *t_iommu)
{
	struct dt_report rep = {.size = sizeof(rep), .iova = IOVA_BASE, .length = b->size};
	uint64_t t0 = now_ns(), ta, tb, t1;
	int64_t n;
	int ret;

	memset(b->cpu_in, 0, b->nwords * 8);
	for (unsigned c = 0; c < DT_REPORT_NCLASSES; c++) {
		memset(b->rc_in[c], 0, b->nwords * 8);
		rep.class_bitmap[c] = b->rc_in[c];
	}
	ta = now_ns();
	n = dt_source_harvest(b->cpu, (uint64_t)(uintptr_t)b->mem, b->npages, b->cpu_in, 0);
	tb = now_ns();
	ret = dt_iommu_report(b->iommu, &rep);
	t1 = now_ns();
	BENCH_CHECK(n >= 0, "naive: dt_source_harvest: %" PRId64, n);
	BENCH_CHECK(!ret, "naive: dt_iommu_report: %d", ret);
	*t_cpu = tb - ta;
	*t_iommu = t1 - tb;
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
	uint64_t t_ncpu[MAX_REPS], t_nio[MAX_REPS];
	uint64_t faults = 0;

	memset(res, 0, sizeof(*res));
	set_expect(b, cpu, v);
	for (int r = -1; r < (int)reps; r++) {
		const uint64_t *bits[NOUT];
		uint64_t count[NOUT], t0, t1, t2, t3, t4, t5, f0, sources, ncpu, nio;
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
		sources = naive_set_harvest(b, &ncpu, &nio);
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
		t_ncpu[r] = ncpu;
		t_nio[r] = nio;
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
	res->naive_cpu = median_u64(t_ncpu, reps);
	res->naive_iommu = median_u64(t_nio, reps);
	res->copy = median_u64(t_c, reps);
	res->faults = faults;
}

static void print_set_json(const struct opts *o, const struct set_bench *b,
			   const struct set_result *r)
{
	printf("{\"bench\":\"track_set\",\"size_mib\":%" PRIu64
	       ",\"cpu_source\":\"%s\",\"resident\":%s,\"cold_caches\":%s,\"dirty_pct\":%g,\"reps\":%u"
	       ",\"pinned_pages\":%" PRIu64 ",\"cpu_pages\":%" PRIu64 ",\"vmm_pages\":%" PRIu64
	       ",\"device_pages\":%" PRIu64 ",\"whole_pages\":%" PRIu64 ",\"total_pages\":%" PRIu64
	       ",\"harvest_ns\":%" PRIu64 ",\"harvest_min_ns\":%" PRIu64
	       ",\"harvest_max_ns\":%" PRIu64 ",\"ns_per_gib\":%.0f,\"gb_per_s\":%.2f"
	       ",\"naive_ns\":%" PRIu64 ",\"naive_sources_ns\":%" PRIu64
	       ",\"naive_cpu_source_ns\":%" PRIu64 ",\"naive_container_ns\":%" PRIu64
	       ",\"naive_merge_ns\":%" PRIu64 ",\"memcpy_bytes\":%" PRIu64 ",\"memcpy_ns\":%" PRIu64
	       ",\"naive_over_harvest\":%.3f,\"harvest_over_memcpy\":%.2f"
	       ",\"timed_faults\":%" PRIu64 "}\n",
	       b->size >> 20, dt_source_name(b->cpu), o->untouched ? "false" : "true",
	       o->warm ? "false" : "true", r->pct, o->reps, r->count[DT_CLASS_PINNED],
	       r->count[DT_CLASS_CPU], r->count[DT_CLASS_VMM], r->count[DT_CLASS_DEVICE],
	       r->count[DT_CLASS_WHOLE], r->count[DT_NCLASSES], r->harvest, r->harvest_min,
	       r->harvest_max, ns_per_gib(r->harvest, b->size), ratio(b->size, r->harvest),
	       r->naive, r->naive_sources, r->naive_cpu, r->naive_iommu, r->naive_merge,
	       NOUT * b->nwords * 8, r->copy, ratio(r->naive, r->harvest),
	       ratio(r->harvest, r->copy), r->faults);
	fflush(stdout);
}

void run_set(const struct opts *o)
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
		"\nbench_track: dirty set over %" PRIu64
		" MiB (%s): %s source + container (EMULATED "
		"device pinning %" PRIu64 " pages, VMM device), %s caches, median of %u\n"
		"%7s %9s %9s %7s %9s %10s %9s %6s %9s %9s %9s %9s %6s %8s\n",
		b.size >> 20, o->untouched ? "never touched" : "resident", dt_source_name(b.cpu),
		b.npinned, o->warm ? "warm" : "cold", o->reps, "dirty %", "cpu", "vmm", "pinned",
		"total", "harvest ms", "ns/GiB", "GB/s", "naive ms", "(sources", "+ merge)",
		"memcpy us", "n/ours", "ours/cpy");
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
