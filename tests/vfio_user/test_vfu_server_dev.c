/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_server_dev.c - the device side of the server: region info (an
 * mmap region comes with its descriptor), REGION_READ / _WRITE / _WRITE_MULTI reaching the
 * device's callback (and nothing on refusal), IRQ info and SET_IRQS (eventfds signalled by
 * dt_vfu_irq_trigger and by the client, de-assign, disable), reset, the migration feature
 * (PROBE / GET / SET rules), the v2 state machine (every pair of states: the exact arcs the
 * device sees, refused targets, STOP_COPY -> PRE_COPY, a device that refuses an arc, a
 * device without PRE_COPY), MIG_DATA_READ / _WRITE moving device state end to end with the
 * pending size, and a client that vanishes mid-migration (mappings, logging and IRQs gone,
 * the state walked back to RUNNING through valid arcs); a server on a real socket path,
 * mode 0600, serving two clients one after the other.
 */
#include "vfu_test.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_regions(void **state)
{
	struct dt_vfu_server_opts o;
	struct dt_vfu_region regs[4];
	struct vfu_region_info ri = {.argsz = sizeof(ri)};
	uint8_t buf[64], *va;
	int mfd = memfd_new(2 * PG, (void **)&va);

	srv_default_opts(&T, &o);
	memcpy(regs, o.regions, sizeof(regs[0]) * 3);
	regs[3] = (struct dt_vfu_region){.size = 2 * PG,
					 .flags = DT_VFU_REGION_READ | DT_VFU_REGION_WRITE |
						  DT_VFU_REGION_MMAP,
					 .fd = mfd,
					 .offset = 0};
	o.regions = regs;
	o.num_regions = 4;
	srv_start(&T, &o);
	srv_negotiate(&T);

	/* Region 3: mmap, with the descriptor. */
	ri.index = 3;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0), 0);
	assert_int_equal(T.reply.len, sizeof(ri));
	memcpy(&ri, T.reply.payload, sizeof(ri));
	assert_int_equal(ri.argsz, 32);
	assert_int_equal(ri.index, 3);
	assert_int_equal(ri.size, 2 * PG);
	assert_int_equal(ri.flags, VFU_REGION_F_READ | VFU_REGION_F_WRITE | VFU_REGION_F_MMAP);
	assert_int_equal(ri.cap_offset, 0);
	assert_int_equal(T.reply.nfds, 1);
	{
		uint8_t *p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, T.reply.fds[0],
				  (off_t)ri.offset);

		assert_true(p != MAP_FAILED);
		p[5] = 0x77;
		assert_int_equal(va[5], 0x77);
		munmap(p, 2 * PG);
	}
	vfu_msg_close_fds(&T.reply);
	/* Region 1: read-only, no descriptor; index out of range. */
	ri = (struct vfu_region_info){.argsz = sizeof(ri), .index = 1};
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0), 0);
	memcpy(&ri, T.reply.payload, sizeof(ri));
	assert_int_equal(ri.flags, VFU_REGION_F_READ);
	assert_int_equal(ri.size, TD_REGION_SZ);
	assert_int_equal(T.reply.nfds, 0);
	ri = (struct vfu_region_info){.argsz = sizeof(ri), .index = 4};
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0),
			 -EINVAL);

	/* REGION_WRITE then READ through the device's callback. */
	struct vfu_region_access a = {.offset = 100, .region = 0, .count = 8};

	memcpy(buf, &a, sizeof(a));
	memcpy(buf + 16, "abcdefgh", 8);
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE, buf, 24, NULL, 0), 0);
	assert_int_equal(T.reply.len, 16);
	assert_memory_equal(T.reply.payload, &a, sizeof(a));
	assert_memory_equal(T.dev.region[0] + 100, "abcdefgh", 8);
	a.offset = 102;
	a.count = 4;
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0), 0);
	assert_int_equal(T.reply.len, 16 + 4);
	assert_memory_equal(T.reply.payload, &a, sizeof(a));
	assert_memory_equal(T.reply.payload + 16, "cdef", 4);
	/* The last byte of a region; and permissions. */
	a = (struct vfu_region_access){.offset = TD_REGION_SZ - 1, .region = 0, .count = 1};
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0), 0);
	a = (struct vfu_region_access){.offset = 0, .region = 1, .count = 1};
	memcpy(buf, &a, sizeof(a));
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE, buf, 17, NULL, 0), -EPERM);
	assert_int_equal(T.dev.region[1][0], 0);

	/* WRITE_MULTI: two writes; one bad write refuses all. */
	uint8_t multi[8 + 3 * 24] = {0};
	uint64_t cnt = 2;
	struct vfu_region_write_one w[3] = {
		{.offset = 0, .region = 0, .count = 4, .data = {1, 2, 3, 4}},
		{.offset = 8, .region = 2, .count = 8, .data = {9, 9, 9, 9, 9, 9, 9, 9}},
		{.offset = 0, .region = 1, .count = 1, .data = {5}},
	};

	memcpy(multi, &cnt, 8);
	memcpy(multi + 8, w, 2 * 24);
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE_MULTI, multi, 8 + 2 * 24, NULL, 0), 0);
	assert_int_equal(T.reply.len, 8);
	assert_memory_equal(T.reply.payload, &cnt, 8);
	assert_memory_equal(T.dev.region[0], "\1\2\3\4", 4);
	assert_int_equal(T.dev.region[2][15], 9);
	cnt = 3;
	w[0].data[0] = 0x42;
	memcpy(multi, &cnt, 8);
	memcpy(multi + 8, w, 3 * 24);
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE_MULTI, multi, 8 + 3 * 24, NULL, 0),
			 -EPERM);
	assert_int_equal(T.dev.region[0][0], 1);
	w[2] = (struct vfu_region_write_one){.offset = 0, .region = 0, .count = 9};
	memcpy(multi + 8, w, 3 * 24);
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE_MULTI, multi, 8 + 3 * 24, NULL, 0),
			 -EINVAL);
	assert_int_equal(T.dev.region[0][0], 1);
	close(mfd);
	munmap(va, 2 * PG);
}

static uint64_t efd_read(int fd)
{
	uint64_t v = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};

	if (poll(&p, 1, 0) != 1)
		return 0;
	assert_int_equal(read(fd, &v, 8), 8);
	return v;
}

static void test_irqs(void **state)
{
	struct vfu_irq_info ii = {.argsz = sizeof(ii), .index = 1};
	uint8_t buf[64];
	struct vfu_irq_set is;
	int e[4];

	for (int i = 0; i < 4; i++)
		e[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0), 0);
	memcpy(&ii, T.reply.payload, sizeof(ii));
	assert_int_equal(ii.count, 4);
	assert_int_equal(ii.flags, 3);
	assert_int_equal(ii.index, 1);
	ii.index = 2;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0),
			 -EINVAL);
	/* No eventfd yet. */
	assert_int_equal(dt_vfu_irq_trigger(T.s, 1, 0), -ENOENT);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 1, 4), -EINVAL);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 2, 0), -EINVAL);
	/* Eventfds for vectors 1..3 of index 1. */
	is = (struct vfu_irq_set){.argsz = sizeof(is),
				  .flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
				  .index = 1,
				  .start = 1,
				  .count = 3};
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), e, 2), -EINVAL);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), e + 1, 3), 0);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 1, 0), -ENOENT);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 1, 2), 0);
	assert_int_equal(efd_read(e[2]), 1);
	assert_int_equal(efd_read(e[1]), 0);
	/* The client triggers 1 and 3 with bools. */
	is = (struct vfu_irq_set){.argsz = sizeof(is) + 3,
				  .flags = VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER,
				  .index = 1,
				  .start = 1,
				  .count = 3};
	memcpy(buf, &is, sizeof(is));
	buf[20] = 1;
	buf[21] = 0;
	buf[22] = 1;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, buf, sizeof(is) + 3, NULL, 0), 0);
	assert_int_equal(efd_read(e[1]), 1);
	assert_int_equal(efd_read(e[2]), 0);
	assert_int_equal(efd_read(e[3]), 1);
	/* Two action or data flags; descriptors without DATA_EVENTFD; mask on a type that is
	 * not maskable. */
	is.flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), -EINVAL);
	is.flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_MASK | VFU_IRQ_SET_ACTION_TRIGGER;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), -EINVAL);
	is.flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), e, 1), -EINVAL);
	is = (struct vfu_irq_set){.argsz = sizeof(is),
				  .flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_MASK,
				  .index = 0,
				  .count = 1};
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), -EINVAL);
	is.index = 1;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), 0);
	/* De-assign vector 2 (no descriptors); disable the whole index (count 0). */
	is = (struct vfu_irq_set){.argsz = sizeof(is),
				  .flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
				  .index = 1,
				  .start = 2,
				  .count = 1};
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), 0);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 1, 2), -ENOENT);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 1, 3), 0);
	assert_int_equal(efd_read(e[3]), 1);
	is = (struct vfu_irq_set){.argsz = sizeof(is),
				  .flags = VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_ACTION_TRIGGER,
				  .index = 1};
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), 0);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 1, 1), -ENOENT);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 1, 3), -ENOENT);
	/* Set again; the client goes: its eventfds are closed. */
	is = (struct vfu_irq_set){.argsz = sizeof(is),
				  .flags = VFU_IRQ_SET_DATA_EVENTFD | VFU_IRQ_SET_ACTION_TRIGGER,
				  .index = 0,
				  .count = 1};
	int before = count_open_fds();

	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), e, 1), 0);
	assert_int_equal(count_open_fds(), before + 1);
	assert_int_equal(srv_stop_client(&T), 0);
	/* The eventfd copy, and both ends of the socketpair. */
	assert_int_equal(count_open_fds(), before - 2);
	assert_int_equal(dt_vfu_irq_trigger(T.s, 0, 0), -ENOENT);
	for (int i = 0; i < 4; i++)
		close(e[i]);
}

static void test_reset(void **state)
{
	struct dt_vfu_server_opts o;

	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP), 0);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), 0);
	assert_int_equal(T.dev.resets, 1);
	/* Reset brings the migration state back to RUNNING. */
	assert_int_equal(srv_get_state(&T), VFU_MIG_STATE_RUNNING);
	srv_free(&T);

	/* A device without reset. */
	srv_default_opts(&T, &o);
	o.device_flags = DT_VFU_DEVICE_PCI;
	srv_start(&T, &o);
	srv_negotiate(&T);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), -ENOTSUP);
	assert_int_equal(T.dev.resets, 0);
}

static void test_migration_feature(void **state)
{
	struct dt_vfu_server_opts o;
	struct vfu_feature_migration m;
	uint32_t f = VFU_FEATURE_MIGRATION;

	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | f, 16, NULL, 0), 0);
	assert_int_equal(T.reply.len, 16);
	{
		uint32_t argsz;

		memcpy(&argsz, T.reply.payload, 4);
		assert_int_equal(argsz, 16);
	}
	memcpy(&m, T.reply.payload + 8, sizeof(m));
	assert_int_equal(m.flags, VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY);
	/* argsz too small for the data; SET; both; neither; unknown flags; unknown feature. */
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | f, 15, NULL, 0), -EINVAL);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_SET | f, 16, &m, 8), -EINVAL);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | VFU_FEATURE_SET | f, 16, NULL, 0),
			 -EINVAL);
	assert_int_equal(srv_feature(&T, f, 16, NULL, 0), -EINVAL);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | f | (1u << 20), 16, NULL, 0), -EINVAL);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | 3, 16, NULL, 0), -ENOTTY);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_PROBE | VFU_FEATURE_GET | 0xffff, 16, NULL, 0),
			 -ENOTTY);
	/* PROBE: the request comes back. */
	assert_int_equal(srv_feature(&T, VFU_FEATURE_PROBE | VFU_FEATURE_GET | f, 16, NULL, 0), 0);
	assert_int_equal(T.reply.len, 8);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_PROBE | VFU_FEATURE_SET | f, 16, NULL, 0),
			 -EINVAL);
	assert_int_equal(srv_feature(&T,
				     VFU_FEATURE_PROBE | VFU_FEATURE_GET | VFU_FEATURE_SET |
					     VFU_FEATURE_MIG_DEVICE_STATE,
				     16, NULL, 0),
			 0);
	/* MIG_DATA_SIZE: the device's pending bytes. */
	struct vfu_feature_mig_data_size ds;

	T.dev.mig_len = 12345;
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | VFU_FEATURE_MIG_DATA_SIZE, 16, NULL, 0),
			 0);
	memcpy(&ds, T.reply.payload + 8, sizeof(ds));
	assert_int_equal(ds.stop_copy_length, 12345);
	srv_free(&T);

	/* A device that does not migrate. */
	srv_default_opts(&T, &o);
	o.migration_flags = 0;
	srv_start(&T, &o);
	srv_negotiate(&T);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | f, 16, NULL, 0), -ENOTTY);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP), -ENOTTY);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | VFU_FEATURE_MIG_DATA_SIZE, 16, NULL, 0),
			 -ENOTTY);
	assert_int_equal(T.dev.narcs, 0);
}

/* Every (from, to): the arcs the device sees are exactly the expected path. */
static void test_state_machine(void **state)
{
	enum {
		R = VFU_MIG_STATE_RUNNING,
		S = VFU_MIG_STATE_STOP,
		SC = VFU_MIG_STATE_STOP_COPY,
		RS = VFU_MIG_STATE_RESUMING,
		PC = VFU_MIG_STATE_PRE_COPY
	};
	static const struct {
		uint32_t from, to;
		uint32_t path[5]; /* states after from, 0-terminated; path[0] = 0: refused */
	} cases[] = {
		{R, S, {S}},  {R, SC, {S, SC}}, {R, RS, {S, RS}},  {R, PC, {PC}},
		{S, R, {R}},  {S, SC, {SC}},	{S, RS, {RS}},	   {S, PC, {R, PC}},
		{SC, S, {S}}, {SC, R, {S, R}},	{SC, RS, {S, RS}}, {SC, PC, {0}},
		{RS, S, {S}}, {RS, R, {S, R}},	{RS, SC, {S, SC}}, {RS, PC, {S, R, PC}},
		{PC, R, {R}}, {PC, SC, {SC}},	{PC, S, {R, S}},   {PC, RS, {R, S, RS}},
	};
	/* How to reach each start state from RUNNING. */
	static const uint32_t reach[8][3] = {
		[R] = {0}, [S] = {S}, [SC] = {S, SC}, [RS] = {S, RS}, [PC] = {PC},
	};

	srv_start(&T, NULL);
	srv_negotiate(&T);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = 0;

		/* Back to RUNNING, then to the start state. */
		assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), 0);
		for (int k = 0; k < 3 && reach[cases[i].from][k]; k++)
			assert_int_equal(srv_set_state(&T, reach[cases[i].from][k]), 0);
		assert_int_equal(srv_get_state(&T), cases[i].from);
		T.dev.narcs = 0;
		if (!cases[i].path[0]) {
			assert_int_equal(srv_set_state(&T, cases[i].to), -EINVAL);
			assert_int_equal(T.dev.narcs, 0);
			assert_int_equal(srv_get_state(&T), cases[i].from);
			continue;
		}
		assert_int_equal(srv_set_state(&T, cases[i].to), 0);
		/* The reply of a SET is the request. */
		assert_int_equal(T.reply.len, 16);
		for (uint32_t prev = cases[i].from; n < 5 && cases[i].path[n]; n++) {
			if (T.dev.arcs[n][0] != prev || T.dev.arcs[n][1] != cases[i].path[n])
				fail_msg("%u -> %u: arc %d is %u -> %u, want %u -> %u",
					 cases[i].from, cases[i].to, n, T.dev.arcs[n][0],
					 T.dev.arcs[n][1], prev, cases[i].path[n]);
			prev = cases[i].path[n];
		}
		assert_int_equal(T.dev.narcs, n);
		assert_int_equal(srv_get_state(&T), cases[i].to);
		assert_int_equal(dt_vfu_server_mig_state(T.s), cases[i].to);
		/* To the same state: nothing. */
		assert_int_equal(srv_set_state(&T, cases[i].to), 0);
		assert_int_equal(T.dev.narcs, n);
	}
	/* States that cannot be asked for. */
	T.dev.narcs = 0;
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_ERROR), -EINVAL);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_RUNNING_P2P), -EINVAL);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_PRE_COPY_P2P), -EINVAL);
	assert_int_equal(srv_set_state(&T, 8), -EINVAL);
	assert_int_equal(srv_set_state(&T, UINT32_MAX), -EINVAL);
	assert_int_equal(T.dev.narcs, 0);
	/* A short SET. */
	struct vfu_feature_mig_state st = {.device_state = VFU_MIG_STATE_STOP};

	assert_int_equal(
		srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_MIG_DEVICE_STATE, 16, &st, 4),
		-EINVAL);
}

static void test_state_refused_arc(void **state)
{
	struct dt_vfu_server_opts o;

	srv_start(&T, NULL);
	srv_negotiate(&T);
	/* RUNNING -> STOP_COPY is RUNNING -> STOP -> STOP_COPY; the second arc fails: the
	 * device stays in STOP and the client hears the device's errno. */
	T.dev.fail_arc_to = VFU_MIG_STATE_STOP_COPY;
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP_COPY), -EIO);
	assert_int_equal(srv_get_state(&T), VFU_MIG_STATE_STOP);
	assert_int_equal(T.dev.narcs, 1);
	T.dev.fail_arc_to = 0;
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP_COPY), 0);
	srv_free(&T);

	/* Without PRE_COPY: refused, and never used inside a path. */
	srv_default_opts(&T, &o);
	o.migration_flags = DT_VFU_MIGRATION_STOP_COPY;
	srv_start(&T, &o);
	srv_negotiate(&T);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_PRE_COPY), -EINVAL);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP_COPY), 0);
	assert_int_equal(T.dev.narcs, 2);
	assert_int_equal(T.dev.arcs[0][1], VFU_MIG_STATE_STOP);
}

static int mig_read(uint32_t size, uint32_t argsz, uint8_t *out, uint32_t *got)
{
	struct vfu_mig_data md = {.argsz = argsz, .size = size};
	int r = srv_call(&T, VFU_CMD_MIG_DATA_READ, &md, sizeof(md), NULL, 0);

	if (r)
		return r;
	memcpy(&md, T.reply.payload, sizeof(md));
	assert_int_equal(T.reply.len, 8 + md.size);
	assert_int_equal(md.argsz, 8 + md.size);
	assert_true(md.size <= size);
	memcpy(out, T.reply.payload + 8, md.size);
	*got = md.size;
	return 0;
}

static int mig_write(const uint8_t *data, uint32_t size)
{
	static uint8_t buf[8 + 65536];
	struct vfu_mig_data md = {.argsz = 8, .size = size};

	memcpy(buf, &md, sizeof(md));
	memcpy(buf + 8, data, size);
	return srv_call(&T, VFU_CMD_MIG_DATA_WRITE, buf, 8 + size, NULL, 0);
}

static void test_mig_data(void **state)
{
	static uint8_t src[100000], got[100000];
	uint32_t n, total = 0;
	struct vfu_feature_mig_data_size ds;

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 31 + 7);
	srv_start(&T, NULL);
	srv_negotiate(&T);
	T.dev.mig_src = src;
	T.dev.mig_len = sizeof(src);
	/* Not in a saving state. */
	assert_int_equal(mig_read(100, 108, got, &n), -EINVAL);
	assert_int_equal(mig_write(src, 10), -EINVAL);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_PRE_COPY), 0);
	assert_int_equal(mig_write(src, 10), -EINVAL);
	assert_int_equal(mig_read(0, 8, got, &n), -EINVAL);
	/* Pre-copy: part of it, with the pending size going down. */
	assert_int_equal(mig_read(30000, 8 + 30000, got, &n), 0);
	assert_int_equal(n, 30000);
	total = n;
	assert_int_equal(srv_feature(&T, VFU_FEATURE_GET | VFU_FEATURE_MIG_DATA_SIZE, 16, NULL, 0),
			 0);
	memcpy(&ds, T.reply.payload + 8, sizeof(ds));
	assert_int_equal(ds.stop_copy_length, sizeof(src) - 30000);
	/* Stop-copy: the rest, until a short read. */
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP_COPY), 0);
	do {
		assert_int_equal(mig_read(32768, 8 + 32768, got + total, &n), 0);
		total += n;
	} while (n == 32768);
	assert_int_equal(total, sizeof(src));
	assert_memory_equal(got, src, sizeof(src));
	assert_int_equal(mig_read(100, 108, got, &n), 0);
	assert_int_equal(n, 0);
	/* Destination side: RESUMING takes writes, in order. */
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_RESUMING), 0);
	assert_int_equal(mig_read(100, 108, got, &n), -EINVAL);
	for (uint32_t off = 0; off < sizeof(src); off += 40000)
		assert_int_equal(mig_write(src + off, sizeof(src) - off < 40000
							      ? (uint32_t)(sizeof(src) - off)
							      : 40000),
				 0);
	assert_int_equal(T.dev.mig_dst_len, sizeof(src));
	assert_memory_equal(T.dev.mig_dst, src, sizeof(src));
	assert_int_equal(mig_write(src, 0), -EINVAL);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_RUNNING), 0);
}

/* The client vanishes in STOP_COPY with mappings and logging on. */
static void test_client_lost(void **state)
{
	struct vfu_dma_logging_control ctl = {.page_size = PG, .num_ranges = 0};
	int mfd = memfd_new(64 * 1024, NULL);

	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(srv_dma_map(&T, 0x100000, 64 * 1024, mfd, 0, 3), 0);
	assert_int_equal(srv_dma_map(&T, 0x200000, 64 * 1024, -1, 0, 3), 0);
	assert_int_equal(dt_pin_pages(dt_vfu_server_device(T.s), 0x100000, 2, 3, NULL), 2);
	assert_int_equal(srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START, 24, &ctl,
				     sizeof(ctl)),
			 0);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_PRE_COPY), 0);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP_COPY), 0);
	T.dev.narcs = 0;
	/* Gone. */
	assert_int_equal(srv_stop_client(&T), 0);
	assert_false(dt_vfu_server_connected(T.s));
	assert_int_equal(T.dev.client_lost, 1);
	/* Back to RUNNING through valid arcs. */
	assert_int_equal(T.dev.narcs, 2);
	assert_int_equal(T.dev.arcs[0][0], VFU_MIG_STATE_STOP_COPY);
	assert_int_equal(T.dev.arcs[0][1], VFU_MIG_STATE_STOP);
	assert_int_equal(T.dev.arcs[1][0], VFU_MIG_STATE_STOP);
	assert_int_equal(T.dev.arcs[1][1], VFU_MIG_STATE_RUNNING);
	assert_int_equal(dt_vfu_server_mig_state(T.s), VFU_MIG_STATE_RUNNING);
	/* No mapping, no pin, no tracking. */
	struct dt_iommu_stats st;

	assert_int_equal(dt_iommu_get_stats(dt_vfu_server_iommu(T.s), &st), 0);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_pages, 0);
	assert_false(dt_iommu_dirty_tracking(dt_vfu_server_iommu(T.s)));
	assert_int_equal(dt_vfu_server_process(T.s), -ENOTCONN);
	assert_int_equal(dt_vfu_dma_rw(T.s, 0x100000, &ctl, 4, false), -EINVAL);
	/* From a connected fd there is no accept, and nothing to poll. */
	assert_int_equal(dt_vfu_server_accept(T.s), -EINVAL);
	assert_int_equal(dt_vfu_server_fd(T.s), -ENOTCONN);
	close(mfd);
}

/* The client goes while the device is in RESUMING: back through STOP. */
static void test_client_lost_resuming(void **state)
{
	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_RESUMING), 0);
	T.dev.narcs = 0;
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(T.dev.narcs, 2);
	assert_int_equal(T.dev.arcs[0][1], VFU_MIG_STATE_STOP);
	assert_int_equal(T.dev.arcs[1][1], VFU_MIG_STATE_RUNNING);
	assert_int_equal(dt_vfu_server_mig_state(T.s), VFU_MIG_STATE_RUNNING);
}

/* The device refuses an arc of the walk back: it stays where the last good arc left it. */
static void test_client_lost_refused_arc(void **state)
{
	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP_COPY), 0);
	T.dev.narcs = 0;
	T.dev.fail_arc_to = VFU_MIG_STATE_RUNNING;
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(T.dev.client_lost, 1);
	assert_int_equal(T.dev.narcs, 1);
	assert_int_equal(dt_vfu_server_mig_state(T.s), VFU_MIG_STATE_STOP);
}

/* A client that takes no descriptors gets mmap regions without MMAP (and without a fd). */
static void test_region_info_no_fds(void **state)
{
	struct dt_vfu_server_opts o;
	struct dt_vfu_region regs[1];
	struct vfu_region_info ri = {.argsz = sizeof(ri), .index = 0};
	int mfd = memfd_new(PG, NULL);

	srv_default_opts(&T, &o);
	regs[0] = (struct dt_vfu_region){
		.size = PG, .flags = DT_VFU_REGION_READ | DT_VFU_REGION_MMAP, .fd = mfd};
	o.regions = regs;
	o.num_regions = 1;
	srv_start(&T, &o);
	assert_int_equal(srv_version(&T, "{\"capabilities\":{\"max_msg_fds\":0}}"), 0);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0), 0);
	memcpy(&ri, T.reply.payload, sizeof(ri));
	assert_int_equal(ri.flags, VFU_REGION_F_READ);
	assert_int_equal(ri.offset, 0);
	assert_int_equal(T.reply.nfds, 0);
	close(mfd);
}

/* ---- a real socket ---------------------------------------------------------------------- */

static void *accept_and_run(void *arg)
{
	struct dt_vfu_server *s = arg;
	intptr_t r = dt_vfu_server_accept(s);

	if (!r)
		r = dt_vfu_server_run(s);
	return (void *)r;
}

static void test_socket_path(void **state)
{
	struct dt_vfu_server_opts o;
	struct test_srv *t = &T;
	char path[64];
	struct stat st;
	pthread_t th;
	void *ret;

	snprintf(path, sizeof(path), "/tmp/vfu-srv-test-%d.sock", (int)getpid());
	memset(&t->dev, 0, sizeof(t->dev));
	srv_default_opts(t, &o);
	o.path = path;
	t->s = dt_vfu_server_new(&o);
	assert_non_null(t->s);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_false(dt_vfu_server_connected(t->s));
	assert_true(dt_vfu_server_fd(t->s) >= 0);
	assert_int_equal(dt_vfu_server_process(t->s), -ENOTCONN);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(pthread_create(&th, NULL, accept_and_run, t->s), 0);
		t->fd = vfu_connect(path);
		assert_true(t->fd >= 0);
		srv_negotiate(t);
		assert_int_equal(srv_call(t, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), 0);
		close(t->fd);
		assert_int_equal(pthread_join(th, &ret), 0);
		assert_null(ret);
		assert_int_equal(t->dev.resets, round + 1);
	}
	dt_vfu_server_free(t->s);
	t->s = NULL;
	assert_int_equal(lstat(path, &st), -1);
	/* Bad options. */
	o.path = NULL;
	o.fd = -1;
	assert_null(dt_vfu_server_new(&o));
	srv_default_opts(t, &o);
	o.fd = 0;
	o.path = path;
	o.num_regions = 65;
	assert_null(dt_vfu_server_new(&o));
	srv_default_opts(t, &o);
	o.path = path;
	o.migration_flags = DT_VFU_MIGRATION_PRE_COPY;
	assert_null(dt_vfu_server_new(&o));
	assert_int_equal(errno, EINVAL);
	o.migration_flags = 0;
	o.size = 8;
	assert_null(dt_vfu_server_new(&o));
	assert_null(dt_vfu_server_new(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_regions, srv_teardown),
		cmocka_unit_test_teardown(test_irqs, srv_teardown),
		cmocka_unit_test_teardown(test_reset, srv_teardown),
		cmocka_unit_test_teardown(test_migration_feature, srv_teardown),
		cmocka_unit_test_teardown(test_state_machine, srv_teardown),
		cmocka_unit_test_teardown(test_state_refused_arc, srv_teardown),
		cmocka_unit_test_teardown(test_mig_data, srv_teardown),
		cmocka_unit_test_teardown(test_client_lost, srv_teardown),
		cmocka_unit_test_teardown(test_client_lost_resuming, srv_teardown),
		cmocka_unit_test_teardown(test_client_lost_refused_arc, srv_teardown),
		cmocka_unit_test_teardown(test_region_info_no_fds, srv_teardown),
		cmocka_unit_test_teardown(test_socket_path, srv_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
