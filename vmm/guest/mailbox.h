/* SPDX-License-Identifier: MIT */
/*
 * vmm/guest/mailbox.h - what the guest payload and the VMM share: the guest-physical layout
 * of the micro-VM, the mailbox page through which the VMM sets the workload and asks for a
 * self-check, the I/O ports the guest reports on, and the page stamp both sides verify.
 *
 * Compiled twice: into the 32-bit freestanding guest (gcc -m32 -ffreestanding) and into the
 * 64-bit VMM, so only fixed-width types, and no pointers in shared structs.
 *
 * Guest-physical layout (the guest runs in 32-bit protected mode, flat segments, no paging):
 *
 *	0x00001000	the mailbox (one page)
 *	0x00010000	the payload's code and data (at most 960 KiB), entry at its first byte
 *	0x00100000	the ledger: one u32 per page of the workload area, the generation that
 *			page was last stamped with (0: never written)
 *	0x00400000	the workload area, up to the device areas
 *	mem - 64 MiB	four device areas of 16 MiB, one per test device (device i at
 *			mem - 64 MiB + i * 16 MiB), written only by the devices
 */
#ifndef DT_VMM_GUEST_MAILBOX_H
#define DT_VMM_GUEST_MAILBOX_H

#include <stdint.h>

#define GUEST_PAGE	     4096u
#define GUEST_MAILBOX_GPA    0x1000u
#define GUEST_CODE_GPA	     0x10000u
#define GUEST_CODE_MAX	     (0x100000u - GUEST_CODE_GPA)
#define GUEST_LEDGER_GPA     0x100000u
#define GUEST_AREA_GPA	     0x400000u
#define GUEST_DEV_AREAS	     4u
#define GUEST_DEV_AREA_SIZE  (16u << 20)
#define GUEST_DEV_AREAS_SIZE (GUEST_DEV_AREAS * GUEST_DEV_AREA_SIZE)
/* Smallest memory: code, ledger, 4 MiB of workload area, the device areas. */
#define GUEST_MEM_MIN (GUEST_AREA_GPA + (4u << 20) + GUEST_DEV_AREAS_SIZE)
/* Largest: 32-bit addressing without paging, below the 3 GiB hole the VMM keeps free. */
#define GUEST_MEM_MAX (3ull << 30)

/* Ports the guest writes (out dx, eax); each is an exit to the VMM. */
#define GUEST_PORT_TICK	    0x10 /* value: the generation just finished (one per iteration) */
#define GUEST_PORT_VERIFY   0x11 /* value: bad pages found by the self-check just finished */
#define GUEST_PORT_PANIC    0x12 /* value: a GUEST_PANIC_* code; the guest then halts */

#define GUEST_PANIC_MAILBOX 1 /* magic or version wrong */
#define GUEST_PANIC_CONFIG  2 /* workload parameters out of range */

#define GUEST_MAGIC	    0x4d424f58u /* "MBOX" */
#define GUEST_VERSION	    1u

/* Commands the VMM writes into mailbox.cmd; the guest reads it once per iteration. */
#define GUEST_CMD_RUN	 0u
#define GUEST_CMD_VERIFY 1u /* self-check the whole area, report, back to RUN */

struct guest_mailbox {
	/* written by the VMM before the first run, read-only for the guest */
	uint32_t magic, version;
	uint32_t area_pages;  /* pages of the workload area */
	uint32_t hot_pages;   /* rewritten every iteration: the first hot_pages of the area */
	uint32_t sweep_pages; /* pages of the sweep stamped per iteration, after the hot set */
	/* written by the VMM at any time */
	uint32_t cmd;
	/* written by the guest */
	uint32_t generation; /* iterations finished; the stamp of the current one is +1 */
	uint32_t sweep_pos;  /* next page of the sweep (index into the area past the hot set) */
	uint32_t verify_runs;
	uint32_t verify_bad; /* bad pages of the last self-check */
	uint32_t verify_first_bad;
	uint32_t verify_checked; /* stamped pages the last self-check looked at */
};

/* The stamp of page p (index in the area, or any page number a device uses) at generation g:
 * word 0 = g, word 1 = p, word 2 = guest_mix(g, p), the last word of the page = ~g. A page
 * whose words disagree was torn or corrupted; a page whose g differs from the ledger (or the
 * device's record) is stale. */
static inline uint32_t guest_mix(uint32_t g, uint32_t p)
{
	uint32_t x = g * 0x9e3779b1u ^ (p + 0x7f4a7c15u);

	x ^= x >> 15;
	x *= 0x2c1b3c6du;
	x ^= x >> 12;
	return x;
}

#define GUEST_STAMP_LAST_WORD (GUEST_PAGE / 4 - 1)

#endif
