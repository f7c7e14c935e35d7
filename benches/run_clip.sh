#!/usr/bin/env bash
# CLIP speed on the CPU, side by side in one run: embedscope (`bench-clip
# --device cpu`, the forward pass the embedder uses there) and PyTorch
# (transformers) time the same full-size ViT-B/32 image tower (random weights)
# at the same batch sizes and thread count, alternated ROUNDS times so that a
# change in the machine's load hits both; then a summary with the ratio; then
# `analyze --embedder clip` end to end on a folder (END_TO_END=0 skips it).
#
#   benches/run_clip.sh [FOLDER]      # FOLDER default: assets/mnist-2k
#
# ENGINES lists what each round times, in order: `embedscope`, `torch`, and
# `burn` (Burn's model through `bench-clip --burn`: the reference the CPU
# forward pass replaced). Results: $WORK/clip-speed.jsonl.
#
# On a shared machine every timed tool runs under `flock $LOCK` (one benchmark
# at a time) and, as root, with the round-robin real-time policy (SCHED, default
# `chrt -r 1` for root, empty otherwise): other work at normal priority then
# gets only the kernel's 5 % real-time reserve, so both tools get the cores.
# An OpenMP program (PyTorch) suffers far more than rayon from sharing cores
# (its threads wait for each other at every barrier), so without this the
# comparison measures the other load. The load average is printed before and
# after.
#
# Needs the Python packages of benches/requirements.txt (torch, transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
THREADS="${THREADS:-$(nproc)}"
BATCHES="${BATCHES:-8,32}"
SECONDS_PER="${SECONDS_PER:-10}"
ROUNDS="${ROUNDS:-2}"
ENGINES="${ENGINES:-embedscope torch}"
END_TO_END="${END_TO_END:-1}"
LOCK="${LOCK:-${TMPDIR:-/tmp}/embedscope-bench.lock}"
if [ "$(id -u)" = 0 ]; then SCHED="${SCHED-chrt -r 1}"; else SCHED="${SCHED-}"; fi
FOLDER="${1:-assets/mnist-2k}"
WORK="${WORK:-${TMPDIR:-/tmp}/embedscope-clip-bench}"
MODEL="${MODEL:-$WORK/vitb32-random}"
mkdir -p "$WORK"

[ -f "$MODEL/model.safetensors" ] || "$PYTHON" benches/clip_reference.py make "$MODEL"
# Without the viewer: bench-clip and analyze do not need Bevy.
cargo build --quiet --no-default-features --features clip
BIN="${CARGO_TARGET_DIR:-target}/debug/embedscope"
RESULTS="$WORK/clip-speed.jsonl"
: > "$RESULTS"

export PYTHON THREADS BATCHES SECONDS_PER ROUNDS ENGINES MODEL BIN RESULTS
echo "# image tower alone: $MODEL, $THREADS threads, batches $BATCHES," \
  "${SECONDS_PER}s each, $ROUNDS rounds of: $ENGINES; scheduling: ${SCHED:-normal}"
flock "$LOCK" $SCHED bash -c '
  set -euo pipefail
  echo "# start: $(uptime)"
  for round in $(seq "$ROUNDS"); do
    for engine in $ENGINES; do
      case "$engine" in
        torch) "$PYTHON" benches/clip_reference.py time "$MODEL" --batch "$BATCHES" \
                 --threads "$THREADS" --seconds "$SECONDS_PER" ;;
        embedscope) RAYON_NUM_THREADS="$THREADS" "$BIN" bench-clip --model "$MODEL" \
                      --device cpu --batch "$BATCHES" --seconds "$SECONDS_PER" ;;
        burn) RAYON_NUM_THREADS="$THREADS" "$BIN" bench-clip --model "$MODEL" \
                --device cpu --burn --batch "$BATCHES" --seconds "$SECONDS_PER" ;;
        *) echo "unknown engine $engine" >&2; exit 2 ;;
      esac | sed -u "s/^{/{\"engine\": \"$engine\", \"round\": $round, /" | tee -a "$RESULTS"
    done
  done
  echo "# end: $(uptime)"'

echo "# images/s (mean over rounds), and the ratio to PyTorch"
"$PYTHON" - "$RESULTS" <<'EOF'
import json, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["engine"], r["batch"])].append(r["images_per_s"])
engines = list(dict.fromkeys(e for e, _ in runs))
batches = sorted({b for _, b in runs})
print("batch  " + "  ".join(f"{e:>24}" for e in engines) + "  ratio to torch")
for b in batches:
    mean = {e: sum(runs[e, b]) / len(runs[e, b]) for e in engines if (e, b) in runs}
    cells = "  ".join(
        f"{mean[e]:7.2f} ({', '.join(f'{v:.2f}' for v in runs[e, b]):>14})" for e in engines
    )
    ratios = ", ".join(
        f"{e} {mean[e] / mean['torch']:.2f}x" for e in engines if e != "torch" and "torch" in mean
    )
    print(f"{b:5d}  {cells}  {ratios}")
EOF

[ "$END_TO_END" = 1 ] || exit 0
echo "# end to end: analyze --embedder clip on $FOLDER (decode + preprocess + model + layout)"
CACHE="$WORK/cache"
rm -rf "$CACHE"
EMBEDSCOPE_CACHE_DIR="$CACHE" /usr/bin/time -v "$BIN" analyze "$FOLDER" --embedder clip \
  --model "$MODEL" --device cpu --out "$WORK/out" --quiet 2> "$WORK/time.txt" | grep -E "embedder|images read|time "
grep -E "Elapsed|Maximum resident" "$WORK/time.txt"
