/* SPDX-License-Identifier: MIT */
/*
 * vmm/vdev_regs.h - the register file (region 0, 4 KiB) of a micro-VM test device served
 * over vfio-user by another process (vdev_server.c), as the VMM (remote.c) drives it.
 *
 * Registers are 64-bit, little endian, accessed 8 bytes at a time at 8-byte offsets. The
 * device is created on the guest memory the VMM has DMA-mapped, over the area written into
 * AREA_GPA / AREA_SIZE; it starts writing on CMD_START (or, on a destination, when its
 * migration state goes from STOP to RUNNING after its state was loaded).
 */
#ifndef DT_VMM_VDEV_REGS_H
#define DT_VMM_VDEV_REGS_H

#define VDEV_REGS_SIZE	   4096u
#define VDEV_REGS_MAGIC	   0x5645445644545244ull /* "DRTDVDEV" */
#define VDEV_REGS_NBAD	   4u			 /* BAD_GPA entries */

#define VDEV_REG_MAGIC	   0x00u /* ro: VDEV_REGS_MAGIC */
#define VDEV_REG_TYPE	   0x08u /* ro: enum vdev_type */
#define VDEV_REG_AREA_GPA  0x10u /* rw: the device's area (page aligned, DMA-mapped) */
#define VDEV_REG_AREA_SIZE 0x18u /* rw */
#define VDEV_REG_CMD	   0x20u /* wo: VDEV_CMD_* */
#define VDEV_REG_STATUS	   0x28u /* ro: 0, or the last command's negative errno */
#define VDEV_REG_WRITES	   0x30u /* ro: page stamps written so far */
#define VDEV_REG_BAD	   0x38u /* ro: stale pages found by the last VERIFY */
#define VDEV_REG_BAD_GPA   0x40u /* ro: the first VDEV_REGS_NBAD of them (0: none) */
#define VDEV_REG_END	   (VDEV_REG_BAD_GPA + 8 * VDEV_REGS_NBAD)

#define VDEV_CMD_CREATE	   1u /* the device on the mapped memory, over the area; not started */
#define VDEV_CMD_START	   2u /* start writing */
#define VDEV_CMD_VERIFY	   3u /* compare guest memory with the device's record (paused) */

#endif
