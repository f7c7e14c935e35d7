"""Folders of clean images with planted quality problems, and their truth.

    python benches/duplicates/make_quality_set.py OUT [--seed 1] [--clean 150] [--per-issue 20]
        [--mnist /work/shared/datasets/mnist-10k] [--mnist-clean 1000]

Writes two independent folders (the flags are relative to the folder, so
photos and digits are scored apart):

  OUT/photos/images/  clean photo tiles (photo_sources.py) + planted copies
  OUT/mnist/images/   clean MNIST digits + planted copies

and a truth.csv in each (file,issue,source), issue one of: clean, dark,
bright, blurry, low_information, tiny, odd_aspect_ratio. Each planted image is
made from its own clean original that is not itself in the folder.

Planted problems (one per image):
  dark             pixels × 0.08-0.22 (an underexposed shot)
  bright           washed out toward white: 255 - (255 - x) × 0.08-0.22
  blurry           Gaussian blur, radius 2-4 px at the image's own size
  low_information  half a solid mid-grey colour with noise (σ 1-2 levels),
                   half the image with its contrast crushed to 3% around mid-grey
  tiny             shrunk to a side of 12-24 px (photos) or 7-10 px (digits)
  odd_aspect_ratio stretched along one axis to an aspect ratio of 3.5-5
"""

import argparse
import csv
import os
import shutil

import numpy as np
from PIL import Image, ImageFilter

from photo_sources import cut_tiles, load_sources

ISSUES = ["dark", "bright", "blurry", "low_information", "tiny", "odd_aspect_ratio"]


def plant(issue, img, rng, digit):
    a = img.astype(np.float64)
    if issue == "dark":
        out = a * rng.uniform(0.08, 0.22)
    elif issue == "bright":
        out = 255 - (255 - a) * rng.uniform(0.08, 0.22)
    elif issue == "blurry":
        pil = Image.fromarray(img)
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(2, 4)))))
    elif issue == "low_information":
        level = rng.uniform(60, 200)
        if rng.random() < 0.5:
            colour = level + rng.uniform(-20, 20, size=(1, 1, a.shape[2]))
            out = colour + rng.normal(0, rng.uniform(1, 2), size=a.shape)
        else:
            out = level + (a - a.mean()) * 0.03
    elif issue == "tiny":
        h, w = img.shape[:2]
        side = rng.integers(7, 11) if digit else rng.integers(12, 25)
        s = side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))
    elif issue == "odd_aspect_ratio":
        h, w = img.shape[:2]
        target = rng.uniform(3.5, 5.0)
        if rng.random() < 0.5:  # wide
            size = (max(w, round(h * target)), h)
        else:  # tall
            size = (w, max(h, round(w * target)))
        return np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
    else:
        raise ValueError(issue)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write(folder, clean, originals, rng, digit):
    images = os.path.join(folder, "images")
    if os.path.exists(images):
        shutil.rmtree(images)
    os.makedirs(images)
    issues = [i for i in ISSUES for _ in range(len(originals) // len(ISSUES))]
    rng.shuffle(issues)
    items = [("clean", src, img) for src, img in clean]
    items += [(issue, src, plant(issue, img, rng, digit)) for issue, (src, img) in zip(issues, originals)]
    order = rng.permutation(len(items))
    rows = []
    for k, idx in enumerate(order):
        issue, src, img = items[idx]
        fn = f"q{k:05d}.png"
        arr = img if not digit else img[:, :, 0]
        Image.fromarray(arr).save(os.path.join(images, fn))
        rows.append((fn, issue, src))
    rows.sort()
    with open(os.path.join(folder, "truth.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "issue", "source"])
        w.writerows(rows)
    counts = {i: sum(r[1] == i for r in rows) for i in ["clean"] + ISSUES}
    print(folder, counts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clean", type=int, default=150)
    ap.add_argument("--per-issue", type=int, default=20)
    ap.add_argument("--mnist", default="/work/shared/datasets/mnist-10k")
    ap.add_argument("--mnist-clean", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n_planted = args.per_issue * len(ISSUES)

    tiles = cut_tiles(load_sources(), args.clean + n_planted, rng)
    tiles = [(f"{name}@{box}", img) for name, box, img in tiles]
    order = rng.permutation(len(tiles))
    clean = [tiles[i] for i in order[: args.clean]]
    originals = [tiles[i] for i in order[args.clean : args.clean + n_planted]]
    write(os.path.join(args.out, "photos"), clean, originals, rng, digit=False)

    digits = sorted(
        os.path.join(d, f)
        for d in (os.path.join(args.mnist, x) for x in sorted(os.listdir(args.mnist)))
        for f in os.listdir(d)
    )
    pick = rng.choice(len(digits), size=args.mnist_clean + n_planted, replace=False)

    def load(p):
        g = np.asarray(Image.open(p).convert("L"))
        return (os.path.relpath(p, args.mnist), np.stack([g] * 3, axis=-1))

    clean = [load(digits[i]) for i in pick[: args.mnist_clean]]
    originals = [load(digits[i]) for i in pick[args.mnist_clean :]]
    write(os.path.join(args.out, "mnist"), clean, originals, rng, digit=True)


if __name__ == "__main__":
    main()
