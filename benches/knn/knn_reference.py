#!/usr/bin/env python3
"""Reference kNN timing: pynndescent on the same unit rows that embedscope's
NN-descent is benchmarked on, with the same thread count, and its recall@k
against an exact ground truth written by the Rust bench (`knn_bench --save-truth`).

    NUMBA_NUM_THREADS=2 flock /tmp/embedscope-bench.lock /usr/bin/time -v \
        python3 benches/knn_reference.py /work/data/mnist-100k.npy --k 15 --seed 1 \
        [--truth /work/data/knn/mnist-100k.truth-k15] [--metric cosine] [--repeat 2]

pynndescent's graph includes each point itself (normally in column 0), so it is
asked for k+1 neighbours and the point itself is dropped from each row; the
remaining first k are scored. numba is compiled and warmed up on 5,000 rows of
the same width before the timed run, so JIT compilation is not counted.
Prints one JSON line: {"tool": "pynndescent", "n", "dim", "seconds", "recall", ...}.
"""
import argparse
import json
import os
import sys
import time


def drop_self(indices, k):
    """Rows of k neighbours without the point itself (pynndescent keeps it)."""
    import numpy as np

    n = indices.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        row = indices[i]
        row = row[row != i]
        out[i] = row[:k]
    return out


def recall(found, truth_ids, truth):
    """Fraction of the exact neighbours (truth rows for truth_ids) found."""
    hits = 0
    total = 0
    for q, row in zip(truth_ids, truth):
        want = set(int(j) for j in row if j >= 0)
        total += len(want)
        hits += len(want.intersection(int(j) for j in found[q]))
    return hits / max(total, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("npy", help="float32 n x dim, L2-normalised rows")
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--truth", help="PREFIX of PREFIX.ids.npy (query rows, int64) and "
                    "PREFIX.idx.npy (their exact neighbours, int32 q x k), from knn_bench")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs (seeds seed, seed+1, ...)")
    ap.add_argument("--save", help="write the k-NN indices (n x k int32) here")
    args = ap.parse_args()

    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import numpy as np
    import numba
    import pynndescent

    numba.set_num_threads(args.threads)
    x = np.ascontiguousarray(np.load(args.npy, mmap_mode="r"), dtype=np.float32)
    n, dim = x.shape

    # Warm-up: compile every numba kernel on the same width and metric.
    rng = np.random.default_rng(12345)
    warm = x[rng.choice(n, size=min(n, 5000), replace=False)]
    pynndescent.NNDescent(
        warm, n_neighbors=args.k + 1, metric=args.metric, random_state=0, n_jobs=args.threads
    ).neighbor_graph

    for run in range(args.repeat):
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        index = pynndescent.NNDescent(
            x, n_neighbors=args.k + 1, metric=args.metric, random_state=args.seed + run,
            n_jobs=args.threads,
        )
        indices, _ = index.neighbor_graph
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        del index

        found = drop_self(indices, args.k)
        out = {
            "tool": f"pynndescent {pynndescent.__version__}",
            "metric": args.metric,
            "n": n,
            "dim": dim,
            "k": args.k,
            "threads": args.threads,
            "seed": args.seed + run,
            "seconds": round(seconds, 3),
            "cpu_s": round(cpu, 2),
        }
        if args.truth:
            ids = np.load(args.truth + ".ids.npy")
            idx = np.load(args.truth + ".idx.npy")
            out["recall"] = round(recall(found, ids, idx[:, : args.k]), 5)
            out["truth_queries"] = int(len(ids))
        if args.save:
            np.save(args.save, found.astype(np.int32))
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
