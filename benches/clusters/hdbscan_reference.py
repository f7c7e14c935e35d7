#!/usr/bin/env python3
"""Reference HDBSCAN runs for embedscope's clusters (scikit-learn, fast_hdbscan).

    reference.py run LAYOUT.npy --labels L.txt --mcs N --ms N [--ours OURS.txt]
                 [--impl sklearn,fast] [--out PREFIX]
    reference.py fixture OUT.txt

`run`: times each implementation on the layout (fit only, wall and CPU seconds of
all threads; fast_hdbscan's numba is warmed up on 5,000 points first) and prints one JSON line each: seconds, clusters,
noise, ARI against the true labels and, with --ours, ARI against our labels (one
label per line, -1 noise). `--ms` is scikit-learn's min_samples (the point itself
counts); fast_hdbscan does not count the point, so it is given ms - 1.
Use the same thread count as the Rust side: NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2.

`fixture`: writes the small sklearn-labelled inputs the Rust test
`analyze::hdbscan::tests::labels_equal_scikit_learns` reads.
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def summary(name, X, labels, seconds, cpu, truth, ours, mcs, ms):
    from sklearn.metrics import adjusted_rand_score

    rec = {
        "impl": name,
        "n": int(X.shape[0]),
        "mcs": mcs,
        "ms": ms,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 2),
        "clusters": int(labels.max() + 1) if labels.size else 0,
        "noise": int((labels < 0).sum()),
        "ari": None if truth is None else round(float(adjusted_rand_score(truth, labels)), 4),
        "ari_vs_ours": None if ours is None else round(float(adjusted_rand_score(ours, labels)), 6),
    }
    print(json.dumps(rec), flush=True)
    return rec


def run(args):
    X = np.load(args.layout).astype(np.float32)
    truth = np.loadtxt(args.labels, dtype=np.int64) if args.labels else None
    ours = np.loadtxt(args.ours, dtype=np.int64) if args.ours else None
    impls = args.impl.split(",")
    for name in impls:
        if name == "sklearn":
            from sklearn.cluster import HDBSCAN

            t, c = time.perf_counter(), time.process_time()
            labels = HDBSCAN(min_cluster_size=args.mcs, min_samples=args.ms, n_jobs=2, copy=False).fit(X).labels_
            secs, cpu = time.perf_counter() - t, time.process_time() - c
        elif name == "fast":
            import fast_hdbscan

            warm = np.random.default_rng(0).normal(size=(5000, 3)).astype(np.float32)
            fast_hdbscan.HDBSCAN(min_cluster_size=50, min_samples=9).fit(warm)
            t, c = time.perf_counter(), time.process_time()
            labels = fast_hdbscan.HDBSCAN(
                min_cluster_size=args.mcs, min_samples=max(args.ms - 1, 1)
            ).fit(X).labels_
            secs, cpu = time.perf_counter() - t, time.process_time() - c
        else:
            sys.exit(f"unknown implementation {name}")
        summary(name, X, labels, secs, cpu, truth, ours, args.mcs, args.ms)
        if args.out:
            np.savetxt(f"{args.out}.{name}.txt", labels, fmt="%d")


def fixture(args):
    """Small inputs with scikit-learn's labels, for the Rust test.

    Format: lines `# case NAME n MCS MS`, then n lines `x y z label` (float32
    values printed with 9 significant digits, which round-trip exactly)."""
    from sklearn.cluster import HDBSCAN

    rng = np.random.default_rng(11)
    cases = []
    # Blobs of different spread and size, with background noise.
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 7, 1], [5, 6, -4]], dtype=np.float64)
    parts = [c + rng.normal(scale=s, size=(m, 3)) for c, s, m in
             zip(centres, [0.6, 1.0, 0.4, 1.5], [120, 90, 60, 150])]
    parts.append(rng.uniform(-5, 12, size=(40, 3)))
    cases.append(("blobs", np.concatenate(parts), 15, 5))
    # A slice of umap-learn's 10k MNIST layout (nearby points, real structure).
    layout = "/work/data/layouts/mnist10k_umap.npy"
    Y = np.load(layout)
    idx = np.sort(rng.choice(len(Y), 600, replace=False))
    cases.append(("mnist10k_umap_600", Y[idx], 20, 8))
    # Ties: a grid with two dense corners, plus exact duplicates.
    g = np.stack(np.meshgrid(np.arange(6), np.arange(6), np.arange(6), indexing="ij"), -1).reshape(-1, 3)
    dense = np.concatenate([g * 0.25, g * 0.25 + 8.0, g.astype(np.float64)[:60] * 1.5 + [0, 0, 4]])
    dense = np.concatenate([dense, dense[:25]])
    cases.append(("grid_ties", dense, 10, 4))
    with open(args.out, "w") as fh:
        for name, P, mcs, ms in cases:
            P = P.astype(np.float32)
            labels = HDBSCAN(min_cluster_size=mcs, min_samples=ms, copy=False).fit(P).labels_
            print(f"{name}: n={len(P)} clusters={labels.max() + 1} noise={(labels < 0).sum()}")
            fh.write(f"# case {name} {len(P)} {mcs} {ms}\n")
            for p, l in zip(P, labels):
                fh.write(f"{p[0]:.9g} {p[1]:.9g} {p[2]:.9g} {l}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("layout")
    r.add_argument("--labels")
    r.add_argument("--mcs", type=int, required=True)
    r.add_argument("--ms", type=int, required=True)
    r.add_argument("--ours")
    r.add_argument("--impl", default="sklearn,fast")
    r.add_argument("--out")
    f = sub.add_parser("fixture")
    f.add_argument("out")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else fixture(args)


if __name__ == "__main__":
    main()
