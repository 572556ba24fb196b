#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/migration/qemu_migrate.py - drive one QEMU live migration through QMP, then check it.

Usage: qemu_migrate.py --src SOCK --dst SOCK --uri tcp:HOST:PORT --mem-mib M --hot H --sweep S
                       [--bandwidth BYTES/S] [--downtime-ms MS] [--warmup S] [--timeout S]
                       [--dump-dir DIR] [--no-check]

Both QEMUs run the Multiboot image of the micro-VM's payload (vmm/guest/mb_stub.c); the
destination was started with -incoming and -S (it stays paused after the migration, so its
memory can be compared with the source's). Steps:

1. Wait for the source's guest to fill its mailbox, let it run --warmup seconds, sample its
   generation counter (mailbox offset 0x18, read with the monitor's `xp`) to know the rate
   the guest reaches.
2. `migrate-set-capabilities` events on both sides, `migrate-set-parameters` downtime-limit
   and max-bandwidth, `migrate`, then `query-migrate` every 50 ms until completed or failed,
   or --timeout (then `migrate_cancel`: did not converge).
3. Check: `pmemsave` of both memories (source stopped after completion, destination paused),
   byte for byte equal; the destination's ledger and stamps as vm_host_verify() checks them;
   `cont` on the destination and its generation advances.

One JSON object on stdout. Events carry QEMU's own timestamps (host clock), so besides QEMU's
downtime (source: stop to the last byte written to the socket) the line has the stop on the
source to the destination's "completed" event: the time the guest was stopped until the
destination had every byte, the closest to what dirtytrack reports (pause to the
destination's ACK).
"""
import argparse
import json
import mmap
import os
import queue
import socket
import struct
import sys
import threading
import time

MAILBOX = 0x1000
GEN_OFF = 0x18
POS_OFF = 0x1C
LEDGER = 0x100000
AREA = 0x400000
PAGE = 4096
DEV_AREAS = 64 << 20
MAGIC = 0x4D424F58
LEGACY = (0xA0000, 0x100000)


class Qmp:
    """A QMP client on a unix socket: one reader thread sorts replies from events."""

    def __init__(self, path, name, timeout=30.0):
        self.name = name
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile('rw')
        self.replies = queue.Queue()
        self.events = []
        self.lock = threading.Lock()
        json.loads(self.file.readline())  # the greeting
        threading.Thread(target=self._read, daemon=True).start()
        self.cmd('qmp_capabilities')

    def _read(self):
        try:
            for line in self.file:
                msg = json.loads(line)
                if 'event' in msg:
                    with self.lock:
                        self.events.append(msg)
                else:
                    self.replies.put(msg)
        except (OSError, ValueError):
            pass
        self.replies.put({'error': {'desc': 'connection closed'}})

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.file.write(json.dumps(msg) + '\n')
        self.file.flush()
        reply = self.replies.get(timeout=120)
        if 'error' in reply:
            raise RuntimeError('%s: %s: %s' % (self.name, name, reply['error'].get('desc')))
        return reply['return']

    def hmp(self, line):
        return self.cmd('human-monitor-command', **{'command-line': line})

    def read_u32(self, gpa):
        out = self.hmp('xp /1wx 0x%x' % gpa)
        return int(out.split(':')[1].split()[0], 16)

    def event_time(self, name, pred=lambda d: True):
        with self.lock:
            for e in self.events:
                if e['event'] == name and pred(e.get('data', {})):
                    ts = e['timestamp']
                    return ts['seconds'] + ts['microseconds'] / 1e6
        return None


def guest_mix(g, p):
    x = ((g * 0x9E3779B1) & 0xFFFFFFFF) ^ ((p + 0x7F4A7C15) & 0xFFFFFFFF)
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    return x


def stamp_words(g, p):
    if not g:
        return (0, 0, 0, 0)
    return (g, p, guest_mix(g, p), ~g & 0xFFFFFFFF)


def stamp_seen(mem, off):
    """The four stamp words of the page at off: words 0-2 and the last."""
    return struct.unpack_from('<3I', mem, off) + struct.unpack_from('<I', mem, off + PAGE - 4)


def ledger_check(mem, mem_bytes):
    """vm_host_verify()'s rules on a memory dump: bad pages (and pages checked)."""
    area = (mem_bytes - DEV_AREAS - AREA) // PAGE
    magic, _, area_mb, hot, sweep, _, gen, pos = struct.unpack_from('<8I', mem, MAILBOX)
    if magic != MAGIC or area_mb != area:
        return {'bad': -1, 'checked': 0, 'why': 'mailbox'}
    sweep_len = area - hot
    ledger = memoryview(mem)[LEDGER:LEDGER + 4 * area].cast('I')
    bad = checked = 0
    forgiven = False
    for p in range(area):
        g = ledger[p]
        off = AREA + p * PAGE
        if not g:
            if struct.unpack_from('<I', mem, off)[0] == 0:
                continue
            ok = False
        else:
            checked += 1
            seen = stamp_seen(mem, off)
            ok = g <= gen + 1 and seen == stamp_words(g, p)
            if ok:
                continue
        # the page the guest was stamping when it stopped: each word old's or new's
        if not forgiven and g <= gen:
            inflight = p < hot or (sweep_len and (p - hot + sweep_len - pos) % sweep_len < sweep)
            seen = stamp_seen(mem, off)
            old, new = stamp_words(g, p), stamp_words(gen + 1, p)
            if inflight and all(s in (o, n) for s, o, n in zip(seen, old, new)):
                forgiven = True
                checked -= g != 0
                continue
        bad += 1
    return {'bad': bad, 'checked': checked, 'generation': gen}


def dump(q, path, mem_bytes):
    if os.path.exists(path):
        os.unlink(path)
    q.cmd('pmemsave', val=0, size=mem_bytes, filename=path)


def differing_pages(pa, pb):
    """Page addresses where two dumps differ (compared 1 MiB, then 4 KiB, at a time). The PC's
    legacy window 0xa0000-0xfffff (VGA hole, option ROMs, the BIOS and its shadow, aliased by
    the chipset's PAM registers) is the firmware's, not the payload's: compared apart."""
    diff = []
    with open(pa, 'rb') as fa, open(pb, 'rb') as fb:
        a = mmap.mmap(fa.fileno(), 0, access=mmap.ACCESS_READ)
        b = mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ)
        if len(a) != len(b):
            return [-1]
        for big in range(0, len(a), 1 << 20):
            if a[big:big + (1 << 20)] == b[big:big + (1 << 20)]:
                continue
            for off in range(big, min(big + (1 << 20), len(a)), PAGE):
                if a[off:off + PAGE] != b[off:off + PAGE]:
                    diff.append(off)
        a.close()
        b.close()
    return diff


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--src', required=True)
    ap.add_argument('--dst', required=True)
    ap.add_argument('--uri', required=True)
    ap.add_argument('--mem-mib', type=int, required=True)
    ap.add_argument('--hot', type=int, default=0)
    ap.add_argument('--sweep', type=int, default=0)
    ap.add_argument('--bandwidth', type=int, default=0, help='bytes/s; 0: QEMU default')
    ap.add_argument('--downtime-ms', type=int, default=300)
    ap.add_argument('--warmup', type=float, default=3.0)
    ap.add_argument('--timeout', type=float, default=120.0)
    ap.add_argument('--dump-dir', default='/tmp')
    ap.add_argument('--no-check', action='store_true')
    a = ap.parse_args()
    mem_bytes = a.mem_mib << 20
    out = {'engine': 'qemu'}

    src = Qmp(a.src, 'source')
    dst = Qmp(a.dst, 'destination')
    deadline = time.monotonic() + 30
    while src.read_u32(MAILBOX) != MAGIC:
        if time.monotonic() > deadline:
            sys.exit('qemu_migrate.py: the source guest did not fill its mailbox in 30 s')
        time.sleep(0.05)
    time.sleep(max(a.warmup - 1.0, 0))
    g0, t0 = src.read_u32(MAILBOX + GEN_OFF), time.monotonic()
    time.sleep(min(a.warmup, 1.0))
    g1, t1 = src.read_u32(MAILBOX + GEN_OFF), time.monotonic()
    out['iter_per_s_before'] = round((g1 - g0) / (t1 - t0), 1)

    for q in (src, dst):
        q.cmd('migrate-set-capabilities',
              capabilities=[{'capability': 'events', 'state': True}])
    params = {'downtime-limit': a.downtime_ms}
    if a.bandwidth:
        params['max-bandwidth'] = a.bandwidth
    src.cmd('migrate-set-parameters', **params)
    g_start, t_start = src.read_u32(MAILBOX + GEN_OFF), time.monotonic()
    src.cmd('migrate', uri=a.uri)
    info, last_active, rounds_seen, expected, dirty_rate = {}, {}, 0, None, None
    while True:
        info = src.cmd('query-migrate')
        st = info.get('status')
        if st == 'completed':
            # QEMU 7.2 sets "completed" before it computes downtime and total time (in
            # migration_iteration_finish): until then a query shows them as 0
            for _ in range(40):
                if info.get('total-time') and 'downtime' in info:
                    break
                time.sleep(0.05)
                info = src.cmd('query-migrate')
            break
        if st in ('failed', 'cancelled'):
            break
        if 'ram' in info:
            last_active = info
        rounds_seen = max(rounds_seen, info.get('ram', {}).get('dirty-sync-count', 0))
        expected = info.get('expected-downtime', expected)
        dirty_rate = info.get('ram', {}).get('dirty-pages-rate') or dirty_rate
        if time.monotonic() - t_start > a.timeout:
            src.cmd('migrate_cancel')
            for _ in range(200):
                info = src.cmd('query-migrate')
                if info.get('status') in ('cancelled', 'failed', 'completed'):
                    break
                time.sleep(0.05)
            break
        time.sleep(0.05)
    # a cancelled migration reports no totals: those of the last poll while it was active
    ram = info.get('ram') or last_active.get('ram', {})
    out.update({
        'status': info.get('status'),
        'converged': info.get('status') == 'completed',
        'downtime_ms': info.get('downtime'),
        'total_ms': info.get('total-time', last_active.get('total-time')),
        'setup_ms': info.get('setup-time'),
        'expected_downtime_ms': expected,  # the last one seen while active
        'rounds': ram.get('dirty-sync-count', rounds_seen),
        'bytes': ram.get('transferred'),
        'ram_total': ram.get('total'),
        'pages_normal': ram.get('normal'),
        'pages_zero': ram.get('duplicate'),
        'precopy_bytes': ram.get('precopy-bytes'),
        'downtime_bytes': ram.get('downtime-bytes'),
        'mbps': ram.get('mbps'),
        'dirty_pages_rate': dirty_rate,  # the last nonzero one seen while active
    })
    if not out['converged']:
        out['verified'] = False
        print(json.dumps(out), flush=True)
        return 1

    # the destination's view: its "completed" event, then it sits paused (-S)
    deadline = time.monotonic() + 60
    while dst.event_time('MIGRATION', lambda d: d.get('status') == 'completed') is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    t_stop = src.event_time('STOP')
    t_dst = dst.event_time('MIGRATION', lambda d: d.get('status') == 'completed')
    if t_stop is not None and t_dst is not None:
        out['stop_to_dst_complete_ms'] = round((t_dst - t_stop) * 1e3, 1)
    g_end = src.read_u32(MAILBOX + GEN_OFF)
    run_s = (out['total_ms'] - out['downtime_ms']) / 1e3
    out['iter_per_s_during'] = round((g_end - g_start) / run_s, 1) if run_s > 0 else None
    out['generation_at_switchover'] = g_end

    if a.no_check:
        out['verified'] = None
        print(json.dumps(out), flush=True)
        return 0
    ps = os.path.join(a.dump_dir, 'src.mem')
    pd = os.path.join(a.dump_dir, 'dst.mem')
    dump(src, ps, mem_bytes)
    dump(dst, pd, mem_bytes)
    diff = differing_pages(ps, pd)
    legacy = [d for d in diff if LEGACY[0] <= d < LEGACY[1]]
    diff = [d for d in diff if not LEGACY[0] <= d < LEGACY[1]]
    out['memory_equal'] = not diff
    out['legacy_window_differing_pages'] = ['0x%x' % d for d in legacy[:8]]
    out['differing_pages'] = len(diff)
    out['first_differing'] = ['0x%x' % d for d in diff[:8]]
    with open(pd, 'rb') as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        chk = ledger_check(m, mem_bytes)
        m.close()
    os.unlink(ps)
    os.unlink(pd)
    out['ledger_bad'] = chk['bad']
    out['ledger_checked'] = chk['checked']
    dst.cmd('cont')
    time.sleep(1.0)
    g_after = dst.read_u32(MAILBOX + GEN_OFF)
    out['resumed'] = g_after > g_end
    out['verified'] = out['memory_equal'] and chk['bad'] == 0 and out['resumed']
    print(json.dumps(out), flush=True)
    for q in (src, dst):
        try:
            q.cmd('quit')
        except (RuntimeError, queue.Empty, OSError):
            pass
    return 0 if out['verified'] else 1


if __name__ == '__main__':
    sys.exit(main())
