/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_msg.c - the vfio-user transport (lib/vfio_user/msg.c, caps.c):
 * framing over a socketpair (header fields, payload, descriptors), every receive error
 * (end of stream before and inside a message, size below the header, size above the buffer,
 * more descriptors than allowed and more than the control buffer: all closed, the stream
 * still in step), error replies and NO_REPLY, the JSON capabilities (defaults, every member,
 * each kind of bad input) and the VERSION payload, and the 0600 listening socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vfio_user/msg.h"

#include "../core/test_util.h"
#include "../transport/transport_test.h"

static int sp[2];

static int setup(void **state)
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	return 0;
}

static int teardown(void **state)
{
	close(sp[0]);
	close(sp[1]);
	return 0;
}

/* Send raw bytes with n copies of fd attached. */
static void send_raw(const void *buf, size_t len, int fd, unsigned n)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 64)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int fds[64];

	assert_true(n <= 64);
	for (unsigned i = 0; i < n; i++)
		fds[i] = fd;
	vfu_put_fds(&mh, ctl.b, sizeof(ctl.b), fds, n);
	assert_int_equal(vfu_sendmsg_all(sp[0], &mh), 0);
}

static void test_roundtrip(void **state)
{
	uint8_t buf[256];
	const char payload[] = "0123456789abcdef-payload";
	struct vfu_msg m;
	int p[2];
	char c;

	assert_int_equal(pipe(p), 0);
	assert_int_equal(vfu_msg_send(sp[0], 0xbeef, VFU_CMD_DMA_MAP, VFU_F_NO_REPLY, payload,
				      sizeof(payload), &p[0], 1),
			 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 1, &m), 0);
	assert_int_equal(m.hdr.msg_id, 0xbeef);
	assert_int_equal(m.hdr.cmd, VFU_CMD_DMA_MAP);
	assert_int_equal(m.hdr.flags, VFU_F_NO_REPLY);
	assert_int_equal(m.hdr.error, 0);
	assert_int_equal(m.hdr.msg_size, 16 + sizeof(payload));
	assert_int_equal(m.len, sizeof(payload));
	assert_memory_equal(m.payload, payload, sizeof(payload));
	assert_int_equal(m.nfds, 1);
	/* The received fd is the pipe's read end. */
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(read(m.fds[0], &c, 1), 1);
	assert_int_equal(c, 'x');
	vfu_msg_close_fds(&m);
	assert_int_equal(m.nfds, 0);
	close(p[0]);
	close(p[1]);

	/* A header-only message and a reply. */
	struct vfu_hdr req = {.msg_id = 7, .cmd = VFU_CMD_DEVICE_RESET};

	assert_int_equal(vfu_reply(sp[0], &req, NULL, 0, NULL, 0), 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), 0);
	assert_int_equal(m.hdr.msg_id, 7);
	assert_int_equal(m.hdr.cmd, VFU_CMD_DEVICE_RESET);
	assert_int_equal(m.hdr.flags, VFU_F_TYPE_REPLY);
	assert_true(vfu_hdr_is_reply(&m.hdr));
	assert_int_equal(m.len, 0);
	assert_int_equal(m.nfds, 0);
}

/* A peer that stalls inside a message: the reader gives up after the rest timeout instead of
 * waiting for ever, inside the header and inside the payload alike. */
static void test_stall_mid_message(void **state)
{
	struct vfu_hdr h = {.msg_id = 1, .cmd = VFU_CMD_REGION_WRITE, .msg_size = 16 + 64};
	uint8_t buf[256], part[10] = {0};
	int saved = vfu_msg_rest_timeout_ms;
	uint64_t t0;
	struct vfu_msg m;

	vfu_msg_rest_timeout_ms = 150;
	/* 10 payload bytes of 64, then nothing */
	assert_int_equal(write(sp[0], &h, sizeof(h)), sizeof(h));
	assert_int_equal(write(sp[0], part, sizeof(part)), sizeof(part));
	t0 = vfu_now_ms();
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), -ETIMEDOUT);
	assert_true(vfu_now_ms() - t0 >= 140 && vfu_now_ms() - t0 < 5000);
	/* 6 bytes of the header, then nothing */
	assert_int_equal(write(sp[0], &h, 6), 6);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), -ETIMEDOUT);
	vfu_msg_rest_timeout_ms = saved;
}

static void test_error_reply(void **state)
{
	uint8_t buf[64];
	struct vfu_msg m;
	struct vfu_hdr req = {.msg_id = 3, .cmd = VFU_CMD_DMA_UNMAP};

	assert_int_equal(vfu_reply_error(sp[0], &req, -EINVAL), 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), 0);
	assert_int_equal(m.hdr.flags, VFU_F_TYPE_REPLY | VFU_F_ERROR);
	assert_int_equal(m.hdr.error, EINVAL);
	assert_int_equal(m.hdr.msg_size, 16);
	assert_int_equal(m.hdr.msg_id, 3);
	assert_int_equal(m.hdr.cmd, VFU_CMD_DMA_UNMAP);

	/* NO_REPLY: nothing is sent; the next message is the one that follows. */
	req.flags = VFU_F_NO_REPLY;
	assert_int_equal(vfu_reply_error(sp[0], &req, EIO), 0);
	assert_int_equal(vfu_msg_send(sp[0], 9, VFU_CMD_VERSION, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), 0);
	assert_int_equal(m.hdr.msg_id, 9);
	assert_int_equal(m.hdr.cmd, VFU_CMD_VERSION);
}

static void test_eof(void **state)
{
	uint8_t buf[64];
	struct vfu_msg m;
	struct vfu_hdr h = {.msg_id = 1, .cmd = 1, .msg_size = 40};

	/* End of stream before a message. */
	shutdown(sp[0], SHUT_WR);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), -ECONNRESET);
	teardown(state);
	setup(state);

	/* Inside the header. */
	send_raw(&h, 10, -1, 0);
	shutdown(sp[0], SHUT_WR);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), -ECONNRESET);
	teardown(state);
	setup(state);

	/* Inside the payload: 16 + 10 of 40 bytes. */
	uint8_t raw[26] = {0};

	memcpy(raw, &h, sizeof(h));
	send_raw(raw, sizeof(raw), -1, 0);
	shutdown(sp[0], SHUT_WR);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), -ECONNRESET);
}

static void test_bad_sizes(void **state)
{
	uint8_t buf[64];
	struct vfu_msg m;
	struct vfu_hdr h = {.msg_id = 1, .cmd = VFU_CMD_DMA_MAP, .msg_size = 15};
	int before = count_open_fds();
	int p[2];

	assert_int_equal(pipe(p), 0);
	/* Below the header, with a descriptor: closed. */
	send_raw(&h, sizeof(h), p[0], 2);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 4, &m), -EPROTO);
	assert_int_equal(m.hdr.msg_size, 15);
	assert_int_equal(count_open_fds(), before + 2);
	teardown(state);
	setup(state);

	/* Above the buffer: nothing of the payload is read. */
	h.msg_size = 65;
	send_raw(&h, sizeof(h), p[0], 1);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 4, &m), -EMSGSIZE);
	assert_int_equal(m.hdr.cmd, VFU_CMD_DMA_MAP);
	assert_int_equal(count_open_fds(), before + 2);
	h.msg_size = UINT32_MAX;
	send_raw(&h, sizeof(h), -1, 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 4, &m), -EMSGSIZE);

	/* Exactly the buffer: fine. */
	teardown(state);
	setup(state);
	uint8_t raw[64] = {0};

	h.msg_size = 64;
	memcpy(raw, &h, sizeof(h));
	send_raw(raw, sizeof(raw), -1, 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 4, &m), 0);
	assert_int_equal(m.len, 48);

	/* Bad arguments. */
	assert_int_equal(vfu_msg_recv(sp[1], buf, 15, 0, &m), -EINVAL);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), VFU_MAX_FDS + 1, &m), -EINVAL);
	close(p[0]);
	close(p[1]);
}

static void test_too_many_fds(void **state)
{
	uint8_t buf[64], raw[24] = {0};
	struct vfu_msg m;
	struct vfu_hdr h = {.msg_id = 5, .cmd = VFU_CMD_DMA_MAP, .msg_size = 24};
	int before = count_open_fds();
	int p[2];

	assert_int_equal(pipe(p), 0);
	memcpy(raw, &h, sizeof(h));
	/* 3 fds when 2 are allowed: -EBADMSG, all closed, header valid, stream in step. */
	send_raw(raw, sizeof(raw), p[0], 3);
	h.msg_id = 6;
	memcpy(raw, &h, sizeof(h));
	send_raw(raw, sizeof(raw), -1, 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 2, &m), -EBADMSG);
	assert_int_equal(m.hdr.msg_id, 5);
	assert_int_equal(m.nfds, 0);
	assert_int_equal(count_open_fds(), before + 2);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 2, &m), 0);
	assert_int_equal(m.hdr.msg_id, 6);

	/* Descriptors on a message when none are allowed. */
	send_raw(raw, sizeof(raw), p[0], 1);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), -EBADMSG);
	assert_int_equal(count_open_fds(), before + 2);

	/* More than the control buffer holds (MSG_CTRUNC). */
	send_raw(raw, sizeof(raw), p[0], VFU_MAX_FDS + 8);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), VFU_MAX_FDS, &m), -EBADMSG);
	assert_int_equal(count_open_fds(), before + 2);
	/* Still in step. */
	h.msg_id = 77;
	memcpy(raw, &h, sizeof(h));
	send_raw(raw, sizeof(raw), -1, 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), 0);
	assert_int_equal(m.hdr.msg_id, 77);
	close(p[0]);
	close(p[1]);
}

static void test_sendv(void **state)
{
	uint8_t buf[1 << 16];
	struct vfu_msg m;
	static uint8_t big[60000];
	struct iovec iov[3] = {
		{.iov_base = "ab", .iov_len = 2},
		{.iov_base = NULL, .iov_len = 0},
		{.iov_base = big, .iov_len = sizeof(big)},
	};

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	/* Bigger than the socket buffer might take at once: partial sends continue. */
	assert_int_equal(vfu_msg_sendv(sp[0], 1, VFU_CMD_REGION_WRITE, 0, 0, iov, 3, NULL, 0), 0);
	assert_int_equal(vfu_msg_recv(sp[1], buf, sizeof(buf), 0, &m), 0);
	assert_int_equal(m.len, 2 + sizeof(big));
	assert_memory_equal(m.payload, "ab", 2);
	assert_memory_equal(m.payload + 2, big, sizeof(big));
	assert_int_equal(vfu_msg_sendv(sp[0], 1, 1, 0, 0, iov, VFU_MAX_FDS, NULL, 0), -EINVAL);
	assert_int_equal(vfu_msg_sendv(sp[0], 1, 1, 0, 0, NULL, 0, NULL, 1), -EINVAL);
	assert_string_equal(vfu_cmd_name(VFU_CMD_DEVICE_FEATURE), "DEVICE_FEATURE");
	assert_string_equal(vfu_cmd_name(14), "unknown");
	assert_string_equal(vfu_cmd_name(9999), "unknown");
}

/* ---- capabilities ----------------------------------------------------------------------- */

static int parse(const char *s, struct vfu_caps *c)
{
	return vfu_caps_parse(s, strlen(s) + 1, c);
}

static void test_caps_parse(void **state)
{
	struct vfu_caps c;

	assert_int_equal(parse("{}", &c), 0);
	assert_int_equal(c.max_msg_fds, 1);
	assert_int_equal(c.max_data_xfer_size, 1 << 20);
	assert_int_equal(c.pgsizes, 4096);
	assert_int_equal(c.max_dma_maps, 65535);
	assert_false(c.migration);
	assert_false(c.twin_socket);

	assert_int_equal(parse("{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":"
			       "65536,\"pgsizes\":2101248,\"max_dma_maps\":100,\"migration\":"
			       "{\"pgsize\":4096,\"max_bitmap_size\":1048576},\"twin_socket\":"
			       "{\"supported\":true},\"write_multiple\":true,\"future\":[1,2]}}",
			       &c),
			 0);
	assert_int_equal(c.max_msg_fds, 8);
	assert_int_equal(c.max_data_xfer_size, 65536);
	assert_int_equal(c.pgsizes, 2101248);
	assert_int_equal(c.max_dma_maps, 100);
	assert_true(c.migration);
	assert_int_equal(c.mig_pgsize, 4096);
	assert_int_equal(c.mig_max_bitmap_size, 1048576);
	assert_true(c.twin_socket);
	assert_true(c.write_multiple);

	/* Length without a NUL: parses exactly len bytes. */
	assert_int_equal(vfu_caps_parse("{}garbage", 2, &c), 0);
	/* Missing "capabilities": defaults. */
	assert_int_equal(parse("{\"other\":1}", &c), 0);
	assert_int_equal(c.max_msg_fds, 1);
}

static void test_caps_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"{",
		"{\"capabilities\":",
		"[1,2]",
		"42",
		"{} {}",
		"{}x",
		"{\"capabilities\":[]}",
		"{\"capabilities\":{\"max_msg_fds\":\"8\"}}",
		"{\"capabilities\":{\"max_msg_fds\":-1}}",
		"{\"capabilities\":{\"max_msg_fds\":1.5}}",
		"{\"capabilities\":{\"max_msg_fds\":1025}}",
		"{\"capabilities\":{\"max_msg_fds\":99999999999999999999999}}",
		"{\"capabilities\":{\"max_data_xfer_size\":511}}",
		"{\"capabilities\":{\"max_data_xfer_size\":1073741825}}",
		"{\"capabilities\":{\"max_data_xfer_size\":18446744073709551615}}",
		"{\"capabilities\":{\"pgsizes\":0}}",
		"{\"capabilities\":{\"pgsizes\":2048}}",
		"{\"capabilities\":{\"max_dma_maps\":0}}",
		"{\"capabilities\":{\"max_dma_maps\":4294967296}}",
		"{\"capabilities\":{\"migration\":1}}",
		"{\"capabilities\":{\"migration\":{}}}",
		"{\"capabilities\":{\"migration\":{\"pgsize\":4096}}}",
		"{\"capabilities\":{\"migration\":{\"max_bitmap_size\":4096}}}",
		"{\"capabilities\":{\"migration\":{\"pgsize\":4095,\"max_bitmap_size\":8}}}",
		"{\"capabilities\":{\"migration\":{\"pgsize\":256,\"max_bitmap_size\":8}}}",
		"{\"capabilities\":{\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":0}}}",
		"{\"capabilities\":{\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":4294967297}}}",
		"{\"capabilities\":{\"twin_socket\":true}}",
		"{\"capabilities\":{\"twin_socket\":{\"supported\":1}}}",
		"{\"capabilities\":{\"write_multiple\":\"yes\"}}",
	};
	struct vfu_caps c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&c, 0xa5, sizeof(c));
		if (parse(bad[i], &c) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
		/* A failed parse leaves the defaults, never a half-parsed set. */
		assert_int_equal(c.max_msg_fds, 1);
		assert_int_equal(c.max_data_xfer_size, 1 << 20);
		assert_false(c.migration);
	}
	assert_int_equal(vfu_caps_parse(NULL, 0, &c), -EINVAL);
}

static void test_caps_roundtrip(void **state)
{
	struct vfu_caps a, b;
	size_t len = 0;
	char *s;

	vfu_caps_default(&a);
	a.max_msg_fds = 8;
	a.max_data_xfer_size = 1ull << 30;
	a.pgsizes = 4096 | (2 << 20);
	a.max_dma_maps = 1000;
	a.migration = true;
	a.mig_pgsize = 4096;
	a.mig_max_bitmap_size = 1ull << 32;
	a.twin_socket = false;
	a.write_multiple = true;
	s = vfu_caps_format(&a, &len);
	assert_non_null(s);
	assert_int_equal(len, strlen(s) + 1);
	assert_null(strstr(s, "twin_socket"));
	assert_int_equal(vfu_caps_parse(s, len, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	free(s);
}

static void test_version_payload(void **state)
{
	struct vfu_caps a, c;
	uint16_t major = 9, minor = 9;
	size_t len = 0;
	uint8_t *p;

	vfu_caps_default(&a);
	a.max_msg_fds = 4;
	p = vfu_version_build(0, 1, &a, &len);
	assert_non_null(p);
	assert_int_equal(vfu_version_parse(p, len, &major, &minor, &c), 0);
	assert_int_equal(major, 0);
	assert_int_equal(minor, 1);
	assert_int_equal(c.max_msg_fds, 4);
	/* The JSON without its NUL still parses. */
	assert_int_equal(vfu_version_parse(p, len - 1, &major, &minor, &c), 0);
	assert_int_equal(c.max_msg_fds, 4);
	/* No JSON, or an empty string: defaults. */
	assert_int_equal(vfu_version_parse(p, 4, &major, &minor, &c), 0);
	assert_int_equal(c.max_msg_fds, 1);
	p[4] = 0;
	assert_int_equal(vfu_version_parse(p, len, &major, &minor, &c), 0);
	/* Too short; bad JSON. */
	assert_int_equal(vfu_version_parse(p, 3, &major, &minor, &c), -EINVAL);
	p[4] = '[';
	assert_int_equal(vfu_version_parse(p, len, &major, &minor, &c), -EINVAL);
	free(p);
}

static void test_listen(void **state)
{
	char path[64];
	struct stat st;
	int l, c, a, fd;

	snprintf(path, sizeof(path), "/tmp/vfu-msg-test-%d.sock", (int)getpid());
	unlink(path);
	umask(0);
	l = vfu_listen(path);
	umask(022);
	assert_true(l >= 0);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	c = vfu_connect(path);
	assert_true(c >= 0);
	a = vfu_accept(l);
	assert_true(a >= 0);
	assert_true(fcntl(a, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(vfu_msg_send(c, 1, VFU_CMD_VERSION, 0, "x", 1, NULL, 0), 0);
	close(c);
	close(a);
	/* An old socket at the path is replaced. */
	close(l);
	l = vfu_listen(path);
	assert_true(l >= 0);
	close(l);
	unlink(path);
	/* Anything else there is left alone. */
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(vfu_listen(path), -EEXIST);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(vfu_connect(path), -ENOENT);
	assert_int_equal(vfu_listen(""), -EINVAL);
	assert_int_equal(vfu_connect(NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stall_mid_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sendv, setup, teardown),
		cmocka_unit_test(test_caps_parse),
		cmocka_unit_test(test_caps_bad),
		cmocka_unit_test(test_caps_roundtrip),
		cmocka_unit_test(test_version_payload),
		cmocka_unit_test(test_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
