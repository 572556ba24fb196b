/* SPDX-License-Identifier: MIT */
/*
 * fuzz/fuzz_vfio_ioctl.c - libFuzzer target: the input is a program run against one
 * container.
 *
 * Each input starts from a fresh container holding three mappings (64 pages RW and 32 pages
 * read-only, adjacent, and 16 pages at the very top of the IOVA space) and three devices
 * (EMULATED, PASSTHROUGH, LOGGING). The input is then read as a sequence of operations: a
 * selector byte, then the fields of that operation, little-endian, zero once the input runs
 * out. The operations are the dt_vfio_ioctl requests with their structs filled from the
 * input, and pin, unpin, dma_rw, dma_log, report, pinned, merge-back, attach/detach and
 * dt_device_ioctl (device DMA logging) with fuzzed arguments.
 *
 * The library gets arbitrary values but never a wild pointer: every bitmap, data or ranges
 * pointer points at a heap buffer of exactly the size declared to the library (at most
 * 64 KiB, the declared size is capped to it), so an access past the declared size is an
 * ASan report; and MAP_DMA's vaddr always lies in a private arena (or in a range known to be
 * unmapped), so dma_rw never copies to or from anything else.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include <dirtytrack/dirtytrack.h>

#define PG	  4096ull
#define ARENA_PG  256ull
#define CAP	  65536ull /* the largest buffer handed to the library */
#define MAX_OPS	  256
#define MAX_DEVS  8
#define BAD_VA	  0x1000ull /* below mmap_min_addr: never mapped */
#define M1_IOVA	  0x100000ull
#define M2_IOVA	  (M1_IOVA + 64 * PG)
#define TOP_IOVA  (0ull - 16 * PG)
#define MAX_CHUNK 32768ull /* dma_rw lengths */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t *arena;
static struct dt_device *devs[MAX_DEVS];

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		uint64_t b = 0;

		if (in->n) {
			b = *in->p++;
			in->n--;
		}
		v |= b << (8 * i);
	}
	return v;
}

static uint8_t u8(struct input *in)
{
	return (uint8_t)take(in, 1);
}

static uint16_t u16(struct input *in)
{
	return (uint16_t)take(in, 2);
}

static uint32_t u32(struct input *in)
{
	return (uint32_t)take(in, 4);
}

static uint64_t u64(struct input *in)
{
	return take(in, 8);
}

/* A heap buffer of exactly n bytes (n > 0), filled from the input or zeroed. */
static void *buffer(struct input *in, size_t n, bool fill)
{
	uint8_t *b = malloc(n ? n : 1);

	if (!b)
		abort();
	memset(b, 0, n ? n : 1);
	if (fill)
		for (size_t i = 0; i < n && in->n; i++)
			b[i] = u8(in);
	return b;
}

static uint64_t cap_size(uint64_t v)
{
	return v > CAP ? CAP : v;
}

/* An IOVA: fully fuzzed, or near one of the pre-made mappings. */
static uint64_t iova(struct input *in)
{
	uint8_t mode = u8(in);
	static const uint64_t bases[] = {M1_IOVA, M2_IOVA, TOP_IOVA, 0};

	if (mode < 64)
		return u64(in);
	return bases[mode % 4] + (uint64_t)(int64_t)(int16_t)u16(in) * PG +
	       (mode & 0x80 ? u16(in) % PG : 0);
}

static uint64_t length(struct input *in)
{
	uint8_t mode = u8(in);

	if (mode < 32)
		return u64(in);
	if (mode < 128)
		return (uint64_t)u16(in) * PG;
	return u32(in) % (256 * PG);
}

static struct dt_device *device(struct input *in)
{
	return devs[u8(in) % MAX_DEVS]; /* may be NULL: the library must say -EINVAL */
}

static void unmap_cb(void *opaque, uint64_t iova_, uint64_t size)
{
	struct dt_device *d = opaque;

	if (size / PG && size / PG <= 4096)
		dt_unpin_pages(d, iova_, (int)(size / PG));
}

static int run_cb(void *opaque, uint64_t iova_, uint64_t len)
{
	unsigned *left = opaque;

	(void)iova_;
	(void)len;
	if (*left == 0)
		return 0;
	return --*left == 0 ? -ECANCELED : 0;
}

static void op_get_info(struct input *in, struct dt_iommu *io)
{
	uint32_t argsz = (uint32_t)cap_size(u16(in));
	size_t n = argsz > sizeof(struct vfio_iommu_type1_info)
			   ? argsz
			   : sizeof(struct vfio_iommu_type1_info);
	struct vfio_iommu_type1_info *info = buffer(in, n, u8(in) & 1);

	info->argsz = argsz;
	dt_vfio_ioctl(io, VFIO_IOMMU_GET_INFO, info);
	free(info);
}

static void op_map(struct input *in, struct dt_iommu *io)
{
	uint32_t argsz = u8(in) < 16 ? u32(in) : sizeof(struct vfio_iommu_type1_dma_map);
	size_t n = argsz > sizeof(struct vfio_iommu_type1_dma_map) && argsz <= CAP
			   ? argsz
			   : sizeof(struct vfio_iommu_type1_dma_map);
	struct vfio_iommu_type1_dma_map *mp = buffer(in, n, false);
	uint64_t off = u32(in) % (ARENA_PG * PG + 1), size = length(in);
	uint8_t mode = u8(in);

	/* vaddr in the arena, or in a range that is certainly not mapped */
	if (mode < 16) {
		mp->vaddr = BAD_VA + (off % 8) * PG;
		size %= 0xe000;
	} else {
		mp->vaddr = (uint64_t)(uintptr_t)arena + off;
		if (size > ARENA_PG * PG - off)
			size %= ARENA_PG * PG - off + 1;
	}
	mp->argsz = argsz;
	mp->flags = mode & 0x80 ? u32(in)
				: VFIO_DMA_MAP_FLAG_READ | (mode & 1 ? VFIO_DMA_MAP_FLAG_WRITE : 0);
	mp->iova = iova(in);
	mp->size = size;
	dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, mp);
	free(mp);
}

static void op_unmap(struct input *in, struct dt_iommu *io)
{
	size_t base = sizeof(struct vfio_iommu_type1_dma_unmap) + sizeof(struct vfio_bitmap);
	uint32_t argsz = u8(in) < 16 ? u32(in) : (uint32_t)base;
	size_t n = argsz > base && argsz <= CAP ? argsz : base;
	struct vfio_iommu_type1_dma_unmap *u = buffer(in, n, false);
	struct vfio_bitmap *vb = (void *)u->data;
	uint64_t bsize = cap_size(u8(in) < 32 ? u64(in) : u16(in));
	void *bitmap = buffer(in, bsize, false);

	u->argsz = argsz;
	u->flags = u8(in) < 32 ? u32(in) : u8(in) & 3;
	u->iova = iova(in);
	u->size = length(in);
	vb->pgsize = u8(in) < 32 ? u64(in) : PG;
	vb->size = bsize;
	vb->data = bitmap;
	dt_vfio_ioctl(io, VFIO_IOMMU_UNMAP_DMA, u);
	free(bitmap);
	free(u);
}

static void op_dirty_pages(struct input *in, struct dt_iommu *io)
{
	size_t base = sizeof(struct vfio_iommu_type1_dirty_bitmap) +
		      sizeof(struct vfio_iommu_type1_dirty_bitmap_get);
	uint8_t mode = u8(in);
	uint32_t argsz = mode < 16 ? u32(in) : (uint32_t)base;
	size_t n = argsz > base && argsz <= CAP ? argsz : base;
	struct vfio_iommu_type1_dirty_bitmap *db = buffer(in, n, false);
	struct vfio_iommu_type1_dirty_bitmap_get *g = (void *)db->data;
	uint64_t bsize = cap_size(u8(in) < 32 ? u64(in) : u16(in));
	void *bitmap = buffer(in, bsize, false);

	db->argsz = argsz;
	db->flags = mode & 0x80 ? u32(in) : 1u << (mode % 3);
	g->iova = iova(in);
	g->size = length(in);
	g->bitmap.pgsize = u8(in) < 32 ? u64(in) : PG;
	g->bitmap.size = bsize;
	g->bitmap.data = bitmap;
	dt_vfio_ioctl(io, VFIO_IOMMU_DIRTY_PAGES, db);
	free(bitmap);
	free(db);
}

static void op_other_request(struct input *in, struct dt_iommu *io)
{
	uint8_t mode = u8(in);
	uint64_t scratch[8] = {0};

	if (mode % 3 == 0)
		dt_vfio_ioctl(io, VFIO_CHECK_EXTENSION, (void *)(uintptr_t)u8(in));
	else if (mode % 3 == 1)
		dt_vfio_ioctl(io, VFIO_GET_API_VERSION, NULL);
	else
		dt_vfio_ioctl(io, u32(in), scratch); /* unknown: -ENOTTY, nothing read */
}

static void op_pin(struct input *in, bool unpin)
{
	struct dt_device *d = device(in);
	uint64_t at = iova(in);
	int npage = u8(in) < 16 ? (int)u32(in) : (int)(u8(in) % 80) - 4;
	int prot = u8(in) < 16 ? (int)u32(in) : PROT_READ | (u8(in) & 1 ? PROT_WRITE : 0);
	void **vaddrs = NULL;

	if (unpin) {
		dt_unpin_pages(d, at, npage);
		return;
	}
	if (npage > 0 && npage <= 4096 && (u8(in) & 1))
		vaddrs = buffer(in, (size_t)npage * sizeof(void *), false);
	dt_pin_pages(d, at, npage, prot, vaddrs);
	free(vaddrs);
}

static void op_dma_rw(struct input *in)
{
	struct dt_device *d = device(in);
	uint64_t at = iova(in);
	size_t len = u16(in) % MAX_CHUNK;
	bool write = u8(in) & 1;
	void *data = buffer(in, len, write);

	dt_dma_rw(d, at, data, len, write);
	free(data);
}

static void op_dma_log(struct input *in)
{
	struct dt_device *d = device(in);
	uint64_t at = iova(in);

	dt_dma_log(d, at, length(in));
}

/* Bytes of a bitmap of `bits` bits in whole u64 words; 0 when it does not fit CAP. */
static uint64_t bitmap_bytes(uint64_t len, uint64_t pgsize)
{
	uint64_t bits;

	if (!pgsize || pgsize & (pgsize - 1))
		return 8;
	bits = len / pgsize + (len % pgsize != 0);
	if (bits > CAP * 8)
		return 0;
	return (bits + 63) / 64 * 8;
}

static void op_report(struct input *in, struct dt_iommu *io, bool pinned)
{
	struct dt_report rep = {.size = sizeof(rep)};
	uint8_t mode = u8(in);
	unsigned fail_after = u8(in) % 4;
	void *bitmap = NULL;

	if (mode < 8)
		rep.size = u16(in);
	rep.iova = iova(in);
	rep.length = length(in);
	rep.pgsize = mode & 0x10 ? u64(in) : (mode & 0x20 ? PG << (u8(in) % 12) : 0);
	rep.flags = mode & 0x40 ? u32(in) : u8(in) % 4;
	if (mode & 1) {
		uint64_t need = bitmap_bytes(rep.length, rep.pgsize ? rep.pgsize : PG);
		uint64_t declared = mode & 2 ? cap_size(u16(in)) : need;

		if (declared) {
			bitmap = buffer(in, declared, false);
			rep.bitmap = bitmap;
			rep.bitmap_size = declared;
		}
	}
	if (mode & 4) {
		rep.run = run_cb;
		rep.opaque = &fail_after;
	}
	if (pinned)
		dt_iommu_pinned(io, &rep);
	else
		dt_iommu_report(io, &rep);
	free(bitmap);
}

static void op_merge_back(struct input *in, struct dt_iommu *io)
{
	uint8_t mode = u8(in);

	if (mode & 1) {
		uint64_t at = iova(in);

		dt_iommu_merge_back(io, at, length(in));
	} else {
		uint64_t at = iova(in);
		uint64_t pgsize = mode & 2 ? u64(in) : PG << (u8(in) % 8);
		uint64_t nbits = u8(in) < 8 ? u64(in) : u16(in);
		void *bm;

		if (nbits > CAP * 8)
			nbits = CAP * 8;
		/* whole u64 words, as every bitmap of this API (LIBRARY-BUGS.md) */
		bm = buffer(in, (nbits + 63) / 64 * 8, true);
		dt_iommu_merge_back_bitmap(io, at, pgsize, bm, nbits);
		free(bm);
	}
}

static void op_device(struct input *in, struct dt_iommu *io)
{
	uint8_t mode = u8(in);
	unsigned slot = u8(in) % MAX_DEVS;

	if (mode % 4 == 0 && devs[slot]) {
		dt_device_detach(devs[slot]);
		devs[slot] = NULL;
	} else if (mode % 4 == 1 && !devs[slot]) {
		devs[slot] = dt_device_attach(io, (enum dt_device_kind)(u8(in) % 4));
	} else if (mode % 4 == 2 && devs[slot]) {
		dt_device_set_unmap_cb(devs[slot], mode & 0x80 ? unmap_cb : NULL, devs[slot]);
	} else {
		struct dt_iommu_stats st;

		dt_iommu_get_stats(io, &st);
		dt_iommu_dirty_tracking(io);
		if (mode & 0x40)
			dt_iommu_dirty_start(io);
		else if (mode & 0x20)
			dt_iommu_dirty_stop(io);
	}
}

/* VFIO_DEVICE_FEATURE with device DMA logging START / STOP / REPORT (or anything else). */
static void op_device_ioctl(struct input *in)
{
	struct dt_device *d = device(in);
	uint8_t mode = u8(in);
	size_t hdr = sizeof(struct vfio_device_feature);
	size_t base = hdr + sizeof(struct vfio_device_feature_dma_logging_report);
	uint32_t argsz = mode < 16 ? u32(in) : (uint32_t)base;
	size_t n = argsz > base && argsz <= CAP ? argsz : base;
	struct vfio_device_feature *f = buffer(in, n, false);
	unsigned long request = mode == 255 ? u32(in) : VFIO_DEVICE_FEATURE;
	static const uint32_t features[] = {
		VFIO_DEVICE_FEATURE_DMA_LOGGING_START | VFIO_DEVICE_FEATURE_SET,
		VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP | VFIO_DEVICE_FEATURE_SET,
		VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT | VFIO_DEVICE_FEATURE_GET,
	};
	void *ptr = NULL;

	f->argsz = argsz;
	f->flags = mode & 0x40 ? u32(in) : features[mode % 3] | (mode & 0x20 ? (1u << 18) : 0);
	if ((f->flags & 0xffff) == VFIO_DEVICE_FEATURE_DMA_LOGGING_START) {
		struct vfio_device_feature_dma_logging_control *c = (void *)f->data;
		uint32_t nr = u8(in) < 8 ? u32(in) : u8(in) % 8;
		size_t have = nr <= 1024 ? nr : 1;
		struct vfio_device_feature_dma_logging_range *r =
			buffer(in, have * sizeof(*r), false);

		for (size_t i = 0; i < have && in->n; i++) {
			r[i].iova = iova(in);
			r[i].length = length(in);
		}
		c->page_size = u8(in) < 16 ? u64(in) : PG << (u8(in) % 6);
		c->num_ranges = nr;
		c->ranges = (uint64_t)(uintptr_t)r;
		ptr = r;
	} else if ((f->flags & 0xffff) == VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT) {
		struct vfio_device_feature_dma_logging_report *r = (void *)f->data;
		uint64_t need;

		r->iova = iova(in);
		r->length = length(in);
		r->page_size = u8(in) < 16 ? u64(in) : PG << (u8(in) % 6);
		need = bitmap_bytes(r->length, r->page_size);
		if (!need) { /* too big for a real buffer: shorten the range */
			r->length = CAP * 8 * r->page_size;
			need = CAP;
		}
		ptr = buffer(in, need, false);
		r->bitmap = (uint64_t)(uintptr_t)ptr;
	}
	dt_device_ioctl(d, request, f);
	free(ptr);
	free(f);
}

static void premade(struct dt_iommu *io)
{
	static const struct {
		uint64_t iova, npages, apage;
		uint32_t flags;
	} maps[] = {
		{M1_IOVA, 64, 0, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE},
		{M2_IOVA, 32, 64, VFIO_DMA_MAP_FLAG_READ},
		{TOP_IOVA, 16, 96, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE},
	};

	for (unsigned i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		struct vfio_iommu_type1_dma_map mp = {
			.argsz = sizeof(mp),
			.flags = maps[i].flags,
			.vaddr = (uint64_t)(uintptr_t)(arena + maps[i].apage * PG),
			.iova = maps[i].iova,
			.size = maps[i].npages * PG,
		};

		if (dt_vfio_ioctl(io, VFIO_IOMMU_MAP_DMA, &mp))
			abort();
	}
	memset(devs, 0, sizeof(devs));
	devs[0] = dt_device_attach(io, DT_DEVICE_EMULATED);
	devs[1] = dt_device_attach(io, DT_DEVICE_PASSTHROUGH);
	devs[2] = dt_device_attach(io, DT_DEVICE_LOGGING);
	if (!devs[0] || !devs[1] || !devs[2])
		abort();
	dt_device_set_unmap_cb(devs[0], unmap_cb, devs[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	struct dt_iommu *io;

	if (!arena) {
		arena = mmap(NULL, ARENA_PG * PG, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (arena == MAP_FAILED)
			abort();
	}
	io = dt_iommu_new();
	if (!io)
		abort();
	premade(io);
	for (unsigned ops = 0; in.n && ops < MAX_OPS; ops++) {
		switch (u8(&in) % 16) {
		case 0:
			op_get_info(&in, io);
			break;
		case 1:
			op_map(&in, io);
			break;
		case 2:
			op_unmap(&in, io);
			break;
		case 3:
		case 4:
			op_dirty_pages(&in, io);
			break;
		case 5:
			op_other_request(&in, io);
			break;
		case 6:
			op_pin(&in, false);
			break;
		case 7:
			op_pin(&in, true);
			break;
		case 8:
			op_dma_rw(&in);
			break;
		case 9:
			op_dma_log(&in);
			break;
		case 10:
			op_report(&in, io, false);
			break;
		case 11:
			op_report(&in, io, true);
			break;
		case 12:
			op_merge_back(&in, io);
			break;
		case 13:
			op_device(&in, io);
			break;
		default:
			op_device_ioctl(&in);
			break;
		}
	}
	dt_iommu_free(io);
	return 0;
}
