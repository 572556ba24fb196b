/* SPDX-License-Identifier: MIT */
/*
 * vmm/guest/payload.h - the guest payload (guest.c linked by guest.ld, flat binary), embedded
 * in the VMM by bin2c.py at build time. Loaded at GUEST_CODE_GPA; its entry is its first byte.
 */
#ifndef DT_VMM_GUEST_PAYLOAD_H
#define DT_VMM_GUEST_PAYLOAD_H

extern const unsigned char guest_payload[];
extern const unsigned int guest_payload_len;

#endif
