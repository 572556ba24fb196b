/* SPDX-License-Identifier: MIT */
/*
 * tests/uffd/uffd_util.h - what the process-memory tracker tests share: anonymous regions,
 * sources over them, bitmap checks, a log capture, and the reference soft-dirty self-test
 * the library's probe is compared with.
 *
 * Include after <cmocka.h> (and its prerequisites).
 */
#ifndef DT_TESTS_UFFD_UTIL_H
#define DT_TESTS_UFFD_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <dirtytrack/dirtytrack.h>

#define PAGE 4096ull

static inline void *map_anon(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

static inline struct dt_source *source_over(enum dt_source_type type, void *mem, uint64_t size)
{
	struct dt_region r = {.addr = (uint64_t)(uintptr_t)mem, .size = size, .host = mem};
	struct dt_source_opts o = {
		.size = sizeof(o),
		.type = type,
		.regions = &r,
		.nregions = 1,
		.vm_fd = -1,
	};

	return dt_source_new(&o);
}

static inline bool bit_at(const uint64_t *b, uint64_t n)
{
	return b[n / 64] >> (n % 64) & 1;
}

static inline void bit_set(uint64_t *b, uint64_t n)
{
	b[n / 64] |= 1ull << (n % 64);
}

static inline uint64_t bits_count(const uint64_t *b, uint64_t nbits)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < (nbits + 63) / 64; i++)
		n += (uint64_t)__builtin_popcountll(b[i]);
	return n;
}

/* Compare a harvested bitmap with the expected one; print every difference (up to 20). */
static inline void expect_bitmap(const char *what, const uint64_t *seen, const uint64_t *want,
				 uint64_t nbits)
{
	unsigned shown = 0;

	for (uint64_t i = 0; i < nbits; i++) {
		if (bit_at(seen, i) == bit_at(want, i))
			continue;
		if (shown++ < 20)
			print_error("%s: page %" PRIu64 ": expected %s, seen %s\n", what, i,
				    bit_at(want, i) ? "dirty" : "clean",
				    bit_at(seen, i) ? "dirty" : "clean");
	}
	if (shown)
		fail_msg("%s: %u pages differ (expected %" PRIu64 " dirty, seen %" PRIu64 ")", what,
			 shown, bits_count(want, nbits), bits_count(seen, nbits));
}

/* Messages the library logs, for checks on what it says. */
static char log_text[16384];
static size_t log_len;

static inline void log_capture(void *opaque, enum dt_log_level level, const char *msg)
{
	int n = snprintf(log_text + log_len, sizeof(log_text) - log_len, "%s\n", msg);

	if (n > 0 && (size_t)n < sizeof(log_text) - log_len)
		log_len += (size_t)n;
	if (getenv("DT_TEST_VERBOSE"))
		fprintf(stderr, "dirtytrack: %s\n", msg);
}

/* Empty the capture; the callback is installed once (dt_set_log keeps every sink). */
static inline void log_reset(void)
{
	static bool installed;

	if (!installed)
		dt_set_log(log_capture, NULL, DT_LOG_DEBUG);
	installed = true;
	log_len = 0;
	log_text[0] = 0;
}

/* The reference soft-dirty self-test, written independently of the library's: true when a
 * page written after clear_refs "4" shows bit 55 in /proc/self/pagemap. */
static inline bool soft_dirty_works(void)
{
	volatile char *p = map_anon(PAGE);
	int pm = open("/proc/self/pagemap", O_RDONLY), cr = open("/proc/self/clear_refs", O_WRONLY);
	uint64_t e = 0;
	bool ok = false;

	p[0] = 1;
	if (pm >= 0 && cr >= 0 && write(cr, "4", 1) == 1) {
		p[0] = 2;
		if (pread(pm, &e, 8, (off_t)((uintptr_t)p / PAGE * 8)) == 8)
			ok = e >> 55 & 1;
	}
	if (pm >= 0)
		close(pm);
	if (cr >= 0)
		close(cr);
	munmap((void *)p, PAGE);
	return ok;
}

#endif
