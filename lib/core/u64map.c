/* SPDX-License-Identifier: MIT */
/*
 * core/u64map.c - linear-probing hash map (see u64map.h).
 *
 * Invariant: every key sits in the probe run that starts at its home slot, with no empty
 * slot between home and it; deletion shifts later members of the run back to keep it so.
 */
#include "core/u64map.h"

#include <errno.h>
#include <stddef.h>

#include "core/alloc.h"

static inline uint64_t home(const struct u64map *m, uint64_t key)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ull;

	return (h ^ (h >> 29)) & (m->cap - 1);
}

void u64map_init(struct u64map *m)
{
	m->slots = NULL;
	m->cap = 0;
	m->count = 0;
}

void u64map_destroy(struct u64map *m)
{
	xfree(m->slots);
	u64map_init(m);
}

static int rehash(struct u64map *m, uint64_t cap)
{
	struct u64map_slot *old = m->slots;
	uint64_t old_cap = m->cap;

	m->slots = xcalloc(cap, sizeof(*m->slots));
	if (!m->slots) {
		m->slots = old;
		return -ENOMEM;
	}
	m->cap = cap;
	for (uint64_t i = 0; i < old_cap; i++) {
		uint64_t j;

		if (!old[i].key1)
			continue;
		for (j = home(m, old[i].key1 - 1); m->slots[j].key1; j = (j + 1) & (cap - 1))
			;
		m->slots[j] = old[i];
	}
	xfree(old);
	return 0;
}

int u64map_reserve(struct u64map *m, uint64_t more)
{
	uint64_t need = m->count + more, cap = m->cap ? m->cap : 16;

	if (need < m->count)
		return -ENOMEM;
	while (cap / 2 < need) {
		if (cap > UINT64_MAX / 4)
			return -ENOMEM;
		cap *= 2;
	}
	return cap == m->cap ? 0 : rehash(m, cap);
}

uint64_t *u64map_find(const struct u64map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	for (uint64_t i = home(m, key);; i = (i + 1) & (m->cap - 1)) {
		if (!m->slots[i].key1)
			return NULL;
		if (m->slots[i].key1 == key + 1)
			return &m->slots[i].val;
	}
}

uint64_t *u64map_get(struct u64map *m, uint64_t key)
{
	uint64_t *v = u64map_find(m, key), i;

	if (v)
		return v;
	if (u64map_reserve(m, 1))
		return NULL;
	for (i = home(m, key); m->slots[i].key1; i = (i + 1) & (m->cap - 1))
		;
	m->slots[i].key1 = key + 1;
	m->slots[i].val = 0;
	m->count++;
	return &m->slots[i].val;
}

void u64map_remove(struct u64map *m, uint64_t key)
{
	uint64_t *v = u64map_find(m, key), i, j;

	if (!v)
		return;
	i = (uint64_t)((struct u64map_slot *)((char *)v - offsetof(struct u64map_slot, val)) -
		       m->slots);
	m->slots[i].key1 = 0;
	m->count--;
	for (j = (i + 1) & (m->cap - 1); m->slots[j].key1; j = (j + 1) & (m->cap - 1)) {
		uint64_t h = home(m, m->slots[j].key1 - 1);

		/* Move j back into the hole at i unless its home lies cyclically in (i, j]. */
		if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
			m->slots[i] = m->slots[j];
			m->slots[j].key1 = 0;
			i = j;
		}
	}
}

int u64map_next(const struct u64map *m, uint64_t *iter, uint64_t *key, uint64_t *val)
{
	for (; *iter < m->cap; (*iter)++) {
		if (m->slots[*iter].key1) {
			*key = m->slots[*iter].key1 - 1;
			*val = m->slots[*iter].val;
			(*iter)++;
			return 1;
		}
	}
	return 0;
}
