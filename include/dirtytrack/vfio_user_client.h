/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack/vfio_user_client.h - the VMM side of vfio-user: a device emulated in another
 * process, reached over a UNIX socket, whose DMA writes feed the dirty set and whose state
 * travels in the migration stream.
 *
 * A client is one connection to one device server. It negotiates the version and the limits
 * (message descriptors, data transfer size, dirty bitmap size), reads the device and region
 * info, forwards region reads and writes, tells the server the guest memory it may DMA to
 * (memfd-backed, passed by SCM_RIGHTS, or served over the socket with DMA_READ/DMA_WRITE),
 * drives the device's DMA logging and its v2 migration state machine.
 *
 * Dirty tracking: the client keeps a *mirror*, a local struct dt_iommu with the same mappings
 * as the server (same iova, same memory) and one LOGGING device standing for the remote
 * device. Before every harvest of a dirty set it was added to (dt_vfu_client_add_to_set), the
 * client fetches the device's DMA log (DMA_LOGGING_REPORT over every logged range) and
 * replays it with dt_dma_log() on the mirror, so the device's pages come in DT_CLASS_DEVICE
 * of that same harvest. DMA_WRITE requests the client serves are written with dt_dma_rw() on
 * the mirror: DT_CLASS_DEVICE too.
 *
 * Migration: dt_vfu_client_migrate_device() fills a struct dt_migrate_device whose save,
 * pending and load callbacks move the device state through MIG_DATA_READ / MIG_DATA_WRITE.
 * The device must be stopped by the migration's pause callback
 * (dt_vfu_client_mig_set_state(c, DT_VFU_MIG_STOP_COPY)) so that the final harvest sees its
 * last writes; docs/vfio-user.md ("Client") has the whole recipe.
 *
 * Errors: 0 (or a count) or a negative errno, with one log line (dt_set_log); a malformed
 * reply (bad length, id, command, sizes that lie) is -EPROTO and breaks the connection
 * (every later call: -ECONNRESET); a reply with the error flag is the server's errno.
 * Thread safety: every call may come from any thread; the calls of one client serialize on
 * its lock (one request in flight at a time).
 */
#ifndef DIRTYTRACK_VFIO_USER_CLIENT_H
#define DIRTYTRACK_VFIO_USER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dirtytrack/iommu.h>
#include <dirtytrack/migrate.h>
#include <dirtytrack/track.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dt_vfu_client;

struct dt_vfu_client_opts {
	size_t size;	/* sizeof(struct dt_vfu_client_opts) */
	int timeout_ms; /* for each reply; 0: 10 s; -1: wait forever */
	/* Our side of the negotiation, 0 for the default: descriptors we accept in one
	 * message (8), the largest DMA_READ/DMA_WRITE data we accept (1 MiB), the largest
	 * dirty bitmap we accept in one reply (16 MiB: 512 GiB of 4 KiB pages). */
	uint32_t max_msg_fds;
	uint64_t max_data_xfer_size;
	uint64_t max_bitmap_size;
	/* pending() of the migration device when the server cannot tell (see docs): bytes. */
	uint64_t mig_data_hint;
};

/* Connect to the server's socket at path (or take a connected UNIX stream socket, which the
 * client then owns, also on failure), negotiate VERSION, read DEVICE_GET_INFO and probe the
 * migration and DMA logging features. NULL and errno on failure (ECONNREFUSED, EPROTO: the
 * server's reply is bad or its version incompatible, ENOMEM, ETIMEDOUT). */
struct dt_vfu_client *dt_vfu_client_connect(const char *path,
					    const struct dt_vfu_client_opts *opts);
struct dt_vfu_client *dt_vfu_client_from_fd(int fd, const struct dt_vfu_client_opts *opts);
/* Close the connection (the server drops our mappings) and free. NULL is a no-op. */
void dt_vfu_client_free(struct dt_vfu_client *c);

/* What was negotiated and what the device is. */
struct dt_vfu_client_info {
	uint16_t major, minor;	     /* the version agreed */
	uint32_t max_msg_fds;	     /* the server accepts in one message */
	uint64_t max_data_xfer_size; /* the server accepts in one REGION_WRITE / MIG_DATA */
	uint64_t pgsizes;	     /* DMA map page sizes the server supports */
	uint32_t max_dma_maps;
	uint64_t max_bitmap_size; /* bytes of one dirty bitmap in a reply (both sides' minimum) */
	uint64_t mig_pgsize;	  /* the server's "migration" capability (0: absent) */
	uint32_t device_flags;	  /* DEVICE_GET_INFO: VFIO_DEVICE_FLAGS_RESET | _PCI */
	uint32_t num_regions;
	uint32_t num_irqs;
	uint64_t mig_flags; /* MIGRATION feature: DT_VFU_MIGRATION_* (0: no migration) */
	bool dma_logging;   /* DMA_LOGGING_START/STOP probe succeeded */
	bool mig_data_size; /* the server answers MIG_DATA_SIZE (exact pending size) */
};
#define DT_VFU_MIGRATION_STOP_COPY (1ull << 0)
#define DT_VFU_MIGRATION_PRE_COPY  (1ull << 2)

int dt_vfu_client_get_info(struct dt_vfu_client *c, struct dt_vfu_client_info *info);

/* ---- regions -------------------------------------------------------------------------- */

struct dt_vfu_region_info {
	uint32_t flags; /* VFIO_REGION_INFO_FLAG_READ | _WRITE | _MMAP | _CAPS */
	uint64_t size;
	uint64_t offset; /* mmap offset of fd */
	int fd;		 /* the region's fd when the server sent one (caller closes), else -1 */
};
/* -EINVAL for an index >= num_regions. */
int dt_vfu_client_region_info(struct dt_vfu_client *c, uint32_t index,
			      struct dt_vfu_region_info *info);
/* Read or write len bytes at offset of region index, split into messages of the negotiated
 * data transfer size. Returns 0 or a negative errno (the server's, or -EPROTO). */
int dt_vfu_client_region_read(struct dt_vfu_client *c, uint32_t index, uint64_t offset, void *buf,
			      size_t len);
int dt_vfu_client_region_write(struct dt_vfu_client *c, uint32_t index, uint64_t offset,
			       const void *buf, size_t len);
/* DEVICE_RESET. */
int dt_vfu_client_reset(struct dt_vfu_client *c);

/* ---- interrupts ----------------------------------------------------------------------- */

struct dt_vfu_irq_info {
	uint32_t flags; /* VFIO_IRQ_INFO_EVENTFD | _MASKABLE | _AUTOMASKED | _NORESIZE */
	uint32_t count; /* vectors */
};
/* DEVICE_GET_IRQ_INFO; -EINVAL for an index >= num_irqs. */
int dt_vfu_client_irq_info(struct dt_vfu_client *c, uint32_t index, struct dt_vfu_irq_info *info);
/* DEVICE_SET_IRQS, DATA_EVENTFD | ACTION_TRIGGER: vectors [start, start + count) of index
 * signal fds[i] (the server gets duplicates; ours stay open); fds NULL de-assigns them. Sent
 * in several messages when count passes the server's max_msg_fds. */
int dt_vfu_client_set_irq_eventfds(struct dt_vfu_client *c, uint32_t index, uint32_t start,
				   uint32_t count, const int *fds);

/* ---- DMA ----------------------------------------------------------------------------- */

/*
 * Let the device DMA to [iova, iova + size) (page aligned, no overlap with another mapping)
 * with prot PROT_READ | PROT_WRITE. fd >= 0: the memory is fd at offset (a memfd), sent by
 * SCM_RIGHTS for the server to mmap; vaddr, if not NULL, is where this process has that
 * memory mapped (else the client maps it itself, for its mirror). fd < 0: the server reaches
 * the memory at vaddr (required) with DMA_READ / DMA_WRITE messages, which the client serves
 * while it waits for any reply and in dt_vfu_client_process(). The mirror maps the same
 * range. -EEXIST overlap, -EINVAL bad arguments, -E2BIG more than max_dma_maps.
 */
int dt_vfu_client_dma_map(struct dt_vfu_client *c, uint64_t iova, uint64_t size, int fd,
			  uint64_t offset, void *vaddr, int prot);

/*
 * Remove a mapping (exactly one earlier dt_vfu_client_dma_map range). With bitmap: the
 * server's dirty pages of the range since its last report, at pgsize (bit n = page
 * iova + n * pgsize), OR-ed into bitmap (bitmap_size bytes, at least ceil(bits / 64) * 8);
 * they are also logged into the mirror, so a dirty set still gets them. While DMA logging is
 * on, the client asks for the bitmap even without one here (at 4 KiB, or coarser if the
 * negotiated bitmap size needs it) and logs it into the mirror, and the mirror keeps the
 * range ("retired") until logging stops, so its dirty pages are still harvested; mapping an
 * overlapping range meanwhile is -EBUSY.
 */
int dt_vfu_client_dma_unmap(struct dt_vfu_client *c, uint64_t iova, uint64_t size, uint64_t pgsize,
			    void *bitmap, uint64_t bitmap_size);

/* The connected socket, to poll for the server's DMA_READ / DMA_WRITE requests; and serve
 * those that are waiting, without blocking: returns how many were served. */
int dt_vfu_client_fd(const struct dt_vfu_client *c);
int dt_vfu_client_process(struct dt_vfu_client *c);

/* ---- DMA logging and the dirty set ---------------------------------------------------- */

struct dt_vfu_range {
	uint64_t iova;
	uint64_t length;
};

/*
 * DMA_LOGGING_START over ranges (nranges 0: every current mapping, adjacent ones merged),
 * tracking granule *page_size (0: 4096), written back with the server's choice. Turns on the
 * mirror's dirty tracking. -EBUSY if logging is already on.
 */
int dt_vfu_client_dma_logging_start(struct dt_vfu_client *c, const struct dt_vfu_range *ranges,
				    unsigned nranges, uint64_t *page_size);
/* DMA_LOGGING_STOP; drops retired mirror mappings. Idempotent. */
int dt_vfu_client_dma_logging_stop(struct dt_vfu_client *c);

/*
 * DMA_LOGGING_REPORT: the pages the device wrote in [iova, iova + length) since the previous
 * report (read and clear), at page_size (a power of two; iova and length aligned to it;
 * below the device's own granule the server replicates its bits), OR-ed into bitmap (bit n = page iova + n * page_size; bitmap_size bytes, at least
 * ceil(bits / 64) * 8). Split into several requests when the bitmap would pass the
 * negotiated maximum. Returns the number of dirty pages, or a negative errno. These pages
 * go to the caller only: the mirror is not touched, so on a client added to a dirty set a
 * report takes pages away from the next harvest (use the set there).
 */
int64_t dt_vfu_client_report(struct dt_vfu_client *c, uint64_t iova, uint64_t length,
			     uint64_t page_size, void *bitmap, uint64_t bitmap_size);

/*
 * Fetch the device's log over every logged range at 4 KiB and replay it into the mirror
 * (dt_dma_log): the pre-harvest hook. Returns the pages logged, or a negative errno. A
 * request that failed may have been cleared by the server: its whole range is marked dirty
 * in the mirror (as merged back) before the error is returned, so nothing is lost.
 * Logging off: 0.
 */
int64_t dt_vfu_client_sync(struct dt_vfu_client *c);

/* The mirror container (owned by the client) and its LOGGING device. */
struct dt_iommu *dt_vfu_client_mirror(struct dt_vfu_client *c);
struct dt_device *dt_vfu_client_mirror_device(struct dt_vfu_client *c);

/* Add the mirror to set (address a of the set is iova a - base + iova_base) and the sync as
 * a pre-harvest hook. The client must outlive the set's harvests. */
int dt_vfu_client_add_to_set(struct dt_vfu_client *c, struct dt_dirty_set *set, uint64_t iova_base);

/* ---- migration ------------------------------------------------------------------------ */

/* The v2 device states (values of enum vfio_device_mig_state). */
enum dt_vfu_mig_state {
	DT_VFU_MIG_ERROR = 0,
	DT_VFU_MIG_STOP = 1,
	DT_VFU_MIG_RUNNING = 2,
	DT_VFU_MIG_STOP_COPY = 3,
	DT_VFU_MIG_RESUMING = 4,
	DT_VFU_MIG_PRE_COPY = 6,
};

/* The state as the server says (MIG_DEVICE_STATE GET). */
int dt_vfu_client_mig_get_state(struct dt_vfu_client *c, enum dt_vfu_mig_state *state);
/*
 * Move to state one arc at a time (RUNNING -> PRE_COPY -> STOP_COPY, STOP_COPY -> STOP ->
 * RUNNING, RUNNING -> STOP -> RESUMING ...; the shortest path with no saving state inside
 * it). -EINVAL: STOP_COPY -> PRE_COPY, ERROR, or PRE_COPY without device support; the
 * server's errno if it refuses an arc (the client then re-reads the state). Leaving the
 * saving states drops the migration data read so far.
 */
int dt_vfu_client_mig_set_state(struct dt_vfu_client *c, enum dt_vfu_mig_state state);

/*
 * A device for dt_migrate_source / dt_migrate_dest (name copied into the client, at most 63
 * bytes). Source: pending() drains what pre-copy data the device has (PRE_COPY) and returns
 * the bytes expected at switchover; save() needs STOP_COPY, reads MIG_DATA until a short
 * read and hands it out (again on a retry with a larger buffer). Destination: load() moves
 * RUNNING/STOP -> RESUMING, writes the data, ends in STOP (the device validates it); start
 * the device with dt_vfu_client_mig_set_state(c, DT_VFU_MIG_RUNNING) once the VM runs.
 */
int dt_vfu_client_migrate_device(struct dt_vfu_client *c, const char *name,
				 struct dt_migrate_device *dev);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYTRACK_VFIO_USER_CLIENT_H */
