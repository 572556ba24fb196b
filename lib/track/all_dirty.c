/* SPDX-License-Identifier: MIT */
/*
 * track/all_dirty.c - the fallback source: every page of every region is dirty at every
 * harvest. Always available, always correct, never exact.
 */
#include "track/source.h"

static int all_probe(const struct dt_source_opts *opts, char *why, size_t whylen)
{
	return 0;
}

static int all_noop(struct dt_source *src)
{
	return 0;
}

static int64_t all_harvest(struct dt_source *src, struct harvest_target *t, uint32_t flags)
{
	for (unsigned i = 0; i < src->nregions; i++)
		target_set_pages(t, src->regions[i].addr, src->regions[i].size >> SRC_PAGE_SHIFT);
	return 0;
}

static void all_destroy(struct dt_source *src)
{
}

const struct source_ops all_dirty_ops = {
	.type = DT_SOURCE_ALL_DIRTY,
	.name = "all-dirty",
	.caps = DT_SOURCE_CAP_KERNEL_WRITES,
	.probe = all_probe,
	.init = all_noop,
	.start = all_noop,
	.stop = all_noop,
	.harvest = all_harvest,
	.destroy = all_destroy,
};
