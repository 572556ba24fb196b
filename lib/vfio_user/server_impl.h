/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/server_impl.h - the server's state, shared by server.c (connection, dispatch,
 * VERSION, client lost), server_dev.c (device info, regions, reset, IRQs), server_dma.c
 * (DMA_MAP / DMA_UNMAP, reports, dt_vfu_dma_rw) and server_mig.c (DEVICE_FEATURE: migration
 * states, DMA logging; MIG_DATA_READ / _WRITE).
 *
 * A handler gets a received message whose header was checked, validates every length of the
 * payload against msg->len before reading it, and either fails (a negative errno: the error
 * reply, nothing changed) or succeeds with its reply payload in s->out (out_len bytes, plus
 * out_fds). Handlers never send on the socket themselves; only process() does, and
 * dt_vfu_dma_rw for its DMA_READ / DMA_WRITE requests.
 */
#ifndef DT_VFIO_USER_SERVER_IMPL_H
#define DT_VFIO_USER_SERVER_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <dirtytrack/vfio_user.h>

#include "vfio_user/msg.h"

#define VFU_SRV_MAX_REGIONS  64u
#define VFU_SRV_MAX_IRQS     64u
#define VFU_SRV_MAX_LOG	     256u	   /* DMA logging ranges, as Linux */
#define VFU_SRV_MSG_SLACK    8192u	   /* headers and ranges beyond the data of a message */
#define VFU_SRV_MAX_PENDING  64u	   /* commands queued while dt_vfu_dma_rw waits */
#define VFU_SRV_MAX_UNMAP_4K (64ull << 20) /* bytes of 4 KiB bitmap behind one unmap bitmap */

/* "Close the connection after the error reply": returned by a handler with the errno. */
#define VFU_CLOSE (1 << 30)

struct vfu_map {
	uint64_t iova, size;
	void *va;	/* our mapping: the client's fd, or reserved memory (message mapping) */
	uint32_t flags; /* VFU_DMA_MAP_F_READ / _WRITE */
	bool has_fd;
};

struct vfu_pending {
	struct vfu_pending *next;
	int err;	    /* != 0: answer with this error (the command was refused on receipt) */
	struct vfu_msg msg; /* payload points into data */
	uint8_t data[];
};

struct dt_vfu_server {
	/* The device, copied from the options. */
	struct dt_vfu_server_opts opts;
	struct dt_vfu_region regions[VFU_SRV_MAX_REGIONS];
	struct dt_vfu_irq irqs[VFU_SRV_MAX_IRQS];
	struct dt_vfu_server_ops ops;
	char *path;
	uint64_t path_dev, path_ino; /* the socket file we made */
	bool freeing;		     /* dt_vfu_server_free: no more device callbacks */

	/* Our limits. */
	uint32_t max_fds;
	uint64_t max_xfer, max_bitmap, log_pgsize;
	uint32_t max_maps;

	/* The connection. */
	int listen_fd, sock;
	bool negotiated;
	struct vfu_caps peer; /* the client's capabilities */
	uint16_t next_id;     /* of our DMA_READ / DMA_WRITE requests */
	uint8_t *rbuf;	      /* received commands */
	size_t rbuf_size;
	uint8_t *dbuf; /* replies to our DMA requests */
	struct vfu_pending *pending, **pending_tail;
	unsigned npending;

	/* The reply being built. */
	uint8_t *out;
	size_t out_cap, out_len;
	int out_fds[1];
	unsigned out_nfds;

	/* DMA. maps changes only in the thread that runs process(), under maps_lock taken for
	 * writing; dt_vfu_dma_rw from any thread reads it under the lock taken for reading. */
	struct dt_iommu *iommu;
	struct dt_device *dev;
	pthread_rwlock_t maps_lock;
	struct vfu_map *maps; /* sorted by iova */
	uint32_t nmaps, maps_cap;

	/* DMA logging (DEVICE_FEATURE DMA_LOGGING_*). */
	bool logging, log_all;
	struct vfu_dma_logging_range log_ranges[VFU_SRV_MAX_LOG]; /* sorted, disjoint */
	uint32_t nlog;

	/* Migration. */
	uint32_t mig_state;

	/* IRQs: irq_fds[i] has irqs[i].count eventfds (-1: none), under irq_lock, so that
	 * dt_vfu_irq_trigger may come from any thread. */
	pthread_mutex_t irq_lock;
	int *irq_fds[VFU_SRV_MAX_IRQS];
};

/* The reply payload buffer, at least len bytes (s->out_len is not changed). NULL: -ENOMEM. */
void *vfu_out_reserve(struct dt_vfu_server *s, size_t len);
/* The reply is exactly the len bytes at p: 0, or -ENOMEM. */
int vfu_reply_with(struct dt_vfu_server *s, const void *p, size_t len);

/* Handle one received command: 0 with the reply in s->out, or a negative errno (the error
 * reply), possibly | VFU_CLOSE... as -(errno | VFU_CLOSE). Used by process() and the fuzzer. */
int vfu_server_dispatch(struct dt_vfu_server *s, struct vfu_msg *msg);
/* Queue a command that arrived while dt_vfu_dma_rw waited for its reply; err != 0: it is
 * to be answered with that error. */
int vfu_server_queue(struct dt_vfu_server *s, const struct vfu_msg *msg, int err);
/* Tear down a client as "client lost" (callbacks when notify). */
void vfu_server_drop_client(struct dt_vfu_server *s, bool notify);

/* server_dev.c */
int vfu_handle_device_info(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_region_info(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_region_read(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_region_write(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_region_write_multi(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_reset(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_irq_info(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_set_irqs(struct dt_vfu_server *s, struct vfu_msg *msg);
/* Close every IRQ eventfd the client gave. */
void vfu_irqs_close(struct dt_vfu_server *s);

/* server_dma.c */
int vfu_handle_dma_map(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_dma_unmap(struct dt_vfu_server *s, struct vfu_msg *msg);
void vfu_unmap_all(struct dt_vfu_server *s);
/* Index of the mapping containing iova, or -1. */
int vfu_map_find(const struct dt_vfu_server *s, uint64_t iova);
/* Index of the first mapping that ends above iova (nmaps if none). */
uint32_t vfu_map_lower_bound(const struct dt_vfu_server *s, uint64_t iova);
/* Dirty pages of [iova, iova + length) at page_size into bitmap (zeroed, bit 0 = iova), read
 * and clear; parts of mappings outside the range that the report had to take are merged
 * back. Tracking must be on. */
int vfu_dirty_bitmap(struct dt_vfu_server *s, uint64_t iova, uint64_t length, uint64_t page_size,
		     void *bitmap);

/* server_mig.c */
int vfu_handle_feature(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_mig_data_read(struct dt_vfu_server *s, struct vfu_msg *msg);
int vfu_handle_mig_data_write(struct dt_vfu_server *s, struct vfu_msg *msg);
/* Walk the migration state to `to` through valid arcs, calling the device per arc. */
int vfu_mig_walk(struct dt_vfu_server *s, uint32_t to);
/* Stop DMA logging (tracking off, ranges dropped). */
void vfu_logging_stop(struct dt_vfu_server *s);

#endif
