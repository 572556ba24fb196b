#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/migration/summarize_runs.py - markdown tables from sweep.sh's JSON lines.

    summarize_runs.py FILE.jsonl [FILE.jsonl ...]

One row per cell (the "cell" field sweep.sh adds; without it, the cell's parameters), in the
order the cells first appear, then one row pooling every run. Columns:

  runs          JSON lines for the cell
  conv/verif    runs that switched over (status "ok": an actual downtime was measured) /
                runs whose destination digest matched the source's
  downtime      actual downtime p50 / p95, ms, over switched-over runs
  pred err      |predicted - actual| / actual, p50 / p95, over switched-over runs
  total         total time p50, s (every run that printed one, given-up runs included)
  rounds        rounds p50
  bytes/size    bytes sent / memory size p50 (the size is the lower bound: every page once)
  pinned pre    pinned pages sent before the pause, summed over the cell's runs (0 with
                deferral)
  in limit      switched-over runs whose actual downtime <= the limit / switched-over runs
  stall rd      first round with verdict "stalled" or "diverging", p50 (max), over runs
                that had one (other engines' policies have no verdict)
  end           the verdict/decision counts (e.g. converging/switch_over)

Percentiles are linear interpolation between the order statistics (with 2 runs, p95 is
close to the larger one). Standard library only.
"""

import json
import sys
from collections import Counter, OrderedDict


def pct(xs, q):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def size_bytes(s):
    if isinstance(s, (int, float)):
        return float(s)
    if not s:
        return None
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = str(s).strip().upper().rstrip("B").rstrip("I")
    if s and s[-1] in mult:
        return float(s[:-1]) * mult[s[-1]]
    try:
        return float(s)
    except ValueError:
        return None


def cell_name(r):
    if r.get("cell"):
        return r["cell"]
    if "size" not in r:
        return "(harness error)"
    name = "%s-%s-rtt%s-%s%s-pin%s" % (r.get("size"), r.get("rate"), r.get("rtt_ms"),
                                       r.get("pattern"), r.get("dirty_fraction"),
                                       r.get("pinned"))
    if r.get("drop_at_s") is not None:
        name += "-drop%ss" % r["drop_at_s"]
    if r.get("no_defer"):
        name += "-nodefer"
    return name


def fmt(x, spec="%.1f"):
    return "-" if x is None else spec % x


def row(name, runs):
    sw = [r for r in runs if r.get("actual_downtime_ms") is not None]
    conv = sum(1 for r in runs if r.get("status") == "ok")
    verif = sum(1 for r in runs if r.get("verified") is True)
    down = [r["actual_downtime_ms"] for r in sw]
    err = [abs(r["predicted_downtime_ms"] - r["actual_downtime_ms"]) / r["actual_downtime_ms"]
           * 100.0 for r in sw
           if r.get("predicted_downtime_ms") is not None and r["actual_downtime_ms"] > 0]
    total = [r["total_ms"] / 1000.0 for r in runs if r.get("total_ms") is not None]
    rounds = [r["rounds"] for r in runs if r.get("rounds") is not None]
    ratio = []
    for r in runs:
        sz = size_bytes(r.get("size"))
        if sz and r.get("bytes_sent") is not None:
            ratio.append(r["bytes_sent"] / sz)
    pre = [r["pinned_sent_precopy"] for r in runs if r.get("pinned_sent_precopy") is not None]
    within = sum(1 for r in sw if r.get("max_downtime_ms") is not None
                 and r["actual_downtime_ms"] <= r["max_downtime_ms"])
    stall = [r["stall_round"] for r in runs if r.get("stall_round") is not None]
    ends = Counter("%s/%s" % (r.get("verdict") or "-", r.get("decision") or "-")
                   if r.get("status") != "harness-error" else "harness-error" for r in runs)
    return "| %s | %d | %d/%d | %s / %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |" % (
        name, len(runs), conv, verif,
        fmt(pct(down, 50)), fmt(pct(down, 95)),
        fmt(pct(err, 50), "%.1f %%"), fmt(pct(err, 95), "%.1f %%"),
        fmt(pct(total, 50), "%.2f"), fmt(pct(rounds, 50), "%g"),
        fmt(pct(ratio, 50), "%.2f"),
        sum(pre) if pre else "-",
        "%d/%d" % (within, len(sw)) if sw else "-",
        ("%g (%d)" % (pct(stall, 50), max(stall))) if stall else "-",
        ", ".join("%s %d" % kv for kv in sorted(ends.items())))


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cells = OrderedDict()
    bad = 0
    for path in argv[1:]:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    sys.stderr.write("%s:%d: not JSON, skipped\n" % (path, n))
                    bad += 1
                    continue
                cells.setdefault(cell_name(r), []).append(r)
    print("| cell | runs | conv/verif | downtime p50/p95 ms | pred err p50/p95 | total p50 s"
          " | rounds p50 | bytes/size p50 | pinned pre | in limit | stall rd p50 (max) | end |")
    print("|" + "---|" * 13)
    every = []
    for name, runs in cells.items():
        print(row(name, runs))
        every.extend(runs)
    print(row("**all**", every))
    if bad:
        print("\n(%d lines were not JSON)" % bad)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
