#!/usr/bin/env python3
"""Prints a sweep (cluster_bench --sweep output, JSON lines) as a table:
rows min_cluster_size, columns min_samples, cells ARI/clusters.

    sweep_table.py results/sweep10k.jsonl
"""
import json
import sys

for f in sys.argv[1:]:
    rows = [json.loads(l) for l in open(f) if l.startswith("{")]
    mcs = sorted({r["mcs"] for r in rows})
    ms = sorted({r["ms"] for r in rows})
    cell = {(r["mcs"], r["ms"]): r for r in rows}
    print(f"{f}: rows min_cluster_size, columns min_samples; ARI/clusters")
    print("       " + " ".join(f"{s:>9d}" for s in ms))
    for m in mcs:
        print(f"{m:6d} " + " ".join(
            f"{cell[m, s]['ari']:.3f}/{cell[m, s]['clusters']:<3d}" if (m, s) in cell else " " * 9
            for s in ms))
