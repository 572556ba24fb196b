/* SPDX-License-Identifier: MIT */
/*
 * sys/rcu.h - read-side critical sections and grace periods (a small userspace RCU).
 *
 * Readers (the lock-free marking paths) bracket their use of shared objects with
 * rcu_read_lock()/rcu_read_unlock(): a store to a per-thread slot and, where the kernel
 * offers membarrier(PRIVATE_EXPEDITED), only a compiler barrier. rcu_synchronize() returns
 * once every read-side section that might have seen an object before it was unpublished has
 * ended; then the object may be freed, or its contents read without racing writers.
 * Sections nest. Without membarrier (or in a ThreadSanitizer build) readers use a full fence.
 */
#ifndef DT_SYS_RCU_H
#define DT_SYS_RCU_H

#include <stdatomic.h>
#include <stdint.h>

struct rcu_slot {
	_Atomic uint64_t ctr; /* 0: outside; else the grace-period counter seen at entry */
	_Atomic int in_use;
	struct rcu_slot *next;
	unsigned nesting;
} __attribute__((aligned(64)));

extern _Atomic uint64_t rcu_gp_ctr;
extern int rcu_asymmetric;
/* initial-exec: the marking paths read it on every call, and the general-dynamic model of a
 * shared library would make that a call to __tls_get_addr (twice per dt_dma_log). One
 * pointer of static TLS fits glibc's surplus even when the library is dlopen()ed. */
extern __thread struct rcu_slot *rcu_my_slot __attribute__((tls_model("initial-exec")));

/* Once per process, before any reader; idempotent and thread safe. */
void rcu_init(void);
struct rcu_slot *rcu_register_thread(void);
void rcu_synchronize(void);

static inline void rcu_read_lock(void)
{
	struct rcu_slot *s = rcu_my_slot;

	if (__builtin_expect(!s, 0))
		s = rcu_register_thread();
	if (s->nesting++)
		return;
#ifdef DT_TSAN
	atomic_exchange(&s->ctr, atomic_load(&rcu_gp_ctr));
#else
	atomic_store_explicit(&s->ctr, atomic_load_explicit(&rcu_gp_ctr, memory_order_acquire),
			      memory_order_relaxed);
	if (rcu_asymmetric)
		atomic_signal_fence(memory_order_seq_cst);
	else
		atomic_thread_fence(memory_order_seq_cst);
#endif
}

static inline void rcu_read_unlock(void)
{
	struct rcu_slot *s = rcu_my_slot;

	if (--s->nesting)
		return;
	atomic_store_explicit(&s->ctr, 0, memory_order_release);
}

#endif
