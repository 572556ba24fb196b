/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/test_machine.c - end to end: the micro-VM with its four DMA devices migrated to
 * a second machine in the same process over an in-memory transport pair.
 *
 *  - migrate: memory equal at switchover (the digests, and every stamp checked against the
 *    guest's ledger and the devices' records), the guest's self-check passes after resuming
 *    on the destination, the vCPU's generation and every device's sequence carried over and
 *    advancing there;
 *  - no device tracking: the negative control. The digest refuses the stream and the devices'
 *    records name stale pages, so the checks above are proven able to fail;
 *  - abort and retry: the transport breaks at a random byte; the source runs on and a second
 *    migration succeeds and verifies;
 *  - deferral: pinned pages (the EMULATED ring, the PASSTHROUGH ring once pinned) are sent
 *    once, in stop-and-copy; without deferral, in pre-copy rounds too.
 *
 * Exits 77 without /dev/kvm. Guest writes cost ~2 us here (kvm_pvm), so the VMs are small.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "../core/test_util.h"
#include "../kvm/kvm_check.h"
#include "machine.h"
#include "machine_test.h"

static void source_up(struct machine *src, const struct machine_opts *o)
{
	assert_int_equal(machine_new(src, o, true), 0);
	assert_int_equal(machine_start(src), 0);
	assert_int_equal(machine_track_start(src), 0);
	usleep(400000); /* the guest stamps, the devices write, passthrough pins */
}

/* One migration of src into a new destination d; fail_after > 0 breaks the transport. */
static int migrate(struct machine *src, struct dest *d, const struct machine_opts *o,
		   uint64_t fail_after, bool defer, struct dt_migrate_result *res)
{
	memset(d, 0, sizeof(*d));
	assert_int_equal(machine_new(&d->m, o, false), 0);
	return machine_test_migrate(src, d, fail_after, defer, res);
}

/* Run the destination a while: the guest checks itself, generation and devices advance. */
static void dest_runs_on(struct dest *d)
{
	uint64_t before[VDEV_NTYPES] = {0};
	uint32_t gen = vm_generation(&d->m.vm);
	struct machine_check chk;
	struct vm_verify v;

	for (unsigned t = 0; t < VDEV_NTYPES; t++)
		before[t] = vdev_writes(d->m.dev[t]);
	assert_int_equal(machine_start(&d->m), 0);
	assert_int_equal(vm_guest_verify(&d->m.vm, 60000, &v), 0);
	EXPECT_EQ(v.bad, 0);
	EXPECT_TRUE(v.checked > 0);
	usleep(300000);
	assert_int_equal(machine_pause(&d->m), 0);
	EXPECT_TRUE(vm_generation(&d->m.vm) > gen);
	for (unsigned t = 0; t < VDEV_NTYPES; t++) {
		ctx_set("device %s on the destination", vdev_name(d->m.dev[t]));
		EXPECT_TRUE(vdev_writes(d->m.dev[t]) > before[t]);
	}
	machine_check(&d->m, &chk);
	EXPECT_EQ(chk.host.bad, 0);
	EXPECT_EQ(chk.dev_bad_total, 0);
}

/* Everything carried: memory, vCPU, devices. src is paused (switchover done). */
static void check_carried(struct machine *src, struct dest *d, const struct dt_migrate_result *res)
{
	struct machine_check chk;

	assert_int_equal(d->ret, 0);
	EXPECT_EQ(d->res.digest, res->digest);
	EXPECT_EQ(d->res.ndevices_loaded, src->nmdev);
	machine_check(&d->m, &chk);
	EXPECT_EQ(chk.host.bad, 0);
	EXPECT_EQ(chk.dev_bad_total, 0);
	EXPECT_EQ(vm_generation(&d->m.vm), vm_generation(&src->vm));
	EXPECT_TRUE(vm_generation(&src->vm) > 0);
	for (unsigned t = 0; t < VDEV_NTYPES; t++) {
		ctx_set("device %s", vdev_name(src->dev[t]));
		EXPECT_TRUE(vdev_writes(src->dev[t]) > 0);
		EXPECT_EQ(vdev_writes(d->m.dev[t]), vdev_writes(src->dev[t]));
	}
	/* every byte equal, not only the stamps */
	for (unsigned b = 0; b < VM_NBANKS; b++)
		EXPECT_EQ(
			memcmp(src->vm.banks[b].host, d->m.vm.banks[b].host, src->vm.banks[b].size),
			0);
}

/* A source up and running, migrated whole into d; src is left paused. */
static void migrate_carried(struct machine *src, struct dest *d, struct machine_opts *o, bool defer,
			    struct dt_migrate_result *res)
{
	machine_test_opts(o, true);
	source_up(src, o);
	assert_int_equal(migrate(src, d, o, 0, defer, res), 0);
	check_carried(src, d, res);
}

static void test_migrate(void **state)
{
	struct dt_migrate_result res;
	struct machine_opts o;
	struct machine src;
	struct dest d;

	migrate_carried(&src, &d, &o, true, &res);
	/* deferral: pinned pages only in stop-and-copy, each once */
	EXPECT_EQ(res.pinned_sent_precopy, 0);
	EXPECT_EQ(res.pinned_sent_final, 2 * o.dev.ring_pages);
	machine_free(&src);
	dest_runs_on(&d);
	machine_free(&d.m);
}

static void test_no_defer(void **state)
{
	struct dt_migrate_result res;
	struct machine_opts o;
	struct machine src;
	struct dest d;

	migrate_carried(&src, &d, &o, false, &res);
	/* round 0 sends them as any page; every later round again */
	EXPECT_TRUE(res.rounds >= 2);
	EXPECT_TRUE(res.pinned_sent_precopy >= 2 * o.dev.ring_pages * (res.rounds - 1));
	machine_free(&src);
	machine_free(&d.m);
}

/* The negative control: the checks must fail when the devices' writes are not tracked. */
static void test_no_device_tracking(void **state)
{
	struct dt_migrate_result res;
	struct machine_check chk;
	struct machine_opts o;
	struct machine src;
	uint32_t gen;
	struct dest d;

	machine_test_opts(&o, false);
	source_up(&src, &o);
	EXPECT_EQ(migrate(&src, &d, &o, 0, true, &res), -EPROTO);
	EXPECT_EQ(d.ret, -EPROTO); /* the digest differs */
	/* the source runs on */
	gen = vm_generation(&src.vm);
	usleep(200000);
	EXPECT_TRUE(vm_generation(&src.vm) > gen);
	/* the guest's own pages are tracked by KVM: intact; the devices' are stale */
	machine_check(&d.m, &chk);
	EXPECT_EQ(chk.host.bad, 0);
	EXPECT_TRUE(chk.dev_bad[VDEV_EMULATED] > 0);
	EXPECT_TRUE(chk.dev_bad_total >= chk.dev_bad[VDEV_EMULATED]);
	print_message("without device tracking: %llu stale device pages, first at 0x%llx\n",
		      (unsigned long long)chk.dev_bad_total,
		      (unsigned long long)chk.dev_bad_gpa[VDEV_EMULATED][0]);
	machine_free(&src);
	machine_free(&d.m);
}

static void test_abort_retry(void **state)
{
	struct dt_migrate_result res;
	struct machine_opts o;
	struct machine src;
	uint64_t cut;
	uint32_t gen;
	struct dest d;

	machine_test_opts(&o, true);
	source_up(&src, &o);
	for (unsigned i = 0; i < 3; i++) {
		cut = 4096 + rng_below(8ull << 20);
		ctx_set("cut after %llu bytes", (unsigned long long)cut);
		EXPECT_TRUE(migrate(&src, &d, &o, cut, true, &res) < 0);
		EXPECT_TRUE(d.ret < 0);
		machine_free(&d.m);
		gen = vm_generation(&src.vm);
		usleep(150000);
		EXPECT_TRUE(vm_generation(&src.vm) > gen); /* resumed */
	}
	assert_int_equal(migrate(&src, &d, &o, 0, true, &res), 0);
	check_carried(&src, &d, &res);
	machine_free(&src);
	dest_runs_on(&d);
	machine_free(&d.m);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate),
		cmocka_unit_test(test_no_defer),
		cmocka_unit_test(test_no_device_tracking),
		cmocka_unit_test(test_abort_retry),
	};

	return machine_test_main(argc, argv, "machine", tests, sizeof(tests) / sizeof(tests[0]));
}
