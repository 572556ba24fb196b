/* SPDX-License-Identifier: MIT */
/*
 * tools/workload.c - the test workload of `dirtytrack migrate`: memory, a writer, a fake DMA
 * device, and their tracking, all through the public API.
 *
 * The memory is MAP_NORESERVE anonymous memory at host address `mem`, which the dirty set
 * sees at WORKLOAD_GPA. Its initial contents are a function of the seed alone (about a
 * quarter of the pages, chosen by the seed, stay zero), so two runs with one seed start
 * identical. The writer stores 8 non-zero bytes into one page at a time, paced to the rate;
 * the device pins its ring in the container (an EMULATED device: pinned pages count as
 * perpetually dirty) and stores into it through the host mapping, as real DMA would.
 *
 * Invariant: while `running` is false no thread of the workload writes the memory. Pause
 * clears it only after joining both threads, so memory is stable when pause returns.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <linux/vfio.h>

#include "workload.h"

struct workload {
	struct workload_opts o;
	uint8_t *mem;
	uint64_t npages;
	struct dt_region region;
	struct dt_source *cpu;
	struct dt_iommu *iommu;
	struct dt_device *dma;
	struct dt_dirty_set *set;
	void **ring;	  /* host address of each ring page, from dt_pin_pages */
	uint64_t ring_at; /* first page of the ring */
	bool tracking, running;
	pthread_t writer, device;
	atomic_bool stop;
	atomic_uint_fast64_t writes, device_writes;
	atomic_uint throttle_pct; /* workload_throttle(): 0..99 */
	uint64_t rng;		  /* the writer's; kept across pauses */
	/* WORKLOAD_ZIPF: cumulative probability of ranks 0..n-1 (zipf_cdf[n-1] == 1), and the
	 * seeded bijection rank -> index: (rank * zipf_stride + zipf_offset) mod n. */
	double *zipf_cdf;
	uint64_t zipf_n, zipf_stride, zipf_offset;
};

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t next_random(uint64_t *state)
{
	return mix64(*state += 0x9e3779b97f4a7c15ull);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/*
 * Chunks of ZERO_CHUNK pages are left zero and unpopulated when their hash says so (one in
 * four); in the others, one page in sixteen is zero but populated (the engine must notice it
 * by reading it), the rest are half a page of words of the seed and half a page of words of
 * the page's hash, so that no two pages are alike. Non-zero chunks are
 * populated with one MADV_POPULATE_WRITE per run: a page fault per page costs ten times more
 * here (a PVM guest), and on an older kernel the faults just happen as the fill writes.
 */
#define ZERO_CHUNK 64u
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static bool chunk_is_zero(const struct workload *w, uint64_t chunk)
{
	return !(mix64(w->o.seed ^ ~(chunk * 0x9e3779b97f4a7c15ull)) & 3);
}

static void fill_memory(struct workload *w)
{
	uint64_t nchunks = (w->npages + ZERO_CHUNK - 1) / ZERO_CHUNK, base[WORKLOAD_PAGE / 16];

	for (uint64_t c = 0, run = 0; c <= nchunks; c++) {
		if (c < nchunks && !chunk_is_zero(w, c))
			continue;
		if (run < c) {
			uint64_t end = c * ZERO_CHUNK < w->npages ? c * ZERO_CHUNK : w->npages;

			(void)madvise(w->mem + run * ZERO_CHUNK * WORKLOAD_PAGE,
				      (end - run * ZERO_CHUNK) * WORKLOAD_PAGE,
				      MADV_POPULATE_WRITE);
		}
		run = c + 1;
	}
	/* Half a page of the seed's words, shared by every page (memcpy: fast under ASan too),
	 * and half a page of the page's own: compresses about 2:1, as guest memory often does. */
	for (unsigned i = 0; i < WORKLOAD_PAGE / 16; i++)
		base[i] = mix64(w->o.seed + i);
	for (uint64_t p = 0; p < w->npages; p++) {
		uint64_t x = mix64(w->o.seed ^ (p * 0x9e3779b97f4a7c15ull)), *words;

		if (chunk_is_zero(w, p / ZERO_CHUNK) || !(x & 15))
			continue;
		words = (uint64_t *)(w->mem + p * WORKLOAD_PAGE);
		memcpy(words + WORKLOAD_PAGE / 16, base, WORKLOAD_PAGE / 2);
		for (unsigned i = 0; i < WORKLOAD_PAGE / 16; i++) {
			x ^= x << 13; /* xorshift64: cheap, and never 0 from a non-zero start */
			x ^= x >> 7;
			x ^= x << 17;
			words[i] = x;
		}
	}
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* The Zipf table over n = the hot set or the whole region: 8 bytes a page (8 MiB for 4 GiB). */
static int zipf_setup(struct workload *w)
{
	uint64_t n = w->o.hot_pages ? w->o.hot_pages : w->npages,
		 s = w->o.seed ^ 0x2545f4914f6cdd1dull;
	double sum = 0;

	w->zipf_cdf = malloc(n * sizeof(*w->zipf_cdf));
	if (!w->zipf_cdf)
		return -ENOMEM;
	for (uint64_t k = 0; k < n; k++)
		w->zipf_cdf[k] = sum += 1.0 / (double)(k + 1);
	for (uint64_t k = 0; k < n; k++)
		w->zipf_cdf[k] /= sum;
	w->zipf_cdf[n - 1] = 1.0;
	w->zipf_n = n;
	w->zipf_offset = next_random(&s) % n;
	do
		w->zipf_stride = next_random(&s) % n | 1;
	while (n > 1 && gcd(w->zipf_stride, n) != 1);
	return 0;
}

/* The first rank whose cumulative probability reaches u (in [0, 1)), spread by the bijection. */
static uint64_t zipf_index(const struct workload *w, uint64_t r)
{
	double u = (double)(r >> 11) * 0x1.0p-53;
	uint64_t lo = 0, hi = w->zipf_n - 1;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (w->zipf_cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return (uint64_t)(((unsigned __int128)lo * w->zipf_stride + w->zipf_offset) % w->zipf_n);
}

static void write_one_page(struct workload *w)
{
	uint64_t r = next_random(&w->rng), page, *word;

	if (w->o.pattern == WORKLOAD_ZIPF) {
		page = zipf_index(w, r);
		if (w->o.hot_pages)
			page *= w->npages / w->o.hot_pages;
		r = next_random(&w->rng); /* the word within the page: independent of the rank */
	} else if (w->o.hot_pages) {
		page = (r % w->o.hot_pages) * (w->npages / w->o.hot_pages);
	} else {
		page = r % w->npages;
	}
	word = (uint64_t *)(w->mem + page * WORKLOAD_PAGE) + (r >> 40) % (WORKLOAD_PAGE / 8);
	*word = r | 1;
}

/* Pages due after t ns of writing: rate x t, or for WORKLOAD_PHASE the integral of a rate
 * alternating every phase_ms between dirty_rate (the first phase) and a tenth of it. */
static uint64_t pages_due(const struct workload *w, uint64_t t)
{
	double high = (double)w->o.dirty_rate / 1e9, low = high / 10;
	uint64_t p = w->o.phase_ms * 1000000, k, rem;

	if (w->o.pattern != WORKLOAD_PHASE)
		return (uint64_t)((double)t * high);
	k = t / p;
	rem = t % p;
	return (uint64_t)((double)((k + 1) / 2) * (double)p * high +
			  (double)(k / 2) * (double)p * low + (double)rem * (k % 2 ? low : high));
}

/* Paced by the clock: at any time about rate x elapsed (unthrottled) pages written. After a stall (a slow
 * round, a loaded machine) it catches up at most 100 ms worth, never a burst of seconds. */
static void *writer_main(void *arg)
{
	struct workload *w = arg;
	uint64_t last = now_ns(), run_ns = 0, done = 0, slack = w->o.dirty_rate / 10 + 1;

	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		uint64_t t = now_ns(), n = 0, due;

		/* A throttled writer runs (100 - pct) % of the time: its rate's clock slows. */
		run_ns += (t - last) *
			  (100 - atomic_load_explicit(&w->throttle_pct, memory_order_relaxed)) /
			  100;
		last = t;
		due = pages_due(w, run_ns);

		if (due > done + slack)
			done = due - slack;
		while (done < due) {
			write_one_page(w);
			done++;
			n++;
			if (!(n & 255) && atomic_load_explicit(&w->stop, memory_order_relaxed))
				break;
		}
		atomic_fetch_add_explicit(&w->writes, n, memory_order_relaxed);
		sleep_ns(1000000);
	}
	return NULL;
}

/* The device writes a sequence number into each ring page in turn, then rests 1 ms. */
static void *device_main(void *arg)
{
	struct workload *w = arg;
	uint64_t seq = 0;

	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		for (uint64_t i = 0; i < w->o.ring_pages; i++) {
			uint64_t *words = w->ring[i];

			seq++;
			words[seq % (WORKLOAD_PAGE / 8)] = seq;
			if (!(i & 255) && atomic_load_explicit(&w->stop, memory_order_relaxed))
				break;
		}
		atomic_fetch_add_explicit(&w->device_writes, w->o.ring_pages, memory_order_relaxed);
		sleep_ns(1000000);
	}
	return NULL;
}

static void threads_stop(struct workload *w)
{
	if (!w->running)
		return;
	atomic_store(&w->stop, true);
	if (w->o.dirty_rate)
		pthread_join(w->writer, NULL);
	if (w->o.ring_pages)
		pthread_join(w->device, NULL);
	w->running = false;
}

static int threads_start(struct workload *w)
{
	int ret;

	if (w->running)
		return 0;
	atomic_store(&w->stop, false);
	if (w->o.dirty_rate) {
		ret = pthread_create(&w->writer, NULL, writer_main, w);
		if (ret)
			return -ret;
	}
	if (w->o.ring_pages) {
		ret = pthread_create(&w->device, NULL, device_main, w);
		if (ret) {
			atomic_store(&w->stop, true);
			if (w->o.dirty_rate)
				pthread_join(w->writer, NULL);
			return -ret;
		}
	}
	w->running = true;
	return 0;
}

int workload_pause(void *opaque)
{
	threads_stop(opaque);
	return 0;
}

void workload_resume(void *opaque)
{
	/* Nothing to tell the engine if it fails: the workload just stays idle. */
	(void)threads_start(opaque);
}

/* The CPU source: uffd-wp when the kernel has it, else whatever AUTO finds (logged). */
static struct dt_source *new_cpu_source(const struct dt_region *r)
{
	struct dt_source_opts so = {.size = sizeof(so),
				    .type = DT_SOURCE_UFFD_WP,
				    .regions = r,
				    .nregions = 1,
				    .vm_fd = -1};
	struct dt_source *src = dt_source_new(&so);

	if (src || errno != ENODEV)
		return src;
	so.type = DT_SOURCE_AUTO;
	return dt_source_new(&so);
}

static int setup_tracking(struct workload *w)
{
	struct dt_dirty_set_opts dso = {
		.size = sizeof(dso), .base = WORKLOAD_GPA, .length = w->o.size};
	struct vfio_iommu_type1_dma_map map = {.argsz = sizeof(map),
					       .flags = VFIO_DMA_MAP_FLAG_READ |
							VFIO_DMA_MAP_FLAG_WRITE,
					       .vaddr = (uintptr_t)w->mem,
					       .iova = WORKLOAD_GPA,
					       .size = w->o.size};
	int ret;

	w->region = (struct dt_region){.addr = WORKLOAD_GPA, .size = w->o.size, .host = w->mem};
	w->cpu = new_cpu_source(&w->region);
	if (!w->cpu)
		return -errno;
	w->iommu = dt_iommu_new();
	if (!w->iommu)
		return -errno;
	ret = dt_vfio_ioctl(w->iommu, VFIO_IOMMU_MAP_DMA, &map);
	if (ret)
		return ret;
	w->dma = dt_device_attach(w->iommu, DT_DEVICE_EMULATED);
	if (!w->dma)
		return -errno;
	w->set = dt_dirty_set_new(&dso);
	if (!w->set)
		return -errno;
	ret = dt_dirty_set_add_source(w->set, w->cpu);
	return ret ? ret : dt_dirty_set_add_iommu(w->set, w->iommu, WORKLOAD_GPA);
}

int workload_new(const struct workload_opts *opts, struct workload **out)
{
	struct workload *w;
	int ret;

	*out = NULL;
	if (!opts->size || opts->size % WORKLOAD_PAGE || opts->size > (1ull << 46))
		return -EINVAL;
	if (opts->pattern > WORKLOAD_PHASE || (opts->pattern == WORKLOAD_PHASE && !opts->phase_ms))
		return -EINVAL;
	if (opts->hot_pages > opts->size / WORKLOAD_PAGE ||
	    opts->ring_pages > opts->size / WORKLOAD_PAGE || opts->ring_pages > (1u << 30))
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->o = *opts;
	w->npages = opts->size / WORKLOAD_PAGE;
	w->rng = opts->seed ^ 0x5bd1e9955bd1e995ull;
	w->ring_at = (w->npages - opts->ring_pages) / 2;
	w->mem = mmap(NULL, opts->size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (w->mem == MAP_FAILED) {
		ret = -errno;
		w->mem = NULL;
		goto fail;
	}
	if (opts->ring_pages && !(w->ring = calloc(opts->ring_pages, sizeof(*w->ring)))) {
		ret = -ENOMEM;
		goto fail;
	}
	if (opts->pattern == WORKLOAD_ZIPF && opts->dirty_rate && (ret = zipf_setup(w)))
		goto fail;
	fill_memory(w);
	ret = setup_tracking(w);
	if (ret)
		goto fail;
	*out = w;
	return 0;
fail:
	workload_free(w);
	return ret;
}

int workload_start(struct workload *w)
{
	int ret = dt_source_start(w->cpu);

	if (ret)
		return ret;
	w->tracking = true;
	ret = dt_iommu_dirty_start(w->iommu);
	if (ret)
		return ret;
	if (w->o.ring_pages) {
		ret = dt_pin_pages(w->dma, WORKLOAD_GPA + w->ring_at * WORKLOAD_PAGE,
				   (int)w->o.ring_pages, PROT_READ | PROT_WRITE, w->ring);
		if (ret < 0)
			return ret;
	}
	return threads_start(w);
}

void workload_free(struct workload *w)
{
	if (!w)
		return;
	threads_stop(w);
	dt_dirty_set_free(w->set);
	if (w->tracking)
		dt_source_stop(w->cpu);
	dt_source_free(w->cpu);
	dt_iommu_free(w->iommu); /* detaches the device: its pins go with it */
	if (w->mem)
		munmap(w->mem, w->o.size);
	free(w->ring);
	free(w->zipf_cdf);
	free(w);
}

struct dt_dirty_set *workload_set(const struct workload *w)
{
	return w->set;
}

const struct dt_region *workload_region(const struct workload *w)
{
	return &w->region;
}

const char *workload_source_name(const struct workload *w)
{
	return dt_source_name(w->cpu);
}

void workload_throttle(struct workload *w, unsigned pct)
{
	atomic_store(&w->throttle_pct, pct > 99 ? 99 : pct);
}

uint64_t workload_writes(const struct workload *w)
{
	return atomic_load(&w->writes);
}

uint64_t workload_device_writes(const struct workload *w)
{
	return atomic_load(&w->device_writes);
}
