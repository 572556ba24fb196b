#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fold the JSON lines of several runs of one benchmark into a markdown table.

Each cell is the median over the runs of each run's median, with the range over the runs
in parentheses; ratios are computed from those medians. Used for docs/performance.md:

    python3 bench/summarize.py report1_*.jsonl
    python3 bench/summarize.py mark_*.jsonl
"""
import json
import statistics
import sys


def load(paths):
    return [[json.loads(l) for l in open(p) if l.startswith("{")] for p in paths]


def cell(values, scale, digits):
    v = [x / scale for x in values]
    return f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}–{max(v):.{digits}f})"


def report_table(runs):
    rows = {}
    for run in runs:
        for o in run:
            if o["bench"] == "report":
                rows.setdefault(o["dirty_pct"], []).append(o)
    first = next(o for o in runs[0] if o["bench"] == "report")
    print(f"{first['size_gib']} GiB in {first['mappings']} mapping(s), {len(runs)} runs, "
          f"{first['reps']} repetitions each, times in ms\n")
    print("| dirty | pages | GET_BITMAP | report → runs | naive | memcpy | sparse bound "
          "| naive / GET_BITMAP | GET_BITMAP / memcpy | GET_BITMAP / sparse |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for pct in sorted(rows):
        os_ = rows[pct]

        def med(k):
            return statistics.median(o[k] for o in os_)

        g, n, c, s = (med(k) for k in ("get_bitmap_ns", "naive_ns", "memcpy_ns",
                                      "sparse_bound_ns"))
        print(f"| {pct:g} % | {os_[0]['dirty_pages']} "
              f"| {cell([o['get_bitmap_ns'] for o in os_], 1e6, 3)} "
              f"| {cell([o['report_runs_ns'] for o in os_], 1e6, 3)} "
              f"| {cell([o['naive_ns'] for o in os_], 1e6, 2)} "
              f"| {cell([o['memcpy_ns'] for o in os_], 1e6, 2)} "
              f"| {cell([o['sparse_bound_ns'] for o in os_], 1e6, 3)} "
              f"| {n / g:.1f} | {g / c:.2f} | {f'{g / s:.2f}' if s >= 1000 else 'n/a'} |")
    faults = sum(o["timed_faults_ours"] + o["timed_faults_refs"] for r in rows.values()
                 for o in r)
    loads = [o["loadavg_1min"] for run in runs for o in run if o["bench"] == "report_env"]
    print(f"\nPage faults in timed sections: {faults}. 1-minute load average when each run "
          f"started (it includes the previous benchmark): {loads}")


def size_text(mib):
    """A mapping size given in MiB, in KiB when under one."""
    return f"{mib * 1024:g} KiB" if mib < 1 else f"{mib:g} MiB"


def mark_table(runs):
    rows = {}
    for run in runs:
        for o in run:
            if o["bench"] == "mark":
                rows.setdefault((o["mappings"], o["threads"]), []).append(o)
    first = next(o for o in runs[0] if o["bench"] == "mark")
    sizes = {o["mapping_mib"] for run in runs for o in run if o["bench"] == "mark"}
    what = (f"mappings of {size_text(first['mapping_mib'])}" if len(sizes) == 1 else
            f"{first['total_gib']:g} GiB split among the mappings")
    print(f"{what}, {len(runs)} runs, {first['reps']} "
          f"repetitions of {first['calls_per_thread']} calls per thread, ns per call per "
          "thread\n")
    batch = "ours_batch_ns" in first  # dt_dma_log_batch, from the fifth session on
    print("| mappings (total) | threads | fresh | ours |"
          + (f" ours, batch of {first['batch']} |" if batch else "")
          + " bound | bound_check | naive | ours / bound | naive / ours |")
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if batch else ""))
    for key in sorted(rows):
        os_ = rows[key]

        def med(k):
            return statistics.median(o[k] for o in os_)

        print(f"| {key[0]} x {size_text(os_[0]['mapping_mib'])} ({os_[0]['total_gib']:g} GiB) | {key[1]} "
              f"| {os_[0]['fresh_fraction'] * 100:.0f} % "
              f"| {cell([o['ours_ns'] for o in os_], 1, 1)} "
              + (f"| {cell([o['ours_batch_ns'] for o in os_], 1, 1)} " if batch else "")
              + f"| {cell([o['bound_ns'] for o in os_], 1, 1)} "
              f"| {cell([o['bound_check_ns'] for o in os_], 1, 1)} "
              f"| {cell([o['naive_ns'] for o in os_], 1, 1)} "
              f"| {med('ours_ns') / med('bound_ns'):.1f} | {med('naive_ns') / med('ours_ns'):.1f} |")
    faults = sum(o["timed_faults_ours"] + o["timed_faults_refs"] for r in rows.values()
                 for o in r)
    loads = [o["loadavg_1min"] for run in runs for o in run if o["bench"] == "mark_env"]
    print(f"\nPage faults in timed sections: {faults}. 1-minute load average when each run "
          f"started (it includes the previous benchmark): {loads}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = load(sys.argv[1:])
    kinds = {o["bench"] for run in runs for o in run}
    if "report" in kinds:
        report_table(runs)
    if "mark" in kinds:
        mark_table(runs)


if __name__ == "__main__":
    main()
