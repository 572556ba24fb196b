/* SPDX-License-Identifier: MIT */
/*
 * track/source.h - the ops table every CPU-write source implements, and what they share.
 *
 * A source is created from dt_source_opts (regions copied), started, harvested any number of
 * times, stopped, destroyed. harvest() ORs the pages written since the previous harvest into
 * a target bitmap through target_set_pages(), which clips to the target and counts.
 */
#ifndef DT_TRACK_SOURCE_H
#define DT_TRACK_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dirtytrack/track.h>

#define SRC_PAGE_SHIFT 12u
#define SRC_PAGE_SIZE  (1ull << SRC_PAGE_SHIFT)

struct harvest_target {
	uint64_t base;	 /* address of bit 0 */
	uint64_t npages; /* bits */
	void *bitmap;	 /* any alignment */
	uint64_t count;	 /* pages reported inside the target so far */
};

/* OR pages [addr, addr + npages * 4096) into the target, clipped to it. */
void target_set_pages(struct harvest_target *t, uint64_t addr, uint64_t npages);
/* OR a source-side bitmap of nbits pages starting at addr (any alignment) into the target. */
void target_or_bitmap(struct harvest_target *t, uint64_t addr, const void *bits, uint64_t nbits);

struct dt_source;

struct source_ops {
	enum dt_source_type type;
	const char *name;
	uint32_t caps; /* DT_SOURCE_CAP_* */
	/* 0 when usable with these options on this kernel, else a negative errno and, in why,
	 * the reason in a few words. Must not change anything. */
	int (*probe)(const struct dt_source_opts *opts, char *why, size_t whylen);
	int (*init)(struct dt_source *src);
	int (*start)(struct dt_source *src);
	int (*stop)(struct dt_source *src);
	int64_t (*harvest)(struct dt_source *src, struct harvest_target *t, uint32_t flags);
	int (*clear)(struct dt_source *src, uint64_t addr, uint64_t len); /* optional */
	int (*ring_full)(struct dt_source *src);			  /* optional */
	void (*destroy)(struct dt_source *src);
};

struct dt_source {
	const struct source_ops *ops;
	struct dt_region *regions; /* copied from the options, sorted by addr */
	unsigned nregions;
	int vm_fd;
	int *vcpu_fds; /* copied */
	unsigned nvcpus;
	uint32_t ring_entries;
	bool started;
	uint32_t caps_off; /* capabilities of the type this instance lacks (kernel-dependent) */
	void *priv;	   /* the source's own state */
};

/* Shared by the KVM sources (kvm_log.c): set or clear KVM_MEM_LOG_DIRTY_PAGES on every
 * memslot; check a VM fd and its slots (want_ring: the dirty ring must be enabled). */
int kvm_slots_set_logging(struct dt_source *src, bool on);
int kvm_slots_probe(const struct dt_source_opts *opts, bool want_ring, char *why, size_t whylen);

extern const struct source_ops kvm_ring_ops, kvm_log_ops, uffd_wp_ops, soft_dirty_ops,
	all_dirty_ops;

#endif
