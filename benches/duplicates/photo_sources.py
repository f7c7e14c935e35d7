"""Distinct base photos cut from the images scikit-image and scikit-learn ship.

Shared by make_photo_dups.py and make_quality_set.py. Each source image is cut
into non-overlapping tiles (with a gap between them, so no two tiles share an
edge's content) at varied sizes and aspect ratios; a tile is kept only when it
has some contrast (grey standard deviation >= MIN_STD), since a flat patch of
sky is not a "photo" and its perceptual hash is noise. Every tile is therefore
a distinct photo: no two overlap, and none is a resized copy of another.
"""

import warnings

import numpy as np
from PIL import Image

MIN_STD = 12.0  # grey levels (0-255)
GAP = 8  # pixels between tiles of one source


def load_sources():
    """(name, HxWx3 uint8) for every offline photo the two libraries ship.

    Left out: drawings and synthetic images (binary_blobs, checkerboard,
    colorwheel, horse, logo, shepp_logan_phantom, text), `cat` (the same
    picture as `chelsea`), the right half of stereo_motorcycle (a near-copy of
    the left) and the datasets that need a download.
    """
    import skimage.data as d
    from sklearn.datasets import load_sample_images

    names = [
        "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee",
        "coins", "grass", "gravel", "hubble_deep_field", "immunohistochemistry",
        "microaneurysms", "moon", "page", "retina", "rocket",
    ]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in names:
            out.append((n, to_rgb(getattr(d, n)())))
        out.append(("stereo_motorcycle", to_rgb(d.stereo_motorcycle()[0])))
        sk = load_sample_images()
        for fn, img in zip(sk.filenames, sk.images):
            out.append((fn.rsplit("/", 1)[-1].split(".")[0], to_rgb(img)))
    return out


def to_rgb(a):
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = (255 * (a - a.min()) / max(a.max() - a.min(), 1e-9)).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[:, :, :3])


def grey_std(tile):
    g = tile.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return float(g.std())


def cut_tiles(sources, n_tiles, rng, min_side=72, max_side=300, tries=4000):
    """`n_tiles` non-overlapping tiles spread over the sources in proportion to
    their area (each source capped so textures do not dominate). Returns a list
    of (source_name, (y, x, h, w), HxWx3 uint8)."""
    areas = np.array([s[1].shape[0] * s[1].shape[1] for s in sources], dtype=float)
    share = np.minimum(areas / areas.sum(), 2.0 / len(sources))
    share /= share.sum()
    quota = np.maximum(1, np.round(share * n_tiles)).astype(int)
    # Fix rounding so the quotas add up to n_tiles.
    while quota.sum() > n_tiles:
        quota[np.argmax(quota)] -= 1
    while quota.sum() < n_tiles:
        quota[np.argmin(quota / share)] += 1
    tiles = []
    placed = {name: [] for name, _ in sources}

    def try_place(name, img, side_max, attempts):
        H, W = img.shape[:2]
        for _ in range(attempts):
            side = rng.uniform(min_side, max(min_side + 1, min(side_max, 0.8 * min(H, W))))
            aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
            h = int(min(H - 1, max(32, side / np.sqrt(aspect))))
            w = int(min(W - 1, max(32, side * np.sqrt(aspect))))
            y = int(rng.integers(0, H - h + 1))
            x = int(rng.integers(0, W - w + 1))
            if any(
                y < py + ph + GAP and py < y + h + GAP and x < px + pw + GAP and px < x + w + GAP
                for (py, px, ph, pw) in placed[name]
            ):
                continue
            tile = img[y : y + h, x : x + w]
            if grey_std(tile) < MIN_STD:
                continue
            placed[name].append((y, x, h, w))
            tiles.append((name, (y, x, h, w), tile.copy()))
            return True
        return False

    for (name, img), q in zip(sources, quota):
        for _ in range(q):
            if not try_place(name, img, max_side, tries // 10):
                break
    # Sources that ran out of room (or of contrast) leave a deficit: fill it
    # from the largest sources with smaller tiles.
    by_area = np.argsort(-areas, kind="stable")
    rounds = 0
    while len(tiles) < n_tiles and rounds < 200:
        rounds += 1
        for s in by_area:
            if len(tiles) >= n_tiles:
                break
            name, img = sources[s]
            try_place(name, img, max(min_side + 8, max_side * (0.6 if rounds < 50 else 0.4)), tries // 10)
    return tiles


def save(img_array, path, fmt, quality=None):
    im = Image.fromarray(img_array)
    if fmt == "jpeg":
        im.save(path, "JPEG", quality=quality)
    else:
        im.save(path, "PNG")
