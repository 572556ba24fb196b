/* SPDX-License-Identifier: MIT */
/*
 * vmm/vdev_server.h - one of the micro-VM's DMA test devices (vdev.h) served over vfio-user,
 * in a process of its own: `dirtytrack vfio-user-device`, and the end-to-end tests.
 *
 * The device's guest memory is what the VMM DMA-maps (memfds, mmap'ed by the server
 * library into its dt_iommu); the device attaches to that container, so its writes are in
 * the server's DMA log, which the VMM fetches with DMA_LOGGING_REPORT every round. Its state
 * (vdev_save) moves with MIG_DATA_READ / MIG_DATA_WRITE through the v2 migration states:
 *
 *	RUNNING -> STOP		the device pauses
 *	STOP -> STOP_COPY	its state is saved, then read by the VMM
 *	STOP -> RESUMING	(destination) the state is written by the VMM...
 *	RESUMING -> STOP	...and loaded here (a bad state fails the arc)
 *	STOP -> RUNNING		the device resumes, or starts when it was loaded
 *
 * Registers: vdev_regs.h. A mapping removed under the device (DMA_UNMAP of its memory, or
 * the client gone) frees the device first: it never writes memory that is not mapped.
 *
 * Threads: one thread runs vdev_server_accept/run; the device writes from its own thread.
 */
#ifndef DT_VMM_VDEV_SERVER_H
#define DT_VMM_VDEV_SERVER_H

#include "vdev.h"

struct vdev_server;

/* Serve a device of this type on the socket path (created 0600), or on fd (a connected UNIX
 * socket; path NULL). NULL and errno on failure (messages on stderr). */
struct vdev_server *vdev_server_new(const char *path, int fd, enum vdev_type type,
				    const struct vdev_config *cfg);
void vdev_server_free(struct vdev_server *s);

/* Wait for a client (path servers), then handle its messages until it goes away: 0, or a
 * negative errno (the server's: -EPROTO when the client broke the protocol). */
int vdev_server_serve_one(struct vdev_server *s);

#endif
