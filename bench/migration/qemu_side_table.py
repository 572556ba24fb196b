#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/migration/qemu_side_table.py - qemu_side.sh's JSON lines: dirtytrack's, and the table.

    qemu_side_table.py ours --src SRC.out --dst DST.out --meta '{...}'
        One JSON line for a `dirtytrack vm migrate-out` / `migrate-in` pair (their --json
        outputs), with the fields qemu_migrate.py gives QEMU's runs: engine, converged,
        verified, downtime_ms, total_ms, bytes, rounds, iter_per_s_during ...
    qemu_side_table.py table FILE.jsonl [FILE.jsonl ...]
        A markdown table, one row per workload x size x rate x engine, in the order first seen:

  runs          JSON lines of the row
  conv          runs that switched over (QEMU: status completed; ours: the engine returned 0)
  verified      QEMU: both memories dumped (pmemsave) equal outside the PC's legacy window,
                the ledger and stamps as vm_host_verify() checks them, and the destination's
                guest advancing after `cont`; ours: the digests equal, the destination's
                ledger and guest self-check clean, the guest advancing
  downtime      the engine's own figure, p50 (min-max), ms. QEMU: stop to the last byte
                written on the source; ours: pause to the destination's ACK
  stop->dst     QEMU only: the source's STOP event to the destination's MIGRATION completed
                event (QMP timestamps, one host clock), p50 (min-max), ms
  total         p50, s. QEMU: total-time (migrate to completion); ours: total_ms
  bytes         p50, MB (QEMU: ram transferred; ours: bytes_sent)
  rounds        p50 (QEMU: dirty-sync-count; ours: rounds)
  guest pages/s p50 of the pages the guest stamped per second while migrating (iterations/s x
                (hot + sweep)); the new ones per second are sweep/(hot + sweep) of it

Standard library only.
"""
import json
import sys
from collections import OrderedDict


def pct(xs, q):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def last_obj(path, key):
    obj = None
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith('{'):
                    continue
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                if key in o:
                    obj = o[key]
    except OSError:
        pass
    return obj


def count_rounds(path):
    n = 0
    try:
        with open(path) as f:
            n = sum(1 for line in f if line.startswith('{"round"'))
    except OSError:
        pass
    return n


def ours(argv):
    args = dict(zip(argv[0::2], argv[1::2]))
    meta = json.loads(args['--meta'])
    src = last_obj(args['--src'], 'source')
    dst = last_obj(args['--dst'], 'destination')
    out = dict(meta)
    out['engine'] = 'dirtytrack'
    if src is None:
        out.update({'status': 'no-result', 'converged': False, 'verified': False})
        print(json.dumps(out))
        return 0
    ok = src['ret'] == 0
    down = src['actual_downtime_ms'] if ok else None
    total = src['total_ms']
    out.update({
        'status': 'completed' if ok else 'failed (%d)' % src['ret'],
        'converged': ok,
        'downtime_ms': down,
        'predicted_downtime_ms': src['predicted_downtime_ms'] if ok else None,
        'total_ms': total,
        'rounds': src['rounds'],
        'bytes': src['bytes_sent'],
        'pages_sent': src['pages_sent'],
        'pages_zero': src['zero_pages'],
        'final_pages': src['final_pages'],
        'generation_at_switchover': src['guest_generation'],
    })
    # The guest ran warmup_s before the migration began, at the same pace as during it
    # (the dirty log is on from the start): iterations over the whole time it ran.
    run_s = meta['warmup_s'] + (total - (down or 0)) / 1e3
    out['iter_per_s_during'] = round(src['guest_generation'] / run_s, 1) if run_s > 0 else None
    if dst is not None:
        out['memory_equal'] = dst['memory_equal'] and dst['digest'] == src['digest']
        out['ledger_bad'] = dst['ledger_bad']
        out['guest_bad'] = dst['guest_bad']
        out['resumed'] = dst['generation'][1] > dst['generation'][0]
        out['verified'] = ok and dst['ok'] and out['memory_equal']
    else:
        out['verified'] = False
    print(json.dumps(out))
    return 0


def fmt(v, spec='%.1f'):
    return '-' if v is None else spec % v


def spread(xs, spec='%.1f'):
    xs = [x for x in xs if x is not None]
    if not xs:
        return '-'
    if len(xs) == 1:
        return spec % xs[0]
    return '%s (%s-%s)' % (spec % pct(xs, 50), spec % min(xs), spec % max(xs))


def table(paths):
    rows = OrderedDict()
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith('{'):
                    continue
                r = json.loads(line)
                key = (r.get('workload'), r.get('size_mib'), r.get('rate'), r.get('rtt_ms'),
                       r.get('engine'))
                rows.setdefault(key, []).append(r)
    print('| workload (hot/sweep) | size | link | engine | runs | conv | verified | downtime ms '
          '| stop->dst ms | total s | bytes MB | rounds | guest pages/s |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for (w, size, rate, rtt, eng), rs in rows.items():
        conv = [r for r in rs if r.get('converged')]
        ver = sum(1 for r in rs if r.get('verified'))
        hot, sweep = rs[0].get('hot', 0), rs[0].get('sweep', 0)
        link = rate + ('' if not rtt else ', %s ms' % rtt)
        if eng == 'qemu':
            eng = 'QEMU %s (%s)' % (rs[0].get('qemu_version', ''), rs[0].get('accel', ''))
        ips = [r.get('iter_per_s_during') for r in conv]
        pps = [x * (hot + sweep) if x is not None and hot + sweep else None for x in ips]
        print(('| %s (%s/%s) | %s MiB | %s | %s | %d | %d/%d | %d/%d | %s | %s | %s | %s | %s '
               '| %s |') % (
            w, hot, sweep, size, link, eng, len(rs), len(conv), len(rs), ver, len(rs),
            spread([r.get('downtime_ms') for r in conv]),
            spread([r.get('stop_to_dst_complete_ms') for r in conv]),
            fmt(pct([r.get('total_ms') for r in rs], 50) / 1e3
                if pct([r.get('total_ms') for r in rs], 50) is not None else None, '%.2f'),
            fmt(pct([r.get('bytes') for r in rs], 50) / 1e6
                if pct([r.get('bytes') for r in rs], 50) is not None else None),
            fmt(pct([r.get('rounds') for r in rs], 50), '%.0f'),
            fmt(pct(pps, 50), '%.0f') if hot + sweep else '0 (idle)'))
    return 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == 'ours':
        return ours(sys.argv[2:])
    if len(sys.argv) >= 3 and sys.argv[1] == 'table':
        return table(sys.argv[2:])
    sys.exit(__doc__)


if __name__ == '__main__':
    sys.exit(main())
