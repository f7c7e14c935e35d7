#!/usr/bin/env python3
"""Build a BENCH_DIR from an MNIST-style image folder, for testing reference.py
without the Rust binary.

    python3 benches/make_bench_dir.py /work/shared/datasets/mnist-10k OUT_DIR [--limit 2000] [--fake-layouts]

Layout: DATASET/<class>/<file>.png.  Each image is flattened, scaled to [0,1],
mean-centred per row and L2-normalised (float32, D = width*height).  Writes
embeddings.npy and labels.txt.  With --fake-layouts it also writes PCA(3)
output as layout_umap.npy / layout_pca.npy and a fake bench.json (with
made-up seconds and Python-computed metrics standing in for the Rust ones),
so every code path of reference.py can be exercised.
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("out_dir")
    ap.add_argument("--limit", type=int, default=0,
                    help="keep this many images, spread evenly over the sorted list (0 = all)")
    ap.add_argument("--fake-layouts", action="store_true")
    args = ap.parse_args()

    import numpy as np
    from PIL import Image

    paths, labels = [], []
    for cls in sorted(os.listdir(args.dataset)):
        d = os.path.join(args.dataset, cls)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")):
                paths.append(os.path.join(d, f))
                labels.append(cls)
    if not paths:
        sys.exit(f"no images under {args.dataset}")
    if args.limit and args.limit < len(paths):
        idx = np.linspace(0, len(paths) - 1, args.limit).round().astype(int)
        paths = [paths[i] for i in idx]
        labels = [labels[i] for i in idx]

    rows = [np.asarray(Image.open(p).convert("L"), dtype=np.float32).ravel() / 255.0 for p in paths]
    X = np.stack(rows)
    X -= X.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    X = (X / norms).astype(np.float32)

    os.makedirs(args.out_dir, exist_ok=True)
    np.save(os.path.join(args.out_dir, "embeddings.npy"), X)
    with open(os.path.join(args.out_dir, "labels.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(labels) + "\n")
    print(f"wrote {X.shape[0]}x{X.shape[1]} embeddings to {args.out_dir}")

    if args.fake_layouts:
        from sklearn.decomposition import PCA
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from reference import knn_accuracy
        from sklearn.manifold import trustworthiness

        Y = PCA(n_components=3, random_state=0).fit_transform(X).astype(np.float32)
        np.save(os.path.join(args.out_dir, "layout_umap.npy"), Y)
        np.save(os.path.join(args.out_dir, "layout_pca.npy"), Y)
        codes = np.unique(np.asarray(labels), return_inverse=True)[1]
        acc = knn_accuracy(Y, codes)
        tw = float(trustworthiness(X, Y, n_neighbors=10))
        bench = {"n": int(X.shape[0]), "dim": int(X.shape[1]), "results": [
            # umap entry deliberately off by a little so the Δ column shows something
            {"method": "umap", "seconds": 1.5, "knn_accuracy": round(acc - 0.01, 4), "trustworthiness": tw},
            {"method": "pca", "seconds": 0.05, "knn_accuracy": acc, "trustworthiness": tw},
            {"method": "tsne", "seconds": 9.0, "knn_accuracy": 0.5, "trustworthiness": 0.5},  # no layout file
        ]}
        with open(os.path.join(args.out_dir, "bench.json"), "w") as fh:
            json.dump(bench, fh, indent=2)
        print("wrote fake layout_umap.npy, layout_pca.npy, bench.json")


if __name__ == "__main__":
    main()
