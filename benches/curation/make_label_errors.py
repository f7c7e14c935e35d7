#!/usr/bin/env python3
"""Plant label errors in a labelled image folder, seeded: copy it with about
RATE x N images moved into a wrong class's folder, and write the truth.

    python3 benches/make_label_errors.py SRC OUT [--rate 0.03] [--seed 1]
        [--noise uniform|confusable]

SRC is either a folder laid out SRC/<label>/<image> (as MNIST) or an
embeddings file written by make_jittered.py --embeddings (SRC.npy with
SRC.npy.labels.txt next to it); the second form moves no files, it only changes
labels, which is all a score computed from embeddings sees (used at 100k).

OUT gets:
  images/<label>/<name>   the copy (folder form only), with the moved images
  embeddings.npy          what embedscope's pixel embedder computes for images/
                          (float32 N x 784, /255, mean-centred per row,
                          L2-normalised), rows in embedscope's walk order
  labels.txt              the given (possibly wrong) label of each row
  truth.csv               row,path,given,true for every moved image

--noise uniform (default): the wrong class is drawn uniformly from the other
classes. --noise confusable: drawn in proportion to how often each other class
appears among the image's 50 nearest neighbours (cosine, pixel embeddings),
plus one pseudo-count each, i.e. the mistakes a hurried annotator makes
(a 4 filed as 9 more often than as 0).
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/, for make_jittered
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--rate", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise", choices=["uniform", "confusable"], default="uniform")
    args = ap.parse_args()

    import numpy as np

    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f"{args.out} exists and is not empty; give a new folder")
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    if args.source.endswith(".npy"):
        X = np.load(args.source, mmap_mode="r")
        labels = open(args.source + ".labels.txt").read().split()
        paths = [f"row{i}" for i in range(len(labels))]
    else:
        from make_jittered import write_embeddings

        src_emb = os.path.join(args.out, "source-embeddings.npy")
        write_embeddings(args.source, src_emb)
        X = np.load(src_emb)
        labels = open(src_emb + ".labels.txt").read().split()
        paths = walk(args.source)
        assert len(paths) == len(labels)
    n = len(labels)
    classes = sorted(set(labels))
    n_err = int(round(args.rate * n))
    chosen = rng.choice(n, size=n_err, replace=False)
    chosen.sort()

    if args.noise == "confusable":
        weights = confusion_weights(X, labels, classes, chosen)
    new_label = {}
    for t, i in enumerate(chosen):
        others = [c for c in classes if c != labels[i]]
        if args.noise == "uniform":
            new_label[i] = others[rng.integers(len(others))]
        else:
            w = np.array([weights[t][classes.index(c)] for c in others], dtype=float)
            new_label[i] = others[rng.choice(len(others), p=w / w.sum())]

    if args.source.endswith(".npy"):
        given = [new_label.get(i, labels[i]) for i in range(n)]
        shutil.copyfile(args.source, os.path.join(args.out, "embeddings.npy"))
        write_list(os.path.join(args.out, "labels.txt"), given)
        with open(os.path.join(args.out, "truth.csv"), "w") as f:
            f.write("row,path,given,true\n")
            for i in chosen:
                f.write(f"{i},{paths[i]},{given[i]},{labels[i]}\n")
    else:
        images = os.path.join(args.out, "images")
        moved = {}
        for i, rel in enumerate(paths):
            dst = rel
            if i in new_label:
                dst = new_label[i] + "/" + "/".join(rel.split("/")[1:])
                moved[dst] = (labels[i], new_label[i])
            os.makedirs(os.path.dirname(os.path.join(images, dst)), exist_ok=True)
            shutil.copyfile(os.path.join(args.source, rel), os.path.join(images, dst))
        os.remove(src_emb)
        os.remove(src_emb + ".labels.txt")
        emb = os.path.join(args.out, "embeddings.npy")
        write_embeddings(images, emb)
        os.replace(emb + ".labels.txt", os.path.join(args.out, "labels.txt"))
        new_paths = walk(images)
        with open(os.path.join(args.out, "truth.csv"), "w") as f:
            f.write("row,path,given,true\n")
            for row, rel in enumerate(new_paths):
                if rel in moved:
                    true, given = moved[rel]
                    f.write(f"{row},{rel},{given},{true}\n")
    print(f"{n_err} of {n} images given a wrong label ({args.noise}, seed {args.seed}) -> {args.out}",
          file=sys.stderr)


def confusion_weights(X, labels, classes, chosen, k=50):
    """Per chosen row: count of each class among its k nearest neighbours, +1."""
    import numpy as np

    lab = np.array([classes.index(c) for c in labels])
    out = []
    for start in range(0, len(chosen), 256):
        rows = chosen[start:start + 256]
        sims = np.asarray(X[rows]) @ np.asarray(X).T
        sims[np.arange(len(rows)), rows] = -np.inf
        nn = np.argpartition(-sims, k, axis=1)[:, :k]
        for r in range(len(rows)):
            out.append(np.bincount(lab[nn[r]], minlength=len(classes)) + 1.0)
    return out


def walk(folder):
    """Relative image paths in embedscope's order (names sorted by bytes, depth first)."""
    paths = []

    def rec(d, prefix):
        for name in sorted(os.listdir(d), key=lambda s: s.encode()):
            if name.startswith("."):
                continue
            p = os.path.join(d, name)
            rel = f"{prefix}/{name}" if prefix else name
            if os.path.isdir(p):
                rec(p, rel)
            elif name.lower().endswith(".png"):
                paths.append(rel)

    rec(folder, "")
    return paths


def write_list(path, items):
    with open(path, "w") as f:
        f.write("\n".join(items) + "\n")


if __name__ == "__main__":
    main()
