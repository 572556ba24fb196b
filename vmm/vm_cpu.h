/* SPDX-License-Identifier: MIT */
/*
 * vmm/vm_cpu.h - private to vm.c and vm_cpu.c: the vCPU thread's states and what vm.c asks of
 * vm_cpu.c when it creates and destroys a VM.
 */
#ifndef DT_VMM_VM_CPU_H
#define DT_VMM_VM_CPU_H

#include "vm.h"

/* vm->state. The control thread moves RUNNING -> PAUSING, PAUSED -> RUNNING and anything ->
 * QUIT; the vCPU thread moves PAUSING -> PAUSED and anything but QUIT -> FAILED. */
enum vm_state {
	VM_NONE,    /* not created (or creation failed): vm_destroy() does nothing */
	VM_IDLE,    /* created, vCPU thread not started */
	VM_RUNNING, /* vCPU thread in or around KVM_RUN */
	VM_PAUSING, /* pause requested, vCPU thread not parked yet */
	VM_PAUSED,  /* vCPU thread parked, the vCPU's state complete (no I/O pending) */
	VM_QUIT,    /* vm_destroy(): the vCPU thread returns */
	VM_FAILED,  /* the vCPU thread stopped on vm->error */
};

/* The vCPU in 32-bit protected mode at the payload's entry; the lock and the condition
 * variable (CLOCK_MONOTONIC); state IDLE. 0 or a negative errno. */
int vm_cpu_init(struct vm *vm);
/* Stop and join the vCPU thread if it runs; destroys the lock and the condition variable. */
void vm_cpu_fini(struct vm *vm);

#endif
