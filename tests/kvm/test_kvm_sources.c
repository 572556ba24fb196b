/* SPDX-License-Identifier: MIT */
/*
 * tests/kvm/test_kvm_sources.c - the KVM dirty log and dirty ring sources on a real VM.
 *
 * The VM: one 16 MiB memslot at guest-physical 0 and one vCPU in 32-bit protected mode,
 * flat segments and no paging, set up through KVM_SET_SREGS (no GDT in guest memory). The
 * guest, at 0x1000, increments one byte at each address of a list (ESI = the list, ECX =
 * its length) and halts:
 *
 *	1000: e3 05	jecxz 1007
 *	1002: ad	lodsd			; eax = *esi++ (a read: dirties nothing)
 *	1003: fe 00	inc byte [eax]		; the only guest write
 *	1005: e2 fb	loop 1002
 *	1007: f4	hlt
 *	1008: eb fd	jmp 1007
 *
 * It uses no stack and the host writes the list, so the guest writes exactly the listed
 * pages, chosen at and above 64 KiB, away from the code (page 1) and the list (pages 2-3).
 * Guest writes take ~2 us here (kvm_pvm emulates): page counts stay in the thousands.
 * The dirty-ring tests also
 * check what happens when a host lets a ring overflow (kvm_pvm does).
 * Exits 77 without /dev/kvm, or (per test) without the capability tested.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../core/test_util.h"
#include "../../vmm/flat32.h"
#include "kvm_check.h"
#include <dirtytrack/track.h>

#define MEM_SIZE   (16ull << 20)
#define NPAGES	   (MEM_SIZE >> 12)
#define CODE_GPA   0x1000u
#define LIST_GPA   0x2000u
#define LIST_MAX   2048u /* 8 KiB of addresses: pages 2-3 */
#define FIRST_PAGE 16u	 /* guest writes go to pages [16, NPAGES) */

static const uint8_t guest_code[] = {0xe3, 0x05, 0xad, 0xfe, 0x00, 0xe2, 0xfb, 0xf4, 0xeb, 0xfd};

static int kvm_fd = -1;

struct vm {
	int fd, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem;
	struct dt_region region;
	uint32_t ring_entries;
	unsigned ring_full_exits;
};

static void vcpu_setup(struct vm *vm)
{
	struct kvm_sregs sregs;

	assert_int_equal(ioctl(vm->vcpu, KVM_GET_SREGS, &sregs), 0);
	flat32_sregs(&sregs);
	assert_int_equal(ioctl(vm->vcpu, KVM_SET_SREGS, &sregs), 0);
}

/* ring: enable the dirty ring with *ring entries first (0: no ring). */
static bool vm_create(struct vm *vm, uint32_t ring)
{
	struct kvm_userspace_memory_region m = {0};
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	assert_true(vm->fd >= 0);
	ioctl(vm->fd, KVM_SET_TSS_ADDR, 0xfffbd000ul); /* VMX without unrestricted guest */
	if (ring) {
		vm->ring_entries = ring;
		ret = dt_kvm_dirty_ring_enable(vm->fd, &vm->ring_entries);
		if (ret == -ENOTSUP || ret == -EINVAL) {
			close(vm->fd);
			return false;
		}
		assert_int_equal(ret, 0);
	}
	vm->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(vm->mem != MAP_FAILED);
	memcpy(vm->mem + CODE_GPA, guest_code, sizeof(guest_code));
	m.slot = 0;
	m.guest_phys_addr = 0;
	m.memory_size = MEM_SIZE;
	m.userspace_addr = (uintptr_t)vm->mem;
	assert_int_equal(ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &m), 0);
	vm->region = (struct dt_region){.addr = 0, .size = MEM_SIZE, .host = vm->mem, .slot = 0};
	vm->vcpu = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
	assert_true(vm->vcpu >= 0);
	vm->run_size = (size_t)ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
	assert_true(vm->run != MAP_FAILED);
	vcpu_setup(vm);
	return true;
}

static void vm_destroy(struct vm *vm)
{
	munmap(vm->run, vm->run_size);
	munmap(vm->mem, MEM_SIZE);
	close(vm->vcpu);
	close(vm->fd);
}

static struct dt_source *vm_source(struct vm *vm, enum dt_source_type type)
{
	struct dt_source_opts o = {
		.size = sizeof(o),
		.type = type,
		.regions = &vm->region,
		.nregions = 1,
		.vm_fd = vm->fd,
		.vcpu_fds = &vm->vcpu,
		.nvcpus = 1,
		.ring_entries = vm->ring_entries,
	};
	struct dt_source *src = dt_source_new(&o);

	assert_non_null(src);
	assert_int_equal(dt_source_start(src), 0);
	return src;
}

/* The guest increments one byte in each of pages[0..n); src handles DIRTY_RING_FULL.
 * Returns 0, or what dt_source_kvm_ring_full() failed with (the vCPU cannot go on). */
static int guest_write(struct vm *vm, struct dt_source *src, const uint32_t *pages, unsigned n)
{
	struct kvm_regs regs = {.rip = CODE_GPA, .rsi = LIST_GPA, .rcx = n, .rflags = 2};
	uint32_t *list = (uint32_t *)(vm->mem + LIST_GPA);
	unsigned fulls = 0;

	assert_true(n <= LIST_MAX);
	for (unsigned i = 0; i < n; i++)
		list[i] = (pages[i] << 12) + (i % 4096);
	assert_int_equal(ioctl(vm->vcpu, KVM_SET_REGS, &regs), 0);
	for (;;) {
		int ret = ioctl(vm->vcpu, KVM_RUN, 0);

		if (ret < 0 && errno == EINTR)
			continue;
		assert_int_equal(ret, 0);
		if (vm->run->exit_reason == KVM_EXIT_HLT)
			break;
		if (vm->run->exit_reason == KVM_EXIT_DIRTY_RING_FULL) {
			assert_non_null(src);
			ret = dt_source_kvm_ring_full(src);
			if (ret)
				return ret;
			vm->ring_full_exits++;
			/* n writes can fill a ring of >= 256 entries at most n / 64 times */
			if (++fulls > n)
				fail_msg("vCPU spins on ring-full exits (%u) and nobody notices",
					 fulls);
			continue;
		}
		fail_msg("unexpected exit reason %u", vm->run->exit_reason);
	}
	assert_int_equal(ioctl(vm->vcpu, KVM_GET_REGS, &regs), 0);
	EXPECT_EQ(regs.rcx, 0);
	return 0;
}

static int64_t harvest(struct dt_source *src, uint64_t *got, uint32_t flags)
{
	memset(got, 0, NPAGES / 8);
	return dt_source_harvest(src, 0, NPAGES, got, flags);
}

/* Rounds: write a random set, harvest exactly it; harvest again: nothing. */
static void rounds(struct vm *vm, struct dt_source *src, unsigned per_round, uint32_t flags)
{
	static uint64_t want[NPAGES / 64], got[NPAGES / 64];
	static uint32_t pages[LIST_MAX];

	for (unsigned round = 0; round < 4; round++) {
		ctx_set("%s round %u, %u pages", dt_source_name(src), round, per_round);
		memset(want, 0, sizeof(want));
		random_pages(pages, per_round, FIRST_PAGE, NPAGES, want);
		assert_int_equal(guest_write(vm, src, pages, per_round), 0);
		check_bitmap(test_ctx, got, want, NPAGES, harvest(src, got, flags));
		if (flags & DT_HARVEST_DEFER_CLEAR)
			assert_int_equal(dt_source_clear(src, 0, MEM_SIZE), 0);
		memset(want, 0, sizeof(want));
		check_bitmap("nothing written since", got, want, NPAGES, harvest(src, got, 0));
	}
}

static void test_log(void **state)
{
	struct vm vm;
	struct dt_source *src;
	uint32_t pages[200];

	vm_create(&vm, 0);
	/* written before start: not reported */
	random_pages(pages, 200, FIRST_PAGE, NPAGES, NULL);
	assert_int_equal(guest_write(&vm, NULL, pages, 200), 0);
	src = vm_source(&vm, DT_SOURCE_KVM_LOG);
	EXPECT_EQ(dt_source_type(src), DT_SOURCE_KVM_LOG);
	rounds(&vm, src, 500, 0);
	assert_int_equal(dt_source_stop(src), 0);
	dt_source_free(src);
	vm_destroy(&vm);
}

static void test_log_defer_clear(void **state)
{
	static uint64_t want[NPAGES / 64], got[NPAGES / 64];
	uint32_t pages[300];
	bool manual = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0;
	struct dt_source *src;
	struct vm vm;

	vm_create(&vm, 0);
	src = vm_source(&vm, DT_SOURCE_KVM_LOG);
	rounds(&vm, src, 300, DT_HARVEST_DEFER_CLEAR);

	/* Not cleared: reported again (manual protect), or already re-armed by GET. */
	memset(want, 0, sizeof(want));
	random_pages(pages, 300, FIRST_PAGE, NPAGES, want);
	assert_int_equal(guest_write(&vm, src, pages, 300), 0);
	check_bitmap("deferred", got, want, NPAGES, harvest(src, got, DT_HARVEST_DEFER_CLEAR));
	if (!manual)
		memset(want, 0, sizeof(want));
	check_bitmap("deferred, harvested again", got, want, NPAGES,
		     harvest(src, got, DT_HARVEST_DEFER_CLEAR));
	/* Clear the lower half: only the upper half's pages remain. */
	assert_int_equal(dt_source_clear(src, 0, MEM_SIZE / 2), 0);
	memset(want, 0, NPAGES / 16);
	check_bitmap("upper half", got, want, NPAGES, harvest(src, got, DT_HARVEST_DEFER_CLEAR));
	assert_int_equal(dt_source_clear(src, 0, MEM_SIZE), 0);
	memset(want, 0, sizeof(want));
	check_bitmap("all cleared", got, want, NPAGES, harvest(src, got, 0));
	dt_source_free(src);
	vm_destroy(&vm);
}

/* A ring larger than what a round writes: exact rounds, no ring-full exit needed. */
static void test_ring(void **state)
{
	struct dt_source *src;
	struct vm vm;

	if (!vm_create(&vm, 4096))
		skip();
	EXPECT_TRUE(vm.ring_entries >= 4096 && !(vm.ring_entries & (vm.ring_entries - 1)));
	src = vm_source(&vm, DT_SOURCE_KVM_RING);
	EXPECT_EQ(dt_source_type(src), DT_SOURCE_KVM_RING);
	rounds(&vm, src, 2000, 0);
	EXPECT_TRUE(dt_source_caps(src) & DT_SOURCE_CAP_EXACT);
	dt_source_free(src);
	vm_destroy(&vm);
}

/* got must hold every page of want; returns whether it holds exactly those. */
static bool superset(const uint64_t *got, const uint64_t *want, uint64_t npages)
{
	bool exact = true;

	for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
		if (want[w] & ~got[w])
			fail_msg("page %llu written, not harvested; seed %llu",
				 (unsigned long long)(w * 64 +
						      (unsigned)__builtin_ctzll(want[w] & ~got[w])),
				 (unsigned long long)test_seed);
		exact &= got[w] == want[w];
	}
	return exact;
}

/*
 * The smallest ring and a burst of 8x its size: the vCPU must exit ring-full and
 * dt_source_kvm_ring_full() drain it. A kernel that honours the soft limit gives an exact
 * harvest. One that lets the ring overflow (kvm_pvm does) must be caught: the source drops
 * CAP_EXACT and reports every page (never fewer than written), and a vCPU the overflow
 * wedged gets -EOVERFLOW instead of spinning. A restart makes the source exact again.
 */
static void test_ring_full(void **state)
{
	static uint64_t want[NPAGES / 64], got[NPAGES / 64];
	static uint32_t pages[LIST_MAX];
	struct dt_source *src;
	unsigned burst;
	int64_t n;
	int ret;

	struct vm vm;

	if (!vm_create(&vm, 64))
		skip();
	src = vm_source(&vm, DT_SOURCE_KVM_RING);
	burst = vm.ring_entries * 8 < LIST_MAX ? vm.ring_entries * 8 : LIST_MAX;
	memset(want, 0, sizeof(want));
	random_pages(pages, burst, FIRST_PAGE, NPAGES, want);
	ret = guest_write(&vm, src, pages, burst);
	if (ret) {
		assert_int_equal(ret, -EOVERFLOW);
		EXPECT_TRUE(!(dt_source_caps(src) & DT_SOURCE_CAP_EXACT));
		printf("# this host's KVM overflowed a %u-entry ring and wedged the vCPU after %u "
		       "ring-full exits: reported as -EOVERFLOW\n",
		       vm.ring_entries, vm.ring_full_exits);
		n = harvest(src, got, 0);
		EXPECT_EQ(n, NPAGES);
		dt_source_free(src);
		vm_destroy(&vm);
		return;
	}
	EXPECT_TRUE(vm.ring_full_exits > 0);
	memset(got, 0, sizeof(got));
	n = dt_source_harvest(src, 0, NPAGES, got, 0);
	if (superset(got, want, NPAGES)) {
		EXPECT_TRUE(dt_source_caps(src) & DT_SOURCE_CAP_EXACT);
		EXPECT_EQ(n, burst);
	} else {
		printf("# this host's KVM overflowed a %u-entry ring: every page reported\n",
		       vm.ring_entries);
		EXPECT_TRUE(!(dt_source_caps(src) & DT_SOURCE_CAP_EXACT));
		EXPECT_EQ(n, NPAGES);
		/* sticky until a restart */
		EXPECT_EQ(harvest(src, got, 0), NPAGES);
		assert_int_equal(dt_source_stop(src), 0);
		assert_int_equal(dt_source_start(src), 0);
		EXPECT_TRUE(dt_source_caps(src) & DT_SOURCE_CAP_EXACT);
		memset(want, 0, sizeof(want));
		check_bitmap("restarted, nothing written", got, want, NPAGES, harvest(src, got, 0));
	}
	dt_source_free(src);
	vm_destroy(&vm);
}

static void test_auto(void **state)
{
	struct dt_source *src;
	struct vm vm;

	vm_create(&vm, 0);
	src = vm_source(&vm, DT_SOURCE_AUTO);
	EXPECT_EQ(dt_source_type(src), DT_SOURCE_KVM_LOG);
	dt_source_free(src);
	vm_destroy(&vm);
	if (!vm_create(&vm, 4096))
		skip();
	src = vm_source(&vm, DT_SOURCE_AUTO);
	EXPECT_EQ(dt_source_type(src), DT_SOURCE_KVM_RING);
	rounds(&vm, src, 100, 0);
	dt_source_free(src);
	vm_destroy(&vm);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log),  cmocka_unit_test(test_log_defer_clear),
		cmocka_unit_test(test_ring), cmocka_unit_test(test_ring_full),
		cmocka_unit_test(test_auto),
	};

	kvm_fd = kvm_open_or_skip();
	test_seed_init(argc, argv);
	return cmocka_run_group_tests_name("kvm_sources", tests, NULL, NULL);
}
