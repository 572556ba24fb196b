/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_server_dma.c - the server's DMA space: DMA_MAP / DMA_UNMAP with
 * memfds (the device sees the client's memory; overlap, alignment, flags, short files,
 * limits, UNMAP_ALL, the dma_map / dma_unmap callbacks and a refusing dma_map), message
 * mappings reached with DMA_READ / DMA_WRITE (split at the client's transfer size, tracked,
 * the client's error, commands queued meanwhile, the client leaving mid-request), and device
 * DMA from another thread while the client maps and unmaps.
 */
#include "vfu_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- mappings ---------------------------------------------------------------------------- */

static int maps_seen, unmaps_seen, refuse_map;
static void *last_host;

static int cb_dma_map(void *opaque, uint64_t iova, uint64_t size, void *host, uint32_t prot)
{
	if (refuse_map)
		return -ENOMEM;
	maps_seen++;
	last_host = host;
	return 0;
}

static void cb_dma_unmap(void *opaque, uint64_t iova, uint64_t size)
{
	unmaps_seen++;
}

static void test_map_unmap(void **state)
{
	struct dt_vfu_server_opts o;
	struct dt_vfu_server_ops ops;
	struct vfu_dma_unmap u;
	uint8_t *va, buf[16];
	int fd = memfd_new(64 * KB, (void **)&va);
	int small = memfd_new(4 * KB, NULL);

	srv_default_opts(&T, &o);
	ops = *o.ops;
	ops.dma_map = cb_dma_map;
	ops.dma_unmap = cb_dma_unmap;
	o.ops = &ops;
	o.max_dma_maps = 3;
	maps_seen = unmaps_seen = refuse_map = 0;
	srv_start(&T, &o);
	srv_negotiate(&T);

	assert_int_equal(srv_dma_map(&T, 1 * MB, 32 * KB, fd, 16 * KB, 3), 0);
	assert_int_equal(maps_seen, 1);
	assert_non_null(last_host);
	/* The device reaches the client's memory at the offset. */
	memcpy(va + 16 * KB + 100, "client", 6);
	assert_int_equal(dt_dma_rw(dt_vfu_server_device(T.s), 1 * MB + 100, buf, 6, false), 0);
	assert_memory_equal(buf, "client", 6);
	assert_int_equal(dt_vfu_dma_rw(T.s, 1 * MB + 200, "server", 6, true), 0);
	assert_memory_equal(va + 16 * KB + 200, "server", 6);
	assert_memory_equal((uint8_t *)last_host + 200, "server", 6);
	/* A file that takes seals is sealed against shrinking (no SIGBUS later); one that
	 * takes none (memfd_new's) is mapped all the same. */
	{
		int sealable = memfd_create("vfu-seal", MFD_CLOEXEC | MFD_ALLOW_SEALING);

		assert_true(sealable >= 0);
		assert_int_equal(ftruncate(sealable, 64 * KB), 0);
		assert_int_equal(srv_dma_map(&T, 8 * MB, 16 * KB, sealable, 0, 3), 0);
		assert_true(fcntl(sealable, F_GET_SEALS) & F_SEAL_SHRINK);
		assert_int_equal(ftruncate(sealable, 4 * KB), -1);
		assert_int_equal(errno, EPERM);
		assert_int_equal(ftruncate(sealable, 128 * KB), 0); /* growing is harmless */
		assert_int_equal(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK, 0);
		assert_int_equal(srv_dma_unmap(&T, 8 * MB, 16 * KB, 0), 0);
		close(sealable);
		maps_seen--, unmaps_seen--;
	}

	/* Refusals, none of which maps anything. */
	assert_int_equal(srv_dma_map(&T, 1 * MB + 16 * KB, 32 * KB, fd, 0, 3), -EEXIST);
	assert_int_equal(srv_dma_map(&T, 1 * MB - 4 * KB, 8 * KB, fd, 0, 3), -EEXIST);
	assert_int_equal(srv_dma_map(&T, 2 * MB + 1, 4 * KB, fd, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB + 1, fd, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 0, fd, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, UINT64_MAX - 4095, 8 * KB, fd, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, fd, 0, 0), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, fd, 0, 4), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, fd, 100, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 8 * KB, small, 0, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, small, 4 * KB, 3), -EINVAL);
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, -1, 4 * KB, 3), -EINVAL);
	refuse_map = 1;
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, fd, 0, 3), -ENOMEM);
	refuse_map = 0;
	assert_int_equal(srv_mappings(&T), 1);
	assert_int_equal(maps_seen, 1);
	assert_int_equal(dt_dma_log(dt_vfu_server_device(T.s), 2 * MB, 1), -EINVAL);

	/* Read-only and message mappings; then the limit of 3. */
	assert_int_equal(srv_dma_map(&T, 2 * MB, 4 * KB, small, 0, VFU_DMA_MAP_F_READ), 0);
	assert_int_equal(dt_vfu_dma_rw(T.s, 2 * MB, buf, 4, true), -EPERM);
	assert_int_equal(srv_dma_map(&T, 3 * MB, 4 * KB, -1, 0, 3), 0);
	assert_null(last_host);
	assert_int_equal(srv_dma_map(&T, 4 * MB, 4 * KB, -1, 0, 3), -E2BIG);
	assert_int_equal(srv_mappings(&T), 3);

	/* DMA_UNMAP must match a mapping exactly. */
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 16 * KB, 0), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB + 4 * KB, 28 * KB, 0), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 64 * KB, 0), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 5 * MB, 4 * KB, 0), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 32 * KB, 4), -EINVAL);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 32 * KB, 3), -EINVAL);
	assert_int_equal(unmaps_seen, 0);
	assert_int_equal(srv_dma_unmap(&T, 1 * MB, 32 * KB, 0), 0);
	assert_int_equal(unmaps_seen, 1);
	/* The reply is the entry. */
	assert_int_equal(T.reply.len, sizeof(u));
	memcpy(&u, T.reply.payload, sizeof(u));
	assert_int_equal(u.argsz, sizeof(u));
	assert_int_equal(u.addr, 1 * MB);
	assert_int_equal(u.size, 32 * KB);
	assert_int_equal(dt_dma_rw(dt_vfu_server_device(T.s), 1 * MB + 100, buf, 6, false),
			 -EINVAL);
	assert_int_equal(srv_mappings(&T), 2);
	/* UNMAP_ALL: with a range it is refused; without, everything goes. */
	assert_int_equal(srv_dma_unmap(&T, 2 * MB, 0, VFU_DMA_UNMAP_F_ALL), -EINVAL);
	assert_int_equal(srv_mappings(&T), 2);
	assert_int_equal(srv_dma_unmap(&T, 0, 0, VFU_DMA_UNMAP_F_ALL), 0);
	assert_int_equal(srv_mappings(&T), 0);
	assert_int_equal(unmaps_seen, 3);
	/* Mapped again after, and dropped when the client goes. */
	assert_int_equal(srv_dma_map(&T, 1 * MB, 32 * KB, fd, 0, 3), 0);
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(srv_mappings(&T), 0);
	assert_int_equal(unmaps_seen, 4);
	munmap(va, 64 * KB);
	close(fd);
	close(small);
}

/* ---- message mappings --------------------------------------------------------------------- */

static uint8_t client_mem[64 * 1024]; /* the client's memory behind [8 MiB, +64 KiB) */
#define MSG_BASE (8 * MB)

static int dma_rw_result;
static uint64_t dma_iova;
static size_t dma_len;
static bool dma_write;
static uint8_t dma_buf[64 * 1024];

static void on_write2(struct test_dev *td, uint64_t offset, const void *buf, uint32_t n)
{
	dma_rw_result = dt_vfu_dma_rw(td->srv, dma_iova, dma_buf, dma_len, dma_write);
}

/* Answer the server's DMA requests until the reply to our command (id) comes. */
static int serve_until_reply(uint16_t id, int fail_with, int *requests)
{
	for (;;) {
		struct vfu_dma_access a;

		assert_int_equal(srv_recv(&T), 0);
		if (vfu_hdr_is_reply(&T.reply.hdr)) {
			assert_int_equal(T.reply.hdr.msg_id, id);
			return T.reply.hdr.flags & VFU_F_ERROR ? -(int)T.reply.hdr.error : 0;
		}
		(*requests)++;
		memcpy(&a, T.reply.payload, sizeof(a));
		assert_true(a.addr >= MSG_BASE &&
			    a.addr + a.count <= MSG_BASE + sizeof(client_mem));
		if (fail_with) {
			assert_int_equal(vfu_reply_error(T.fd, &T.reply.hdr, fail_with), 0);
			continue;
		}
		if (T.reply.hdr.cmd == VFU_CMD_DMA_WRITE) {
			assert_int_equal(T.reply.len, 16 + a.count);
			memcpy(client_mem + a.addr - MSG_BASE, T.reply.payload + 16, a.count);
			assert_int_equal(vfu_reply(T.fd, &T.reply.hdr, &a, sizeof(a), NULL, 0), 0);
		} else {
			assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DMA_READ);
			assert_int_equal(T.reply.len, 16);
			struct iovec iov[2] = {
				{.iov_base = &a, .iov_len = sizeof(a)},
				{.iov_base = client_mem + a.addr - MSG_BASE, .iov_len = a.count}};

			assert_int_equal(vfu_replyv(T.fd, &T.reply.hdr, iov, 2, NULL, 0), 0);
		}
	}
}

/* A REGION_WRITE to region 2 makes the device do the DMA set up in dma_*. */
/* A server whose client said json (NULL: srv_negotiate), a message mapping over client_mem
 * at MSG_BASE, and a device that does the DMA set up in dma_* when region 2 is written. */
static void message_mapping_setup(const char *json)
{
	srv_start(&T, NULL);
	if (json)
		assert_int_equal(srv_version(&T, json), 0);
	else
		srv_negotiate(&T);
	T.dev.on_write2 = on_write2;
	assert_int_equal(srv_dma_map(&T, MSG_BASE, sizeof(client_mem), -1, 0, 3), 0);
	dma_rw_result = 0;
}

/* Write region 2, so that the device starts its DMA; returns the command's id. */
static uint16_t kick_device(void)
{
	uint8_t buf[20] = {0};
	struct vfu_region_access a = {.offset = 0, .region = 2, .count = 4};

	memcpy(buf, &a, sizeof(a));
	srv_send(&T, VFU_CMD_REGION_WRITE, 0, buf, sizeof(buf), NULL, 0);
	return T.id;
}

static int device_dma(int fail_with, int *requests)
{
	*requests = 0;
	assert_int_equal(serve_until_reply(kick_device(), fail_with, requests), 0);
	return dma_rw_result;
}

static void test_message_mapping(void **state)
{
	struct vfu_dma_logging_range all = {.iova = 0, .length = 0};
	const uint8_t *bm;
	uint8_t *fdmem;
	int fd = memfd_new(16 * KB, (void **)&fdmem), n;

	/* The client takes 4 KiB per DMA message. */
	message_mapping_setup("{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":4096,"
			      "\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":65536}}}");
	/* An fd mapping right after it. */
	assert_int_equal(srv_dma_map(&T, MSG_BASE + sizeof(client_mem), 16 * KB, fd, 0, 3), 0);
	assert_int_equal(srv_logging_start(&T, &all, 0, PG), 0);

	/* A 10000-byte write: three DMA_WRITE messages of at most 4096 bytes. */
	for (size_t i = 0; i < sizeof(dma_buf); i++)
		dma_buf[i] = (uint8_t)(i * 13 + 1);
	dma_iova = MSG_BASE + 100;
	dma_len = 10000;
	dma_write = true;
	assert_int_equal(device_dma(0, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(client_mem + 100, dma_buf, 10000);
	assert_int_equal(client_mem[99], 0);
	assert_int_equal(client_mem[10100], 0);
	/* Tracked: pages 0..2 of the message mapping. */
	assert_int_equal(srv_report(&T, MSG_BASE, 16 * PG, PG, &bm), 0);
	assert_int_equal(bm[0], 0x07);
	assert_int_equal(bm[1], 0);

	/* A read across the message mapping into the fd mapping. */
	memset(fdmem, 0xab, 16 * KB);
	memcpy(client_mem + sizeof(client_mem) - 8, "ABCDEFGH", 8);
	dma_iova = MSG_BASE + sizeof(client_mem) - 8;
	dma_len = 16;
	dma_write = false;
	memset(dma_buf, 0, sizeof(dma_buf));
	assert_int_equal(device_dma(0, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(dma_buf, "ABCDEFGH", 8);
	assert_int_equal(dma_buf[8], 0xab);
	assert_int_equal(dma_buf[15], 0xab);
	/* Reads mark nothing. */
	assert_int_equal(srv_report(&T, MSG_BASE, 16 * PG, PG, &bm), 0);
	assert_int_equal(bm[0], 0);

	/* The client refuses: -EIO, no page marked. */
	dma_iova = MSG_BASE + 10 * PG;
	dma_len = 8;
	dma_write = true;
	assert_int_equal(device_dma(EFAULT, &n), -EIO);
	assert_int_equal(n, 1);
	assert_int_equal(srv_report(&T, MSG_BASE, 16 * PG, PG, &bm), 0);
	assert_int_equal(bm[1], 0);
	/* The same write accepted: marked. */
	assert_int_equal(device_dma(0, &n), 0);
	assert_int_equal(srv_report(&T, MSG_BASE, 16 * PG, PG, &bm), 0);
	assert_int_equal(bm[1], 0x04);
	/* Outside the mappings: refused before any message. */
	dma_iova = MSG_BASE - 4;
	assert_int_equal(device_dma(0, &n), -EINVAL);
	assert_int_equal(n, 0);
	close(fd);
	munmap(fdmem, 16 * KB);
}

/* A command the client pipelines while the server waits for its DMA reply is queued and
 * answered after the command that caused the DMA. */
static void test_message_mapping_queue(void **state)
{
	struct vfu_dma_access d;
	uint16_t write_id;

	message_mapping_setup(NULL);
	dma_iova = MSG_BASE;
	dma_len = 4;
	dma_write = false;
	memcpy(client_mem, "WXYZ", 4);
	write_id = kick_device();
	/* The DMA_READ request comes; before answering, send a reset. */
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DMA_READ);
	int many[20];
	struct vfu_device_info di = {.argsz = sizeof(di)};
	int before = count_open_fds();

	memcpy(&d, T.reply.payload, sizeof(d));
	for (int i = 0; i < 20; i++)
		many[i] = T.fd;
	srv_send(&T, VFU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0);
	srv_send(&T, VFU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), many, 20);
	assert_int_equal(d.addr, MSG_BASE);
	assert_int_equal(d.count, 4);
	struct iovec iov[2] = {{.iov_base = &d, .iov_len = sizeof(d)},
			       {.iov_base = client_mem, .iov_len = 4}};

	assert_int_equal(vfu_replyv(T.fd, &T.reply.hdr, iov, 2, NULL, 0), 0);
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.msg_id, write_id);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_REGION_WRITE);
	assert_int_equal(dma_rw_result, 0);
	assert_memory_equal(dma_buf, "WXYZ", 4);
	/* The reset comes after: the replies are in order. */
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DEVICE_RESET);
	assert_int_equal(T.reply.hdr.flags, VFU_F_TYPE_REPLY);
	assert_int_equal(T.dev.resets, 1);
	/* The command with too many descriptors, refused in its turn, all of them closed. */
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DEVICE_GET_INFO);
	assert_int_equal(T.reply.hdr.msg_id, T.id);
	assert_int_equal(T.reply.hdr.flags, VFU_F_TYPE_REPLY | VFU_F_ERROR);
	assert_int_equal(T.reply.hdr.error, EINVAL);
	assert_int_equal(count_open_fds(), before);
	/* And serving goes on. */
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), 0);
}

/* The client goes while the device waits for its DMA reply: the device gets -ENOTCONN, the
 * server cleans up. */
static void test_message_mapping_client_gone(void **state)
{
	message_mapping_setup(NULL);
	dma_iova = MSG_BASE;
	dma_len = 4;
	dma_write = true;
	kick_device();
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DMA_WRITE);
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(dma_rw_result, -ENOTCONN);
	assert_int_equal(T.dev.client_lost, 1);
	assert_int_equal(srv_mappings(&T), 0);
	assert_false(dt_vfu_server_connected(T.s));
}

/* The client never answers: after dma_timeout_ms the device gets -ETIMEDOUT and the server
 * gives the connection up. */
static void test_message_mapping_timeout(void **state)
{
	struct dt_vfu_server_opts o;

	srv_default_opts(&T, &o);
	o.dma_timeout_ms = 100;
	srv_start(&T, &o);
	srv_negotiate(&T);
	T.dev.on_write2 = on_write2;
	assert_int_equal(srv_dma_map(&T, MSG_BASE, sizeof(client_mem), -1, 0, 3), 0);
	dma_iova = MSG_BASE;
	dma_len = 4;
	dma_write = false;
	dma_rw_result = 0;
	kick_device();
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.cmd, VFU_CMD_DMA_READ);
	/* No answer: the server closes. */
	assert_int_equal(srv_recv(&T), -ECONNRESET);
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(dma_rw_result, -ETIMEDOUT);
	assert_int_equal(T.dev.client_lost, 1);
	assert_int_equal(srv_mappings(&T), 0);
	/* A timeout below -1 is refused. */
	o.dma_timeout_ms = -2;
	o.fd = -1;
	o.path = "/nonexistent/x";
	assert_null(dt_vfu_server_new(&o));
	assert_int_equal(errno, EINVAL);
}

/* A device thread doing DMA on one fd mapping while the client maps and unmaps others (the
 * list grows and moves): every access succeeds and sees the memory. */
static _Atomic int dma_thread_stop;
static _Atomic int dma_thread_errors, dma_thread_runs;

static void *dma_thread(void *arg)
{
	uint64_t v = 0, got;

	while (!dma_thread_stop) {
		v++;
		if (dt_vfu_dma_rw(T.s, 64 * MB + 8, &v, sizeof(v), true) ||
		    dt_vfu_dma_rw(T.s, 64 * MB + 8, &got, sizeof(got), false) || got != v)
			dma_thread_errors++;
		dma_thread_runs++;
	}
	return NULL;
}

static void test_dma_rw_concurrent(void **state)
{
	pthread_t th;
	int fd = memfd_new(64 * KB, NULL), other = memfd_new(4 * KB, NULL);

	srv_start_kind(&T, DT_DEVICE_EMULATED);
	assert_int_equal(srv_dma_map(&T, 64 * MB, 64 * KB, fd, 0, 3), 0);
	dma_thread_stop = 0;
	dma_thread_errors = dma_thread_runs = 0;
	assert_int_equal(pthread_create(&th, NULL, dma_thread, NULL), 0);
	while (!dma_thread_runs)
		usleep(100);
	/* At least 4 rounds, and until the device thread made 1000 accesses meanwhile. */
	for (int round = 0; round < 4 || dma_thread_runs < 1000; round++) {
		for (uint64_t k = 0; k < 40; k++)
			assert_int_equal(
				srv_dma_map(&T, (k + 1) * MB, 4 * KB, k % 2 ? other : -1, 0, 3), 0);
		for (uint64_t k = 0; k < 40; k++)
			assert_int_equal(srv_dma_unmap(&T, (k + 1) * MB, 4 * KB, 0), 0);
	}
	dma_thread_stop = 1;
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(dma_thread_errors, 0);
	assert_true(dma_thread_runs >= 1000);
	close(fd);
	close(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_map_unmap, srv_teardown),
		cmocka_unit_test_teardown(test_message_mapping, srv_teardown),
		cmocka_unit_test_teardown(test_message_mapping_queue, srv_teardown),
		cmocka_unit_test_teardown(test_message_mapping_client_gone, srv_teardown),
		cmocka_unit_test_teardown(test_message_mapping_timeout, srv_teardown),
		cmocka_unit_test_teardown(test_dma_rw_concurrent, srv_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
