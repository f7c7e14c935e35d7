#!/usr/bin/env python3
"""Score planted label errors or planted outliers with the usual Python tools
and with embedscope's scores, on the same embeddings, and print one table.

    python3 benches/curation_reference.py DATASET [DATASET ...] [--bin PATH]
        [--scores FILE] [--threads 2] [--seed 0] [--json OUT]

DATASET is a folder written by make_label_errors.py or make_outliers.py
(embeddings.npy, labels.txt, truth.csv). Its truth.csv says which task it is:
columns given,true -> label errors; column kind -> outliers.

embedscope's scores come from running `embedscope analyze DATASET/images`
(--bin, default target/debug/embedscope; pixels, labels from the class
folders; for a set made from a .npy, whose images/ holds only the planted
rows, the embeddings file with the labels beside it) and reading its
points.csv and report.json, or from an output folder
of such a run (--scores; one dataset only).

Label errors (N = number planted):
  cleanlab     cleanlab.filter.find_label_issues with out-of-sample pred_probs
               from 5-fold (stratified, shuffled) KNeighborsClassifier(15,
               metric=cosine); ranked by self-confidence for precision@N, its
               own flagged set (prune_by_noise_rate) for the flagged columns
  knn30        fraction of the 30 nearest neighbours (cosine) with another
               label; ties by row; flagged: more than half disagree
  embedscope   label_score, ties by ratio; flagged: score > 0.5
Outliers (N = number planted):
  knn15, knn50 mean cosine distance to the 15 (50) nearest neighbours (the
               best k of 5..50 at 10k, and at 100k)
  lof          sklearn LocalOutlierFactor (20 neighbours, defaults)
  iforest      sklearn IsolationForest (100 trees, defaults, seeded)
  embedscope   outlier_score
Columns: precision@N (= recall@N), the flagged set's size, precision and
recall (labels), recall in the top 2N (outliers), seconds.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="+")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.path.join(here, "..", "..", "target", "debug", "embedscope"))
    ap.add_argument("--scores", help="an embedscope output folder to read instead of running --bin")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write every number here")
    args = ap.parse_args()
    if args.scores and len(args.datasets) > 1:
        sys.exit("--scores goes with one dataset")
    for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                "RAYON_NUM_THREADS"]:
        os.environ[var] = str(args.threads)

    results = []
    for ds in args.datasets:
        truth = list(csv.DictReader(open(os.path.join(ds, "truth.csv"))))
        task = "labels" if truth and "given" in truth[0] else "outliers"
        ours, ours_info = embedscope_scores(ds, args)
        rows = (label_table if task == "labels" else outlier_table)(ds, truth, ours, ours_info, args)
        results.append({"dataset": ds, "task": task, "planted": len(truth), "rows": rows,
                        "embedscope": ours_info})
        print_table(ds, task, len(truth), rows, ours_info)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def embedscope_scores(ds, args):
    """embedscope's scores for DATASET: `embedscope analyze DATASET/images`
    (labels from the class folders, pixels, the defaults), read back from
    points.csv (rows in the same walk order as embeddings.npy) and
    report.json (the ratio that orders saturated label scores, timings)."""
    out = args.scores or os.path.join(ds, "embedscope-out")
    info = {}
    if not args.scores:
        source, extra = analysis_source(ds)
        t = time.perf_counter()
        p = subprocess.run([args.bin, "analyze", source, "--out", out, "--no-cache", "--quiet"]
                           + extra, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{args.bin} failed:\n{p.stderr}")
        info["wall_s"] = time.perf_counter() - t
    report = json.load(open(os.path.join(out, "report.json")))
    timings = report.get("timings", {})
    info["knn_s"] = timings.get("neighbours", float("nan"))
    info["labels_s"] = info["outliers_s"] = timings.get("issues", float("nan"))
    issues = report.get("issues", {}).get("label_issues") or {}
    info["noise_rate"] = issues.get("estimated_noise_rate")
    ratio = {r["path"]: r.get("ratio") for r in issues.get("ranked", [])}
    ours = []
    with open(os.path.join(out, "points.csv")) as f:
        for r in csv.DictReader(f):
            ours.append({
                "label_score": r["label_issue_score"],
                "suggested": r["suggested_label"],
                "ratio": "" if ratio.get(r["path"]) is None else str(ratio[r["path"]]),
                "outlier_score": r["outlier_score"] or "0",
            })
    return ours, info


def analysis_source(ds):
    """What `embedscope analyze` reads for DATASET: its images/ folder (pixels,
    labels from the class folders) when that holds every row, else (a set made
    from a .npy, whose images/ holds only the planted rows) the embeddings
    themselves, with the labels beside them as a Parquet `label` column, in a
    folder of their own next to DATASET (embedscope never writes where it
    reads)."""
    rows = len(open(os.path.join(ds, "labels.txt")).read().split())
    images = os.path.join(ds, "images")
    files = sum(len(f) for _, _, f in os.walk(images)) if os.path.isdir(images) else 0
    if files == rows:
        return images, ["--embedder", "pixels"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    staged = os.path.abspath(ds.rstrip("/")) + "-source"
    os.makedirs(staged, exist_ok=True)
    npy = os.path.join(staged, "rows.npy")
    if not os.path.exists(npy):
        os.symlink(os.path.abspath(os.path.join(ds, "embeddings.npy")), npy)
    labels = open(os.path.join(ds, "labels.txt")).read().split()
    pq.write_table(pa.table({"label": labels}), os.path.join(staged, "rows.parquet"))
    return npy, []


def load(ds):
    import numpy as np

    X = np.load(os.path.join(ds, "embeddings.npy")).astype(np.float32)
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    names = open(os.path.join(ds, "labels.txt")).read().split("\n")[: len(X)]
    classes = sorted(set(names))
    y = np.array([classes.index(c) for c in names])
    return X, y, classes


def knn(X, k):
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(X)
    dist, idx = nn.kneighbors(X)
    # Drop each row's own entry (not always first when copies tie at 0).
    import numpy as np

    out_i, out_d = np.empty((len(X), k), int), np.empty((len(X), k))
    for r in range(len(X)):
        keep = idx[r] != r
        out_i[r], out_d[r] = idx[r][keep][:k], dist[r][keep][:k]
    return out_i, out_d


def top(score, n_top, tiebreak=None):
    import numpy as np

    keys = (np.arange(len(score)), -np.asarray(score)) if tiebreak is None else \
        (np.arange(len(score)), -np.asarray(tiebreak), -np.asarray(score))
    return np.lexsort(keys)[:n_top]


def label_table(ds, truth, ours, ours_info, args):
    import numpy as np
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    import cleanlab

    X, y, classes = load(ds)
    planted = np.array([int(t["row"]) for t in truth])
    n_p = len(planted)
    is_p = np.zeros(len(y), bool)
    is_p[planted] = True
    rows = []

    def row(name, order, flagged, seconds, extra=None):
        prec = is_p[order[:n_p]].mean()
        r = {"method": name, "precision_at_n": float(prec), "seconds": seconds}
        if flagged is not None:
            flagged = np.asarray(sorted(flagged), dtype=int)
            hit = is_p[flagged].sum() if len(flagged) else 0
            r.update(flagged=int(len(flagged)),
                     flagged_precision=float(hit / max(len(flagged), 1)),
                     flagged_recall=float(hit / n_p))
        r.update(extra or {})
        rows.append(r)

    t = time.perf_counter()
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=args.seed)
    pp = cross_val_predict(KNeighborsClassifier(n_neighbors=15, metric="cosine"), X, y, cv=cv,
                           method="predict_proba")
    ranked = cleanlab.filter.find_label_issues(y, pp, return_indices_ranked_by="self_confidence")
    secs = time.perf_counter() - t
    self_conf = pp[np.arange(len(y)), y]
    # Rank every image (the flagged set first, as cleanlab ranks it, then the rest).
    rest = np.setdiff1d(np.lexsort((np.arange(len(y)), self_conf)), ranked, assume_unique=True)
    order = np.concatenate([ranked, rest])
    row("cleanlab (5-fold kNN-15)", order, ranked, secs)

    t = time.perf_counter()
    idx, _ = knn(X, 30)
    disagree = (y[idx] != y[:, None]).mean(1)
    secs = time.perf_counter() - t
    row("kNN-30 disagreement", top(disagree, len(y)), np.where(disagree > 0.5)[0], secs)

    score = np.array([float(o["label_score"]) if o["label_score"] else -1.0 for o in ours])
    ratio = np.array([float(o["ratio"]) if o["ratio"] else 0.0 for o in ours])
    order = top(score, len(y), tiebreak=ratio)
    true_of = {int(t["row"]): t["true"] for t in truth}
    sugg = [ours[i]["suggested"] == true_of[i] for i in planted]
    row("embedscope", order, np.where(score > 0.5)[0],
        ours_info.get("labels_s", float("nan")) + ours_info.get("knn_s", float("nan")),
        {"suggested_right": float(np.mean(sugg)), "noise_rate": ours_info.get("noise_rate")})
    return rows


def outlier_table(ds, truth, ours, ours_info, args):
    import numpy as np
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    X, _, _ = load(ds)
    planted = np.array([int(t["row"]) for t in truth])
    kinds = np.array([t["kind"].split("-")[0] for t in truth])
    n_p = len(planted)
    is_p = np.zeros(len(X), bool)
    is_p[planted] = True
    rows = []

    def row(name, score, seconds):
        order = top(score, 2 * n_p)
        r = {"method": name, "precision_at_n": float(is_p[order[:n_p]].mean()),
             "recall_at_2n": float(is_p[order].mean() * 2), "seconds": seconds}
        found = set(order[:n_p].tolist())
        for k in sorted(set(kinds)):
            sel = planted[kinds == k]
            r[f"found_{k}"] = f"{sum(int(i) in found for i in sel)}/{len(sel)}"
        rows.append(r)

    for k in (15, 50):
        t = time.perf_counter()
        _, dist = knn(X, k)
        row(f"kNN-{k} mean cosine distance", dist.mean(1), time.perf_counter() - t)
    t = time.perf_counter()
    lof = LocalOutlierFactor().fit(X)
    row("LocalOutlierFactor", -lof.negative_outlier_factor_, time.perf_counter() - t)
    t = time.perf_counter()
    iso = IsolationForest(random_state=args.seed).fit(X)
    row("IsolationForest", -iso.score_samples(X), time.perf_counter() - t)
    score = np.array([float(o["outlier_score"]) for o in ours])
    row("embedscope", score, ours_info.get("outliers_s", float("nan")) + ours_info.get("knn_s", float("nan")))
    return rows


def print_table(ds, task, n_p, rows, info):
    print(f"\n### {os.path.basename(os.path.normpath(ds))}: {n_p} planted "
          f"({'label errors' if task == 'labels' else 'outliers'}), embedscope: the CLI's defaults")
    cols = [c for c in rows[0] if c not in ("method",)]
    for r in rows[1:]:
        cols += [c for c in r if c not in cols and c != "method"]
    print("| method | " + " | ".join(c.replace("_", " ") for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        print(f"| {r['method']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
