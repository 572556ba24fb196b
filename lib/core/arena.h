/* SPDX-License-Identifier: MIT */
/*
 * core/arena.h - zero-filled blocks for the small bitmaps of one kind, packed together.
 *
 * A container has thousands of small mappings, each with eleven bitmaps; allocated one by
 * one, the bitmaps the markers write (one class of the active set) lie scattered among the
 * others over hundreds of MiB of heap in 4 KiB pages, and a mark of a random page misses the
 * TLB as well as the cache. An arena per kind of bitmap (a "plane") packs the bitmaps of that
 * kind into a few chunks from xzalloc_big(), which advises huge pages from 2 MiB on: a
 * terabyte of 256 MiB mappings then marks into some 40 MiB of one plane.
 *
 * Chunks double (256 KiB, 512 KiB, ... 64 MiB) so that a small container costs little.
 * Blocks come in size classes (four per power of two, at most 25 % slack); a freed block
 * goes on its class's list and is reused as is, so it must be handed back all zero.
 *
 * Not thread safe: the owner serializes every call (the container lock).
 */
#ifndef DT_CORE_ARENA_H
#define DT_CORE_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define ARENA_MAX_BLOCK (1u << 20) /* larger areas get their own xzalloc_big() */
#define ARENA_CLASSES	52u

struct arena_chunk;

struct arena {
	struct arena_chunk *chunks; /* newest first */
	char *bump;		    /* free tail of the newest chunk */
	size_t left;
	void *free[ARENA_CLASSES]; /* freed blocks by class, linked through their first word */
	uint64_t reserved;	   /* bytes of chunks */
};

void arena_init(struct arena *a);
/* Release every chunk (the blocks need not have been freed). */
void arena_destroy(struct arena *a);

/* A zeroed block of at least size bytes (1 .. ARENA_MAX_BLOCK), 64-byte aligned; NULL when a
 * new chunk cannot be had. */
void *arena_zalloc(struct arena *a, size_t size);
/* Give back a block of arena_zalloc(a, size), which the caller has zeroed again. */
void arena_free_zeroed(struct arena *a, void *p, size_t size);

/* The size class of a block of size bytes and the bytes it really takes (tests). */
unsigned arena_class(size_t size, size_t *class_bytes);

#endif
