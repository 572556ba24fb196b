/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/proto.h - the vfio-user wire format: header, command numbers and the payload of
 * each command, re-expressed from QEMU's docs/interop/vfio-user.rst (the struct layouts are
 * facts of the protocol). Shared by the server and the client.
 *
 * Everything is in host byte order and naturally aligned; every struct has a _Static_assert
 * on its size so that a layout change is a compile error. Names carry the VFU_ / vfu_ prefix
 * so that this header never collides with <linux/vfio.h>: the values of the VFIO constants
 * that the protocol reuses (region, IRQ and feature flags, migration states) are repeated here
 * because the installed 6.1 headers lack some of them (PRE_COPY, MIG_DATA_SIZE).
 *
 * Two parts are from the earlier revision of the spec that libvfio-user implements, not from
 * the current text: the DMA_UNMAP flags with a dirty bitmap after the payload, and the
 * "migration" capability of VERSION. docs/vfio-user.md says why.
 */
#ifndef DT_VFIO_USER_PROTO_H
#define DT_VFIO_USER_PROTO_H

#include <stdint.h>

#define VFU_VERSION_MAJOR 0
#define VFU_VERSION_MINOR 1

/* ---- header ---------------------------------------------------------------------------- */

enum vfu_command {
	VFU_CMD_VERSION = 1,
	VFU_CMD_DMA_MAP = 2,
	VFU_CMD_DMA_UNMAP = 3,
	VFU_CMD_DEVICE_GET_INFO = 4,
	VFU_CMD_DEVICE_GET_REGION_INFO = 5,
	VFU_CMD_DEVICE_GET_REGION_IO_FDS = 6,
	VFU_CMD_DEVICE_GET_IRQ_INFO = 7,
	VFU_CMD_DEVICE_SET_IRQS = 8,
	VFU_CMD_REGION_READ = 9,
	VFU_CMD_REGION_WRITE = 10,
	VFU_CMD_DMA_READ = 11,	/* server -> client */
	VFU_CMD_DMA_WRITE = 12, /* server -> client */
	VFU_CMD_DEVICE_RESET = 13,
	/* 14 was DIRTY_PAGES in an earlier revision; unused now */
	VFU_CMD_REGION_WRITE_MULTI = 15,
	VFU_CMD_DEVICE_FEATURE = 16,
	VFU_CMD_MIG_DATA_READ = 17,
	VFU_CMD_MIG_DATA_WRITE = 18,
	VFU_CMD_MAX = 19,
};

struct vfu_hdr {
	uint16_t msg_id;
	uint16_t cmd;
	uint32_t msg_size; /* whole message, header included */
	uint32_t flags;
	uint32_t error; /* errno of a reply with VFU_F_ERROR; reserved (0) in a command */
};
_Static_assert(sizeof(struct vfu_hdr) == 16, "vfio-user header is 16 bytes");

#define VFU_HDR_SIZE	   16u
#define VFU_F_TYPE_MASK	   0xfu
#define VFU_F_TYPE_COMMAND 0x0u
#define VFU_F_TYPE_REPLY   0x1u
#define VFU_F_NO_REPLY	   (1u << 4)
#define VFU_F_ERROR	   (1u << 5)
#define VFU_F_KNOWN	   (VFU_F_TYPE_MASK | VFU_F_NO_REPLY | VFU_F_ERROR)

/* ---- VERSION ----------------------------------------------------------------------------- */

/* Followed by an optional NUL-terminated JSON object {"capabilities": {...}}. */
struct vfu_version {
	uint16_t major;
	uint16_t minor;
};
_Static_assert(sizeof(struct vfu_version) == 4, "version payload");

/* Defaults of the spec when a capability is absent. */
#define VFU_DEFAULT_MAX_MSG_FDS	       1u
#define VFU_DEFAULT_MAX_DATA_XFER_SIZE (1u << 20)
#define VFU_DEFAULT_MAX_DMA_MAPS       65535u
#define VFU_DEFAULT_PGSIZES	       4096ull

/* ---- DMA_MAP / DMA_UNMAP ---------------------------------------------------------------- */

#define VFU_DMA_MAP_F_READ  (1u << 0)
#define VFU_DMA_MAP_F_WRITE (1u << 1)

struct vfu_dma_map {
	uint32_t argsz; /* sizeof(struct vfu_dma_map) */
	uint32_t flags;
	uint64_t offset; /* into the fd sent with the message; 0 without fd */
	uint64_t addr;
	uint64_t size;
};
_Static_assert(sizeof(struct vfu_dma_map) == 32, "DMA_MAP payload");

#define VFU_DMA_UNMAP_F_GET_DIRTY_BITMAP (1u << 0)
#define VFU_DMA_UNMAP_F_ALL		 (1u << 1)

/* Follows struct vfu_dma_unmap with GET_DIRTY_BITMAP, in the request and in the reply; the
 * reply then carries `size` bytes of bitmap (bit n = page addr + n * pgsize). */
struct vfu_bitmap {
	uint64_t pgsize;
	uint64_t size; /* bytes of bitmap */
};
_Static_assert(sizeof(struct vfu_bitmap) == 16, "bitmap descriptor");

struct vfu_dma_unmap {
	uint32_t argsz; /* request: the largest reply payload accepted */
	uint32_t flags;
	uint64_t addr;
	uint64_t size;
};
_Static_assert(sizeof(struct vfu_dma_unmap) == 24, "DMA_UNMAP payload");

/* ---- device and region info ------------------------------------------------------------- */

#define VFU_DEVICE_F_RESET (1u << 0)
#define VFU_DEVICE_F_PCI   (1u << 1)

struct vfu_device_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t num_regions;
	uint32_t num_irqs;
};
_Static_assert(sizeof(struct vfu_device_info) == 16, "DEVICE_GET_INFO payload");

#define VFU_REGION_F_READ  (1u << 0)
#define VFU_REGION_F_WRITE (1u << 1)
#define VFU_REGION_F_MMAP  (1u << 2)
#define VFU_REGION_F_CAPS  (1u << 3)

struct vfu_region_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t cap_offset;
	uint64_t size;
	uint64_t offset;
};
_Static_assert(sizeof(struct vfu_region_info) == 32, "DEVICE_GET_REGION_INFO payload");

struct vfu_region_io_fds {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t count;
	/* struct vfu_sub_region_ioeventfd[count] in the reply */
};
_Static_assert(sizeof(struct vfu_region_io_fds) == 16, "GET_REGION_IO_FDS payload");

#define VFU_IO_FD_TYPE_IOEVENTFD  0u
#define VFU_IO_FD_TYPE_IOREGIONFD 1u

struct vfu_sub_region_io_fd {
	uint64_t offset;
	uint64_t size;
	uint32_t fd_index;
	uint32_t type;
	uint32_t flags;
	uint32_t padding;
	uint64_t datamatch; /* user_data for ioregionfd */
};
_Static_assert(sizeof(struct vfu_sub_region_io_fd) == 40, "sub-region io fd");

/* ---- interrupts -------------------------------------------------------------------------- */

#define VFU_IRQ_INFO_EVENTFD	(1u << 0)
#define VFU_IRQ_INFO_MASKABLE	(1u << 1)
#define VFU_IRQ_INFO_AUTOMASKED (1u << 2)
#define VFU_IRQ_INFO_NORESIZE	(1u << 3)

struct vfu_irq_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t count;
};
_Static_assert(sizeof(struct vfu_irq_info) == 16, "DEVICE_GET_IRQ_INFO payload");

#define VFU_IRQ_SET_DATA_NONE	   (1u << 0)
#define VFU_IRQ_SET_DATA_BOOL	   (1u << 1)
#define VFU_IRQ_SET_DATA_EVENTFD   (1u << 2)
#define VFU_IRQ_SET_ACTION_MASK	   (1u << 3)
#define VFU_IRQ_SET_ACTION_UNMASK  (1u << 4)
#define VFU_IRQ_SET_ACTION_TRIGGER (1u << 5)
#define VFU_IRQ_SET_DATA_MASK                                                                      \
	(VFU_IRQ_SET_DATA_NONE | VFU_IRQ_SET_DATA_BOOL | VFU_IRQ_SET_DATA_EVENTFD)
#define VFU_IRQ_SET_ACTION_MASKALL                                                                 \
	(VFU_IRQ_SET_ACTION_MASK | VFU_IRQ_SET_ACTION_UNMASK | VFU_IRQ_SET_ACTION_TRIGGER)

struct vfu_irq_set {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t start;
	uint32_t count;
	/* uint8_t data[count] with DATA_BOOL */
};
_Static_assert(sizeof(struct vfu_irq_set) == 20, "DEVICE_SET_IRQS payload");

/* ---- region and DMA access --------------------------------------------------------------- */

struct vfu_region_access {
	uint64_t offset;
	uint32_t region;
	uint32_t count;
	/* uint8_t data[count]: in REGION_WRITE requests and REGION_READ replies */
};
_Static_assert(sizeof(struct vfu_region_access) == 16, "REGION_READ/WRITE payload");

struct vfu_dma_access {
	uint64_t addr;
	uint64_t count;
	/* uint8_t data[count]: in DMA_WRITE requests and DMA_READ replies */
};
_Static_assert(sizeof(struct vfu_dma_access) == 16, "DMA_READ/WRITE payload");

#define VFU_WRITE_MULTI_DATA_MAX 8u

struct vfu_region_write_one {
	uint64_t offset;
	uint32_t region;
	uint32_t count; /* <= 8 */
	uint8_t data[VFU_WRITE_MULTI_DATA_MAX];
};
_Static_assert(sizeof(struct vfu_region_write_one) == 24, "one REGION_WRITE_MULTI entry");

struct vfu_region_write_multi {
	uint64_t wr_cnt;
	/* struct vfu_region_write_one wrs[wr_cnt] in the request */
};
_Static_assert(sizeof(struct vfu_region_write_multi) == 8, "REGION_WRITE_MULTI payload");

/* ---- DEVICE_FEATURE ---------------------------------------------------------------------- */

#define VFU_FEATURE_MASK	       0xffffu
#define VFU_FEATURE_GET		       (1u << 16)
#define VFU_FEATURE_SET		       (1u << 17)
#define VFU_FEATURE_PROBE	       (1u << 18)

#define VFU_FEATURE_MIGRATION	       1u
#define VFU_FEATURE_MIG_DEVICE_STATE   2u
#define VFU_FEATURE_DMA_LOGGING_START  6u
#define VFU_FEATURE_DMA_LOGGING_STOP   7u
#define VFU_FEATURE_DMA_LOGGING_REPORT 8u
/* Linux's VFIO_DEVICE_FEATURE_MIG_DATA_SIZE (6.2): not in the vfio-user spec; dirtytrack's
 * server answers GET on it with the device's pending-data estimate (docs/vfio-user.md). */
#define VFU_FEATURE_MIG_DATA_SIZE 9u

struct vfu_device_feature {
	uint32_t argsz; /* request: the largest reply payload accepted */
	uint32_t flags; /* feature index | GET / SET / PROBE */
			/* uint8_t data[] */
};
_Static_assert(sizeof(struct vfu_device_feature) == 8, "DEVICE_FEATURE payload");

#define VFU_MIGRATION_STOP_COPY (1ull << 0)
#define VFU_MIGRATION_P2P	(1ull << 1)
#define VFU_MIGRATION_PRE_COPY	(1ull << 2)

struct vfu_feature_migration {
	uint64_t flags;
};
_Static_assert(sizeof(struct vfu_feature_migration) == 8, "MIGRATION feature data");

enum vfu_mig_state {
	VFU_MIG_STATE_ERROR = 0,
	VFU_MIG_STATE_STOP = 1,
	VFU_MIG_STATE_RUNNING = 2,
	VFU_MIG_STATE_STOP_COPY = 3,
	VFU_MIG_STATE_RESUMING = 4,
	VFU_MIG_STATE_RUNNING_P2P = 5,
	VFU_MIG_STATE_PRE_COPY = 6,
	VFU_MIG_STATE_PRE_COPY_P2P = 7,
	VFU_MIG_STATE_NUM = 8,
};

struct vfu_feature_mig_state {
	uint32_t device_state;
	uint32_t data_fd; /* unused in vfio-user */
};
_Static_assert(sizeof(struct vfu_feature_mig_state) == 8, "MIG_DEVICE_STATE feature data");

struct vfu_feature_mig_data_size {
	uint64_t stop_copy_length;
};
_Static_assert(sizeof(struct vfu_feature_mig_data_size) == 8, "MIG_DATA_SIZE feature data");

struct vfu_dma_logging_range {
	uint64_t iova;
	uint64_t length;
};
_Static_assert(sizeof(struct vfu_dma_logging_range) == 16, "DMA logging range");

struct vfu_dma_logging_control {
	uint64_t page_size;
	uint32_t num_ranges;
	uint32_t reserved;
	/* struct vfu_dma_logging_range ranges[num_ranges] */
};
_Static_assert(sizeof(struct vfu_dma_logging_control) == 16, "DMA_LOGGING_START data");

struct vfu_dma_logging_report {
	uint64_t iova;
	uint64_t length;
	uint64_t page_size;
	/* uint64_t bitmap[] in the reply */
};
_Static_assert(sizeof(struct vfu_dma_logging_report) == 24, "DMA_LOGGING_REPORT data");

/* ---- MIG_DATA_READ / MIG_DATA_WRITE ---------------------------------------------------- */

struct vfu_mig_data {
	uint32_t argsz;
	uint32_t size;
	/* uint8_t data[size]: in MIG_DATA_READ replies and MIG_DATA_WRITE requests */
};
_Static_assert(sizeof(struct vfu_mig_data) == 8, "MIG_DATA_READ/WRITE payload");

#endif /* DT_VFIO_USER_PROTO_H */
