/* SPDX-License-Identifier: MIT */
/*
 * sys/compat.h - kernel UAPI newer than the installed headers (Debian 12 ships 6.1 headers;
 * the machine runs 6.18). Each constant under #ifndef, each struct with a size assertion,
 * all as in the upstream UAPI (include/uapi/linux/fs.h, userfaultfd.h, kvm.h).
 *
 * Checked against upstream include/uapi/linux/userfaultfd.h (WP_UNPOPULATED 1<<13, POISON
 * 1<<14, WP_ASYNC 1<<15, MOVE 1<<16) and include/uapi/linux/fs.h (PAGEMAP_SCAN is
 * _IOWR(PROCFS_IOCTL_MAGIC 'f', 16, struct pm_scan_arg); PAGE_IS_* bits 0..8 with GUARD
 * added in 6.14; pm_scan_arg is twelve __u64, page_region three).
 */
#ifndef DT_SYS_COMPAT_H
#define DT_SYS_COMPAT_H

#include <linux/fs.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

/* userfaultfd: write-protecting unpopulated pages (6.4) and async write-protect (6.7). */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC 0xAA
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

/* PAGEMAP_SCAN on /proc/PID/pagemap (6.7). The structs come with the ioctl number. */
#ifndef PAGEMAP_SCAN
struct page_region {
	__u64 start;
	__u64 end; /* exclusive */
	__u64 categories;
};

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end; /* written by the kernel: where the walk stopped */
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED (1 << 0)
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WRITTEN (1 << 1)
#endif
#ifndef PAGE_IS_FILE
#define PAGE_IS_FILE (1 << 2)
#endif
#ifndef PAGE_IS_PRESENT
#define PAGE_IS_PRESENT (1 << 3)
#endif
#ifndef PAGE_IS_SWAPPED
#define PAGE_IS_SWAPPED (1 << 4)
#endif
#ifndef PAGE_IS_PFNZERO
#define PAGE_IS_PFNZERO (1 << 5)
#endif
#ifndef PAGE_IS_HUGE
#define PAGE_IS_HUGE (1 << 6)
#endif
#ifndef PAGE_IS_SOFT_DIRTY
#define PAGE_IS_SOFT_DIRTY (1 << 7)
#endif
#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8)
#endif

#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0) /* write-protect the pages matched */
#endif
#ifndef PM_SCAN_CHECK_WPASYNC
#define PM_SCAN_CHECK_WPASYNC (1 << 1) /* -EPERM on a VMA without async uffd-wp */
#endif

_Static_assert(sizeof(struct page_region) == 24, "page_region as in the UAPI");
_Static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg as in the UAPI");
_Static_assert(PAGEMAP_SCAN == _IOWR('f', 16, struct pm_scan_arg), "PAGEMAP_SCAN as in the UAPI");

#endif
