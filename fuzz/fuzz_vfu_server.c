/* SPDX-License-Identifier: MIT */
/*
 * fuzz/fuzz_vfu_server.c - libFuzzer target: the input is a sequence of vfio-user messages
 * handed to the server's message handling (vfu_server_dispatch), as a client would send
 * them, without the socket in between.
 *
 * Each input gets a fresh server (a test device with three small regions, two IRQ types,
 * migration with PRE_COPY, an EMULATED DMA device) on one end of a socketpair nobody
 * reads: dispatch builds replies in memory and never sends. The input is read as frames:
 * one selector byte (bit 0: attach a 64 KiB memfd, bit 1: an eventfd, bit 2: the memfd
 * twice), then a 16-byte header whose msg_size gives the payload length (clipped to what is
 * left); each payload is copied to a heap buffer of exactly its length, so any read past it
 * is an ASan report. A handler that asks to close the connection ends the input. Every
 * input ends with the client-lost cleanup (mappings, logging, IRQs, migration state walk)
 * and dt_vfu_server_free, so leaks of any path are reported too.
 *
 * An input whose first byte is 0xff (0xfe: with the memfd attached to the first byte) is
 * instead a raw byte stream written to the server's socket, which is then closed for
 * writing; dt_vfu_server_process() runs until the connection ends, so the receive path
 * (vfu_msg_recv: sizes, descriptors, truncation) and process() itself are fuzzed too. The
 * server's end is non-blocking, so a reply that does not fit in the socket buffer ends the
 * connection instead of blocking.
 *
 * The device's region write callback turns its data into dt_dma_log calls (iova, length
 * pairs), so that DMA logging reports and unmap bitmaps have real bits to convert. Message
 * mappings are never reached (that would wait for a client's DMA reply).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <dirtytrack/vfio_user.h>

#include "vfio_user/server_impl.h"

#define MEMFD_SIZE (64 * 1024)
#define REGION_SZ  256
#define MAX_MSGS   64

struct fuzz_dev {
	uint8_t region[3][REGION_SZ];
	struct dt_vfu_server *s;
	uint8_t mig[512];
	uint64_t mig_pos;
};

static int64_t dev_region_rw(void *opaque, uint32_t index, uint64_t offset, void *buf,
			     uint32_t count, bool write)
{
	struct fuzz_dev *d = opaque;

	if (index >= 3 || offset > REGION_SZ || count > REGION_SZ - offset)
		__builtin_trap(); /* the server promised to check this */
	if (!write) {
		memcpy(buf, d->region[index] + offset, count);
		return count;
	}
	memcpy(d->region[index] + offset, buf, count);
	/* Pairs of (iova, length) become device writes. */
	for (uint32_t i = 0; i + 16 <= count; i += 16) {
		uint64_t iova, len;

		memcpy(&iova, (uint8_t *)buf + i, 8);
		memcpy(&len, (uint8_t *)buf + i + 8, 8);
		dt_dma_log(dt_vfu_server_device(d->s), iova, len & 0xfffff);
	}
	return count;
}

static int dev_reset(void *opaque)
{
	return 0;
}

static int dev_mig_state(void *opaque, uint32_t from, uint32_t to)
{
	struct fuzz_dev *d = opaque;

	d->mig_pos = 0;
	/* Refuse one arc now and then, as a real device may. */
	return d->region[0][0] == 0xee && to == 3 ? -EIO : 0;
}

static int64_t dev_mig_read(void *opaque, void *buf, uint64_t size)
{
	struct fuzz_dev *d = opaque;
	uint64_t n = sizeof(d->mig) - d->mig_pos;

	if (n > size)
		n = size;
	memcpy(buf, d->mig + d->mig_pos, n);
	d->mig_pos += n;
	return (int64_t)n;
}

static int64_t dev_mig_write(void *opaque, const void *buf, uint64_t size)
{
	struct fuzz_dev *d = opaque;
	uint64_t n = size < sizeof(d->mig) ? size : sizeof(d->mig);

	memcpy(d->mig, buf, n);
	return (int64_t)size;
}

static int dev_mig_pending(void *opaque, uint64_t *bytes)
{
	struct fuzz_dev *d = opaque;

	*bytes = sizeof(d->mig) - d->mig_pos;
	return 0;
}

static const struct dt_vfu_server_ops ops = {
	.region_rw = dev_region_rw,
	.reset = dev_reset,
	.mig_state = dev_mig_state,
	.mig_read = dev_mig_read,
	.mig_write = dev_mig_write,
	.mig_pending = dev_mig_pending,
};

static const struct dt_vfu_region regions[3] = {
	{.size = REGION_SZ, .flags = DT_VFU_REGION_READ | DT_VFU_REGION_WRITE, .fd = -1},
	{.size = REGION_SZ, .flags = DT_VFU_REGION_READ, .fd = -1},
	{.size = REGION_SZ, .flags = DT_VFU_REGION_WRITE, .fd = -1},
};

static const struct dt_vfu_irq irqs[2] = {{.count = 1, .flags = 1}, {.count = 4, .flags = 3}};

static int memfd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	memfd = memfd_create("fuzz-vfu", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, MEMFD_SIZE))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_dev dev;
	struct dt_vfu_server_opts o = {
		.size = sizeof(o),
		.device_flags = DT_VFU_DEVICE_RESET | DT_VFU_DEVICE_PCI,
		.num_regions = 3,
		.regions = regions,
		.num_irqs = 2,
		.irqs = irqs,
		.migration_flags = VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY,
		.ops = &ops,
		.opaque = &dev,
		.dma_kind = DT_DEVICE_EMULATED,
		.max_data_xfer_size = 65536,
		.max_bitmap_size = 65536,
		.max_dma_maps = 8,
	};
	struct dt_vfu_server *s;
	int sp[2];

	memset(&dev, 0, sizeof(dev));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
		abort();
	o.fd = sp[1];
	s = dt_vfu_server_new(&o);
	if (!s)
		abort();
	dev.s = s;
	if (size && data[0] >= 0xfe) {
		/* Stream mode. */
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = {.iov_base = (void *)(data + 1), .iov_len = size - 1};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

		if (data[0] == 0xfe && size > 1)
			vfu_put_fds(&mh, ctl.b, sizeof(ctl.b), &memfd, 1);
		fcntl(sp[0], F_SETFL, O_NONBLOCK);
		fcntl(sp[1], F_SETFL, O_NONBLOCK);
		if (size > 1)
			(void)sendmsg(sp[0], &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		shutdown(sp[0], SHUT_WR);
		while (dt_vfu_server_process(s) == 0)
			;
		size = 0;
	}
	for (int n = 0; n < MAX_MSGS && size >= 17; n++) {
		uint8_t sel = data[0];
		struct vfu_msg msg = {0};
		uint32_t len;
		int r;

		memcpy(&msg.hdr, data + 1, sizeof(msg.hdr));
		data += 17;
		size -= 17;
		if (msg.hdr.msg_size < VFU_HDR_SIZE)
			break; /* vfu_msg_recv refuses it before any handler */
		len = msg.hdr.msg_size - VFU_HDR_SIZE;
		if (len > size)
			len = (uint32_t)size;
		if (len > 65536 + VFU_SRV_MSG_SLACK)
			len = 65536 + VFU_SRV_MSG_SLACK;
		msg.hdr.msg_size = len + VFU_HDR_SIZE;
		msg.len = len;
		msg.payload = malloc(len ? len : 1);
		if (!msg.payload)
			abort();
		memcpy(msg.payload, data, len);
		data += len;
		size -= len;
		if (sel & 1)
			msg.fds[msg.nfds++] = dup(memfd);
		if (sel & 2)
			msg.fds[msg.nfds++] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (sel & 4)
			msg.fds[msg.nfds++] = dup(memfd);
		/* vfu_msg_recv would refuse these before dispatch. */
		if (msg.nfds > s->max_fds)
			r = -EBADMSG;
		else
			r = vfu_server_dispatch(s, &msg);
		vfu_msg_close_fds(&msg);
		free(msg.payload);
		s->out_nfds = 0;
		if (r < 0 && (-r & VFU_CLOSE))
			break;
	}
	vfu_server_drop_client(s, true);
	dt_vfu_server_free(s);
	close(sp[0]);
	return 0;
}
