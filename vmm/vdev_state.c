/* SPDX-License-Identifier: MIT */
/*
 * vmm/vdev_state.c - the migrated state of a DMA test device and the check of guest memory
 * against it.
 *
 * The blob: a fixed header (struct vdev_state_hdr, host byte order: the magic read backwards
 * refuses a blob from a host of the other order) followed by area_pages u32 expected stamps,
 * nothing after. A load checks every field against the device and against itself before it
 * changes anything, and re-pins the ring the saved device had pinned, so a destination
 * device is in the same dirty-tracking scope as its source (an EMULATED ring perpetually
 * dirty, a promoted PASSTHROUGH out of the whole-mapping scope).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/mailbox.h"
#include "vdev_priv.h"

#define VDEV_STATE_MAGIC   0x56444556u /* "VDEV" */
#define VDEV_STATE_VERSION 1u

#define VDEV_STATE_PINNED  (1u << 0) /* the ring is pinned */

struct vdev_state_hdr {
	uint32_t magic, version;
	uint32_t type, area_pages;
	uint64_t area_gpa, area_size;
	/* struct vdev_config, field by field */
	uint32_t writes_per_sec, ring_pages, pin_after_ms, flags;
	uint64_t seed;
	uint64_t rng; /* where the random pages go on from */
	uint64_t ring_gpa;
	uint32_t ring_next, seq;
	uint64_t pt_elapsed_ns; /* PASSTHROUGH: running time so far */
	uint64_t writes;	/* vdev_writes(): counted from the first device, not per host */
};
_Static_assert(sizeof(struct vdev_state_hdr) == 96, "the blob header is ABI");

uint64_t vdev_state_size(const struct vdev *d)
{
	return sizeof(struct vdev_state_hdr) + (uint64_t)d->area_pages * sizeof(uint32_t);
}

int64_t vdev_save(struct vdev *d, void *buf, size_t cap)
{
	uint64_t size = vdev_state_size(d);
	struct vdev_state_hdr h;

	if (cap < size)
		return -ENOSPC; /* the caller retries with more: not an error to print */
	pthread_mutex_lock(&d->lock);
	if (d->running) {
		pthread_mutex_unlock(&d->lock);
		fprintf(stderr, "vdev %s: save of a running device (pause it first)\n",
			vdev_name(d));
		return -EBUSY;
	}
	h = (struct vdev_state_hdr){
		.magic = VDEV_STATE_MAGIC,
		.version = VDEV_STATE_VERSION,
		.type = d->type,
		.area_pages = d->area_pages,
		.area_gpa = d->area_gpa,
		.area_size = d->area_size,
		.writes_per_sec = d->cfg.writes_per_sec,
		.ring_pages = d->cfg.ring_pages,
		.pin_after_ms = d->cfg.pin_after_ms,
		.flags = d->pinned ? VDEV_STATE_PINNED : 0,
		.seed = d->cfg.seed,
		.rng = d->rng,
		.ring_gpa = d->ring_gpa,
		.ring_next = d->ring_next,
		.seq = d->seq,
		.pt_elapsed_ns = d->pt_elapsed_ns,
		.writes = atomic_load(&d->writes),
	};
	memcpy(buf, &h, sizeof(h));
	memcpy((char *)buf + sizeof(h), d->expected, (size_t)d->area_pages * sizeof(uint32_t));
	pthread_mutex_unlock(&d->lock);
	return (int64_t)size;
}

__attribute__((format(printf, 2, 3))) static int load_fail(const struct vdev *d, const char *fmt,
							   ...)
{
	va_list ap;

	fprintf(stderr, "vdev %s: load: ", vdev_name(d));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -EINVAL;
}

/* The header against the device and against itself. */
static int load_check_header(const struct vdev *d, const struct vdev_state_hdr *h, size_t len)
{
	bool ring = d->type == VDEV_EMULATED || d->type == VDEV_PASSTHROUGH;

	if (h->magic != VDEV_STATE_MAGIC)
		return load_fail(d, "bad magic 0x%08x", h->magic);
	if (h->version != VDEV_STATE_VERSION)
		return load_fail(d, "version %u, this build reads %u", h->version,
				 VDEV_STATE_VERSION);
	if (h->type != (uint32_t)d->type)
		return load_fail(d, "state of a device of type %u", h->type);
	if (h->area_gpa != d->area_gpa || h->area_size != d->area_size ||
	    h->area_pages != d->area_pages)
		return load_fail(d, "area 0x%llx+0x%llx (%u pages), the device's is 0x%llx+0x%llx",
				 (unsigned long long)h->area_gpa, (unsigned long long)h->area_size,
				 h->area_pages, (unsigned long long)d->area_gpa,
				 (unsigned long long)d->area_size);
	if (len != vdev_state_size(d))
		return load_fail(d, "%zu bytes, expected %llu (truncated or trailing bytes)", len,
				 (unsigned long long)vdev_state_size(d));
	if (h->flags & ~VDEV_STATE_PINNED || (!ring && h->flags))
		return load_fail(d, "unknown flags 0x%x", h->flags);
	if (ring) {
		uint64_t ring_bytes = (uint64_t)h->ring_pages * VDEV_PAGE;

		if (!h->ring_pages || h->ring_pages > d->area_pages || h->ring_pages > INT_MAX ||
		    h->ring_gpa % VDEV_PAGE || h->ring_gpa < d->area_gpa ||
		    h->ring_gpa - d->area_gpa > d->area_size - ring_bytes)
			return load_fail(d, "ring of %u pages at 0x%llx outside the area",
					 h->ring_pages, (unsigned long long)h->ring_gpa);
		if (h->ring_next >= h->ring_pages)
			return load_fail(d, "ring position %u of %u", h->ring_next, h->ring_pages);
	}
	return 0;
}

int vdev_load(struct vdev *d, const void *buf, size_t len)
{
	struct vdev_state_hdr h;
	uint32_t *exp;
	void **vaddrs = NULL;
	int ret;

	if (!buf || len < sizeof(h))
		return load_fail(d, "%zu bytes, shorter than the header (truncated)", len);
	memcpy(&h, buf, sizeof(h));
	ret = load_check_header(d, &h, len);
	if (ret)
		return ret;
	/* A copy: the caller's buffer may be unaligned, and a failed load changes nothing. */
	exp = malloc((size_t)d->area_pages * sizeof(uint32_t));
	if (!exp) {
		fprintf(stderr, "vdev %s: load: out of memory\n", vdev_name(d));
		return -ENOMEM;
	}
	memcpy(exp, (const char *)buf + sizeof(h), (size_t)d->area_pages * sizeof(uint32_t));
	for (uint32_t i = 0; i < d->area_pages; i++) {
		if (exp[i] > h.seq) {
			ret = load_fail(d, "page %u stamped %u, after the last stamp %u", i, exp[i],
					h.seq);
			free(exp);
			return ret;
		}
	}

	pthread_mutex_lock(&d->lock);
	if (d->started) {
		ret = load_fail(d, "the device has started already");
		goto out;
	}
	/* Pins first: if they fail, the device is left as it was. */
	if (h.flags & VDEV_STATE_PINNED) {
		ret = vdev_pin_ring(d, h.ring_gpa, h.ring_pages, &vaddrs);
		if (ret)
			goto out;
	}
	vdev_unpin_ring(d); /* a second load replaces the first */
	d->cfg = (struct vdev_config){.writes_per_sec = h.writes_per_sec,
				      .ring_pages = h.ring_pages,
				      .pin_after_ms = h.pin_after_ms,
				      .seed = h.seed};
	d->rng = h.rng;
	d->ring_gpa = h.ring_gpa;
	d->ring_next = h.ring_next;
	d->seq = h.seq;
	d->pt_elapsed_ns = h.pt_elapsed_ns;
	atomic_store(&d->writes, h.writes);
	d->pinned = vaddrs != NULL;
	d->ring_vaddrs = vaddrs;
	free(d->expected);
	d->expected = exp;
	exp = NULL;
out:
	pthread_mutex_unlock(&d->lock);
	free(exp);
	return ret;
}

uint64_t vdev_verify(const struct vdev *d, uint64_t *bad, unsigned maxbad)
{
	uint64_t nbad = 0;

	for (uint32_t i = 0; i < d->area_pages; i++) {
		const uint32_t *w = (const uint32_t *)(d->area_host + (uint64_t)i * VDEV_PAGE);
		uint32_t e = d->expected[i];
		bool ok;

		if (e)
			ok = w[0] == e && w[1] == i && w[2] == guest_mix(e, i) &&
			     w[GUEST_STAMP_LAST_WORD] == ~e;
		else
			ok = w[0] == 0;
		if (ok)
			continue;
		if (nbad < maxbad && bad)
			bad[nbad] = d->area_gpa + (uint64_t)i * VDEV_PAGE;
		nbad++;
	}
	return nbad;
}

static int64_t migrate_save(void *opaque, void *buf, size_t cap)
{
	return vdev_save(opaque, buf, cap);
}

static uint64_t migrate_pending(void *opaque)
{
	return vdev_state_size(opaque);
}

static int migrate_load(void *opaque, const void *buf, size_t len)
{
	return vdev_load(opaque, buf, len);
}

void vdev_migrate_device(struct vdev *d, struct dt_migrate_device *out)
{
	*out = (struct dt_migrate_device){.name = vdev_name(d),
					  .opaque = d,
					  .save = migrate_save,
					  .pending = migrate_pending,
					  .load = migrate_load};
}
