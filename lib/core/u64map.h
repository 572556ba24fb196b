/* SPDX-License-Identifier: MIT */
/*
 * core/u64map.h - an open-addressing hash map from uint64_t keys (< UINT64_MAX) to uint64_t
 * values. Linear probing, backward-shift deletion (no tombstones), load factor <= 1/2.
 * Not thread safe: the owner serializes. u64map_reserve() makes the next n inserts of new
 * keys infallible, so a multi-key update can be all-or-nothing.
 */
#ifndef DT_CORE_U64MAP_H
#define DT_CORE_U64MAP_H

#include <stdint.h>

struct u64map_slot {
	uint64_t key1; /* key + 1; 0 = empty */
	uint64_t val;
};

struct u64map {
	struct u64map_slot *slots;
	uint64_t cap; /* power of two, or 0 */
	uint64_t count;
};

void u64map_init(struct u64map *m);
void u64map_destroy(struct u64map *m);
int u64map_reserve(struct u64map *m, uint64_t more);
uint64_t *u64map_find(const struct u64map *m, uint64_t key);
/* Find or insert (value 0). NULL only when the map must grow and cannot. */
uint64_t *u64map_get(struct u64map *m, uint64_t key);
void u64map_remove(struct u64map *m, uint64_t key);

/* Iterate: for (uint64_t i = 0; u64map_next(m, &i, &key, &val);) ... Removing the entry
 * just returned is allowed only if the caller restarts from i - 1 (backward shift). */
int u64map_next(const struct u64map *m, uint64_t *iter, uint64_t *key, uint64_t *val);

#endif
