/* SPDX-License-Identifier: MIT */
/*
 * tests/vfio_user/test_vfu_client_fake.c - the vfio-user client against a scripted fake
 * server on a socketpair: every reply the client parses, made wrong in each way a server can
 * get it wrong (payload too short or too long, a wrong id or command, a size in the header
 * below the header or past any limit, a message cut short, the socket closed, no reply at
 * all, too many descriptors, fields that lie about the request), must give an error and no
 * crash, and break the connection when the stream can no longer be trusted. Also, against
 * the same fake: REPORT split into requests of the negotiated bitmap size (every bit right,
 * the requests tile the range), the sync replaying a report into the mirror, the arcs the
 * client walks through the migration state machine, migration data read in chunks to a short
 * read and written back, and the server's DMA_READ / DMA_WRITE requests served while the
 * client waits for a reply (bad ones answered with an error, never a hang).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <dirtytrack/dirtytrack.h>
#include <dirtytrack/vfio_user_client.h>

#include "core/alloc.h"
#include "../seed.h"
#include "vfio_user/msg.h"

#define PAGE  4096ull
#define IOVA  0x100000ull
#define NPAGE 64ull

enum fault {
	F_NONE,
	F_SHORT,      /* payload one byte short */
	F_LONG,	      /* payload 8 bytes too long */
	F_WRONG_ID,   /* reply id + 1 */
	F_WRONG_CMD,  /* reply of another command */
	F_TINY_SIZE,  /* msg_size 8 */
	F_HUGE_SIZE,  /* msg_size 2 GiB */
	F_TRUNCATED,  /* header says more than comes, then close */
	F_CLOSE,      /* close instead of replying */
	F_SILENT,     /* no reply */
	F_FDS,	      /* a correct reply carrying 3 descriptors */
	F_LIE,	      /* right length, a field inside that contradicts the request */
	F_ERROR,      /* error reply EACCES */
	F_ERROR_ZERO, /* error flag with errno 0 */
	F_COMMAND,    /* first a REGION_READ command from the "server", then the reply */
	F_NFAULTS,
};

static const char *const fault_names[F_NFAULTS] = {
	"none",	 "short",  "long", "wrong id", "wrong cmd", "tiny size", "huge size", "truncated",
	"close", "silent", "fds",  "lie",      "error",	    "error 0",	 "command",
};

struct fake {
	int sock;
	pthread_t thread;
	/* the fault: applied to the next reply of command cmd (and feature, for
	 * DEVICE_FEATURE; 0 = any) */
	_Atomic int fault;
	uint16_t fault_cmd;
	uint32_t fault_feature;
	/* configuration */
	uint64_t max_bitmap_size; /* advertised; 0: none */
	uint64_t max_xfer;	  /* advertised */
	/* what it saw */
	unsigned reports;
	uint64_t report_next; /* the iova the next REPORT should start at (tiling check) */
	bool report_gap;
	uint32_t state;
	uint32_t arcs[16];
	unsigned narcs;
	uint8_t mig_out[100000]; /* state it gives in STOP_COPY */
	size_t mig_out_len, mig_out_pos;
	uint8_t mig_in[100000];
	size_t mig_in_len;
	/* DMA requests it sends to the client before replying to REGION_READ */
	bool dma_probe;
	int dma_results[4];
	uint8_t dma_read_back[16];
	/* random corruption of replies: probability in 1/256, and the generator */
	unsigned mutate;
	uint64_t mut_rng;
	/* replies to commands the test thread sent while the client was idle */
	_Atomic unsigned idle_replies;
	int idle_reply_error;
};

/* Page p (in units of the report page) is dirty in the fake device's log. */
static bool fake_dirty(uint64_t p)
{
	return ((p * 0x9e3779b97f4a7c15ull) >> 61) == 0 || p % 97 == 3;
}

static void reply(struct fake *f, const struct vfu_msg *m, const void *payload, size_t len,
		  int cmd_feature)
{
	struct iovec iov = {(void *)payload, len};
	enum fault fault = F_NONE;
	uint32_t feat =
		m->hdr.cmd == VFU_CMD_DEVICE_FEATURE && m->len >= 8
			? ((const struct vfu_device_feature *)(const void *)m->payload)->flags &
				  VFU_FEATURE_MASK
			: 0;

	(void)cmd_feature;
	if (f->mutate && rnd(&f->mut_rng) % 256 < f->mutate) {
		/* Flip 1 to 3 random bytes of the reply, msg_size excepted (a bigger size only
		 * makes the client wait for bytes that never come: the timeout case). */
		uint8_t *raw = malloc(VFU_HDR_SIZE + len + 1);
		struct vfu_hdr h = {.msg_id = m->hdr.msg_id,
				    .cmd = m->hdr.cmd,
				    .msg_size = (uint32_t)(VFU_HDR_SIZE + len),
				    .flags = VFU_F_TYPE_REPLY};
		unsigned flips = 1 + rnd(&f->mut_rng) % 3;

		memcpy(raw, &h, sizeof(h));
		if (len)
			memcpy(raw + VFU_HDR_SIZE, payload, len);
		for (unsigned i = 0; i < flips; i++) {
			uint64_t r = rnd(&f->mut_rng);
			size_t at = r % (VFU_HDR_SIZE + len);

			if (at >= 4 && at < 8)
				continue;
			raw[at] ^= (uint8_t)(1u << ((r >> 32) % 8)) | (uint8_t)(r >> 40 & 0x80);
		}
		if (write(f->sock, raw, VFU_HDR_SIZE + len) < 0)
			f->mutate = 0;
		free(raw);
		return;
	}
	if (m->hdr.cmd == f->fault_cmd && (!f->fault_feature || f->fault_feature == feat))
		fault = atomic_exchange(&f->fault, F_NONE);
	switch (fault) {
	case F_NONE:
		break;
	case F_SHORT:
		iov.iov_len = len ? len - 1 : 0;
		if (!len) { /* nothing to cut: make it long instead */
			static const uint8_t junk[8];

			iov = (struct iovec){(void *)junk, 8};
		}
		break;
	case F_LONG: {
		uint8_t *big = calloc(1, len + 8);

		memcpy(big, payload, len);
		iov = (struct iovec){big, len + 8};
		vfu_msg_sendv(f->sock, m->hdr.msg_id, m->hdr.cmd, VFU_F_TYPE_REPLY, 0, &iov, 1,
			      NULL, 0);
		free(big);
		return;
	}
	case F_WRONG_ID:
		vfu_msg_sendv(f->sock, m->hdr.msg_id + 1, m->hdr.cmd, VFU_F_TYPE_REPLY, 0, &iov, 1,
			      NULL, 0);
		return;
	case F_WRONG_CMD:
		vfu_msg_sendv(f->sock, m->hdr.msg_id, m->hdr.cmd == 4 ? 5 : 4, VFU_F_TYPE_REPLY, 0,
			      &iov, 1, NULL, 0);
		return;
	case F_TINY_SIZE:
	case F_HUGE_SIZE:
	case F_TRUNCATED: {
		struct vfu_hdr h = {.msg_id = m->hdr.msg_id,
				    .cmd = m->hdr.cmd,
				    .flags = VFU_F_TYPE_REPLY,
				    .msg_size = fault == F_TINY_SIZE   ? 8
						: fault == F_HUGE_SIZE ? 0x80000000u
								       : (uint32_t)(16 + len + 64)};

		assert_int_equal(write(f->sock, &h, sizeof(h)), (int)sizeof(h));
		if (fault == F_TRUNCATED && len)
			assert_int_equal(write(f->sock, payload, len), (int)len);
		shutdown(f->sock, SHUT_RDWR);
		return;
	}
	case F_CLOSE:
		shutdown(f->sock, SHUT_RDWR);
		return;
	case F_SILENT:
		return;
	case F_FDS: {
		int fds[3] = {0, 1, 2};

		vfu_reply(f->sock, &m->hdr, payload, len, fds, 3);
		return;
	}
	case F_LIE:
		break; /* the handler changed the payload already (see lie()) */
	case F_ERROR:
		vfu_reply_error(f->sock, &m->hdr, EACCES);
		return;
	case F_ERROR_ZERO:
		vfu_msg_sendv(f->sock, m->hdr.msg_id, m->hdr.cmd, VFU_F_TYPE_REPLY | VFU_F_ERROR, 0,
			      NULL, 0, NULL, 0);
		return;
	case F_COMMAND: {
		struct vfu_region_access ra = {.offset = 0, .region = 0, .count = 4};
		uint8_t buf[VFU_HDR_SIZE + 64];
		struct vfu_msg r;

		vfu_msg_send(f->sock, 77, VFU_CMD_REGION_READ, VFU_F_TYPE_COMMAND, &ra, sizeof(ra),
			     NULL, 0);
		assert_int_equal(vfu_msg_recv(f->sock, buf, sizeof(buf), 0, &r), 0);
		assert_true(r.hdr.flags & VFU_F_ERROR); /* refused, not ignored */
		assert_int_equal(r.hdr.msg_id, 77);
		break;
	}
	default:
		break;
	}
	vfu_msg_sendv(f->sock, m->hdr.msg_id, m->hdr.cmd, VFU_F_TYPE_REPLY, 0, &iov, 1, NULL, 0);
}

/* F_LIE armed for this message: the handler should corrupt a field. */
static bool lie(struct fake *f, const struct vfu_msg *m)
{
	uint32_t feat =
		m->hdr.cmd == VFU_CMD_DEVICE_FEATURE
			? ((const struct vfu_device_feature *)(const void *)m->payload)->flags &
				  VFU_FEATURE_MASK
			: 0;

	return atomic_load(&f->fault) == F_LIE && m->hdr.cmd == f->fault_cmd &&
	       (!f->fault_feature || f->fault_feature == feat);
}

/* Send the client a DMA request and check its reply: returns the error (0 = served). */
static int dma_request(struct fake *f, uint16_t cmd, uint64_t addr, uint64_t count,
		       const void *data, size_t datalen, void *out)
{
	struct vfu_dma_access da = {.addr = addr, .count = count};
	struct iovec iov[2] = {{&da, sizeof(da)}, {(void *)data, datalen}};
	static uint8_t buf[VFU_HDR_SIZE + 4096];
	struct vfu_msg r;

	assert_int_equal(vfu_msg_sendv(f->sock, 500, cmd, VFU_F_TYPE_COMMAND, 0, iov, 2, NULL, 0),
			 0);
	assert_int_equal(vfu_msg_recv(f->sock, buf, sizeof(buf), 0, &r), 0);
	assert_int_equal(r.hdr.msg_id, 500);
	if (r.hdr.flags & VFU_F_ERROR)
		return (int)r.hdr.error;
	if (cmd == VFU_CMD_DMA_READ) {
		assert_int_equal(r.len, sizeof(da) + count);
		memcpy(out, r.payload + sizeof(da), count);
	} else {
		assert_int_equal(r.len, sizeof(da));
	}
	return 0;
}

static void handle_feature(struct fake *f, struct vfu_msg *m)
{
	const struct vfu_device_feature *fh = (const void *)m->payload;
	uint32_t feat = fh->flags & VFU_FEATURE_MASK;
	uint8_t *out = calloc(1, m->len + 8 + (1u << 20));
	size_t len = m->len;

	memcpy(out, m->payload, m->len);
	if (fh->flags & VFU_FEATURE_PROBE) {
		if (feat == VFU_FEATURE_MIG_DATA_SIZE)
			vfu_reply_error(f->sock, &m->hdr, ENOTTY);
		else
			reply(f, m, out, len, 0);
		free(out);
		return;
	}
	switch (feat) {
	case VFU_FEATURE_MIGRATION: {
		uint64_t flags = VFU_MIGRATION_STOP_COPY | VFU_MIGRATION_PRE_COPY;

		memcpy(out + 8, &flags, 8);
		len = 16;
		break;
	}
	case VFU_FEATURE_MIG_DEVICE_STATE:
		if (fh->flags & VFU_FEATURE_SET) {
			uint32_t s;

			memcpy(&s, m->payload + 8, 4);
			if (f->narcs < 16)
				f->arcs[f->narcs++] = s;
			f->state = s;
			if (s == 3 || s == 6)
				f->mig_out_pos = 0;
		} else {
			uint32_t s = lie(f, m) ? 99 : f->state;

			memcpy(out + 8, &s, 4);
			len = 16;
		}
		break;
	case VFU_FEATURE_DMA_LOGGING_START:
		if (lie(f, m)) {
			uint64_t bad = 12345;

			memcpy(out + 8, &bad, 8);
		}
		break;
	case VFU_FEATURE_DMA_LOGGING_REPORT: {
		struct vfu_dma_logging_report rep;
		uint64_t nbits, base;

		memcpy(&rep, m->payload + 8, sizeof(rep));
		nbits = rep.length / rep.page_size;
		base = rep.iova / rep.page_size;
		f->reports++;
		if (f->report_next && rep.iova != f->report_next)
			f->report_gap = true;
		f->report_next = rep.iova + rep.length;
		if (f->max_bitmap_size && (nbits + 63) / 64 * 8 > f->max_bitmap_size)
			f->report_gap = true; /* the client passed our limit */
		for (uint64_t b = 0; b < nbits; b++)
			if (fake_dirty(base + b))
				out[32 + b / 8] |= (uint8_t)(1u << (b % 8));
		len = 32 + (nbits + 63) / 64 * 8;
		if (lie(f, m))
			rep.length += rep.page_size;
		memcpy(out + 8, &rep, sizeof(rep));
		break;
	}
	default:
		break;
	}
	reply(f, m, out, len, 0);
	free(out);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	size_t bufsize = VFU_HDR_SIZE + (2u << 20);
	uint8_t *buf = malloc(bufsize);

	for (;;) {
		struct vfu_msg m;
		int ret = vfu_msg_recv(f->sock, buf, bufsize, VFU_MAX_FDS, &m);

		if (ret)
			break;
		if (vfu_hdr_is_reply(&m.hdr)) { /* to a command sent from the test thread */
			f->idle_reply_error = m.hdr.flags & VFU_F_ERROR ? (int)m.hdr.error : 0;
			atomic_fetch_add(&f->idle_replies, 1);
			vfu_msg_close_fds(&m);
			continue;
		}
		switch (m.hdr.cmd) {
		case VFU_CMD_VERSION: {
			struct vfu_caps caps;
			size_t len;
			void *p;

			vfu_caps_default(&caps);
			caps.max_data_xfer_size =
				f->max_xfer ? f->max_xfer : caps.max_data_xfer_size;
			if (f->max_bitmap_size) {
				caps.migration = true;
				caps.mig_pgsize = PAGE;
				caps.mig_max_bitmap_size = f->max_bitmap_size;
			}
			p = vfu_version_build(0, 1, &caps, &len);
			reply(f, &m, p, len, 0);
			free(p);
			break;
		}
		case VFU_CMD_DEVICE_GET_INFO: {
			struct vfu_device_info di = {.argsz = 16, .flags = 3, .num_regions = 2};

			reply(f, &m, &di, sizeof(di), 0);
			break;
		}
		case VFU_CMD_DEVICE_GET_REGION_INFO: {
			struct vfu_region_info ri;

			memcpy(&ri, m.payload, sizeof(ri));
			ri.size = 4096;
			ri.flags = 3;
			if (lie(f, &m))
				ri.index++;
			reply(f, &m, &ri, sizeof(ri), 0);
			break;
		}
		case VFU_CMD_REGION_READ: {
			struct vfu_region_access ra;
			uint8_t out[16 + 4096];

			memcpy(&ra, m.payload, sizeof(ra));
			if (f->dma_probe) {
				static const uint8_t pattern[16] = "0123456789abcdef";
				uint8_t big[4096 + 16] = {0};

				f->dma_probe = false;
				/* a good write, a good read, then bad ones */
				f->dma_results[0] =
					dma_request(f, VFU_CMD_DMA_WRITE, IOVA + 5 * PAGE - 8, 16,
						    pattern, 16, NULL);
				f->dma_results[1] =
					dma_request(f, VFU_CMD_DMA_READ, IOVA + 5 * PAGE - 8, 16,
						    NULL, 0, f->dma_read_back);
				f->dma_results[2] =
					dma_request(f, VFU_CMD_DMA_WRITE, IOVA + NPAGE * PAGE - 8,
						    16, pattern, 16, NULL); /* past the mapping */
				/* a count that lies about the data that follows */
				f->dma_results[3] = dma_request(f, VFU_CMD_DMA_WRITE, IOVA,
								4096 + 16, big, 4096, NULL);
			}
			memcpy(out, &ra, sizeof(ra));
			for (uint32_t i = 0; i < ra.count && i < 4096; i++)
				out[16 + i] = (uint8_t)(ra.offset + i);
			if (lie(f, &m))
				((struct vfu_region_access *)(void *)out)->count--;
			reply(f, &m, out, 16 + (ra.count < 4096 ? ra.count : 4096), 0);
			break;
		}
		case VFU_CMD_DMA_MAP:
			vfu_msg_close_fds(&m);
			reply(f, &m, NULL, 0, 0);
			break;
		case VFU_CMD_DMA_UNMAP: {
			struct vfu_dma_unmap u;
			struct vfu_bitmap b = {0};
			uint8_t *out = calloc(1, m.len + (1u << 16));
			size_t len = sizeof(u);

			memcpy(&u, m.payload, sizeof(u));
			if (u.flags & VFU_DMA_UNMAP_F_GET_DIRTY_BITMAP) {
				memcpy(&b, m.payload + sizeof(u), sizeof(b));
				for (uint64_t p = 0; p < u.size / b.pgsize; p++)
					if (fake_dirty(u.addr / b.pgsize + p))
						out[40 + p / 8] |= (uint8_t)(1u << (p % 8));
				len = 40 + b.size;
			}
			if (lie(f, &m))
				u.addr += PAGE;
			memcpy(out, &u, sizeof(u));
			memcpy(out + sizeof(u), &b, sizeof(b));
			reply(f, &m, out, len, 0);
			free(out);
			break;
		}
		case VFU_CMD_DEVICE_FEATURE:
			handle_feature(f, &m);
			break;
		case VFU_CMD_MIG_DATA_READ: {
			struct vfu_mig_data md;
			uint8_t *out;
			size_t n;

			memcpy(&md, m.payload, sizeof(md));
			n = f->mig_out_len - f->mig_out_pos;
			if (n > md.size)
				n = md.size;
			out = calloc(1, 8 + n + 8);
			memcpy(out + 8, f->mig_out + f->mig_out_pos, n);
			f->mig_out_pos += n;
			md.size = (uint32_t)n;
			if (lie(f, &m))
				md.size += 4;
			md.argsz = (uint32_t)(8 + n);
			memcpy(out, &md, sizeof(md));
			reply(f, &m, out, 8 + n, 0);
			free(out);
			break;
		}
		case VFU_CMD_MIG_DATA_WRITE: {
			struct vfu_mig_data md;

			memcpy(&md, m.payload, sizeof(md));
			assert_int_equal(m.len, 8 + md.size);
			assert_true(f->mig_in_len + md.size <= sizeof(f->mig_in));
			memcpy(f->mig_in + f->mig_in_len, m.payload + 8, md.size);
			f->mig_in_len += md.size;
			reply(f, &m, NULL, 0, 0);
			break;
		}
		default:
			vfu_reply_error(f->sock, &m.hdr, ENOTSUP);
			break;
		}
		vfu_msg_close_fds(&m);
	}
	free(buf);
	return NULL;
}

static struct dt_vfu_client *fake_start(struct fake *f, const struct dt_vfu_client_opts *opts)
{
	int sp[2];
	struct dt_vfu_client *c;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	f->sock = sp[1];
	f->state = 2;
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	c = dt_vfu_client_from_fd(sp[0], opts);
	assert_non_null(c);
	return c;
}

static void fake_stop(struct fake *f, struct dt_vfu_client *c)
{
	dt_vfu_client_free(c); /* closes our end: the fake's recv ends */
	pthread_join(f->thread, NULL);
	close(f->sock);
}

static uint8_t *guest_mem(void)
{
	uint8_t *mem = mmap(NULL, NPAGE * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);

	assert_true(mem != MAP_FAILED);
	return mem;
}

/* ---- malformed replies ---------------------------------------------------------------------- */

enum op {
	OP_REGION_READ,
	OP_REGION_INFO,
	OP_REPORT,
	OP_UNMAP_BITMAP,
	OP_LOG_START,
	OP_MIG_STATE,
	OP_MIG_SAVE,
	OP_NOPS,
};

static const char *const op_names[OP_NOPS] = {"region read",  "region info",   "report",
					      "unmap+bitmap", "logging start", "mig get state",
					      "mig save"};

/* Prepare the client for op (no fault yet), arm the fault, run op: its result. */
static int run_op(struct fake *f, struct dt_vfu_client *c, uint8_t *mem, enum op op,
		  enum fault fault)
{
	static const uint16_t cmds[OP_NOPS] = {
		VFU_CMD_REGION_READ,   VFU_CMD_DEVICE_GET_REGION_INFO, VFU_CMD_DEVICE_FEATURE,
		VFU_CMD_DMA_UNMAP,     VFU_CMD_DEVICE_FEATURE,	       VFU_CMD_DEVICE_FEATURE,
		VFU_CMD_MIG_DATA_READ,
	};
	static const uint32_t feats[OP_NOPS] = {0,
						0,
						VFU_FEATURE_DMA_LOGGING_REPORT,
						0,
						VFU_FEATURE_DMA_LOGGING_START,
						VFU_FEATURE_MIG_DEVICE_STATE,
						0};
	struct dt_migrate_device dev;
	uint64_t bitmap[2] = {0}, pgsize = 0;
	struct dt_vfu_region_info ri;
	enum dt_vfu_mig_state st;
	uint8_t buf[64], save[4096];

	assert_int_equal(
		dt_vfu_client_dma_map(c, IOVA, NPAGE * PAGE, -1, 0, mem, PROT_READ | PROT_WRITE),
		0);
	if (op == OP_REPORT || op == OP_UNMAP_BITMAP)
		assert_int_equal(dt_vfu_client_dma_logging_start(c, NULL, 0, &pgsize), 0);
	if (op == OP_MIG_SAVE) {
		f->mig_out_len = 3000;
		assert_int_equal(dt_vfu_client_migrate_device(c, "dev", &dev), 0);
		assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_STOP_COPY), 0);
	}
	f->fault_cmd = cmds[op];
	f->fault_feature = feats[op];
	atomic_store(&f->fault, fault);
	switch (op) {
	case OP_REGION_READ:
		return dt_vfu_client_region_read(c, 0, 0, buf, sizeof(buf));
	case OP_REGION_INFO:
		return dt_vfu_client_region_info(c, 1, &ri);
	case OP_REPORT:
		return (int)dt_vfu_client_report(c, IOVA, NPAGE * PAGE, PAGE, bitmap,
						 sizeof(bitmap));
	case OP_UNMAP_BITMAP:
		return dt_vfu_client_dma_unmap(c, IOVA, NPAGE * PAGE, PAGE, bitmap, sizeof(bitmap));
	case OP_LOG_START:
		return dt_vfu_client_dma_logging_start(c, NULL, 0, &pgsize);
	case OP_MIG_STATE:
		return dt_vfu_client_mig_get_state(c, &st);
	case OP_MIG_SAVE:
		return (int)dev.save(dev.opaque, save, sizeof(save));
	default:
		break;
	}
	return 0;
}

static void test_malformed_replies(void **state)
{
	/* The timeout is paid once per op for the "silent" fault; long enough for a loaded
	 * machine to finish the handshake. */
	struct dt_vfu_client_opts opts = {
		.size = sizeof(opts), .timeout_ms = 1500, .max_msg_fds = 1};
	uint8_t *mem = guest_mem();

	for (int op = 0; op < OP_NOPS; op++) {
		for (int fault = F_NONE; fault < F_NFAULTS; fault++) {
			struct fake *f = calloc(1, sizeof(*f));
			struct dt_vfu_client *c = fake_start(f, &opts);
			int ret = run_op(f, c, mem, op, fault), again;
			uint8_t b[8];
			bool broken;

			if (fault == F_NONE || fault == F_COMMAND) {
				if (ret < 0)
					fail_msg("%s with %s: %d, success expected", op_names[op],
						 fault_names[fault], ret);
			} else if (ret >= 0) {
				fail_msg("%s with a %s reply: %d, an error expected", op_names[op],
					 fault_names[fault], ret);
			}
			if (fault == F_ERROR && ret != -EACCES)
				fail_msg("%s: error reply EACCES gave %d", op_names[op], ret);
			if (fault == F_ERROR_ZERO && ret != -EIO)
				fail_msg("%s: error reply 0 gave %d", op_names[op], ret);
			if (fault == F_SILENT && ret != -ETIMEDOUT)
				fail_msg("%s: no reply gave %d, not -ETIMEDOUT", op_names[op], ret);
			/* Untrustworthy stream: broken from now on. An error reply is not. */
			broken = fault != F_NONE && fault != F_COMMAND && fault != F_ERROR &&
				 fault != F_ERROR_ZERO;
			again = dt_vfu_client_region_read(c, 0, 0, b, sizeof(b));
			if (broken && again != -ECONNRESET)
				fail_msg(
					"%s after a %s reply: the next call gave %d, not -ECONNRESET",
					op_names[op], fault_names[fault], again);
			if (!broken && again != 0)
				fail_msg("%s after a %s reply: the next call failed (%d)",
					 op_names[op], fault_names[fault], again);
			fake_stop(f, c);
			free(f);
		}
	}
	munmap(mem, NPAGE * PAGE);
}

/* ---- report splitting and the sync -------------------------------------------------------- */

static void test_report_split(void **state)
{
	struct dt_vfu_client_opts opts = {.size = sizeof(opts)};
	static const uint64_t pgsizes[] = {2048, 4096, 8192, 2u << 20};
	struct fake *f = calloc(1, sizeof(*f));
	uint8_t *mem = guest_mem();
	struct dt_vfu_client *c;
	struct dt_vfu_client_info info;
	uint64_t pgsize = 0;

	f->max_bitmap_size = 16; /* 128 bits a request */
	c = fake_start(f, &opts);
	assert_int_equal(dt_vfu_client_get_info(c, &info), 0);
	assert_int_equal(info.max_bitmap_size, 16);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, NPAGE * PAGE, -1, 0, mem, PROT_READ), 0);
	/* Not logging yet: a report is refused before anything is sent. */
	{
		uint64_t bm[1];

		assert_int_equal(dt_vfu_client_report(c, IOVA, PAGE, PAGE, bm, 8), -EINVAL);
	}
	assert_int_equal(dt_vfu_client_dma_logging_start(c, NULL, 0, &pgsize), 0);
	assert_int_equal(pgsize, PAGE);
	for (unsigned k = 0; k < sizeof(pgsizes) / sizeof(pgsizes[0]); k++) {
		uint64_t ps = pgsizes[k], iova = 1ull << 32, nbits = 1000 + k * 7, count = 0;
		uint64_t *bm = calloc((nbits + 63) / 64 + 1, 8);
		int64_t n;

		f->reports = 0;
		f->report_next = 0;
		f->report_gap = false;
		bm[(nbits + 63) / 64] = 0x5a5a; /* a guard word past the bitmap */
		n = dt_vfu_client_report(c, iova, nbits * ps, ps, bm, (nbits + 63) / 64 * 8);
		for (uint64_t b = 0; b < nbits; b++) {
			bool want = fake_dirty(iova / ps + b), got = bm[b / 64] >> (b % 64) & 1;

			if (want != got)
				fail_msg("page size %llu: bit %llu is %d, the device said %d",
					 (unsigned long long)ps, (unsigned long long)b, got, want);
			count += want;
		}
		assert_int_equal(n, count);
		assert_int_equal(bm[(nbits + 63) / 64], 0x5a5a);
		assert_int_equal(f->reports, (nbits + 127) / 128);
		assert_false(f->report_gap);
		assert_int_equal(f->report_next, iova + nbits * ps);
		free(bm);
	}
	/* Bad arguments: nothing sent. */
	{
		uint64_t bm[4];

		f->reports = 0;
		assert_int_equal(dt_vfu_client_report(c, IOVA, PAGE, 3000, bm, 8), -EINVAL);
		assert_int_equal(dt_vfu_client_report(c, IOVA + 4096, 8192, 8192, bm, 8), -EINVAL);
		assert_int_equal(dt_vfu_client_report(c, IOVA, 0, PAGE, bm, 8), -EINVAL);
		assert_int_equal(dt_vfu_client_report(c, IOVA, 65 * PAGE, PAGE, bm, 8), -EINVAL);
		assert_int_equal(dt_vfu_client_report(c, ~0ull << 12, 2 * PAGE, PAGE, bm, 8),
				 -EINVAL);
		assert_int_equal(f->reports, 0);
	}
	fake_stop(f, c);
	free(f);
	munmap(mem, NPAGE * PAGE);
}

/* The sync replays the device's log into the mirror: a report of the mirror has exactly the
 * device's pages of the mapped range, in class "logged"; a failed report marks its range. */
static void test_sync_into_mirror(void **state)
{
	struct dt_vfu_client_opts opts = {.size = sizeof(opts)};
	struct fake *f = calloc(1, sizeof(*f));
	uint8_t *mem = guest_mem();
	struct dt_vfu_client *c;
	uint64_t bm[NPAGE / 64], logged[NPAGE / 64], expect = 0;
	struct dt_report rep = {.size = sizeof(rep), .iova = IOVA, .length = NPAGE * PAGE};
	int64_t n;

	f->max_bitmap_size = 8; /* 64 pages a request */
	c = fake_start(f, &opts);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, 32 * PAGE, -1, 0, mem, PROT_READ), 0);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA + 32 * PAGE, 32 * PAGE, -1, 0,
					       mem + 32 * PAGE, PROT_READ),
			 0);
	assert_int_equal(dt_vfu_client_dma_logging_start(c, NULL, 0, NULL), 0);
	n = dt_vfu_client_sync(c);
	for (uint64_t p = 0; p < NPAGE; p++)
		expect += fake_dirty(IOVA / PAGE + p);
	assert_int_equal(n, expect);
	memset(bm, 0, sizeof(bm));
	memset(logged, 0, sizeof(logged));
	rep.bitmap = bm;
	rep.bitmap_size = sizeof(bm);
	rep.class_bitmap[DT_RC_LOGGED] = logged;
	assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(c), &rep), 0);
	for (uint64_t p = 0; p < NPAGE; p++) {
		bool want = fake_dirty(IOVA / PAGE + p);

		assert_int_equal(bm[p / 64] >> (p % 64) & 1, want);
		assert_int_equal(logged[p / 64] >> (p % 64) & 1, want);
	}
	assert_int_equal(rep.counts.total, expect);
	/* A REPORT that fails on the server's side: the range is marked whole, then an error. */
	f->fault_cmd = VFU_CMD_DEVICE_FEATURE;
	f->fault_feature = VFU_FEATURE_DMA_LOGGING_REPORT;
	atomic_store(&f->fault, F_ERROR);
	assert_int_equal(dt_vfu_client_sync(c), -EACCES);
	memset(bm, 0, sizeof(bm));
	rep.class_bitmap[DT_RC_LOGGED] = NULL;
	assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(c), &rep), 0);
	assert_int_equal(rep.counts.total, NPAGE);
	/* Connection lost: every logged range marked on every sync, and an error. */
	f->fault_cmd = VFU_CMD_DEVICE_FEATURE;
	atomic_store(&f->fault, F_CLOSE);
	assert_int_equal(dt_vfu_client_sync(c), -ECONNRESET);
	assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(c), &rep), 0);
	assert_int_equal(rep.counts.total, NPAGE);
	assert_int_equal(dt_vfu_client_sync(c), -ECONNRESET);
	assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(c), &rep), 0);
	assert_int_equal(rep.counts.total, NPAGE);
	fake_stop(f, c);
	free(f);
	munmap(mem, NPAGE * PAGE);
}

/* ---- migration: arcs and data ---------------------------------------------------------------- */

static void expect_arcs(struct fake *f, const uint32_t *want, unsigned n)
{
	if (f->narcs != n)
		fail_msg("%u arcs, %u expected", f->narcs, n);
	for (unsigned i = 0; i < n; i++)
		if (f->arcs[i] != want[i])
			fail_msg("arc %u to state %u, %u expected", i, f->arcs[i], want[i]);
	f->narcs = 0;
}

static void test_mig_state_machine(void **state)
{
	struct dt_vfu_client_opts opts = {.size = sizeof(opts), .max_data_xfer_size = 1024};
	struct fake *f = calloc(1, sizeof(*f));
	struct dt_vfu_client *c;
	struct dt_migrate_device dev;
	enum dt_vfu_mig_state st;
	uint8_t *save = malloc(sizeof(f->mig_out));
	uint64_t pending;

	c = fake_start(f, &opts);
	assert_int_equal(dt_vfu_client_migrate_device(c, "nic0", &dev), 0);
	assert_string_equal(dev.name, "nic0");
	for (size_t i = 0; i < 5000; i++)
		f->mig_out[i] = (uint8_t)(i * 13 + 1);
	f->mig_out_len = 5000;
	/* RUNNING -> PRE_COPY -> STOP_COPY -> STOP -> RUNNING */
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_PRE_COPY), 0);
	expect_arcs(f, (const uint32_t[]){6}, 1);
	/* pending drains pre-copy data: all 5000 bytes in 1024-byte reads, to a short read */
	pending = dev.pending(dev.opaque);
	assert_int_equal(f->mig_out_pos, 5000);
	assert_true(pending >= 5000);
	assert_int_equal(dev.save(dev.opaque, save, 1 << 20), -EINVAL); /* not stopped */
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_STOP_COPY), 0);
	expect_arcs(f, (const uint32_t[]){3}, 1);
	/* the fake restarts its data at STOP_COPY: 5000 more bytes; the stream is both */
	assert_int_equal(dev.save(dev.opaque, save, 9999), -ENOSPC);
	assert_int_equal(dev.save(dev.opaque, save, 10000), 10000);
	assert_int_equal(dev.save(dev.opaque, save, 10000), 10000); /* a retry: same bytes */
	assert_memory_equal(save, f->mig_out, 5000);
	assert_memory_equal(save + 5000, f->mig_out, 5000);
	assert_int_equal(dev.pending(dev.opaque), 10000);
	/* STOP_COPY -> PRE_COPY is not allowed: nothing sent */
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_PRE_COPY), -EINVAL);
	expect_arcs(f, NULL, 0);
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_RUNNING), 0);
	expect_arcs(f, (const uint32_t[]){1, 2}, 2);
	/* RUNNING -> STOP_COPY goes through STOP; PRE_COPY -> STOP through RUNNING */
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_STOP_COPY), 0);
	expect_arcs(f, (const uint32_t[]){1, 3}, 2);
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_RUNNING), 0);
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_PRE_COPY), 0);
	f->narcs = 0;
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_STOP), 0);
	expect_arcs(f, (const uint32_t[]){2, 1}, 2);
	assert_int_equal(dt_vfu_client_mig_get_state(c, &st), 0);
	assert_int_equal(st, DT_VFU_MIG_STOP);
	/* Destination: load walks STOP -> RESUMING, writes in 1024-byte pieces, ends in STOP */
	assert_int_equal(dt_vfu_client_mig_set_state(c, DT_VFU_MIG_RUNNING), 0);
	f->narcs = 0;
	assert_int_equal(dev.load(dev.opaque, save, 10000), 0);
	expect_arcs(f, (const uint32_t[]){1, 4, 1}, 3);
	assert_int_equal(f->mig_in_len, 10000);
	assert_memory_equal(f->mig_in, save, 10000);
	fake_stop(f, c);
	free(f);
	free(save);
}

/* ---- the server's DMA requests ---------------------------------------------------------------- */

static void test_serve_dma(void **state)
{
	struct dt_vfu_client_opts opts = {.size = sizeof(opts), .max_data_xfer_size = 4096};
	struct fake *f = calloc(1, sizeof(*f));
	uint8_t *mem = guest_mem();
	struct dt_vfu_client *c = fake_start(f, &opts);
	struct dt_report rep = {.size = sizeof(rep), .iova = IOVA, .length = NPAGE * PAGE};
	uint64_t bm[1], dma[1] = {0};
	uint8_t buf[8];

	assert_int_equal(
		dt_vfu_client_dma_map(c, IOVA, NPAGE * PAGE, -1, 0, mem, PROT_READ | PROT_WRITE),
		0);
	assert_int_equal(dt_vfu_client_dma_logging_start(c, NULL, 0, NULL), 0);
	f->dma_probe = true;
	assert_int_equal(dt_vfu_client_region_read(c, 0, 0, buf, sizeof(buf)), 0);
	assert_int_equal(f->dma_results[0], 0);
	assert_int_equal(f->dma_results[1], 0);
	assert_memory_equal(mem + 5 * PAGE - 8, "0123456789abcdef", 16);
	assert_memory_equal(f->dma_read_back, "0123456789abcdef", 16);
	assert_int_equal(f->dma_results[2], EFAULT);
	assert_int_equal(f->dma_results[3], EINVAL);
	/* The DMA_WRITE of 16 bytes across pages 4 and 5 is in the mirror, class dma_rw. */
	bm[0] = 0;
	rep.bitmap = bm;
	rep.bitmap_size = sizeof(bm);
	rep.class_bitmap[DT_RC_DMA_RW] = dma;
	assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(c), &rep), 0);
	assert_int_equal(bm[0], 3ull << 4);
	assert_int_equal(dma[0], 3ull << 4);
	fake_stop(f, c);
	free(f);
	munmap(mem, NPAGE * PAGE);
}

/* The server's DMA requests while the client is idle: served by dt_vfu_client_process() when
 * the caller polls the client's fd; a reply to no request breaks the connection. */
static void test_process_idle(void **state)
{
	struct dt_vfu_client_opts opts = {.size = sizeof(opts)};
	struct fake *f = calloc(1, sizeof(*f));
	uint8_t *mem = guest_mem();
	struct dt_vfu_client *c = fake_start(f, &opts);
	struct vfu_dma_access da = {.addr = IOVA + 7 * PAGE, .count = 3};
	struct iovec iov[2] = {{&da, sizeof(da)}, {"xyz", 3}};
	struct pollfd p = {.fd = dt_vfu_client_fd(c), .events = POLLIN};

	assert_int_equal(dt_vfu_client_process(c), 0); /* nothing waiting */
	assert_int_equal(
		dt_vfu_client_dma_map(c, IOVA, NPAGE * PAGE, -1, 0, mem, PROT_READ | PROT_WRITE),
		0);
	assert_int_equal(vfu_msg_sendv(f->sock, 900, VFU_CMD_DMA_WRITE, VFU_F_TYPE_COMMAND, 0, iov,
				       2, NULL, 0),
			 0);
	da.addr = IOVA + NPAGE * PAGE; /* outside: an error reply */
	assert_int_equal(vfu_msg_sendv(f->sock, 901, VFU_CMD_DMA_WRITE, VFU_F_TYPE_COMMAND, 0, iov,
				       2, NULL, 0),
			 0);
	assert_int_equal(poll(&p, 1, 5000), 1);
	usleep(20000); /* both requests in */
	assert_int_equal(dt_vfu_client_process(c), 2);
	while (atomic_load(&f->idle_replies) < 2)
		usleep(1000);
	assert_int_equal(f->idle_reply_error, EFAULT);
	assert_memory_equal(mem + 7 * PAGE, "xyz", 3);
	/* A reply nobody asked for. */
	assert_int_equal(
		vfu_msg_send(f->sock, 5, VFU_CMD_REGION_READ, VFU_F_TYPE_REPLY, NULL, 0, NULL, 0),
		0);
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(dt_vfu_client_process(c), -EPROTO);
	assert_int_equal(dt_vfu_client_process(c), -ECONNRESET);
	fake_stop(f, c);
	free(f);
	munmap(mem, NPAGE * PAGE);
}

/* Replies with random bytes flipped, over random sequences of calls: whatever each call
 * returns, no crash, no leak, and once broken the client stays broken. */
static void test_random_replies(void **state)
{
	struct dt_vfu_client_opts opts = {
		.size = sizeof(opts), .timeout_ms = 1500, .max_data_xfer_size = 1024};
	uint8_t *mem = guest_mem();
	unsigned broken = 0, errors = 0, calls = 0, timeouts = 0;
	uint64_t rng;

	seed_init("  ");
	rng = seed;
	for (int iter = 0; iter < 150; iter++) {
		struct fake *f = calloc(1, sizeof(*f));
		struct dt_vfu_client *c = fake_start(f, &opts);
		struct dt_migrate_device dev;
		bool was_broken = false;

		f->mig_out_len = 3000;
		f->mut_rng = rnd(&rng);
		f->mutate = 80; /* about 30 % of the replies */
		dt_vfu_client_migrate_device(c, "d", &dev);
		for (int k = 0; k < 12; k++) {
			uint64_t bm[2] = {0}, pgsize = 0;
			uint8_t buf[2048];
			struct dt_vfu_region_info ri;
			enum dt_vfu_mig_state st;
			int64_t ret = 0;

			switch (rnd(&rng) % 10) {
			case 0:
				ret = dt_vfu_client_dma_map(c, IOVA, NPAGE * PAGE, -1, 0, mem,
							    PROT_READ | PROT_WRITE);
				break;
			case 1:
				ret = dt_vfu_client_dma_logging_start(c, NULL, 0, &pgsize);
				break;
			case 2:
				ret = dt_vfu_client_report(c, IOVA, NPAGE * PAGE, PAGE, bm,
							   sizeof(bm));
				break;
			case 3:
				ret = dt_vfu_client_sync(c);
				break;
			case 4:
				ret = dt_vfu_client_region_read(c, 0, 0, buf, sizeof(buf));
				break;
			case 5:
				ret = dt_vfu_client_region_info(c, 1, &ri);
				break;
			case 6:
				ret = dt_vfu_client_mig_set_state(c, rnd(&rng) % 2
									     ? DT_VFU_MIG_STOP_COPY
									     : DT_VFU_MIG_RUNNING);
				break;
			case 7:
				ret = dt_vfu_client_mig_get_state(c, &st);
				break;
			case 8:
				ret = dev.save(dev.opaque, buf, sizeof(buf));
				dev.pending(dev.opaque);
				break;
			case 9:
				ret = dt_vfu_client_dma_unmap(c, IOVA, NPAGE * PAGE, PAGE, bm,
							      sizeof(bm));
				break;
			}
			calls++;
			errors += ret < 0;
			timeouts += ret == -ETIMEDOUT;
		}
		/* A broken connection stays broken (an error reply may carry any errno, so the
		 * calls above prove nothing about it). */
		{
			uint8_t b[8];

			was_broken = dt_vfu_client_region_read(c, 0, 0, b, 8) == -ECONNRESET;
			if (was_broken && dt_vfu_client_region_read(c, 0, 0, b, 8) != -ECONNRESET)
				fail_msg(
					"iteration %d: a broken connection worked again (seed %llu)",
					iter, (unsigned long long)seed);
		}
		broken += was_broken;
		fake_stop(f, c);
		free(f);
	}
	printf("  %u calls, %u errors (%u timeouts), %u of 150 connections broken\n", calls, errors,
	       timeouts, broken);
	assert_true(broken > 0 && errors > 0);
	munmap(mem, NPAGE * PAGE);
}

/* ---- allocation failures: an error, and the state as before ----------------------------------- */

enum fail_op { FO_MAP, FO_LOG_START, FO_SYNC, FO_SAVE, FO_UNMAP, FO_NOPS };

static void test_alloc_failures(void **state)
{
	static const char *const names[FO_NOPS] = {"dma_map", "logging start", "sync", "save",
						   "unmap"};
	struct dt_vfu_client_opts opts = {.size = sizeof(opts), .max_data_xfer_size = 1024};
	uint8_t *mem = guest_mem();

	for (int op = 0; op < FO_NOPS; op++) {
		unsigned long n, made, failures = 0;

		for (n = 1; n < 1000; n++) {
			struct fake *f = calloc(1, sizeof(*f));
			struct dt_vfu_client *c = fake_start(f, &opts);
			struct dt_iommu_stats st;
			struct dt_migrate_device dev;
			uint64_t bm[1] = {0};
			uint8_t save[8192];
			int64_t ret = 0;

			f->max_bitmap_size = 0;
			if (op != FO_MAP)
				assert_int_equal(dt_vfu_client_dma_map(c, IOVA, NPAGE * PAGE, -1, 0,
								       mem, PROT_READ),
						 0);
			if (op == FO_SYNC || op == FO_UNMAP)
				assert_int_equal(dt_vfu_client_dma_logging_start(c, NULL, 0, NULL),
						 0);
			if (op == FO_SAVE) {
				for (unsigned i = 0; i < 5000; i++)
					f->mig_out[i] = (uint8_t)(i * 7);
				f->mig_out_len = 5000;
				assert_int_equal(dt_vfu_client_migrate_device(c, "d", &dev), 0);
				assert_int_equal(
					dt_vfu_client_mig_set_state(c, DT_VFU_MIG_STOP_COPY), 0);
			}
			alloc_fail_nth(n);
			switch (op) {
			case FO_MAP:
				ret = dt_vfu_client_dma_map(c, IOVA, NPAGE * PAGE, -1, 0, mem,
							    PROT_READ);
				break;
			case FO_LOG_START:
				ret = dt_vfu_client_dma_logging_start(c, NULL, 0, NULL);
				break;
			case FO_SYNC:
				ret = dt_vfu_client_sync(c);
				break;
			case FO_SAVE:
				ret = dev.save(dev.opaque, save, sizeof(save));
				break;
			case FO_UNMAP:
				ret = dt_vfu_client_dma_unmap(c, IOVA, NPAGE * PAGE, PAGE, bm, 8);
				break;
			}
			made = alloc_fail_nth(0);
			if (made >= n && ret < 0) {
				failures++;
				if (ret != -ENOMEM)
					fail_msg("%s: allocation %lu failed: %lld, not -ENOMEM",
						 names[op], n, (long long)ret);
			}
			/* Whatever happened, the state is whole: check it, then redo the call. */
			assert_int_equal(dt_iommu_get_stats(dt_vfu_client_mirror(c), &st), 0);
			switch (op) {
			case FO_MAP:
				assert_int_equal(st.mappings, ret ? 0 : 1);
				if (ret)
					assert_int_equal(dt_vfu_client_dma_map(c, IOVA,
									       NPAGE * PAGE, -1, 0,
									       mem, PROT_READ),
							 0);
				break;
			case FO_LOG_START:
				assert_int_equal(dt_iommu_dirty_tracking(dt_vfu_client_mirror(c)),
						 ret == 0);
				if (ret)
					assert_int_equal(
						dt_vfu_client_dma_logging_start(c, NULL, 0, NULL),
						0);
				break;
			case FO_SYNC: {
				/* Every page the device logged is in the mirror (or all of them,
				 * marked conservatively after a failure). */
				uint64_t got = 0;
				struct dt_report rep = {.size = sizeof(rep),
							.iova = IOVA,
							.length = NPAGE * PAGE,
							.bitmap = &got,
							.bitmap_size = 8};

				assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(c), &rep), 0);
				for (uint64_t p = 0; p < NPAGE; p++)
					if (fake_dirty(IOVA / PAGE + p) && !(got >> p & 1))
						fail_msg(
							"sync, allocation %lu failed: page %llu lost",
							n, (unsigned long long)p);
				break;
			}
			case FO_SAVE:
				if (ret < 0)
					ret = dev.save(dev.opaque, save, sizeof(save));
				assert_int_equal(ret, 5000);
				assert_memory_equal(save, f->mig_out, 5000);
				break;
			case FO_UNMAP:
				if (ret < 0)
					assert_int_equal(dt_vfu_client_dma_unmap(c, IOVA,
										 NPAGE * PAGE, PAGE,
										 bm, 8),
							 0);
				break;
			}
			fake_stop(f, c);
			free(f);
			if (made < n)
				break; /* past the last allocation */
		}
		printf("  %s: %lu allocations, %lu failed calls\n", names[op], n - 1, failures);
	}
	munmap(mem, NPAGE * PAGE);
}

/* ---- argument checks ---------------------------------------------------------------------- */

static void test_bad_arguments(void **state)
{
	struct dt_vfu_client_opts opts = {.size = sizeof(opts)};
	struct fake *f = calloc(1, sizeof(*f));
	uint8_t *mem = guest_mem();
	struct dt_vfu_client *c;
	struct dt_migrate_device dev;
	struct dt_vfu_range bad[2] = {{IOVA, 2 * PAGE}, {IOVA + PAGE, PAGE}};
	uint64_t bm[1];

	assert_null(dt_vfu_client_connect("/nonexistent/socket", NULL));
	assert_null(dt_vfu_client_from_fd(-1, NULL));
	opts.size = 1;
	assert_null(dt_vfu_client_from_fd(dup(0), &opts));
	assert_int_equal(errno, EINVAL);
	opts.size = sizeof(opts);
	c = fake_start(f, &opts);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA + 1, PAGE, -1, 0, mem, PROT_READ), -EINVAL);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, 0, -1, 0, mem, PROT_READ), -EINVAL);
	{
		/* An fd the client cannot map for its mirror: its mmap's errno, nothing mapped. */
		int pfd[2];

		assert_int_equal(pipe(pfd), 0);
		assert_int_equal(dt_vfu_client_dma_map(c, IOVA, PAGE, pfd[0], 0, NULL, PROT_READ),
				 -ENODEV);
		close(pfd[0]);
		close(pfd[1]);
		assert_int_equal(dt_vfu_client_dma_map(c, IOVA, PAGE, 1000, 0, NULL, PROT_READ),
				 -EBADF);
	}
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, PAGE, -1, 0, NULL, PROT_READ), -EINVAL);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, PAGE, -1, 0, mem, 0), -EINVAL);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, PAGE, -1, 0, mem + 1, PROT_READ), -EINVAL);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, 4 * PAGE, -1, 0, mem, PROT_READ), 0);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA + 3 * PAGE, PAGE, -1, 0, mem, PROT_READ),
			 -EEXIST);
	assert_int_equal(dt_vfu_client_dma_unmap(c, IOVA, PAGE, 0, NULL, 0), -EINVAL);
	assert_int_equal(dt_vfu_client_dma_unmap(c, IOVA, 4 * PAGE, 3000, bm, 8), -EINVAL);
	assert_int_equal(dt_vfu_client_dma_unmap(c, IOVA, 4 * PAGE, PAGE, bm, 0), -EINVAL);
	assert_int_equal(dt_vfu_client_dma_unmap(c, IOVA, 4 * PAGE, PAGE, bm, 8),
			 -EINVAL); /* off */
	assert_int_equal(dt_vfu_client_dma_logging_start(c, bad, 2, NULL), -EINVAL);
	assert_int_equal(dt_vfu_client_region_read(c, 7, 0, bm, 8), -EINVAL);
	assert_int_equal(dt_vfu_client_migrate_device(c, "", &dev), -EINVAL);
	assert_int_equal(dt_vfu_client_migrate_device(c,
						      "a-name-that-is-far-too-long-for-the-wire-"
						      "format-of-the-migration-stream",
						      &dev),
			 -EINVAL);
	/* Unmap while logging: the range stays in the mirror ("retired") until logging stops:
	 * its dirty pages are harvested, and an overlapping new map waits for that. */
	assert_int_equal(dt_vfu_client_dma_logging_start(c, NULL, 0, NULL), 0);
	bm[0] = 0;
	assert_int_equal(dt_vfu_client_dma_unmap(c, IOVA, 4 * PAGE, PAGE, bm, 8), 0);
	{
		uint64_t want = 0, got[1] = {0};
		struct dt_report rep = {.size = sizeof(rep),
					.iova = IOVA,
					.length = 4 * PAGE,
					.bitmap = got,
					.bitmap_size = 8};

		for (unsigned p = 0; p < 4; p++)
			want |= (uint64_t)fake_dirty(IOVA / PAGE + p) << p;
		assert_int_equal(bm[0], want);
		assert_int_equal(dt_iommu_report(dt_vfu_client_mirror(c), &rep), 0);
		assert_int_equal(got[0], want);
	}
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, PAGE, -1, 0, mem, PROT_READ), -EBUSY);
	assert_int_equal(dt_vfu_client_dma_logging_stop(c), 0);
	assert_int_equal(dt_vfu_client_dma_map(c, IOVA, PAGE, -1, 0, mem, PROT_READ), 0);
	fake_stop(f, c);
	free(f);
	munmap(mem, NPAGE * PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed_replies), cmocka_unit_test(test_report_split),
		cmocka_unit_test(test_sync_into_mirror),  cmocka_unit_test(test_mig_state_machine),
		cmocka_unit_test(test_serve_dma),	  cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_process_idle),	  cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_random_replies),
	};

	if (getenv("DT_TEST_LOG"))
		dt_set_log(dt_log_stderr, NULL, DT_LOG_DEBUG);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
