/* SPDX-License-Identifier: MIT */
/*
 * tests/migrate/test_migrate.c - the pre-copy engine end to end through an in-memory
 * transport: a source "VM" (anonymous memory tracked by userfaultfd write-protect, plus a
 * container with a VMM device and an emulated device that pins a ring) migrates to a
 * destination thread while a writer thread dirties pages; afterwards the destination's
 * memory must equal the source's byte for byte.
 *
 * Also: pinned pages deferred to stop-and-copy (and sent every round without deferral),
 * device state carried, an abort at many points of the stream merges every harvested page
 * back (a harvest after it sees them all) and a retry succeeds, the give-up path, the
 * destination refusing bad streams, its running digest at stream page sizes other than
 * 4 KiB, and every -EINVAL of the options.
 *
 * Randomized parts print their seed (DT_SEED=n to replay).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#include "../seed.h"
#include "dest_thread.h"
#include "migrate/wire.h"

#define PAGE	4096ull
#define GPA	0x100000ull /* guest-physical base of the migrated memory */
#define NPAGES	4096ull	    /* 16 MiB */
#define RING	16ull	    /* pages the emulated device pins, at RING_AT */
#define RING_AT 100ull

struct vm {
	uint8_t *mem, *dst;
	struct dt_source *cpu;
	struct dt_iommu *iommu;
	struct dt_device *vmm, *emu;
	struct dt_dirty_set *set;
	struct dt_region region, dst_region;
	/* the writer thread */
	pthread_t writer;
	atomic_bool stop, running;
	atomic_uint_fast64_t writes;
	uint64_t rng;
	unsigned write_span; /* pages it writes into, from 0 */
	/* callbacks seen */
	int paused, resumed, rounds_seen;
	bool json_ok;
};

static void *writer_main(void *arg)
{
	struct vm *vm = arg;

	while (!atomic_load(&vm->stop)) {
		uint64_t r = rnd(&vm->rng), page = r % vm->write_span;

		vm->mem[page * PAGE + (r >> 32) % PAGE] = (uint8_t)(r >> 8) | 1;
		/* The emulated device keeps writing its pinned ring. */
		vm->mem[(RING_AT + r % RING) * PAGE + 8] = (uint8_t)r;
		atomic_fetch_add(&vm->writes, 1);
		if (!(atomic_load(&vm->writes) % 64))
			usleep(50);
	}
	return NULL;
}

static void writer_start(struct vm *vm, unsigned span)
{
	vm->write_span = span;
	atomic_store(&vm->stop, false);
	assert_int_equal(pthread_create(&vm->writer, NULL, writer_main, vm), 0);
	atomic_store(&vm->running, true);
}

static void writer_stop(struct vm *vm)
{
	if (!atomic_load(&vm->running))
		return;
	atomic_store(&vm->stop, true);
	pthread_join(vm->writer, NULL);
	atomic_store(&vm->running, false);
}

static int cb_pause(void *opaque)
{
	struct vm *vm = opaque;

	writer_stop(vm);
	vm->paused++;
	return 0;
}

static void cb_resume(void *opaque)
{
	((struct vm *)opaque)->resumed++;
}

static void cb_round(void *opaque, const struct dt_round_stats *s, const char *json)
{
	struct vm *vm = opaque;
	char want[32];

	snprintf(want, sizeof(want), "\"round\":%u", s->round);
	if (!strstr(json, want) || json[0] != '{' || json[strlen(json) - 1] != '}')
		vm->json_ok = false;
	vm->rounds_seen++;
}

static void vm_init(struct vm *vm, bool with_ring)
{
	struct dt_source_opts so = {.size = sizeof(so), .vm_fd = -1, .nregions = 1};
	struct dt_dirty_set_opts dso = {.size = sizeof(dso), .base = GPA, .length = NPAGES * PAGE};
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.iova = GPA,
		.size = NPAGES * PAGE,
	};

	memset(vm, 0, sizeof(*vm));
	vm->json_ok = true;
	vm->rng = seed;
	vm->mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);
	vm->dst = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);
	assert_true(vm->mem != MAP_FAILED && vm->dst != MAP_FAILED);
	/* Some data, some zero pages, and garbage at the destination that must be overwritten
	 * (zero pages included). */
	for (uint64_t p = 0; p < NPAGES; p++) {
		if (p % 3)
			memset(vm->mem + p * PAGE, (int)(p * 7 + 1), PAGE);
		vm->dst[p * PAGE + p % PAGE] = 0xee;
	}
	vm->region = (struct dt_region){.addr = GPA, .size = NPAGES * PAGE, .host = vm->mem};
	vm->dst_region = (struct dt_region){.addr = GPA, .size = NPAGES * PAGE, .host = vm->dst};
	so.regions = &vm->region;
	so.type = DT_SOURCE_UFFD_WP;
	vm->cpu = dt_source_new(&so);
	if (!vm->cpu)
		skip(); /* no userfaultfd write-protect here */
	vm->iommu = dt_iommu_new();
	map.vaddr = (uintptr_t)vm->mem;
	assert_int_equal(dt_vfio_ioctl(vm->iommu, VFIO_IOMMU_MAP_DMA, &map), 0);
	vm->vmm = dt_device_attach(vm->iommu, DT_DEVICE_EMULATED);
	assert_int_equal(dt_device_set_flags(vm->vmm, DT_DEVICE_F_VMM), 0);
	vm->emu = dt_device_attach(vm->iommu, DT_DEVICE_EMULATED);
	vm->set = dt_dirty_set_new(&dso);
	assert_non_null(vm->set);
	assert_int_equal(dt_dirty_set_add_source(vm->set, vm->cpu), 0);
	assert_int_equal(dt_dirty_set_add_iommu(vm->set, vm->iommu, GPA), 0);
	assert_int_equal(dt_source_start(vm->cpu), 0);
	assert_int_equal(dt_iommu_dirty_start(vm->iommu), 0);
	if (with_ring)
		assert_int_equal(
			dt_pin_pages(vm->emu, GPA + RING_AT * PAGE, RING, PROT_WRITE, NULL),
			(int)RING);
}

static void vm_fini(struct vm *vm)
{
	writer_stop(vm);
	dt_dirty_set_free(vm->set);
	dt_source_free(vm->cpu);
	dt_iommu_free(vm->iommu);
	munmap(vm->mem, NPAGES * PAGE);
	munmap(vm->dst, NPAGES * PAGE);
}

static void expect_equal_memory(const struct vm *vm)
{
	for (uint64_t p = 0; p < NPAGES; p++)
		if (memcmp(vm->mem + p * PAGE, vm->dst + p * PAGE, PAGE))
			fail_msg("page %llu differs at the destination (seed %llu)",
				 (unsigned long long)p, (unsigned long long)seed);
}

/* ---- a destination thread --------------------------------------------------------------- */

static void dest_start(struct dest *d, struct dt_transport *t, const struct dt_region *r,
		       const struct dt_migrate_device *devs, unsigned ndevs)
{
	memset(d, 0, sizeof(*d));
	d->opts = (struct dt_migrate_dest_opts){
		.size = sizeof(d->opts),
		.transport = t,
		.regions = r,
		.nregions = r ? 1 : 0,
		.devices = devs,
		.ndevices = ndevs,
	};
	assert_int_equal(pthread_create(&d->thread, NULL, dest_main, d), 0);
}

static int dest_join(struct dest *d)
{
	pthread_join(d->thread, NULL);
	return d->ret;
}

static struct dt_migrate_source_opts source_opts(struct vm *vm, struct dt_transport *t)
{
	return (struct dt_migrate_source_opts){
		.size = sizeof(struct dt_migrate_source_opts),
		.transport = t,
		.set = vm->set,
		.regions = &vm->region,
		.nregions = 1,
		.opaque = vm,
		.pause = cb_pause,
		.resume = cb_resume,
		.on_round = cb_round,
		/* Correctness, not timing: a loaded machine must not make the policy give up.
		 * The tests about giving up set their own limit. */
		.policy = {.max_downtime_ns = 10000000000ull},
	};
}

static void pair(struct dt_transport **a, struct dt_transport **b, uint64_t fail_after)
{
	struct dt_transport_pair_opts po = {.size = sizeof(po), .fail_after_bytes = fail_after};

	assert_int_equal(dt_transport_pair(&po, a, b), 0);
}

static uint64_t last_stream_bytes; /* both ways, of the last migrate() */

/* One migration from vm to its dst; returns the source's result code. */
static int migrate(struct vm *vm, struct dt_migrate_source_opts *so, struct dt_migrate_result *res,
		   struct dest *d, uint64_t fail_after, const struct dt_migrate_device *ddevs,
		   unsigned nddevs)
{
	struct dt_transport *a, *b;
	int ret;

	pair(&a, &b, fail_after);
	so->transport = a;
	dest_start(d, b, &vm->dst_region, ddevs, nddevs);
	ret = dt_migrate_source(so, res);
	last_stream_bytes = dt_transport_bytes_sent(a) + dt_transport_bytes_received(a);
	dt_transport_shutdown(a);
	dest_join(d);
	dt_transport_free(a);
	dt_transport_free(b);
	return ret;
}

/* The destination refused: the source reads its ERROR (-EPROTO), unless the destination
 * closed before the source read it (then the broken stream is all the source knows). */
static void expect_refused(int ret)
{
	if (ret != -EPROTO && ret != -EPIPE && ret != -ECONNRESET)
		fail_msg("the source returned %d (%s) for a refused stream", ret, strerror(-ret));
}

static enum dt_decision ask_switch(void *opaque, const struct dt_round_stats *r, unsigned n)
{
	return DT_DECISION_SWITCHOVER;
}

/* What most tests use: a VM, source options for it, and a destination. */
struct mig {
	struct vm vm;
	struct dt_migrate_source_opts so;
	struct dt_migrate_result res;
	struct dest d;
};

static void mig_init(struct mig *m, bool with_ring)
{
	vm_init(&m->vm, with_ring);
	m->so = source_opts(&m->vm, NULL);
}

/* After a migration: the writer runs again, for another one from the same VM. */
static void mig_init_again(struct mig *m)
{
	writer_start(&m->vm, m->vm.write_span);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_idle(void **state)
{
	struct mig m;

	mig_init(&m, false);
	assert_int_equal(migrate(&m.vm, &m.so, &m.res, &m.d, 0, NULL, 0), 0);
	assert_int_equal(m.d.ret, 0);
	expect_equal_memory(&m.vm);
	assert_int_equal(m.vm.paused, 1);
	assert_int_equal(m.vm.resumed, 0);
	assert_true(m.res.rounds >= 1);
	assert_int_equal(m.vm.rounds_seen, m.res.rounds);
	assert_true(m.vm.json_ok);
	/* Round 0 sent every page; a third of them are zero. */
	assert_true(m.res.pages_sent >= NPAGES);
	assert_true(m.res.zero_pages >= NPAGES / 3);
	assert_int_equal(m.d.res.pages_received, m.res.pages_sent);
	assert_int_equal(m.d.res.digest, m.res.digest);
	assert_int_equal(m.res.decision, DT_DECISION_SWITCHOVER);
	assert_true(m.res.actual_downtime_ns > 0 && m.res.predicted_downtime_ns > 0);
	vm_fini(&m.vm);
}

static void test_writer(void **state)
{
	struct vm vm;
	struct dt_migrate_source_opts so;
	struct dt_migrate_result res;
	struct dest d;

	vm_init(&vm, true);
	/* A hot set of 512 pages: converges even on a slow (sanitized) build; should it not,
	 * the ask callback switches over anyway: the point here is the copy under writes. */
	writer_start(&vm, 512);
	so = source_opts(&vm, NULL);
	so.ask = ask_switch;
	so.policy.max_downtime_ns = 0; /* the default, 300 ms: rounds until it fits */
	assert_int_equal(migrate(&vm, &so, &res, &d, 0, NULL, 0), 0);
	assert_int_equal(d.ret, 0);
	assert_true(atomic_load(&vm.writes) > 0);
	expect_equal_memory(&vm);
	/* Deferral (the default): the ring went once, in stop-and-copy. */
	assert_int_equal(res.pinned_sent_precopy, 0);
	assert_int_equal(res.pinned_sent_final, RING);
	print_message("writer: %llu writes, %u rounds, %llu pages, downtime %.2f ms (predicted "
		      "%.2f)\n",
		      (unsigned long long)atomic_load(&vm.writes), res.rounds,
		      (unsigned long long)res.pages_sent, res.actual_downtime_ns / 1e6,
		      res.predicted_downtime_ns / 1e6);
	vm_fini(&vm);
}

static void test_no_deferral(void **state)
{
	struct mig m;

	mig_init(&m, true);
	m.so.policy.no_defer_pinned = true;
	assert_int_equal(migrate(&m.vm, &m.so, &m.res, &m.d, 0, NULL, 0), 0);
	expect_equal_memory(&m.vm);
	/* Pinned pages go in every round sent before the switchover (round 0 included; the
	 * last round's pages go in stop-and-copy), and again at the end. */
	assert_true(m.res.rounds >= 2);
	assert_true(m.res.pinned_sent_precopy >= RING * (m.res.rounds - 1));
	assert_int_equal(m.res.pinned_sent_final, RING);
	vm_fini(&m.vm);
}

/* ---- devices ---------------------------------------------------------------------------- */

struct toy_dev {
	uint8_t state[200 << 10]; /* more than the engine's first buffer */
	size_t len;
	int saves, loads;
};

static int64_t toy_save(void *opaque, void *buf, size_t cap)
{
	struct toy_dev *t = opaque;

	t->saves++;
	if (cap < t->len)
		return -ENOSPC;
	memcpy(buf, t->state, t->len);
	return (int64_t)t->len;
}

static int toy_load(void *opaque, const void *buf, size_t len)
{
	struct toy_dev *t = opaque;

	if (len > sizeof(t->state))
		return -EINVAL;
	memcpy(t->state, buf, len);
	t->len = len;
	t->loads++;
	return 0;
}

static void test_devices(void **state)
{
	static struct toy_dev src[2], dst[2];
	struct dt_migrate_device sdev[2] = {
		{.name = "nic", .opaque = &src[0], .save = toy_save},
		{.name = "disk", .opaque = &src[1], .save = toy_save},
	};
	struct dt_migrate_device ddev[2] = {
		{.name = "disk", .opaque = &dst[1], .load = toy_load},
		{.name = "nic", .opaque = &dst[0], .load = toy_load},
	};
	uint64_t rng = seed;
	struct vm vm;
	struct dt_migrate_source_opts so;
	struct dt_migrate_result res;
	struct dest d;

	memset(dst, 0, sizeof(dst));
	src[0].len = 100;
	src[1].len = sizeof(src[1].state);
	for (size_t i = 0; i < sizeof(src[0].state); i++) {
		src[0].state[i] = (uint8_t)rnd(&rng);
		src[1].state[i] = (uint8_t)rnd(&rng);
	}
	vm_init(&vm, false);
	so = source_opts(&vm, NULL);
	so.devices = sdev;
	so.ndevices = 2;
	assert_int_equal(migrate(&vm, &so, &res, &d, 0, ddev, 2), 0);
	assert_int_equal(d.res.ndevices_loaded, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(dst[i].len, src[i].len);
		assert_memory_equal(dst[i].state, src[i].state, src[i].len);
	}
	assert_true(src[1].saves > 1); /* -ENOSPC, then a larger buffer */
	assert_int_equal(res.device_bytes, src[0].len + src[1].len);

	/* A state for a device the destination lacks: it refuses, the source says so. */
	vm.paused = vm.resumed = 0;
	expect_refused(migrate(&vm, &so, &res, &d, 0, ddev, 1));
	assert_int_equal(d.ret, -ENOENT);
	assert_int_equal(vm.resumed, vm.paused);
	vm_fini(&vm);
}

/* ---- abort and merge-back --------------------------------------------------------------- */

/* Pages the set reports now (all classes). */
static void harvest_all(struct vm *vm, uint64_t *bits)
{
	struct dt_harvest h;

	assert_int_equal(dt_dirty_set_harvest(vm->set, 0, &h), 0);
	memcpy(bits, h.all, NPAGES / 8);
}

static void test_abort_merges_back(void **state)
{
	uint64_t want[NPAGES / 64], got[NPAGES / 64], rng = seed ^ 0xab07, breaks[19], whole;
	struct dt_migrate_result res;
	struct dt_migrate_source_opts so;
	struct dest d;
	struct vm vm;

	vm_init(&vm, true);
	so = source_opts(&vm, NULL);
	/* Measure a whole migration's bytes, then break it: in the handshake, in round 0, in
	 * stop-and-copy, in the END record and in the ACK. */
	assert_int_equal(migrate(&vm, &so, &res, &d, 0, NULL, 0), 0);
	whole = last_stream_bytes;
	breaks[0] = 10;
	breaks[1] = 300;
	breaks[2] = whole / 3;
	breaks[3] = whole / 2;
	breaks[4] = whole - (64 << 10);
	breaks[5] = whole - 40;
	breaks[6] = whole - 10;
	/* And random points, from the seed. */
	for (unsigned k = 7; k < sizeof(breaks) / sizeof(breaks[0]); k++)
		breaks[k] = 1 + rnd(&rng) % whole;
	for (unsigned k = 0; k < sizeof(breaks) / sizeof(breaks[0]); k++) {
		int ret;

		/* Start from clean, then dirty a known set: CPU writes and VMM writes. */
		harvest_all(&vm, got);
		memset(want, 0, sizeof(want));
		for (int i = 0; i < 200; i++) {
			uint64_t p = rnd(&rng) % NPAGES, q = rnd(&rng) % NPAGES;

			vm.mem[p * PAGE] ^= 0x5a;
			want[p / 64] |= 1ull << (p % 64);
			assert_int_equal(dt_dma_log(vm.vmm, GPA + q * PAGE, 1), 0);
			want[q / 64] |= 1ull << (q % 64);
		}
		for (uint64_t p = RING_AT; p < RING_AT + RING; p++) /* still pinned */
			want[p / 64] |= 1ull << (p % 64);
		vm.paused = vm.resumed = 0;
		ret = migrate(&vm, &so, &res, &d, breaks[k], NULL, 0);
		assert_true(ret == -EPIPE || ret == -ECONNRESET || ret == -EPROTO);
		assert_int_equal(vm.resumed, vm.paused);
		/* Nothing harvested by the attempt is lost. */
		harvest_all(&vm, got);
		for (uint64_t p = 0; p < NPAGES; p++)
			if ((want[p / 64] >> (p % 64) & 1) && !(got[p / 64] >> (p % 64) & 1))
				fail_msg("break at %llu bytes (%d): page %llu lost (seed %llu)",
					 (unsigned long long)breaks[k], ret, (unsigned long long)p,
					 (unsigned long long)seed);
	}
	/* And a retry goes through. */
	assert_int_equal(migrate(&vm, &so, &res, &d, 0, NULL, 0), 0);
	expect_equal_memory(&vm);
	vm_fini(&vm);
}

static void test_give_up(void **state)
{
	struct mig m;

	mig_init(&m, false);
	m.so.policy.max_rounds = 3;
	m.so.policy.max_downtime_ns = 1; /* never fits */
	writer_start(&m.vm, 64);
	assert_int_equal(migrate(&m.vm, &m.so, &m.res, &m.d, 0, NULL, 0), -ETIMEDOUT);
	assert_int_equal(m.d.ret, -ECANCELED); /* the source told it */
	assert_int_equal(m.vm.paused, 0);
	assert_int_equal(m.res.decision, DT_DECISION_GIVE_UP);
	/* With an ask callback that says switch over, the same migration completes. */
	m.so.ask = ask_switch;
	assert_int_equal(migrate(&m.vm, &m.so, &m.res, &m.d, 0, NULL, 0), 0);
	expect_equal_memory(&m.vm);
	vm_fini(&m.vm);
}

/* A policy of the caller's in place of ours (how bench/migration compares other engines'). */
static int decide_two_rounds(void *opaque, const struct dt_policy *policy,
			     const struct dt_round_stats *rounds, unsigned n,
			     struct dt_policy_out *out)
{
	memset(out, 0, sizeof(*out));
	out->decision = n >= 2 ? DT_DECISION_SWITCHOVER : DT_DECISION_CONTINUE;
	out->predicted_downtime_ns = 12345;
	return 0;
}

static int decide_fails(void *opaque, const struct dt_policy *policy,
			const struct dt_round_stats *rounds, unsigned n, struct dt_policy_out *out)
{
	return -EDOM;
}

static void test_decide_hook(void **state)
{
	struct mig m;

	mig_init(&m, false);
	m.so.policy.max_downtime_ns = 1; /* ours would never switch over */
	writer_start(&m.vm, 64);
	m.so.decide = decide_fails; /* its error is the migration's; the source runs on */
	assert_int_equal(migrate(&m.vm, &m.so, &m.res, &m.d, 0, NULL, 0), -EDOM);
	assert_int_equal(m.vm.paused, 0);
	m.so.decide = decide_two_rounds;
	assert_int_equal(migrate(&m.vm, &m.so, &m.res, &m.d, 0, NULL, 0), 0);
	assert_int_equal(m.res.rounds, 2);
	assert_int_equal(m.res.predicted_downtime_ns, 12345);
	expect_equal_memory(&m.vm);
	vm_fini(&m.vm);
}

/* The destination maps the memory itself. */
static void test_dest_maps(void **state)
{
	struct dt_transport *a, *b;
	struct dt_migrate_source_opts so;
	struct dest d;
	struct vm vm;

	vm_init(&vm, false);
	pair(&a, &b, 0);
	so = source_opts(&vm, a);
	dest_start(&d, b, NULL, NULL, 0);
	assert_int_equal(dt_migrate_source(&so, NULL), 0);
	assert_int_equal(dest_join(&d), 0);
	assert_int_equal(d.res.nregions, 1);
	assert_int_equal(d.res.regions[0].addr, GPA);
	assert_int_equal(d.res.regions[0].size, NPAGES * PAGE);
	assert_memory_equal(d.res.regions[0].host, vm.mem, NPAGES * PAGE);
	dt_migrate_dest_result_release(&d.res);
	assert_null(d.res.regions);
	dt_transport_free(a);
	dt_transport_free(b);
	vm_fini(&vm);
}

/* A destination whose memory does not match the stream's layout refuses it. */
static void test_dest_layout_mismatch(void **state)
{
	struct dt_region small;
	struct dt_transport *a, *b;
	struct dt_migrate_source_opts so;
	struct dest d;
	struct vm vm;

	vm_init(&vm, false);
	small = vm.dst_region;
	small.size /= 2;
	pair(&a, &b, 0);
	so = source_opts(&vm, a);
	dest_start(&d, b, &small, NULL, 0);
	expect_refused(dt_migrate_source(&so, NULL));
	assert_int_equal(dest_join(&d), -EPROTO);
	dt_transport_free(a);
	dt_transport_free(b);
	vm_fini(&vm);
}

/* Bytes that are not a migration stream: the destination says -EPROTO, never crashes. */
static void test_dest_bad_streams(void **state)
{
	static const uint8_t bad_version[] = {
		1,   0,	  0,   0,   20,	 0,   0,   0,		    /* HELLO, 20 bytes */
		'D', 'T', 'M', 'I', 'G', 'R', '0', '1', 1, 0, 0, 0, /* version 1: old digest */
		2,   0,	  0,   0,   0,	 16,  0,   0,		    /* features, page size */
	};
	static const uint8_t not_hello[] = {5, 0, 0, 0, 12, 0, 0, 0, 0, 0,
					    0, 0, 0, 0, 0,  0, 0, 0, 0, 0};
	static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	const struct {
		const uint8_t *bytes;
		size_t len;
	} cases[] = {{bad_version, sizeof(bad_version)},
		     {not_hello, sizeof(not_hello)},
		     {garbage, sizeof(garbage)}};

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dt_transport *a, *b;
		struct dest d;

		pair(&a, &b, 0);
		dest_start(&d, b, NULL, NULL, 0);
		assert_int_equal(dt_transport_send(a, cases[i].bytes, cases[i].len), 0);
		assert_int_equal(dest_join(&d), -EPROTO);
		dt_transport_free(a);
		dt_transport_free(b);
	}
}

/* A write no tracker saw (here: the set has only the container, and the CPU writes during
 * the pause callback) is caught by the digest: the destination refuses, the source fails.
 * This is the 2020 thread's problem, and proof that the verification can fail. */
static int cb_pause_and_write_behind(void *opaque)
{
	struct vm *vm = opaque;

	vm->mem[7 * PAGE + 3] ^= 0xff;
	vm->paused++;
	return 0;
}

static void test_untracked_write_caught(void **state)
{
	struct dt_dirty_set_opts dso = {.size = sizeof(dso), .base = GPA, .length = NPAGES * PAGE};
	struct dt_dirty_set *only_dma;
	struct dt_migrate_source_opts so;
	struct dt_migrate_result res;
	struct dest d;
	struct vm vm;

	vm_init(&vm, false);
	only_dma = dt_dirty_set_new(&dso);
	assert_non_null(only_dma);
	assert_int_equal(dt_dirty_set_add_iommu(only_dma, vm.iommu, GPA), 0);
	so = source_opts(&vm, NULL);
	so.set = only_dma;
	so.pause = cb_pause_and_write_behind;
	expect_refused(migrate(&vm, &so, &res, &d, 0, NULL, 0));
	assert_int_equal(d.ret, -EPROTO);
	assert_int_equal(vm.resumed, 1);
	dt_dirty_set_free(only_dma);
	vm_fini(&vm);
}

/* A batch with one flipped bit: the destination's checksum check refuses it. The stream is
 * written by the wire layer's memory writer, as a source would send it. */
static void test_dest_bad_checksum(void **state)
{
	const struct wire_region layout = {.addr = GPA, .size = NPAGES * PAGE};
	const struct wire_run run = {.first = GPA / PAGE + 5, .count = 4};
	struct dt_transport *a, *b;
	struct wire_writer w;
	const void *data;
	struct dest d;
	struct vm vm;

	vm_init(&vm, false);
	data = vm.mem + 5 * PAGE;
	assert_int_equal(wire_writer_init_mem(&w, WIRE_F_XXH3), 0);
	assert_int_equal(wire_send_hello(&w, PAGE), 0);
	assert_int_equal(wire_send_layout(&w, &layout, 1), 0);
	assert_int_equal(wire_send_round(&w, 0, 4), 0);
	assert_int_equal(wire_send_pages(&w, &run, 1, &data, NULL), 0);
	w.mem[w.mem_len - 100] ^= 0x10; /* in the last page's data */
	pair(&a, &b, 0);
	dest_start(&d, b, &vm.dst_region, NULL, 0);
	assert_int_equal(dt_transport_send(a, w.mem, w.mem_len), 0);
	assert_int_equal(dest_join(&d), -EPROTO);
	/* Nothing of the bad batch was applied. */
	assert_true(vm.dst[5 * PAGE + 5] == 0xee);
	wire_writer_fini(&w);
	dt_transport_free(a);
	dt_transport_free(b);
	vm_fini(&vm);
}

/*
 * The destination's running digest at stream page sizes other than 4 KiB, in streams written
 * by hand: 512 B pages cover a 4 KiB digest page in pieces (hashed from memory once written),
 * 8 KiB pages cover two at once. Zero and data runs in random order, some pages sent first
 * with stale bytes and again with the right ones, and one hole never sent (the destination
 * keeps its own bytes there, and hashes them at END). The digest of what the destination must
 * hold is accepted; the same off by one bit is refused.
 */
#define PS_BYTES (1ull << 20)

struct chunk {
	uint64_t first; /* page index */
	uint32_t count;
	bool zero;
};

static void send_chunk(struct wire_writer *w, uint32_t ps, const struct chunk *c,
		       const uint8_t *bytes)
{
	struct wire_run run = {GPA / ps + c->first, c->count, c->zero ? WIRE_RUN_ZERO : 0};
	const void *data = c->zero ? NULL : bytes + c->first * ps;

	assert_int_equal(wire_send_pages(w, &run, 1, &data, NULL), 0);
}

static void dest_page_size_case(uint32_t ps, bool bad, uint64_t *rng)
{
	uint8_t *src = malloc(PS_BYTES), *stale = malloc(PS_BYTES), *want = malloc(PS_BYTES);
	uint8_t *dst = malloc(PS_BYTES);
	const struct dt_region region = {.addr = GPA, .size = PS_BYTES, .host = dst};
	const struct wire_region layout = {GPA, PS_BYTES};
	uint64_t npages = PS_BYTES / ps, unit = ps > PAGE ? ps : PAGE, sent = 0, digest;
	uint64_t hole = rnd(rng) % (PS_BYTES / unit) * unit; /* bytes [hole, hole + unit) */
	struct chunk *chunks = calloc(npages, sizeof(*chunks));
	struct dt_transport *a, *b;
	struct wire_writer w;
	unsigned nchunks = 0;
	void *host = want;
	struct dest d;

	assert_true(src && stale && want && dst && chunks);
	for (uint64_t i = 0; i < PS_BYTES; i += 8) {
		uint64_t v = rnd(rng);

		memcpy(src + i, &v, 8);
		v = rnd(rng);
		memcpy(stale + i, &v, 8);
		memset(dst + i, 0xee, 8);
	}
	/* Zeros: 512-byte pieces and whole 8 KiB areas. */
	for (uint64_t i = 0; i < PS_BYTES; i += 512)
		if (!(rnd(rng) % 4))
			memset(src + i, 0, 512);
	for (uint64_t i = 0; i < PS_BYTES; i += 8192)
		if (!(rnd(rng) % 6))
			memset(src + i, 0, 8192);
	memcpy(want, src, PS_BYTES);
	memcpy(want + hole, dst + hole, unit);
	/* Runs of 1 to 9 pages, the hole left out; all-zero ones as ZERO runs. */
	for (uint64_t p = 0; p < npages;) {
		struct chunk c = {p, (uint32_t)(1 + rnd(rng) % 9), false};

		if (p * ps >= hole && p * ps < hole + unit) {
			p++;
			continue;
		}
		if (c.count > npages - p)
			c.count = (uint32_t)(npages - p);
		for (uint32_t k = 1; k < c.count; k++) /* stop at the hole */
			if ((p + k) * ps == hole)
				c.count = k;
		c.zero = wire_page_is_zero(src + p * ps, (size_t)c.count * ps);
		chunks[nchunks++] = c;
		p += c.count;
	}
	for (unsigned i = nchunks - 1; i > 0; i--) {
		unsigned j = (unsigned)(rnd(rng) % (i + 1));
		struct chunk t = chunks[i];

		chunks[i] = chunks[j];
		chunks[j] = t;
	}
	assert_int_equal(wire_writer_init_mem(&w, WIRE_F_XXH3), 0);
	assert_int_equal(wire_send_hello(&w, ps), 0);
	assert_int_equal(wire_send_layout(&w, &layout, 1), 0);
	assert_int_equal(wire_send_round(&w, 0, npages), 0);
	for (unsigned i = 0; i < nchunks; i++) {
		if (!(rnd(rng) % 5)) { /* first stale, as data */
			struct chunk c = chunks[i];

			c.zero = false;
			send_chunk(&w, ps, &c, stale);
			sent += c.count;
		}
		send_chunk(&w, ps, &chunks[i], src);
		sent += chunks[i].count;
	}
	assert_int_equal(wire_digest_regions(&layout, &host, 1, &digest), 0);
	assert_int_equal(wire_send_end(&w, sent, digest ^ bad, 0), 0);
	pair(&a, &b, 0);
	dest_start(&d, b, &region, NULL, 0);
	assert_int_equal(dt_transport_send(a, w.mem, w.mem_len), 0);
	if (bad) {
		assert_int_equal(dest_join(&d), -EPROTO);
	} else {
		if (dest_join(&d))
			fail_msg("page size %u: the destination refused (%d, seed %llu)", ps, d.ret,
				 (unsigned long long)seed);
		assert_int_equal(d.res.digest, digest);
		assert_memory_equal(dst, want, PS_BYTES);
	}
	wire_writer_fini(&w);
	dt_transport_free(a);
	dt_transport_free(b);
	free(chunks);
	free(src);
	free(stale);
	free(want);
	free(dst);
}

static void test_dest_page_sizes(void **state)
{
	static const uint32_t sizes[] = {512, 1024, 4096, 8192};
	uint64_t rng = seed ^ 0x9a9e;

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		dest_page_size_case(sizes[i], false, &rng);
		dest_page_size_case(sizes[i], true, &rng);
	}
}

/*
 * Runs across regions: a source's batch joins adjacent runs, so a run (ZERO or data) may go on
 * from one region into the next when they are contiguous; the destination applies it in
 * pieces. A run into a gap between regions, or past the last, is refused.
 */
static void adjacent_case(const struct wire_run *runs, unsigned nruns, bool gap, int want)
{
	enum { RP = 16 }; /* pages per region */
	static uint8_t host[2][RP * PAGE], src[3 * RP * PAGE];
	const struct dt_region r[2] = {
		{.addr = GPA, .size = RP * PAGE, .host = host[0]},
		{.addr = GPA + (gap ? 2 : 1) * RP * PAGE, .size = RP * PAGE, .host = host[1]},
	};
	const struct wire_region layout[2] = {{r[0].addr, r[0].size}, {r[1].addr, r[1].size}};
	const void *data[4];
	struct dt_transport *a, *b;
	struct wire_writer w;
	uint64_t digest, sent = 0;
	struct dest d;

	memset(host, 0xee, sizeof(host));
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7 + i / PAGE);
	for (unsigned i = 0; i < nruns; i++) {
		data[i] = runs[i].flags & WIRE_RUN_ZERO ? NULL
							: src + (runs[i].first - GPA / PAGE) * PAGE;
		sent += runs[i].count;
	}
	assert_int_equal(wire_writer_init_mem(&w, WIRE_F_XXH3), 0);
	assert_int_equal(wire_send_hello(&w, PAGE), 0);
	assert_int_equal(wire_send_layout(&w, layout, 2), 0);
	assert_int_equal(wire_send_round(&w, 0, 2 * RP), 0);
	assert_int_equal(wire_send_pages(&w, runs, nruns, data, NULL), 0);
	/* What the destination must hold: the runs applied to both regions, in order. */
	{
		static uint8_t expect[2][RP * PAGE];
		void *wh[2] = {expect[0], expect[1]};

		memset(expect, 0xee, sizeof(expect));
		for (unsigned i = 0; i < nruns; i++)
			for (uint32_t k = 0; k < runs[i].count; k++) {
				uint64_t pg = runs[i].first + k - GPA / PAGE;
				uint8_t *to = pg < RP ? expect[0] + pg * PAGE
						      : expect[1] + (pg - RP) * PAGE;

				if (pg >= 2 * RP)
					continue;
				if (runs[i].flags & WIRE_RUN_ZERO)
					memset(to, 0, PAGE);
				else
					memcpy(to, src + pg * PAGE, PAGE);
			}
		assert_int_equal(wire_digest_regions(layout, wh, 2, &digest), 0);
		assert_int_equal(wire_send_end(&w, sent, digest, 0), 0);
		pair(&a, &b, 0);
		memset(&d, 0, sizeof(d));
		d.opts = (struct dt_migrate_dest_opts){
			.size = sizeof(d.opts), .transport = b, .regions = r, .nregions = 2};
		assert_int_equal(pthread_create(&d.thread, NULL, dest_main, &d), 0);
		assert_int_equal(dt_transport_send(a, w.mem, w.mem_len), 0);
		assert_int_equal(dest_join(&d), want);
		if (!want) {
			assert_memory_equal(host[0], expect[0], sizeof(expect[0]));
			assert_memory_equal(host[1], expect[1], sizeof(expect[1]));
		}
	}
	wire_writer_fini(&w);
	dt_transport_free(a);
	dt_transport_free(b);
}

static void test_runs_across_regions(void **state)
{
	const uint64_t p0 = GPA / PAGE;
	/* 16 pages per region: region 1 starts at page p0 + 16 */
	const struct wire_run zero_across[] = {{p0 + 10, 12, WIRE_RUN_ZERO}, {p0 + 30, 2, 0}};
	const struct wire_run data_across[] = {{p0, 3, 0}, {p0 + 14, 5, 0}};
	const struct wire_run whole[] = {{p0, 32, 0}, {p0 + 15, 2, WIRE_RUN_ZERO}};
	const struct wire_run past_end[] = {{p0 + 30, 3, 0}};
	const struct wire_run into_gap[] = {{p0 + 15, 2, 0}, {p0, 1, 0}};

	adjacent_case(zero_across, 2, false, 0);
	adjacent_case(data_across, 2, false, 0);
	adjacent_case(whole, 2, false, 0);
	adjacent_case(past_end, 1, false, -EPROTO);
	adjacent_case(into_gap, 2, true, -EPROTO); /* regions 16 pages apart: it ends in the gap */
}

/* The same over real sockets: TCP on loopback (IPv4 and IPv6 when present) and UNIX. */
struct accept_arg {
	struct dt_listener *l;
	struct dest *d;
	const struct dt_region *r;
	struct dt_transport *t;
};

static void *accept_and_receive(void *arg)
{
	struct accept_arg *a = arg;

	a->t = dt_listener_accept(a->l, 10000);
	if (!a->t) {
		a->d->ret = -errno;
		return NULL;
	}
	a->d->opts = (struct dt_migrate_dest_opts){
		.size = sizeof(a->d->opts), .transport = a->t, .regions = a->r, .nregions = 1};
	a->d->ret = dt_migrate_dest(&a->d->opts, &a->d->res);
	return NULL;
}

static void migrate_over(struct mig *m, struct dt_listener *l, struct dt_transport *(*conn)(void *),
			 void *conn_arg)
{
	struct accept_arg a = {.l = l, .d = &m->d, .r = &m->vm.dst_region};
	pthread_t th;

	assert_non_null(l);
	memset(m->vm.dst, 0, NPAGES * PAGE);
	assert_int_equal(pthread_create(&th, NULL, accept_and_receive, &a), 0);
	m->so.transport = conn(conn_arg);
	assert_non_null(m->so.transport);
	assert_int_equal(dt_migrate_source(&m->so, &m->res), 0);
	pthread_join(th, NULL);
	assert_int_equal(m->d.ret, 0);
	expect_equal_memory(&m->vm);
	assert_int_equal(m->d.res.bytes_received, dt_transport_bytes_sent(m->so.transport));
	dt_transport_free(m->so.transport);
	dt_transport_free(a.t);
	dt_listener_free(l);
}

static uint16_t tcp_port;
static const char *tcp_host;

static struct dt_transport *conn_tcp(void *arg)
{
	return dt_connect_tcp(tcp_host, tcp_port, 5000);
}

static struct dt_transport *conn_unix(void *arg)
{
	return dt_connect_unix(arg, 5000);
}

static void test_sockets(void **state)
{
	char path[64];
	struct dt_listener *l;
	struct mig m;

	mig_init(&m, true);
	writer_start(&m.vm, 256);
	m.so.ask = ask_switch;
	tcp_host = "127.0.0.1";
	l = dt_listen_tcp(tcp_host, 0);
	assert_non_null(l);
	tcp_port = dt_listener_port(l);
	migrate_over(&m, l, conn_tcp, NULL);
	tcp_host = "::1";
	l = dt_listen_tcp(tcp_host, 0);
	if (l) { /* IPv6 may be off in a container */
		tcp_port = dt_listener_port(l);
		mig_init_again(&m);
		migrate_over(&m, l, conn_tcp, NULL);
	}
	snprintf(path, sizeof(path), "/tmp/dt-test-migrate-%d.sock", (int)getpid());
	mig_init_again(&m);
	migrate_over(&m, dt_listen_unix(path), conn_unix, path);
	unlink(path);
	vm_fini(&m.vm);
}

/* max_bandwidth paces the stream: it cannot finish faster than its bytes at that rate. */
static void test_rate_limit(void **state)
{
	const uint64_t rate = 10000000; /* bytes per second: well below any build's speed */
	struct mig m;

	mig_init(&m, false);
	m.so.max_bandwidth = rate;
	assert_int_equal(migrate(&m.vm, &m.so, &m.res, &m.d, 0, NULL, 0), 0);
	expect_equal_memory(&m.vm);
	if ((double)m.res.total_ns < (double)m.res.bytes_sent / rate * 1e9 * 0.95)
		fail_msg("%llu bytes in %.3f s: faster than %llu B/s",
			 (unsigned long long)m.res.bytes_sent, m.res.total_ns / 1e9,
			 (unsigned long long)rate);
	vm_fini(&m.vm);
}

static void test_einval(void **state)
{
	static uint8_t dummy[4 * PAGE];
	struct dt_transport *a, *b;
	struct dt_migrate_source_opts so;
	struct dt_migrate_dest_opts dopts;
	struct dt_migrate_device dev = {.name = "x"};
	struct dt_region regs[2];
	struct vm vm;

	vm_init(&vm, false);
	pair(&a, &b, 0);
	assert_int_equal(dt_migrate_source(NULL, NULL), -EINVAL);
	so = source_opts(&vm, a);
	so.size = 0;
	assert_int_equal(dt_migrate_source(&so, NULL), -EINVAL);
	so = source_opts(&vm, a);
	so.pause = NULL;
	assert_int_equal(dt_migrate_source(&so, NULL), -EINVAL);
	so = source_opts(&vm, a);
	so.flags = 0x80;
	assert_int_equal(dt_migrate_source(&so, NULL), -EINVAL);
	so = source_opts(&vm, a);
	so.devices = &dev; /* no save */
	so.ndevices = 1;
	assert_int_equal(dt_migrate_source(&so, NULL), -EINVAL);
	/* Regions: outside the set, overlapping, unaligned, no host. */
	regs[0] = (struct dt_region){.addr = GPA - PAGE, .size = 2 * PAGE, .host = dummy};
	so = source_opts(&vm, a);
	so.regions = regs;
	assert_int_equal(dt_migrate_source(&so, NULL), -EINVAL);
	regs[0] = (struct dt_region){.addr = GPA, .size = 2 * PAGE, .host = dummy};
	regs[1] = (struct dt_region){.addr = GPA + PAGE, .size = 2 * PAGE, .host = dummy};
	so.nregions = 2;
	assert_int_equal(dt_migrate_source(&so, NULL), -EINVAL);
	regs[1] = (struct dt_region){.addr = GPA + 2 * PAGE + 1, .size = PAGE, .host = dummy};
	assert_int_equal(dt_migrate_source(&so, NULL), -EINVAL);
	regs[1] = (struct dt_region){.addr = GPA + 2 * PAGE, .size = PAGE, .host = NULL};
	assert_int_equal(dt_migrate_source(&so, NULL), -EINVAL);
	/* Nothing was sent by any of these. */
	assert_int_equal(dt_transport_bytes_sent(a), 0);

	assert_int_equal(dt_migrate_dest(NULL, NULL), -EINVAL);
	dopts = (struct dt_migrate_dest_opts){.size = sizeof(dopts)};
	assert_int_equal(dt_migrate_dest(&dopts, NULL), -EINVAL); /* no transport */
	dopts.transport = b;
	dopts.nregions = 1; /* without regions */
	assert_int_equal(dt_migrate_dest(&dopts, NULL), -EINVAL);
	dopts.nregions = 0;
	dopts.devices = &dev; /* no load */
	dopts.ndevices = 1;
	assert_int_equal(dt_migrate_dest(&dopts, NULL), -EINVAL);
	dt_transport_free(a);
	dt_transport_free(b);
	vm_fini(&vm);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_no_deferral),
		cmocka_unit_test(test_devices),
		cmocka_unit_test(test_abort_merges_back),
		cmocka_unit_test(test_give_up),
		cmocka_unit_test(test_decide_hook),
		cmocka_unit_test(test_dest_maps),
		cmocka_unit_test(test_dest_layout_mismatch),
		cmocka_unit_test(test_dest_bad_streams),
		cmocka_unit_test(test_untracked_write_caught),
		cmocka_unit_test(test_dest_bad_checksum),
		cmocka_unit_test(test_dest_page_sizes),
		cmocka_unit_test(test_runs_across_regions),
		cmocka_unit_test(test_sockets),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_einval),
	};

	seed_init("test_migrate: ");
	/* The engine's decisions and errors, for whoever reads a failure. */
	dt_set_log(dt_log_stderr, NULL, getenv("DT_VERBOSE") ? DT_LOG_DEBUG : DT_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
