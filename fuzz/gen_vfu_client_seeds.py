#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# fuzz/gen_vfu_client_seeds.py - the seed corpus of fuzz_vfu_client: valid server streams
# (replies with the ids and payloads the client's fixed call sequence expects, after the
# handshake the target writes itself), with and without server DMA commands in between.
# Run: python3 fuzz/gen_vfu_client_seeds.py fuzz/corpus/vfu_client
import os
import struct
import sys

REPLY, COMMAND = 1, 0
DMA_MAP, DMA_UNMAP, REGION_INFO, IRQ_INFO = 2, 3, 5, 7
REGION_READ, DMA_READ, DMA_WRITE, FEATURE, MIG_READ = 9, 11, 12, 16, 17
GET, SET = 1 << 16, 1 << 17
IOVA, NPAGE = 0x100000, 16


def msg(mid, cmd, payload=b"", kind=REPLY):
    return struct.pack("<HHIII", mid, cmd, 16 + len(payload), kind, 0) + payload


def stream(with_commands, dirty):
    bitmap = struct.pack("<Q", dirty)
    out = msg(5, DMA_MAP)
    if with_commands:  # the server writes into the client's memory while it waits
        out += msg(900, DMA_WRITE, struct.pack("<QQ", IOVA + 8, 4) + b"abcd", COMMAND)
    out += msg(6, FEATURE, struct.pack("<II", 40, SET | 6) + struct.pack("<QII", 4096, 1, 0)
               + struct.pack("<QQ", IOVA, NPAGE * 4096))
    rep = struct.pack("<QQQ", IOVA, NPAGE * 4096, 4096)
    out += msg(7, FEATURE, struct.pack("<II", 40, GET | 8) + rep + bitmap)
    out += msg(8, FEATURE, struct.pack("<II", 40, GET | 8) + rep + bitmap)
    out += msg(9, REGION_READ, struct.pack("<QII", 0, 0, 16) + bytes(range(16)))
    out += msg(10, REGION_INFO, struct.pack("<IIIIQQ", 32, 3, 0, 0, 4096, 0))
    out += msg(11, IRQ_INFO, struct.pack("<IIII", 16, 1, 0, 4))
    out += msg(12, FEATURE, struct.pack("<II", 16, GET | 2) + struct.pack("<II", 2, 0))
    out += msg(13, FEATURE, struct.pack("<II", 16, SET | 2) + struct.pack("<II", 1, 0))
    out += msg(14, FEATURE, struct.pack("<II", 16, SET | 2) + struct.pack("<II", 3, 0))
    data = bytes(range(100))
    out += msg(15, MIG_READ, struct.pack("<II", 8 + len(data), len(data)) + data)
    out += msg(16, DMA_UNMAP, struct.pack("<IIQQ", 48, 1, IOVA, NPAGE * 4096)
               + struct.pack("<QQ", 4096, 8) + bitmap)
    if with_commands:
        out += msg(901, DMA_READ, struct.pack("<QQ", IOVA, 16), COMMAND)
    return out


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/vfu_client"
    os.makedirs(d, exist_ok=True)
    seeds = {
        "plain": stream(False, 0x8421),
        "commands": stream(True, 0xffff),
        "clean": stream(False, 0),
        "empty": b"",
    }
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
