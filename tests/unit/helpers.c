/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/helpers.c - the shared fixture, VFIO wrappers and checks of tests/unit (see
 * helpers.h). The last message the library logged is kept and printed with a failure: it
 * says why a call was rejected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static char ctx_buf[256];
static char last_msg[512];
static uint64_t seed, rng_state;
static bool seeded;

/* Guest memory to release at teardown. */
#define MAX_GUEST 256
static struct {
	void *addr;
	uint64_t len;
} guests[MAX_GUEST];
static unsigned nguests;

void ctx_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx_buf, sizeof(ctx_buf), fmt, ap);
	va_end(ap);
}

static const char *errno_name(int64_t v)
{
	static const struct {
		int e;
		const char *name;
	} names[] = {{EINVAL, "-EINVAL"},	{EEXIST, "-EEXIST"}, {EFAULT, "-EFAULT"},
		     {EPERM, "-EPERM"},		{ENOTTY, "-ENOTTY"}, {E2BIG, "-E2BIG"},
		     {EOVERFLOW, "-EOVERFLOW"}, {ENOMEM, "-ENOMEM"}, {EBUSY, "-EBUSY"},
		     {ENOSPC, "-ENOSPC"}};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (v == -names[i].e)
			return names[i].name;
	return "";
}

static void print_context(void)
{
	if (ctx_buf[0])
		print_error("  context: %s\n", ctx_buf);
	if (last_msg[0])
		print_error("  last library message: %s\n", last_msg);
	if (seeded)
		print_error("  seed: %" PRIu64 " (replay with --seed %" PRIu64 ")\n", seed, seed);
}

void check_failed(const char *file, int line, const char *what, int64_t expected, int64_t seen)
{
	print_error("%s:%d: %s\n  expected: %" PRId64 " (0x%" PRIx64 ") %s\n  seen:     %" PRId64
		    " (0x%" PRIx64 ") %s\n",
		    file, line, what, expected, (uint64_t)expected, errno_name(expected), seen,
		    (uint64_t)seen, errno_name(seen));
	print_context();
	fail();
}

/* ---- bitmaps -------------------------------------------------------------------------------- */

uint64_t bits_count(const void *bm, uint64_t nbits)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < nbits; i++)
		n += bit_test(bm, i);
	return n;
}

void bits_from_spec(void *bm, const char *spec)
{
	const char *p = spec;

	while (*p) {
		char *end;
		uint64_t lo = strtoull(p, &end, 0), hi = lo;

		if (end == p) {
			print_error("bad page list \"%s\"\n", spec);
			fail();
		}
		p = end;
		if (*p == '-') {
			hi = strtoull(p + 1, &end, 0);
			p = end;
		}
		bits_set(bm, lo, hi - lo + 1);
		if (*p == ',')
			p++;
	}
}

uint8_t *bm_new(uint64_t nbits)
{
	uint8_t *bm = calloc(1, nbits ? bm_bytes(nbits) : 8);

	assert_non_null(bm);
	return bm;
}

/* Print the set bits of bm in [from, nbits) as a page list, at most ~40 ranges. */
static void print_page_list(const char *label, const void *bm, uint64_t from, uint64_t nbits)
{
	char buf[512];
	size_t len = 0;
	unsigned ranges = 0;

	buf[0] = 0;
	for (uint64_t i = from; i < nbits; i++) {
		uint64_t j = i;

		if (!bit_test(bm, i))
			continue;
		while (j + 1 < nbits && bit_test(bm, j + 1))
			j++;
		if (++ranges > 40) {
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, ",...");
			break;
		}
		if (j == i)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%" PRIu64,
						len ? "," : "", i);
		else
			len += (size_t)snprintf(buf + len, sizeof(buf) - len,
						"%s%" PRIu64 "-%" PRIu64, len ? "," : "", i, j);
		if (len >= sizeof(buf) - 32)
			break;
		i = j;
	}
	print_error("  %s (%" PRIu64 " bits set in all): \"%s\"\n", label, bits_count(bm, nbits),
		    buf);
}

void expect_bits(const char *file, int line, const char *what, const void *seen,
		 const void *expected, uint64_t nbits)
{
	uint64_t bad = 0, first = 0;

	for (uint64_t i = 0; i < nbits; i++)
		if (bit_test(seen, i) != bit_test(expected, i) && !bad++)
			first = i;
	if (!bad)
		return;
	print_error("%s:%d: bitmap %s of %" PRIu64 " bits: %" PRIu64
		    " bits differ, the first is bit %" PRIu64 " (expected %d, seen %d)\n",
		    file, line, what, nbits, bad, first, bit_test(expected, first),
		    bit_test(seen, first));
	print_page_list("expected", expected, 0, nbits);
	print_page_list("seen    ", seen, 0, nbits);
	if (first >= 64) {
		print_error("  from bit %" PRIu64 " on:\n", first & ~(uint64_t)63);
		print_page_list("expected", expected, first & ~(uint64_t)63, nbits);
		print_page_list("seen    ", seen, first & ~(uint64_t)63, nbits);
	}
	print_context();
	fail();
}

void expect_bits_spec(const char *file, int line, const char *what, const void *seen,
		      uint64_t nbits, const char *spec)
{
	uint8_t *exp = bm_new(nbits);

	bits_from_spec(exp, spec);
	expect_bits(file, line, what, seen, exp, nbits);
	free(exp);
}

/* ---- fixture ------------------------------------------------------------------------------- */

static void log_keep(void *opaque, enum dt_log_level level, const char *msg)
{
	snprintf(last_msg, sizeof(last_msg), "%s", msg);
}

int fixture_setup(void **state)
{
	struct dt_iommu *io;

	static bool log_installed;

	/* Once per process: the library keeps every record it was given. */
	if (!log_installed)
		dt_set_log(log_keep, NULL, DT_LOG_DEBUG);
	log_installed = true;
	ctx_buf[0] = 0;
	last_msg[0] = 0;
	io = dt_iommu_new();
	if (!io)
		return -1;
	*state = io;
	return 0;
}

int fixture_teardown(void **state)
{
	dt_iommu_free(*state);
	*state = NULL;
	while (nguests) {
		nguests--;
		munmap(guests[nguests].addr, guests[nguests].len);
	}
	return 0;
}

void *guest_mem(uint64_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	assert_true(nguests < MAX_GUEST);
	guests[nguests].addr = p;
	guests[nguests].len = bytes;
	nguests++;
	return p;
}

struct dt_device *attach(struct dt_iommu *io, enum dt_device_kind kind)
{
	struct dt_device *dev = dt_device_attach(io, kind);

	if (!dev) {
		print_error("dt_device_attach(kind %d) failed: %s\n", (int)kind, last_msg);
		fail();
	}
	return dev;
}

/* ---- VFIO ---------------------------------------------------------------------------------- */

int vfio_map(struct dt_iommu *io, void *vaddr, uint64_t iova, uint64_t size, uint32_t flags)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = flags,
		.vaddr = (uint64_t)(uintptr_t)vaddr,
		.iova = iova,
		.size = size,
	};

	return dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &map);
}

void *map_region_flags(struct dt_iommu *io, uint64_t iova, uint64_t npages, uint32_t flags)
{
	void *host = guest_mem(npages * PG);
	int ret = vfio_map(io, host, iova, npages * PG, flags);

	if (ret) {
		ctx_set("MAP_DMA iova 0x%" PRIx64 " pages %" PRIu64 " flags 0x%x", iova, npages,
			flags);
		check_failed(__FILE__, __LINE__, "map_region", 0, ret);
	}
	return host;
}

int vfio_unmap(struct dt_iommu *io, uint64_t iova, uint64_t size, uint32_t flags,
	       uint64_t *unmapped)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.flags = flags,
		.iova = iova,
		.size = size,
	};
	int ret = dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, &unmap);

	if (unmapped)
		*unmapped = unmap.size;
	return ret;
}

int vfio_unmap_bitmap(struct dt_iommu *io, uint64_t iova, uint64_t size, uint64_t pgsize, void *bm,
		      uint64_t bm_size, uint64_t *unmapped)
{
	struct {
		struct vfio_iommu_type1_dma_unmap hdr;
		struct vfio_bitmap bitmap;
	} arg;
	int ret;

	memset(&arg, 0, sizeof(arg));
	arg.hdr.argsz = sizeof(arg);
	arg.hdr.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
	arg.hdr.iova = iova;
	arg.hdr.size = size;
	arg.bitmap.pgsize = pgsize;
	arg.bitmap.size = bm_size;
	arg.bitmap.data = bm;
	ret = dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, &arg);
	if (unmapped)
		*unmapped = arg.hdr.size;
	return ret;
}

int vfio_dirty(struct dt_iommu *io, uint32_t flags)
{
	struct vfio_iommu_type1_dirty_bitmap arg = {.argsz = sizeof(arg), .flags = flags};

	return dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &arg);
}

void tracking_start(struct dt_iommu *io)
{
	EXPECT_EQ(vfio_dirty(io, VFIO_IOMMU_DIRTY_PAGES_FLAG_START), 0);
}

int vfio_get_bitmap(struct dt_iommu *io, uint64_t iova, uint64_t size, uint64_t pgsize, void *bm,
		    uint64_t bm_size)
{
	struct {
		struct vfio_iommu_type1_dirty_bitmap hdr;
		struct vfio_iommu_type1_dirty_bitmap_get get;
	} arg;

	memset(&arg, 0, sizeof(arg));
	arg.hdr.argsz = sizeof(arg);
	arg.hdr.flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	arg.get.iova = iova;
	arg.get.size = size;
	arg.get.bitmap.pgsize = pgsize;
	arg.get.bitmap.size = bm_size;
	arg.get.bitmap.data = bm;
	return dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, &arg);
}

void expect_report(const char *file, int line, struct dt_iommu *io, uint64_t iova, uint64_t npages,
		   const char *spec)
{
	uint8_t *bm = bm_new(npages);
	int ret = vfio_get_bitmap(io, iova, npages * PG, PG, bm, bm_bytes(npages));

	if (ret)
		check_failed(file, line, "GET_BITMAP", 0, ret);
	expect_bits_spec(file, line, "GET_BITMAP", bm, npages, spec);
	free(bm);
}

/* ---- native -------------------------------------------------------------------------------- */

int native_report(struct dt_iommu *io, uint64_t iova, uint64_t length, uint64_t pgsize,
		  uint32_t flags, void *bm, uint64_t bm_size, struct dt_report_counts *counts)
{
	struct dt_report rep = {
		.size = sizeof(rep),
		.iova = iova,
		.length = length,
		.pgsize = pgsize,
		.flags = flags,
		.bitmap = bm,
		.bitmap_size = bm_size,
	};
	int ret = dt_iommu_report(io, &rep);

	if (counts)
		*counts = rep.counts;
	return ret;
}

void expect_native(const char *file, int line, struct dt_iommu *io, uint64_t iova, uint64_t npages,
		   uint32_t flags, const char *spec, struct dt_report_counts *counts)
{
	uint8_t *bm = bm_new(npages);
	int ret = native_report(io, iova, npages * PG, 0, flags, bm, bm_bytes(npages), counts);

	if (ret)
		check_failed(file, line, "dt_iommu_report", 0, ret);
	expect_bits_spec(file, line, "dt_iommu_report", bm, npages, spec);
	free(bm);
}

/* ---- randomness ---------------------------------------------------------------------------- */

void seed_init(int argc, char **argv)
{
	const char *env = getenv("DT_TEST_SEED");

	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (env)
		seed = strtoull(env, NULL, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strncmp(argv[i], "--seed=", 7))
			seed = strtoull(argv[i] + 7, NULL, 0);
	}
	printf("%s: seed %" PRIu64 " (replay with --seed %" PRIu64 ")\n", argv[0], seed, seed);
	fflush(stdout);
	rng_state = seed;
	seeded = true;
}

uint64_t seed_value(void)
{
	return seed;
}

uint64_t rng_next(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
