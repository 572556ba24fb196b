/* SPDX-License-Identifier: MIT */
/*
 * tests/kvm/test_kvm_fake.c - the KVM dirty log and dirty ring sources against a model of
 * KVM's dirty tracking, so that their protocol is checked on machines without /dev/kvm.
 *
 * The library's system calls are wrapped at link time (-Wl,--wrap=sys_ioctl, sys_mmap,
 * sys_munmap): ioctls on the fake fds reach the model, the rest the real kernel. The model
 * follows virt/kvm/kvm_main.c and dirty_ring.c: each logged page is either write-protected
 * (a write sets its bit or pushes a ring entry and makes it writable) or writable (a write
 * is not seen); GET_DIRTY_LOG without manual protect, CLEAR_DIRTY_LOG and
 * RESET_DIRTY_RINGS write-protect again; INITIALLY_SET starts with every bit set and every
 * page writable; CLEAR_DIRTY_LOG enforces the kernel's alignment rules; a ring never takes
 * more than its size and asks for an exit at its soft limit. A source that clears a bit it
 * did not report, reports late, or lets a ring overfill fails the exact comparisons here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <errno.h>
#include <linux/kvm.h>
#include <sys/mman.h>

#include "../core/test_util.h"
#include "kvm_check.h"
#include "sys/sys.h"
#include <dirtytrack/track.h>

#define FAKE_VM	   0x7ff0
#define FAKE_VCPU0 0x7ff1
#define NVCPUS	   2
#define NSLOTS	   2
#define RSVD	   64u /* KVM_DIRTY_RING_RSVD_ENTRIES, without a PML buffer */

struct fake_slot {
	bool used, logging;
	uint32_t id, flags;
	uint64_t gpa, npages;
	uint64_t *bits;
	uint8_t *writable;
};

static struct fake {
	uint32_t manual_offered, manual;
	uint32_t ring_bytes, min_ring_bytes;
	bool ring_offered;
	struct fake_slot slot[NSLOTS];
	struct kvm_dirty_gfn *ring[NVCPUS];
	uint32_t dirty_idx[NVCPUS], reset_idx[NVCPUS];
	unsigned clears, gets, resets, full_exits;
	uint32_t overfill; /* like kvm_pvm: no soft limit, exit only this far past a full ring */
} fk;

int __real_sys_ioctl(int fd, unsigned long request, void *arg);
void *__real_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long offset, int *err);
int __real_sys_munmap(void *addr, size_t len);
int __wrap_sys_ioctl(int fd, unsigned long request, void *arg);
void *__wrap_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long offset, int *err);
int __wrap_sys_munmap(void *addr, size_t len);

static struct fake_slot *slot_by_id(uint32_t id)
{
	for (unsigned i = 0; i < NSLOTS; i++)
		if (fk.slot[i].used && fk.slot[i].id == id)
			return &fk.slot[i];
	return NULL;
}

static uint32_t ring_entries(void)
{
	return fk.ring_bytes / sizeof(struct kvm_dirty_gfn);
}

static int fake_set_region(const struct kvm_userspace_memory_region *m)
{
	struct fake_slot *s = slot_by_id(m->slot);
	bool log = m->flags & KVM_MEM_LOG_DIRTY_PAGES;

	if (!s) {
		for (unsigned i = 0; i < NSLOTS && !s; i++)
			if (!fk.slot[i].used)
				s = &fk.slot[i];
		assert_non_null(s);
		*s = (struct fake_slot){.used = true,
					.id = m->slot,
					.gpa = m->guest_phys_addr,
					.npages = m->memory_size >> 12};
		s->bits = calloc((s->npages + 63) / 64, 8);
		s->writable = calloc(s->npages, 1);
	} else if (!m->memory_size) {
		free(s->bits);
		free(s->writable);
		*s = (struct fake_slot){0};
		return 0;
	} else if (m->guest_phys_addr != s->gpa || m->memory_size >> 12 != s->npages) {
		return -EINVAL;
	}
	s->flags = m->flags;
	if (log && !s->logging) {
		bool init_set = !fk.ring_bytes && fk.manual & KVM_DIRTY_LOG_INITIALLY_SET;

		memset(s->bits, init_set ? 0xff : 0, (s->npages + 63) / 64 * 8);
		if (s->npages % 64)
			s->bits[s->npages / 64] &= (1ull << (s->npages % 64)) - 1;
		memset(s->writable, init_set, s->npages);
	}
	if (!log)
		memset(s->writable, 1, s->npages);
	s->logging = log;
	return 0;
}

static int fake_get_log(struct kvm_dirty_log *g)
{
	struct fake_slot *s = slot_by_id(g->slot);
	size_t n;

	if (fk.ring_bytes)
		return -ENXIO;
	if (!s || !s->logging)
		return -ENOENT;
	fk.gets++;
	n = (s->npages + 63) / 64 * 8;
	memcpy(g->dirty_bitmap, s->bits, n);
	if (!fk.manual) {
		for (uint64_t p = 0; p < s->npages; p++)
			if (bit_test(s->bits, p))
				s->writable[p] = 0;
		memset(s->bits, 0, n);
	}
	return 0;
}

static int fake_clear_log(struct kvm_clear_dirty_log *c)
{
	struct fake_slot *s = slot_by_id(c->slot);
	const uint64_t *user = c->dirty_bitmap;

	if (fk.ring_bytes)
		return -ENXIO;
	if (c->first_page & 63)
		return -EINVAL;
	if (!s || !s->logging)
		return -ENOENT;
	if (c->first_page > s->npages || c->num_pages > s->npages - c->first_page ||
	    (c->num_pages < s->npages - c->first_page && c->num_pages & 63)) {
		print_error("fake KVM: CLEAR_DIRTY_LOG [%llu, +%u) of %llu pages refused\n",
			    (unsigned long long)c->first_page, c->num_pages,
			    (unsigned long long)s->npages);
		return -EINVAL;
	}
	if (c->num_pages)
		fk.clears++;
	for (uint64_t i = 0; i < (c->num_pages + 63u) / 64; i++) {
		uint64_t w = c->first_page / 64 + i, mask = user[i] & s->bits[w];

		s->bits[w] &= ~mask;
		for (; mask; mask &= mask - 1)
			s->writable[w * 64 + (unsigned)__builtin_ctzll(mask)] = 0;
	}
	return 0;
}

static int fake_reset_rings(void)
{
	int n = 0;

	fk.resets++;
	for (unsigned v = 0; v < NVCPUS; v++) {
		while (fk.reset_idx[v] != fk.dirty_idx[v]) {
			struct kvm_dirty_gfn *e =
				&fk.ring[v][fk.reset_idx[v] & (ring_entries() - 1)];
			struct fake_slot *s;

			if (!(atomic_load_explicit((_Atomic uint32_t *)&e->flags,
						   memory_order_acquire) &
			      KVM_DIRTY_GFN_F_RESET))
				break;
			s = slot_by_id(e->slot);
			if (s && e->offset < s->npages)
				s->writable[e->offset] = 0;
			e->flags = 0;
			fk.reset_idx[v]++;
			n++;
		}
	}
	return n;
}

static int fake_enable_cap(const struct kvm_enable_cap *c)
{
	switch (c->cap) {
	case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
		if (c->args[0] & ~(uint64_t)fk.manual_offered || !fk.manual_offered)
			return -EINVAL;
		fk.manual = (uint32_t)c->args[0];
		return 0;
	case KVM_CAP_DIRTY_LOG_RING:
	case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
		if (!fk.ring_offered)
			return -EINVAL;
		if (!c->args[0] || c->args[0] & (c->args[0] - 1) || c->args[0] < fk.min_ring_bytes)
			return -EINVAL;
		if (c->args[0] > 65536 * 16)
			return -E2BIG;
		if (fk.ring_bytes)
			return -EINVAL;
		fk.ring_bytes = (uint32_t)c->args[0];
		for (unsigned v = 0; v < NVCPUS; v++) {
			fk.ring[v] = aligned_alloc(4096, fk.ring_bytes);
			memset(fk.ring[v], 0, fk.ring_bytes);
		}
		return 0;
	}
	return -EINVAL;
}

int __wrap_sys_ioctl(int fd, unsigned long request, void *arg)
{
	if (fd != FAKE_VM)
		return __real_sys_ioctl(fd, request, arg);
	switch (request) {
	case KVM_CHECK_EXTENSION:
		switch ((uintptr_t)arg) {
		case KVM_CAP_USER_MEMORY:
			return 1;
		case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
			return (int)fk.manual_offered;
		case KVM_CAP_DIRTY_LOG_RING:
		case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
			return fk.ring_offered ? 65536 * 16 : 0;
		}
		return 0;
	case KVM_ENABLE_CAP:
		return fake_enable_cap(arg);
	case KVM_SET_USER_MEMORY_REGION:
		return fake_set_region(arg);
	case KVM_GET_DIRTY_LOG:
		return fake_get_log(arg);
	case KVM_CLEAR_DIRTY_LOG:
		return fake_clear_log(arg);
	case KVM_RESET_DIRTY_RINGS:
		return fk.ring_bytes ? fake_reset_rings() : -EINVAL;
	}
	return -ENOTTY;
}

void *__wrap_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long offset, int *err)
{
	if (fd < FAKE_VCPU0 || fd >= FAKE_VCPU0 + NVCPUS)
		return __real_sys_mmap(addr, len, prot, flags, fd, offset, err);
	if (!fk.ring_bytes || len != fk.ring_bytes || offset != KVM_DIRTY_LOG_PAGE_OFFSET * 4096 ||
	    !(flags & MAP_SHARED)) {
		*err = -EINVAL;
		return NULL;
	}
	*err = 0;
	return fk.ring[fd - FAKE_VCPU0];
}

int __wrap_sys_munmap(void *addr, size_t len)
{
	for (unsigned v = 0; v < NVCPUS; v++)
		if (addr == fk.ring[v])
			return 0;
	return __real_sys_munmap(addr, len);
}

/* ---- the fake guest ---------------------------------------------------------------------- */

static void fake_reset(uint32_t manual_offered, bool ring_offered)
{
	for (unsigned i = 0; i < NSLOTS; i++) {
		free(fk.slot[i].bits);
		free(fk.slot[i].writable);
	}
	for (unsigned v = 0; v < NVCPUS; v++)
		free(fk.ring[v]);
	memset(&fk, 0, sizeof(fk));
	fk.manual_offered = manual_offered;
	fk.ring_offered = ring_offered;
	fk.min_ring_bytes = 4096;
}

/* Two memslots, like a VM with RAM below and above a hole: 4 MiB at 0, 2 MiB at 1 GiB
 * (+ 3 pages, so the last bitmap word is partial). Only their addresses matter. */
#define SLOT1_PAGES 1024u
#define SLOT2_PAGES 515u
#define SLOT2_GPA   (1ull << 30)
#define NPAGES	    (SLOT2_GPA / 4096 + SLOT2_PAGES)

static struct dt_region regions[NSLOTS] = {
	{.addr = SLOT2_GPA,
	 .size = SLOT2_PAGES * 4096ull,
	 .host = (void *)0x7f0000000000,
	 .slot = 5},
	{.addr = 0, .size = SLOT1_PAGES * 4096ull, .host = (void *)0x7e0000000000, .slot = 0},
};

static void fake_vm_create(void)
{
	for (unsigned i = 0; i < NSLOTS; i++) {
		struct kvm_userspace_memory_region m = {
			.slot = regions[i].slot,
			.guest_phys_addr = regions[i].addr,
			.memory_size = regions[i].size,
			.userspace_addr = (uintptr_t)regions[i].host,
		};

		assert_int_equal(fake_set_region(&m), 0);
	}
}

/* A guest write to page p (of the NPAGES address space) by vCPU v; false when the vCPU must
 * exit with KVM_EXIT_DIRTY_RING_FULL before its next write. */
static bool fake_guest_write(unsigned v, uint64_t p)
{
	uint64_t gpa = p << 12;

	for (unsigned i = 0; i < NSLOTS; i++) {
		struct fake_slot *s = &fk.slot[i];
		uint64_t off = (gpa - s->gpa) >> 12;
		struct kvm_dirty_gfn *e;

		if (!s->used || gpa < s->gpa || off >= s->npages)
			continue;
		if (!s->logging || s->writable[off])
			return true;
		s->writable[off] = 1;
		if (!fk.ring_bytes) {
			bit_set(s->bits, off);
			return true;
		}
		if (fk.overfill) {
			/* push over the oldest entries (the kernel WARNs), exit late */
			e = &fk.ring[v][fk.dirty_idx[v]++ & (ring_entries() - 1)];
			e->slot = s->id;
			e->offset = off;
			atomic_store_explicit((_Atomic uint32_t *)&e->flags, KVM_DIRTY_GFN_F_DIRTY,
					      memory_order_release);
			return fk.dirty_idx[v] - fk.reset_idx[v] < ring_entries() + fk.overfill;
		}
		if (fk.dirty_idx[v] - fk.reset_idx[v] >= ring_entries()) {
			print_error("fake KVM: ring of vCPU %u overfilled (%u entries)\n", v,
				    ring_entries());
			fail();
		}
		e = &fk.ring[v][fk.dirty_idx[v]++ & (ring_entries() - 1)];
		e->slot = s->id;
		e->offset = off;
		atomic_store_explicit((_Atomic uint32_t *)&e->flags, KVM_DIRTY_GFN_F_DIRTY,
				      memory_order_release);
		return fk.dirty_idx[v] - fk.reset_idx[v] < ring_entries() - RSVD;
	}
	fail_msg("page %llu outside the slots", (unsigned long long)p);
	return true;
}

/* Run the writes of one vCPU as a VMM would: on a full ring, exit and call ring_full. */
static void vcpu_writes(struct dt_source *src, unsigned v, const uint32_t *pages, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (fake_guest_write(v, pages[i]))
			continue;
		fk.full_exits++;
		assert_int_equal(dt_source_kvm_ring_full(src), 0);
		assert_true(fk.dirty_idx[v] - fk.reset_idx[v] < ring_entries() - RSVD);
	}
}

static uint32_t random_page(void)
{
	uint64_t r = rng_below(SLOT1_PAGES + SLOT2_PAGES);

	return (uint32_t)(r < SLOT1_PAGES ? r : SLOT2_GPA / 4096 + r - SLOT1_PAGES);
}

/* A list of n random pages (repeats allowed), marked in want. */
static void random_writes(uint32_t *pages, unsigned n, uint64_t *want)
{
	for (unsigned i = 0; i < n; i++) {
		pages[i] = random_page();
		if (want)
			bit_set(want, pages[i]);
	}
}

static struct dt_source *fake_source(enum dt_source_type type)
{
	int vcpus[NVCPUS];
	struct dt_source_opts o = {
		.size = sizeof(o),
		.type = type,
		.regions = regions,
		.nregions = NSLOTS,
		.vm_fd = FAKE_VM,
		.vcpu_fds = vcpus,
		.nvcpus = fk.ring_bytes ? NVCPUS : 0,
		.ring_entries = ring_entries(),
	};
	struct dt_source *src;

	for (unsigned v = 0; v < NVCPUS; v++)
		vcpus[v] = FAKE_VCPU0 + v;
	src = dt_source_new(&o);
	assert_non_null(src);
	assert_int_equal(dt_source_start(src), 0);
	return src;
}

static uint64_t *bitmap_new(void)
{
	uint64_t *b = calloc(NPAGES / 64 + 1, 8);

	assert_non_null(b);
	return b;
}

static int64_t harvest(struct dt_source *src, uint64_t *got, uint32_t flags)
{
	memset(got, 0, (NPAGES / 64 + 1) * 8);
	return dt_source_harvest(src, 0, NPAGES, got, flags);
}

/* ---- tests ---------------------------------------------------------------------------- */

/* Rounds of random writes, each harvested (read and clear) and compared exactly. */
static void log_rounds(uint32_t manual_offered)
{
	uint64_t *want = bitmap_new(), *got = bitmap_new();
	uint32_t pages[600];
	struct dt_source *src;

	fake_reset(manual_offered, false);
	fake_vm_create();
	/* Writes before start are not reported. */
	random_writes(pages, 50, NULL);
	vcpu_writes(NULL, 0, pages, 50);
	src = fake_source(DT_SOURCE_KVM_LOG);
	assert_int_equal(dt_source_type(src), DT_SOURCE_KVM_LOG);
	EXPECT_EQ(dt_source_caps(src) & DT_SOURCE_CAP_EXACT, DT_SOURCE_CAP_EXACT);
	for (unsigned round = 0; round < 40; round++) {
		unsigned n = round % 5 == 4 ? 0 : (unsigned)rng_below(600) + 1;

		ctx_set("manual 0x%x round %u, %u writes", manual_offered, round, n);
		memset(want, 0, (NPAGES / 64 + 1) * 8);
		random_writes(pages, n, want);
		vcpu_writes(src, 0, pages, n);
		check_bitmap(test_ctx, got, want, NPAGES, harvest(src, got, 0));
	}
	memset(want, 0, (NPAGES / 64 + 1) * 8);
	check_bitmap("again, nothing written", got, want, NPAGES, harvest(src, got, 0));
	EXPECT_TRUE(manual_offered ? fk.clears > 0 : fk.clears == 0);
	assert_int_equal(dt_source_stop(src), 0);
	EXPECT_TRUE(!fk.slot[0].logging && !fk.slot[1].logging);
	dt_source_free(src);
	free(want);
	free(got);
}

static void test_log_manual_initially_set(void **state)
{
	log_rounds(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
}

static void test_log_manual(void **state)
{
	log_rounds(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
}

static void test_log_plain(void **state)
{
	log_rounds(0);
}

/* DT_HARVEST_DEFER_CLEAR with manual protect: bits stay until dt_source_clear(), which only
 * clears what was reported, rounds out to 64 pages, and never clears a page twice. */
static void test_log_defer_clear(void **state)
{
	uint64_t *want = bitmap_new(), *got = bitmap_new(), *none = bitmap_new();
	uint32_t a[300], b[300], c[300], d[40];
	struct dt_source *src;
	unsigned cl;

	fake_reset(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET, false);
	fake_vm_create();
	src = fake_source(DT_SOURCE_KVM_LOG);
	EXPECT_TRUE(dt_source_caps(src) & DT_SOURCE_CAP_DEFER_CLEAR);

	random_writes(a, 300, want);
	vcpu_writes(src, 0, a, 300);
	cl = fk.clears;
	check_bitmap("defer: A", got, want, NPAGES, harvest(src, got, DT_HARVEST_DEFER_CLEAR));
	EXPECT_EQ(fk.clears, cl);
	check_bitmap("defer: A again, not cleared", got, want, NPAGES,
		     harvest(src, got, DT_HARVEST_DEFER_CLEAR));

	/* Clear the first slot only: A's pages in the second remain. */
	assert_int_equal(dt_source_clear(src, 0, SLOT1_PAGES * 4096ull), 0);
	for (uint64_t p = 0; p < SLOT1_PAGES; p++)
		want[p / 64] &= ~(1ull << (p % 64));
	check_bitmap("defer: A above slot 1", got, want, NPAGES,
		     harvest(src, got, DT_HARVEST_DEFER_CLEAR));

	/* One page, unaligned: rounds out to its 64-page word of the second slot. */
	assert_int_equal(dt_source_clear(src, SLOT2_GPA + 65 * 4096, 1), 0);
	for (uint64_t p = SLOT2_GPA / 4096 + 64; p < SLOT2_GPA / 4096 + 128; p++)
		want[p / 64] &= ~(1ull << (p % 64));
	check_bitmap("defer: after one-page clear", got, want, NPAGES,
		     harvest(src, got, DT_HARVEST_DEFER_CLEAR));
	assert_int_equal(dt_source_clear(src, 0, NPAGES * 4096ull), 0);
	check_bitmap("defer: all cleared", got, none, NPAGES,
		     harvest(src, got, DT_HARVEST_DEFER_CLEAR));

	/* B harvested; C written before the clear: C's pages outside B are new bits (kept), C's
	 * pages inside B were writable (copied after the clear, not reported again). */
	memset(want, 0, (NPAGES / 64 + 1) * 8);
	random_writes(b, 300, want);
	vcpu_writes(src, 0, b, 300);
	check_bitmap("defer: B", got, want, NPAGES, harvest(src, got, DT_HARVEST_DEFER_CLEAR));
	random_writes(c, 300, NULL);
	vcpu_writes(src, 0, c, 300);
	memset(want, 0, (NPAGES / 64 + 1) * 8);
	for (unsigned i = 0; i < 300; i++) {
		bool in_b = false;

		for (unsigned j = 0; j < 300 && !in_b; j++)
			in_b = b[j] == c[i];
		if (!in_b)
			bit_set(want, c[i]);
	}
	assert_int_equal(dt_source_clear(src, 0, NPAGES * 4096ull), 0);
	/* D after that clear must survive a second clear of the same range. */
	/* every D page: inside C \ B its bit was set; elsewhere it was write-protected */
	random_writes(d, 40, want);
	vcpu_writes(src, 0, d, 40);
	assert_int_equal(dt_source_clear(src, 0, NPAGES * 4096ull), 0);
	check_bitmap("defer: C outside B, and D", got, want, NPAGES, harvest(src, got, 0));
	check_bitmap("defer: nothing left", got, none, NPAGES, harvest(src, got, 0));
	dt_source_free(src);
	free(want);
	free(got);
	free(none);
}

/* Without manual protect GET clears: a deferred clear is a no-op and nothing is lost. */
static void test_log_defer_plain(void **state)
{
	uint64_t *want = bitmap_new(), *got = bitmap_new(), *none = bitmap_new();
	uint32_t a[200];
	struct dt_source *src;

	fake_reset(0, false);
	fake_vm_create();
	src = fake_source(DT_SOURCE_KVM_LOG);
	random_writes(a, 200, want);
	vcpu_writes(src, 0, a, 200);
	check_bitmap("plain defer: A", got, want, NPAGES,
		     harvest(src, got, DT_HARVEST_DEFER_CLEAR));
	assert_int_equal(dt_source_clear(src, 0, NPAGES * 4096ull), 0);
	check_bitmap("plain defer: empty", got, none, NPAGES, harvest(src, got, 0));
	dt_source_free(src);
	free(want);
	free(got);
	free(none);
}

/* A deleted memslot is an error, never "clean". */
static void test_log_slot_gone(void **state)
{
	uint64_t *got = bitmap_new();
	struct kvm_userspace_memory_region del = {.slot = regions[0].slot};
	struct dt_source *src;

	fake_reset(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, false);
	fake_vm_create();
	src = fake_source(DT_SOURCE_KVM_LOG);
	assert_int_equal(fake_set_region(&del), 0);
	EXPECT_EQ(harvest(src, got, 0), (uint64_t)-ENXIO);
	dt_source_free(src);
	free(got);
}

static void test_ring_enable_sizes(void **state)
{
	struct {
		uint32_t ask, min_bytes, want;
	} cases[] = {
		{64, 4096, 256},	 {0, 4096, 4096},   {1000, 4096, 1024},
		{1u << 20, 4096, 65536}, {64, 16384, 1024}, {4096, 4096, 4096},
	};

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t e = cases[i].ask;

		fake_reset(0, true);
		fk.min_ring_bytes = cases[i].min_bytes;
		ctx_set("ask %u, kernel minimum %u bytes", cases[i].ask, cases[i].min_bytes);
		EXPECT_EQ(dt_kvm_dirty_ring_enable(FAKE_VM, &e), 0);
		EXPECT_EQ(e, cases[i].want);
		EXPECT_EQ(fk.ring_bytes, cases[i].want * 16);
		/* only once */
		EXPECT_TRUE(dt_kvm_dirty_ring_enable(FAKE_VM, &e) < 0);
	}
	fake_reset(0, false);
	{
		uint32_t e = 0;

		EXPECT_TRUE(dt_kvm_dirty_ring_enable(FAKE_VM, &e) < 0);
	}
}

/* Bursts far above the ring size, from two vCPUs, lose nothing. */
static void test_ring_bursts(void **state)
{
	uint64_t *want = bitmap_new(), *got = bitmap_new();
	static uint32_t pages[NVCPUS][1500];
	struct dt_source *src;
	uint32_t e = 64;

	fake_reset(0, true);
	assert_int_equal(dt_kvm_dirty_ring_enable(FAKE_VM, &e), 0);
	EXPECT_EQ(e, 256);
	fake_vm_create();
	random_writes(pages[0], 100, NULL);
	vcpu_writes(NULL, 0, pages[0], 100); /* before start: not logged, not reported */
	src = fake_source(DT_SOURCE_KVM_RING);
	assert_int_equal(dt_source_type(src), DT_SOURCE_KVM_RING);
	for (unsigned round = 0; round < 20; round++) {
		unsigned n = round % 4 == 3 ? 0 : (unsigned)rng_below(1500) + 1;

		ctx_set("ring round %u, %u writes per vCPU", round, n);
		memset(want, 0, (NPAGES / 64 + 1) * 8);
		for (unsigned v = 0; v < NVCPUS; v++)
			random_writes(pages[v], n, want);
		/* interleave the vCPUs in chunks */
		for (unsigned i = 0; i < n; i += 37)
			for (unsigned v = 0; v < NVCPUS; v++)
				vcpu_writes(src, v, pages[v] + i, n - i < 37 ? n - i : 37);
		check_bitmap(test_ctx, got, want, NPAGES, harvest(src, got, 0));
	}
	EXPECT_TRUE(fk.full_exits > 10);
	memset(want, 0, (NPAGES / 64 + 1) * 8);
	check_bitmap("ring: nothing written", got, want, NPAGES, harvest(src, got, 0));
	assert_int_equal(dt_source_stop(src), 0);
	dt_source_free(src);

	/* A second source on the same VM finds where the used rings continue. */
	src = fake_source(DT_SOURCE_KVM_RING);
	for (unsigned round = 0; round < 3; round++) {
		ctx_set("second source, round %u", round);
		memset(want, 0, (NPAGES / 64 + 1) * 8);
		random_writes(pages[1], 700, want);
		vcpu_writes(src, 1, pages[1], 700);
		check_bitmap(test_ctx, got, want, NPAGES, harvest(src, got, 0));
	}
	dt_source_free(src);
	free(want);
	free(got);
}

/* A kernel that overfills the ring (kvm_pvm does): the source must notice, report every
 * page instead of a lossy set, refuse to let a wedged vCPU spin, and be exact after a
 * restart. */
static void test_ring_overflow(void **state)
{
	uint64_t *want = bitmap_new(), *got = bitmap_new();
	static uint32_t pages[600];
	struct dt_source *src;
	uint32_t e = 256;
	int ret = 0;

	fake_reset(0, true);
	assert_int_equal(dt_kvm_dirty_ring_enable(FAKE_VM, &e), 0);
	fake_vm_create();
	src = fake_source(DT_SOURCE_KVM_RING);
	EXPECT_TRUE(dt_source_caps(src) & DT_SOURCE_CAP_EXACT);
	/* 20 entries overwritten before the exit: the pages they held are lost to the ring */
	fk.overfill = 20;
	memset(want, 0, (NPAGES / 64 + 1) * 8);
	random_writes(pages, 600, want);
	for (unsigned i = 0; i < 600; i++) {
		if (fake_guest_write(0, pages[i]))
			continue;
		/* the vCPU re-enters only below the soft limit, as KVM does */
		do
			ret = dt_source_kvm_ring_full(src);
		while (!ret && fk.dirty_idx[0] - fk.reset_idx[0] >= e - RSVD);
		if (ret)
			break;
	}
	/* 20 stale entries are left in the kernel's count after each reset: 600 writes leave
	 * it below the soft limit here, so the vCPU went on */
	EXPECT_EQ(ret, 0);
	EXPECT_TRUE(!(dt_source_caps(src) & DT_SOURCE_CAP_EXACT));
	EXPECT_EQ(harvest(src, got, 0), SLOT1_PAGES + SLOT2_PAGES);
	for (uint64_t w = 0; w <= NPAGES / 64; w++)
		EXPECT_EQ(want[w] & ~got[w], 0);
	EXPECT_EQ(harvest(src, got, 0), SLOT1_PAGES + SLOT2_PAGES); /* sticky */

	/* Overwritten past the soft limit: the count never drops below it. */
	fk.overfill = 200;
	random_writes(pages, 600, NULL);
	for (unsigned i = 0, calls = 0; i < 600 && !ret; i++) {
		if (fake_guest_write(0, pages[i]))
			continue;
		do {
			ret = dt_source_kvm_ring_full(src);
			assert_true(++calls < 20); /* not spinning */
		} while (!ret && fk.dirty_idx[0] - fk.reset_idx[0] >= e - RSVD);
	}
	EXPECT_EQ(ret, -EOVERFLOW);

	/* A restart on a kernel that behaves: exact again. */
	dt_source_free(src);
	fake_reset(0, true);
	assert_int_equal(dt_kvm_dirty_ring_enable(FAKE_VM, &e), 0);
	fake_vm_create();
	src = fake_source(DT_SOURCE_KVM_RING);
	fk.overfill = 20;
	random_writes(pages, 600, NULL);
	vcpu_writes(src, 0, pages, 600);
	EXPECT_TRUE(!(dt_source_caps(src) & DT_SOURCE_CAP_EXACT));
	fk.overfill = 0;
	harvest(src, got, 0);
	assert_int_equal(dt_source_stop(src), 0);
	assert_int_equal(dt_source_start(src), 0);
	EXPECT_TRUE(dt_source_caps(src) & DT_SOURCE_CAP_EXACT);
	memset(want, 0, (NPAGES / 64 + 1) * 8);
	random_writes(pages, 100, want);
	vcpu_writes(src, 1, pages, 100);
	check_bitmap("restarted", got, want, NPAGES, harvest(src, got, 0));
	dt_source_free(src);
	free(want);
	free(got);
}

static void test_auto_choice(void **state)
{
	struct dt_source *src;
	uint32_t e = 0;

	fake_reset(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, true);
	fake_vm_create();
	src = fake_source(DT_SOURCE_AUTO);
	EXPECT_EQ(dt_source_type(src), DT_SOURCE_KVM_LOG);
	dt_source_free(src);

	fake_reset(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, true);
	assert_int_equal(dt_kvm_dirty_ring_enable(FAKE_VM, &e), 0);
	fake_vm_create();
	src = fake_source(DT_SOURCE_AUTO);
	EXPECT_EQ(dt_source_type(src), DT_SOURCE_KVM_RING);
	dt_source_free(src);

	/* The log refuses a VM on the ring (its bitmap is gone). */
	{
		struct dt_source_opts o = {.size = sizeof(o),
					   .type = DT_SOURCE_KVM_LOG,
					   .regions = regions,
					   .nregions = NSLOTS,
					   .vm_fd = FAKE_VM};

		EXPECT_TRUE(dt_source_new(&o) == NULL);
		EXPECT_EQ(errno, ENODEV);
	}
	fake_reset(0, false);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_manual_initially_set),
		cmocka_unit_test(test_log_manual),
		cmocka_unit_test(test_log_plain),
		cmocka_unit_test(test_log_defer_clear),
		cmocka_unit_test(test_log_defer_plain),
		cmocka_unit_test(test_log_slot_gone),
		cmocka_unit_test(test_ring_enable_sizes),
		cmocka_unit_test(test_ring_bursts),
		cmocka_unit_test(test_ring_overflow),
		cmocka_unit_test(test_auto_choice),
	};

	test_seed_init(argc, argv);
	return cmocka_run_group_tests_name("kvm_fake", tests, NULL, NULL);
}
