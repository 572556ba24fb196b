/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_server_proto.c - protocol conformance of the server with raw
 * messages: VERSION (the reply's version and capabilities, a subset of the proposal;
 * refused majors, bad JSON, missing fields, absurd limits, short payloads: error reply,
 * then the connection closes), commands before VERSION, a second VERSION, header flags
 * (type, ERROR, unknown bits, NO_REPLY on success and on error, stray replies), unknown and
 * wrong-direction commands, descriptors (on commands that take none, too many, more than the
 * control buffer: closed, error, connection alive), messages above the limit, below the
 * header, truncated, and fixed-size payloads that are short or lie about their sizes.
 */
#include "vfu_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The server closed the connection: end of stream on our side. */
static void assert_closed(void)
{
	assert_int_equal(srv_recv(&T), -ECONNRESET);
}

static void test_version_ok(void **state)
{
	struct vfu_caps c;
	uint16_t major, minor;

	srv_start(&T, NULL);
	assert_int_equal(srv_version(&T, "{\"capabilities\":{\"max_msg_fds\":4,"
					 "\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":"
					 "65536},\"twin_socket\":{\"supported\":true},"
					 "\"write_multiple\":true}}"),
			 0);
	assert_int_equal(vfu_version_parse(T.reply.payload, T.reply.len, &major, &minor, &c), 0);
	assert_int_equal(major, 0);
	assert_int_equal(minor, 1);
	assert_int_equal(c.max_msg_fds, 8);
	assert_int_equal(c.max_data_xfer_size, 1 << 20);
	assert_int_equal(c.pgsizes, 4096);
	assert_int_equal(c.max_dma_maps, 65535);
	assert_true(c.migration);
	assert_int_equal(c.mig_pgsize, 4096);
	assert_int_equal(c.mig_max_bitmap_size, 16 << 20);
	/* twin_socket declined, write_multiple echoed. */
	assert_false(c.twin_socket);
	assert_true(c.write_multiple);
	assert_null(strstr((char *)T.reply.payload + 4, "twin_socket"));
	/* The JSON ends with its NUL inside the message. */
	assert_int_equal(T.reply.payload[T.reply.len - 1], 0);
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(T.dev.client_lost, 1);
}

static void test_version_subset(void **state)
{
	struct vfu_caps c;
	uint16_t major, minor;
	struct vfu_version v = {.major = 0, .minor = 0};

	srv_start(&T, NULL);
	/* No JSON at all, minor 0: the reply is 0.0 with limits but no migration. */
	assert_int_equal(srv_call(&T, VFU_CMD_VERSION, &v, sizeof(v), NULL, 0), 0);
	assert_int_equal(vfu_version_parse(T.reply.payload, T.reply.len, &major, &minor, &c), 0);
	assert_int_equal(major, 0);
	assert_int_equal(minor, 0);
	assert_false(c.migration);
	assert_false(c.write_multiple);
	/* A second VERSION is refused but the connection stays. */
	assert_int_equal(srv_version(&T, NULL), -EINVAL);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), 0);
	assert_int_equal(T.dev.resets, 1);
}

static void version_refused(const void *payload, size_t len, int err)
{
	srv_start(&T, NULL);
	assert_int_equal(srv_call(&T, VFU_CMD_VERSION, payload, len, NULL, 0), -err);
	assert_closed();
	assert_int_equal(srv_stop_client(&T), -EPROTO);
	assert_int_equal(T.dev.client_lost, 1);
	srv_free(&T);
}

static void test_version_bad(void **state)
{
	static const char *const bad_json[] = {
		"{",
		"not json",
		"[]",
		"{\"capabilities\":{\"max_msg_fds\":-1}}",
		"{\"capabilities\":{\"max_msg_fds\":100000}}",
		"{\"capabilities\":{\"max_data_xfer_size\":0}}",
		"{\"capabilities\":{\"max_data_xfer_size\":1099511627776}}",
		"{\"capabilities\":{\"migration\":{\"pgsize\":4096}}}",
		"{\"capabilities\":{\"migration\":{\"max_bitmap_size\":4096}}}",
		"{\"capabilities\":{\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":4}}}",
		"{\"capabilities\":{\"pgsizes\":\"4096\"}}",
		"{\"capabilities\":{\"max_dma_maps\":0}}",
	};
	uint8_t p[256];
	struct vfu_version v = {.major = 0, .minor = 1};

	for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
		const char *j = bad_json[i];
		size_t n = strlen(j) + 1;

		memcpy(p, &v, sizeof(v));
		memcpy(p + sizeof(v), j, n);
		print_message("bad JSON: %.200s\n", j);
		version_refused(p, sizeof(v) + n, EINVAL);
	}
	/* Another major. */
	v.major = 1;
	version_refused(&v, sizeof(v), ENOTSUP);
	v.major = 0xffff;
	version_refused(&v, sizeof(v), ENOTSUP);
	/* Shorter than major + minor. */
	version_refused(&v, 3, EINVAL);
	version_refused(NULL, 0, EINVAL);
}

static void test_before_version(void **state)
{
	struct vfu_device_info di = {.argsz = sizeof(di)};

	srv_start(&T, NULL);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0), -EINVAL);
	assert_closed();
	assert_int_equal(srv_stop_client(&T), -EPROTO);
}

static void test_header_flags(void **state)
{
	struct vfu_device_info di = {.argsz = sizeof(di)};

	srv_start(&T, NULL);
	srv_negotiate(&T);

	/* ERROR on a command, unknown flag bits, an unknown type: error replies. */
	srv_send(&T, VFU_CMD_DEVICE_GET_INFO, VFU_F_ERROR, &di, sizeof(di), NULL, 0);
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.flags, VFU_F_TYPE_REPLY | VFU_F_ERROR);
	assert_int_equal(T.reply.hdr.error, EINVAL);
	assert_int_equal(T.reply.hdr.msg_id, T.id);
	srv_send(&T, VFU_CMD_DEVICE_GET_INFO, 1u << 7, &di, sizeof(di), NULL, 0);
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.error, EINVAL);
	srv_send(&T, VFU_CMD_DEVICE_GET_INFO, 2, &di, sizeof(di), NULL, 0);
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.error, EINVAL);

	/* A reply from the client to nothing: dropped without an answer. NO_REPLY commands,
	 * good and bad: no answer. The next reply is the next command's. */
	srv_send(&T, VFU_CMD_DMA_READ, VFU_F_TYPE_REPLY, NULL, 0, NULL, 0);
	srv_send(&T, VFU_CMD_DEVICE_RESET, VFU_F_NO_REPLY, NULL, 0, NULL, 0);
	srv_send(&T, VFU_CMD_DEVICE_GET_INFO, VFU_F_NO_REPLY, &di, 3, NULL, 0);
	srv_send(&T, 999, VFU_F_NO_REPLY, NULL, 0, NULL, 0);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0), 0);
	assert_int_equal(T.dev.resets, 1);
	assert_int_equal(T.reply.hdr.flags, VFU_F_TYPE_REPLY);
	assert_int_equal(T.reply.hdr.error, 0);
	assert_int_equal(T.reply.hdr.msg_size, 16 + 16);
	memcpy(&di, T.reply.payload, sizeof(di));
	assert_int_equal(di.argsz, 16);
	assert_int_equal(di.flags, DT_VFU_DEVICE_RESET | DT_VFU_DEVICE_PCI);
	assert_int_equal(di.num_regions, TD_NREGIONS);
	assert_int_equal(di.num_irqs, 2);
	/* The message id is echoed whatever its value. */
	T.id = 0xfffe;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0), 0);
	assert_int_equal(T.reply.hdr.msg_id, 0xffff);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0), 0);
	assert_int_equal(T.reply.hdr.msg_id, 0);
}

static void test_unknown_commands(void **state)
{
	static const uint16_t unknown[] = {0, 14, 19, 100, 0xffff};

	srv_start(&T, NULL);
	srv_negotiate(&T);
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		assert_int_equal(srv_call(&T, unknown[i], "abc", 3, NULL, 0), -ENOSYS);
	/* The server's own commands, sent by the client. */
	assert_int_equal(srv_call(&T, VFU_CMD_DMA_READ, NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(srv_call(&T, VFU_CMD_DMA_WRITE, NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_REGION_IO_FDS, NULL, 0, NULL, 0),
			 -ENOTSUP);
	/* Still serving. */
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), 0);
}

static void test_fds(void **state)
{
	struct vfu_device_info di = {.argsz = sizeof(di)};
	struct vfu_dma_map m = {.argsz = sizeof(m), .flags = 3, .addr = 0, .size = 4096};
	int fds[VFU_MAX_FDS + 8], before;
	void *va;
	int mfd = memfd_new(4096, &va);

	for (unsigned i = 0; i < VFU_MAX_FDS + 8; i++)
		fds[i] = mfd;
	srv_start(&T, NULL);
	srv_negotiate(&T);
	before = count_open_fds();
	/* On a command that takes none. */
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), fds, 1), -EINVAL);
	assert_int_equal(count_open_fds(), before);
	/* Two on DMA_MAP: refused, nothing mapped. */
	assert_int_equal(srv_call(&T, VFU_CMD_DMA_MAP, &m, sizeof(m), fds, 2), -EINVAL);
	assert_int_equal(count_open_fds(), before);
	/* More than we accept (8), and more than the control buffer holds. */
	assert_int_equal(srv_call(&T, VFU_CMD_DMA_MAP, &m, sizeof(m), fds, 9), -EINVAL);
	assert_int_equal(count_open_fds(), before);
	assert_int_equal(srv_call(&T, VFU_CMD_DMA_MAP, &m, sizeof(m), fds, VFU_MAX_FDS + 8),
			 -EINVAL);
	assert_int_equal(count_open_fds(), before);
	/* The mapping never happened: it can be made now, with one fd. */
	assert_int_equal(srv_call(&T, VFU_CMD_DMA_MAP, &m, sizeof(m), fds, 1), 0);
	/* The server holds the mapping, not the descriptor. */
	assert_int_equal(count_open_fds(), before);
	close(mfd);
}

static void test_too_large(void **state)
{
	struct vfu_hdr h = {
		.msg_id = 5, .cmd = VFU_CMD_REGION_WRITE, .msg_size = (1u << 20) + 8192 + 1};

	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(write(T.fd, &h, sizeof(h)), sizeof(h));
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.msg_id, 5);
	assert_int_equal(T.reply.hdr.flags, VFU_F_TYPE_REPLY | VFU_F_ERROR);
	assert_int_equal(T.reply.hdr.error, EMSGSIZE);
	assert_closed();
	assert_int_equal(srv_stop_client(&T), -EPROTO);
	assert_int_equal(T.dev.client_lost, 1);
	srv_free(&T);

	/* The largest accepted message is served. */
	static uint8_t big[(1 << 20) + 16];
	struct vfu_region_access *a = (void *)big;

	srv_start(&T, NULL);
	srv_negotiate(&T);
	*a = (struct vfu_region_access){.offset = 0, .region = 0, .count = 1 << 20};
	/* count above the region: refused with EINVAL, not a size error. */
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE, big, sizeof(big), NULL, 0), -EINVAL);
	h.msg_size = UINT32_MAX;
	assert_int_equal(write(T.fd, &h, sizeof(h)), sizeof(h));
	assert_int_equal(srv_recv(&T), 0);
	assert_int_equal(T.reply.hdr.error, EMSGSIZE);
	assert_closed();
}

static void test_truncated(void **state)
{
	struct vfu_hdr h = {.msg_id = 1, .cmd = VFU_CMD_DEVICE_GET_INFO, .msg_size = 32};

	/* Half a header, then the client goes. */
	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(write(T.fd, &h, 10), 10);
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(T.dev.client_lost, 1);
	srv_free(&T);

	/* A header announcing a payload that never comes. */
	srv_start(&T, NULL);
	srv_negotiate(&T);
	assert_int_equal(write(T.fd, &h, sizeof(h)), sizeof(h));
	assert_int_equal(write(T.fd, "12345", 5), 5);
	assert_int_equal(srv_stop_client(&T), 0);
	assert_int_equal(T.dev.client_lost, 1);
	srv_free(&T);

	/* Below the header size: the stream is lost, the connection closed. */
	srv_start(&T, NULL);
	srv_negotiate(&T);
	h.msg_size = 15;
	assert_int_equal(write(T.fd, &h, sizeof(h)), sizeof(h));
	assert_closed();
	assert_int_equal(srv_stop_client(&T), -EPROTO);
}

/* A payload of len bytes of which the first `real` come from p, the rest zero. */
static int call_short(uint16_t cmd, const void *p, size_t len)
{
	uint8_t buf[256] = {0};

	memcpy(buf, p, len);
	return srv_call(&T, cmd, buf, len, NULL, 0);
}

static void test_short_payloads(void **state)
{
	static const struct {
		uint16_t cmd;
		size_t min;
	} fixed[] = {
		{VFU_CMD_DMA_MAP, sizeof(struct vfu_dma_map)},
		{VFU_CMD_DMA_UNMAP, sizeof(struct vfu_dma_unmap)},
		{VFU_CMD_DEVICE_GET_INFO, sizeof(struct vfu_device_info)},
		{VFU_CMD_DEVICE_GET_REGION_INFO, sizeof(struct vfu_region_info)},
		{VFU_CMD_DEVICE_GET_IRQ_INFO, sizeof(struct vfu_irq_info)},
		{VFU_CMD_DEVICE_SET_IRQS, sizeof(struct vfu_irq_set)},
		{VFU_CMD_REGION_READ, sizeof(struct vfu_region_access)},
		{VFU_CMD_REGION_WRITE, sizeof(struct vfu_region_access)},
		{VFU_CMD_REGION_WRITE_MULTI, sizeof(struct vfu_region_write_multi)},
		{VFU_CMD_DEVICE_FEATURE, sizeof(struct vfu_device_feature)},
		{VFU_CMD_MIG_DATA_READ, sizeof(struct vfu_mig_data)},
		{VFU_CMD_MIG_DATA_WRITE, sizeof(struct vfu_mig_data)},
	};
	uint8_t ones[64];

	memset(ones, 0xff, sizeof(ones));
	srv_start(&T, NULL);
	srv_negotiate(&T);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		for (size_t len = 0; len < fixed[i].min; len++)
			if (call_short(fixed[i].cmd, ones, len) != -EINVAL)
				fail_msg("%s with %zu of %zu bytes accepted",
					 vfu_cmd_name(fixed[i].cmd), len, fixed[i].min);
	/* DEVICE_RESET takes no payload. */
	assert_int_equal(call_short(VFU_CMD_DEVICE_RESET, ones, 1), -EINVAL);
	assert_int_equal(T.dev.region_calls, 0);
	assert_int_equal(T.dev.resets, 0);
}

static void test_lying_sizes(void **state)
{
	uint8_t buf[512] = {0};
	struct vfu_region_access *a = (void *)buf;
	struct vfu_device_info di = {.argsz = 15};
	struct vfu_region_info ri = {.argsz = 31, .index = 0};
	struct vfu_mig_data *md = (void *)buf;

	srv_start(&T, NULL);
	srv_negotiate(&T);
	/* argsz below the reply. */
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0), -EINVAL);
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0),
			 -EINVAL);
	/* REGION_WRITE whose count is not its data. */
	*a = (struct vfu_region_access){.offset = 0, .region = 0, .count = 8};
	memset(buf + 16, 0x5a, 16);
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE, buf, 16 + 4, NULL, 0), -EINVAL);
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE, buf, 16 + 16, NULL, 0), -EINVAL);
	a->count = 0xffffffff;
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE, buf, 16 + 8, NULL, 0), -EINVAL);
	assert_int_equal(T.dev.region_calls, 0);
	assert_int_equal(T.dev.region[0][0], 0);
	/* REGION_READ beyond the region, wrapping, huge, zero, a payload after it. */
	*a = (struct vfu_region_access){.offset = TD_REGION_SZ - 4, .region = 0, .count = 8};
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_READ, buf, 16, NULL, 0), -EINVAL);
	*a = (struct vfu_region_access){.offset = UINT64_MAX - 3, .region = 0, .count = 8};
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_READ, buf, 16, NULL, 0), -EINVAL);
	*a = (struct vfu_region_access){.offset = 0, .region = 0, .count = 0xffffffff};
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_READ, buf, 16, NULL, 0), -EINVAL);
	*a = (struct vfu_region_access){.offset = 0, .region = 0, .count = 0};
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_READ, buf, 16, NULL, 0), -EINVAL);
	*a = (struct vfu_region_access){.offset = 0, .region = 7, .count = 4};
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_READ, buf, 16, NULL, 0), -EINVAL);
	*a = (struct vfu_region_access){.offset = 0, .region = 0, .count = 4};
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_READ, buf, 20, NULL, 0), -EINVAL);
	assert_int_equal(T.dev.region_calls, 0);
	/* REGION_WRITE_MULTI whose count lies. */
	uint64_t cnt = 3;

	memcpy(buf, &cnt, 8);
	memset(buf + 8, 0, 2 * 24);
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE_MULTI, buf, 8 + 2 * 24, NULL, 0),
			 -EINVAL);
	cnt = UINT64_MAX;
	memcpy(buf, &cnt, 8);
	assert_int_equal(srv_call(&T, VFU_CMD_REGION_WRITE_MULTI, buf, 8 + 2 * 24, NULL, 0),
			 -EINVAL);
	/* MIG_DATA_WRITE whose size is not its data, MIG_DATA_READ asking too much. */
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_RESUMING), 0);
	*md = (struct vfu_mig_data){.argsz = 8, .size = 100};
	assert_int_equal(srv_call(&T, VFU_CMD_MIG_DATA_WRITE, buf, 8 + 50, NULL, 0), -EINVAL);
	md->size = UINT32_MAX;
	assert_int_equal(srv_call(&T, VFU_CMD_MIG_DATA_WRITE, buf, 8 + 50, NULL, 0), -EINVAL);
	assert_int_equal(T.dev.mig_dst_len, 0);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP), 0);
	assert_int_equal(srv_set_state(&T, VFU_MIG_STATE_STOP_COPY), 0);
	*md = (struct vfu_mig_data){.argsz = UINT32_MAX, .size = (1 << 20) + 1};
	assert_int_equal(srv_call(&T, VFU_CMD_MIG_DATA_READ, buf, 8, NULL, 0), -EINVAL);
	*md = (struct vfu_mig_data){.argsz = 8 + 99, .size = 100};
	assert_int_equal(srv_call(&T, VFU_CMD_MIG_DATA_READ, buf, 8, NULL, 0), -EINVAL);
	/* DMA logging ranges: more than 256, fewer than announced. */
	struct vfu_dma_logging_control ctl = {.page_size = 4096, .num_ranges = 257};

	memset(buf, 0, sizeof(buf));
	memcpy(buf, &ctl, sizeof(ctl));
	assert_int_equal(srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START, 8 + 16,
				     buf, 16 + 16 * 2),
			 -E2BIG);
	ctl.num_ranges = 3;
	memcpy(buf, &ctl, sizeof(ctl));
	assert_int_equal(srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START, 8 + 16,
				     buf, 16 + 16 * 2),
			 -EINVAL);
	ctl.num_ranges = UINT32_MAX;
	memcpy(buf, &ctl, sizeof(ctl));
	assert_int_equal(
		srv_feature(&T, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START, 8 + 16, buf, 16),
		-E2BIG);
	assert_false(dt_iommu_dirty_tracking(dt_vfu_server_iommu(T.s)));
	/* SET_IRQS beyond the vectors, bools missing. */
	struct vfu_irq_set is = {.argsz = 20,
				 .flags = VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_ACTION_TRIGGER,
				 .index = 1,
				 .start = 2,
				 .count = 3};

	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), -EINVAL);
	is.start = 0;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), -EINVAL);
	is.start = UINT32_MAX;
	is.count = 2;
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0), -EINVAL);
	/* The connection survived all of it. */
	assert_int_equal(srv_call(&T, VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_version_ok, srv_teardown),
		cmocka_unit_test_teardown(test_version_subset, srv_teardown),
		cmocka_unit_test_teardown(test_version_bad, srv_teardown),
		cmocka_unit_test_teardown(test_before_version, srv_teardown),
		cmocka_unit_test_teardown(test_header_flags, srv_teardown),
		cmocka_unit_test_teardown(test_unknown_commands, srv_teardown),
		cmocka_unit_test_teardown(test_fds, srv_teardown),
		cmocka_unit_test_teardown(test_too_large, srv_teardown),
		cmocka_unit_test_teardown(test_truncated, srv_teardown),
		cmocka_unit_test_teardown(test_short_payloads, srv_teardown),
		cmocka_unit_test_teardown(test_lying_sizes, srv_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
