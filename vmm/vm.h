/* SPDX-License-Identifier: MIT */
/*
 * vmm/vm.h - the reference micro-VM: a KVM VM with two memory banks, one vCPU in 32-bit
 * protected mode running the guest payload (vmm/guest/), a vCPU thread that can be paused and
 * resumed, vCPU state save/load, and the guest's self-check, asked from the host.
 *
 * Memory: mem_size bytes of guest-physical memory from 0, in two banks (memslots 0 and 1) of
 * mem_size / 2, each a shared mapping of its own memfd (vm->bank_fd), so that a device in
 * another process (vfio-user) can map it too; vm->banks describes them as dt_regions
 * (addr = guest-physical, host = the mapping, slot = the memslot). Layout: guest/mailbox.h.
 *
 * Threads: vm_create/vm_start/vm_pause/vm_resume/vm_destroy from one control thread. The
 * vCPU thread only runs KVM_RUN and handles the payload's port exits.
 */
#ifndef DT_VMM_VM_H
#define DT_VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dirtytrack/dirtytrack.h>

#include "guest/mailbox.h"

#define VM_NBANKS 2

struct vm_config {
	uint64_t mem_size;     /* bytes: a multiple of 2 MiB in [GUEST_MEM_MIN, GUEST_MEM_MAX] */
	uint32_t hot_pages;    /* guest: pages rewritten every iteration */
	uint32_t sweep_pages;  /* guest: pages of the sweep stamped every iteration */
	uint32_t iter_per_sec; /* guest iterations per second, held at the tick exit; 0: no limit */
	/* KVM dirty ring entries, enabled before the vCPU is created (dt_kvm_dirty_ring_enable;
	 * vm->cfg.dirty_ring holds the rounded value); 0: no ring. With one, set vm->ring_full. */
	uint32_t dirty_ring;
};

/* Defaults: 512 MiB, 32 hot pages, 32 sweep pages, 200 iterations per second, no ring. */
void vm_config_defaults(struct vm_config *cfg);

struct vm_verify {
	uint32_t bad;	    /* pages whose stamp disagrees with the ledger or with itself */
	uint32_t first_bad; /* page index in the area of the first bad page, UINT32_MAX if none */
	uint32_t checked;   /* stamped pages looked at */
};

struct vm {
	struct vm_config cfg;
	int kvm_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	struct dt_region banks[VM_NBANKS];
	int bank_fd[VM_NBANKS]; /* the memfd of each bank (offset 0 = the bank's first byte) */
	struct guest_mailbox *mailbox; /* host view of the mailbox page */
	/* Host writes into guest memory go through this (the mailbox command): by default a
	 * memcpy; a migrating VMM points it at a dt_dma_rw of its VMM-class device so the write
	 * is tracked. Returns 0 or a negative errno. */
	int (*host_write)(void *opaque, uint64_t gpa, const void *data, size_t len);
	void *host_write_opaque;
	/* With cfg.dirty_ring: called by the vCPU thread on KVM_EXIT_DIRTY_RING_FULL before it
	 * re-enters KVM_RUN (dt_source_kvm_ring_full of the ring source); a failure stops the
	 * vCPU with that error. NULL: the exit is an error. */
	int (*ring_full)(void *opaque);
	void *ring_full_opaque;
	/* the vCPU thread */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int state;		    /* private to vm.c and vm_cpu.c */
	int error;		    /* the vCPU thread's failure (negative errno), 0 if none */
	atomic_uint_fast64_t ticks; /* tick exits seen */
	uint32_t panic;		    /* GUEST_PANIC_* the guest reported, 0 if none */
	uint32_t verify_seq;	    /* verify reports seen */
};

/*
 * Create the VM, its memory, memslots and vCPU. With load_payload, copy the guest payload to
 * GUEST_CODE_GPA, fill the mailbox from cfg and point the vCPU at the payload's entry (a
 * fresh VM); without it, memory stays zero and the vCPU state must come from vm_load_cpu()
 * (a migration destination). 0 or a negative errno: -ENODEV without /dev/kvm, -EINVAL for a
 * config out of range (logged to stderr), else the failing ioctl's.
 */
int vm_create(struct vm *vm, const struct vm_config *cfg, bool load_payload);
/* Stops the vCPU thread, frees everything. Does nothing after a failed vm_create() or a
 * vm_destroy(). */
void vm_destroy(struct vm *vm);

/* Start the vCPU thread (the vCPU runs from its current state). */
int vm_start(struct vm *vm);
/* Stop the vCPU: kicks KVM_RUN out, completes a pending I/O exit, and returns once the
 * thread is parked, so that registers and memory are quiescent. Idempotent. Returns the vCPU
 * thread's error if it failed. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);

/* vCPU state (regs, sregs, and a header with a version and the config) of a paused VM:
 * length written, or -ENOSPC if cap < vm_cpu_state_size(). */
size_t vm_cpu_state_size(void);
int64_t vm_save_cpu(struct vm *vm, void *buf, size_t cap);
/* Load it into a paused or never-started VM: -EINVAL for a blob of another version or size,
 * or whose config does not match this VM's memory size. */
int vm_load_cpu(struct vm *vm, const void *buf, size_t len);

/* The guest's own self-check, on a running VM: set cmd = VERIFY through host_write, wait
 * (at most timeout_ms) for the guest's report. 0, -ETIMEDOUT, or the vCPU thread's error. */
int vm_guest_verify(struct vm *vm, int timeout_ms, struct vm_verify *out);
/* The same check done by the host on the memory (the VM paused or not running): fills out
 * and, up to maxbad, the area indices of bad pages. A pause may land mid-iteration: the one
 * page of the iteration in flight that is half-stamped (each stamp word of its old or its
 * new generation, ledger still old) is then neither bad nor counted as checked. */
void vm_host_verify(const struct vm *vm, struct vm_verify *out, uint32_t *bad, unsigned maxbad);

/* Host address of [gpa, gpa + len) if it lies in one bank, else NULL. */
void *vm_gpa_to_host(const struct vm *vm, uint64_t gpa, uint64_t len);
/* Guest-physical address of device area i (0..GUEST_DEV_AREAS-1). Each area lies in one
 * bank when mem_size >= 128 MiB (or == 96 MiB); below, the bank boundary (mem_size / 2) cuts
 * through one of them. */
uint64_t vm_dev_area_gpa(const struct vm *vm, unsigned i);
/* Generations the guest finished (mailbox.generation). */
uint32_t vm_generation(const struct vm *vm);

#endif
