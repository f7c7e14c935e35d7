"""A folder of distinct photos with planted near-duplicate copies, and its truth.

    python benches/duplicates/make_photo_dups.py OUT [--seed 1] [--bases 150] [--copies 70]
        [--min-side 72] [--max-side 300]

Bases: non-overlapping tiles of the photos scikit-image and scikit-learn ship
(see photo_sources.py), 70% saved as PNG, 30% as JPEG q90. Copies, planted on
randomly chosen bases (some bases get 2 or 3): half size, JPEG q40, brightened
(+30..+50), a 4% crop, an 8% crop, a byte copy, and combinations. A crop of p%
removes p% of the width and p% of the height, split at random between the two
sides. Files get shuffled neutral names, so neither name nor order leaks the
truth.

Writes OUT/images/*.{png,jpg} and OUT/truth.csv (file,base,variant,source);
the truth pairs are every pair of files with the same base.
"""

import argparse
import csv
import io
import os
import shutil

import numpy as np
from PIL import Image

from photo_sources import cut_tiles, load_sources

# Variant mix for the default 70 copies (scaled for other counts).
MIX = [
    ("half", 12), ("jpeg40", 12), ("bright", 12), ("crop4", 12), ("bytes", 10),
    ("crop8", 4), ("half+jpeg40", 3), ("crop4+bright", 3), ("crop4+jpeg40", 2),
]


def apply(variant, img, rng):
    """Returns (pixels, format, jpeg quality) for one step of a variant."""
    if variant == "half":
        h, w = img.shape[:2]
        return np.asarray(Image.fromarray(img).resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS))
    if variant == "bright":
        return np.clip(img.astype(int) + int(rng.integers(30, 51)), 0, 255).astype(np.uint8)
    if variant in ("crop4", "crop8"):
        p = 0.04 if variant == "crop4" else 0.08
        h, w = img.shape[:2]
        dh, dw = int(round(p * h)), int(round(p * w))
        top, left = int(rng.integers(0, dh + 1)), int(rng.integers(0, dw + 1))
        return img[top : h - (dh - top), left : w - (dw - left)].copy()
    if variant == "jpeg40":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=40)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    raise ValueError(variant)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bases", type=int, default=150)
    ap.add_argument("--copies", type=int, default=70)
    ap.add_argument("--min-side", type=int, default=72, help="smallest tile side (before aspect)")
    ap.add_argument("--max-side", type=int, default=300, help="largest tile side (before aspect)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    tiles = cut_tiles(load_sources(), args.bases, rng, min_side=args.min_side, max_side=args.max_side)
    n_bases = len(tiles)
    images = os.path.join(args.out, "images")
    if os.path.exists(images):
        shutil.rmtree(images)
    os.makedirs(images)

    # Copies per base: ~70% of copied bases get one, 20% two, 10% three.
    variants = []
    total = sum(c for _, c in MIX)
    for name, c in MIX:
        variants += [name] * max(1, round(c * args.copies / total))
    variants = variants[: args.copies]
    rng.shuffle(variants)
    copied = []
    left = len(variants)
    order = rng.permutation(n_bases)
    for b in order:
        if left == 0:
            break
        k = min(left, int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1])))
        copied.append((int(b), k))
        left -= k

    names = rng.permutation(n_bases + len(variants))
    rows = []
    next_name = iter(names)
    base_files = {}
    for b, (src, box, tile) in enumerate(tiles):
        fmt = "jpeg" if rng.random() < 0.3 else "png"
        fn = f"p{next(next_name):04d}." + ("jpg" if fmt == "jpeg" else "png")
        path = os.path.join(images, fn)
        if fmt == "jpeg":
            Image.fromarray(tile).save(path, "JPEG", quality=90)
        else:
            Image.fromarray(tile).save(path, "PNG")
        # Copies start from the pixels a reader of the base file would see.
        base_files[b] = (path, np.asarray(Image.open(path).convert("RGB")))
        rows.append((fn, b, "base", f"{src}@{box}"))

    vi = iter(variants)
    for b, k in copied:
        for _ in range(k):
            v = next(vi)
            base_path, pixels = base_files[b]
            if v == "bytes":
                fn = f"p{next(next_name):04d}" + os.path.splitext(base_path)[1]
                shutil.copyfile(base_path, os.path.join(images, fn))
            else:
                steps = v.split("+")
                # A final JPEG q40 step is the file's own encoding, not a round trip.
                last_is_jpeg = steps[-1] == "jpeg40"
                for s in steps[:-1] if last_is_jpeg else steps:
                    pixels = apply(s, pixels, rng)
                if last_is_jpeg:
                    fn = f"p{next(next_name):04d}.jpg"
                    Image.fromarray(pixels).save(os.path.join(images, fn), "JPEG", quality=40)
                else:
                    fn = f"p{next(next_name):04d}.png"
                    Image.fromarray(pixels).save(os.path.join(images, fn), "PNG")
            rows.append((fn, b, v, rows[b][3]))

    rows.sort()
    with open(os.path.join(args.out, "truth.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "base", "variant", "source"])
        w.writerows(rows)
    pairs = sum(k * (k + 1) // 2 for _, k in copied)
    print(f"{args.out}: {n_bases} bases, {len(variants)} copies, {n_bases + len(variants)} files, {pairs} true pairs")


if __name__ == "__main__":
    main()
