/* SPDX-License-Identifier: MIT */
/*
 * track/kvm_log.c - the KVM dirty log: KVM_GET_DIRTY_LOG per memslot, with
 * KVM_CLEAR_DIRTY_LOG when KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is offered.
 *
 * Each region is one whole memslot of a VM the caller owns (slot id, guest-physical address,
 * size, host address and its other flags). start() adds KVM_MEM_LOG_DIRTY_PAGES to every
 * slot, stop() removes it. Also home of the helpers the dirty ring shares (the memslot flag
 * and the non-destructive probe), declared in source.h.
 *
 * Manual protect. Without it KVM_GET_DIRTY_LOG reads, clears and write-protects in one call,
 * so a deferred clear is impossible (and unnecessary: the harvest already re-armed, which is
 * correct, only earlier than asked). With it GET only reads: pages stay writable and their
 * bits stay set until KVM_CLEAR_DIRTY_LOG clears the bits given and write-protects those pages
 * again. A harvest then clears exactly the bits its GET returned, or, with
 * DT_HARVEST_DEFER_CLEAR, leaves that to dt_source_clear() just before the caller copies.
 *
 * KVM_DIRTY_LOG_INITIALLY_SET (taken when offered): turning logging on then sets every bit and
 * write-protects nothing; pages are write-protected lazily, when their bit is cleared. That
 * spares the VM one long write-protection of the whole slot under the MMU lock. Since a
 * started source must see every page as clean, start() clears every bit of every slot, in
 * chunks of CLEAR_CHUNK_PAGES, so vCPUs run between the chunks. The same clear also drops
 * bits left by anyone who logged the slot before us.
 *
 * Invariants: last[i] holds, for region i, the bits of the last GET that have not been
 * cleared since (manual protect); dt_source_clear() only ever clears those bits, and forgets
 * them once cleared, so a page written after that clear is never cleared a second time.
 * KVM_CLEAR_DIRTY_LOG wants first_page 64-aligned and num_pages a multiple of 64 unless the
 * range ends at the end of the slot: every clear here is in whole bitmap words.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <linux/kvm.h>

#include "core/alloc.h"
#include "core/bitops.h"
#include "core/log.h"
#include "sys/sys.h"
#include "track/source.h"

/* Pages write-protected per KVM_CLEAR_DIRTY_LOG at start (1 GiB): one MMU-lock hold each. */
#define CLEAR_CHUNK_PAGES (1u << 18)
/* Runs of dirty bitmap words closer than this many clean words are cleared in one call. */
#define CLEAR_GAP_WORDS 8u

struct log_slot {
	uint64_t npages;
	uint64_t *last; /* words_for_bits(npages) words */
};

struct kvm_log {
	bool manual;		/* KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE is on */
	struct log_slot *slots; /* parallel to src->regions */
};

/* ---- shared with kvm_ring.c ------------------------------------------------------------ */

static int slot_set_flags(int vm_fd, const struct dt_region *r, uint32_t flags)
{
	struct kvm_userspace_memory_region m = {
		.slot = r->slot,
		.flags = flags,
		.guest_phys_addr = r->addr,
		.memory_size = r->size,
		.userspace_addr = (uint64_t)(uintptr_t)r->host,
	};

	return sys_ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &m);
}

/* Add (on) or remove KVM_MEM_LOG_DIRTY_PAGES on every region's memslot. Turning on is all or
 * nothing; turning off goes through every slot and returns the first error. */
int kvm_slots_set_logging(struct dt_source *src, bool on)
{
	int first_err = 0;

	for (unsigned i = 0; i < src->nregions; i++) {
		const struct dt_region *r = &src->regions[i];
		uint32_t flags = r->slot_flags & ~(uint32_t)KVM_MEM_LOG_DIRTY_PAGES;
		int ret =
			slot_set_flags(src->vm_fd, r, on ? flags | KVM_MEM_LOG_DIRTY_PAGES : flags);

		if (!ret)
			continue;
		log_err("kvm: memslot %u [0x%llx, +0x%llx): cannot turn dirty logging %s: %s",
			r->slot, (unsigned long long)r->addr, (unsigned long long)r->size,
			on ? "on" : "off", strerror(-ret));
		if (on) {
			while (i--)
				slot_set_flags(src->vm_fd, &src->regions[i],
					       src->regions[i].slot_flags &
						       ~(uint32_t)KVM_MEM_LOG_DIRTY_PAGES);
			return ret;
		}
		if (!first_err)
			first_err = ret;
	}
	return first_err;
}

/*
 * What the VM offers, changing nothing: the fd answers KVM_CHECK_EXTENSION, every slot id is
 * distinct, and KVM_CLEAR_DIRTY_LOG of zero pages (which touches no bit and no page) says
 * which mode the VM is in: -ENXIO when it uses the dirty ring (the bitmap is then gone),
 * -ENOENT (logging off) or 0 (on) when it uses the bitmap, -ENOTTY before Linux 5.0.
 */
int kvm_slots_probe(const struct dt_source_opts *opts, bool want_ring, char *why, size_t whylen)
{
	struct kvm_clear_dirty_log probe = {0};
	int ret;

	if (opts->vm_fd < 0) {
		snprintf(why, whylen, "no VM (vm_fd < 0)");
		return -ENODEV;
	}
	ret = sys_ioctl(opts->vm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_USER_MEMORY);
	if (ret <= 0) {
		snprintf(why, whylen, "vm_fd %d is not a KVM VM (%s)", opts->vm_fd,
			 ret ? strerror(-ret) : "no user memory");
		return -ENODEV;
	}
	for (unsigned i = 0; i < opts->nregions; i++)
		for (unsigned j = 0; j < i; j++)
			if (opts->regions[i].slot == opts->regions[j].slot) {
				snprintf(why, whylen, "regions %u and %u share memslot %u", j, i,
					 opts->regions[i].slot);
				return -EINVAL;
			}
	probe.slot = opts->regions[0].slot;
	ret = sys_ioctl(opts->vm_fd, KVM_CLEAR_DIRTY_LOG, &probe);
	if (want_ring && ret != -ENXIO) {
		snprintf(why, whylen, "the dirty ring is not enabled on this VM");
		return -ENODEV;
	}
	if (!want_ring && ret == -ENXIO) {
		snprintf(why, whylen, "the VM uses the dirty ring, which replaces the dirty log");
		return -ENODEV;
	}
	if (ret == -EINVAL) {
		snprintf(why, whylen, "memslot id %u is out of range", probe.slot);
		return -EINVAL;
	}
	return 0;
}

/* ---- the dirty log ---------------------------------------------------------------------- */

static int log_probe(const struct dt_source_opts *opts, char *why, size_t whylen)
{
	return kvm_slots_probe(opts, false, why, whylen);
}

static int log_init(struct dt_source *src)
{
	struct kvm_log *kl = xzalloc(sizeof(*kl));

	if (!kl)
		return log_fail(-ENOMEM, "kvm-dirty-log: out of memory");
	kl->slots = xcalloc(src->nregions, sizeof(*kl->slots));
	if (!kl->slots)
		goto nomem;
	for (unsigned i = 0; i < src->nregions; i++) {
		struct log_slot *s = &kl->slots[i];

		s->npages = src->regions[i].size >> SRC_PAGE_SHIFT;
		s->last = xzalloc_big(words_for_bits(s->npages) * 8);
		if (!s->last)
			goto nomem;
	}
	src->priv = kl;
	return 0;
nomem:
	src->priv = kl;
	src->ops->destroy(src);
	return log_fail(-ENOMEM, "kvm-dirty-log: out of memory for %u slot bitmaps", src->nregions);
}

static void log_destroy(struct dt_source *src)
{
	struct kvm_log *kl = src->priv;

	if (!kl)
		return;
	for (unsigned i = 0; kl->slots && i < src->nregions; i++)
		if (kl->slots[i].last)
			xfree_big(kl->slots[i].last, words_for_bits(kl->slots[i].npages) * 8);
	xfree(kl->slots);
	xfree(kl);
	src->priv = NULL;
}

static int clear_log(struct dt_source *src, unsigned i, uint64_t first_page, uint64_t npages,
		     const uint64_t *bits)
{
	struct kvm_clear_dirty_log c = {
		.slot = src->regions[i].slot,
		.num_pages = (uint32_t)npages,
		.first_page = first_page,
		.dirty_bitmap = (void *)bits,
	};
	int ret = sys_ioctl(src->vm_fd, KVM_CLEAR_DIRTY_LOG, &c);

	if (ret)
		log_err("kvm-dirty-log: KVM_CLEAR_DIRTY_LOG slot %u pages [%llu, +%llu): %s",
			c.slot, (unsigned long long)first_page, (unsigned long long)npages,
			strerror(-ret));
	return ret == -ENOENT ? -ENXIO : ret;
}

/* Clear, and forget, the reported bits of words [w, wend) of slot i: one call per run of
 * dirty words (runs closer than CLEAR_GAP_WORDS merged), none where nothing was reported. */
static int clear_reported(struct dt_source *src, unsigned i, uint64_t w, uint64_t wend)
{
	struct log_slot *s = &((struct kvm_log *)src->priv)->slots[i];
	uint64_t run_max = CLEAR_CHUNK_PAGES / 64;

	while (w < wend) {
		uint64_t a, b, gap = 0;
		int ret;

		while (w < wend && !s->last[w])
			w++;
		if (w == wend)
			break;
		a = w;
		b = ++w;
		while (w < wend && gap <= CLEAR_GAP_WORDS && w - a < run_max) {
			if (s->last[w]) {
				b = w + 1;
				gap = 0;
			} else {
				gap++;
			}
			w++;
		}
		w = b;
		ret = clear_log(src, i, a * 64, (b * 64 < s->npages ? b * 64 : s->npages) - a * 64,
				s->last + a);
		if (ret)
			return ret;
		memset(s->last + a, 0, (b - a) * 8);
	}
	return 0;
}

static int log_start(struct dt_source *src)
{
	struct kvm_log *kl = src->priv;
	int ret, offered;

	offered = sys_ioctl(src->vm_fd, KVM_CHECK_EXTENSION,
			    (void *)(uintptr_t)KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (offered > 0 && offered & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) {
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args[0] = (uint64_t)offered & (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
							KVM_DIRTY_LOG_INITIALLY_SET),
		};

		ret = sys_ioctl(src->vm_fd, KVM_ENABLE_CAP, &cap);
		kl->manual = !ret;
		if (ret)
			log_warn("kvm-dirty-log: manual protect offered but not enabled (%s): "
				 "GET_DIRTY_LOG clears, deferred clears happen at harvest",
				 strerror(-ret));
	} else {
		kl->manual = false;
	}
	src->caps_off = kl->manual ? 0 : DT_SOURCE_CAP_DEFER_CLEAR;
	ret = kvm_slots_set_logging(src, true);
	if (ret)
		return ret;
	/* Every page counts as clean from now on: drop INITIALLY_SET's bits and any left. */
	for (unsigned i = 0; i < src->nregions; i++) {
		struct log_slot *s = &kl->slots[i];
		uint64_t nwords = words_for_bits(s->npages);

		if (kl->manual) {
			memset(s->last, 0xff, nwords * 8);
			ret = clear_reported(src, i, 0, nwords);
		} else {
			struct kvm_dirty_log g = {.slot = src->regions[i].slot,
						  .dirty_bitmap = s->last};

			ret = sys_ioctl(src->vm_fd, KVM_GET_DIRTY_LOG, &g);
		}
		memset(s->last, 0, nwords * 8);
		if (ret) {
			log_err("kvm-dirty-log: cannot clear the log of memslot %u at start: %s",
				src->regions[i].slot, strerror(-ret));
			kvm_slots_set_logging(src, false);
			return ret;
		}
	}
	return 0;
}

static int log_stop(struct dt_source *src)
{
	struct kvm_log *kl = src->priv;

	for (unsigned i = 0; i < src->nregions; i++)
		memset(kl->slots[i].last, 0, words_for_bits(kl->slots[i].npages) * 8);
	return kvm_slots_set_logging(src, false);
}

static int64_t log_harvest(struct dt_source *src, struct harvest_target *t, uint32_t flags)
{
	struct kvm_log *kl = src->priv;

	for (unsigned i = 0; i < src->nregions; i++) {
		struct log_slot *s = &kl->slots[i];
		struct kvm_dirty_log g = {.slot = src->regions[i].slot, .dirty_bitmap = s->last};
		int ret = sys_ioctl(src->vm_fd, KVM_GET_DIRTY_LOG, &g);

		if (ret) {
			/* ENOENT: the memslot is gone or no longer logged; never report clean */
			log_err("kvm-dirty-log: KVM_GET_DIRTY_LOG slot %u: %s", g.slot,
				strerror(-ret));
			return ret == -ENOENT ? -ENXIO : ret;
		}
		target_or_bitmap(t, src->regions[i].addr, s->last, s->npages);
		if (kl->manual && !(flags & DT_HARVEST_DEFER_CLEAR)) {
			ret = clear_reported(src, i, 0, words_for_bits(s->npages));
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int log_clear(struct dt_source *src, uint64_t addr, uint64_t len)
{
	struct kvm_log *kl = src->priv;
	uint64_t end = addr + len;

	if (end < addr)
		return log_fail(-EINVAL, "dt_source_clear: [0x%llx, +0x%llx) wraps",
				(unsigned long long)addr, (unsigned long long)len);
	if (!kl->manual || !src->started)
		return 0;
	for (unsigned i = 0; i < src->nregions; i++) {
		const struct dt_region *r = &src->regions[i];
		uint64_t lo = addr > r->addr ? addr : r->addr;
		uint64_t hi = end < r->addr + r->size ? end : r->addr + r->size;
		uint64_t p0, p1;
		int ret;

		if (lo >= hi)
			continue;
		p0 = (lo - r->addr) >> SRC_PAGE_SHIFT;
		p1 = div_round_up(hi - r->addr, SRC_PAGE_SIZE);
		ret = clear_reported(src, i, p0 / 64, div_round_up(p1, 64));
		if (ret)
			return ret;
	}
	return 0;
}

const struct source_ops kvm_log_ops = {
	.type = DT_SOURCE_KVM_LOG,
	.name = "kvm-dirty-log",
	/* DEFER_CLEAR also without manual protect: the clear then happened at GET, earlier than
	 * asked, which re-sends a page written in between but never loses one. */
	.caps = DT_SOURCE_CAP_EXACT | DT_SOURCE_CAP_DEFER_CLEAR,
	.probe = log_probe,
	.init = log_init,
	.start = log_start,
	.stop = log_stop,
	.harvest = log_harvest,
	.clear = log_clear,
	.destroy = log_destroy,
};
