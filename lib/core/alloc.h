/* SPDX-License-Identifier: MIT */
/*
 * core/alloc.h - the library's allocator, with fault injection for tests.
 *
 * Every allocation of the library goes through xzalloc()/xcalloc() so that a test can make
 * the n-th one fail (alloc_fail_nth) and check that the failure is reported and leaves the
 * state as it was. Pure C: no syscalls beyond what malloc does.
 */
#ifndef DT_CORE_ALLOC_H
#define DT_CORE_ALLOC_H

#include <stddef.h>

void *xzalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc_array(void *p, size_t n, size_t size);
void xfree(void *p);

/*
 * Large zeroed areas (bitmaps over big mappings): memory the kernel zero-fills on first
 * touch, so an area nobody writes costs no RSS. The backend is plugged in by the layer that
 * may make system calls (sys_zalloc_lazy); until then calloc/free.
 */
void *xzalloc_big(size_t size);
void xfree_big(void *p, size_t size);
void alloc_set_big_backend(void *(*zalloc)(size_t), void (*release)(void *, size_t));

/* Make the n-th allocation from now fail (1 = the next one); 0 turns injection off.
 * Returns the number of allocations made since the last call. */
unsigned long alloc_fail_nth(unsigned long n);

#endif
