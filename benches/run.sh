#!/usr/bin/env bash
# Side-by-side benchmark in one run on this machine: embedscope's UMAP, t-SNE and
# PCA (via `embedscope bench`), then umap-learn and scikit-learn on exactly the
# same vectors (benches/reference.py). Needs the Python packages of
# benches/requirements.txt (see benches/README.md).
#
#   benches/run.sh [DATASET] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/datasets/mnist-10k}"
out="${2:-${TMPDIR:-/tmp}/embedscope-bench}"
python="${PYTHON:-$HOME/.venvs/embedscope/bin/python}"
threads="$(nproc)"

cargo build --quiet
echo "== embedscope ($threads threads) =="
./target/debug/embedscope bench "$data" --out "$out" --knn-recall
echo
echo "== references on the same data ($threads threads) =="
"$python" benches/reference.py "$out" --threads "$threads" --seed 42
