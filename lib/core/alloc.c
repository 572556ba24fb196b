/* SPDX-License-Identifier: MIT */
/*
 * core/alloc.c - allocation with fail-nth injection.
 *
 * Invariant: when injection is armed, exactly the n-th allocation after arming fails, once;
 * the counter is atomic so injection works from any thread.
 */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

static _Atomic unsigned long fail_at; /* 0: off; else fail when count reaches it */
static _Atomic unsigned long alloc_count;

static int should_fail(void)
{
	unsigned long n = atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed) + 1;
	unsigned long at = atomic_load_explicit(&fail_at, memory_order_relaxed);

	if (at && n == at) {
		atomic_store_explicit(&fail_at, 0, memory_order_relaxed);
		return 1;
	}
	return 0;
}

unsigned long alloc_fail_nth(unsigned long n)
{
	unsigned long made = atomic_exchange(&alloc_count, 0);

	atomic_store(&fail_at, n);
	return made;
}

void *xcalloc(size_t n, size_t size)
{
	if (should_fail())
		return NULL;
	return calloc(n, size);
}

void *xzalloc(size_t size)
{
	return xcalloc(1, size);
}

void *xrealloc_array(void *p, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	if (should_fail())
		return NULL;
	return realloc(p, n * size);
}

void xfree(void *p)
{
	free(p);
}

static void release_with_free(void *p, size_t size)
{
	(void)size;
	free(p);
}

static void *zalloc_with_calloc(size_t size)
{
	return calloc(1, size);
}

static void *(*_Atomic big_zalloc)(size_t) = zalloc_with_calloc;
static void (*_Atomic big_release)(void *, size_t) = release_with_free;

void alloc_set_big_backend(void *(*zalloc)(size_t), void (*release)(void *, size_t))
{
	big_zalloc = zalloc;
	big_release = release;
}

void *xzalloc_big(size_t size)
{
	if (should_fail())
		return NULL;
	return big_zalloc(size ? size : 1);
}

void xfree_big(void *p, size_t size)
{
	if (p)
		big_release(p, size ? size : 1);
}
