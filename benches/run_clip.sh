#!/usr/bin/env bash
# CLIP speed, side by side in one run: embedscope (Burn) and PyTorch time the
# same full-size ViT-B/32 image tower (random weights) at the same batch sizes
# and thread count; then `analyze --embedder clip` end to end on a folder.
#
#   benches/run_clip.sh [FOLDER]      # FOLDER default: assets/mnist-2k
#
# Needs the Python packages of benches/requirements.txt (torch, transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
THREADS="${THREADS:-$(nproc)}"
BATCHES="${BATCHES:-1,8,32}"
SECONDS_PER="${SECONDS_PER:-10}"
FOLDER="${1:-assets/mnist-2k}"
WORK="${WORK:-${TMPDIR:-/tmp}/embedscope-clip-bench}"
MODEL="$WORK/vitb32-random"
mkdir -p "$WORK"

[ -f "$MODEL/model.safetensors" ] || "$PYTHON" benches/clip_reference.py make "$MODEL"
cargo build --quiet
BIN=target/debug/embedscope

echo "# image tower alone, $THREADS threads, batches $BATCHES"
RAYON_NUM_THREADS="$THREADS" "$BIN" bench-clip --model "$MODEL" --device cpu \
  --batch "$BATCHES" --seconds "$SECONDS_PER"
"$PYTHON" benches/clip_reference.py time "$MODEL" --batch "$BATCHES" \
  --threads "$THREADS" --seconds "$SECONDS_PER"

echo "# end to end: analyze --embedder clip on $FOLDER (decode + preprocess + model + layout)"
CACHE="$WORK/cache"
rm -rf "$CACHE"
EMBEDSCOPE_CACHE_DIR="$CACHE" /usr/bin/time -v "$BIN" analyze "$FOLDER" --embedder clip \
  --model "$MODEL" --device cpu --out "$WORK/out" --quiet 2> "$WORK/time.txt" | grep -E "embedder|images read|time "
grep -E "Elapsed|Maximum resident" "$WORK/time.txt"
