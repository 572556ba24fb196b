/* SPDX-License-Identifier: MIT */
/*
 * vmm/flat32.h - 32-bit protected mode with flat 4 GiB segments and no paging, set through
 * KVM_SET_SREGS alone (no GDT in guest memory): how the micro-VM, the KVM tests and the
 * tracker benchmark start their guests. Header only: the tests and benchmarks that use it do
 * not link the VMM.
 */
#ifndef DT_VMM_FLAT32_H
#define DT_VMM_FLAT32_H

#include <linux/kvm.h>

#define CR0_PE (1ull << 0)
#define CR0_PG (1ull << 31)

/* Make sregs (as KVM_GET_SREGS returned them) flat 32-bit protected mode: CS selector 8
 * execute/read, the data segments selector 16 read/write, CR0.PE on and CR0.PG off. */
static inline void flat32_sregs(struct kvm_sregs *sregs)
{
	struct kvm_segment code = {.base = 0,
				   .limit = 0xffffffff,
				   .selector = 8,
				   .type = 11, /* execute/read, accessed */
				   .present = 1,
				   .db = 1,
				   .s = 1,
				   .g = 1};
	struct kvm_segment data = code;

	data.selector = 16;
	data.type = 3; /* read/write, accessed */
	sregs->cs = code;
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
	sregs->cr0 = (sregs->cr0 | CR0_PE) & ~CR0_PG;
}

#endif
