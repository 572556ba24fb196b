#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""vmm/guest/check_mb_image.py - the Multiboot image (guest-mb.bin) is one a loader accepts and
holds the micro-VM's payload unchanged. No QEMU needed: it reads the files.

Usage: check_mb_image.py guest-mb.bin guest.bin
Checks, as a Multiboot (v1) loader would read the a.out-kludge header: the magic in the first
8 KiB, 4-aligned; magic + flags + checksum == 0 (mod 2^32); flag 16 (addresses given);
header_addr - load_addr == the header's offset in the file; load_end_addr - load_addr == the
file's size; bss_end_addr >= load_end_addr; entry_addr inside the loaded bytes. Then that
guest.bin's bytes sit at GUEST_CODE_GPA (0x10000) and nothing follows them. Exit 0 or 1.
"""
import struct
import sys

MAGIC = 0x1BADB002
GUEST_CODE_GPA = 0x10000


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: check_mb_image.py guest-mb.bin guest.bin')
    img = open(sys.argv[1], 'rb').read()
    payload = open(sys.argv[2], 'rb').read()
    for off in range(0, min(len(img), 8192) - 31, 4):
        if struct.unpack_from('<I', img, off)[0] == MAGIC:
            break
    else:
        sys.exit('no Multiboot magic in the first 8 KiB')
    magic, flags, csum, hdr, load, load_end, bss_end, entry = struct.unpack_from('<8I', img, off)
    errors = []
    if (magic + flags + csum) & 0xFFFFFFFF:
        errors.append('checksum: magic + flags + checksum = 0x%x, expected 0'
                      % ((magic + flags + csum) & 0xFFFFFFFF))
    if not flags & (1 << 16):
        errors.append('flags 0x%x: bit 16 (load addresses) not set' % flags)
    if hdr - load != off:
        errors.append('header_addr 0x%x - load_addr 0x%x != its offset %d' % (hdr, load, off))
    if load_end - load != len(img):
        errors.append('load_end_addr 0x%x - load_addr 0x%x != the file size %d'
                      % (load_end, load, len(img)))
    if bss_end and bss_end < load_end:
        errors.append('bss_end_addr 0x%x below load_end_addr 0x%x' % (bss_end, load_end))
    if not load <= entry < load_end:
        errors.append('entry 0x%x outside [0x%x, 0x%x)' % (entry, load, load_end))
    at = GUEST_CODE_GPA - load
    if img[at:] != payload:
        errors.append('the bytes from 0x%x are not guest.bin (%d bytes there, %d in guest.bin)'
                      % (GUEST_CODE_GPA, len(img) - at, len(payload)))
    for e in errors:
        print('check_mb_image.py: expected a valid image, saw: ' + e)
    if errors:
        return 1
    print('guest-mb.bin: header at 0x%x, loaded at 0x%x-0x%x, entry 0x%x, payload %d bytes '
          'at 0x%x unchanged' % (hdr, load, load_end, entry, len(payload), GUEST_CODE_GPA))
    return 0


if __name__ == '__main__':
    sys.exit(main())
