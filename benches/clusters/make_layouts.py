#!/usr/bin/env python3
"""Make the seeded 3D test layouts for the HDBSCAN work (all under /work/data/layouts/).

    ~/.venvs/embedscope/bin/python py/make_layouts.py mnist10k   # needs /work/data/mnist-10k-bench/
    ~/.venvs/embedscope/bin/python py/make_layouts.py mnist100k  # /work/data/mnist-100k.npy
    ~/.venvs/embedscope/bin/python py/make_layouts.py mix1m      # seeded 3D mixture, 1M points
    ~/.venvs/embedscope/bin/python py/make_layouts.py gmm1m      # UMAP of /work/data/gmm-1m-64.npy
    ~/.venvs/embedscope/bin/python py/make_layouts.py gmm1m_pca  # PCA(3) of /work/data/gmm-1m-64.npy
    ~/.venvs/embedscope/bin/python py/make_layouts.py gmm100k    # UMAP of a 100k subsample of it
    ... mnist10k 1   # a second seed: random_state=1, written as mnist10k_umap_s1.npy

The MNIST layouts are umap-learn's (n_components=3, n_neighbors=15, min_dist=0.1,
random_state=42), float32 .npy, with labels copied beside them as <name>.labels.txt (one
integer per line). The 10k input comes from /work/main/benches/make_bench_dir.py:

    python3 /work/main/benches/make_bench_dir.py /work/shared/datasets/mnist-10k /work/data/mnist-10k-bench
"""
import os
import shutil
import sys
import time

import numpy as np

OUT = "/work/data/layouts"


def umap3(X, seed=42):
    import umap

    t = time.time()
    Y = umap.UMAP(n_components=3, n_neighbors=15, min_dist=0.1, random_state=seed).fit_transform(X)
    print(f"umap {X.shape} {time.time() - t:.1f}s", flush=True)
    return Y.astype(np.float32)


def mix1m():
    # 20 anisotropic Gaussian blobs of unequal size and spread in 3D, plus 2% uniform
    # background noise: a stand-in for a 1M-point layout with clusters and clutter.
    rng = np.random.default_rng(2024)
    k, n = 20, 1_000_000
    n_noise = n // 50
    weights = rng.dirichlet(np.full(k, 3.0))
    counts = rng.multinomial(n - n_noise, weights)
    centres = rng.uniform(-30, 30, size=(k, 3))
    parts, labels = [], []
    for c, (m, cnt) in enumerate(zip(centres, counts)):
        a = rng.normal(size=(3, 3)) * rng.uniform(0.5, 2.0)
        parts.append(m + rng.normal(size=(cnt, 3)) @ a)
        labels.append(np.full(cnt, c))
    parts.append(rng.uniform(-40, 40, size=(n_noise, 3)))
    labels.append(np.full(n_noise, -1))
    X = np.concatenate(parts).astype(np.float32)
    y = np.concatenate(labels)
    perm = rng.permutation(n)
    return X[perm], y[perm]


def main():
    os.makedirs(OUT, exist_ok=True)
    what = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 42
    tag = "" if seed == 42 else f"_s{seed}"
    if what == "mnist10k":
        X = np.load("/work/data/mnist-10k-bench/embeddings.npy")
        labels = "/work/data/mnist-10k-bench/labels.txt"
        np.save(f"{OUT}/mnist10k_umap{tag}.npy", umap3(X, seed))
        shutil.copy(labels, f"{OUT}/mnist10k_umap{tag}.labels.txt")
    elif what == "mnist100k":
        X = np.load("/work/data/mnist-100k.npy")
        np.save(f"{OUT}/mnist100k_umap{tag}.npy", umap3(X, seed))
        shutil.copy("/work/data/mnist-100k.npy.labels.txt", f"{OUT}/mnist100k_umap{tag}.labels.txt")
    elif what == "mix1m":
        X, y = mix1m()
        np.save(f"{OUT}/mix1m.npy", X)
        np.savetxt(f"{OUT}/mix1m.labels.txt", y, fmt="%d")
    elif what == "gmm1m":
        X = np.load("/work/data/gmm-1m-64.npy", mmap_mode="r")
        np.save(f"{OUT}/gmm1m_umap.npy", umap3(np.asarray(X)))
        lab = "/work/data/gmm-1m-64.npy.labels.txt"
        if os.path.exists(lab):
            shutil.copy(lab, f"{OUT}/gmm1m_umap.labels.txt")
    elif what == "gmm100k":
        # A seeded 100k subsample of the 1M x 64 mixture (same proportions),
        # small enough for umap-learn here: 50 components, the smallest 0.24%.
        X = np.load("/work/data/gmm-1m-64.npy", mmap_mode="r")
        y = np.loadtxt("/work/data/gmm-1m-64.npy.labels.txt", dtype=str)
        idx = np.sort(np.random.default_rng(5).choice(len(y), 100_000, replace=False))
        np.save(f"{OUT}/gmm100k_umap.npy", umap3(np.asarray(X[idx])))
        codes = np.unique(y, return_inverse=True)[1][idx]
        np.savetxt(f"{OUT}/gmm100k_umap.labels.txt", codes, fmt="%d")
    elif what == "gmm1m_pca":
        from sklearn.decomposition import PCA

        X = np.load("/work/data/gmm-1m-64.npy")
        Y = PCA(n_components=3, random_state=0).fit_transform(X).astype(np.float32)
        np.save(f"{OUT}/gmm1m_pca.npy", Y)
        y = np.loadtxt("/work/data/gmm-1m-64.npy.labels.txt", dtype=str)
        codes = np.unique(y, return_inverse=True)[1]
        np.savetxt(f"{OUT}/gmm1m_pca.labels.txt", codes, fmt="%d")
    else:
        sys.exit(f"unknown layout {what}")
    print("done", what)


if __name__ == "__main__":
    main()
