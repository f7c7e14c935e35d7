#!/usr/bin/env python3
"""Reference benchmark for `embedscope bench`.

    python3 benches/reference.py BENCH_DIR [--skip-tsne] [--skip-umap] [--seed 42] [--threads 2]

Reads BENCH_DIR/embeddings.npy (float32 N x D) and BENCH_DIR/labels.txt
(N lines), runs umap-learn, scikit-learn t-SNE and scikit-learn PCA (3 output
dims) on exactly that data, scores every layout -- the references' and
embedscope's own BENCH_DIR/layout_*.npy -- with the same two metrics, prints a
markdown table next to embedscope's timings and Rust-computed metrics from
BENCH_DIR/bench.json, and writes BENCH_DIR/reference.json.

Metrics (the Rust side implements the same definitions; see knn_accuracy):
  trustworthiness  sklearn.manifold.trustworthiness(X, Y, n_neighbors=10),
                   euclidean in both spaces, X = embeddings.
  knn_accuracy     leave-one-out 10-NN majority vote in the layout.

Only stdlib is imported at module level so the thread environment variables
can be set from --threads before numpy / numba are loaded.  Needs no network.
"""
import argparse
import json
import os
import platform
import sys
import time

K_NN = 10          # neighbours for both metrics
RUST_PY_TOL = 1e-3  # |rust - python| above this is flagged in the table

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def set_thread_env(threads):
    """Must run before numpy/numba are imported."""
    ncpu = os.cpu_count() or 1
    for var in THREAD_VARS:
        n = threads
        if var == "NUMBA_NUM_THREADS":
            n = min(threads, ncpu)  # numba refuses to import with more than the CPU count
        os.environ[var] = str(n)


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------
def knn_accuracy(Y, label_codes, k=K_NN):
    """Leave-one-out k-NN classification accuracy in layout Y.

    For each point i take its k nearest OTHER points (euclidean distance in Y,
    the point itself excluded by index, so an exact duplicate of i still counts
    as a neighbour), count their labels, and predict the label with the most
    votes.  A tie between classes is broken in favour of the tied class whose
    nearest member (among those k neighbours) is closest to i.  Accuracy =
    fraction of points whose prediction equals its own label.

    label_codes: int array (N,) of class indices.
    """
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    Y = np.asarray(Y, dtype=np.float64)
    codes = np.asarray(label_codes, dtype=np.int64)
    n = Y.shape[0]
    if n < 2:
        return float("nan")
    k = min(k, n - 1)
    # kneighbors() with no query excludes each sample itself; rows are sorted
    # by increasing distance.  Exact algorithm (brute force) in float64.
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean")
    nn.fit(Y)
    _, idx = nn.kneighbors()
    neigh = codes[idx]                                   # (n, k) labels, nearest first
    n_classes = int(codes.max()) + 1
    counts = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), neigh.ravel()), 1)
    best = counts.max(axis=1, keepdims=True)
    tied = counts == best                                # (n, C) classes with max votes
    # first (= nearest) neighbour whose class is among the tied ones
    neigh_is_tied = tied[np.arange(n)[:, None], neigh]   # (n, k)
    first = neigh_is_tied.argmax(axis=1)
    pred = neigh[np.arange(n), first]
    return float((pred == codes).mean())


def trust(X, Y, k=K_NN):
    from sklearn.manifold import trustworthiness
    return float(trustworthiness(X, Y, n_neighbors=k, metric="euclidean"))


# --------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------
def make_umap(threads, force_approx=False):
    import umap
    return umap.UMAP(n_components=3, n_neighbors=15, min_dist=0.1, metric="euclidean",
                     random_state=None, n_jobs=threads,
                     force_approximation_algorithm=force_approx)


def warm_up_umap(X, threads, log):
    """Fit once on ~300 rows so numba's JIT compilation is not timed.

    umap uses exact neighbours below 4096 rows and pynndescent above; warm up
    the same path the real fit will take.
    """
    import numpy as np
    m = min(300, X.shape[0])
    warm = X[np.random.default_rng(0).choice(X.shape[0], m, replace=False)]
    log(f"umap: warming up numba JIT on {m} rows (not timed)...")
    t = time.perf_counter()
    make_umap(threads, force_approx=X.shape[0] >= 4096).fit_transform(warm)
    log(f"umap: warm-up took {time.perf_counter() - t:.1f} s")


def run_umap(X, threads):
    t = time.perf_counter()
    Y = make_umap(threads).fit_transform(X)
    return Y, time.perf_counter() - t


def run_tsne(X, threads, seed):
    from sklearn.manifold import TSNE
    t = time.perf_counter()
    Y = TSNE(n_components=3, perplexity=30, init="pca", method="barnes_hut",
             n_jobs=threads, random_state=seed).fit_transform(X)
    return Y, time.perf_counter() - t


def run_pca(X, seed):
    from sklearn.decomposition import PCA
    t = time.perf_counter()
    Y = PCA(n_components=3, random_state=seed).fit_transform(X)
    return Y, time.perf_counter() - t


REF_TOOLS = {"umap": "umap-learn", "tsne": "sklearn TSNE", "pca": "sklearn PCA"}
REF_PARAMS = {
    "umap": "UMAP(n_components=3, n_neighbors=15, min_dist=0.1, metric='euclidean', random_state=None, n_jobs=threads)",
    "tsne": "TSNE(n_components=3, perplexity=30, init='pca', method='barnes_hut', n_jobs=threads, random_state=seed)",
    "pca": "PCA(n_components=3, random_state=seed)",
}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def versions():
    import numpy
    import sklearn
    v = {"python": platform.python_version(), "numpy": numpy.__version__,
         "scikit-learn": sklearn.__version__}
    for mod, name in (("umap", "umap-learn"), ("numba", "numba"), ("pynndescent", "pynndescent"),
                      ("scipy", "scipy")):
        try:
            v[name] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - report whatever is there
            v[name] = None
    return v


def fmt(x, spec=".4f"):
    if x is None:
        return "—"
    if isinstance(x, float) and x != x:
        return "nan"
    return format(x, spec)


def fmt_secs(x):
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def load_bench_json(path, notes):
    if not os.path.exists(path):
        notes.append("bench.json missing: no embedscope timings or Rust metrics")
        return {}, None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as e:
        notes.append(f"bench.json unreadable ({e}): ignored")
        return {}, None
    res = {}
    for r in data.get("results", []) or []:
        if isinstance(r, dict) and "method" in r:
            res[str(r["method"]).lower()] = r
    return res, data


def num(d, key):
    v = d.get(key) if d else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def main(argv=None):
    ap = argparse.ArgumentParser(description="Reference benchmark for `embedscope bench`.")
    ap.add_argument("bench_dir")
    ap.add_argument("--skip-tsne", action="store_true", help="skip sklearn t-SNE (~3-4 min on 10k rows, 2 cores)")
    ap.add_argument("--skip-umap", action="store_true", help="skip umap-learn")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1,
                    help="time umap/PCA this many times and report the fastest (t-SNE always once)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    set_thread_env(args.threads)

    import warnings
    import numpy as np
    warnings.filterwarnings("ignore", category=FutureWarning)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    notes = []
    bd = args.bench_dir
    emb_path = os.path.join(bd, "embeddings.npy")
    lab_path = os.path.join(bd, "labels.txt")
    for p in (emb_path, lab_path):
        if not os.path.exists(p):
            sys.exit(f"error: {p} not found")
    X = np.load(emb_path, allow_pickle=False)
    if X.ndim != 2:
        sys.exit(f"error: embeddings.npy has shape {X.shape}, expected N x D")
    X = np.ascontiguousarray(X, dtype=np.float32)
    with open(lab_path, encoding="utf-8") as fh:
        labels = fh.read().splitlines()
    if len(labels) != X.shape[0]:
        sys.exit(f"error: labels.txt has {len(labels)} lines but embeddings.npy has {X.shape[0]} rows")
    classes, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    n, dim = X.shape
    log(f"loaded {n} x {dim} embeddings, {len(classes)} classes")
    if not np.isfinite(X).all():
        sys.exit("error: embeddings.npy contains NaN/inf")

    bench, bench_raw = load_bench_json(os.path.join(bd, "bench.json"), notes)
    if bench_raw and (bench_raw.get("n") not in (None, n) or bench_raw.get("dim") not in (None, dim)):
        notes.append(f"bench.json says n={bench_raw.get('n')} dim={bench_raw.get('dim')} "
                     f"but embeddings.npy is {n} x {dim}")

    def score(Y):
        t = time.perf_counter()
        acc = knn_accuracy(Y, codes)
        tw = trust(X, Y)
        return acc, tw, time.perf_counter() - t

    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    # ---- references ------------------------------------------------------
    refs = {}
    plan = [("umap", not args.skip_umap), ("tsne", not args.skip_tsne), ("pca", True)]
    for method, enabled in plan:
        if not enabled:
            notes.append(f"reference {method}: skipped by flag")
            continue
        log(f"running reference {method} ({REF_TOOLS[method]})...")
        try:
            all_secs, cpu_secs = [], []
            if method == "umap":
                warm_up_umap(X, args.threads, log)
            elif method == "pca":
                run_pca(X[: min(300, n)], args.seed)  # untimed: first BLAS/LAPACK call overhead
            for rep in range(1 if method == "tsne" else args.repeats):
                c0 = time.process_time()
                if method == "umap":
                    Y, secs = run_umap(X, args.threads)
                elif method == "tsne":
                    Y, secs = run_tsne(X, args.threads, args.seed)
                else:
                    Y, secs = run_pca(X, args.seed)
                all_secs.append(secs)
                cpu_secs.append(time.process_time() - c0)
            secs = min(all_secs)
        except Exception as e:  # noqa: BLE001 - keep going, report it
            notes.append(f"reference {method} failed: {type(e).__name__}: {e}")
            log(notes[-1])
            continue
        Y = np.asarray(Y, dtype=np.float32)
        np.save(os.path.join(bd, f"reference_layout_{method}.npy"), Y)
        acc, tw, st = score(Y)
        log(f"  {method}: {secs:.2f} s, knn_acc {acc:.4f}, trustworthiness {tw:.4f} (scored in {st:.1f} s)")
        refs[method] = {"method": method, "tool": REF_TOOLS[method], "params": REF_PARAMS[method],
                        "seconds": secs, "all_seconds": all_secs,
                        "process_cpu_seconds": cpu_secs,
                        "knn_accuracy": acc, "trustworthiness": tw}

    # ---- embedscope layouts ----------------------------------------------
    ours = {}
    layout_methods = sorted({f[len("layout_"):-len(".npy")] for f in os.listdir(bd)
                             if f.startswith("layout_") and f.endswith(".npy")})
    for m in ("umap", "tsne", "pca"):
        if m not in layout_methods:
            notes.append(f"embedscope layout_{m}.npy missing: not scored")
    for m in sorted(set(layout_methods) | set(bench)):
        b = bench.get(m, {})
        entry = {"method": m, "seconds": num(b, "seconds"),
                 "knn_accuracy_rust": num(b, "knn_accuracy"),
                 "trustworthiness_rust": num(b, "trustworthiness"),
                 "knn_accuracy_python": None, "trustworthiness_python": None,
                 "layout_file": None}
        if m in layout_methods:
            path = os.path.join(bd, f"layout_{m}.npy")
            try:
                Y = np.load(path, allow_pickle=False)
                if Y.ndim != 2 or Y.shape[0] != n:
                    raise ValueError(f"shape {Y.shape}, expected ({n}, 3)")
                if Y.shape[1] != 3:
                    notes.append(f"layout_{m}.npy has {Y.shape[1]} columns, not 3 (scored anyway)")
                if not np.isfinite(Y).all():
                    raise ValueError("contains NaN/inf")
                acc, tw, _ = score(Y.astype(np.float32))
                entry.update(knn_accuracy_python=acc, trustworthiness_python=tw,
                             layout_file=os.path.basename(path))
            except Exception as e:  # noqa: BLE001
                notes.append(f"layout_{m}.npy not scored: {e}")
        for metric in ("knn_accuracy", "trustworthiness"):
            r, p = entry[f"{metric}_rust"], entry[f"{metric}_python"]
            entry[f"{metric}_delta"] = (r - p) if (r is not None and p is not None) else None
            if entry[f"{metric}_delta"] is not None and abs(entry[f"{metric}_delta"]) > RUST_PY_TOL:
                notes.append(f"{m}: Rust {metric} {r:.4f} vs Python {p:.4f} "
                             f"(differ by {r - p:+.4f} > {RUST_PY_TOL})")
        ref = refs.get(m)
        entry["speedup_vs_reference"] = (ref["seconds"] / entry["seconds"]
                                         if ref and entry["seconds"] else None)
        ours[m] = entry

    # ---- table -----------------------------------------------------------
    print(f"\n## embedscope vs reference — N={n}, D={dim}, threads={args.threads}, "
          f"cpus={os.cpu_count()}, seed={args.seed}\n")
    print("10-NN acc / trustworthiness (k=10) are recomputed in Python for every layout; "
          "the (Rust) columns are embedscope's own figures from bench.json.\n")
    print("| method | tool | seconds | speed-up vs reference | 10-NN acc | 10-NN acc (Rust) "
          "| trustworthiness | trustworthiness (Rust) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for m in sorted(set(refs) | set(ours), key=lambda s: (["umap", "tsne", "pca"] + [s]).index(s)):
        if m in refs:
            r = refs[m]
            print(f"| {m} | {r['tool']} | {fmt_secs(r['seconds'])} | 1.00× | {fmt(r['knn_accuracy'])} | — "
                  f"| {fmt(r['trustworthiness'])} | — |")
        if m in ours:
            o = ours[m]
            sp = f"{o['speedup_vs_reference']:.2f}×" if o["speedup_vs_reference"] else "—"

            def flag(metric):
                d = o[f"{metric}_delta"]
                return " ⚠" if d is not None and abs(d) > RUST_PY_TOL else ""
            print(f"| {m} | embedscope | {fmt_secs(o['seconds'])} | {sp} "
                  f"| {fmt(o['knn_accuracy_python'])} | {fmt(o['knn_accuracy_rust'])}{flag('knn_accuracy')} "
                  f"| {fmt(o['trustworthiness_python'])} | {fmt(o['trustworthiness_rust'])}{flag('trustworthiness')} |")
    if notes:
        print("\nNotes:")
        for note in notes:
            print(f"- {note}")

    out = {
        "n": n, "dim": dim, "n_classes": int(len(classes)),
        "threads": args.threads, "seed": args.seed,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "repeats": args.repeats,
        "thread_env": {v: os.environ.get(v) for v in THREAD_VARS},
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "versions": versions(),
        "metrics": {"knn_accuracy": f"leave-one-out {K_NN}-NN majority vote in the layout, "
                                    "ties -> tied class with the closest member",
                    "trustworthiness": f"sklearn.manifold.trustworthiness(X, Y, n_neighbors={K_NN})"},
        "references": list(refs.values()),
        "embedscope": list(ours.values()),
        "notes": notes,
    }
    out_path = os.path.join(bd, "reference.json")
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
