/* SPDX-License-Identifier: MIT */
/*
 * vmm/remote.h - the VMM's side of a test device in another process (vdev_server.h), over
 * vfio-user: connect, DMA-map both memory banks (their memfds), create the device on its
 * area, track its DMA through the client's mirror and pre-harvest hook, carry its state in
 * the migration stream, pause and resume it through its migration states, verify it.
 *
 * Threads: one control thread, as machine.h.
 */
#ifndef DT_VMM_REMOTE_H
#define DT_VMM_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include <errno.h>
#include <stdio.h>

#include <dirtytrack/dirtytrack.h>

#include "vdev.h"
#include "vm.h"

struct remote {
	struct dt_vfu_client *c;
	enum vdev_type type; /* what the server serves */
	char name[32];	     /* in the stream: "vfio-user-" + vdev type name */
	bool started;	     /* CMD_START sent, or resumed after a load */
	bool logging;
};

#ifndef DT_HAVE_VFIO_USER
/* Built without vfio-user: remote_open says so; nothing else is reached. */
static inline int remote_open(struct remote *r, const char *path, struct vm *vm)
{
	(void)r, (void)vm;
	fprintf(stderr, "vmm: %s: this build has no vfio-user (meson option vfio_user)\n", path);
	return -ENOTSUP;
}
static inline void remote_close(struct remote *r)
{
	(void)r;
}
static inline int remote_start(struct remote *r)
{
	(void)r;
	return -ENOTSUP;
}
static inline int remote_pause(struct remote *r, bool for_save)
{
	(void)r, (void)for_save;
	return -ENOTSUP;
}
static inline int remote_resume(struct remote *r)
{
	(void)r;
	return -ENOTSUP;
}
static inline int remote_track(struct remote *r, struct dt_dirty_set *set)
{
	(void)r, (void)set;
	return -ENOTSUP;
}
static inline int remote_migrate_device(struct remote *r, struct dt_migrate_device *out)
{
	(void)r, (void)out;
	return -ENOTSUP;
}
static inline int remote_writes(struct remote *r, uint64_t *writes)
{
	(void)r, (void)writes;
	return -ENOTSUP;
}
static inline int remote_verify(struct remote *r, uint64_t *bad, uint64_t *bad_gpa, unsigned maxbad)
{
	(void)r, (void)bad, (void)bad_gpa, (void)maxbad;
	return -ENOTSUP;
}
#else
#include <dirtytrack/vfio_user.h>

/* Connect to the server at path, map the VM's banks, create the device over the area of its
 * type. 0 or a negative errno (message on stderr). */
int remote_open(struct remote *r, const char *path, struct vm *vm);
void remote_close(struct remote *r);

/* Start writing: CMD_START, or (after a migration in) RUNNING. */
int remote_start(struct remote *r);
/* Stop (STOP_COPY when saving follows: the migration's pause), and back to RUNNING. */
int remote_pause(struct remote *r, bool for_save);
int remote_resume(struct remote *r);

/* Source: DMA logging over guest memory, and the mirror with its hook in set. */
int remote_track(struct remote *r, struct dt_dirty_set *set);

/* The device state in the stream. */
int remote_migrate_device(struct remote *r, struct dt_migrate_device *out);

/* Page stamps the device wrote so far. */
int remote_writes(struct remote *r, uint64_t *writes);

/* Stale pages of the device (the device paused or not started), up to maxbad addresses. */
int remote_verify(struct remote *r, uint64_t *bad, uint64_t *bad_gpa, unsigned maxbad);

#endif /* DT_HAVE_VFIO_USER */

#endif
