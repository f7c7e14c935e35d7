#!/bin/bash
# Side by side, one run at a time under the shared benchmark lock: embedscope's
# NN-descent, embedscope's exact kNN (10k and 100k) and pynndescent, each with
# 2 threads, each with its time, CPU time, peak RSS (/usr/bin/time -v) and
# recall@15 against the exact neighbours.
#
#   benches/run_knn_bench.sh [10k] [100k] [1m]     (default: all three)
#
# Needs: target/release/knn_bench (cargo build --release), the venv with
# pynndescent, and the data below. Ground truths are computed once (exact for
# 10k/100k, 50,000 sampled query rows by brute force for 1M) and kept in
# /work/data/knn/.
set -euo pipefail
cd "$(dirname "$0")/.."
B=target/release/knn_bench
PY=${PY:-$HOME/.venvs/embedscope/bin/python3}
LOCK=/tmp/embedscope-bench.lock
OUT=/work/data/knn
mkdir -p $OUT
export RAYON_NUM_THREADS=2 NUMBA_NUM_THREADS=2

# Runs a command under the lock; prints its JSON line(s) with peak RSS (MB) added.
timed() {
    local log
    log=$(mktemp)
    flock $LOCK /usr/bin/time -v "$@" 2>"$log" | while read -r line; do
        rss=$(awk '/Maximum resident set size/ {printf "%.0f", $6/1024}' "$log")
        echo "${line%\}}, \"peak_rss_mb_process\": $rss}"
    done
    grep -E "^(Error|Traceback)" -A5 "$log" >&2 || true
    rm -f "$log"
}

mnist10k() {
    [ -f $OUT/mnist-10k.npy ] || { $PY /work/main/benches/make_bench_dir.py /work/shared/datasets/mnist-10k $OUT/mnist-10k-dir >/dev/null && cp $OUT/mnist-10k-dir/embeddings.npy $OUT/mnist-10k.npy; }
    [ -f $OUT/mnist-10k.truth-k15.idx.npy ] || flock $LOCK $B $OUT/mnist-10k.npy --method exact --save-truth $OUT/mnist-10k.truth-k15 >/dev/null
    echo "# MNIST 10k x 784"
    timed $B $OUT/mnist-10k.npy --method exact --truth $OUT/mnist-10k.truth-k15
    timed $B $OUT/mnist-10k.npy --truth $OUT/mnist-10k.truth-k15
    timed $PY benches/knn_reference.py $OUT/mnist-10k.npy --truth $OUT/mnist-10k.truth-k15 --repeat 2
}

mnist100k() {
    local d=/work/data/mnist-100k.npy
    [ -f $OUT/mnist-100k.truth-k15.idx.npy ] || flock $LOCK $B $d --method exact --save-truth $OUT/mnist-100k.truth-k15 >/dev/null
    echo "# MNIST 100k x 784"
    timed $B $d --method exact --truth $OUT/mnist-100k.truth-k15
    timed $B $d --truth $OUT/mnist-100k.truth-k15
    timed $PY benches/knn_reference.py $d --truth $OUT/mnist-100k.truth-k15 --repeat 2
}

gmm1m() {
    local d=/work/data/gmm-1m-64.npy
    [ -f $d ] || $PY benches/make_gaussian_mixture.py $d
    [ -f $OUT/gmm-1m-64.truth-k15-q50k.idx.npy ] || flock $LOCK $B $d --save-truth $OUT/gmm-1m-64.truth-k15-q50k --sample-truth 50000
    echo "# Gaussian mixture 1M x 64 (recall on 50,000 sampled rows)"
    timed $B $d --truth $OUT/gmm-1m-64.truth-k15-q50k
    timed $PY benches/knn_reference.py $d --truth $OUT/gmm-1m-64.truth-k15-q50k
}

for what in "${@:-10k 100k 1m}"; do
    for w in $what; do
        case $w in
            10k) mnist10k ;;
            100k) mnist100k ;;
            1m) gmm1m ;;
            *) echo "unknown set $w (10k, 100k, 1m)" >&2; exit 2 ;;
        esac
    done
done
