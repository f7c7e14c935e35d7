"""Near-duplicate pair precision/recall: this crate's rule side by side with
imagededup's hashes, on the same planted folders, in one run; and pairs
flagged on a folder of distinct images (MNIST-10k), where every pair is false.

    flock /tmp/embedscope-bench.lock python benches/duplicates/reference_dups.py \\
        --planted /work/data/photo-dups-s4 /work/data/photo-dups-s5 ... \\
        --distinct /work/shared/datasets/mnist-10k \\
        --embedscope target/release/embedscope

Ours is the `embedscope analyze` command (pixel embedder, PCA layout, no
cache, no labels); its pairs are read from report.json's duplicate groups,
each with its reason. Planted folders come from make_photo_dups.py (images/ + truth.csv); truth
pairs are all pairs of files with the same base. For ours, "groups" are the
pairs inside the reported groups (what a user sees, chaining included) and
"direct" the pairs with evidence of their own; imagededup reports direct pairs
(every pair within the distance). Timings: seconds for the whole folder,
2 worker threads each (imagededup: num_enc_workers=2, num_dist_workers=2;
ours: RAYON_NUM_THREADS=2).
"""

import argparse
import csv
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

logging.disable(logging.WARNING)

METHODS = ["PHash", "DHash", "AHash", "WHash"]
DISTANCES = [6, 8, 10, 12]


def truth_of(folder):
    rows = list(csv.DictReader(open(os.path.join(folder, "truth.csv"))))
    by = defaultdict(list)
    for r in rows:
        by[r["base"]].append(r["file"])
    pairs = {tuple(sorted(p)) for fs in by.values() for p in itertools.combinations(fs, 2)}
    kind = {}
    var = {r["file"]: r["variant"] for r in rows}
    for a, b in pairs:
        va, vb = var[a], var[b]
        kind[(a, b)] = vb if va == "base" else va if vb == "base" else "copy/copy"
    return pairs, kind


def score(found, truth):
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), tp / len(truth) if truth else 1.0, len(found) - tp


def imagededup_counts(folder, method, distances):
    """Pairs within each distance, counted from imagededup's own hashes with
    numpy (its find_duplicates builds a dict of lists per file, which on
    10,000 digits at distance 10 grew past 5 GB per worker)."""
    import numpy as np
    from imagededup import methods

    m = getattr(methods, method)(verbose=False)
    t = time.perf_counter()
    enc = m.encode_images(folder, recursive=True, num_enc_workers=2)
    t_enc = time.perf_counter() - t
    bits = np.unpackbits(
        np.array([bytes.fromhex(h) for h in enc.values()], dtype="S8").view(np.uint8).reshape(-1, 8), axis=1
    ).astype(np.int16) * 2 - 1
    counts = {d: 0 for d in distances}
    for i0 in range(0, len(bits), 1000):
        ham = (64 - bits[i0 : i0 + 1000] @ bits.T) // 2
        for r in range(ham.shape[0]):
            row = ham[r, i0 + r + 1 :]
            for d in distances:
                counts[d] += int((row <= d).sum())
    return {d: (c, t_enc) for d, c in counts.items()}


def imagededup_pairs(folder, method, distances):
    from imagededup import methods

    m = getattr(methods, method)(verbose=False)
    t = time.perf_counter()
    enc = m.encode_images(folder, recursive=True, num_enc_workers=2)
    t_enc = time.perf_counter() - t
    out = {}
    for d in distances:
        t = time.perf_counter()
        dup = m.find_duplicates(encoding_map=enc, max_distance_threshold=d, num_dist_workers=2)
        out[d] = ({tuple(sorted((a, b))) for a, bs in dup.items() for b in bs}, t_enc + time.perf_counter() - t)
    return out


def ours(folder, embedscope):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, RAYON_NUM_THREADS="2")
        cmd = [embedscope, "analyze", folder, "--out", tmp, "--embedder", "pixels",
               "--reducer", "pca", "--no-cache", "--no-labels", "--quiet"]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"embedscope failed: {r.stderr}")
        report = json.load(open(os.path.join(tmp, "report.json")))
        groups = set()
        reasons = {}
        for g in report["duplicate_groups"]:
            for pair in g["pairs"]:
                p = tuple(sorted((os.path.basename(pair["a"]), os.path.basename(pair["b"]))))
                groups.add(p)
                reasons[p] = pair["reason"]["kind"]
        direct = {p for p, why in reasons.items() if why != "chained"}
        ev = report["duplicate_evidence"]
        gate = f"{report['counts']['images']} images; {ev['perceptual_note']}"
    return groups, direct, reasons, elapsed, gate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--planted", nargs="+", default=[])
    ap.add_argument("--distinct", nargs="*", default=[])
    ap.add_argument("--embedscope", default="target/release/embedscope")
    args = ap.parse_args()

    table = defaultdict(dict)  # method -> folder -> (P, R, fp, seconds)
    per_kind = defaultdict(lambda: defaultdict(lambda: [0, 0]))  # method -> kind -> [found, total]
    for folder in args.planted:
        name = os.path.basename(folder.rstrip("/"))
        truth, kind = truth_of(folder)
        images = os.path.join(folder, "images")
        g, d, reasons, secs, gate = ours(images, args.embedscope)
        print(f"# {name}: {len(truth)} true pairs; ours: {gate}", file=sys.stderr)
        table["ours (groups)"][name] = (*score(g, truth), secs)
        table["ours (direct)"][name] = (*score(d, truth), secs)
        for p in truth:
            per_kind["ours (groups)"][kind[p]][1] += 1
            per_kind["ours (groups)"][kind[p]][0] += p in g
        why = defaultdict(int)
        for p, r in reasons.items():
            why[r] += 1
        print(f"#   reasons: {dict(why)}", file=sys.stderr)
        for method in METHODS:
            for dist, (found, secs) in imagededup_pairs(images, method, DISTANCES).items():
                label = f"{method} <= {dist}"
                table[label][name] = (*score(found, truth), secs)
                for p in truth:
                    per_kind[label][kind[p]][1] += 1
                    per_kind[label][kind[p]][0] += p in found

    names = [os.path.basename(f.rstrip("/")) for f in args.planted]
    if names:
        print("\n| method | " + " | ".join(f"{n} P / R (false pairs)" for n in names) + " | mean P / R |")
        print("|---|" + "---|" * (len(names) + 1))
        for method, per in table.items():
            cells = [f"{per[n][0]:.3f} / {per[n][1]:.3f} ({per[n][2]})" for n in names]
            mp = sum(per[n][0] for n in names) / len(names)
            mr = sum(per[n][1] for n in names) / len(names)
            print(f"| {method} | " + " | ".join(cells) + f" | **{mp:.3f} / {mr:.3f}** |")
        kinds = sorted({k for m in per_kind.values() for k in m})
        print("\nRecall per planted copy (pairs of a base and its copy; copy/copy: two copies of one base), all folders:\n")
        print("| method | " + " | ".join(kinds) + " |")
        print("|---|" + "---|" * len(kinds))
        for method in ["ours (groups)", "PHash <= 8", "PHash <= 10", "PHash <= 12", "DHash <= 10"]:
            m = per_kind[method]
            print(f"| {method} | " + " | ".join(f"{m[k][0]}/{m[k][1]}" for k in kinds) + " |")
        print("\nSeconds per folder (2 threads; ours: the whole `embedscope analyze` run, PCA layout, clusters, issues and outputs included; imagededup: encode + search):\n")
        for method in ["ours (groups)", "PHash <= 10", "DHash <= 10"]:
            print(f"- {method}: " + ", ".join(f"{n} {table[method][n][3]:.2f}" for n in names))
        sys.stdout.flush()
    distinct = defaultdict(dict)
    for folder in args.distinct:
        name = os.path.basename(folder.rstrip("/"))
        g, d, _, secs, gate = ours(folder, args.embedscope)
        print(f"# {name}: ours: {gate}", file=sys.stderr)
        distinct["ours (groups)"][name] = (len(g), secs)
        distinct["ours (direct)"][name] = (len(d), secs)
        for method in METHODS:
            for dist, (count, secs) in imagededup_counts(folder, method, [8, 10]).items():
                distinct[f"{method} <= {dist}"][name] = (count, secs)

    sys.stdout.flush()
    if distinct:
        dn = [os.path.basename(f.rstrip("/")) for f in args.distinct]
        print("\nPairs flagged on folders of distinct images (every pair is a false pair):\n")
        print("| method | " + " | ".join(dn) + " |")
        print("|---|" + "---|" * len(dn))
        for method, per in distinct.items():
            print(f"| {method} | " + " | ".join(f"{per[n][0]} ({per[n][1]:.1f} s)" for n in dn) + " |")


if __name__ == "__main__":
    main()
