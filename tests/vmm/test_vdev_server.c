/* SPDX-License-Identifier: MIT */
/*
 * tests/vmm/test_vdev_server.c - a micro-VM test device behind vfio-user (vmm/vdev_server.c),
 * driven through the client library over a socketpair, without KVM: every refusal of its
 * register file, the device's life (create on mapped memory, start, write, verify), its
 * state through the migration states (nothing saved without a device; RESUMING only into a
 * device that never ran; a bad state refused on RESUMING -> STOP), and a DMA_UNMAP under its
 * area freeing it first.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <dirtytrack/dirtytrack.h>
#include <dirtytrack/vfio_user.h>

#include "../core/test_util.h"
#include "vdev_fixture.h"
#include "vdev_regs.h"
#include "vdev_server.h"

#define VS_MEM	 (32ull << 20)
#define AREA_GPA (16ull << 20)
#define AREA	 (16ull << 20)

struct rig {
	struct vdev_server *s;
	struct dt_vfu_client *c;
	pthread_t thread;
	int ret;
	int memfd;
	void *mem;
};

static void *serve(void *arg)
{
	struct rig *r = arg;

	r->ret = vdev_server_serve_one(r->s);
	return NULL;
}

/* A server of this type on one end of a socketpair, our client on the other, 32 MiB of
 * memfd guest memory (mapped only when map is set). */
static void rig_up(struct rig *r, enum vdev_type type, bool map)
{
	struct vdev_config cfg;
	int sv[2];

	memset(r, 0, sizeof(*r));
	vdev_config_defaults(&cfg);
	cfg.writes_per_sec = 5000;
	cfg.seed = test_seed;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	r->s = vdev_server_new(NULL, sv[0], type, &cfg);
	assert_non_null(r->s);
	assert_int_equal(pthread_create(&r->thread, NULL, serve, r), 0);
	r->c = dt_vfu_client_from_fd(sv[1], NULL);
	assert_non_null(r->c);
	r->memfd = memfd_create("vdev-server-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(r->memfd >= 0);
	assert_int_equal(ftruncate(r->memfd, VS_MEM), 0);
	r->mem = mmap(NULL, VS_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	assert_true(r->mem != MAP_FAILED);
	if (map)
		assert_int_equal(dt_vfu_client_dma_map(r->c, 0, VS_MEM, r->memfd, 0, r->mem,
						       PROT_READ | PROT_WRITE),
				 0);
}

static void rig_down(struct rig *r)
{
	dt_vfu_client_free(r->c); /* the server's client goes: serve_one returns */
	assert_int_equal(pthread_join(r->thread, NULL), 0);
	EXPECT_EQ(r->ret, 0);
	vdev_server_free(r->s);
	munmap(r->mem, VS_MEM);
	close(r->memfd);
}

static uint64_t reg(struct rig *r, uint32_t off)
{
	uint64_t v = ~0ull;

	assert_int_equal(dt_vfu_client_region_read(r->c, 0, off, &v, 8), 0);
	return v;
}

static int set_reg(struct rig *r, uint32_t off, uint64_t v)
{
	return dt_vfu_client_region_write(r->c, 0, off, &v, 8);
}

static void wait_writes(struct rig *r, uint64_t above)
{
	for (uint64_t t0 = mono_ns(); reg(r, VDEV_REG_WRITES) <= above;) {
		assert_true(mono_ns() - t0 < 5000000000ull);
		sleep_ms(2);
	}
}

static void test_registers(void **state)
{
	struct rig r;
	uint8_t four[4] = {0};

	rig_up(&r, VDEV_LOGGING, false);
	EXPECT_EQ(reg(&r, VDEV_REG_MAGIC), VDEV_REGS_MAGIC);
	EXPECT_EQ(reg(&r, VDEV_REG_TYPE), VDEV_LOGGING);
	EXPECT_EQ(reg(&r, VDEV_REG_WRITES), 0);
	/* read-only, no register, unaligned, not 8 bytes, past the file */
	EXPECT_EQ(set_reg(&r, VDEV_REG_MAGIC, 1), -EINVAL);
	EXPECT_EQ(set_reg(&r, VDEV_REG_WRITES, 1), -EINVAL);
	EXPECT_EQ(set_reg(&r, 0x800, 1), -EINVAL);
	EXPECT_EQ(set_reg(&r, VDEV_REG_AREA_GPA + 4, 1), -EINVAL);
	EXPECT_EQ(dt_vfu_client_region_read(r.c, 0, 0x800, four, 8), -EINVAL);
	EXPECT_EQ(dt_vfu_client_region_read(r.c, 0, VDEV_REG_MAGIC, four, 4), -EINVAL);
	EXPECT_EQ(dt_vfu_client_region_write(r.c, 0, VDEV_REG_CMD, four, 4), -EINVAL);
	EXPECT_TRUE(dt_vfu_client_region_read(r.c, 0, VDEV_REGS_SIZE, four, 8) < 0);
	/* an unknown command; commands that need a device */
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, 99), -EINVAL);
	EXPECT_EQ(reg(&r, VDEV_REG_STATUS), (uint64_t)-EINVAL);
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_START), -ENODEV);
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_VERIFY), -ENODEV);
	/* no memory mapped under the area: the device cannot be made */
	EXPECT_EQ(set_reg(&r, VDEV_REG_AREA_GPA, AREA_GPA), 0);
	EXPECT_EQ(set_reg(&r, VDEV_REG_AREA_SIZE, AREA), 0);
	EXPECT_EQ(reg(&r, VDEV_REG_AREA_GPA), AREA_GPA);
	EXPECT_TRUE(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_CREATE) < 0);
	EXPECT_TRUE((int64_t)reg(&r, VDEV_REG_STATUS) < 0);
	rig_down(&r);
}

static void test_life(void **state)
{
	uint64_t w, gpa[VDEV_REGS_NBAD];
	struct rig r;

	rig_up(&r, VDEV_LOGGING, true);
	EXPECT_EQ(set_reg(&r, VDEV_REG_AREA_GPA, AREA_GPA), 0);
	EXPECT_EQ(set_reg(&r, VDEV_REG_AREA_SIZE, AREA), 0);
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_CREATE), 0);
	EXPECT_EQ(reg(&r, VDEV_REG_STATUS), 0);
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_CREATE), -EEXIST);
	EXPECT_EQ(set_reg(&r, VDEV_REG_AREA_GPA, 0), -EBUSY); /* fixed once it exists */
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_START), 0);
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_START), -EALREADY);
	wait_writes(&r, 0);
	/* paused, the memory checks against its record; a page changed behind it is named */
	EXPECT_EQ(dt_vfu_client_mig_set_state(r.c, DT_VFU_MIG_STOP), 0);
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_VERIFY), 0);
	EXPECT_EQ(reg(&r, VDEV_REG_BAD), 0);
	memset((uint8_t *)r.mem + AREA_GPA + 5 * 4096, 0xa5, 64);
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_VERIFY), 0);
	EXPECT_EQ(reg(&r, VDEV_REG_BAD), 1);
	for (unsigned i = 0; i < VDEV_REGS_NBAD; i++)
		gpa[i] = reg(&r, VDEV_REG_BAD_GPA + 8 * i);
	EXPECT_EQ(gpa[0], AREA_GPA + 5 * 4096);
	EXPECT_EQ(gpa[1], 0);
	/* it writes again once RUNNING */
	w = reg(&r, VDEV_REG_WRITES);
	EXPECT_EQ(dt_vfu_client_mig_set_state(r.c, DT_VFU_MIG_RUNNING), 0);
	wait_writes(&r, w);
	/* the memory goes from under it: the device goes first */
	EXPECT_EQ(dt_vfu_client_dma_unmap(r.c, 0, VS_MEM, 0, NULL, 0), 0);
	EXPECT_EQ(reg(&r, VDEV_REG_WRITES), 0);
	EXPECT_EQ(set_reg(&r, VDEV_REG_CMD, VDEV_CMD_VERIFY), -ENODEV);
	rig_down(&r);
}

/* Source and destination devices over two rigs sharing nothing but the state blob. */
static void test_migration_states(void **state)
{
	struct dt_migrate_device src_dev, dst_dev;
	struct rig a, b, none;
	uint8_t *buf, bad[16] = {0};
	int64_t len;

	/* no device: nothing to save, and an empty state loads as nothing */
	rig_up(&none, VDEV_EMULATED, false);
	EXPECT_EQ(dt_vfu_client_migrate_device(none.c, "dev", &src_dev), 0);
	EXPECT_EQ(dt_vfu_client_mig_set_state(none.c, DT_VFU_MIG_STOP_COPY), 0);
	buf = malloc(1 << 20);
	assert_non_null(buf);
	EXPECT_EQ(src_dev.save(src_dev.opaque, buf, 1 << 20), 0);
	EXPECT_EQ(dt_vfu_client_mig_set_state(none.c, DT_VFU_MIG_RUNNING), 0);
	rig_down(&none);

	rig_up(&a, VDEV_EMULATED, true);
	rig_up(&b, VDEV_EMULATED, true);
	for (struct rig *r = &a; r; r = r == &a ? &b : NULL) {
		EXPECT_EQ(set_reg(r, VDEV_REG_AREA_GPA, AREA_GPA), 0);
		EXPECT_EQ(set_reg(r, VDEV_REG_AREA_SIZE, AREA), 0);
		EXPECT_EQ(set_reg(r, VDEV_REG_CMD, VDEV_CMD_CREATE), 0);
	}
	EXPECT_EQ(set_reg(&a, VDEV_REG_CMD, VDEV_CMD_START), 0);
	wait_writes(&a, 0);
	EXPECT_EQ(dt_vfu_client_migrate_device(a.c, "dev", &src_dev), 0);
	EXPECT_EQ(dt_vfu_client_migrate_device(b.c, "dev", &dst_dev), 0);
	EXPECT_EQ(dt_vfu_client_mig_set_state(a.c, DT_VFU_MIG_STOP_COPY), 0);
	len = src_dev.save(src_dev.opaque, buf, 1 << 20);
	assert_true(len > 0);
	/* a device that ran cannot take a state (RESUMING is refused) */
	EXPECT_TRUE(src_dev.load(src_dev.opaque, buf, (size_t)len) < 0);
	/* a bad state fails the load on RESUMING -> STOP; then the right one loads */
	EXPECT_TRUE(dst_dev.load(dst_dev.opaque, bad, sizeof(bad)) < 0);
	EXPECT_EQ(dst_dev.load(dst_dev.opaque, buf, (size_t)len), 0);
	memcpy(b.mem, a.mem, VS_MEM); /* the memory, as the engine would carry it */
	EXPECT_EQ(set_reg(&b, VDEV_REG_CMD, VDEV_CMD_VERIFY), 0);
	EXPECT_EQ(reg(&b, VDEV_REG_BAD), 0);
	EXPECT_EQ(reg(&b, VDEV_REG_WRITES), reg(&a, VDEV_REG_WRITES));
	/* RUNNING starts the loaded device */
	EXPECT_EQ(dt_vfu_client_mig_set_state(b.c, DT_VFU_MIG_RUNNING), 0);
	wait_writes(&b, reg(&a, VDEV_REG_WRITES));
	free(buf);
	rig_down(&a);
	rig_down(&b);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registers),
		cmocka_unit_test(test_life),
		cmocka_unit_test(test_migration_states),
	};

	(void)area_gpa; /* the fixture's device areas; this test has its own */
	test_seed_init(argc, argv);
	dt_set_log(dt_log_stderr, NULL, DT_LOG_WARN);
	return cmocka_run_group_tests_name("vdev_server", tests, NULL, NULL);
}
