/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/machine_test.h - what the end-to-end machine tests share: a destination machine
 * receiving in its own thread, and one migration from a running source into it over an
 * in-memory transport pair. Include after <cmocka.h>, "../core/test_util.h", "../kvm/kvm_check.h" and "machine.h".
 */
#ifndef DT_TESTS_VMM_MACHINE_TEST_H
#define DT_TESTS_VMM_MACHINE_TEST_H

#include <pthread.h>

/* Small VMs: guest writes cost ~2 us here (kvm_pvm). */
#define MACHINE_TEST_MEM (96ull << 20)

/* The machines of these tests: small, busy devices, the seed's random pages. */
static inline void machine_test_opts(struct machine_opts *o, bool device_tracking)
{
	machine_opts_defaults(o);
	o->vm.mem_size = MACHINE_TEST_MEM;
	o->vm.iter_per_sec = 500;
	o->dev.writes_per_sec = 3000;
	o->dev.pin_after_ms = 100;
	o->dev.seed = test_seed;
	o->device_tracking = device_tracking;
}

struct dest {
	struct machine m;
	struct dt_transport *t;
	struct dt_migrate_dest_result res;
	int ret;
};

static inline void *machine_test_dest_main(void *arg)
{
	struct dest *d = arg;

	d->ret = machine_migrate_in(&d->m, d->t, &d->res);
	/* as a socket closes: a source blocked on a full buffer must hear of a refusal */
	if (d->ret)
		dt_transport_shutdown(d->t);
	return NULL;
}

/*
 * Migrate src into d, whose machine the caller made (machine_new, !source). fail_after > 0
 * breaks the transport after that many bytes. The limit is 2 s: ASan and a shared machine,
 * not timed. Returns machine_migrate_out's result; d->ret is the destination's.
 */
static inline int machine_test_migrate(struct machine *src, struct dest *d, uint64_t fail_after,
				       bool defer, struct dt_migrate_result *res)
{
	struct dt_transport_pair_opts po = {.size = sizeof(po), .fail_after_bytes = fail_after};
	struct dt_migrate_source_opts so = {.size = sizeof(so)};
	struct dt_transport *a;
	pthread_t thread;
	int ret;

	memset(res, 0, sizeof(*res));
	assert_int_equal(dt_transport_pair(&po, &a, &d->t), 0);
	assert_int_equal(pthread_create(&thread, NULL, machine_test_dest_main, d), 0);
	so.policy.max_downtime_ns = 2000000000ull;
	so.policy.no_defer_pinned = !defer;
	ret = machine_migrate_out(src, a, &so, res);
	if (ret)
		dt_transport_shutdown(a);
	assert_int_equal(pthread_join(thread, NULL), 0);
	dt_transport_free(a);
	dt_transport_free(d->t);
	return ret;
}

/* main(): skip without /dev/kvm, the seed, the library's warnings, the tests. */
static inline int machine_test_main(int argc, char **argv, const char *name,
				    const struct CMUnitTest *tests, size_t ntests)
{
	close(kvm_open_or_skip());
	test_seed_init(argc, argv);
	dt_set_log(dt_log_stderr, NULL, DT_LOG_WARN); /* a refusal says why */
	return _cmocka_run_group_tests(name, tests, ntests, NULL, NULL);
}

#endif
