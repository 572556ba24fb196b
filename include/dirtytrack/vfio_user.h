/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack/vfio_user.h - vfio-user: a PCI-like device served from this process over a UNIX
 * socket (the server, below), and the VMM side that talks to such a device (the client,
 * <dirtytrack/vfio_user_client.h>, included at the end). docs/vfio-user.md is the guide.
 *
 * Server. A device author describes the device (flags, regions, IRQs, migration support) and
 * its callbacks, then accepts one client at a time and handles its messages:
 *
 *	struct dt_vfu_server *s = dt_vfu_server_new(&opts);
 *	while (dt_vfu_server_accept(s) == 0)
 *		dt_vfu_server_run(s);		// until the client goes away
 *	dt_vfu_server_free(s);
 *
 * DMA. The server owns a struct dt_iommu: the client's DMA_MAP / DMA_UNMAP become mappings in
 * it (a DMA_MAP with a file descriptor is mmap'ed MAP_SHARED at its offset; one without is a
 * "message" mapping, backed here by untouched reserved memory, whose bytes live in the client
 * and move with DMA_READ / DMA_WRITE messages). The device gets that container and a
 * struct dt_device of the kind it chose (opts.dma_kind, as in <dirtytrack/iommu.h>) and
 * touches guest memory with dt_vfu_dma_rw() (any mapping), or directly with dt_pin_pages /
 * dt_dma_rw / dt_dma_log on dt_vfu_server_device() (fd mappings only): every rule of
 * docs/semantics.md holds, so DMA_LOGGING_REPORT and DMA_UNMAP's dirty bitmap are reports of
 * that container (pinned pages of an EMULATED device are in every report, and so on).
 *
 * Client lost. When the client disconnects (or breaks the protocol, which closes the
 * connection), the server unmaps every DMA mapping (the device is told through its unmap
 * callback, pins are dropped), stops dirty tracking, closes the IRQ eventfds, calls the
 * client_lost callback and walks the device's migration state back to RUNNING through valid
 * arcs (mig_state callback); dt_vfu_server_process() returns -ECONNRESET (-EPROTO after a
 * violation). Device state is otherwise kept, and another client may be accepted.
 *
 * Errors: 0 (or a count) or a negative errno with one log line. A client's bad message gets
 * an error reply with the errno and never changes state partially.
 * Thread safety: one thread runs accept/process/run. dt_vfu_dma_rw on fd mappings and
 * dt_vfu_irq_trigger may be called from any thread, also concurrently with process() (the
 * mapping list and the eventfds are locked), and from the device's callbacks. dt_vfu_dma_rw
 * on message mappings talks on the socket: only from the device's callbacks (inside
 * process) or while no process() runs.
 */
#ifndef DIRTYTRACK_VFIO_USER_H
#define DIRTYTRACK_VFIO_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dirtytrack/iommu.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dt_vfu_server;

/* Region flags: the client may read / write it (REGION_READ / _WRITE), or mmap fd. */
#define DT_VFU_REGION_READ  (1u << 0)
#define DT_VFU_REGION_WRITE (1u << 1)
#define DT_VFU_REGION_MMAP  (1u << 2)

struct dt_vfu_region {
	uint64_t size;	 /* 0: the region does not exist (flags must be 0) */
	uint32_t flags;	 /* DT_VFU_REGION_* */
	int fd;		 /* MMAP: the server sends a copy of it with the region info; else -1 */
	uint64_t offset; /* MMAP: offset of the region in fd */
};

/* Interrupt types (DEVICE_GET_IRQ_INFO): count vectors, flags VFIO_IRQ_INFO_* values. */
struct dt_vfu_irq {
	uint32_t count;
	uint32_t flags;
};

/* Device flags (DEVICE_GET_INFO). */
#define DT_VFU_DEVICE_RESET (1u << 0)
#define DT_VFU_DEVICE_PCI   (1u << 1)

/*
 * The device's callbacks; every one optional. opaque is opts.opaque. A callback returns 0
 * (or a byte count) or a negative errno, which goes to the client in the error reply.
 * States are the values of enum dt_vfu_mig_state (vfio_user_client.h): STOP 1, RUNNING 2,
 * STOP_COPY 3, RESUMING 4, PRE_COPY 6 (and ERROR 0, never requested).
 */
struct dt_vfu_server_ops {
	/* REGION_READ / REGION_WRITE of count bytes at offset (inside the region, checked):
	 * returns count or a negative errno. */
	int64_t (*region_rw)(void *opaque, uint32_t index, uint64_t offset, void *buf,
			     uint32_t count, bool write);
	/* DEVICE_RESET (only if opts.device_flags has DT_VFU_DEVICE_RESET). Also brings the
	 * migration state back to RUNNING. */
	int (*reset)(void *opaque);
	/* One direct arc of the v2 migration state machine, from -> to; the server splits a
	 * longer transition into arcs. An error fails the SET (state stays `from`). */
	int (*mig_state)(void *opaque, uint32_t from, uint32_t to);
	/* MIG_DATA_READ in PRE_COPY / STOP_COPY: up to size bytes of device state into buf;
	 * returns the bytes given (< size: no more data for now), or a negative errno. */
	int64_t (*mig_read)(void *opaque, void *buf, uint64_t size);
	/* MIG_DATA_WRITE in RESUMING: size bytes; returns size or a negative errno. */
	int64_t (*mig_write)(void *opaque, const void *buf, uint64_t size);
	/* Bytes of device state still to read (pre-copy data in PRE_COPY, everything in
	 * STOP_COPY): answered to DEVICE_FEATURE MIG_DATA_SIZE GET. Without it that feature is
	 * not supported (-ENOTTY). */
	int (*mig_pending)(void *opaque, uint64_t *bytes);
	/* The client went away (called before the state walks back to RUNNING). */
	void (*client_lost)(void *opaque);
	/* A DMA_MAP is in the container: [iova, iova + size) at host (NULL for a message
	 * mapping, reached only through dt_vfu_dma_rw), prot PROT_READ | PROT_WRITE. An error
	 * fails the DMA_MAP with that errno and leaves nothing mapped. */
	int (*dma_map)(void *opaque, uint64_t iova, uint64_t size, void *host, uint32_t prot);
	/* A mapping is about to go (DMA_UNMAP, UNMAP_ALL, client lost; not dt_vfu_server_free):
	 * the device must stop using host after this returns. */
	void (*dma_unmap)(void *opaque, uint64_t iova, uint64_t size);
};

struct dt_vfu_server_opts {
	size_t size; /* sizeof(struct dt_vfu_server_opts) */
	/* Where clients connect: a socket path created 0600 (an old socket there is
	 * replaced), or, with path NULL, fd: one already connected UNIX stream socket (the
	 * server owns it, also on failure; no further accept). */
	const char *path;
	int fd;
	/* The device. */
	uint32_t device_flags; /* DT_VFU_DEVICE_* */
	uint32_t num_regions;  /* at most 64 */
	const struct dt_vfu_region *regions;
	uint32_t num_irqs; /* at most 64 */
	const struct dt_vfu_irq *irqs;
	/* Migration: DT_VFU_MIGRATION_STOP_COPY [| DT_VFU_MIGRATION_PRE_COPY]; 0: none. */
	uint64_t migration_flags;
	const struct dt_vfu_server_ops *ops;
	void *opaque;
	/* DMA: the kind of the device's dt_device (DT_DEVICE_EMULATED is 0). */
	enum dt_device_kind dma_kind;
	/* Limits we advertise, 0 for the default: descriptors per message (8), data per
	 * REGION/DMA/MIG message (1 MiB), one dirty bitmap in a reply (16 MiB), DMA mappings
	 * (65535), and the page size of the "migration" capability (4096). */
	uint32_t max_msg_fds;
	uint64_t max_data_xfer_size;
	uint64_t max_bitmap_size;
	uint32_t max_dma_maps;
	uint64_t log_pgsize;
	/* How long dt_vfu_dma_rw waits for the client's answer to one DMA_READ / DMA_WRITE
	 * (ms; 0: 10 s, -1: forever). On timeout the connection is given up (-ETIMEDOUT). */
	int dma_timeout_ms;
};

/* NULL and errno on failure (EINVAL bad options, EADDRINUSE / EEXIST path, ENOMEM). */
struct dt_vfu_server *dt_vfu_server_new(const struct dt_vfu_server_opts *opts);
/* Drop the client (as "client lost", without callbacks), unlink the socket file if it is
 * still the one we made, free. */
void dt_vfu_server_free(struct dt_vfu_server *s);

/* Block until a client connects. -EBUSY if one is connected, -EINVAL for a server made from
 * a connected fd. */
int dt_vfu_server_accept(struct dt_vfu_server *s);
/* The fd to poll: the client's socket when connected, else the listening socket (-ENOTCONN
 * for a server made from a connected fd whose client went away). */
int dt_vfu_server_fd(const struct dt_vfu_server *s);
/* A client is connected. */
bool dt_vfu_server_connected(const struct dt_vfu_server *s);

/*
 * Read and handle one message of the client (blocks until one arrives). Returns 0 when it
 * was handled (also when it got an error reply), -ECONNRESET when the client went away,
 * -EPROTO when it broke the protocol so that the connection was closed (bad first message,
 * refused VERSION, a size that desynchronizes the stream), -ENOTCONN without a client. After
 * -ECONNRESET / -EPROTO the client-lost cleanup has run.
 */
int dt_vfu_server_process(struct dt_vfu_server *s);
/* process() until the client goes away: 0 then, else the error of process(). */
int dt_vfu_server_run(struct dt_vfu_server *s);

/* The DMA space and the device's dt_device in it (valid for the server's life). */
struct dt_iommu *dt_vfu_server_iommu(struct dt_vfu_server *s);
struct dt_device *dt_vfu_server_device(struct dt_vfu_server *s);

/*
 * Device DMA: copy len bytes between buf and guest memory at iova. fd mappings go through
 * dt_dma_rw(); message mappings through DMA_READ / DMA_WRITE to the client (in pieces of the
 * client's max_data_xfer_size), a write then marked with dt_dma_log(). The range may span
 * adjacent mappings of both kinds. 0 or -EINVAL (outside the mappings), -EPERM, -ENOTCONN,
 * -EIO (the client's error reply), -EPROTO (a bad reply), -ETIMEDOUT (no answer in
 * opts.dma_timeout_ms: the connection is then given up).
 */
int dt_vfu_dma_rw(struct dt_vfu_server *s, uint64_t iova, void *buf, size_t len, bool write);

/* Signal vector `sub` of IRQ index `index` (writes its eventfd set by SET_IRQS).
 * -ENOENT if the client set none, -EINVAL out of range. */
int dt_vfu_irq_trigger(struct dt_vfu_server *s, uint32_t index, uint32_t sub);

/* The migration state (enum dt_vfu_mig_state value). */
uint32_t dt_vfu_server_mig_state(const struct dt_vfu_server *s);

#ifdef __cplusplus
}
#endif

#include <dirtytrack/vfio_user_client.h>

#endif /* DIRTYTRACK_VFIO_USER_H */
