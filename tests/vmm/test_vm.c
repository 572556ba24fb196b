/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/test_vm.c - the reference micro-VM (vmm/vm.h) on the real KVM: the guest payload
 * runs and stamps pages, its self-check and the host's agree and catch a torn page, a stale
 * page and a page nobody recorded; pause is prompt, idempotent and lands anywhere, and a VM
 * paused anywhere continues in another VM from its saved vCPU state and copied memory; the
 * throttle holds; bad configs, state blobs and mailboxes are refused; the KVM dirty log over
 * the two banks reports exactly the pages the guest wrote.
 *
 * Guest writes cost microseconds here (kvm_pvm emulates), so workloads are tens of pages per
 * iteration and the VM is the smallest allowed (72 MiB) unless a test needs more.
 * Exits 77 without /dev/kvm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../core/test_util.h"
#include "../kvm/kvm_check.h"
#include "vm.h"

#define MIB	   (1ull << 20)
#define MEM_SMALL  ((uint64_t)GUEST_MEM_MIN)
#define AREA_SMALL ((uint32_t)((MEM_SMALL - GUEST_DEV_AREAS_SIZE - GUEST_AREA_GPA) / GUEST_PAGE))
#define NO_BAD	   UINT32_MAX
#define OUT_DX_EAX 0xef /* the payload's OUT: one byte */

_Static_assert(GUEST_MEM_MIN % (2 * MIB) == 0, "GUEST_MEM_MIN is a valid mem_size");

static void config(struct vm_config *c, uint64_t mem, uint32_t hot, uint32_t sweep, uint32_t ips)
{
	vm_config_defaults(c);
	c->mem_size = mem;
	c->hot_pages = hot;
	c->sweep_pages = sweep;
	c->iter_per_sec = ips;
}

/* VMs live in static storage and are listed here, so that a test failing half-way (cmocka
 * jumps out of it) leaves no vCPU thread running on a dead stack frame: the teardown
 * destroys them (vm_destroy() of a destroyed VM does nothing). */
static struct vm *live[4];

static void create(struct vm *vm, const struct vm_config *c, bool payload)
{
	int ret = vm_create(vm, c, payload);
	unsigned i;

	if (ret)
		fail_msg("vm_create(%llu MiB): %s", (unsigned long long)(c->mem_size / MIB),
			 strerror(-ret));
	for (i = 0; i < 4 && live[i] && live[i] != vm; i++)
		;
	assert_true(i < 4);
	live[i] = vm;
}

static int destroy_all(void **state)
{
	for (unsigned i = 0; i < 4; i++) {
		if (live[i])
			vm_destroy(live[i]);
		live[i] = NULL;
	}
	return 0;
}

static uint64_t now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

static int vcpu_error(struct vm *vm)
{
	int err;

	pthread_mutex_lock(&vm->lock);
	err = vm->error;
	pthread_mutex_unlock(&vm->lock);
	return err;
}

/* Poll until the guest finished generation g. */
static void wait_generation(struct vm *vm, uint32_t g, unsigned timeout_ms)
{
	uint64_t end = now_us() + timeout_ms * 1000ull;

	while (vm_generation(vm) < g) {
		if (vcpu_error(vm))
			fail_msg("vCPU failed (%s) at generation %u, waiting for %u",
				 strerror(-vcpu_error(vm)), vm_generation(vm), g);
		if (now_us() > end)
			fail_msg("generation %u after %u ms, waiting for %u (ticks %llu)",
				 vm_generation(vm), timeout_ms, g,
				 (unsigned long long)atomic_load(&vm->ticks));
		usleep(500);
	}
}

static uint32_t *ledger_entry(struct vm *vm, uint32_t p)
{
	uint32_t *e = vm_gpa_to_host(vm, GUEST_LEDGER_GPA + 4ull * p, 4);

	assert_non_null(e);
	return e;
}

static uint32_t *area_page(struct vm *vm, uint32_t p)
{
	uint32_t *w = vm_gpa_to_host(vm, GUEST_AREA_GPA + (uint64_t)p * GUEST_PAGE, GUEST_PAGE);

	assert_non_null(w);
	return w;
}

static void write_stamp(uint32_t *w, uint32_t g, uint32_t p)
{
	w[0] = g;
	w[1] = p;
	w[2] = guest_mix(g, p);
	w[GUEST_STAMP_LAST_WORD] = ~g;
}

static uint32_t area_pages(uint64_t mem)
{
	return (uint32_t)((mem - GUEST_DEV_AREAS_SIZE - GUEST_AREA_GPA) / GUEST_PAGE);
}

/* Pages a VM started fresh has stamped after gen generations. */
static uint32_t stamped_after(const struct vm_config *c, uint32_t gen)
{
	uint32_t sweep_len = area_pages(c->mem_size) - c->hot_pages;
	uint64_t swept = (uint64_t)c->sweep_pages * gen;

	return (gen ? c->hot_pages : 0) + (uint32_t)(swept < sweep_len ? swept : sweep_len);
}

/* The guest's self-check on a running VM finds nothing bad, and looked at every page
 * stamped by then (a fresh VM, sweep from 0). */
static void guest_verify_clean(struct vm *vm, const struct vm_config *c)
{
	struct vm_verify v;
	uint32_t before = vm_generation(vm), after;

	assert_int_equal(vm_guest_verify(vm, 10000, &v), 0);
	after = vm_generation(vm);
	ctx_set("guest self-check between generations %u and %u", before, after);
	EXPECT_EQ(v.bad, 0);
	EXPECT_EQ(v.first_bad, NO_BAD);
	EXPECT_TRUE(v.checked >= stamped_after(c, before) && v.checked <= stamped_after(c, after));
	EXPECT_TRUE(v.checked > 0);
}

/* The host's check of a paused VM finds nothing bad. */
static void host_verify_clean(struct vm *vm)
{
	struct vm_verify v;
	uint32_t bad[4];

	vm_host_verify(vm, &v, bad, 4);
	ctx_set("host check at generation %u", vm_generation(vm));
	if (v.bad)
		print_error("first bad pages: %u %u %u %u\n", bad[0], v.bad > 1 ? bad[1] : 0,
			    v.bad > 2 ? bad[2] : 0, v.bad > 3 ? bad[3] : 0);
	EXPECT_EQ(v.bad, 0);
	EXPECT_EQ(v.first_bad, NO_BAD);
	EXPECT_TRUE(v.checked > 0);
}

/* The paused vCPU's RIP is just past an OUT (it stopped at a tick, which KVM completed). */
static bool paused_after_out(struct vm *vm)
{
	struct kvm_regs regs;
	uint8_t *code;

	assert_int_equal(ioctl(vm->vcpu_fd, KVM_GET_REGS, &regs), 0);
	code = vm_gpa_to_host(vm, regs.rip - 1, 2);
	assert_non_null(code);
	return code[0] == OUT_DX_EAX && code[1] != OUT_DX_EAX;
}

/* Pause at a tick (the iteration finished and reported, nothing of the next one done): at a
 * throttled rate the vCPU spends nearly all its time there; retry when it was not. */
static void pause_at_tick(struct vm *vm)
{
	for (unsigned try = 0; try < 100; try++) {
		assert_int_equal(vm_pause(vm), 0);
		if (paused_after_out(vm))
			return;
		assert_int_equal(vm_resume(vm), 0);
		usleep((useconds_t)rng_below(2000));
	}
	fail_msg("100 pauses, none at a tick");
}

/* (a) A fresh VM runs, advances, and both checks pass. */
static void test_runs(void **state)
{
	struct vm_config c;
	static struct vm vm;
	uint32_t gen;

	config(&c, MEM_SMALL, 8, 16, 0);
	create(&vm, &c, true);
	EXPECT_EQ(vm.banks[0].addr, 0);
	EXPECT_EQ(vm.banks[1].addr, MEM_SMALL / 2);
	EXPECT_EQ(vm.banks[1].size, MEM_SMALL / 2);
	EXPECT_EQ(vm.banks[1].slot, 1);
	EXPECT_EQ(vm.mailbox->area_pages, AREA_SMALL);
	EXPECT_EQ(vm_dev_area_gpa(&vm, 3), MEM_SMALL - GUEST_DEV_AREA_SIZE);
	EXPECT_EQ(vm_generation(&vm), 0);
	assert_int_equal(vm_start(&vm), 0);
	wait_generation(&vm, 20, 10000);
	guest_verify_clean(&vm, &c);
	EXPECT_EQ(vm.verify_seq, 1);
	EXPECT_EQ(vm.mailbox->cmd, GUEST_CMD_RUN);
	wait_generation(&vm, vm_generation(&vm) + 2, 10000);
	assert_int_equal(vm_pause(&vm), 0);
	gen = vm_generation(&vm);
	/* a tick is counted when its OUT exits; generation is published just before */
	EXPECT_TRUE(gen - atomic_load(&vm.ticks) <= 1);
	host_verify_clean(&vm);
	EXPECT_EQ(vm.mailbox->verify_runs, 1);
	/* Each bank is its memfd (what a vfio-user device process maps): another mapping of
	 * the fd sees the guest's pages, and the mailbox at its offset. */
	for (unsigned i = 0; i < VM_NBANKS; i++) {
		uint64_t *other =
			mmap(NULL, vm.banks[i].size, PROT_READ, MAP_SHARED, vm.bank_fd[i], 0);

		assert_true(other != MAP_FAILED);
		EXPECT_EQ(memcmp(other, vm.banks[i].host, vm.banks[i].size), 0);
		if (i == 0)
			EXPECT_EQ(
				((const struct guest_mailbox *)((char *)other + GUEST_MAILBOX_GPA))
					->magic,
				GUEST_MAGIC);
		munmap(other, vm.banks[i].size);
	}
	vm_destroy(&vm);
	for (unsigned i = 0; i < VM_NBANKS; i++)
		EXPECT_EQ(vm.bank_fd[i], -1);
}

/* (b) A torn page, a stale page and a page written behind the ledger's back are found by
 * both checks, and nothing once repaired. */
static void test_corruption_caught(void **state)
{
	uint32_t hot = 8, sweep = 16, n = AREA_SMALL - hot, gen, pos, torn, stale, ghost;
	uint32_t bad[8], want_first;
	struct vm_config c;
	struct vm_verify v;
	static struct vm vm;

	config(&c, MEM_SMALL, hot, sweep, 200);
	create(&vm, &c, true);
	assert_int_equal(vm_start(&vm), 0);
	wait_generation(&vm, 10, 10000);
	assert_int_equal(vm_pause(&vm), 0);
	host_verify_clean(&vm);

	/* The last two pages of the last finished sweep (not in the iteration in flight, not
	 * swept again for n / sweep iterations) and one the sweep has not reached. */
	gen = vm_generation(&vm);
	pos = vm.mailbox->sweep_pos;
	torn = hot + (pos + n - 1) % n;
	stale = hot + (pos + n - 2) % n;
	ghost = hot + (pos + n / 2) % n;
	EXPECT_EQ(*ledger_entry(&vm, torn), gen);
	EXPECT_EQ(*ledger_entry(&vm, stale), gen);
	EXPECT_EQ(*ledger_entry(&vm, ghost), 0);
	area_page(&vm, torn)[2] ^= 1;
	write_stamp(area_page(&vm, stale), gen - 1, stale);
	area_page(&vm, ghost)[0] = 0xdeadbeef;
	want_first = torn < stale ? torn : stale;

	ctx_set("host check: torn %u, stale %u, ghost %u", torn, stale, ghost);
	vm_host_verify(&vm, &v, bad, 8);
	EXPECT_EQ(v.bad, 3);
	EXPECT_EQ(v.first_bad, want_first);
	EXPECT_EQ(bad[0], want_first);
	EXPECT_EQ(bad[1], want_first == torn ? stale : torn);
	EXPECT_EQ(bad[2], ghost);

	assert_int_equal(vm_resume(&vm), 0);
	assert_int_equal(vm_guest_verify(&vm, 10000, &v), 0);
	ctx_set("guest check: torn %u, stale %u, ghost %u", torn, stale, ghost);
	EXPECT_EQ(v.bad, 3);
	EXPECT_EQ(v.first_bad, want_first);

	assert_int_equal(vm_pause(&vm), 0);
	area_page(&vm, torn)[2] ^= 1;
	write_stamp(area_page(&vm, stale), *ledger_entry(&vm, stale), stale);
	area_page(&vm, ghost)[0] = 0;
	host_verify_clean(&vm);
	assert_int_equal(vm_resume(&vm), 0);
	guest_verify_clean(&vm, &c);
	vm_destroy(&vm);
}

/* Pause src, move it into a new VM dst (vCPU state and both banks), start dst. */
static void migrate(struct vm *src, struct vm *dst)
{
	size_t size = vm_cpu_state_size();
	void *blob = malloc(size);

	assert_non_null(blob);
	assert_int_equal(vm_pause(src), 0);
	assert_int_equal(vm_save_cpu(src, blob, size), (int64_t)size);
	create(dst, &src->cfg, false);
	for (unsigned i = 0; i < VM_NBANKS; i++)
		memcpy(dst->banks[i].host, src->banks[i].host, src->banks[i].size);
	assert_int_equal(vm_load_cpu(dst, blob, size), 0);
	assert_int_equal(vm_start(dst), 0);
	free(blob);
}

/* (c) A VM paused at a tick continues in another VM; the source stays still. */
static void test_migrate_at_tick(void **state)
{
	struct vm_config c;
	static struct vm a, b;
	uint32_t gen;

	config(&c, MEM_SMALL, 8, 16, 200);
	create(&a, &c, true);
	assert_int_equal(vm_start(&a), 0);
	wait_generation(&a, 10, 10000);
	pause_at_tick(&a);
	migrate(&a, &b);
	gen = vm_generation(&a);
	wait_generation(&b, gen + 10, 10000);
	EXPECT_EQ(vm_generation(&a), gen); /* paused means paused */
	guest_verify_clean(&b, &c);
	pause_at_tick(&b);
	host_verify_clean(&b);
	/* b's first tick was a's next generation: a's last OUT was complete when saved */
	ctx_set("a stopped at %u, b at %u after %llu ticks", gen, vm_generation(&b),
		(unsigned long long)atomic_load(&b.ticks));
	EXPECT_EQ(vm_generation(&b) - atomic_load(&b.ticks), gen);
	vm_destroy(&a);
	vm_destroy(&b);
}

/* (c) Paused anywhere, at full speed (mostly mid-iteration), moved six times. */
static void test_migrate_anywhere(void **state)
{
	struct vm_config c;
	static struct vm vms[2];
	unsigned cur = 0, mid = 0;
	uint32_t gen;

	config(&c, MEM_SMALL, 8, 16, 0);
	create(&vms[0], &c, true);
	assert_int_equal(vm_start(&vms[0]), 0);
	wait_generation(&vms[0], 3, 10000);
	for (unsigned hop = 0; hop < 6; hop++) {
		struct vm *src = &vms[cur], *dst = &vms[cur ^ 1];

		usleep((useconds_t)rng_below(3000));
		assert_int_equal(vm_pause(src), 0);
		mid += !paused_after_out(src);
		host_verify_clean(src);
		gen = vm_generation(src);
		migrate(src, dst);
		vm_destroy(src);
		wait_generation(dst, gen + 3, 10000);
		cur ^= 1;
	}
	printf("paused mid-iteration in %u of 6 hops\n", mid);
	guest_verify_clean(&vms[cur], &c);
	assert_int_equal(vm_pause(&vms[cur]), 0);
	host_verify_clean(&vms[cur]);
	vm_destroy(&vms[cur]);
}

/* (d) Pause is prompt even while the vCPU waits for its slot, completes the tick's OUT,
 * is idempotent, and the throttle still holds after a resume. */
static void test_pause_prompt(void **state)
{
	struct vm_config c;
	uint64_t t0, dt;
	static struct vm vm;

	config(&c, MEM_SMALL, 8, 16, 1);
	create(&vm, &c, true);
	assert_int_equal(vm_pause(&vm), 0); /* never started: nothing to stop */
	assert_int_equal(vm_start(&vm), 0);
	EXPECT_EQ(vm_start(&vm), -EBUSY);
	wait_generation(&vm, 1, 10000);
	while (atomic_load(&vm.ticks) < 1)
		usleep(100);
	/* the vCPU now waits ~1 s for its next slot */
	t0 = now_us();
	assert_int_equal(vm_pause(&vm), 0);
	dt = now_us() - t0;
	ctx_set("pause took %llu us", (unsigned long long)dt);
	EXPECT_TRUE(dt < 100000);
	EXPECT_TRUE(paused_after_out(&vm));
	EXPECT_EQ(vm_generation(&vm), 1);
	t0 = now_us();
	assert_int_equal(vm_pause(&vm), 0);
	EXPECT_TRUE(now_us() - t0 < 10000);
	EXPECT_EQ(vm_generation(&vm), 1);
	EXPECT_EQ(atomic_load(&vm.ticks), 1);

	assert_int_equal(vm_resume(&vm), 0);
	assert_int_equal(vm_resume(&vm), 0);
	usleep(200000);
	ctx_set("1 iteration per second, 200 ms after a resume");
	EXPECT_EQ(vm_generation(&vm), 1);
	t0 = now_us();
	assert_int_equal(vm_pause(&vm), 0);
	EXPECT_TRUE(now_us() - t0 < 100000);
	vm_destroy(&vm);
}

/* (d) Twenty pause/resume cycles at full speed: it always goes on, and the host check
 * passes wherever the pause lands. */
static void test_pause_cycles(void **state)
{
	struct vm_config c;
	static struct vm vm;
	uint32_t gen;

	config(&c, MEM_SMALL, 8, 16, 0);
	create(&vm, &c, true);
	assert_int_equal(vm_start(&vm), 0);
	for (unsigned i = 0; i < 20; i++) {
		gen = vm_generation(&vm);
		wait_generation(&vm, gen + 1, 10000);
		usleep((useconds_t)rng_below(1000));
		assert_int_equal(vm_pause(&vm), 0);
		ctx_set("cycle %u", i);
		EXPECT_TRUE(vm_generation(&vm) - atomic_load(&vm.ticks) <= 1);
		host_verify_clean(&vm);
		assert_int_equal(vm_resume(&vm), 0);
	}
	guest_verify_clean(&vm, &c);
	vm_destroy(&vm);
}

/* The throttle: at 100 iterations per second, never more. */
static void test_throttle(void **state)
{
	struct vm_config c;
	uint64_t t0, dt;
	static struct vm vm;
	uint32_t gen;

	config(&c, MEM_SMALL, 8, 16, 100);
	create(&vm, &c, true);
	t0 = now_us();
	assert_int_equal(vm_start(&vm), 0);
	usleep(500000);
	assert_int_equal(vm_pause(&vm), 0);
	dt = now_us() - t0;
	gen = vm_generation(&vm);
	ctx_set("%u iterations in %llu us at 100/s", gen, (unsigned long long)dt);
	EXPECT_TRUE(gen <= dt / 10000 + 2);
	EXPECT_TRUE(gen >= 10);
	vm_destroy(&vm);
}

/* (e) Configs out of range. */
static void test_bad_config(void **state)
{
	static const struct {
		uint64_t mem;
		uint32_t hot, sweep;
	} bad[] = {
		{0, 8, 8},
		{GUEST_MEM_MIN - 2 * MIB, 8, 8},
		{GUEST_MEM_MIN + MIB, 8, 8},
		{GUEST_MEM_MAX + 2 * MIB, 8, 8},
		{MEM_SMALL, AREA_SMALL, 1},
		{MEM_SMALL, 1, AREA_SMALL},
		{MEM_SMALL, UINT32_MAX, 2},
	};
	struct vm_config c;
	static struct vm vm;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		config(&c, bad[i].mem, bad[i].hot, bad[i].sweep, 0);
		ctx_set("config %u", i);
		EXPECT_EQ(vm_create(&vm, &c, true), -EINVAL);
		vm_destroy(&vm); /* no-op after a failed create */
	}
	/* the edges are accepted */
	config(&c, MEM_SMALL, AREA_SMALL - 1, 1, 0);
	create(&vm, &c, true);
	vm_destroy(&vm);
}

/* (e) State blobs: refused unless whole, ours and of the same memory size. */
static void test_bad_state(void **state)
{
	size_t size = vm_cpu_state_size();
	uint8_t *blob = malloc(size + 1), *bad = malloc(size + 1);
	struct vm_config c, c2;
	static struct vm a, b, other;
	struct vm_verify v;

	assert_non_null(blob);
	assert_non_null(bad);
	config(&c, MEM_SMALL, 8, 16, 200);
	create(&a, &c, true);
	assert_int_equal(vm_start(&a), 0);
	wait_generation(&a, 2, 10000);
	EXPECT_EQ(vm_save_cpu(&a, blob, size), -EBUSY); /* running */
	assert_int_equal(vm_pause(&a), 0);
	EXPECT_EQ(vm_save_cpu(&a, blob, size - 1), -ENOSPC);
	assert_int_equal(vm_save_cpu(&a, blob, size + 1), (int64_t)size);

	create(&b, &c, false);
	EXPECT_EQ(vm_load_cpu(&b, blob, size - 1), -EINVAL);
	EXPECT_EQ(vm_load_cpu(&b, blob, 16), -EINVAL);
	memcpy(bad, blob, size);
	bad[size] = 0;
	EXPECT_EQ(vm_load_cpu(&b, bad, size + 1), -EINVAL);
	bad[0] ^= 0x40; /* magic */
	EXPECT_EQ(vm_load_cpu(&b, bad, size), -EINVAL);
	memcpy(bad, blob, size);
	bad[4] ^= 2; /* version */
	EXPECT_EQ(vm_load_cpu(&b, bad, size), -EINVAL);
	memcpy(bad, blob, size);
	bad[12] = 1; /* reserved */
	EXPECT_EQ(vm_load_cpu(&b, bad, size), -EINVAL);
	assert_int_equal(vm_load_cpu(&b, blob, size), 0); /* positive control */

	c2 = c;
	c2.mem_size = MEM_SMALL + 2 * MIB;
	create(&other, &c2, false);
	EXPECT_EQ(vm_load_cpu(&other, blob, size), -EINVAL);
	vm_destroy(&other);

	/* b runs; loading into a running VM is refused */
	for (unsigned i = 0; i < VM_NBANKS; i++)
		memcpy(b.banks[i].host, a.banks[i].host, a.banks[i].size);
	assert_int_equal(vm_start(&b), 0);
	EXPECT_EQ(vm_load_cpu(&b, blob, size), -EBUSY);
	wait_generation(&b, vm_generation(&a) + 2, 10000);
	guest_verify_clean(&b, &c);

	/* the other control calls in the wrong state */
	EXPECT_EQ(vm_guest_verify(&a, 100, &v), -EINVAL); /* paused */
	vm_destroy(&a);
	create(&a, &c, true);
	EXPECT_EQ(vm_resume(&a), -EINVAL); /* never started */
	vm_destroy(&a);
	vm_destroy(&b);
	free(blob);
	free(bad);
}

/* Start a VM whose mailbox was spoiled; the guest panics with code and the VM says -EIO. */
static void expect_panic(uint32_t code, void (*spoil)(struct guest_mailbox *))
{
	uint64_t end = now_us() + 10000000;
	struct vm_config c;
	struct vm_verify v;
	static struct vm vm;

	config(&c, MEM_SMALL, 8, 16, 0);
	create(&vm, &c, true);
	spoil(vm.mailbox);
	assert_int_equal(vm_start(&vm), 0);
	while (!vcpu_error(&vm) && now_us() < end)
		usleep(1000);
	ctx_set("panic %u", code);
	EXPECT_EQ(vcpu_error(&vm), -EIO);
	EXPECT_EQ(vm.panic, code);
	EXPECT_EQ(vm_pause(&vm), -EIO);
	EXPECT_EQ(vm_resume(&vm), -EIO);
	EXPECT_EQ(vm_guest_verify(&vm, 100, &v), -EIO);
	EXPECT_EQ(vm_generation(&vm), 0);
	vm_destroy(&vm);
}

static void spoil_magic(struct guest_mailbox *mb)
{
	mb->magic ^= 1;
}

static void spoil_version(struct guest_mailbox *mb)
{
	mb->version = GUEST_VERSION + 1;
}

static void spoil_config(struct guest_mailbox *mb)
{
	mb->sweep_pages = mb->area_pages;
}

static void spoil_sweep_pos(struct guest_mailbox *mb)
{
	mb->sweep_pos = mb->area_pages - mb->hot_pages;
}

/* (f) */
static void test_panic(void **state)
{
	expect_panic(GUEST_PANIC_MAILBOX, spoil_magic);
	expect_panic(GUEST_PANIC_MAILBOX, spoil_version);
	expect_panic(GUEST_PANIC_CONFIG, spoil_config);
	expect_panic(GUEST_PANIC_CONFIG, spoil_sweep_pos);
}

/* Pages the guest wrote in generations (from, to] with the sweep at pos0 before from. */
static void expect_written(const struct vm_config *c, uint32_t area, uint32_t pos0, uint32_t from,
			   uint32_t to, uint64_t *want)
{
	uint32_t sweep_len = area - c->hot_pages;

	bit_set(want, GUEST_MAILBOX_GPA / GUEST_PAGE);
	bit_set(want, GUEST_LEDGER_GPA / GUEST_PAGE - 1); /* the stack's top page */
	for (uint32_t g = from + 1; g <= to; g++) {
		for (uint32_t i = 0; i < c->hot_pages + c->sweep_pages; i++) {
			uint32_t p = i < c->hot_pages
					     ? i
					     : c->hot_pages + (pos0 + i - c->hot_pages) % sweep_len;

			bit_set(want, GUEST_AREA_GPA / GUEST_PAGE + p);
			bit_set(want, (GUEST_LEDGER_GPA + 4ull * p) / GUEST_PAGE);
		}
		pos0 = (pos0 + c->sweep_pages) % sweep_len;
	}
}

/* The KVM dirty log over both banks sees exactly the guest's writes: the sweep crosses the
 * bank boundary, the device areas and the code stay clean. */
static void test_dirty_log(void **state)
{
	uint64_t mem = 136 * MIB, npages = mem / GUEST_PAGE;
	int64_t reported;
	uint32_t area = area_pages(mem);
	/* area index of the first page of bank 1 */
	uint32_t boundary = (uint32_t)((mem / 2 - GUEST_AREA_GPA) / GUEST_PAGE), pos, gen;
	uint64_t *got = calloc(npages / 64, 8), *want = calloc(npages / 64, 8);
	struct dt_source_opts o = {.size = sizeof(o), .type = DT_SOURCE_KVM_LOG, .nvcpus = 1};
	struct dt_source *src;
	struct vm_config c;
	static struct vm vm;

	assert_non_null(got);
	assert_non_null(want);
	config(&c, mem, 4, 8, 100);
	create(&vm, &c, true);
	pos = boundary - c.hot_pages - 20; /* crosses into bank 1 after 3 iterations */
	vm.mailbox->sweep_pos = pos;
	o.regions = vm.banks;
	o.nregions = VM_NBANKS;
	o.vm_fd = vm.vm_fd;
	o.vcpu_fds = &vm.vcpu_fd;
	src = dt_source_new(&o);
	assert_non_null(src);
	assert_int_equal(dt_source_start(src), 0);
	assert_int_equal(vm_start(&vm), 0);
	wait_generation(&vm, 6, 10000);
	pause_at_tick(&vm); /* whole iterations only */
	gen = vm_generation(&vm);
	reported = dt_source_harvest(src, 0, npages, got, 0);
	EXPECT_TRUE(reported > 0);
	expect_written(&c, area, pos, 0, gen, want);
	ctx_set("dirty log after %u generations", gen);
	check_bitmap(test_ctx, got, want, npages, reported);
	EXPECT_TRUE(bit_test(got, (mem / 2) / GUEST_PAGE)); /* bank 1 (slot 1) reported */
	assert_int_equal(dt_source_stop(src), 0);
	dt_source_free(src);
	vm_destroy(&vm);
	free(got);
	free(want);
}

static unsigned ring_fulls;

static int ring_full(void *opaque)
{
	ring_fulls++;
	return dt_source_kvm_ring_full(opaque);
}

/* With cfg.dirty_ring the ring is enabled before the vCPU exists, and ring_full is called
 * when it fills: every page the guest wrote is reported. A host that lets the ring overflow
 * (kvm_pvm) makes the source inexact (it then reports everything) and finally wedges the
 * vCPU: dt_source_kvm_ring_full() fails with -EOVERFLOW, which must stop the vCPU with that
 * error rather than spin. */
static void test_dirty_ring(void **state)
{
	static uint64_t got[MEM_SMALL / GUEST_PAGE / 64], want[MEM_SMALL / GUEST_PAGE / 64];
	uint64_t npages = MEM_SMALL / GUEST_PAGE, missed = 0, end = now_us() + 20000000;
	struct dt_source_opts o = {.size = sizeof(o), .type = DT_SOURCE_KVM_RING, .nvcpus = 1};
	struct dt_source *src;
	struct vm_config c;
	static struct vm vm;
	uint32_t gen;
	int ret;

	config(&c, MEM_SMALL, 4, 64, 0);
	c.dirty_ring = 4096;
	ret = vm_create(&vm, &c, true);
	if (ret == -ENOTSUP || ret == -EINVAL || ret == -ENODEV) {
		print_message("no dirty ring here (%s): skipped\n", strerror(-ret));
		skip();
	}
	assert_int_equal(ret, 0);
	live[0] = &vm;
	EXPECT_TRUE(vm.cfg.dirty_ring >= 4096);
	o.regions = vm.banks;
	o.nregions = VM_NBANKS;
	o.vm_fd = vm.vm_fd;
	o.vcpu_fds = &vm.vcpu_fd;
	o.ring_entries = vm.cfg.dirty_ring;
	src = dt_source_new(&o);
	assert_non_null(src);
	assert_int_equal(dt_source_start(src), 0);
	vm.ring_full = ring_full;
	vm.ring_full_opaque = src;
	ring_fulls = 0;
	assert_int_equal(vm_start(&vm), 0);
	/* 64 new pages per iteration: the ring fills several times */
	while (vm_generation(&vm) < 200 && !vcpu_error(&vm) && now_us() < end)
		usleep(1000);
	ret = vm_pause(&vm);
	gen = vm_generation(&vm);
	ctx_set("dirty ring after %u generations, %u ring-full exits", gen, ring_fulls);
	EXPECT_TRUE(ring_fulls > 0);
	if (ret) {
		printf("the host overfilled the ring: vCPU stopped (%s) at generation %u\n",
		       strerror(-ret), gen);
		EXPECT_EQ(ret, -EOVERFLOW);
		EXPECT_TRUE(!(dt_source_caps(src) & DT_SOURCE_CAP_EXACT));
	} else {
		EXPECT_TRUE(gen >= 200);
	}
	EXPECT_TRUE(dt_source_harvest(src, 0, npages, got, 0) > 0);
	expect_written(&c, AREA_SMALL, 0, 0, gen, want);
	for (uint64_t p = 0; p < npages; p++)
		missed += bit_test(want, p) && !bit_test(got, p);
	EXPECT_EQ(missed, 0);
	printf("%u ring-full exits; the source is %sexact\n", ring_fulls,
	       dt_source_caps(src) & DT_SOURCE_CAP_EXACT ? "" : "no longer ");
	dt_source_free(src);
	vm_destroy(&vm);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_runs, destroy_all),
		cmocka_unit_test_teardown(test_corruption_caught, destroy_all),
		cmocka_unit_test_teardown(test_migrate_at_tick, destroy_all),
		cmocka_unit_test_teardown(test_migrate_anywhere, destroy_all),
		cmocka_unit_test_teardown(test_pause_prompt, destroy_all),
		cmocka_unit_test_teardown(test_pause_cycles, destroy_all),
		cmocka_unit_test_teardown(test_throttle, destroy_all),
		cmocka_unit_test_teardown(test_bad_config, destroy_all),
		cmocka_unit_test_teardown(test_bad_state, destroy_all),
		cmocka_unit_test_teardown(test_panic, destroy_all),
		cmocka_unit_test_teardown(test_dirty_log, destroy_all),
		cmocka_unit_test_teardown(test_dirty_ring, destroy_all),
	};

	close(kvm_open_or_skip());
	test_seed_init(argc, argv);
	return cmocka_run_group_tests_name("vm", tests, NULL, NULL);
}
