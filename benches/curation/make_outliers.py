#!/usr/bin/env python3
"""Plant non-members (outliers) in a labelled folder of 28x28 digits, seeded:
copy it and put COUNT images that are not digits into the digit folders, and
write the truth.

    python3 benches/make_outliers.py SRC OUT [--count 50] [--seed 1]
        [--kinds letter,photo,noise,flat,pattern]

Kinds (all 28x28 grey, saved as PNG, spread evenly over the kinds asked for):
  letter   a rendered letter (DejaVu / matplotlib fonts, white on black like
           MNIST), letters that look like digits (O, I, l, S, Z, B, g, q ...) left out
  photo    a random square crop of a photo shipped with scikit-image
           (astronaut, coffee, chelsea, rocket, camera, coins, ...) or
           scikit-learn (china, flower), scaled to 28x28
  noise    Gaussian, uniform or sparse salt-and-pepper noise
  flat     a constant grey level, or a smooth ramp
  pattern  stripes, a checkerboard, rings or a dot grid
  digit    a digit of SRC made strange: turned on its side (90 degrees),
           shrunk into a corner, inverted (black on white) or smeared into
           a blob; not in the default mix: a harder second set

SRC is a folder SRC/<label>/<image> or an embeddings file from
make_jittered.py --embeddings (SRC.npy + SRC.npy.labels.txt, with the folder
SRC without .npy holding the images, needed only for kind `digit`); in the second
form the outliers' embeddings are appended after SRC's rows instead of
re-reading every image.

OUT gets images/ (the copy, or only the outliers in the .npy form),
embeddings.npy (embedscope's pixel embeddings: /255, mean-centred per row,
L2-normalised), labels.txt (the folder of each row) and truth.csv
(row,path,kind), kind
as kind-variant, e.g. pattern-checkerboard.
"""
import argparse
import glob
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/, for make_jittered
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LETTERS = "ACEFHKMNPRTUVWXYacdefhkmnrtuvwxy"
KINDS = ["letter", "photo", "noise", "flat", "pattern", "digit"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default="letter,photo,noise,flat,pattern")
    args = ap.parse_args()

    import numpy as np
    from PIL import Image

    from make_jittered import write_embeddings
    from make_label_errors import walk

    kinds = args.kinds.split(",")
    for k in kinds:
        if k not in KINDS:
            sys.exit(f"unknown kind {k!r}; choose from {','.join(KINDS)}")
    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f"{args.out} exists and is not empty; give a new folder")
    rng = np.random.default_rng(args.seed)
    from_npy = args.source.endswith(".npy")
    image_root = args.source[:-4] if from_npy else args.source
    classes = sorted(d for d in os.listdir(image_root)
                     if os.path.isdir(os.path.join(image_root, d)))
    images = os.path.join(args.out, "images")
    if not from_npy:
        shutil.copytree(args.source, images)
    digit_paths = walk(image_root) if "digit" in kinds else []

    plan = [kinds[i % len(kinds)] for i in range(args.count)]
    rng.shuffle(plan)
    makers = Makers(rng, image_root, digit_paths)
    planted = []  # (relative path, kind)
    for idx, kind in enumerate(plan):
        pixels, variant = getattr(makers, kind)()
        label = classes[rng.integers(len(classes))]
        rel = f"{label}/{label}_o{idx:04d}.png"
        os.makedirs(os.path.join(images, label), exist_ok=True)
        Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L").save(
            os.path.join(images, rel))
        planted.append((rel, f"{kind}-{variant}"))

    emb = os.path.join(args.out, "embeddings.npy")
    write_embeddings(images, emb)
    labels_file = os.path.join(args.out, "labels.txt")
    os.replace(emb + ".labels.txt", labels_file)
    paths = walk(images)
    row_of = {p: i for i, p in enumerate(paths)}
    if from_npy:
        # images/ holds only the outliers: append them to SRC's rows.
        base = np.load(args.source)
        base_labels = open(args.source + ".labels.txt").read().split()
        extra = np.load(emb)
        extra_labels = open(labels_file).read().split()
        np.save(emb, np.concatenate([base, extra]).astype(np.float32))
        with open(labels_file, "w") as f:
            f.write("\n".join(base_labels + extra_labels) + "\n")
        row_of = {p: len(base_labels) + i for p, i in row_of.items()}
    with open(os.path.join(args.out, "truth.csv"), "w") as f:
        f.write("row,path,kind\n")
        for rel, kind in sorted(planted, key=lambda t: row_of[t[0]]):
            f.write(f"{row_of[rel]},{rel},{kind}\n")
    counts = {k: plan.count(k) for k in kinds}  # by kind; truth.csv has the variants
    print(f"planted {args.count} outliers {counts} (seed {args.seed}) -> {args.out}", file=sys.stderr)


class Makers:
    """One method per kind; each returns (28x28 float array in 0..255, variant name)."""

    def __init__(self, rng, image_root, digit_paths):
        self.rng = rng
        self.image_root = image_root
        self.digit_paths = digit_paths
        self.fonts = font_files()
        self.photos = photos()

    def letter(self):
        from PIL import Image, ImageDraw, ImageFont
        import numpy as np

        rng = self.rng
        ch = LETTERS[rng.integers(len(LETTERS))]
        font = ImageFont.truetype(self.fonts[rng.integers(len(self.fonts))], int(rng.integers(16, 25)))
        canvas = Image.new("L", (28, 28), 0)
        draw = ImageDraw.Draw(canvas)
        l, t, r, b = draw.textbbox((0, 0), ch, font=font)
        x = (28 - (r - l)) / 2 - l + rng.uniform(-2, 2)
        y = (28 - (b - t)) / 2 - t + rng.uniform(-2, 2)
        draw.text((x, y), ch, fill=int(rng.integers(200, 256)), font=font)
        return np.asarray(canvas, dtype=np.float32), ch

    def photo(self):
        from PIL import Image
        import numpy as np

        rng = self.rng
        which = rng.integers(len(self.photos))
        name, img = self.photos[which]
        h, w = img.shape
        side = int(rng.integers(24, min(h, w, 200) + 1))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = Image.fromarray(img[y:y + side, x:x + side])
        return np.asarray(crop.resize((28, 28), Image.LANCZOS), dtype=np.float32), name

    def noise(self):
        import numpy as np

        rng = self.rng
        v = rng.integers(3)
        if v == 0:
            return rng.normal(rng.uniform(60, 190), rng.uniform(20, 70), (28, 28)), "gaussian"
        if v == 1:
            return rng.uniform(0, 255, (28, 28)), "uniform"
        return (rng.random((28, 28)) < rng.uniform(0.05, 0.25)) * 255.0, "saltpepper"

    def flat(self):
        import numpy as np

        rng = self.rng
        if rng.random() < 0.5:
            return np.full((28, 28), rng.uniform(0, 255)), "constant"
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:28, 0:28] / 27.0
        ramp = np.cos(a) * xx + np.sin(a) * yy
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-9)
        lo, hi = sorted(rng.uniform(0, 255, 2))
        return lo + (hi - lo) * ramp, "ramp"

    def pattern(self):
        import numpy as np

        rng = self.rng
        yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
        v = rng.integers(4)
        if v == 0:  # stripes
            a = rng.uniform(0, np.pi)
            period = rng.uniform(3, 10)
            s = np.cos(a) * xx + np.sin(a) * yy
            return (np.sin(2 * np.pi * s / period) > 0) * 255.0, "stripes"
        if v == 1:  # checkerboard
            cell = int(rng.integers(2, 8))
            return (((xx // cell) + (yy // cell)) % 2) * 255.0, "checkerboard"
        if v == 2:  # rings
            cy, cx = rng.uniform(8, 20, 2)
            r = np.hypot(xx - cx, yy - cy)
            return (np.sin(2 * np.pi * r / rng.uniform(3, 8)) > 0) * 255.0, "rings"
        step = int(rng.integers(4, 8))  # dot grid
        return (((xx % step) < 2) & ((yy % step) < 2)) * 255.0, "dots"

    def digit(self):
        from PIL import Image, ImageFilter
        import numpy as np

        rng = self.rng
        rel = self.digit_paths[rng.integers(len(self.digit_paths))]
        img = Image.open(os.path.join(self.image_root, rel)).convert("L")
        v = rng.integers(4)
        if v == 0:
            return np.asarray(img.rotate(float(rng.choice([90, 270]))), dtype=np.float32), "sideways"
        if v == 1:
            small = img.resize((12, 12), Image.LANCZOS)
            canvas = Image.new("L", (28, 28), 0)
            canvas.paste(small, (int(rng.choice([0, 16])), int(rng.choice([0, 16]))))
            return np.asarray(canvas, dtype=np.float32), "corner"
        if v == 2:
            return 255.0 - np.asarray(img, dtype=np.float32), "inverted"
        thick = img.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.GaussianBlur(2))
        return np.asarray(thick, dtype=np.float32), "blob"


def font_files():
    pats = ["/usr/share/fonts/truetype/dejavu/*.ttf"]
    try:
        import matplotlib
        pats.append(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data/fonts/ttf/DejaVu*.ttf"))
    except ImportError:
        pass
    files = sorted({f for p in pats for f in glob.glob(p)})
    if not files:
        sys.exit("no TrueType font found (install fonts-dejavu-core or matplotlib)")
    return files


def photos():
    import numpy as np
    from skimage import data
    from skimage.color import rgb2gray
    from sklearn.datasets import load_sample_images

    out = []
    for name in ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon",
                 "page", "text", "horse", "clock", "immunohistochemistry", "grass",
                 "gravel", "brick", "hubble_deep_field", "retina", "cell"]:
        img = getattr(data, name)()
        if img.ndim == 3:
            img = rgb2gray(img[..., :3]) * 255.0
        img = np.asarray(img, dtype=np.float64)
        if img.max() <= 1.0:
            img = img * 255.0
        out.append((name, np.clip(img, 0, 255).astype(np.uint8)))
    for name, img in zip(["china", "flower"], load_sample_images().images):
        out.append((name, (rgb2gray(img) * 255.0).astype(np.uint8)))
    return out


if __name__ == "__main__":
    main()
