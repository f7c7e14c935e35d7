"""Quality flags: this crate's side by side with cleanvision's, on the same
planted folders, in one run; and the share of clean images flagged.

    flock /tmp/embedscope-bench.lock python benches/duplicates/reference_quality.py \\
        --planted /work/data/quality-s3/photos /work/data/quality-s3/mnist ... \\
        --clean /work/shared/datasets/mnist-10k /work/data/photos-clean \\
        --embedscope target/release/embedscope

Planted folders come from make_quality_set.py (images/ + truth.csv, one
planted issue per image or `clean`). Flags are matched by name; cleanvision's
`light` is our `bright`, its `odd_size` (too small or too large by the IQR
rule) stands against our `tiny`. Both tools see the same files; cleanvision
runs with its defaults and n_jobs=2, ours (`embedscope analyze`, flags read
from points.csv's issues column) with RAYON_NUM_THREADS=2 (its time is the
whole run: decoding, the pixel embedding, kNN, a PCA layout, duplicates).
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

OURS = ["dark", "bright", "blurry", "low_information", "tiny", "odd_aspect_ratio"]
CLEANVISION = {
    "dark": "dark",
    "bright": "light",
    "blurry": "blurry",
    "low_information": "low_information",
    "tiny": "odd_size",
    "odd_aspect_ratio": "odd_aspect_ratio",
}


def ours(folder, embedscope):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, RAYON_NUM_THREADS="2")
        cmd = [embedscope, "analyze", folder, "--out", tmp, "--embedder", "pixels",
               "--reducer", "pca", "--no-cache", "--no-labels", "--quiet"]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        secs = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"embedscope failed: {r.stderr}")
        flags = {}
        for row in csv.DictReader(open(os.path.join(tmp, "points.csv"))):
            flags[row["path"]] = set(filter(None, row["issues"].split(";"))) & set(OURS)
    return flags, secs


def cleanvision(folder):
    from cleanvision import Imagelab

    files = []
    for root, _, names in os.walk(folder):
        files += [os.path.join(root, n) for n in names]
    files.sort()
    t = time.perf_counter()
    lab = Imagelab(filepaths=files, verbose=False)
    lab.find_issues(issue_types={v: {} for v in CLEANVISION.values()}, n_jobs=2, verbose=False)
    secs = time.perf_counter() - t
    issues = lab.issues
    flags = {}
    for path in files:
        rel = os.path.relpath(path, folder)
        row = issues.loc[path]
        flags[rel] = {ours for ours, cv in CLEANVISION.items() if bool(row[f"is_{cv}_issue"])}
    return flags, secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--planted", nargs="+", default=[])
    ap.add_argument("--clean", nargs="*", default=[])
    ap.add_argument("--embedscope", default="target/release/embedscope")
    args = ap.parse_args()

    rows = []
    for folder in args.planted:
        name = "/".join(folder.rstrip("/").split("/")[-2:])
        truth = {r["file"]: r["issue"] for r in csv.DictReader(open(os.path.join(folder, "truth.csv")))}
        images = os.path.join(folder, "images")
        mine, t_mine = ours(images, args.embedscope)
        theirs, t_theirs = cleanvision(images)
        for tool, flags, secs in (("ours", mine, t_mine), ("cleanvision", theirs, t_theirs)):
            cells = []
            for flag in OURS:
                found = {f for f, fl in flags.items() if flag in fl}
                true = {f for f, issue in truth.items() if issue == flag}
                tp = len(found & true)
                p = tp / len(found) if found else float("nan")
                r = tp / len(true) if true else float("nan")
                cells.append(f"{p:.2f} / {r:.2f}")
            clean = [f for f, issue in truth.items() if issue == "clean"]
            share = sum(bool(flags[f]) for f in clean) / len(clean)
            rows.append((name, tool, cells, share, secs))
    if rows:
        print("| folder | tool | " + " | ".join(OURS) + " | clean images flagged | seconds |")
        print("|---|---|" + "---|" * (len(OURS) + 2))
        for name, tool, cells, share, secs in rows:
            print(f"| {name} | {tool} | " + " | ".join(cells) + f" | {share:.1%} | {secs:.1f} |")
        print("\n(precision / recall per flag; a planted image counts for the flag of its planted problem only)")

    if args.clean:
        print("\nShare of clean images flagged, per flag:\n")
        print("| folder | tool | n | " + " | ".join(OURS) + " | any |")
        print("|---|---|---|" + "---|" * (len(OURS) + 1))
        for folder in args.clean:
            name = os.path.basename(folder.rstrip("/"))
            for tool, (flags, secs) in (("ours", ours(folder, args.embedscope)), ("cleanvision", cleanvision(folder))):
                n = len(flags)
                per = [sum(flag in fl for fl in flags.values()) / n for flag in OURS]
                anyf = sum(bool(fl) for fl in flags.values()) / n
                print(f"| {name} | {tool} ({secs:.1f} s) | {n} | " + " | ".join(f"{v:.2%}" for v in per) + f" | {anyf:.2%} |")


if __name__ == "__main__":
    main()
