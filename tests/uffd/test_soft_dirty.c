/* SPDX-License-Identifier: MIT */
/*
 * tests/uffd/test_soft_dirty.c - the soft-dirty source where soft-dirty works: exactly the
 * pages written are reported, a second harvest reports none, read(2) into memory counts,
 * munmap gives -ENXIO, and a second started soft-dirty source is refused (clear_refs is
 * process-wide). Exits 77 where the reference self-test says soft-dirty does not work (a
 * kernel without CONFIG_MEM_SOFT_DIRTY); test_uffd checks the probe agrees with it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "uffd_util.h"

#define NPAGES 256ull

static void test_exact(void **state)
{
	char *mem = map_anon(NPAGES * PAGE), *other = map_anon(PAGE);
	uint64_t bits[NPAGES / 64], want[NPAGES / 64] = {0};
	struct dt_source *s, *s2;
	int pfd[2];
	char buf[100] = {1};

	memset(mem, 1, NPAGES * PAGE);
	s = source_over(DT_SOURCE_SOFT_DIRTY, mem, NPAGES * PAGE);
	assert_non_null(s);
	assert_int_equal(dt_source_start(s), 0);
	for (uint64_t p = 3; p < NPAGES; p += 17) {
		mem[p * PAGE + 5] = 2;
		bit_set(want, p);
	}
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(write(pfd[1], buf, sizeof(buf)), sizeof(buf));
	assert_int_equal(read(pfd[0], mem + 200 * PAGE, sizeof(buf)), sizeof(buf));
	bit_set(want, 200);
	memset(bits, 0, sizeof(bits));
	assert_int_equal(dt_source_harvest(s, (uint64_t)(uintptr_t)mem, NPAGES, bits, 0),
			 bits_count(want, NPAGES));
	expect_bitmap("soft-dirty pages", bits, want, NPAGES);
	memset(bits, 0, sizeof(bits));
	assert_int_equal(dt_source_harvest(s, (uint64_t)(uintptr_t)mem, NPAGES, bits, 0), 0);

	s2 = source_over(DT_SOURCE_SOFT_DIRTY, other, PAGE);
	assert_non_null(s2);
	assert_int_equal(dt_source_start(s2), -EBUSY);
	dt_source_free(s2);

	assert_int_equal(munmap(mem + 7 * PAGE, PAGE), 0);
	assert_int_equal(dt_source_harvest(s, (uint64_t)(uintptr_t)mem, NPAGES, bits, 0), -ENXIO);
	close(pfd[0]);
	close(pfd[1]);
	dt_source_free(s);
	munmap(mem, NPAGES * PAGE);
	munmap(other, PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact),
	};

	log_reset();
	if (!soft_dirty_works()) {
		printf("soft-dirty does not work on this kernel (a written page shows no bit 55): skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
