#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# fuzz/gen_vfu_seeds.py - the seed corpus of fuzz_vfu_server: valid message sequences in the
# target's frame format (one selector byte: 1 = attach the memfd, 2 = an eventfd; a 16-byte
# vfio-user header; the payload), and the same sequences as raw streams (stream-NN: 0xff, then
# header and payload after header and payload). Run:
#   python3 fuzz/gen_vfu_seeds.py fuzz/corpus/vfu_server
import os
import struct
import sys

VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, REGION_INFO = 1, 2, 3, 4, 5
IRQ_INFO, SET_IRQS, REGION_READ, REGION_WRITE, RESET = 7, 8, 9, 10, 13
WRITE_MULTI, FEATURE, MIG_READ, MIG_WRITE = 15, 16, 17, 18
GET, SET, PROBE = 1 << 16, 1 << 17, 1 << 18
RUNNING, STOP, STOP_COPY, RESUMING, PRE_COPY = 2, 1, 3, 4, 6

ids = [0]


def frame(cmd, payload=b"", sel=0):
    ids[0] += 1
    return bytes([sel]) + struct.pack("<HHIII", ids[0], cmd, 16 + len(payload), 0, 0) + payload


def version(json=b'{"capabilities":{"max_msg_fds":8,"migration":{"pgsize":4096,"max_bitmap_size":65536}}}'):
    return frame(VERSION, struct.pack("<HH", 0, 1) + json + b"\0")


def dma_map(iova, size, fd=True, flags=3):
    return frame(DMA_MAP, struct.pack("<IIQQQ", 32, flags, 0, iova, size), 1 if fd else 0)


def feature(flags, argsz, data=b""):
    return frame(FEATURE, struct.pack("<II", argsz, flags) + data)


def logging_start(ranges, page=4096):
    data = struct.pack("<QII", page, len(ranges), 0)
    for iova, length in ranges:
        data += struct.pack("<QQ", iova, length)
    return feature(SET | 6, 8 + len(data), data)


def report(iova, length, page):
    nbytes = ((length // page) + 63) // 64 * 8
    return feature(GET | 8, 8 + 24 + nbytes, struct.pack("<QQQ", iova, length, page))


def state(st):
    return feature(SET | 2, 16, struct.pack("<II", st, 0))


def region_write(region, offset, data):
    return frame(REGION_WRITE, struct.pack("<QII", offset, region, len(data)) + data)


seeds = [
    version(),
    version() + dma_map(0x10000, 0x10000) + frame(GET_INFO, struct.pack("<IIII", 16, 0, 0, 0))
    + frame(REGION_INFO, struct.pack("<IIIIQQ", 32, 0, 0, 0, 0, 0))
    + frame(IRQ_INFO, struct.pack("<IIII", 16, 0, 1, 0))
    + frame(REGION_READ, struct.pack("<QII", 8, 0, 16)),
    version() + dma_map(0x10000, 0x10000) + dma_map(0x20000, 0x10000, fd=False)
    + logging_start([(0x10000, 0x20000)])
    + region_write(0, 0, struct.pack("<QQQQ", 0x10000, 0x3000, 0x1f000, 0x2000))
    + report(0x10000, 0x20000, 4096) + report(0x10000, 0x20000, 2048)
    + report(0x18000, 0x8000, 8192)
    + frame(DMA_UNMAP, struct.pack("<IIQQ", 24 + 16 + 16, 1, 0x10000, 0x10000)
            + struct.pack("<QQ", 4096, 16))
    + feature(SET | 7, 8),
    version() + feature(GET | 1, 16) + feature(PROBE | GET | SET | 2, 8) + state(PRE_COPY)
    + frame(MIG_READ, struct.pack("<II", 8 + 100, 100)) + feature(GET | 9, 16)
    + state(STOP_COPY) + frame(MIG_READ, struct.pack("<II", 8 + 1000, 1000)) + state(RESUMING)
    + frame(MIG_WRITE, struct.pack("<II", 8, 5) + b"hello") + state(RUNNING) + frame(RESET),
    version() + frame(SET_IRQS, struct.pack("<IIIII", 20, (1 << 2) | (1 << 5), 0, 0, 1), 2)
    + frame(SET_IRQS, struct.pack("<IIIII", 23, (1 << 1) | (1 << 5), 1, 0, 3) + b"\1\0\1")
    + frame(WRITE_MULTI, struct.pack("<Q", 2) + struct.pack("<QII8s", 0, 0, 4, b"abcd")
            + struct.pack("<QII8s", 8, 2, 8, b"12345678"))
    + frame(DMA_UNMAP, struct.pack("<IIQQ", 24, 2, 0, 0)),
]

out = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/vfu_server"
os.makedirs(out, exist_ok=True)
def stream(framed):
    raw = b""
    while len(framed) >= 17:
        size = struct.unpack("<I", framed[5:9])[0]
        raw += framed[1:1 + size]
        framed = framed[1 + size:]
    return b"\xff" + raw


for i, s in enumerate(seeds):
    with open(os.path.join(out, "seed-%02d" % i), "wb") as f:
        f.write(s)
    with open(os.path.join(out, "stream-%02d" % i), "wb") as f:
        f.write(stream(s))
