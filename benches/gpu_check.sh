#!/usr/bin/env bash
# The CLIP check for a machine with a GPU (issue: "a GPU check ready to run").
# One script, meant for the short loans of an H200: it probes the machine,
# builds the headless binary (no Bevy), and writes every figure to one report:
#
#   1. wgpu parity: the CLIP towers on the GPU against transformers' outputs
#      (the committed fixtures), max-abs differences;
#   2. the image tower alone: images/s at batch 64 and 128 (random full-size
#      ViT-B/32 weights written by `embedscope model random`);
#   3. end to end: `analyze --embedder clip --device gpu` on a folder of a few
#      thousand images (decode and preprocessing included), images/s and peak
#      memory (host RSS; GPU memory from nvidia-smi when there is one).
#
#   benches/gpu_check.sh [OUT_DIR]          (default: $OUT, else /tmp/gpu-check)
#
# Knobs (for a smoke run on a machine without a GPU, where wgpu falls back to
# Mesa's lavapipe and everything is ~1000x slower):
#   BATCHES=64,128  SECONDS_PER=10  COPIES=1  DEVICE=gpu  PROFILE=release
#   SMOKE=1: step 3 on 20 digits and the fixtures' photos only
# e.g.  SMOKE=1 BATCHES=2 SECONDS_PER=1 COPIES=0 PROFILE=dev benches/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-/tmp/gpu-check}}"
BATCHES="${BATCHES:-64,128}"
SECONDS_PER="${SECONDS_PER:-10}"
COPIES="${COPIES:-1}"
DEVICE="${DEVICE:-gpu}"
PROFILE="${PROFILE:-release}"
SMOKE="${SMOKE:-0}"
mkdir -p "$OUT"
REPORT="$OUT/gpu_report.md"
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "$*" | tee -a "$REPORT"; }
step() { echo "== $* ($(date +%T))" | tee -a "$LOG" >&2; }

{
  echo "# embedscope GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
} > "$REPORT"

step "probe"
say "## Machine"
say '```'
{ uname -srm; nproc; free -g | head -2; } 2>&1 | tee -a "$REPORT" > /dev/null
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$REPORT" > /dev/null
else
  say "nvidia-smi: not found"
fi
for tool in cargo rustc vulkaninfo; do
  if command -v "$tool" > /dev/null; then say "$tool: $("$tool" --version 2>&1 | head -1)"; else say "$tool: not found"; fi
done
ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | tr '\n' ' ' | sed 's/^/vulkan ICDs: /' | tee -a "$REPORT" > /dev/null
say ""
say '```'

if ! command -v cargo > /dev/null; then
  say "No Rust toolchain on this machine: nothing can be built here. Carry a headless"
  say "binary built elsewhere (cargo build --release --no-default-features --features clip)."
  exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/gpu}"
PROFILE_FLAG=()
BIN_DIR="$CARGO_TARGET_DIR/debug"
if [ "$PROFILE" = release ]; then PROFILE_FLAG=(--release); BIN_DIR="$CARGO_TARGET_DIR/release"; fi
FEATURES=(--no-default-features --features clip)

step "build (headless: no viewer)"
start=$(date +%s)
if ! cargo build "${PROFILE_FLAG[@]}" "${FEATURES[@]}" --bin embedscope >> "$LOG" 2>&1; then
  say "build failed: see $LOG"; tail -30 "$LOG"; exit 1
fi
say "build: $(( $(date +%s) - start )) s (profile $PROFILE)"
BIN="$BIN_DIR/embedscope"

step "1. wgpu parity"
say ""
say "## 1. wgpu parity against transformers (max abs difference, bar 1e-4)"
say '```'
if cargo test "${PROFILE_FLAG[@]}" "${FEATURES[@]}" --lib towers_match_transformers_on_wgpu -- --nocapture >> "$OUT/parity.log" 2>&1; then
  grep -E "wgpu device|max abs diff" "$OUT/parity.log" | tee -a "$REPORT" > /dev/null
  say "result: pass"
else
  grep -E "wgpu device|max abs diff|panicked|assert" "$OUT/parity.log" | tee -a "$REPORT" > /dev/null
  say "result: FAILED (see parity.log)"
fi
say '```'

step "2. image tower alone"
MODEL="$OUT/vitb32-random"
[ -f "$MODEL/model.safetensors" ] || "$BIN" model random "$MODEL" --preset vit-b-32 >> "$LOG" 2>&1
say ""
say "## 2. ViT-B/32 image tower alone ($DEVICE), random weights, random pixels"
say '```'
"$BIN" bench-clip --model "$MODEL" --device "$DEVICE" --batch "$BATCHES" --seconds "$SECONDS_PER" \
  2>> "$LOG" | tee -a "$REPORT" > /dev/null || say "bench-clip failed: see $LOG"
say '```'

step "3. end to end"
IMAGES="$OUT/images"
rm -rf "$IMAGES"; mkdir -p "$IMAGES"
# 2,000 MNIST digits and the CLIP fixtures' photos and drawings, copied
# COPIES times more under other names (no embedding cache: all are embedded).
PHOTO_ROUNDS=$(( 125 * (COPIES + 1) ))
if [ "$SMOKE" = 1 ]; then
  # A smoke run where wgpu is software: 2 digits of each class, photos once.
  for d in assets/mnist-2k/*/; do
    mkdir -p "$IMAGES/mnist/$(basename "$d")"
    ls "$d" | sort | head -2 | while read -r f; do cp "$d$f" "$IMAGES/mnist/$(basename "$d")/"; done
  done
  PHOTO_ROUNDS=1
else
  cp -r assets/mnist-2k "$IMAGES/mnist"
  for c in $(seq 1 "$COPIES"); do cp -r assets/mnist-2k "$IMAGES/mnist-copy$c"; done
fi
mkdir -p "$IMAGES/photos"
for i in $(seq 1 "$PHOTO_ROUNDS"); do
  for f in tests/fixtures/clip/images/*; do cp "$f" "$IMAGES/photos/${i}_$(basename "$f")"; done
done
count=$(find "$IMAGES" -type f | wc -l)
GPU_LOG="$OUT/nvidia-smi.csv"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$GPU_LOG" 2>/dev/null &
  SMI=$!
fi
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -v)
start=$(date +%s.%N)
EMBEDSCOPE_CACHE_DIR="$OUT/cache" "${TIME[@]}" "$BIN" analyze "$IMAGES" --embedder clip \
  --model "$MODEL" --device "$DEVICE" --no-cache --out "$OUT/analysis" --quiet \
  > "$OUT/analyze.txt" 2> "$OUT/analyze.err"
status=$?
end=$(date +%s.%N)
[ -n "${SMI:-}" ] && kill "$SMI" 2>/dev/null
say ""
say "## 3. End to end: analyze --embedder clip --device $DEVICE on $count images"
say '```'
grep -E "embedder|images read|time " "$OUT/analyze.txt" | tee -a "$REPORT" > /dev/null
# The embed stage's seconds from report.json (no Python needed on the box).
embed=$(grep -A12 '"timings"' "$OUT/analysis/report.json" 2>/dev/null | grep -o '"embed": *[0-9.e+-]*' | grep -o '[0-9.e+-]*$')
if [ -n "$embed" ]; then
  say "decode+embed: $embed s, $(awk -v n="$count" -v s="$embed" 'BEGIN{printf "%.1f", n/s}') images/s (target on an H200: >= 3000)"
fi
say "wall: $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}') s, exit status $status"
grep -E "Maximum resident" "$OUT/analyze.err" | sed 's/^\s*/host /' | tee -a "$REPORT" > /dev/null
if [ -s "$GPU_LOG" ]; then
  say "GPU memory peak: $(sort -n "$GPU_LOG" | tail -1) MiB"
fi
say '```'
step "done: $REPORT"
cat "$REPORT"
