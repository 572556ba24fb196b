/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/client_dma.c - the client's DMA side: mappings (DMA_MAP / DMA_UNMAP, with the
 * dirty bitmap), the server's DMA_READ / DMA_WRITE requests, DMA logging and its reports,
 * and the mirror container that carries the device's dirty pages into a dirty set.
 *
 * The mirror: a local dt_iommu holding every mapping the server has (same iova, the memory
 * as this process sees it) and one LOGGING device for the remote device. Pages the device
 * reports (DMA_LOGGING_REPORT, or the bitmap of an unmap) are replayed with dt_dma_log(),
 * pages written through DMA_WRITE with dt_dma_rw(): the mirror's report then has them in
 * class "logged" / "dma_rw", which a dirty set harvests as DT_CLASS_DEVICE.
 *
 * Losing nothing: a report the server may have cleared but whose reply we could not use
 * marks its whole range dirty in the mirror (dt_iommu_merge_back); a dead connection marks
 * every logged range on every sync, as a device that cannot track would. A mapping removed
 * while logging stays in the mirror, "retired", until logging stops, so its last dirty
 * pages are still harvested; the server no longer has it and the client serves no DMA to it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "sys/sys.h"
#include "vfio_user/client_priv.h"

#define REPORT_HDR (sizeof(struct vfu_device_feature) + sizeof(struct vfu_dma_logging_report))

static uint64_t bitmap_bytes(uint64_t nbits)
{
	return (nbits + 63) / 64 * 8;
}

int client_mirror_init(struct dt_vfu_client *c)
{
	c->mirror = dt_iommu_new();
	if (!c->mirror)
		return log_fail(-ENOMEM, "vfio-user client: no memory for the mirror container");
	c->mdev = dt_device_attach(c->mirror, DT_DEVICE_LOGGING);
	if (!c->mdev)
		return log_fail(-ENOMEM, "vfio-user client: no memory for the mirror device");
	return 0;
}

void client_mirror_fini(struct dt_vfu_client *c)
{
	for (unsigned i = 0; i < c->nmaps; i++)
		if (c->maps[i].own_mmap)
			sys_munmap(c->maps[i].vaddr, c->maps[i].size);
	xfree(c->maps);
	c->maps = NULL;
	c->nmaps = 0;
	dt_iommu_free(c->mirror); /* detaches mdev */
	c->mirror = NULL;
	c->mdev = NULL;
	xfree(c->log_ranges);
	c->log_ranges = NULL;
}

struct dt_iommu *dt_vfu_client_mirror(struct dt_vfu_client *c)
{
	return c ? c->mirror : NULL;
}

struct dt_device *dt_vfu_client_mirror_device(struct dt_vfu_client *c)
{
	return c ? c->mdev : NULL;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int mirror_map(struct dt_vfu_client *c, const struct client_map *m)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = (m->prot & PROT_READ ? VFIO_DMA_MAP_FLAG_READ : 0) |
			 (m->prot & PROT_WRITE ? VFIO_DMA_MAP_FLAG_WRITE : 0),
		.vaddr = (uintptr_t)m->vaddr,
		.iova = m->iova,
		.size = m->size,
	};

	return dt_vfio_ioctl(c->mirror, VFIO_IOMMU_MAP_DMA, &map);
}

static void mirror_unmap(struct dt_vfu_client *c, unsigned i)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap), .iova = c->maps[i].iova, .size = c->maps[i].size};
	int ret = dt_vfio_ioctl(c->mirror, VFIO_IOMMU_UNMAP_DMA, &unmap);

	if (ret)
		log_warn("vfio-user client: mirror unmap of 0x%llx+0x%llx: %d",
			 (unsigned long long)c->maps[i].iova, (unsigned long long)c->maps[i].size,
			 ret);
	if (c->maps[i].own_mmap)
		sys_munmap(c->maps[i].vaddr, c->maps[i].size);
	c->maps[i] = c->maps[--c->nmaps];
}

static bool inside_logged(const struct dt_vfu_client *c, uint64_t iova, uint64_t size)
{
	for (unsigned i = 0; i < c->nlog_ranges; i++)
		if (iova >= c->log_ranges[i].iova &&
		    iova + size <= c->log_ranges[i].iova + c->log_ranges[i].length)
			return true;
	return false;
}

int dt_vfu_client_dma_map(struct dt_vfu_client *c, uint64_t iova, uint64_t size, int fd,
			  uint64_t offset, void *vaddr, int prot)
{
	struct vfu_dma_map dm = {
		.argsz = sizeof(dm), .offset = fd >= 0 ? offset : 0, .addr = iova, .size = size};
	struct iovec iov = {&dm, sizeof(dm)};
	struct client_map m = {.iova = iova, .size = size, .vaddr = vaddr, .prot = prot};
	uint64_t align;
	unsigned live = 0;
	struct client_reply r;
	struct client_map *grown;
	int ret, err;

	if (!c)
		return log_fail(-EINVAL, "dt_vfu_client_dma_map: NULL client");
	pthread_mutex_lock(&c->lock);
	align = c->theirs.pgsizes & -c->theirs.pgsizes; /* the smallest page it supports */
	if (align < CLIENT_PAGE)
		align = CLIENT_PAGE;
	if (!size || (iova | size) & (align - 1) || iova + size - 1 < iova ||
	    !(prot & (PROT_READ | PROT_WRITE)) || prot & ~(PROT_READ | PROT_WRITE) ||
	    (fd < 0 && !vaddr) || (uintptr_t)vaddr & (CLIENT_PAGE - 1) ||
	    (fd >= 0 && offset & (CLIENT_PAGE - 1))) {
		ret = log_fail(
			-EINVAL,
			"dt_vfu_client_dma_map: 0x%llx+0x%llx: iova and size aligned to %llu, "
			"size > 0, prot READ|WRITE, a page-aligned vaddr (required without fd)",
			(unsigned long long)iova, (unsigned long long)size,
			(unsigned long long)align);
		goto out;
	}
	for (unsigned i = 0; i < c->nmaps; i++) {
		if (!overlaps(iova, size, c->maps[i].iova, c->maps[i].size)) {
			live += !c->maps[i].retired;
			continue;
		}
		ret = log_fail(c->maps[i].retired ? -EBUSY : -EEXIST,
			       "dt_vfu_client_dma_map: 0x%llx+0x%llx overlaps %s 0x%llx+0x%llx",
			       (unsigned long long)iova, (unsigned long long)size,
			       c->maps[i].retired ? "a range retired until DMA logging stops"
						  : "the mapping",
			       (unsigned long long)c->maps[i].iova,
			       (unsigned long long)c->maps[i].size);
		goto out;
	}
	if (live >= c->theirs.max_dma_maps) {
		ret = log_fail(-E2BIG,
			       "dt_vfu_client_dma_map: the server takes %u mappings at most",
			       c->theirs.max_dma_maps);
		goto out;
	}
	if (c->logging && !inside_logged(c, iova, size)) {
		ret = log_fail(
			-EBUSY,
			"dt_vfu_client_dma_map: 0x%llx+0x%llx is outside the DMA-logged ranges: "
			"map before dt_vfu_client_dma_logging_start",
			(unsigned long long)iova, (unsigned long long)size);
		goto out;
	}
	if (fd >= 0 && c->theirs.max_msg_fds < 1) {
		ret = log_fail(-ENOTSUP, "dt_vfu_client_dma_map: the server takes no fds");
		goto out;
	}
	if (fd >= 0 && !vaddr) {
		m.vaddr = sys_mmap(NULL, size, PROT_READ | (prot & PROT_WRITE), MAP_SHARED, fd,
				   (long)offset, &err);
		if (!m.vaddr) {
			ret = log_fail(err, "dt_vfu_client_dma_map: mmap of fd %d at 0x%llx: %d",
				       fd, (unsigned long long)offset, err);
			goto out;
		}
		m.own_mmap = true;
	}
	grown = xrealloc_array(c->maps, c->nmaps + 1, sizeof(*grown));
	if (!grown) {
		ret = log_fail(-ENOMEM, "dt_vfu_client_dma_map: out of memory");
		goto undo_mmap;
	}
	c->maps = grown;
	ret = mirror_map(c, &m);
	if (ret) {
		log_err("dt_vfu_client_dma_map: the mirror refused 0x%llx+0x%llx (%d)",
			(unsigned long long)iova, (unsigned long long)size, ret);
		goto undo_mmap;
	}
	c->maps[c->nmaps++] = m;
	dm.flags = (prot & PROT_READ ? VFU_DMA_MAP_F_READ : 0) |
		   (prot & PROT_WRITE ? VFU_DMA_MAP_F_WRITE : 0);
	ret = client_xact(c, VFU_CMD_DMA_MAP, &iov, 1, fd >= 0 ? &fd : NULL, fd >= 0, 0, &r);
	if (!ret) {
		client_reply_done(&r);
		goto out;
	}
	/* The server refused (or the link broke): the mirror forgets it too (and our mmap). */
	mirror_unmap(c, c->nmaps - 1);
	goto out;
undo_mmap:
	if (m.own_mmap)
		sys_munmap(m.vaddr, size);
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int find_map(const struct dt_vfu_client *c, uint64_t iova, uint64_t size)
{
	for (unsigned i = 0; i < c->nmaps; i++)
		if (!c->maps[i].retired && c->maps[i].iova == iova && c->maps[i].size == size)
			return (int)i;
	return -1;
}

/* Log the set bits of a bitmap at pgsize (bit 0 = iova, nbits bits) into the mirror, each
 * run clipped to [iova, iova + limit). Pages outside the mirror's mappings are skipped with
 * a warning (the device cannot have written memory it had no mapping for). Returns the
 * number of set bits. */
static uint64_t log_bits(struct dt_vfu_client *c, uint64_t iova, uint64_t limit, uint64_t pgsize,
			 const uint8_t *bits, uint64_t nbits)
{
	uint64_t n = 0, skipped = 0;

	for (uint64_t w = 0; w < bitmap_bytes(nbits) / 8; w++) {
		uint64_t word;

		memcpy(&word, bits + w * 8, 8);
		if (w == nbits / 64 && nbits % 64)
			word &= mask_range(0, nbits % 64);
		while (word) {
			unsigned b = (unsigned)__builtin_ctzll(word);
			unsigned e = b;
			uint64_t start, len;

			while (e < 64 && word >> e & 1)
				e++;
			word &= e == 64 ? 0 : ~0ull << e;
			n += e - b;
			start = (w * 64 + b) * pgsize;
			len = (uint64_t)(e - b) * pgsize;
			if (start >= limit)
				continue;
			if (start + len > limit)
				len = limit - start;
			if (dt_dma_log(c->mdev, iova + start, len) == 0)
				continue;
			for (uint64_t off = 0; off < len; off += CLIENT_PAGE)
				skipped +=
					dt_dma_log(c->mdev, iova + start + off, CLIENT_PAGE) != 0;
		}
	}
	if (skipped)
		log_warn("vfio-user client: %llu dirty pages reported outside every mapping "
			 "(ignored)",
			 (unsigned long long)skipped);
	return n;
}

/* OR nbytes of src into dst (both any alignment). */
static void or_bytes(void *dst, const uint8_t *src, uint64_t nbytes)
{
	uint8_t *d = dst;

	for (uint64_t i = 0; i < nbytes; i++)
		d[i] |= src[i];
}

int dt_vfu_client_dma_unmap(struct dt_vfu_client *c, uint64_t iova, uint64_t size, uint64_t pgsize,
			    void *bitmap, uint64_t bitmap_size)
{
	struct {
		struct vfu_dma_unmap u;
		struct vfu_bitmap b;
	} req = {{.addr = iova, .size = size}, {0}};
	struct iovec iov = {&req, sizeof(req.u)};
	uint64_t nbits = 0, need = 0;
	struct client_reply r;
	size_t want;
	int i, ret;

	if (!c)
		return log_fail(-EINVAL, "dt_vfu_client_dma_unmap: NULL client");
	pthread_mutex_lock(&c->lock);
	i = find_map(c, iova, size);
	if (i < 0) {
		ret = log_fail(-EINVAL, "dt_vfu_client_dma_unmap: 0x%llx+0x%llx is not a mapping",
			       (unsigned long long)iova, (unsigned long long)size);
		goto out;
	}
	if (bitmap) {
		nbits = is_pow2(pgsize) ? (size + pgsize - 1) / pgsize : 0;
		need = bitmap_bytes(nbits);
		if (!is_pow2(pgsize) || pgsize < CLIENT_PAGE || bitmap_size < need) {
			ret = log_fail(-EINVAL,
				       "dt_vfu_client_dma_unmap: page size %llu (a power of two >= "
				       "4096), bitmap of %llu bytes (%llu needed)",
				       (unsigned long long)pgsize, (unsigned long long)bitmap_size,
				       (unsigned long long)need);
			goto out;
		}
		if (!c->logging) {
			ret = log_fail(-EINVAL, "dt_vfu_client_dma_unmap: a dirty bitmap needs DMA "
						"logging on");
			goto out;
		}
		if (need > c->bitmap_max) {
			ret = log_fail(-E2BIG,
				       "dt_vfu_client_dma_unmap: a bitmap of %llu bytes, the "
				       "negotiated maximum is %llu",
				       (unsigned long long)need, (unsigned long long)c->bitmap_max);
			goto out;
		}
	} else if (c->logging) {
		/* Without the bitmap the server would drop the range's dirty pages: fetch them
		 * for the mirror anyway, at the finest page the bitmap limit allows (a coarser
		 * page only marks more). */
		pgsize = CLIENT_PAGE;
		while (bitmap_bytes((size + pgsize - 1) / pgsize) > c->bitmap_max)
			pgsize *= 2;
		nbits = (size + pgsize - 1) / pgsize;
		need = bitmap_bytes(nbits);
	}
	if (need) {
		req.u.flags = VFU_DMA_UNMAP_F_GET_DIRTY_BITMAP;
		req.b.pgsize = pgsize;
		req.b.size = need;
		iov.iov_len = sizeof(req);
	}
	want = iov.iov_len + need;
	req.u.argsz = (uint32_t)want;
	ret = client_xact(c, VFU_CMD_DMA_UNMAP, &iov, 1, NULL, 0, want, &r);
	if (ret)
		goto out;
	if (r.msg.len != want && !(!need && r.msg.len == 0)) {
		client_reply_done(&r);
		ret = client_break(
			c, log_fail(-EPROTO,
				    "vfio-user client: DMA_UNMAP reply of %u bytes, %zu expected",
				    r.msg.len, want));
		goto out;
	}
	if (r.msg.len) {
		struct vfu_dma_unmap gu;
		struct vfu_bitmap gb = {0};

		memcpy(&gu, r.msg.payload, sizeof(gu));
		if (need)
			memcpy(&gb, r.msg.payload + sizeof(gu), sizeof(gb));
		if (gu.addr != iova || gu.size != size ||
		    (need && (gb.pgsize != pgsize || gb.size != need))) {
			client_reply_done(&r);
			ret = client_break(
				c,
				log_fail(-EPROTO,
					 "vfio-user client: DMA_UNMAP of 0x%llx+0x%llx answered "
					 "for 0x%llx+0x%llx",
					 (unsigned long long)iova, (unsigned long long)size,
					 (unsigned long long)gu.addr, (unsigned long long)gu.size));
			goto out;
		}
	}
	if (need) {
		const uint8_t *bits = r.msg.payload + sizeof(req);
		uint8_t tail = nbits % 8 ? (uint8_t)((1u << (nbits % 8)) - 1) : 0xff;

		if (bitmap) {
			or_bytes(bitmap, bits, nbits / 8);
			if (nbits % 8)
				((uint8_t *)bitmap)[nbits / 8] |= bits[nbits / 8] & tail;
		}
		if (c->logging)
			log_bits(c, iova, size, pgsize, bits, nbits);
	}
	client_reply_done(&r);
	if (c->logging)
		c->maps[i].retired = true; /* its dirty pages wait in the mirror for a harvest */
	else
		mirror_unmap(c, (unsigned)i);
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* ---- the server's DMA requests ------------------------------------------------------------ */

/* [addr, addr + count) lies in live mappings allowing prot. */
static int check_live(const struct dt_vfu_client *c, uint64_t addr, uint64_t count, int prot)
{
	uint64_t end = addr + count;

	if (!count || end < addr)
		return -EINVAL;
	while (addr < end) {
		unsigned i;

		for (i = 0; i < c->nmaps; i++)
			if (!c->maps[i].retired && addr >= c->maps[i].iova &&
			    addr - c->maps[i].iova < c->maps[i].size)
				break;
		if (i == c->nmaps)
			return -EFAULT;
		if ((c->maps[i].prot & prot) != prot)
			return -EPERM;
		addr = c->maps[i].iova + c->maps[i].size;
	}
	return 0;
}

int client_serve_dma(struct dt_vfu_client *c, const struct vfu_msg *msg)
{
	bool write = msg->hdr.cmd == VFU_CMD_DMA_WRITE;
	struct vfu_dma_access da;
	uint8_t *buf = NULL;
	int err, ret;

	if (msg->len < sizeof(da)) {
		log_err("vfio-user client: %s of %u bytes", vfu_cmd_name(msg->hdr.cmd), msg->len);
		return vfu_reply_error(c->sock, &msg->hdr, EINVAL);
	}
	memcpy(&da, msg->payload, sizeof(da));
	if (da.count > c->ours.max_data_xfer_size ||
	    msg->len != sizeof(da) + (write ? da.count : 0)) {
		log_err("vfio-user client: %s of %llu bytes in a %u-byte message (at most %llu)",
			vfu_cmd_name(msg->hdr.cmd), (unsigned long long)da.count, msg->len,
			(unsigned long long)c->ours.max_data_xfer_size);
		return vfu_reply_error(c->sock, &msg->hdr, EINVAL);
	}
	err = check_live(c, da.addr, da.count, write ? PROT_WRITE : PROT_READ);
	if (!err && !write && !(buf = xzalloc(da.count)))
		err = -ENOMEM;
	if (!err)
		err = dt_dma_rw(c->mdev, da.addr, write ? msg->payload + sizeof(da) : buf, da.count,
				write);
	if (err) {
		log_err("vfio-user client: %s of %llu bytes at 0x%llx refused: %s",
			vfu_cmd_name(msg->hdr.cmd), (unsigned long long)da.count,
			(unsigned long long)da.addr, strerror(-err));
		xfree(buf);
		return vfu_reply_error(c->sock, &msg->hdr, err);
	}
	if (msg->hdr.flags & VFU_F_NO_REPLY) {
		xfree(buf);
		return 0;
	}
	{
		struct iovec iov[2] = {{&da, sizeof(da)}, {buf, write ? 0 : da.count}};

		ret = vfu_replyv(c->sock, &msg->hdr, iov, write ? 1 : 2, NULL, 0);
	}
	xfree(buf);
	return ret;
}

/* ---- DMA logging ------------------------------------------------------------------------ */

static int range_cmp(const void *a, const void *b)
{
	const struct dt_vfu_range *x = a, *y = b;

	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

/* Every live mapping, sorted, adjacent ones merged. */
static int ranges_from_maps(struct dt_vfu_client *c, struct dt_vfu_range **out, unsigned *n)
{
	struct dt_vfu_range *r = xcalloc(c->nmaps + 1, sizeof(*r));
	unsigned k = 0;

	if (!r)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nmaps; i++)
		if (!c->maps[i].retired)
			r[k++] = (struct dt_vfu_range){c->maps[i].iova, c->maps[i].size};
	qsort(r, k, sizeof(*r), range_cmp);
	*n = 0;
	for (unsigned i = 0; i < k; i++) {
		if (*n && r[*n - 1].iova + r[*n - 1].length == r[i].iova)
			r[*n - 1].length += r[i].length;
		else
			r[(*n)++] = r[i];
	}
	*out = r;
	return 0;
}

int dt_vfu_client_dma_logging_start(struct dt_vfu_client *c, const struct dt_vfu_range *ranges,
				    unsigned nranges, uint64_t *page_size)
{
	struct vfu_dma_logging_control ctl = {.page_size = page_size && *page_size ? *page_size
										   : CLIENT_PAGE};
	struct dt_vfu_range *rs = NULL;
	struct client_reply r;
	struct iovec iov[2];
	size_t max;
	int ret;

	if (!c || (nranges && !ranges))
		return log_fail(-EINVAL, "dt_vfu_client_dma_logging_start: NULL argument");
	pthread_mutex_lock(&c->lock);
	if (c->logging) {
		ret = log_fail(-EBUSY, "dt_vfu_client_dma_logging_start: logging is on already");
		goto out;
	}
	if (!c->info.dma_logging) {
		ret = log_fail(-ENOTSUP, "dt_vfu_client_dma_logging_start: the device has no DMA "
					 "logging");
		goto out;
	}
	if (!is_pow2(ctl.page_size)) {
		ret = log_fail(-EINVAL, "dt_vfu_client_dma_logging_start: page size %llu",
			       (unsigned long long)ctl.page_size);
		goto out;
	}
	if (nranges) {
		rs = xcalloc(nranges, sizeof(*rs));
		if (!rs) {
			ret = log_fail(-ENOMEM, "dt_vfu_client_dma_logging_start: out of memory");
			goto out;
		}
		memcpy(rs, ranges, nranges * sizeof(*rs));
		qsort(rs, nranges, sizeof(*rs), range_cmp);
	} else if ((ret = ranges_from_maps(c, &rs, &nranges))) {
		log_err("dt_vfu_client_dma_logging_start: out of memory");
		goto out;
	}
	ret = 0;
	for (unsigned i = 0; i < nranges && !ret; i++)
		if (!rs[i].length || (rs[i].iova | rs[i].length) & (CLIENT_PAGE - 1) ||
		    rs[i].iova + rs[i].length - 1 < rs[i].iova ||
		    (i && rs[i - 1].iova + rs[i - 1].length > rs[i].iova))
			ret = log_fail(
				-EINVAL,
				"dt_vfu_client_dma_logging_start: range 0x%llx+0x%llx is empty, "
				"unaligned, wraps or overlaps another",
				(unsigned long long)rs[i].iova, (unsigned long long)rs[i].length);
	if (!ret && (!nranges || nranges > CLIENT_MAX_LOG_RANGES))
		ret = log_fail(nranges ? -E2BIG : -EINVAL,
			       "dt_vfu_client_dma_logging_start: %u ranges (1 to %u; with none "
			       "given, every mapping)",
			       nranges, CLIENT_MAX_LOG_RANGES);
	if (ret)
		goto out;
	ctl.num_ranges = nranges;
	iov[0] = (struct iovec){&ctl, sizeof(ctl)};
	iov[1] = (struct iovec){rs, nranges * sizeof(*rs)};
	max = sizeof(ctl) + nranges * sizeof(*rs);
	{
		/* client_feature with two data parts: build them as one buffer. */
		uint8_t *data = xzalloc(max);

		if (!data) {
			ret = log_fail(-ENOMEM, "dt_vfu_client_dma_logging_start: out of memory");
			goto out;
		}
		memcpy(data, iov[0].iov_base, iov[0].iov_len);
		memcpy(data + iov[0].iov_len, iov[1].iov_base, iov[1].iov_len);
		ret = client_feature(c, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_START, data, max,
				     max, &r);
		xfree(data);
	}
	if (ret)
		goto out;
	if (r.msg.len != sizeof(struct vfu_device_feature) + max) {
		client_reply_done(&r);
		ret = client_break(c,
				   log_fail(-EPROTO,
					    "vfio-user client: DMA_LOGGING_START reply of %u bytes",
					    r.msg.len));
		goto out;
	}
	memcpy(&ctl, r.msg.payload + sizeof(struct vfu_device_feature), sizeof(ctl));
	client_reply_done(&r);
	if (!is_pow2(ctl.page_size)) {
		ret = client_break(
			c, log_fail(-EPROTO,
				    "vfio-user client: DMA_LOGGING_START chose page size %llu",
				    (unsigned long long)ctl.page_size));
		goto out;
	}
	ret = dt_iommu_dirty_start(c->mirror);
	if (ret) {
		log_err("vfio-user client: the mirror would not start tracking (%d)", ret);
		goto out;
	}
	xfree(c->log_ranges);
	c->log_ranges = rs;
	rs = NULL;
	c->nlog_ranges = nranges;
	c->log_page_size = ctl.page_size;
	c->logging = true;
	if (page_size)
		*page_size = ctl.page_size;
out:
	xfree(rs);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int dt_vfu_client_dma_logging_stop(struct dt_vfu_client *c)
{
	struct client_reply r;
	int ret = 0;

	if (!c)
		return log_fail(-EINVAL, "dt_vfu_client_dma_logging_stop: NULL client");
	pthread_mutex_lock(&c->lock);
	if (!c->logging)
		goto out;
	ret = client_feature(c, VFU_FEATURE_SET | VFU_FEATURE_DMA_LOGGING_STOP, NULL, 0, 0, &r);
	if (!ret)
		client_reply_done(&r);
	else if (!c->broken)
		goto out; /* the server still logs: so do we */
	ret = 0;
	c->logging = false;
	dt_iommu_dirty_stop(c->mirror);
	for (unsigned i = c->nmaps; i-- > 0;)
		if (c->maps[i].retired)
			mirror_unmap(c, i);
	xfree(c->log_ranges);
	c->log_ranges = NULL;
	c->nlog_ranges = 0;
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* One DMA_LOGGING_REPORT of nbits bits (fits the negotiated bitmap size); the bitmap is
 * left in reply (after REPORT_HDR) for the caller, who releases it. */
static int report_once(struct dt_vfu_client *c, uint64_t iova, uint64_t nbits, uint64_t pgsize,
		       struct client_reply *r)
{
	struct vfu_dma_logging_report rep = {.iova = iova,
					     .length = nbits * pgsize,
					     .page_size = pgsize},
				      got;
	uint64_t need = bitmap_bytes(nbits), stray;
	uint8_t *bits;
	int ret = client_feature(c, VFU_FEATURE_GET | VFU_FEATURE_DMA_LOGGING_REPORT, &rep,
				 sizeof(rep), sizeof(rep) + need, r);

	if (ret)
		return ret;
	if (r->msg.len != REPORT_HDR + need) {
		client_reply_done(r);
		return client_break(
			c,
			log_fail(-EPROTO,
				 "vfio-user client: DMA_LOGGING_REPORT of %llu pages: a reply of "
				 "%u bytes, %llu expected",
				 (unsigned long long)nbits, r->msg.len,
				 (unsigned long long)(REPORT_HDR + need)));
	}
	memcpy(&got, r->msg.payload + sizeof(struct vfu_device_feature), sizeof(got));
	if (got.iova != rep.iova || got.length != rep.length || got.page_size != rep.page_size) {
		client_reply_done(r);
		return client_break(
			c, log_fail(-EPROTO,
				    "vfio-user client: DMA_LOGGING_REPORT of 0x%llx+0x%llx/%llu "
				    "answered for 0x%llx+0x%llx/%llu",
				    (unsigned long long)rep.iova, (unsigned long long)rep.length,
				    (unsigned long long)rep.page_size, (unsigned long long)got.iova,
				    (unsigned long long)got.length,
				    (unsigned long long)got.page_size));
	}
	bits = r->msg.payload + REPORT_HDR;
	if (nbits % 64) {
		memcpy(&stray, bits + need - 8, 8);
		if (stray & ~mask_range(0, nbits % 64)) {
			log_warn("vfio-user client: DMA_LOGGING_REPORT set bits past the range "
				 "(ignored)");
			stray &= mask_range(0, nbits % 64);
			memcpy(bits + need - 8, &stray, 8);
		}
	}
	return 0;
}

static uint64_t popcount_bytes(const uint8_t *p, uint64_t nbytes)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i + 8 <= nbytes; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		n += (uint64_t)__builtin_popcountll(w);
	}
	return n;
}

/* Bits per request: the negotiated bitmap bytes, whole words. */
static uint64_t chunk_bits(const struct dt_vfu_client *c)
{
	return c->bitmap_max * 8;
}

int64_t dt_vfu_client_report(struct dt_vfu_client *c, uint64_t iova, uint64_t length,
			     uint64_t page_size, void *bitmap, uint64_t bitmap_size)
{
	uint64_t nbits, done = 0;
	int64_t count = 0;
	int ret = 0;

	if (!c || !bitmap)
		return log_fail(-EINVAL, "dt_vfu_client_report: NULL argument");
	if (!is_pow2(page_size) || !length || (iova | length) & (page_size - 1) ||
	    iova + length - 1 < iova)
		return log_fail(-EINVAL,
				"dt_vfu_client_report: 0x%llx+0x%llx at page size %llu: a power of "
				"two, iova and length aligned to it, length > 0, no wrap",
				(unsigned long long)iova, (unsigned long long)length,
				(unsigned long long)page_size);
	nbits = length / page_size;
	if (bitmap_size < bitmap_bytes(nbits))
		return log_fail(-EINVAL, "dt_vfu_client_report: bitmap of %llu bytes, %llu needed",
				(unsigned long long)bitmap_size,
				(unsigned long long)bitmap_bytes(nbits));
	pthread_mutex_lock(&c->lock);
	if (!c->logging)
		ret = log_fail(-EINVAL, "dt_vfu_client_report: DMA logging is off");
	while (!ret && done < nbits) {
		uint64_t n = nbits - done < chunk_bits(c) ? nbits - done : chunk_bits(c);
		struct client_reply r;

		ret = report_once(c, iova + done * page_size, n, page_size, &r);
		if (ret)
			break;
		/* done is a multiple of 64: whole bytes of the caller's bitmap. */
		or_bytes((uint8_t *)bitmap + done / 8, r.msg.payload + REPORT_HDR, (n + 7) / 8);
		count += (int64_t)popcount_bytes(r.msg.payload + REPORT_HDR, bitmap_bytes(n));
		client_reply_done(&r);
		done += n;
	}
	pthread_mutex_unlock(&c->lock);
	return ret ? ret : count;
}

/* Conservatively mark [iova, iova + len) dirty in the mirror (what the server may have
 * cleared without our seeing it); parts outside the mappings are ignored. */
static void mark_lost(struct dt_vfu_client *c, uint64_t iova, uint64_t len)
{
	int ret = dt_iommu_merge_back(c->mirror, iova, len);

	if (ret)
		log_err("vfio-user client: could not mark 0x%llx+0x%llx dirty (%d): pages may be "
			"lost",
			(unsigned long long)iova, (unsigned long long)len, ret);
}

int64_t dt_vfu_client_sync(struct dt_vfu_client *c)
{
	int64_t count = 0;
	int ret = 0;

	if (!c)
		return log_fail(-EINVAL, "dt_vfu_client_sync: NULL client");
	pthread_mutex_lock(&c->lock);
	if (!c->logging)
		goto out;
	for (unsigned i = 0; i < c->nlog_ranges && !ret; i++) {
		const struct dt_vfu_range *lr = &c->log_ranges[i];
		uint64_t nbits = lr->length / CLIENT_PAGE;

		for (uint64_t done = 0; done < nbits && !ret;) {
			uint64_t n = nbits - done < chunk_bits(c) ? nbits - done : chunk_bits(c);
			uint64_t at = lr->iova + done * CLIENT_PAGE;
			struct client_reply r;

			ret = c->broken ? -ECONNRESET : report_once(c, at, n, CLIENT_PAGE, &r);
			if (ret) {
				if (!c->broken)
					mark_lost(c, at, n * CLIENT_PAGE);
				break;
			}
			count += (int64_t)log_bits(c, at, n * CLIENT_PAGE, CLIENT_PAGE,
						   r.msg.payload + REPORT_HDR, n);
			client_reply_done(&r);
			done += n;
		}
	}
	if (ret && c->broken) {
		/* The device's log is out of reach: every logged page may be dirty. */
		for (unsigned i = 0; i < c->nlog_ranges; i++)
			mark_lost(c, c->log_ranges[i].iova, c->log_ranges[i].length);
		log_err("vfio-user client: sync: connection lost, every logged range marked dirty");
	}
out:
	pthread_mutex_unlock(&c->lock);
	return ret ? ret : count;
}

static int sync_hook(void *opaque)
{
	int64_t n = dt_vfu_client_sync(opaque);

	return n < 0 ? (int)n : 0;
}

int dt_vfu_client_add_to_set(struct dt_vfu_client *c, struct dt_dirty_set *set, uint64_t iova_base)
{
	int ret;

	if (!c || !set)
		return log_fail(-EINVAL, "dt_vfu_client_add_to_set: NULL argument");
	ret = dt_dirty_set_add_iommu(set, c->mirror, iova_base);
	if (!ret)
		ret = dt_dirty_set_add_pre_harvest(set, sync_hook, c);
	return ret;
}
