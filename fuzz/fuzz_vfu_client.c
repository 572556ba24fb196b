/* SPDX-License-Identifier: MIT */
/*
 * fuzz/fuzz_vfu_client.c - libFuzzer target: the input is everything a vfio-user server
 * sends the client after a valid handshake: replies (and server commands) for a fixed
 * sequence of client calls that touches every reply the client parses.
 *
 * The handshake replies (VERSION, DEVICE_GET_INFO, the MIGRATION, DMA logging and
 * MIG_DATA_SIZE probes: ids 0 to 4) are written into one end of a socketpair, then the
 * input, then the write side is shut down; the client (on the other end) runs: DMA_MAP
 * without fd (id 5), DMA_LOGGING_START (6), a REPORT (7), a sync (8), REGION_READ (9),
 * REGION_INFO (10), IRQ_INFO (11), MIG_DEVICE_STATE GET (12), the walk to STOP_COPY (13,
 * 14), the device save (MIG_DATA_READ from 15), an unmap with the dirty bitmap, and
 * dt_vfu_client_process for what is left (DMA_READ / DMA_WRITE commands). Whatever the
 * bytes, every call must return (a value, not a crash, not a hang: the stream ends) and the
 * client must free everything. Seeds: python3 fuzz/gen_vfu_client_seeds.py
 * fuzz/corpus/vfu_client.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dirtytrack/vfio_user.h>

#include "vfio_user/msg.h"

#define IOVA	  0x100000ull
#define NPAGE	  16ull
#define MAX_INPUT (64 * 1024)

static uint8_t *guest;

static void put_reply(int sock, uint16_t id, uint16_t cmd, const void *payload, size_t len)
{
	struct iovec iov = {(void *)payload, len};

	vfu_msg_sendv(sock, id, cmd, VFU_F_TYPE_REPLY, 0, &iov, 1, NULL, 0);
}

static void handshake(int sock)
{
	struct vfu_caps caps;
	struct vfu_device_info di = {.argsz = 16, .flags = 3, .num_regions = 2, .num_irqs = 1};
	uint8_t mig[16] = {0}, probe[8] = {0};
	uint64_t flags = VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY;
	size_t len;
	void *v;

	vfu_caps_default(&caps);
	caps.migration = true;
	caps.mig_pgsize = 4096;
	caps.mig_max_bitmap_size = 8; /* 64 pages a request: the client splits */
	v = vfu_version_build(0, 1, &caps, &len);
	put_reply(sock, 0, VFU_CMD_VERSION, v, len);
	free(v);
	put_reply(sock, 1, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di));
	memcpy(mig + 8, &flags, 8);
	put_reply(sock, 2, VFU_CMD_DEVICE_FEATURE, mig, sizeof(mig));
	put_reply(sock, 3, VFU_CMD_DEVICE_FEATURE, probe, sizeof(probe));
	put_reply(sock, 4, VFU_CMD_DEVICE_FEATURE, probe, sizeof(probe));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dt_vfu_client_opts opts = {.size = sizeof(opts),
					  .timeout_ms = 2000,
					  .max_data_xfer_size = 4096,
					  .max_bitmap_size = 4096};
	int sp[2], big = 4 << 20;
	struct dt_vfu_client *c;
	struct dt_migrate_device dev;
	struct dt_vfu_region_info ri;
	struct dt_vfu_irq_info ii;
	enum dt_vfu_mig_state st;
	uint64_t bm[4] = {0};
	uint8_t buf[256], save[8192];

	if (size > MAX_INPUT)
		return 0;
	if (!guest) {
		guest = mmap(NULL, NPAGE * 4096, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (guest == MAP_FAILED)
			abort();
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
		abort();
	/* Room for the whole stream one way and every request (DMA_READ replies included)
	 * the other, so that nobody ever blocks. */
	setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sp[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sp[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	handshake(sp[1]);
	if (size && write(sp[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sp[1], SHUT_WR);
	c = dt_vfu_client_from_fd(sp[0], &opts);
	if (!c)
		abort(); /* the handshake is valid */
	dt_vfu_client_dma_map(c, IOVA, NPAGE * 4096, -1, 0, guest, PROT_READ | PROT_WRITE);
	dt_vfu_client_dma_logging_start(c, NULL, 0, NULL);
	dt_vfu_client_report(c, IOVA, NPAGE * 4096, 4096, bm, sizeof(bm));
	dt_vfu_client_sync(c);
	dt_vfu_client_region_read(c, 0, 0, buf, 16);
	if (!dt_vfu_client_region_info(c, 0, &ri) && ri.fd >= 0)
		close(ri.fd);
	dt_vfu_client_irq_info(c, 0, &ii);
	dt_vfu_client_mig_get_state(c, &st);
	if (!dt_vfu_client_migrate_device(c, "fuzz", &dev)) {
		dt_vfu_client_mig_set_state(c, DT_VFU_MIG_STOP_COPY);
		dev.save(dev.opaque, save, sizeof(save));
		dev.pending(dev.opaque);
	}
	dt_vfu_client_dma_unmap(c, IOVA, NPAGE * 4096, 4096, bm, sizeof(bm));
	dt_vfu_client_process(c);
	dt_vfu_client_free(c);
	close(sp[1]);
	return 0;
}
