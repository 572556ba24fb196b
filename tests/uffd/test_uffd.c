/* SPDX-License-Identifier: MIT */
/*
 * tests/uffd/test_uffd.c - the userfaultfd write-protect source over this process's memory:
 *
 *   copy      a writer thread writes at random while rounds of harvest-and-copy run; after
 *             it stops and a last round, the shadow copy equals the memory byte for byte
 *   kernel    read(2) from a pipe and from a file into tracked pages marks exactly them
 *   moved     mremap, munmap, a new mapping at the old place: -ENXIO, again and again,
 *             never 0 with a clean bitmap; MADV_DONTNEED reports the zapped page
 *   exact     a known random set of pages written is exactly what a harvest gives, a second
 *             harvest gives none; a clipped target consumes pages outside it
 *   auto      DT_SOURCE_AUTO with vm_fd -1 picks uffd-wp here, and the log says why the
 *             KVM sources were passed over
 *   soft      the soft-dirty probe agrees with an independent self-test
 *
 * Exits 77 when the kernel has no async userfaultfd write-protect or no PAGEMAP_SCAN.
 * Randomized parts print their seed; replay with --seed N (or DT_TEST_SEED).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include <cmocka.h>

#include "uffd_util.h"

static uint64_t seed;

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static struct dt_source *uffd_source(void *mem, uint64_t size)
{
	struct dt_source *s = source_over(DT_SOURCE_UFFD_WP, mem, size);

	if (!s)
		fail_msg("dt_source_new(UFFD_WP): %s; log:\n%s", strerror(errno), log_text);
	assert_int_equal(dt_source_type(s), DT_SOURCE_UFFD_WP);
	assert_int_equal(dt_source_caps(s), DT_SOURCE_CAP_EXACT | DT_SOURCE_CAP_KERNEL_WRITES);
	assert_int_equal(dt_source_start(s), 0);
	return s;
}

static int64_t harvest(struct dt_source *s, void *mem, uint64_t npages, uint64_t *bits)
{
	memset(bits, 0, (npages + 63) / 64 * 8);
	return dt_source_harvest(s, (uint64_t)(uintptr_t)mem, npages, bits, 0);
}

/* ---- copy: concurrent writer, harvest-and-copy rounds ---------------------------------- */

#define COPY_SIZE (128ull << 20)

struct writer {
	volatile uint64_t *mem;
	uint64_t nwords;
	uint64_t rng;
	atomic_bool stop;
	_Atomic uint64_t writes;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		/* Bursts: a few pages hot, the rest random across the region. */
		for (int i = 0; i < 256; i++) {
			uint64_t r = splitmix(&w->rng);

			w->mem[r % w->nwords] = r;
		}
		atomic_fetch_add_explicit(&w->writes, 256, memory_order_relaxed);
	}
	return NULL;
}

/* One round; false (with what went wrong in err) instead of failing, so that the caller can
 * stop the writer first: a cmocka failure must not leave it writing into freed memory. */
static bool copy_round(struct dt_source *s, char *mem, char *shadow, uint64_t npages,
		       uint64_t *bits, uint64_t *copied, char *err, size_t errlen)
{
	int64_t n = harvest(s, mem, npages, bits);
	uint64_t set = n < 0 ? 0 : bits_count(bits, npages);

	if (n < 0 || (uint64_t)n != set) {
		snprintf(err, errlen, "harvest returned %" PRId64 " (%s), %" PRIu64 " bits set", n,
			 n < 0 ? strerror((int)-n) : "pages", set);
		return false;
	}
	for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
		for (uint64_t x = bits[w]; x; x &= x - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(x);

			memcpy(shadow + p * PAGE, mem + p * PAGE, PAGE);
		}
	}
	*copied += (uint64_t)n;
	return true;
}

static void test_copy(void **state)
{
	uint64_t npages = COPY_SIZE / PAGE, copied = 0, rounds = 0;
	char *mem = map_anon(COPY_SIZE), *shadow = map_anon(COPY_SIZE);
	uint64_t *bits = calloc((npages + 63) / 64, 8);
	struct writer w = {.mem = (volatile uint64_t *)mem, .nwords = COPY_SIZE / 8, .rng = seed};
	struct dt_source *s;
	struct timespec t0, t;
	long ms;
	char err[160] = "";
	pthread_t th;

	assert_non_null(bits);
	/* Some memory populated, most of it never touched: both kinds must be tracked. */
	for (uint64_t p = 0; p < npages; p += 3)
		mem[p * PAGE] = (char)p;
	s = uffd_source(mem, COPY_SIZE);
	memcpy(shadow, mem, COPY_SIZE); /* after start: what changes from here is reported */
	assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* At least 1.5 s and 50k writes (the writer may share a loaded CPU), at most 10 s. */
	do {
		if (!copy_round(s, mem, shadow, npages, bits, &copied, err, sizeof(err)))
			break;
		rounds++;
		usleep(200);
		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
	} while (ms < 10000 && (ms < 1500 || atomic_load(&w.writes) < 50000));
	atomic_store(&w.stop, true);
	pthread_join(th, NULL);
	if (err[0] || !copy_round(s, mem, shadow, npages, bits, &copied, err, sizeof(err)))
		fail_msg("round %" PRIu64 ": %s (seed %" PRIu64 ")", rounds, err, seed);
	printf("copy: %" PRIu64 " rounds, %" PRIu64 " writes, %" PRIu64
	       " pages copied (seed %" PRIu64 ")\n",
	       rounds, atomic_load(&w.writes), copied, seed);
	assert_true(atomic_load(&w.writes) > 0 && copied > 0);
	if (memcmp(shadow, mem, COPY_SIZE)) {
		for (uint64_t p = 0; p < npages; p++)
			if (memcmp(shadow + p * PAGE, mem + p * PAGE, PAGE))
				fail_msg("page %" PRIu64
					 " differs from its copy: a write was missed (seed %" PRIu64
					 ")",
					 p, seed);
	}
	/* Quiet now: nothing left. */
	assert_int_equal(harvest(s, mem, npages, bits), 0);
	dt_source_free(s);
	free(bits);
	munmap(mem, COPY_SIZE);
	munmap(shadow, COPY_SIZE);
}

/* ---- kernel: read(2) into tracked memory ----------------------------------------------- */

static void test_kernel_writes(void **state)
{
	uint64_t npages = 64, bits[1], want[1] = {0};
	char *mem = map_anon(npages * PAGE), *buf = malloc(3 * PAGE);
	int pfd[2];
	FILE *f = tmpfile();
	struct dt_source *s;

	assert_non_null(buf);
	assert_non_null(f);
	memset(buf, 0x5a, 3 * PAGE);
	memset(mem, 1, npages * PAGE); /* populated: the kernel writes over present pages */
	s = uffd_source(mem, npages * PAGE);

	/* A pipe: 3 pages from page 5. */
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(write(pfd[1], buf, 3 * PAGE), 3 * PAGE);
	assert_int_equal(read(pfd[0], mem + 5 * PAGE, 3 * PAGE), 3 * PAGE);
	/* A file: 2 pages at page 40 (unaligned start: touches 40, 41, 42). */
	assert_int_equal(fwrite(buf, 1, 2 * PAGE, f), 2 * PAGE);
	fflush(f);
	assert_int_equal(pread(fileno(f), mem + 40 * PAGE + 100, 2 * PAGE, 0), 2 * PAGE);
	for (uint64_t p = 5; p < 8; p++)
		bit_set(want, p);
	for (uint64_t p = 40; p < 43; p++)
		bit_set(want, p);
	assert_int_equal(harvest(s, mem, npages, bits), 6);
	expect_bitmap("read(2) into tracked pages", bits, want, npages);
	assert_int_equal(harvest(s, mem, npages, bits), 0);

	close(pfd[0]);
	close(pfd[1]);
	fclose(f);
	free(buf);
	dt_source_free(s);
	munmap(mem, npages * PAGE);
}

/* ---- moved: mremap, munmap, remap --------------------------------------------------------- */

static void expect_moved(struct dt_source *s, void *mem, uint64_t npages, const char *what)
{
	uint64_t bits[4];

	for (int i = 0; i < 2; i++) {
		int64_t n = harvest(s, mem, npages, bits);

		if (n != -ENXIO)
			fail_msg("%s: harvest %d returned %" PRId64 " (%s), expected -ENXIO", what,
				 i, n, n < 0 ? strerror((int)-n) : "pages");
	}
	if (!strstr(log_text, "unmapped or moved"))
		fail_msg("%s: the log does not say the memory moved:\n%s", what, log_text);
}

enum move_kind { MOVE_MREMAP, MOVE_UNMAP_PAGE, MOVE_REPLACE };

/* Track a fresh range, change its mapping behind the source, and expect an error. */
static void check_moved(enum move_kind kind, uint64_t npages, const char *what)
{
	uint64_t size = npages * PAGE;
	char *mem = map_anon(size), *dst = NULL;
	struct dt_source *s = uffd_source(mem, size);

	mem[3 * PAGE] = 1;
	switch (kind) {
	case MOVE_MREMAP: /* to another place, forced by MREMAP_FIXED onto a reservation */
		dst = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(dst != MAP_FAILED);
		assert_true(mremap(mem, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == dst);
		break;
	case MOVE_UNMAP_PAGE: /* one page in the middle */
		assert_int_equal(munmap(mem + 10 * PAGE, PAGE), 0);
		break;
	case MOVE_REPLACE: /* unmapped, a fresh mapping at the same address: mapped, not ours */
		assert_int_equal(munmap(mem, size), 0);
		assert_true(mmap(mem, size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == mem);
		break;
	}
	log_reset();
	expect_moved(s, mem, npages, what);
	dt_source_free(s);
	munmap(dst ? dst : mem, size);
}

static void test_moved(void **state)
{
	uint64_t npages = 64, size = npages * PAGE, bits[1], want[1] = {0};
	char *mem;
	struct dt_source *s;

	check_moved(MOVE_MREMAP, npages, "mremap");
	check_moved(MOVE_UNMAP_PAGE, npages, "munmap of a page");
	check_moved(MOVE_REPLACE, npages, "munmap and a new mapping in its place");

	mem = map_anon(size);
	/* MADV_DONTNEED keeps the mapping but zeroes the page: it must read as written. */
	memset(mem, 7, size);
	s = uffd_source(mem, size);
	assert_int_equal(madvise(mem + 9 * PAGE, PAGE, MADV_DONTNEED), 0);
	bit_set(want, 9);
	assert_int_equal(harvest(s, mem, npages, bits), 1);
	expect_bitmap("MADV_DONTNEED", bits, want, npages);
	dt_source_free(s);
	munmap(mem, size);
}

/* ---- exact: a known set in, the same set out ------------------------------------------- */

static void test_exact(void **state)
{
	const uint64_t npages = 1024, words = npages / 64;
	char *mem = map_anon(npages * PAGE);
	uint64_t bits[16], want[16], rng = seed ^ 0xe4ac7;
	struct dt_source *s;

	/* Half the pages populated before tracking starts, half never touched. */
	for (uint64_t p = 0; p < npages; p += 2)
		mem[p * PAGE] = 1;
	s = uffd_source(mem, npages * PAGE);
	for (int round = 0; round < 20; round++) {
		uint64_t nwrites = splitmix(&rng) % 200;

		memset(want, 0, sizeof(want));
		for (uint64_t i = 0; i < nwrites; i++) {
			uint64_t p = splitmix(&rng) % npages;

			mem[p * PAGE + splitmix(&rng) % PAGE] = (char)i;
			bit_set(want, p);
		}
		/* Reads never count. */
		for (uint64_t i = 0; i < 50; i++)
			(void)*(volatile char *)(mem + (splitmix(&rng) % npages) * PAGE);
		assert_int_equal(harvest(s, mem, npages, bits), bits_count(want, npages));
		expect_bitmap("written pages", bits, want, npages);
		assert_int_equal(harvest(s, mem, npages, bits), 0);
		for (uint64_t w = 0; w < words; w++)
			assert_int_equal(bits[w], 0);
	}
	/* A target covering pages [16, 80) only: pages outside are consumed, not reported. */
	mem[2 * PAGE] = mem[20 * PAGE] = mem[79 * PAGE] = mem[80 * PAGE] = mem[900 * PAGE] = 3;
	memset(bits, 0, sizeof(bits));
	assert_int_equal(dt_source_harvest(s, (uint64_t)(uintptr_t)mem + 16 * PAGE, 64, bits, 0),
			 2);
	memset(want, 0, sizeof(want));
	bit_set(want, 4);
	bit_set(want, 63);
	expect_bitmap("clipped target", bits, want, 64);
	assert_int_equal(harvest(s, mem, npages, bits), 0);
	/* Stopped and restarted: everything clean again. */
	mem[5 * PAGE] = 1;
	assert_int_equal(dt_source_stop(s), 0);
	mem[6 * PAGE] = 1;
	assert_int_equal(dt_source_start(s), 0);
	assert_int_equal(harvest(s, mem, npages, bits), 0);
	printf("exact: 20 rounds (seed %" PRIu64 ")\n", seed);
	dt_source_free(s);
	munmap(mem, npages * PAGE);
}

/* ---- auto: the choice for process memory ----------------------------------------------- */

static void test_auto(void **state)
{
	char *mem = map_anon(16 * PAGE);
	struct dt_source *s;

	log_reset();
	s = source_over(DT_SOURCE_AUTO, mem, 16 * PAGE);
	assert_non_null(s);
	if (dt_source_type(s) != DT_SOURCE_UFFD_WP)
		fail_msg("AUTO picked %s, expected uffd-wp; log:\n%s", dt_source_name(s), log_text);
	if (!strstr(log_text, "dirty source: uffd-wp (automatic)"))
		fail_msg("the log does not name the choice:\n%s", log_text);
	if (strstr(log_text, "uffd-wp passed over") || strstr(log_text, "soft-dirty passed over"))
		fail_msg("uffd-wp should be chosen before soft-dirty is even probed:\n%s",
			 log_text);
	/* The KVM sources come first and must say why they were passed over. */
	if (!strstr(log_text, "passed over"))
		fail_msg("no reason given for the sources passed over:\n%s", log_text);
	printf("auto:\n%s", log_text);
	dt_source_free(s);

	/* A region that is not mapped: uffd-wp declines with a reason, not a crash. */
	munmap(mem, 16 * PAGE);
	log_reset();
	s = source_over(DT_SOURCE_UFFD_WP, mem, 16 * PAGE);
	assert_null(s);
	if (!strstr(log_text, "not mapped"))
		fail_msg("no reason for refusing an unmapped region:\n%s", log_text);
}

/* ---- soft: probe against the reference self-test --------------------------------------- */

static void test_soft_dirty_probe(void **state)
{
	bool works = soft_dirty_works();
	char *mem = map_anon(16 * PAGE);
	struct dt_source *s;

	log_reset();
	s = source_over(DT_SOURCE_SOFT_DIRTY, mem, 16 * PAGE);
	printf("soft-dirty: reference self-test says %s, the library %s\n",
	       works ? "it works" : "it does not work", s ? "accepts it" : "refuses it");
	if (works) {
		if (!s)
			fail_msg("soft-dirty works here but the source was refused:\n%s", log_text);
		assert_int_equal(dt_source_type(s), DT_SOURCE_SOFT_DIRTY);
	} else {
		if (s)
			fail_msg("soft-dirty does not work here but the source was created");
		assert_int_equal(errno, ENODEV);
		if (!strstr(log_text, "soft-dirty compiled out or broken"))
			fail_msg("the log does not say why soft-dirty is unusable:\n%s", log_text);
	}
	dt_source_free(s);
	munmap(mem, 16 * PAGE);
}

static int setup(void **state)
{
	log_reset();
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_exact, setup),
		cmocka_unit_test_setup(test_kernel_writes, setup),
		cmocka_unit_test_setup(test_moved, setup),
		cmocka_unit_test_setup(test_copy, setup),
		cmocka_unit_test_setup(test_auto, setup),
		cmocka_unit_test_setup(test_soft_dirty_probe, setup),
	};
	char *mem;
	struct dt_source *s;
	const char *env = getenv("DT_TEST_SEED");

	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (env)
		seed = strtoull(env, NULL, 0);
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 0);
	printf("%s: seed %" PRIu64 " (replay with --seed %" PRIu64 ")\n", argv[0], seed, seed);

	/* Skip (77) where the kernel cannot do it at all. */
	log_reset();
	mem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	s = mem == MAP_FAILED ? NULL : source_over(DT_SOURCE_UFFD_WP, mem, PAGE);
	if (!s) {
		printf("uffd-wp unavailable (%s), skipping:\n%s", strerror(errno), log_text);
		return 77;
	}
	dt_source_free(s);
	munmap(mem, PAGE);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
