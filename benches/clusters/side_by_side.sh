#!/usr/bin/env bash
# Side by side, in one run under the shared benchmark lock: our HDBSCAN
# (cluster_bench, 3 repeats), scikit-learn's HDBSCAN and fast_hdbscan on the
# same layouts with the same parameters, 2 threads each. Prints JSON lines and
# keeps every implementation's labels under OUT.
#
#     cargo build --release && bash py/side_by_side.sh [OUT]
#
# Layouts come from py/make_layouts.py (under /work/data/layouts/).
# scikit-learn is skipped at 1M: its Prim's spanning tree is O(n^2)
# (33-41 s at 100k on this machine, so about an hour at 1M).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${UNDER_FLOCK:-}" ]; then
    UNDER_FLOCK=1 exec flock /tmp/embedscope-bench.lock bash "$0" "$@"
fi
L=/work/data/layouts
OUT=${1:-results/side_by_side}
PY=~/.venvs/embedscope/bin/python
mkdir -p "$OUT"
export RAYON_NUM_THREADS=2 NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2

# name layout min_cluster_size min_samples implementations
run() {
    echo "## $1: $2 mcs=$3 ms=$4"
    ./target/release/cluster_bench "$L/$2.npy" --labels "$L/$2.labels.txt" \
        --mcs "$3" --ms "$4" --repeat 3 --out "$OUT/$1.ours.txt"
    "$PY" -W ignore py/reference.py run "$L/$2.npy" --labels "$L/$2.labels.txt" \
        --mcs "$3" --ms "$4" --ours "$OUT/$1.ours.txt" --impl "$5" --out "$OUT/$1"
}

date
uptime
# The defaults find_clusters picks for each n (ClusterParams::default()).
run mnist10k mnist10k_umap "${MCS_10K:-20}" "${MS_10K:-10}" sklearn,fast
run mnist100k mnist100k_umap "${MCS_100K:-200}" "${MS_100K:-10}" sklearn,fast
run gmm100k gmm100k_umap "${MCS_100K:-200}" "${MS_100K:-10}" sklearn,fast
run mix1m mix1m "${MCS_1M:-2000}" "${MS_1M:-10}" fast
run gmm1m_pca gmm1m_pca "${MCS_1M:-2000}" "${MS_1M:-10}" fast
# The old default at 100k (1% capped at 100, min_samples = min_cluster_size),
# the setting behind the product owner's 0.647 with scikit-learn.
run mnist100k_old mnist100k_umap 100 100 sklearn
uptime
