/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/server_dma.c - the server's DMA space: DMA_MAP / DMA_UNMAP into the server's
 * dt_iommu, the dirty bitmaps of DMA_UNMAP and DMA_LOGGING_REPORT, and dt_vfu_dma_rw.
 *
 * Every client mapping is a dt_iommu mapping at the same iova, so every device rule of the
 * container holds. A DMA_MAP with a descriptor maps it MAP_SHARED (after checking the file is
 * long enough, so no access can SIGBUS on a short file); one without reserves untouched
 * address space (MAP_NORESERVE) whose only purpose is to give the container something to
 * map: its bytes live in the client and dt_vfu_dma_rw moves them with DMA_READ / DMA_WRITE,
 * marking writes with dt_dma_log so they are tracked like any other.
 *
 * s->maps mirrors the container's mappings, sorted by iova, and remembers which kind each
 * is. A report over a range that cuts a mapping is done over the whole mappings (the
 * container's rule) and what lies outside the range is merged back, so no bit is lost.
 */
#include "vfio_user/server_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <linux/vfio.h>

#include "core/bitops.h"
#include "core/log.h"
#include "sys/sys.h"

#define PG 4096ull

uint32_t vfu_map_lower_bound(const struct dt_vfu_server *s, uint64_t iova)
{
	uint32_t lo = 0, hi = s->nmaps;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct vfu_map *m = &s->maps[mid];

		if (m->iova + m->size <= iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int vfu_map_find(const struct dt_vfu_server *s, uint64_t iova)
{
	uint32_t i = vfu_map_lower_bound(s, iova);

	return i < s->nmaps && s->maps[i].iova <= iova ? (int)i : -1;
}

static void map_release(struct vfu_map *m)
{
	sys_munmap(m->va, m->size);
}

/* Remove maps[i] from the container (bitmap: the VFIO unmap-with-bitmap argument) and from
 * the list; the device hears of it first (notify), without any lock held, so that it may
 * wait for its own DMA threads. */
static int map_remove(struct dt_vfu_server *s, uint32_t i, struct vfio_bitmap *bitmap, bool notify)
{
	struct {
		struct vfio_iommu_type1_dma_unmap u;
		struct vfio_bitmap b;
	} arg = {.u = {.argsz = sizeof(arg.u), .iova = s->maps[i].iova, .size = s->maps[i].size}};
	int r;

	if (notify && s->ops.dma_unmap && !s->freeing)
		s->ops.dma_unmap(s->opts.opaque, s->maps[i].iova, s->maps[i].size);
	if (bitmap) {
		arg.u.argsz = sizeof(arg);
		arg.u.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
		arg.b = *bitmap;
	}
	pthread_rwlock_wrlock(&s->maps_lock);
	r = dt_vfio_ioctl(s->iommu, VFIO_IOMMU_UNMAP_DMA, &arg);
	if (!r) {
		map_release(&s->maps[i]);
		memmove(&s->maps[i], &s->maps[i + 1], sizeof(s->maps[0]) * (s->nmaps - i - 1));
		s->nmaps--;
	}
	pthread_rwlock_unlock(&s->maps_lock);
	return r;
}

void vfu_unmap_all(struct dt_vfu_server *s)
{
	while (s->nmaps) {
		if (map_remove(s, s->nmaps - 1, NULL, true)) {
			/* Cannot happen for a mapping we made; never leak the memory anyway. */
			log_err("vfio-user server: unmap of 0x%llx failed",
				(unsigned long long)s->maps[s->nmaps - 1].iova);
			pthread_rwlock_wrlock(&s->maps_lock);
			map_release(&s->maps[s->nmaps - 1]);
			s->nmaps--;
			pthread_rwlock_unlock(&s->maps_lock);
		}
	}
}

/* ---- DMA_MAP ------------------------------------------------------------------------------ */

int vfu_handle_dma_map(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_dma_map in;
	struct vfio_iommu_type1_dma_map arg;
	struct vfu_map m = {0};
	uint32_t i;
	int prot = 0, err = 0, r;

	if (msg->len < sizeof(in))
		return log_fail(-EINVAL, "DMA_MAP: %u bytes", msg->len);
	memcpy(&in, msg->payload, sizeof(in));
	if (in.argsz < sizeof(in))
		return log_fail(-EINVAL, "DMA_MAP: argsz %u", in.argsz);
	if (!in.flags || (in.flags & ~(VFU_DMA_MAP_F_READ | VFU_DMA_MAP_F_WRITE)))
		return log_fail(-EINVAL, "DMA_MAP: flags 0x%x", in.flags);
	if (!in.size || (in.addr | in.size) & (PG - 1) || in.addr + in.size < in.addr)
		return log_fail(-EINVAL, "DMA_MAP: [0x%llx, +0x%llx)", (unsigned long long)in.addr,
				(unsigned long long)in.size);
	if (in.size > SIZE_MAX / 2)
		return log_fail(-EINVAL, "DMA_MAP: size 0x%llx", (unsigned long long)in.size);
	if (s->nmaps >= s->max_maps)
		return log_fail(-E2BIG, "DMA_MAP: already %u mappings", s->nmaps);
	i = vfu_map_lower_bound(s, in.addr);
	if (i < s->nmaps && s->maps[i].iova < in.addr + in.size)
		return log_fail(-EEXIST, "DMA_MAP: [0x%llx, +0x%llx) overlaps a mapping",
				(unsigned long long)in.addr, (unsigned long long)in.size);
	if (in.flags & VFU_DMA_MAP_F_READ)
		prot |= PROT_READ;
	if (in.flags & VFU_DMA_MAP_F_WRITE)
		prot |= PROT_WRITE;
	if (msg->nfds) {
		uint32_t mode;
		uint64_t fsize;

		if (in.offset & (PG - 1))
			return log_fail(-EINVAL, "DMA_MAP: offset 0x%llx",
					(unsigned long long)in.offset);
		r = sys_fstat(msg->fds[0], &mode, &fsize);
		if (r)
			return log_fail(r, "DMA_MAP: fstat: %s", strerror(-r));
		/* A regular file (memfd) shorter than the mapping would SIGBUS us later. */
		if (S_ISREG(mode) && (in.offset > fsize || in.size > fsize - in.offset))
			return log_fail(-EINVAL,
					"DMA_MAP: [0x%llx, +0x%llx) beyond the file's 0x%llx",
					(unsigned long long)in.offset, (unsigned long long)in.size,
					(unsigned long long)fsize);
		if (in.offset > (uint64_t)INT64_MAX)
			return log_fail(-EINVAL, "DMA_MAP: offset 0x%llx",
					(unsigned long long)in.offset);
		/* ...and so would a file the client shrinks later: seal it against shrinking
		 * where the file allows seals (memfd_create with MFD_ALLOW_SEALING). Others are
		 * taken on trust, as the spec does (docs/vfio-user.md, "Trust"). */
		if (S_ISREG(mode) && fcntl(msg->fds[0], F_ADD_SEALS, F_SEAL_SHRINK) &&
		    errno != EPERM && errno != EINVAL)
			return log_fail(-errno, "DMA_MAP: sealing the file against shrinking: %s",
					strerror(errno));
		m.va = sys_mmap(NULL, in.size, prot, MAP_SHARED, msg->fds[0], (long)in.offset,
				&err);
		m.has_fd = true;
	} else {
		if (in.offset)
			return log_fail(-EINVAL, "DMA_MAP: offset without a descriptor");
		m.va = sys_mmap(NULL, in.size, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, &err);
	}
	if (!m.va)
		return log_fail(err, "DMA_MAP: mmap of 0x%llx bytes: %s",
				(unsigned long long)in.size, strerror(-err));
	m.iova = in.addr;
	m.size = in.size;
	m.flags = in.flags;
	if (s->nmaps == s->maps_cap) {
		uint32_t cap = s->maps_cap ? s->maps_cap * 2 : 16;
		struct vfu_map *p;

		pthread_rwlock_wrlock(&s->maps_lock);
		p = realloc(s->maps, sizeof(*p) * cap);
		if (p) {
			s->maps = p;
			s->maps_cap = cap;
		}
		pthread_rwlock_unlock(&s->maps_lock);
		if (!p) {
			map_release(&m);
			return -ENOMEM;
		}
	}
	arg = (struct vfio_iommu_type1_dma_map){
		.argsz = sizeof(arg),
		.flags = (in.flags & VFU_DMA_MAP_F_READ ? VFIO_DMA_MAP_FLAG_READ : 0) |
			 (in.flags & VFU_DMA_MAP_F_WRITE ? VFIO_DMA_MAP_FLAG_WRITE : 0),
		.vaddr = (uint64_t)(uintptr_t)m.va,
		.iova = in.addr,
		.size = in.size};
	r = dt_vfio_ioctl(s->iommu, VFIO_IOMMU_MAP_DMA, &arg);
	if (r) {
		map_release(&m);
		return log_fail(r, "DMA_MAP: [0x%llx, +0x%llx): %s", (unsigned long long)in.addr,
				(unsigned long long)in.size, strerror(-r));
	}
	pthread_rwlock_wrlock(&s->maps_lock);
	memmove(&s->maps[i + 1], &s->maps[i], sizeof(s->maps[0]) * (s->nmaps - i));
	s->maps[i] = m;
	s->nmaps++;
	pthread_rwlock_unlock(&s->maps_lock);
	/* The device hears of it with no lock held: it may do DMA from its callback. */
	if (s->ops.dma_map) {
		r = s->ops.dma_map(s->opts.opaque, m.iova, m.size, m.has_fd ? m.va : NULL,
				   (uint32_t)prot);
		if (r) {
			map_remove(s, i, NULL, false);
			return log_fail(
				r < 0 ? r : -EIO, "DMA_MAP: [0x%llx, +0x%llx): device error %d",
				(unsigned long long)in.addr, (unsigned long long)in.size, r);
		}
	}
	s->out_len = 0;
	return 0;
}

/* ---- DMA_UNMAP ---------------------------------------------------------------------------- */

/* OR into out (bit n = page base + n * pgsize, nbits bits) the 4 KiB pages set in bm4k
 * (bit n = page from + n * 4096, n4k bits), clipped to [base, base + len). */
static void rescale(const void *bm4k, uint64_t n4k, uint64_t from, void *out, uint64_t base,
		    uint64_t len, uint64_t pgsize)
{
	for (uint64_t w = 0; w < words_for_bits(n4k); w++) {
		uint64_t word = ubuf_load(bm4k, w);

		while (word) {
			uint64_t n = w * 64 + ctz64(word);
			uint64_t lo = from + n * PG, hi = lo + PG;

			word &= word - 1;
			if (lo < base)
				lo = base;
			if (hi > base + len)
				hi = base + len;
			if (lo >= hi)
				continue;
			lo = (lo - base) / pgsize;
			hi = (hi - 1 - base) / pgsize;
			ubuf_set_range(out, lo, hi - lo + 1);
		}
	}
}

/* The largest bitmap we may send: ours, and the client's if it said. */
static uint64_t bitmap_limit(const struct dt_vfu_server *s)
{
	uint64_t lim = s->max_bitmap;

	if (s->peer.migration && s->peer.mig_max_bitmap_size < lim)
		lim = s->peer.mig_max_bitmap_size;
	return lim;
}

int vfu_handle_dma_unmap(struct dt_vfu_server *s, struct vfu_msg *msg)
{
	struct vfu_dma_unmap in;
	struct vfu_bitmap bm = {0};
	uint64_t nbits = 0, need;
	bool want_bitmap;
	int i, r;

	if (msg->len < sizeof(in))
		return log_fail(-EINVAL, "DMA_UNMAP: %u bytes", msg->len);
	memcpy(&in, msg->payload, sizeof(in));
	if (in.flags & ~(VFU_DMA_UNMAP_F_GET_DIRTY_BITMAP | VFU_DMA_UNMAP_F_ALL) ||
	    in.flags == (VFU_DMA_UNMAP_F_GET_DIRTY_BITMAP | VFU_DMA_UNMAP_F_ALL))
		return log_fail(-EINVAL, "DMA_UNMAP: flags 0x%x", in.flags);
	want_bitmap = in.flags & VFU_DMA_UNMAP_F_GET_DIRTY_BITMAP;
	need = sizeof(in);
	if (in.flags & VFU_DMA_UNMAP_F_ALL) {
		if (in.addr || in.size)
			return log_fail(-EINVAL, "DMA_UNMAP: ALL with a range");
		if (in.argsz < need)
			return log_fail(-EINVAL, "DMA_UNMAP: argsz %u", in.argsz);
		vfu_unmap_all(s);
		in.argsz = sizeof(in);
		goto reply;
	}
	i = vfu_map_find(s, in.addr);
	if (i < 0 || s->maps[i].iova != in.addr || s->maps[i].size != in.size)
		return log_fail(-EINVAL, "DMA_UNMAP: [0x%llx, +0x%llx) is not a mapping",
				(unsigned long long)in.addr, (unsigned long long)in.size);
	if (want_bitmap) {
		if (msg->len < sizeof(in) + sizeof(bm))
			return log_fail(-EINVAL, "DMA_UNMAP: bitmap flag without a bitmap");
		memcpy(&bm, msg->payload + sizeof(in), sizeof(bm));
		if (!is_pow2(bm.pgsize))
			return log_fail(-EINVAL, "DMA_UNMAP: bitmap page size %llu",
					(unsigned long long)bm.pgsize);
		nbits = div_round_up(in.size, bm.pgsize);
		if (bm.size < words_for_bits(nbits) * 8 || bm.size > bitmap_limit(s))
			return log_fail(
				-EINVAL,
				"DMA_UNMAP: bitmap of %llu bytes for %llu pages (limit %llu)",
				(unsigned long long)bm.size, (unsigned long long)nbits,
				(unsigned long long)bitmap_limit(s));
		if (!dt_iommu_dirty_tracking(s->iommu))
			return log_fail(-EINVAL, "DMA_UNMAP: dirty bitmap while logging is off");
		if (in.size / PG / 8 > VFU_SRV_MAX_UNMAP_4K)
			return log_fail(-EINVAL, "DMA_UNMAP: bitmap of a 0x%llx byte mapping",
					(unsigned long long)in.size);
		need += sizeof(bm) + bm.size;
	}
	if (in.argsz < need)
		return log_fail(-EINVAL, "DMA_UNMAP: argsz %u, reply needs %llu", in.argsz,
				(unsigned long long)need);
	if (!vfu_out_reserve(s, need))
		return -ENOMEM;
	if (want_bitmap) {
		uint64_t n4k = in.size / PG;
		size_t bytes4k = words_for_bits(n4k) * 8;
		void *bm4k = calloc(1, bytes4k);
		struct vfio_bitmap vb = {.pgsize = PG, .size = bytes4k, .data = bm4k};

		if (!bm4k)
			return -ENOMEM;
		r = map_remove(s, (uint32_t)i, &vb, true);
		if (!r) {
			uint8_t *out = s->out + sizeof(in) + sizeof(bm);

			memset(out, 0, bm.size);
			rescale(bm4k, n4k, in.addr, out, in.addr, in.size, bm.pgsize);
			memcpy(s->out + sizeof(in), &bm, sizeof(bm));
		}
		free(bm4k);
	} else {
		r = map_remove(s, (uint32_t)i, NULL, true);
	}
	if (r)
		return log_fail(r, "DMA_UNMAP: [0x%llx, +0x%llx): %s", (unsigned long long)in.addr,
				(unsigned long long)in.size, strerror(-r));
	in.argsz = (uint32_t)need;
reply:
	memcpy(s->out, &in, sizeof(in));
	s->out_len = need;
	return 0;
}

/* ---- reports ------------------------------------------------------------------------------ */

struct report_ctx {
	struct dt_vfu_server *s;
	uint64_t iova, length, page_size;
	void *bitmap;
};

static int report_run(void *opaque, uint64_t iova, uint64_t length)
{
	struct report_ctx *c = opaque;
	uint64_t lo = iova, hi = iova + length;
	uint64_t end = c->iova + c->length;

	/* What the caller did not ask for goes back, dirty, for a later report: whole pages,
	 * so a page the range only partly covers (2 KiB report pages) stays dirty. */
	if (lo < c->iova) {
		uint64_t e = (c->iova + PG - 1) & ~(PG - 1);

		dt_iommu_merge_back(c->s->iommu, lo, (hi < e ? hi : e) - lo);
	}
	if (hi > end) {
		uint64_t b = end & ~(PG - 1);

		dt_iommu_merge_back(c->s->iommu, lo > b ? lo : b, hi - (lo > b ? lo : b));
	}
	if (lo < c->iova)
		lo = c->iova;
	if (hi > end)
		hi = end;
	if (lo < hi)
		ubuf_set_range(c->bitmap, (lo - c->iova) / c->page_size,
			       (hi - 1 - c->iova) / c->page_size - (lo - c->iova) / c->page_size +
				       1);
	return 0;
}

int vfu_dirty_bitmap(struct dt_vfu_server *s, uint64_t iova, uint64_t length, uint64_t page_size,
		     void *bitmap)
{
	struct report_ctx c = {
		.s = s, .iova = iova, .length = length, .page_size = page_size, .bitmap = bitmap};
	struct dt_report rep = {.size = sizeof(rep), .run = report_run, .opaque = &c};
	uint64_t lo = iova & ~(PG - 1), hi = iova + length;
	uint32_t first, last;

	if (hi & (PG - 1))
		hi = (hi | (PG - 1)) + 1; /* 0 if it wrapped: the caller keeps ranges below 2^64 */
	if (!hi)
		return log_fail(-EOVERFLOW, "report: range ends at 2^64");
	first = vfu_map_lower_bound(s, lo);
	if (first == s->nmaps || s->maps[first].iova >= hi)
		return 0; /* only holes */
	last = vfu_map_lower_bound(s, hi - 1);
	if (last == s->nmaps || s->maps[last].iova >= hi)
		last--;
	/* The container reports whole mappings only. */
	if (s->maps[first].iova < lo)
		lo = s->maps[first].iova;
	if (s->maps[last].iova + s->maps[last].size > hi)
		hi = s->maps[last].iova + s->maps[last].size;
	rep.iova = lo;
	rep.length = hi - lo;
	return dt_iommu_report(s->iommu, &rep);
}

/* ---- dt_vfu_dma_rw ------------------------------------------------------------------------ */

/* Wait for the reply to our request (id, cmd); commands that come first are queued. */
static int wait_reply(struct dt_vfu_server *s, uint16_t id, uint16_t cmd, struct vfu_msg *msg)
{
	int ms = s->opts.dma_timeout_ms ? s->opts.dma_timeout_ms : 10000;
	uint64_t deadline = sys_deadline_ms(ms);

	for (;;) {
		struct pollfd p = {.fd = s->sock, .events = POLLIN};
		int r = sys_poll_until(&p, 1, deadline);

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0)
			return r;
		r = vfu_msg_recv(s->sock, s->dbuf, s->max_xfer + VFU_SRV_MSG_SLACK, s->max_fds,
				 msg);

		if (r == -EBADMSG) {
			/* Bad descriptors (closed): refused in turn, as process() would. */
			if (vfu_hdr_is_reply(&msg->hdr))
				continue;
			msg->len = 0;
			r = vfu_server_queue(s, msg, EINVAL);
			if (r)
				return r;
			continue;
		}
		if (r)
			return r;
		if (!vfu_hdr_is_reply(&msg->hdr)) {
			r = vfu_server_queue(s, msg, 0);
			if (r) {
				vfu_msg_close_fds(msg);
				return r;
			}
			continue;
		}
		vfu_msg_close_fds(msg);
		if (msg->hdr.msg_id == id && msg->hdr.cmd == cmd)
			return 0;
		log_warn("vfio-user server: stray reply %s id %u dropped",
			 vfu_cmd_name(msg->hdr.cmd), msg->hdr.msg_id);
	}
}

/* One DMA_READ / DMA_WRITE exchange of n <= transfer size bytes. */
static int dma_message(struct dt_vfu_server *s, uint64_t iova, uint8_t *buf, uint64_t n, bool write)
{
	struct vfu_dma_access a = {.addr = iova, .count = n}, got;
	struct iovec iov[2] = {{.iov_base = &a, .iov_len = sizeof(a)},
			       {.iov_base = buf, .iov_len = n}};
	uint16_t cmd = write ? VFU_CMD_DMA_WRITE : VFU_CMD_DMA_READ;
	uint16_t id = vfu_next_id(&s->next_id);
	struct vfu_msg msg;
	int r;

	r = vfu_msg_sendv(s->sock, id, cmd, VFU_F_TYPE_COMMAND, 0, iov, write ? 2 : 1, NULL, 0);
	if (!r)
		r = wait_reply(s, id, cmd, &msg);
	if (r) {
		/* The socket is out of use: let process() see it and clean up. */
		sys_shutdown(s->sock, SHUT_RDWR);
		return log_fail(r == -ECONNRESET ? -ENOTCONN : r, "%s: %s", vfu_cmd_name(cmd),
				strerror(-r));
	}
	if (msg.hdr.flags & VFU_F_ERROR)
		return log_fail(-EIO, "%s at 0x%llx: the client says %s", vfu_cmd_name(cmd),
				(unsigned long long)iova, strerror((int)msg.hdr.error));
	/* The DMA_WRITE reply's count is 4 bytes in the spec's table, 8 in its struct. */
	if (msg.len < (write ? 12u : sizeof(got)))
		return log_fail(-EPROTO, "%s reply of %u bytes", vfu_cmd_name(cmd), msg.len);
	memset(&got, 0, sizeof(got));
	memcpy(&got, msg.payload, msg.len < sizeof(got) ? msg.len : sizeof(got));
	if (write && msg.len < sizeof(got))
		got.count &= 0xffffffffull;
	if (got.addr != iova || got.count != n || (!write && msg.len != sizeof(got) + n))
		return log_fail(-EPROTO, "%s reply: 0x%llx +%llu in %u bytes for 0x%llx +%llu",
				vfu_cmd_name(cmd), (unsigned long long)got.addr,
				(unsigned long long)got.count, msg.len, (unsigned long long)iova,
				(unsigned long long)n);
	if (!write)
		memcpy(buf, msg.payload + sizeof(got), n);
	return 0;
}

static int dma_rw_locked(struct dt_vfu_server *s, uint64_t iova, void *buf, size_t len, bool write)
{
	uint32_t need = write ? VFU_DMA_MAP_F_WRITE : VFU_DMA_MAP_F_READ;
	uint64_t cur = iova, end = iova + len;
	uint64_t xfer;
	uint8_t *p = buf;
	int i;

	/* Checked whole before anything moves. */
	i = vfu_map_find(s, cur);
	while (cur < end) {
		if (i < 0 || (uint32_t)i >= s->nmaps || s->maps[i].iova > cur)
			return log_fail(-EINVAL, "dt_vfu_dma_rw: 0x%llx is not mapped",
					(unsigned long long)cur);
		if (!(s->maps[i].flags & need))
			return log_fail(-EPERM, "dt_vfu_dma_rw: mapping at 0x%llx is not %s",
					(unsigned long long)s->maps[i].iova,
					write ? "writable" : "readable");
		if (!s->maps[i].has_fd && s->sock < 0)
			return log_fail(-ENOTCONN, "dt_vfu_dma_rw: no client");
		cur = s->maps[i].iova + s->maps[i].size;
		i++;
	}
	xfer = s->max_xfer;
	if (s->peer.max_data_xfer_size < xfer)
		xfer = s->peer.max_data_xfer_size;
	for (cur = iova, i = vfu_map_find(s, iova); cur < end; i++) {
		const struct vfu_map *m = &s->maps[i];
		uint64_t n = m->iova + m->size - cur;
		int r;

		if (n > end - cur)
			n = end - cur;
		if (m->has_fd) {
			r = dt_dma_rw(s->dev, cur, p, n, write);
			if (r < 0)
				return r;
		} else {
			for (uint64_t off = 0; off < n;) {
				uint64_t k = n - off < xfer ? n - off : xfer;

				r = dma_message(s, cur + off, p + off, k, write);
				if (r)
					return r;
				if (write)
					dt_dma_log(s->dev, cur + off, k);
				off += k;
			}
		}
		cur += n;
		p += n;
	}
	return 0;
}

int dt_vfu_dma_rw(struct dt_vfu_server *s, uint64_t iova, void *buf, size_t len, bool write)
{
	int r;

	if (!s || !buf || !len || iova + len < iova)
		return log_fail(-EINVAL, "dt_vfu_dma_rw: bad arguments");
	pthread_rwlock_rdlock(&s->maps_lock);
	r = dma_rw_locked(s, iova, buf, len, write);
	pthread_rwlock_unlock(&s->maps_lock);
	return r;
}
