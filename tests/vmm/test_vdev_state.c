/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/test_vdev_state.c - the migrated state of the DMA test devices, without KVM:
 * save, then load into a fresh device on a second container over a copy of the memory
 * (verify passes, pins are taken again, the sequence and the write count go on), the
 * negative control (a copy taken before the last writes: verify names exactly those pages,
 * and single corruptions), and the blobs a load must refuse without changing anything.
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
static uint64_t changed[NPAGES / 64], ring[NPAGES / 64];

/*
 * Migrate one device: run, pause, save; copy the memory to a second container, load into a
 * fresh device there; memory checks out, the ring is pinned again if it was, and the
 * destination goes on from the next sequence number.
 */
static void migrate_one(enum vdev_type t, uint32_t pin_after, bool pinned)
{
	uint32_t src[AREA_PAGES], dst[AREA_PAGES];
	struct dt_migrate_device md;
	struct guest g1, g2;
	struct vdev *d1, *d2;
	uint64_t last, n, w1;
	uint8_t *buf;
	size_t len;

	ctx_set("%d, pinned %d", (int)t, pinned);
	guest_new(&g1, false);
	guest_new(&g2, false);
	d1 = dev_new(&g1, t, FAST, pin_after);
	EXPECT_EQ(vdev_start(d1), 0);
	if (pinned) {
		uint64_t t0 = mono_ns();

		while (pinned_count(&g1) < RING && mono_ns() - t0 < 5000000000ull)
			sleep_ms(2);
	}
	sleep_ms(20);
	EXPECT_EQ(vdev_pause(d1), 0);
	EXPECT_EQ(pinned_count(&g1), pinned ? RING : 0);
	buf = save_blob(d1, &len);
	w1 = vdev_writes(d1);
	guest_copy(&g2, &g1);

	d2 = dev_new(&g2, t, 7, 100000); /* the blob's config replaces this one */
	vdev_migrate_device(d2, &md);
	EXPECT_TRUE(!strcmp(md.name, vdev_name(d2)));
	EXPECT_TRUE(md.opaque == d2);
	EXPECT_EQ(md.pending(md.opaque), len);
	EXPECT_EQ(vdev_writes(d2), 0);
	EXPECT_EQ(md.load(md.opaque, buf, len), 0);
	EXPECT_EQ(vdev_writes(d2), w1); /* the count travels */
	expect_verified(d2);
	EXPECT_EQ(pinned_count(&g2), pinned ? RING : 0);
	if (t == VDEV_PASSTHROUGH)
		EXPECT_EQ(whole_scope(&g2), !pinned);

	snap(&g2, area_gpa[t], src);
	last = snap_max(src);
	EXPECT_EQ(last, w1); /* the latest stamp is the source's sequence number */
	/* resume starts a loaded device as start does */
	EXPECT_EQ(t % 2 ? vdev_resume(d2) : vdev_start(d2), 0);
	/* until it wrote (a loaded machine may not schedule it within a fixed sleep) */
	for (uint64_t t0 = mono_ns(); vdev_writes(d2) == w1 && mono_ns() - t0 < 5000000000ull;)
		sleep_ms(2);
	sleep_ms(5);
	EXPECT_EQ(vdev_pause(d2), 0);
	expect_verified(d2);
	snap(&g2, area_gpa[t], dst);
	n = changed_pages(area_gpa[t], src, dst, changed);
	EXPECT_TRUE(n > 0);
	EXPECT_EQ(snap_max(dst), vdev_writes(d2)); /* the sequence went on from last + 1 */
	for (uint64_t i = 0; i < AREA_PAGES; i++)
		if (dst[i] != src[i])
			EXPECT_TRUE(dst[i] > last);
	ring_pages(area_gpa[t], ring);
	if (pinned)
		EXPECT_TRUE(subset(changed, ring));
	/* the source's memory never saw the destination's writes */
	snap(&g1, area_gpa[t], dst);
	EXPECT_EQ(snap_max(dst), last);

	/* and the destination's state travels on: save through the migrate_device */
	free(buf);
	len = vdev_state_size(d2);
	buf = malloc(len);
	EXPECT_EQ(md.save(md.opaque, buf, len), len);
	free(buf);
	vdev_free(d1);
	vdev_free(d2);
	EXPECT_EQ(pinned_count(&g2), 0);
	guest_free(&g1);
	guest_free(&g2);
}

static void test_migrate(void **state)
{
	rng_reseed(30);
	migrate_one(VDEV_EMULATED, 0, true);
	migrate_one(VDEV_LOGGING, 0, false);
	migrate_one(VDEV_VMM, 0, false);
	migrate_one(VDEV_PASSTHROUGH, 100000, false);
	migrate_one(VDEV_PASSTHROUGH, 5, true);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Negative control: the destination's memory is copied before the device's last writes (the
 * dirty pages a migration would have missed); vdev_verify names exactly those pages. Then
 * single corruptions: a torn stamp, and a page written that the device never wrote.
 */
static void stale_pages(enum vdev_type t)
{
	uint32_t at_copy[AREA_PAGES], final[AREA_PAGES];
	uint64_t bad[AREA_PAGES], want[AREA_PAGES], nwant = 0, nbad, blank = UINT64_MAX;
	struct guest g1, g2;
	struct vdev *d1, *d2;
	uint8_t *buf;
	uint64_t w;
	size_t len;

	guest_new(&g1, false);
	guest_new(&g2, false);
	d1 = dev_new(&g1, t, 3000, 0);
	EXPECT_EQ(vdev_start(d1), 0);
	sleep_ms(15);
	EXPECT_EQ(vdev_pause(d1), 0);
	guest_copy(&g2, &g1); /* the copy ... */
	snap(&g1, area_gpa[t], at_copy);
	w = vdev_writes(d1);
	EXPECT_EQ(vdev_resume(d1), 0);
	/* ... misses these writes (at least one: a loaded machine may not run the device
	 * within a fixed sleep) */
	for (uint64_t t0 = mono_ns(); vdev_writes(d1) == w && mono_ns() - t0 < 5000000000ull;)
		sleep_ms(2);
	sleep_ms(10);
	EXPECT_EQ(vdev_pause(d1), 0);
	snap(&g1, area_gpa[t], final);
	buf = save_blob(d1, &len);
	for (uint64_t i = 0; i < AREA_PAGES; i++) {
		if (final[i] != at_copy[i])
			want[nwant++] = area_gpa[t] + i * PAGE;
		else if (!final[i] && blank == UINT64_MAX)
			blank = area_gpa[t] + i * PAGE;
	}
	ctx_set("%s: stale pages", vdev_name(d1));
	EXPECT_TRUE(nwant > 0);

	d2 = dev_new(&g2, t, FAST, 0);
	EXPECT_EQ(vdev_load(d2, buf, len), 0);
	nbad = vdev_verify(d2, bad, AREA_PAGES);
	EXPECT_EQ(nbad, nwant);
	qsort(bad, nbad, sizeof(bad[0]), cmp_u64);
	for (uint64_t i = 0; i < nbad && i < nwant; i++)
		EXPECT_EQ(bad[i], want[i]);
	EXPECT_EQ(vdev_verify(d2, bad, 1), nwant); /* the count, whatever maxbad */
	EXPECT_EQ(bad[0], want[0]);

	/* With the memory right, one torn stamp, then one page written behind its back. */
	guest_copy(&g2, &g1);
	expect_verified(d2);
	((uint32_t *)host_of(&g2, want[0]))[GUEST_STAMP_LAST_WORD] ^= 1;
	EXPECT_EQ(vdev_verify(d2, bad, 1), 1);
	EXPECT_EQ(bad[0], want[0]);
	guest_copy(&g2, &g1);
	if (blank != UINT64_MAX) {
		*(uint32_t *)host_of(&g2, blank) = 1;
		EXPECT_EQ(vdev_verify(d2, bad, 1), 1);
		EXPECT_EQ(bad[0], blank);
	}
	free(buf);
	vdev_free(d1);
	vdev_free(d2);
	guest_free(&g1);
	guest_free(&g2);
}

static void test_stale_pages(void **state)
{
	rng_reseed(40);
	for (enum vdev_type t = 0; t < VDEV_NTYPES; t++)
		stale_pages(t);
}

/* Blobs that must be refused, and a refusal that changes nothing. */
static void test_bad_blobs(void **state)
{
	struct guest g1, g2;
	struct vdev *src, *dst, *other;
	uint32_t stamps[AREA_PAGES];
	uint64_t nstamped = 0;
	struct vdev_config cfg;
	uint8_t *buf, *bad, *buf2 = NULL;
	size_t len, len2;

	rng_reseed(50);
	guest_new(&g1, false);
	guest_new(&g2, false);
	src = dev_new(&g1, VDEV_EMULATED, FAST, 0);
	EXPECT_EQ(vdev_start(src), 0);
	sleep_ms(5);
	EXPECT_EQ(vdev_save(src, NULL, 0), -ENOSPC);
	{
		/* saving a running device is refused (in whatever buffer) */
		uint8_t *tmp = malloc(vdev_state_size(src));

		EXPECT_EQ(vdev_save(src, tmp, vdev_state_size(src)), -EBUSY);
		free(tmp);
	}
	EXPECT_EQ(vdev_pause(src), 0);
	buf = save_blob(src, &len);
	EXPECT_EQ(vdev_save(src, buf, len - 1), -ENOSPC);
	bad = malloc(len + 8);
	assert_non_null(bad);
	guest_copy(&g2, &g1);
	dst = dev_new(&g2, VDEV_EMULATED, FAST, 0);

	EXPECT_EQ(vdev_load(dst, buf, len - 1), -EINVAL);
	EXPECT_EQ(vdev_load(dst, buf, 10), -EINVAL);
	EXPECT_EQ(vdev_load(dst, NULL, 0), -EINVAL);
	memcpy(bad, buf, len);
	memset(bad + len, 0, 8);
	EXPECT_EQ(vdev_load(dst, bad, len + 4), -EINVAL); /* trailing bytes */
	bad[0] ^= 1;
	EXPECT_EQ(vdev_load(dst, bad, len), -EINVAL); /* magic */
	memcpy(bad, buf, len);
	bad[4] ^= 1;
	EXPECT_EQ(vdev_load(dst, bad, len), -EINVAL); /* version */
	memcpy(bad, buf, len);
	memset(bad + len - 4, 0xff, 4);
	EXPECT_EQ(vdev_load(dst, bad, len), -EINVAL); /* a stamp from the future */
	/* at an odd address, the good blob loads */
	memcpy(bad + 1, buf, len);

	/* nothing refused left a pin or a table behind: every stamped page is unexpected */
	EXPECT_EQ(pinned_count(&g2), 0);
	snap(&g2, area_gpa[VDEV_EMULATED], stamps);
	for (uint64_t i = 0; i < AREA_PAGES; i++)
		nstamped += stamps[i] != 0;
	EXPECT_TRUE(nstamped > 0);
	EXPECT_EQ(vdev_verify(dst, NULL, 0), nstamped);

	/* the wrong type, the wrong area, the wrong size */
	other = dev_new(&g2, VDEV_LOGGING, FAST, 0);
	EXPECT_EQ(vdev_load(other, buf, len), -EINVAL);
	vdev_free(other);
	vdev_config_defaults(&cfg);
	other = vdev_new(VDEV_EMULATED, g2.iommu, g2.regions, 2, area_gpa[VDEV_EMULATED] - PAGE,
			 AREA_SIZE, &cfg); /* the saved ring would still fit in it */
	assert_non_null(other);
	EXPECT_EQ(vdev_load(other, buf, len), -EINVAL);
	vdev_free(other);
	other = vdev_new(VDEV_EMULATED, g2.iommu, g2.regions, 2, area_gpa[VDEV_EMULATED],
			 AREA_SIZE / 2, &cfg);
	assert_non_null(other);
	EXPECT_EQ(vdev_load(other, buf, len), -EINVAL);
	vdev_free(other);

	/* a device without a ring into another without one */
	other = dev_new(&g1, VDEV_LOGGING, FAST, 0);
	EXPECT_EQ(vdev_start(other), 0);
	EXPECT_EQ(vdev_pause(other), 0);
	free(buf2);
	buf2 = save_blob(other, &len2);
	vdev_free(other);
	other = vdev_new(VDEV_VMM, g2.iommu, g2.regions, 2, area_gpa[VDEV_LOGGING], AREA_SIZE,
			 &cfg);
	assert_non_null(other);
	EXPECT_EQ(vdev_load(other, buf2, len2), -EINVAL);
	vdev_free(other);
	other = vdev_new(VDEV_LOGGING, g2.iommu, g2.regions, 2, area_gpa[VDEV_LOGGING] + PAGE,
			 AREA_SIZE, &cfg);
	assert_non_null(other);
	EXPECT_EQ(vdev_load(other, buf2, len2), -EINVAL);
	vdev_free(other);
	other = vdev_new(VDEV_LOGGING, g2.iommu, g2.regions, 2, area_gpa[VDEV_LOGGING], AREA_SIZE,
			 &cfg);
	assert_non_null(other);
	EXPECT_EQ(vdev_load(other, buf2, len2), 0); /* the control: the right device takes it */
	vdev_free(other);

	EXPECT_EQ(vdev_load(dst, bad + 1, len), 0);
	EXPECT_EQ(pinned_count(&g2), RING);
	expect_verified(dst);
	EXPECT_EQ(vdev_load(dst, buf, len), 0); /* again, before start: replaces, pins once */
	EXPECT_EQ(pinned_count(&g2), RING);
	EXPECT_EQ(vdev_start(dst), 0);
	EXPECT_EQ(vdev_start(dst), -EALREADY);
	EXPECT_EQ(vdev_pause(dst), 0);
	EXPECT_EQ(vdev_load(dst, buf, len), -EINVAL); /* started: too late */
	expect_verified(dst);

	free(buf);
	free(buf2);
	free(bad);
	vdev_free(src);
	vdev_free(dst);
	guest_free(&g1);
	guest_free(&g2);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate),
		cmocka_unit_test(test_stale_pages),
		cmocka_unit_test(test_bad_blobs),
	};

	test_seed_init(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
