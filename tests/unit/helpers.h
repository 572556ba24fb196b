/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/helpers.h - what the unit tests of the container share: a fixture (one
 * container per test, guest memory released at teardown), VFIO ioctl wrappers (map, unmap,
 * dirty start/stop, GET_BITMAP), bit helpers for caller bitmaps at any byte address, and
 * checks that print what was expected, what was seen, the context and the last library
 * message before failing the cmocka test.
 *
 * Expected bitmaps are written as page lists: "0-3,7,64" means bits 0..3, 7 and 64; "" is
 * no bit set. Include after <cmocka.h> and its prerequisites.
 */
#ifndef DT_TESTS_UNIT_HELPERS_H
#define DT_TESTS_UNIT_HELPERS_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#define PG	  ((uint64_t)4096)
#define IOVA_BASE ((uint64_t)0x100000000) /* 4 GiB: where the tests put their first mapping */
#define RW	  (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

/* ---- failure reporting ------------------------------------------------------------------ */

/* Free-form context printed with any failure ("scenario 3: after unpin"). */
__attribute__((format(printf, 1, 2))) void ctx_set(const char *fmt, ...);

void check_failed(const char *file, int line, const char *what, int64_t expected, int64_t seen);

/* EXPECT_EQ(seen, expected): compared as 64-bit values; errnos are printed by name. */
#define EXPECT_EQ(seen, expected)                                                                  \
	do {                                                                                       \
		int64_t seen_ = (int64_t)(seen), exp_ = (int64_t)(expected);                       \
		if (seen_ != exp_)                                                                 \
			check_failed(__FILE__, __LINE__, #seen, exp_, seen_);                      \
	} while (0)

#define EXPECT_TRUE(cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			check_failed(__FILE__, __LINE__, #cond " (1 = true)", 1, 0);               \
	} while (0)

/* ---- caller bitmaps (little-endian u64 words, read byte by byte: any alignment) ---------- */

static inline bool bit_test(const void *bm, uint64_t n)
{
	return (((const uint8_t *)bm)[n / 8] >> (n % 8)) & 1;
}

static inline void bit_set(void *bm, uint64_t n)
{
	((uint8_t *)bm)[n / 8] |= (uint8_t)(1u << (n % 8));
}

static inline void bits_set(void *bm, uint64_t first, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		bit_set(bm, first + i);
}

/* Bytes of a caller bitmap of nbits: whole u64 words (the VFIO rule). */
static inline uint64_t bm_bytes(uint64_t nbits)
{
	return (nbits + 63) / 64 * 8;
}

uint64_t bits_count(const void *bm, uint64_t nbits);

/* Set the bits of a page list ("0-3,7"; "" none) in bm. */
void bits_from_spec(void *bm, const char *spec);

/* A zeroed bitmap of nbits (whole words, at least one); free() it. */
uint8_t *bm_new(uint64_t nbits);

/* Compare nbits of seen with expected; on mismatch print both as page lists and fail. */
void expect_bits(const char *file, int line, const char *what, const void *seen,
		 const void *expected, uint64_t nbits);
#define EXPECT_BITS(seen, expected, nbits)                                                         \
	expect_bits(__FILE__, __LINE__, #seen, (seen), (expected), (nbits))
void expect_bits_spec(const char *file, int line, const char *what, const void *seen,
		      uint64_t nbits, const char *spec);
#define EXPECT_BITS_SPEC(seen, nbits, spec)                                                        \
	expect_bits_spec(__FILE__, __LINE__, #seen, (seen), (nbits), (spec))

/* ---- fixture ------------------------------------------------------------------------------ */

/* cmocka setup/teardown: *state is a new container; teardown frees it and guest memory. */
int fixture_setup(void **state);
int fixture_teardown(void **state);

/* A cmocka test with the container fixture. */
#define UT(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

/* Anonymous private RW memory of `bytes`, released at teardown. Aborts the test on failure. */
void *guest_mem(uint64_t bytes);

/* ---- VFIO wrappers: each returns what dt_vfio_ioctl returned ---------------------------- */

int vfio_map(struct dt_iommu *io, void *vaddr, uint64_t iova, uint64_t size, uint32_t flags);
/* New guest memory of npages mapped at iova with flags; asserts success; the host address. */
void *map_region_flags(struct dt_iommu *io, uint64_t iova, uint64_t npages, uint32_t flags);
static inline void *map_region(struct dt_iommu *io, uint64_t iova, uint64_t npages)
{
	return map_region_flags(io, iova, npages, RW);
}
int vfio_unmap(struct dt_iommu *io, uint64_t iova, uint64_t size, uint32_t flags,
	       uint64_t *unmapped);
int vfio_unmap_bitmap(struct dt_iommu *io, uint64_t iova, uint64_t size, uint64_t pgsize, void *bm,
		      uint64_t bm_size, uint64_t *unmapped);
int vfio_dirty(struct dt_iommu *io, uint32_t flags);
void tracking_start(struct dt_iommu *io); /* asserts success */
int vfio_get_bitmap(struct dt_iommu *io, uint64_t iova, uint64_t size, uint64_t pgsize, void *bm,
		    uint64_t bm_size);

/* GET_BITMAP of npages from iova into a zeroed bitmap: expect success and exactly spec. */
void expect_report(const char *file, int line, struct dt_iommu *io, uint64_t iova, uint64_t npages,
		   const char *spec);
#define EXPECT_REPORT(io, iova, npages, spec)                                                      \
	expect_report(__FILE__, __LINE__, (io), (iova), (npages), (spec))

/* ---- native API wrappers ----------------------------------------------------------------- */

/* dt_iommu_report with the given fields; counts copied out when not NULL. */
int native_report(struct dt_iommu *io, uint64_t iova, uint64_t length, uint64_t pgsize,
		  uint32_t flags, void *bm, uint64_t bm_size, struct dt_report_counts *counts);

/* dt_iommu_report at the container page into a zeroed bitmap: expect 0 and exactly spec. */
void expect_native(const char *file, int line, struct dt_iommu *io, uint64_t iova, uint64_t npages,
		   uint32_t flags, const char *spec, struct dt_report_counts *counts);
#define EXPECT_NATIVE(io, iova, npages, flags, spec, counts)                                       \
	expect_native(__FILE__, __LINE__, (io), (iova), (npages), (flags), (spec), (counts))

struct dt_device *attach(struct dt_iommu *io, enum dt_device_kind kind); /* asserts */

/* ---- randomness -------------------------------------------------------------------------- */

/* Seed from --seed N, DT_TEST_SEED or the clock; printed. */
void seed_init(int argc, char **argv);
uint64_t seed_value(void);
uint64_t rng_next(void);
static inline uint64_t rng_below(uint64_t n)
{
	return rng_next() % n;
}

#endif
