/* SPDX-License-Identifier: MIT */
/*
 * sys/sys.h - the library's calls into the kernel, each with fail-nth injection so that
 * tests can make the n-th system call of the library fail.
 */
#ifndef DT_SYS_SYS_H
#define DT_SYS_SYS_H

#include <stddef.h>
#include <stdint.h>

/* 0 if [addr, addr + len) is mapped in this process, else -EFAULT. Cheap: one msync()
 * (MS_ASYNC walks the VMAs, it writes nothing back and touches no page). */
int sys_range_mapped(uint64_t addr, uint64_t len);

/* Zeroed memory, faulted in on first touch (anonymous mmap; huge pages advised from 2 MiB,
 * so that scans of big bitmaps do not miss the TLB on every word). NULL on failure. */
void *sys_zalloc_lazy(size_t size);
void sys_free_lazy(void *p, size_t size);

/* Make the n-th library system call from now fail with -EIO-like errors (0: off). */
void sys_fail_nth(unsigned long n);
int sys_should_fail(void);

#endif
