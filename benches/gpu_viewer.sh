#!/usr/bin/env bash
# Viewer frame times (issue 9 §5): `embedscope view --bench-points N` on a
# 1280x800 window under a virtual X server, with and without thumbnail
# billboards, printing one JSON line per run (mean/median/p95 frame time,
# fps, billboards drawn) and the run's peak memory.
#
#   benches/gpu_viewer.sh [N ...]          # default: 100000 1000000
#
# On a machine with an NVIDIA GPU (nvidia-smi and the NVIDIA Vulkan driver
# present), the runs use it; otherwise they use Mesa's software Vulkan
# (lavapipe) and say so: numbers from lavapipe measure the CPU, not a GPU.
# The target on the GPU: 1M dots with ~400 thumbnails at >= 60 fps.
#
# Environment: BIN (a built embedscope; default: build it here with cargo),
# FRAMES (frames timed per run, default 60), DEVICE=cpu to force lavapipe.
# Installs xvfb/xauth/libvulkan1/mesa-vulkan-drivers when missing (root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES="${FRAMES:-60}"
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 1000000)

need=()
for pkg in xvfb xauth libvulkan1 mesa-vulkan-drivers libxkbcommon-x11-0 time; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -z "${BIN:-}" ]; then
  cargo build --quiet
  BIN="${CARGO_TARGET_DIR:-target}/debug/embedscope"
fi

# The Vulkan driver: NVIDIA's when there is one, else lavapipe.
icd=""
if [ "${DEVICE:-}" != cpu ] && command -v nvidia-smi >/dev/null 2>&1; then
  for f in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
           /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json; do
    [ -f "$f" ] && icd="$f" && break
  done
  [ -n "$icd" ] || echo "# nvidia-smi found but no NVIDIA Vulkan driver (nvidia_icd.json): using lavapipe"
fi
if [ -n "$icd" ]; then
  device="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
else
  icd="$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -1 || true)"
  device="lavapipe (Mesa software Vulkan, $(nproc) CPU threads): a CPU measurement, not a GPU one"
fi
[ -n "$icd" ] || { echo "no Vulkan driver found (install mesa-vulkan-drivers)" >&2; exit 1; }
echo "# device: $device"
echo "# driver: $icd"

run() {
  local n="$1"; shift
  local log; log="$(mktemp)"
  # xvfb-run gives the window an X display; the NVIDIA driver renders
  # off-screen and presents by copy to it.
  VK_ICD_FILENAMES="$icd" VK_DRIVER_FILES="$icd" WGPU_BACKEND=vulkan \
    /usr/bin/time -v xvfb-run -a -s "-screen 0 1400x900x24" \
    "$BIN" view --bench-points "$n" --bench-frames "$FRAMES" "$@" 2> "$log" \
    | grep '^{' || { echo "# run failed (N=$n $*):"; tail -20 "$log"; }
  grep -E "Maximum resident set size" "$log" | sed 's/^\s*/# peak /'
  rm -f "$log"
}

for n in "${SIZES[@]}"; do
  echo "# N=$n, thumbnails"
  run "$n"
  echo "# N=$n, dots only"
  run "$n" --bench-no-thumbnails
done
