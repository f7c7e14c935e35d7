#!/usr/bin/env python3
"""Seeded Gaussian-mixture embeddings for benchmarking at scale (default:
1,000,000 unit rows of width 64 from 50 components).

    python3 benches/make_gaussian_mixture.py /work/data/gmm-1m-64.npy \
        [--n 1000000] [--dim 64] [--components 50] [--seed 7] [--parquet /work/data/gmm-1m-64.parquet]

Each component has a random unit centre, a weight (Dirichlet, so sizes vary
about tenfold), an overall spread (noise norm from 0.15 to 1.5 times the
centre's, log-uniform: tight clusters to broad, overlapping ones) and an
anisotropic shape (per-axis scales from 0.3 to 3, log-uniform, in a random
rotation). Rows are centre + noise, L2-normalised, in random order.

Writes float32 n x dim .npy (streamed through a memmap, so memory stays at one
chunk) and, if pyarrow is importable (or --parquet is given), a Parquet file
with `id` (string "gmm-0000000"), `component` (int32) and `embedding`
(FixedSizeList<float32, dim>), plus a <npy>.labels.txt of components. Same
seed, same bytes.
"""
import argparse
import os
import sys

CHUNK = 100_000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("npy")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--components", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--parquet", help="default: the .npy path with .parquet, when pyarrow exists")
    args = ap.parse_args()

    import numpy as np

    n, dim, c = args.n, args.dim, args.components
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((c, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.dirichlet(np.full(c, 2.0))
    # Noise norm relative to the (unit) centre, then per-axis shape and rotation.
    spread = np.exp(rng.uniform(np.log(0.15), np.log(1.5), c))
    shapes = np.exp(rng.uniform(np.log(0.3), np.log(3.0), (c, dim)))
    shapes /= np.sqrt((shapes ** 2).mean(axis=1, keepdims=True))
    rotations = [np.linalg.qr(rng.standard_normal((dim, dim)))[0] for _ in range(c)]
    # Component of every row, shuffled so that files are not sorted by cluster.
    component = rng.choice(c, size=n, p=weights).astype(np.int32)

    x = np.lib.format.open_memmap(args.npy, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        comp = component[start:end]
        z = rng.standard_normal((end - start, dim)) / np.sqrt(dim)
        rows = np.empty((end - start, dim))
        for j in np.unique(comp):
            sel = comp == j
            noise = (z[sel] * shapes[j]) @ rotations[j].T
            rows[sel] = centres[j] + spread[j] * noise
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        x[start:end] = rows.astype(np.float32)
    x.flush()
    with open(args.npy + ".labels.txt", "w") as f:
        f.write("\n".join(str(int(v)) for v in component) + "\n")
    print(f"wrote {n}x{dim} float32 to {args.npy}", file=sys.stderr)

    parquet = args.parquet or os.path.splitext(args.npy)[0] + ".parquet"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        if args.parquet:
            raise
        print("pyarrow not importable: no Parquet written", file=sys.stderr)
        return
    schema = pa.schema([
        ("id", pa.string()),
        ("component", pa.int32()),
        ("embedding", pa.list_(pa.float32(), dim)),
    ])
    with pq.ParquetWriter(parquet, schema) as writer:
        for start in range(0, n, CHUNK):
            end = min(n, start + CHUNK)
            flat = pa.array(np.ascontiguousarray(x[start:end]).reshape(-1), type=pa.float32())
            table = pa.table(
                {
                    "id": pa.array([f"gmm-{i:07d}" for i in range(start, end)]),
                    "component": pa.array(component[start:end]),
                    "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=CHUNK)
    print(f"wrote {parquet}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
