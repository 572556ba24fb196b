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

/* The system calls of the sources (lib/track), each fault-injectable: a negative errno on
 * failure, never -1 with errno. */
int sys_ioctl(int fd, unsigned long request, void *arg);
int sys_open(const char *path, int flags);
int sys_close(int fd);
void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long offset, int *err);
int sys_munmap(void *addr, size_t len);
int64_t sys_pread(int fd, void *buf, size_t len, uint64_t off);
int64_t sys_read(int fd, void *buf, size_t len);
int64_t sys_write(int fd, const void *buf, size_t len);
int sys_userfaultfd(int flags);

/* Make the n-th library system call from now fail with -EIO-like errors (0: off). */
void sys_fail_nth(unsigned long n);
int sys_should_fail(void);

#endif
