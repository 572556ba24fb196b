/* SPDX-License-Identifier: MIT */
/*
 * track/source.c - creating sources, the automatic choice, and the calls every source
 * shares (start, stop, harvest, clear). The sources themselves are one file each.
 *
 * The automatic choice tries, in order, the KVM dirty ring, the KVM dirty log (for a VM),
 * userfaultfd write-protect, soft-dirty (for process memory), and the all-dirty fallback; it
 * logs the source chosen and why each better one was passed over.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "track/source.h"

static const struct source_ops *const preference[] = {
	&kvm_ring_ops, &kvm_log_ops, &uffd_wp_ops, &soft_dirty_ops, &all_dirty_ops,
};

void target_set_pages(struct harvest_target *t, uint64_t addr, uint64_t npages)
{
	uint64_t end = addr + (npages << SRC_PAGE_SHIFT);
	uint64_t tend = t->base + (t->npages << SRC_PAGE_SHIFT);
	uint64_t lo = addr > t->base ? addr : t->base, hi = end < tend ? end : tend;

	if (lo >= hi)
		return;
	ubuf_set_range(t->bitmap, (lo - t->base) >> SRC_PAGE_SHIFT, (hi - lo) >> SRC_PAGE_SHIFT);
	t->count += (hi - lo) >> SRC_PAGE_SHIFT;
}

void target_or_bitmap(struct harvest_target *t, uint64_t addr, const void *bits, uint64_t nbits)
{
	for (uint64_t w = 0; w < words_for_bits(nbits); w++) {
		uint64_t x = 0;

		memcpy(&x, (const char *)bits + w * 8,
		       w == nbits / 64 ? div_round_up(nbits % 64, 8) : 8);
		if (w == nbits / 64)
			x &= mask_range(0, (unsigned)(nbits % 64));
		while (x) {
			unsigned b = ctz64(x);
			uint64_t rest = ~(x >> b);
			unsigned len = rest ? ctz64(rest) : 64 - b;

			target_set_pages(t, addr + ((w * 64 + b) << SRC_PAGE_SHIFT), len);
			x = b + len >= 64 ? 0 : x & (~0ull << (b + len));
		}
	}
}

static int region_cmp(const void *a, const void *b)
{
	const struct dt_region *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int check_opts(const struct dt_source_opts *o)
{
	if (!o || o->size < sizeof(*o))
		return log_fail(-EINVAL, "dt_source_new: NULL options or bad size field");
	if ((unsigned)o->type > DT_SOURCE_ALL_DIRTY)
		return log_fail(-EINVAL, "dt_source_new: unknown source type %d", (int)o->type);
	if (!o->nregions || !o->regions)
		return log_fail(-EINVAL, "dt_source_new: no regions");
	for (unsigned i = 0; i < o->nregions; i++) {
		const struct dt_region *r = &o->regions[i];

		if (!r->size || (r->addr | r->size | (uintptr_t)r->host) & (SRC_PAGE_SIZE - 1) ||
		    r->addr + r->size - 1 < r->addr)
			return log_fail(
				-EINVAL,
				"dt_source_new: region %u [0x%llx, +0x%llx) at %p: empty, unaligned or wrapping",
				i, (unsigned long long)r->addr, (unsigned long long)r->size,
				r->host);
	}
	if (o->nvcpus && !o->vcpu_fds)
		return log_fail(-EINVAL, "dt_source_new: %u vCPUs but no fds", o->nvcpus);
	return 0;
}

static struct dt_source *source_alloc(const struct dt_source_opts *o, const struct source_ops *ops)
{
	struct dt_source *s = xzalloc(sizeof(*s));

	if (!s)
		return NULL;
	s->ops = ops;
	s->vm_fd = o->vm_fd;
	s->nregions = o->nregions;
	s->nvcpus = o->nvcpus;
	s->ring_entries = o->ring_entries;
	s->regions = xcalloc(o->nregions, sizeof(*s->regions));
	s->vcpu_fds = xcalloc(o->nvcpus ? o->nvcpus : 1, sizeof(int));
	if (!s->regions || !s->vcpu_fds) {
		xfree(s->regions);
		xfree(s->vcpu_fds);
		xfree(s);
		return NULL;
	}
	memcpy(s->regions, o->regions, o->nregions * sizeof(*s->regions));
	qsort(s->regions, s->nregions, sizeof(*s->regions), region_cmp);
	if (o->nvcpus)
		memcpy(s->vcpu_fds, o->vcpu_fds, o->nvcpus * sizeof(int));
	return s;
}

static void source_release(struct dt_source *s)
{
	xfree(s->regions);
	xfree(s->vcpu_fds);
	xfree(s);
}

/* Create a source of type ops, or a negative errno. */
static int source_create(const struct dt_source_opts *opts, const struct source_ops *ops,
			 struct dt_source **out)
{
	struct dt_source *s = source_alloc(opts, ops);
	int ret;

	if (!s)
		return log_fail(-ENOMEM, "dt_source_new: out of memory");
	ret = ops->init(s);
	if (ret) {
		source_release(s);
		return ret;
	}
	*out = s;
	return 0;
}

struct dt_source *dt_source_new(const struct dt_source_opts *opts)
{
	bool automatic = opts && opts->type == DT_SOURCE_AUTO;
	struct dt_source *s = NULL;
	char why[160];
	int ret = check_opts(opts);

	if (ret)
		goto fail;
	ret = -ENODEV;
	for (unsigned i = 0; i < sizeof(preference) / sizeof(preference[0]); i++) {
		const struct source_ops *o = preference[i];

		if (!automatic && o->type != opts->type)
			continue;
		why[0] = 0;
		ret = o->probe(opts, why, sizeof(why));
		if (!ret)
			ret = source_create(opts, o, &s);
		if (!ret) {
			log_info("dirty source: %s%s", o->name, automatic ? " (automatic)" : "");
			return s;
		}
		if (!why[0])
			snprintf(why, sizeof(why), "setup failed: %s", strerror(-ret));
		if (automatic)
			log_info("source %s passed over: %s", o->name, why);
		else
			log_err("source %s is not available: %s", o->name, why);
		if (ret == -ENOMEM)
			break;
	}
fail:
	errno = -ret == ENOTSUP || -ret == EOPNOTSUPP || -ret == ENOSYS ? ENODEV : -ret;
	return NULL;
}

void dt_source_free(struct dt_source *src)
{
	if (!src)
		return;
	if (src->started)
		dt_source_stop(src);
	src->ops->destroy(src);
	source_release(src);
}

enum dt_source_type dt_source_type(const struct dt_source *src)
{
	return src->ops->type;
}

const char *dt_source_name(const struct dt_source *src)
{
	return src->ops->name;
}

uint32_t dt_source_caps(const struct dt_source *src)
{
	return src->ops->caps & ~src->caps_off;
}

int dt_source_start(struct dt_source *src)
{
	int ret;

	if (!src)
		return log_fail(-EINVAL, "dt_source_start: NULL source");
	if (src->started)
		return 0;
	ret = src->ops->start(src);
	if (!ret)
		src->started = true;
	return ret;
}

int dt_source_stop(struct dt_source *src)
{
	int ret;

	if (!src)
		return log_fail(-EINVAL, "dt_source_stop: NULL source");
	if (!src->started)
		return 0;
	ret = src->ops->stop(src);
	src->started = false;
	return ret;
}

int64_t dt_source_harvest(struct dt_source *src, uint64_t base, uint64_t npages, void *bitmap,
			  uint32_t flags)
{
	struct harvest_target t = {.base = base, .npages = npages, .bitmap = bitmap};
	int64_t ret;

	if (!src || (!bitmap && npages))
		return log_fail(-EINVAL, "dt_source_harvest: NULL argument");
	if (base & (SRC_PAGE_SIZE - 1) || flags & ~DT_HARVEST_DEFER_CLEAR)
		return log_fail(-EINVAL, "dt_source_harvest: base 0x%llx unaligned or flags 0x%x",
				(unsigned long long)base, flags);
	if (!src->started)
		return log_fail(-EINVAL, "dt_source_harvest: %s is not started", src->ops->name);
	ret = src->ops->harvest(src, &t, flags);
	return ret < 0 ? ret : (int64_t)t.count;
}

int dt_source_clear(struct dt_source *src, uint64_t addr, uint64_t len)
{
	if (!src)
		return log_fail(-EINVAL, "dt_source_clear: NULL source");
	return src->ops->clear ? src->ops->clear(src, addr, len) : 0;
}

int dt_source_kvm_ring_full(struct dt_source *src)
{
	if (!src || !src->ops->ring_full)
		return log_fail(-EINVAL, "dt_source_kvm_ring_full: not a KVM dirty-ring source");
	return src->ops->ring_full(src);
}
