#!/usr/bin/env bash
# Remakes the README screenshots of the Issues panel and of a lasso selection
# with the viewer's script hooks (src/view/script.rs), under Xvfb with Mesa's
# software Vulkan. Run from the repository root after `cargo build`:
#   assets/screenshots/make.sh [path/to/embedscope]
# The data: the bundled 2,000 MNIST digits with 40 of them moved into a wrong
# digit's folder (label errors for the Issues panel to find).
set -euo pipefail
bin=${1:-target/debug/embedscope}
out=assets/screenshots
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r assets/mnist-2k "$work/digits"
# Move the first 4 images of each digit d into the folder of digit (d+1) % 10.
for d in 0 1 2 3 4 5 6 7 8 9; do
    next=$(( (d + 1) % 10 ))
    ls "$work/digits/$d" | sort | head -4 | while read -r f; do
        mv "$work/digits/$d/$f" "$work/digits/$next/moved-from-$d-$f"
    done
done
view() {
    xvfb-run -a -s "-screen 0 1280x800x24" env WGPU_BACKEND=vulkan \
        EMBEDSCOPE_CACHE_DIR="$work/cache" "$bin" view "$work/digits" "$@"
}
view --script "colour-by suggested; show issues:label-issues; wait; screenshot $out/issues.png"
view --script "colour-by label; shape lasso; \
    drag left ctrl 0.30,0.30 0.55,0.25 0.62,0.50 0.48,0.62 0.33,0.55; wait; \
    show selection; wait; screenshot $out/lasso.png"
echo "wrote $out/issues.png and $out/lasso.png"
