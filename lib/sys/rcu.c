/* SPDX-License-Identifier: MIT */
/*
 * sys/rcu.c - grace periods over per-thread reader slots (see rcu.h).
 *
 * The writer bumps rcu_gp_ctr, forces a full barrier on every running thread of the process
 * (membarrier) or issues one itself (fenced readers), then waits for each slot that holds a
 * counter older than the new one. This is the store-buffering pattern: the writer stored
 * (unpublished) then reads the slots; a reader stored its slot then reads the data; with a
 * barrier on both sides at least one sees the other, so a reader the writer does not wait
 * for cannot see the unpublished object.
 *
 * Slots are never freed: a thread's exit returns its slot to the pool (in_use = 0), so the
 * list a writer walks only grows to the peak number of threads that ever read.
 */
#include "sys/rcu.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

_Atomic uint64_t rcu_gp_ctr = 1;
int rcu_asymmetric;
__thread struct rcu_slot *rcu_my_slot __attribute__((tls_model("initial-exec")));

static _Atomic(struct rcu_slot *) slot_list;
static pthread_mutex_t gp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t slot_key;
/* Readers whose slot could not be allocated share this one (never freed). */
static struct rcu_slot emergency_slot;

static void slot_release(void *p)
{
	struct rcu_slot *s = p;

	atomic_store_explicit(&s->ctr, 0, memory_order_release);
	s->nesting = 0;
	atomic_store_explicit(&s->in_use, 0, memory_order_release);
}

static void do_init(void)
{
	pthread_key_create(&slot_key, slot_release);
#ifndef DT_TSAN
	long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
	    syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
		rcu_asymmetric = 1;
#endif
}

void rcu_init(void)
{
	pthread_once(&init_once, do_init);
}

struct rcu_slot *rcu_register_thread(void)
{
	struct rcu_slot *s;

	rcu_init();
	for (s = atomic_load(&slot_list); s; s = s->next) {
		int free_slot = 0;

		if (atomic_compare_exchange_strong(&s->in_use, &free_slot, 1))
			goto found;
	}
	s = aligned_alloc(64, sizeof(*s));
	if (!s) {
		/* Shared by every thread that could not get its own: nesting would be racy, so
		 * such threads must not nest; they do not (marking paths never nest). */
		rcu_my_slot = &emergency_slot;
		return &emergency_slot;
	}
	atomic_init(&s->ctr, 0);
	atomic_init(&s->in_use, 1);
	s->nesting = 0;
	s->next = atomic_load(&slot_list);
	while (!atomic_compare_exchange_weak(&slot_list, &s->next, s))
		;
found:
	s->nesting = 0;
	pthread_setspecific(slot_key, s);
	rcu_my_slot = s;
	return s;
}

static void wait_for_slot(struct rcu_slot *s, uint64_t gp)
{
	for (unsigned spins = 0;; spins++) {
		uint64_t c = atomic_load_explicit(&s->ctr, memory_order_acquire);

		if (!c || c >= gp)
			return;
		if (spins > 64)
			sched_yield();
	}
}

void rcu_synchronize(void)
{
	uint64_t gp;

	rcu_init();
	pthread_mutex_lock(&gp_lock);
	gp = atomic_fetch_add(&rcu_gp_ctr, 1) + 1;
	if (!rcu_asymmetric || syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0))
		atomic_thread_fence(memory_order_seq_cst);
	for (struct rcu_slot *s = atomic_load(&slot_list); s; s = s->next)
		wait_for_slot(s, gp);
	wait_for_slot(&emergency_slot, gp);
	pthread_mutex_unlock(&gp_lock);
}
