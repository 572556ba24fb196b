/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/test_vdev.c - the DMA test devices of the micro-VM at work, without KVM: each
 * device's writes are seen in the dirty class its kind puts them in (and only there), the
 * PASSTHROUGH device's phases and its running-time clock, harvests racing with the writer,
 * pause (prompt, idempotent, nothing written while paused), the rate's upper bound, an
 * unmap under a running device, refused arguments, and no write outside a device's area.
 * The state blob and vdev_verify() are test_vdev_state.c's.
 *
 * Timing: the tests sleep tens of milliseconds and assert only what does not depend on how
 * long a sleep really took (a page written is dirty, none written while paused), except
 * bounds with wide slack: the write rate's upper bound (absolute deadlines never run ahead),
 * pause latency, and when PASSTHROUGH pins.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <cmocka.h>
#include <linux/vfio.h>

#include "../core/test_util.h"
#include "vdev_fixture.h"

/* Bitmaps of the expectations, NPAGES bits each. */
static uint64_t changed[NPAGES / 64], ring[NPAGES / 64], all[NPAGES / 64];

static const char *const class_names[DT_NCLASSES] = {"cpu", "vmm", "pinned", "device", "whole"};

/* want[c]: the exact bitmap class c must have; NULL: empty. */
static void expect_classes(const struct dt_harvest *h, uint64_t *const want[DT_NCLASSES])
{
	EXPECT_EQ(h->npages, NPAGES);
	for (unsigned c = 0; c < DT_NCLASSES; c++) {
		uint64_t n = 0;

		for (uint64_t p = 0; p < NPAGES; p++) {
			bool w = want[c] && bit(want[c], p);

			if (bit(h->class_bits[c], p) != w) {
				ctx_set("class %s, page %llu (gpa 0x%llx)", class_names[c],
					(unsigned long long)p, (unsigned long long)(p * PAGE));
				EXPECT_EQ(bit(h->class_bits[c], p), w);
			}
			n += w;
		}
		ctx_set("class %s", class_names[c]);
		EXPECT_EQ(h->count[c], n);
	}
}

/*
 * Run, pause, harvest: the pages stamped in the round must be in the harvest, in the class
 * of the device's kind and nowhere else. Returns the pages stamped.
 */
static uint64_t class_round(struct guest *g, struct vdev *d, uint32_t *prev, unsigned ms, int round)
{
	enum vdev_type t = vdev_type(d);
	uint64_t area = area_gpa[t], n;
	uint64_t *want[DT_NCLASSES] = {NULL};
	uint32_t now[AREA_PAGES];
	struct dt_harvest h;
	bool pinned_phase;

	EXPECT_EQ(vdev_resume(d), 0);
	sleep_ms(ms);
	EXPECT_EQ(vdev_pause(d), 0);
	assert_int_equal(dt_dirty_set_harvest(g->set, 0, &h), 0);
	snap(g, area, now);
	expect_verified(d);
	n = changed_pages(area, prev, now, changed);
	ctx_set("%s round %d", vdev_name(d), round);
	EXPECT_TRUE(n > 0);
	ring_pages(area, ring);
	switch (t) {
	case VDEV_EMULATED:
		want[DT_CLASS_PINNED] = ring;
		EXPECT_TRUE(subset(changed, ring));
		break;
	case VDEV_LOGGING:
		want[DT_CLASS_DEVICE] = changed;
		break;
	case VDEV_VMM:
		want[DT_CLASS_VMM] = changed;
		break;
	default:
		/* PASSTHROUGH: the caller says which phase through round: 0 unpinned, 1 the
		 * round it pinned in, 2 pinned since the previous harvest. */
		pinned_phase = round >= 1;
		if (round <= 1)
			want[DT_CLASS_WHOLE] = all;
		if (pinned_phase)
			want[DT_CLASS_PINNED] = ring;
		if (round == 2)
			EXPECT_TRUE(subset(changed, ring));
		break;
	}
	expect_classes(&h, want);
	memcpy(prev, now, sizeof(now));
	return n;
}

static void classes_of(enum vdev_type t)
{
	uint32_t prev[AREA_PAGES];
	struct dt_harvest h;
	struct guest g;
	struct vdev *d;

	rng_reseed(t + 1);
	memset(all, 0xff, sizeof(all));
	guest_new(&g, true);
	d = dev_new(&g, t, FAST, 300);
	assert_int_equal(dt_dirty_set_harvest(g.set, 0, &h), 0);
	snap(&g, area_gpa[t], prev);
	EXPECT_EQ(snap_max(prev), 0); /* attached, not started: nothing written */
	EXPECT_EQ(vdev_start(d), 0);
	EXPECT_EQ(vdev_pause(d), 0);
	for (int r = 0; r < 3; r++)
		class_round(&g, d, prev, 20, r);
	vdev_free(d);
	guest_free(&g);
}

static void test_classes_emulated(void **state)
{
	classes_of(VDEV_EMULATED);
}

static void test_classes_logging(void **state)
{
	classes_of(VDEV_LOGGING);
}

static void test_classes_vmm(void **state)
{
	classes_of(VDEV_VMM);
}

/* PASSTHROUGH: whole mappings while unpinned (paused time does not count towards the pin),
 * whole once more in the harvest after its pin, then only its ring. */
static void test_classes_passthrough(void **state)
{
	enum vdev_type t = VDEV_PASSTHROUGH;
	uint32_t prev[AREA_PAGES], now[AREA_PAGES];
	uint64_t *want[DT_NCLASSES] = {NULL};
	struct dt_harvest h;
	struct guest g;
	struct vdev *d;
	uint64_t t0, ran;

	rng_reseed(10);
	memset(all, 0xff, sizeof(all));
	guest_new(&g, true);
	d = dev_new(&g, t, FAST, 300);
	EXPECT_TRUE(whole_scope(&g)); /* attached and not pinned */
	snap(&g, area_gpa[t], prev);
	t0 = mono_ns();
	EXPECT_EQ(vdev_start(d), 0);
	sleep_ms(30);
	EXPECT_EQ(vdev_pause(d), 0);
	ran = mono_ns() - t0;
	assert_int_equal(dt_dirty_set_harvest(g.set, 0, &h), 0);
	snap(&g, area_gpa[t], prev);
	EXPECT_TRUE(snap_max(prev) > 0);
	expect_verified(d);
	t0 = mono_ns();
	class_round(&g, d, prev, 20, 0);
	ran += mono_ns() - t0;

	/* Paused longer than pin_after_ms: no pin, and a harvest with no write is still whole. */
	sleep_ms(400);
	EXPECT_TRUE(whole_scope(&g));
	assert_int_equal(dt_dirty_set_harvest(g.set, 0, &h), 0);
	want[DT_CLASS_WHOLE] = all;
	expect_classes(&h, want);

	/* Running again, it pins after the rest of its 300 ms of running time (ran is at least
	 * the time it ran so far), not at once. */
	EXPECT_EQ(vdev_resume(d), 0);
	t0 = mono_ns();
	while (whole_scope(&g) && mono_ns() - t0 < 5000000000ull)
		sleep_ms(1);
	EXPECT_TRUE(!whole_scope(&g));
	ctx_set("ran %llu ns, pinned %llu ns after resuming", (unsigned long long)ran,
		(unsigned long long)(mono_ns() - t0));
	EXPECT_TRUE(ran < 250000000ull); /* else the host is too slow for this check */
	EXPECT_TRUE(mono_ns() - t0 + ran >= 295000000ull);
	sleep_ms(10);
	EXPECT_EQ(vdev_pause(d), 0);
	EXPECT_EQ(pinned_count(&g), RING);
	assert_int_equal(dt_dirty_set_harvest(g.set, 0, &h), 0);
	snap(&g, area_gpa[t], now);
	expect_verified(d);
	ring_pages(area_gpa[t], ring);
	want[DT_CLASS_PINNED] = ring; /* and whole once more: the pin promoted the device */
	expect_classes(&h, want);
	memcpy(prev, now, sizeof(now));

	for (int r = 0; r < 2; r++)
		class_round(&g, d, prev, 20, 2);
	vdev_free(d);
	EXPECT_EQ(pinned_count(&g), 0);
	guest_free(&g);
}

/*
 * The PASSTHROUGH clock: pin_after_ms counts running time only, and travels with the state.
 * The source runs at least RAN_MIN ms (sleeps are never short), so the destination must pin
 * no sooner than what is left of PIN_AFTER given what the source can have run (measured),
 * and no later than what is left given RAN_MIN, plus slack for a loaded host.
 */
/* Without the source's run time carried over, the destination would pin after PIN_AFTER;
 * with it, after PIN_AFTER - RAN_MIN. SLACK_MS between them absorbs a loaded machine's
 * scheduling delays (831 ms seen for a 350 ms wait under load 3.6 on 2 cores). */
#define PIN_AFTER 1400u
#define RAN_MIN	  500u
#define SLACK_MS  450u
static void test_pin_clock(void **state)
{
	uint64_t t0, ran, dt;
	struct guest g1, g2;
	struct vdev *d1, *d2;
	uint8_t *buf;
	size_t len;

	rng_reseed(15);
	guest_new(&g1, false);
	guest_new(&g2, false);
	d1 = dev_new(&g1, VDEV_PASSTHROUGH, 1000, PIN_AFTER);
	t0 = mono_ns();
	EXPECT_EQ(vdev_start(d1), 0);
	sleep_ms(RAN_MIN);
	EXPECT_EQ(vdev_pause(d1), 0);
	ran = mono_ns() - t0;
	ctx_set("the source ran %llu ns", (unsigned long long)ran);
	EXPECT_TRUE(ran < (PIN_AFTER - SLACK_MS) * 1000000ull); /* else too slow a host to tell */
	sleep_ms(PIN_AFTER);					/* paused: does not count */
	EXPECT_EQ(pinned_count(&g1), 0);
	buf = save_blob(d1, &len);
	guest_copy(&g2, &g1);
	d2 = dev_new(&g2, VDEV_PASSTHROUGH, 1000, 0);
	EXPECT_EQ(vdev_load(d2, buf, len), 0);
	EXPECT_EQ(pinned_count(&g2), 0);
	EXPECT_TRUE(whole_scope(&g2));
	t0 = mono_ns();
	EXPECT_EQ(vdev_start(d2), 0);
	while (pinned_count(&g2) < RING && mono_ns() - t0 < 5000000000ull)
		sleep_ms(1);
	dt = mono_ns() - t0;
	EXPECT_EQ(vdev_pause(d2), 0);
	ctx_set("the source ran %llu ns, the destination pinned after %llu ns",
		(unsigned long long)ran, (unsigned long long)dt);
	EXPECT_EQ(pinned_count(&g2), RING);
	EXPECT_TRUE(ran + dt >= (PIN_AFTER - 5) * 1000000ull);
	EXPECT_TRUE(dt <= (PIN_AFTER - RAN_MIN + SLACK_MS) * 1000000ull);
	expect_verified(d2);
	free(buf);
	vdev_free(d1);
	vdev_free(d2);
	guest_free(&g1);
	guest_free(&g2);
}

/* Harvests while the device writes: no page lost between two harvests, none invented. */
static void racing_harvests(enum vdev_type t)
{
	uint64_t acc[NPAGES / 64] = {0};
	uint32_t before[AREA_PAGES], after[AREA_PAGES];
	enum dt_dirty_class c = t == VDEV_VMM ? DT_CLASS_VMM : DT_CLASS_DEVICE;
	struct dt_harvest h;
	struct guest g;
	struct vdev *d;

	rng_reseed(20 + t);
	guest_new(&g, true);
	d = dev_new(&g, t, 50000, 0);
	snap(&g, area_gpa[t], before);
	EXPECT_EQ(vdev_start(d), 0);
	/* 40 harvests, and on until the device wrote (a loaded machine may not run it) */
	for (int i = 0, stop = 40; i <= stop; i++) {
		if (i == stop && !vdev_writes(d) && stop < 5000)
			stop++;
		else if (i == stop)
			EXPECT_EQ(vdev_pause(d), 0);
		assert_int_equal(dt_dirty_set_harvest(g.set, 0, &h), 0);
		for (uint64_t w = 0; w < NPAGES / 64; w++)
			acc[w] |= h.class_bits[c][w];
		sleep_ms(1);
	}
	snap(&g, area_gpa[t], after);
	expect_verified(d);
	EXPECT_TRUE(changed_pages(area_gpa[t], before, after, changed) > 0);
	for (uint64_t p = 0; p < NPAGES; p++) {
		ctx_set("%s, page %llu", vdev_name(d), (unsigned long long)p);
		EXPECT_EQ(bit(acc, p), bit(changed, p));
	}
	vdev_free(d);
	guest_free(&g);
}

static void test_racing_harvests(void **state)
{
	racing_harvests(VDEV_LOGGING);
	racing_harvests(VDEV_VMM);
}

/* The container unmaps the ring under a running device: it gives its pins back and stops. */
static void test_unmap(void **state)
{
	struct vfio_iommu_type1_dma_unmap unmap = {.argsz = sizeof(unmap), .iova = 0, .size = BANK};
	uint32_t before[AREA_PAGES], after[AREA_PAGES];
	struct guest g;
	struct vdev *d;
	uint64_t w;

	rng_reseed(55);
	guest_new(&g, true);
	d = dev_new(&g, VDEV_EMULATED, FAST, 0);
	EXPECT_EQ(vdev_start(d), 0);
	sleep_ms(5);
	EXPECT_EQ(pinned_count(&g), RING);
	EXPECT_EQ(dt_vfio_ioctl(g.iommu, VFIO_IOMMU_UNMAP_DMA, &unmap), 0);
	EXPECT_EQ(unmap.size, BANK);
	EXPECT_EQ(pinned_count(&g), 0);
	w = vdev_writes(d);
	snap(&g, area_gpa[VDEV_EMULATED], before);
	sleep_ms(20);
	snap(&g, area_gpa[VDEV_EMULATED], after);
	EXPECT_EQ(vdev_writes(d), w);
	EXPECT_TRUE(!memcmp(before, after, sizeof(before)));
	EXPECT_EQ(vdev_pause(d), -ENXIO);
	EXPECT_EQ(vdev_resume(d), -ENXIO);
	vdev_free(d);
	guest_free(&g);
}

/* Arguments vdev_new refuses. */
static void test_bad_new(void **state)
{
	struct vdev_config cfg;
	struct guest g;

	guest_new(&g, false);
	vdev_config_defaults(&cfg);
	errno = 0;
	EXPECT_TRUE(!vdev_new(VDEV_NTYPES, g.iommu, g.regions, 2, 0, AREA_SIZE, &cfg));
	EXPECT_EQ(errno, EINVAL);
	errno = 0;
	EXPECT_TRUE(!vdev_new(VDEV_LOGGING, g.iommu, g.regions, 2, 100, AREA_SIZE, &cfg));
	EXPECT_EQ(errno, EINVAL); /* unaligned */
	errno = 0;
	EXPECT_TRUE(!vdev_new(VDEV_LOGGING, g.iommu, g.regions, 2, 0, 0, &cfg));
	EXPECT_EQ(errno, EINVAL); /* empty */
	errno = 0;
	EXPECT_TRUE(!vdev_new(VDEV_LOGGING, g.iommu, g.regions, 2, BANK - PAGE, 2 * PAGE, &cfg));
	EXPECT_EQ(errno, EINVAL); /* across the two banks */
	errno = 0;
	EXPECT_TRUE(!vdev_new(VDEV_LOGGING, g.iommu, g.regions, 2, MEM, PAGE, &cfg));
	EXPECT_EQ(errno, EINVAL); /* outside the memory */
	cfg.ring_pages = 3;
	errno = 0;
	EXPECT_TRUE(!vdev_new(VDEV_EMULATED, g.iommu, g.regions, 2, 0, 2 * PAGE, &cfg));
	EXPECT_EQ(errno, EINVAL); /* the ring does not fit */
	guest_free(&g);
}

/* Pause: prompt at any rate, idempotent, and nothing is written while paused. */
static void test_pause(void **state)
{
	static uint8_t before[AREA_SIZE];
	const enum vdev_type t = VDEV_LOGGING;
	struct guest g;
	struct vdev *d;
	uint64_t t0, w, dt;

	rng_reseed(60);
	guest_new(&g, false);

	/* 1 write a second: the writer sleeps most of its time; pause must not wait for it */
	d = dev_new(&g, t, 1, 0);
	EXPECT_EQ(vdev_pause(d), 0); /* never started: a no-op */
	EXPECT_EQ(vdev_start(d), 0);
	sleep_ms(20);
	t0 = mono_ns();
	EXPECT_EQ(vdev_pause(d), 0);
	dt = mono_ns() - t0;
	ctx_set("pause at 1 write/s took %llu ns", (unsigned long long)dt);
	EXPECT_TRUE(dt < 100000000ull);
	EXPECT_EQ(vdev_writes(d), 1); /* the first write is due at start */
	t0 = mono_ns();
	EXPECT_EQ(vdev_pause(d), 0);
	EXPECT_TRUE(mono_ns() - t0 < 100000000ull);
	EXPECT_EQ(vdev_resume(d), 0);
	EXPECT_EQ(vdev_resume(d), 0); /* idempotent: one clock restart, one write due */
	sleep_ms(20);
	EXPECT_EQ(vdev_pause(d), 0);
	EXPECT_EQ(vdev_writes(d), 2);
	expect_verified(d);
	vdev_free(d);

	/* fast: pause stops it dead */
	memset(host_of(&g, area_gpa[t]), 0, AREA_SIZE);
	d = dev_new(&g, t, 200000, 0);
	EXPECT_EQ(vdev_start(d), 0);
	sleep_ms(20);
	t0 = mono_ns();
	EXPECT_EQ(vdev_pause(d), 0);
	dt = mono_ns() - t0;
	ctx_set("pause at 200000 writes/s took %llu ns", (unsigned long long)dt);
	EXPECT_TRUE(dt < 100000000ull);
	w = vdev_writes(d);
	EXPECT_TRUE(w > 0);
	memcpy(before, host_of(&g, area_gpa[t]), AREA_SIZE);
	sleep_ms(50);
	EXPECT_EQ(vdev_writes(d), w);
	EXPECT_TRUE(!memcmp(before, host_of(&g, area_gpa[t]), AREA_SIZE));
	expect_verified(d);
	EXPECT_EQ(vdev_resume(d), 0);
	sleep_ms(5);
	EXPECT_EQ(vdev_pause(d), 0);
	EXPECT_TRUE(vdev_writes(d) > w);
	vdev_free(d);

	/* 0 writes a second: started, and idle */
	memset(host_of(&g, area_gpa[t]), 0, AREA_SIZE);
	d = dev_new(&g, t, 0, 0);
	EXPECT_EQ(vdev_start(d), 0);
	sleep_ms(20);
	EXPECT_EQ(vdev_pause(d), 0);
	EXPECT_EQ(vdev_writes(d), 0);
	EXPECT_EQ(vdev_verify(d, NULL, 0), 0);
	vdev_free(d);
	guest_free(&g);
}

/* The rate: absolute deadlines never run ahead of writes_per_sec; and it does write. */
static void test_rate(void **state)
{
	const uint32_t rate = 2000;
	struct guest g;
	struct vdev *d;
	uint64_t t0, dt, w, bound;

	rng_reseed(70);
	guest_new(&g, false);
	d = dev_new(&g, VDEV_VMM, rate, 0);
	t0 = mono_ns();
	EXPECT_EQ(vdev_start(d), 0);
	sleep_ms(200);
	EXPECT_EQ(vdev_pause(d), 0);
	dt = mono_ns() - t0;
	w = vdev_writes(d);
	bound = dt * rate / 1000000000ull + 1;
	ctx_set("%llu writes in %llu ns at %u/s", (unsigned long long)w, (unsigned long long)dt,
		rate);
	EXPECT_TRUE(w <= bound);
	EXPECT_TRUE(w >= bound / 10);
	expect_verified(d);
	vdev_free(d);
	guest_free(&g);
}

/* Nothing outside the device's area is ever written, by any type. */
static void test_area_only(void **state)
{
	struct guest g;
	struct vdev *d[VDEV_NTYPES];

	rng_reseed(80);
	guest_new(&g, false);
	for (enum vdev_type t = 0; t < VDEV_NTYPES; t++) {
		d[t] = dev_new(&g, t, FAST, 10);
		EXPECT_EQ(vdev_start(d[t]), 0);
	}
	sleep_ms(40);
	for (enum vdev_type t = 0; t < VDEV_NTYPES; t++) {
		EXPECT_EQ(vdev_pause(d[t]), 0);
		expect_verified(d[t]);
	}
	for (uint64_t gpa = 0; gpa < MEM; gpa += 4) {
		bool in_area = false;

		for (enum vdev_type t = 0; t < VDEV_NTYPES; t++)
			in_area |= gpa - area_gpa[t] < AREA_SIZE;
		if (in_area)
			continue;
		if (*(uint32_t *)host_of(&g, gpa)) {
			ctx_set("gpa 0x%llx", (unsigned long long)gpa);
			EXPECT_EQ(*(uint32_t *)host_of(&g, gpa), 0);
		}
	}
	for (enum vdev_type t = 0; t < VDEV_NTYPES; t++)
		vdev_free(d[t]);
	guest_free(&g);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes_emulated),
		cmocka_unit_test(test_classes_logging),
		cmocka_unit_test(test_classes_vmm),
		cmocka_unit_test(test_classes_passthrough),
		cmocka_unit_test(test_pin_clock),
		cmocka_unit_test(test_racing_harvests),
		cmocka_unit_test(test_unmap),
		cmocka_unit_test(test_bad_new),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_area_only),
	};

	test_seed_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
