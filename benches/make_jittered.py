#!/usr/bin/env python3
"""Build a large labelled image folder from a small one: every image plus
COPIES jittered copies (shift, rotation, scale, noise), seeded.

    python3 benches/make_jittered.py ../shared/datasets/mnist-10k /tmp/mnist-100k
        [--copies 9] [--seed 7] [--embeddings /tmp/mnist-100k.npy]

With the default 9 copies the 10,000 MNIST digits become 100,000 images, laid
out as OUT/<digit>/<name>.png (the original) and OUT/<digit>/<name>_j<k>.png.
Each copy: shift of up to ±2 px on each axis, rotation within ±12°, scale within
±10 %, then Gaussian noise (σ = 8 grey levels), clipped to 0..255.

--embeddings also writes what embedscope's pixel embedder computes for the
folder (float32 N×784: pixels / 255, mean-centred per row, L2-normalised), in
the order of a sorted walk (the order embedscope reads the folder in), and
LABELS next to it (<embeddings>.labels.txt, one class per line), so reference
tools can run on the same vectors without the Rust binary.
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--copies", type=int, default=9)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--embeddings", help="also write the pixel embeddings (.npy)")
    args = ap.parse_args()

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(args.seed)
    classes = sorted(d for d in os.listdir(args.source)
                     if os.path.isdir(os.path.join(args.source, d)))
    written = 0
    for cls in classes:
        src_dir = os.path.join(args.source, cls)
        dst_dir = os.path.join(args.out, cls)
        os.makedirs(dst_dir, exist_ok=True)
        for name in sorted(os.listdir(src_dir)):
            if not name.lower().endswith(".png"):
                continue
            stem = name[:-4]
            image = Image.open(os.path.join(src_dir, name)).convert("L")
            image.save(os.path.join(dst_dir, name))
            w, h = image.size
            for k in range(1, args.copies + 1):
                angle = rng.uniform(-12.0, 12.0)
                scale = rng.uniform(0.9, 1.1)
                dx, dy = rng.uniform(-2.0, 2.0, size=2)
                copy = jitter(image, angle, scale, dx, dy, w, h)
                pixels = np.asarray(copy, dtype=np.float32)
                pixels += rng.normal(0.0, 8.0, size=pixels.shape)
                copy = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
                copy.save(os.path.join(dst_dir, f"{stem}_j{k}.png"))
            written += 1 + args.copies
        print(f"{cls}: {written} images so far", file=sys.stderr)

    if args.embeddings:
        write_embeddings(args.out, args.embeddings)


def jitter(image, angle, scale, dx, dy, w, h):
    """Rotate by `angle` degrees and scale by `scale` about the centre, then shift."""
    import math
    from PIL import Image

    a = math.radians(angle)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    cx, cy = w / 2.0, h / 2.0
    # PIL's affine maps output (x, y) to input (a x + b y + c, d x + e y + f).
    coeffs = (
        cos, sin, cx - cos * (cx + dx) - sin * (cy + dy),
        -sin, cos, cy + sin * (cx + dx) - cos * (cy + dy),
    )
    return image.transform((w, h), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=0)


def write_embeddings(folder, out):
    import numpy as np
    from PIL import Image

    paths, labels = [], []
    # embedscope's walk: names sorted by bytes, depth first.
    def walk(d, prefix):
        for name in sorted(os.listdir(d), key=lambda s: s.encode()):
            if name.startswith("."):
                continue
            p = os.path.join(d, name)
            rel = f"{prefix}/{name}" if prefix else name
            if os.path.isdir(p):
                walk(p, rel)
            elif name.lower().endswith(".png"):
                paths.append(p)
                labels.append(rel.split("/")[0])
    walk(folder, "")
    rows = np.empty((len(paths), 784), dtype=np.float32)
    for i, p in enumerate(paths):
        v = np.asarray(Image.open(p).convert("L"), dtype=np.float32).reshape(-1) / 255.0
        v -= v.mean()
        n = np.linalg.norm(v)
        rows[i] = v / n if n > 1e-6 else 1.0 / np.sqrt(v.size)
    np.save(out, rows)
    with open(out + ".labels.txt", "w") as f:
        f.write("\n".join(labels) + "\n")
    print(f"wrote {out} ({rows.shape[0]}×{rows.shape[1]}) and {out}.labels.txt", file=sys.stderr)


if __name__ == "__main__":
    main()
