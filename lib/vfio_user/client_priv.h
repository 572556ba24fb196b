/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/client_priv.h - what the client's files (client.c: connection, requests,
 * regions; client_dma.c: mappings, the mirror, DMA logging; client_mig.c: the migration
 * state machine and the migration device) share.
 *
 * Invariants:
 * - one request in flight: every public call takes `lock` and holds it until its reply (or
 *   error) is in; server requests (DMA_READ/DMA_WRITE) that arrive meanwhile are served in
 *   between, on the same thread;
 * - `broken` is set by anything that leaves the stream out of step or the peer untrusted
 *   (a malformed reply, a timeout, a closed socket); every later request is -ECONNRESET;
 * - `maps` holds the live mappings (what the server has) and the retired ones (unmapped on
 *   the server while logging was on, still in the mirror so their dirty pages are harvested).
 */
#ifndef DT_VFIO_USER_CLIENT_PRIV_H
#define DT_VFIO_USER_CLIENT_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <dirtytrack/vfio_user_client.h>

#include "vfio_user/msg.h"

#define CLIENT_PAGE	       4096ull
#define CLIENT_DEF_TIMEOUT_MS  10000
#define CLIENT_DEF_FDS	       8u
#define CLIENT_DEF_XFER	       (1ull << 20)
#define CLIENT_DEF_BITMAP      (16ull << 20)
#define CLIENT_MAX_LOG_RANGES  256u
#define CLIENT_MAX_DEVICE_DATA (64ull << 20) /* the engine's largest device state */

struct client_map {
	uint64_t iova, size;
	void *vaddr;   /* where this process sees the memory (the mirror maps it) */
	bool own_mmap; /* vaddr is our mmap of the caller's fd */
	bool retired;  /* unmapped on the server, kept in the mirror while logging */
	int prot;
};

struct dt_vfu_client {
	pthread_mutex_t lock;
	int sock;
	bool broken;
	uint16_t next_id;
	int timeout_ms;
	struct vfu_caps ours, theirs;
	uint64_t xfer;	     /* data bytes in one message, both ways */
	uint64_t bitmap_max; /* bytes of bitmap in one reply */
	uint64_t mig_data_hint;
	struct dt_vfu_client_info info;
	uint8_t *rbuf; /* receive buffer, rbuf_size bytes */
	size_t rbuf_size;

	/* mappings and the mirror */
	struct client_map *maps;
	unsigned nmaps;
	struct dt_iommu *mirror;
	struct dt_device *mdev;

	/* DMA logging */
	bool logging;
	uint64_t log_page_size;
	struct dt_vfu_range *log_ranges;
	unsigned nlog_ranges;
	uint64_t *sync_bitmap; /* one report chunk at 4 KiB */
	size_t sync_bitmap_size;

	/* migration */
	enum dt_vfu_mig_state mig_state;
	uint8_t *mig_buf; /* data read in the saving states */
	size_t mig_len, mig_cap;
	bool mig_complete;	 /* STOP_COPY data read to its end */
	uint64_t mig_last_chunk; /* bytes the last pre-copy drain brought */
	char mig_name[64];
};

/* The reply of one request, its payload in c->rbuf (valid until the next request). fds are
 * the caller's to take (set to -1) or leave: client_reply_done() closes what is left. */
struct client_reply {
	struct vfu_msg msg;
};

/* Send cmd with payload iov[] (+ fds) and wait for its reply, serving server requests that
 * come meanwhile. max_reply: the largest payload accepted. A reply with the error flag gives
 * the server's errno; a malformed one -EPROTO (and breaks the connection). With the lock. */
int client_xact(struct dt_vfu_client *c, uint16_t cmd, const struct iovec *iov, unsigned niov,
		const int *fds, unsigned nfds, size_t max_reply, struct client_reply *reply);
void client_reply_done(struct client_reply *reply);

/* Mark the connection unusable; returns err for chaining. */
int client_break(struct dt_vfu_client *c, int err);

/* DEVICE_FEATURE with data (may be NULL/0) and a reply of at most max_data data bytes after
 * the 8-byte feature header. */
int client_feature(struct dt_vfu_client *c, uint32_t flags, const void *data, size_t len,
		   size_t max_data, struct client_reply *reply);
/* DEVICE_FEATURE GET of a feature whose data is exactly size bytes, copied to out. A refusal
 * is returned as is; a reply of another size breaks the connection (-EPROTO, named name). */
int client_feature_get(struct dt_vfu_client *c, uint32_t feature, void *out, size_t size,
		       const char *name);

/* Serve one server request (DMA_READ / DMA_WRITE): client_dma.c. */
int client_serve_dma(struct dt_vfu_client *c, const struct vfu_msg *msg);

/* client_dma.c: mirror setup and teardown. */
int client_mirror_init(struct dt_vfu_client *c);
void client_mirror_fini(struct dt_vfu_client *c);

/* client_mig.c: drop the migration data buffer. */
void client_mig_reset(struct dt_vfu_client *c);

#endif /* DT_VFIO_USER_CLIENT_PRIV_H */
