#!/usr/bin/env python3
"""umap-learn on the same vectors `embedscope analyze` laid out, for the
README's end-to-end table: numba warmed up on 5,000 rows first, then one
timed `fit_transform` (3 components, 15 neighbours, 2 threads) and the
layout's leave-one-out 10-NN accuracy.

    python3 benches/umap_side_by_side.py EMBEDDINGS.npy [--threads 2]

EMBEDDINGS.npy.labels.txt holds one label per row (make_jittered.py
--embeddings writes both). Run it between two `embedscope analyze` runs on
an idle machine and compare with their `neighbours` + `layout` timings.
"""
import argparse
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("embeddings")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    from collections import Counter

    import numpy as np
    import umap
    from sklearn.neighbors import NearestNeighbors

    X = np.load(args.embeddings).astype(np.float32)
    y = np.array(open(args.embeddings + ".labels.txt").read().split())
    umap.UMAP(n_components=3, n_neighbors=15, n_jobs=args.threads).fit_transform(X[:5000])
    t = time.perf_counter()
    Y = umap.UMAP(n_components=3, n_neighbors=15, n_jobs=args.threads).fit_transform(X)
    seconds = time.perf_counter() - t
    _, idx = NearestNeighbors(n_neighbors=11).fit(Y).kneighbors(Y)
    pred = np.array([Counter(y[i[1:]]).most_common(1)[0][0] for i in idx])
    print(f"umap-learn {umap.__version__} fit_transform on {len(X)} rows: {seconds:.1f} s, "
          f"10-NN accuracy {(pred == y).mean():.4f}")


if __name__ == "__main__":
    sys.exit(main())
