/* SPDX-License-Identifier: MIT */
/*
 * vmm/vdev_priv.h - the inside of a DMA test device, shared by vdev.c (life cycle and the
 * writer thread) and vdev_state.c (save, load, verify).
 *
 * Locking: lock protects every field below it. The writer thread holds it for a whole burst
 * of writes and drops it only while it waits, so a control thread that holds it knows no
 * write is in flight; pause_req lets a burst end early without waiting for the lock.
 */
#ifndef DT_VMM_VDEV_PRIV_H
#define DT_VMM_VDEV_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vdev.h"

#define VDEV_PAGE 4096u

struct vdev {
	enum vdev_type type;
	struct dt_iommu *iommu;
	struct dt_device *dev;
	uint64_t area_gpa, area_size;
	uint32_t area_pages;
	uint8_t *area_host; /* host view of the area (one region holds all of it) */

	pthread_t thread;
	bool thread_started;
	atomic_bool pause_req; /* a burst stops at the next page when set */
	atomic_uint_fast64_t writes;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC: the writer's deadlines */
	struct vdev_config cfg;
	bool started; /* vdev_start ran: a load is refused from then on */
	bool running;
	bool stop;
	int error; /* the writer's failure (negative errno): it writes no more */

	uint32_t seq;	    /* the stamp of the latest write; 0: none yet */
	uint32_t *expected; /* area_pages stamps, 0: never written */
	uint64_t rng;	    /* splitmix64 state for the random pages */

	/* The ring: ring_pages pages from ring_gpa, pinned when pinned is set. */
	bool pinned;
	uint64_t ring_gpa;
	uint32_t ring_next; /* next ring page to write */
	void **ring_vaddrs; /* cfg.ring_pages host addresses from dt_pin_pages */

	/* PASSTHROUGH: running time before the latest resume, and when that resume was. */
	uint64_t pt_elapsed_ns;
	uint64_t run_since_ns;
	/* Pacing: writes_done writes since t0_ns, the latest start or resume. */
	uint64_t t0_ns;
	uint64_t writes_done;
};

/* Pin the ring (ring_gpa, cfg.ring_pages) into *vaddrs (allocated here). 0 or -errno. */
int vdev_pin_ring(struct vdev *d, uint64_t ring_gpa, uint32_t ring_pages, void ***vaddrs);
/* Drop the ring's pins, if any. Called with lock held or the writer stopped. */
void vdev_unpin_ring(struct vdev *d);

#endif
