/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/vfu_test.c - the server tests' fixture (vfu_test.h): the test device's
 * callbacks, the server thread and the raw client.
 */
#include "vfu_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

struct test_srv T;

int srv_teardown(void **state)
{
	srv_free(&T);
	return 0;
}

static int64_t td_region_rw(void *opaque, uint32_t index, uint64_t offset, void *buf,
			    uint32_t count, bool write)
{
	struct test_dev *td = opaque;

	td->region_calls++;
	assert_true(index < TD_NREGIONS);
	assert_true(offset + count <= TD_REGION_SZ);
	if (write) {
		memcpy(td->region[index] + offset, buf, count);
		if (index == 2 && td->on_write2)
			td->on_write2(td, offset, buf, count);
	} else {
		memcpy(buf, td->region[index] + offset, count);
	}
	return count;
}

static int td_reset(void *opaque)
{
	struct test_dev *td = opaque;

	td->resets++;
	return 0;
}

static int td_mig_state(void *opaque, uint32_t from, uint32_t to)
{
	struct test_dev *td = opaque;

	if (td->fail_arc_to && to == td->fail_arc_to)
		return -EIO;
	assert_true(td->narcs < TD_MAX_ARCS);
	td->arcs[td->narcs][0] = from;
	td->arcs[td->narcs][1] = to;
	td->narcs++;
	return 0;
}

static int64_t td_mig_read(void *opaque, void *buf, uint64_t size)
{
	struct test_dev *td = opaque;
	uint64_t n = td->mig_len - td->mig_pos;

	if (n > size)
		n = size;
	memcpy(buf, td->mig_src + td->mig_pos, n);
	td->mig_pos += n;
	return (int64_t)n;
}

static int64_t td_mig_write(void *opaque, const void *buf, uint64_t size)
{
	struct test_dev *td = opaque;

	if (td->mig_dst_len + size > TD_MIG_MAX)
		return -ENOSPC;
	memcpy(td->mig_dst + td->mig_dst_len, buf, size);
	td->mig_dst_len += size;
	return (int64_t)size;
}

static int td_mig_pending(void *opaque, uint64_t *bytes)
{
	struct test_dev *td = opaque;

	*bytes = td->mig_len - td->mig_pos;
	return 0;
}

static void td_client_lost(void *opaque)
{
	struct test_dev *td = opaque;

	td->client_lost++;
}

static const struct dt_vfu_server_ops td_ops = {
	.region_rw = td_region_rw,
	.reset = td_reset,
	.mig_state = td_mig_state,
	.mig_read = td_mig_read,
	.mig_write = td_mig_write,
	.mig_pending = td_mig_pending,
	.client_lost = td_client_lost,
};

static struct dt_vfu_region td_regions[TD_NREGIONS] = {
	{.size = TD_REGION_SZ, .flags = DT_VFU_REGION_READ | DT_VFU_REGION_WRITE, .fd = -1},
	{.size = TD_REGION_SZ, .flags = DT_VFU_REGION_READ, .fd = -1},
	{.size = TD_REGION_SZ, .flags = DT_VFU_REGION_READ | DT_VFU_REGION_WRITE, .fd = -1},
};

static const struct dt_vfu_irq td_irqs[2] = {
	{.count = 1, .flags = 1 /* EVENTFD */},
	{.count = 4, .flags = 1 | 2 /* EVENTFD | MASKABLE */},
};

void srv_default_opts(struct test_srv *t, struct dt_vfu_server_opts *o)
{
	*o = (struct dt_vfu_server_opts){
		.size = sizeof(*o),
		.fd = -1,
		.device_flags = DT_VFU_DEVICE_RESET | DT_VFU_DEVICE_PCI,
		.num_regions = TD_NREGIONS,
		.regions = td_regions,
		.num_irqs = 2,
		.irqs = td_irqs,
		.migration_flags = DT_VFU_MIGRATION_STOP_COPY | DT_VFU_MIGRATION_PRE_COPY,
		.ops = &td_ops,
		.opaque = &t->dev,
		.dma_kind = DT_DEVICE_EMULATED,
	};
}

static void *server_thread(void *arg)
{
	struct test_srv *t = arg;

	t->result = dt_vfu_server_run(t->s);
	return NULL;
}

void srv_start(struct test_srv *t, const struct dt_vfu_server_opts *o)
{
	struct dt_vfu_server_opts def;
	int sp[2];

	memset(&t->dev, 0, sizeof(t->dev));
	t->dev.mig_dst = calloc(1, TD_MIG_MAX);
	assert_non_null(t->dev.mig_dst);
	if (!o) {
		srv_default_opts(t, &def);
		o = &def;
	}
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	def = *o;
	def.path = NULL;
	def.fd = sp[1];
	def.opaque = &t->dev;
	t->s = dt_vfu_server_new(&def);
	assert_non_null(t->s);
	t->dev.srv = t->s;
	t->fd = sp[0];
	t->id = 100;
	assert_int_equal(pthread_create(&t->thread, NULL, server_thread, t), 0);
	t->running = true;
}

int srv_stop_client(struct test_srv *t)
{
	if (t->running) {
		close(t->fd);
		t->fd = -1;
		assert_int_equal(pthread_join(t->thread, NULL), 0);
		t->running = false;
	}
	return t->result;
}

void srv_free(struct test_srv *t)
{
	srv_stop_client(t);
	dt_vfu_server_free(t->s);
	t->s = NULL;
	free(t->dev.mig_dst);
	t->dev.mig_dst = NULL;
}

void srv_send(struct test_srv *t, uint16_t cmd, uint32_t flags, const void *payload, size_t len,
	      const int *fds, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 64)];
		struct cmsghdr align;
	} ctl;
	struct vfu_hdr h = {
		.msg_id = ++t->id, .cmd = cmd, .msg_size = (uint32_t)(16 + len), .flags = flags};
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
			       {.iov_base = (void *)payload, .iov_len = len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};

	/* Raw, so that tests can attach more descriptors than the library would send. */
	assert_true(nfds <= 64);
	vfu_put_fds(&mh, ctl.b, sizeof(ctl.b), fds, nfds);
	assert_int_equal(vfu_sendmsg_all(t->fd, &mh), 0);
}

int srv_recv(struct test_srv *t)
{
	return vfu_msg_recv(t->fd, t->buf, sizeof(t->buf), VFU_MAX_FDS, &t->reply);
}

int srv_call(struct test_srv *t, uint16_t cmd, const void *payload, size_t len, const int *fds,
	     unsigned nfds)
{
	srv_send(t, cmd, 0, payload, len, fds, nfds);
	assert_int_equal(srv_recv(t), 0);
	assert_int_equal(t->reply.hdr.msg_id, t->id);
	assert_int_equal(t->reply.hdr.cmd, cmd);
	assert_int_equal(t->reply.hdr.flags & VFU_F_TYPE_MASK, VFU_F_TYPE_REPLY);
	if (t->reply.hdr.flags & VFU_F_ERROR) {
		/* An error reply is the header alone and always says why. */
		assert_int_equal(t->reply.len, 0);
		assert_int_not_equal(t->reply.hdr.error, 0);
		return -(int)t->reply.hdr.error;
	}
	return 0;
}

int srv_version(struct test_srv *t, const char *json)
{
	uint8_t p[4096];
	struct vfu_version v = {.major = 0, .minor = 1};
	size_t len = sizeof(v);

	memcpy(p, &v, sizeof(v));
	if (json) {
		assert_true(strlen(json) + 1 + sizeof(v) <= sizeof(p));
		memcpy(p + sizeof(v), json, strlen(json) + 1);
		len += strlen(json) + 1;
	}
	return srv_call(t, VFU_CMD_VERSION, p, len, NULL, 0);
}

void srv_negotiate(struct test_srv *t)
{
	assert_int_equal(srv_version(t, "{\"capabilities\":{\"max_msg_fds\":8,"
					"\"max_data_xfer_size\":1048576,\"migration\":"
					"{\"pgsize\":4096,\"max_bitmap_size\":1048576}}}"),
			 0);
}

int srv_feature(struct test_srv *t, uint32_t flags, uint32_t argsz, const void *data, size_t len)
{
	uint8_t p[8192];
	struct vfu_device_feature f = {.argsz = argsz, .flags = flags};

	assert_true(sizeof(f) + len <= sizeof(p));
	memcpy(p, &f, sizeof(f));
	if (len)
		memcpy(p + sizeof(f), data, len);
	return srv_call(t, VFU_CMD_DEVICE_FEATURE, p, sizeof(f) + len, NULL, 0);
}

int srv_set_state(struct test_srv *t, uint32_t state)
{
	struct vfu_feature_mig_state st = {.device_state = state};

	return srv_feature(t, VFU_FEATURE_SET | VFU_FEATURE_MIG_DEVICE_STATE, 16, &st, sizeof(st));
}

uint32_t srv_get_state(struct test_srv *t)
{
	struct vfu_feature_mig_state st;

	assert_int_equal(
		srv_feature(t, VFU_FEATURE_GET | VFU_FEATURE_MIG_DEVICE_STATE, 16, NULL, 0), 0);
	assert_int_equal(t->reply.len, 16);
	memcpy(&st, t->reply.payload + 8, sizeof(st));
	return st.device_state;
}

int srv_dma_map(struct test_srv *t, uint64_t iova, uint64_t size, int fd, uint64_t offset,
		uint32_t flags)
{
	struct vfu_dma_map m = {
		.argsz = sizeof(m), .flags = flags, .offset = offset, .addr = iova, .size = size};

	return srv_call(t, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, fd >= 0 ? 1 : 0);
}

int srv_dma_unmap(struct test_srv *t, uint64_t iova, uint64_t size, uint32_t flags)
{
	struct vfu_dma_unmap u = {.argsz = sizeof(u), .flags = flags, .addr = iova, .size = size};

	return srv_call(t, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0);
}

void srv_start_kind(struct test_srv *t, enum dt_device_kind kind)
{
	struct dt_vfu_server_opts o;

	srv_default_opts(t, &o);
	o.dma_kind = kind;
	srv_start(t, &o);
	srv_negotiate(t);
}

int srv_logging_start(struct test_srv *t, const struct vfu_dma_logging_range *r, uint32_t n,
		      uint64_t page_size)
{
	uint8_t buf[16 + 16 * 8];
	struct vfu_dma_logging_control ctl = {.page_size = page_size, .num_ranges = n};

	assert_true(n <= 8);
	memcpy(buf, &ctl, sizeof(ctl));
	if (n)
		memcpy(buf + sizeof(ctl), r, n * sizeof(*r));
	return srv_feature(t, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START,
			   (uint32_t)(8 + sizeof(ctl) + n * sizeof(*r)), buf,
			   sizeof(ctl) + n * sizeof(*r));
}

int srv_report(struct test_srv *t, uint64_t iova, uint64_t length, uint64_t page_size,
	       const uint8_t **bitmap)
{
	struct vfu_dma_logging_report rep = {
		.iova = iova, .length = length, .page_size = page_size};
	uint64_t nbits = page_size ? length / page_size : 0, bytes = (nbits + 63) / 64 * 8;
	int r = srv_feature(t, VFU_FEATURE_GET | VFU_FEATURE_DMA_LOGGING_REPORT,
			    (uint32_t)(8 + 24 + bytes), &rep, sizeof(rep));

	if (r)
		return r;
	assert_int_equal(t->reply.len, 8 + 24 + bytes);
	assert_memory_equal(t->reply.payload + 8, &rep, sizeof(rep));
	*bitmap = t->reply.payload + 8 + 24;
	return 0;
}

bool bm_bit(const uint8_t *bm, uint64_t n)
{
	return bm[n / 8] & (1u << (n % 8));
}

uint64_t srv_mappings(struct test_srv *t)
{
	struct dt_iommu_stats st;

	assert_int_equal(dt_iommu_get_stats(dt_vfu_server_iommu(t->s), &st), 0);
	return st.mappings;
}

int memfd_new(uint64_t size, void **va)
{
	int fd = memfd_create("vfu-test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (va) {
		*va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		assert_true(*va != MAP_FAILED);
	}
	return fd;
}
