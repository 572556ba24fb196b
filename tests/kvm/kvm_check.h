/* SPDX-License-Identifier: MIT */
/*
 * tests/kvm/kvm_check.h - what the KVM source tests share: random distinct page lists and
 * an exact comparison of a harvested bitmap with the pages expected, printing the first
 * differences and the seed; opening /dev/kvm or skipping. Include after <cmocka.h> and
 * ../core/test_util.h.
 */
#ifndef DT_TESTS_KVM_CHECK_H
#define DT_TESTS_KVM_CHECK_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

/* /dev/kvm opened (O_CLOEXEC) with the API version this code knows; otherwise say why and
 * exit 77, which meson counts as skipped. */
static inline int kvm_open_or_skip(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("no /dev/kvm: %s; skipped\n", strerror(errno));
		exit(77);
	}
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		printf("unexpected KVM API version; skipped\n");
		exit(77);
	}
	return fd;
}

static inline bool bit_test(const uint64_t *b, uint64_t n)
{
	return b[n / 64] >> (n % 64) & 1;
}

static inline void bit_set(uint64_t *b, uint64_t n)
{
	b[n / 64] |= 1ull << (n % 64);
}

/* n distinct random pages in [lo, hi), also set in want (which the caller zeroed or not). */
static inline void random_pages(uint32_t *pages, unsigned n, uint32_t lo, uint32_t hi,
				uint64_t *want)
{
	uint64_t *seen = calloc((hi + 63) / 64, 8);

	assert_non_null(seen);
	assert_true(n <= hi - lo);
	for (unsigned i = 0; i < n;) {
		uint32_t p = lo + (uint32_t)rng_below(hi - lo);

		if (bit_test(seen, p))
			continue;
		bit_set(seen, p);
		if (want)
			bit_set(want, p);
		pages[i++] = p;
	}
	free(seen);
}

/* Fail unless got == want over npages bits; print up to 8 differing pages. */
static inline void check_bitmap(const char *what, const uint64_t *got, const uint64_t *want,
				uint64_t npages, int64_t reported)
{
	uint64_t nwant = 0, bad = 0;

	for (uint64_t w = 0; w < (npages + 63) / 64; w++)
		nwant += (uint64_t)__builtin_popcountll(want[w]);
	for (uint64_t p = 0; p < npages; p++) {
		if (bit_test(got, p) == bit_test(want, p))
			continue;
		if (bad++ < 8)
			print_error("%s: page %" PRIu64 " (0x%" PRIx64 "): expected %s, seen %s\n",
				    what, p, p << 12, bit_test(want, p) ? "dirty" : "clean",
				    bit_test(got, p) ? "dirty" : "clean");
	}
	if (bad || reported != (int64_t)nwant) {
		print_error("%s: %" PRIu64 " pages differ; %" PRIu64 " expected dirty, harvest "
			    "returned %" PRId64 "; seed %" PRIu64 "\n",
			    what, bad, nwant, reported, test_seed);
		fail();
	}
}

#endif
