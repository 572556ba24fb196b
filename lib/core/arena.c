/* SPDX-License-Identifier: MIT */
/*
 * core/arena.c - packed zero-filled blocks for small bitmaps (see arena.h).
 *
 * Invariants: every byte of a chunk past `bump` is zero (fresh from xzalloc_big); every block
 * on a free list is zero except its first word, the list link, which arena_zalloc clears.
 */
#include "core/arena.h"

#include <stdint.h>
#include <string.h>

#include "core/alloc.h"

#define CHUNK_FIRST (256u << 10)
#define CHUNK_MAX   (64u << 20)
#define ALIGN	    64u

struct arena_chunk {
	struct arena_chunk *next;
	void *mem;
	size_t bytes;
};

void arena_init(struct arena *a)
{
	memset(a, 0, sizeof(*a));
}

void arena_destroy(struct arena *a)
{
	while (a->chunks) {
		struct arena_chunk *c = a->chunks;

		a->chunks = c->next;
		xfree_big(c->mem, c->bytes);
		xfree(c);
	}
	arena_init(a);
}

unsigned arena_class(size_t size, size_t *class_bytes)
{
	size_t s = (size + ALIGN - 1) / ALIGN * ALIGN, step;
	unsigned b;

	if (!s)
		s = ALIGN;
	if (s <= 512) {
		*class_bytes = s;
		return (unsigned)(s / ALIGN - 1);
	}
	b = 63u - (unsigned)__builtin_clzll((unsigned long long)(s - 1)); /* 2^b < s <= 2^(b+1) */
	step = (size_t)1 << (b - 2);
	*class_bytes = (s + step - 1) / step * step;
	return 8u + (b - 9u) * 4u + (unsigned)((*class_bytes - ((size_t)1 << b)) / step) - 1u;
}

/* A new chunk, twice the last one (up to CHUNK_MAX) and big enough for `need`. */
static int chunk_add(struct arena *a, size_t need)
{
	size_t bytes = a->chunks ? a->chunks->bytes * 2 : CHUNK_FIRST;
	struct arena_chunk *c;

	if (bytes > CHUNK_MAX)
		bytes = CHUNK_MAX;
	if (bytes < need + ALIGN)
		bytes = need + ALIGN;
	c = xzalloc(sizeof(*c));
	if (!c)
		return -1;
	c->mem = xzalloc_big(bytes);
	if (!c->mem) {
		xfree(c);
		return -1;
	}
	c->bytes = bytes;
	c->next = a->chunks;
	a->chunks = c;
	a->reserved += bytes;
	/* The tail of the previous chunk is abandoned: less than one block. Blocks start
	 * 64-byte aligned whatever the backend returned. */
	a->bump = (char *)(((uintptr_t)c->mem + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
	a->left = bytes - (size_t)(a->bump - (char *)c->mem);
	return 0;
}

void *arena_zalloc(struct arena *a, size_t size)
{
	size_t bytes;
	unsigned cls = arena_class(size, &bytes);
	void *p;

	if (!size || size > ARENA_MAX_BLOCK)
		return NULL;
	p = a->free[cls];
	if (p) {
		memcpy(&a->free[cls], p, sizeof(void *));
		memset(p, 0, sizeof(void *));
		return p;
	}
	if (a->left < bytes && chunk_add(a, bytes))
		return NULL;
	p = a->bump;
	a->bump += bytes;
	a->left -= bytes;
	return p;
}

void arena_free_zeroed(struct arena *a, void *p, size_t size)
{
	size_t bytes;
	unsigned cls = arena_class(size, &bytes);

	if (!p)
		return;
	memcpy(p, &a->free[cls], sizeof(void *));
	a->free[cls] = p;
}
