#!/usr/bin/env bash
# DDIM seconds per volume on the CPU, "before" (ATen's own conv3d kernel choice, the mask's
# modulation maps made at every step) against "now" (the models' direct oneDNN path, models/
# Conv3d.h, and the maps made once, UNet3DImpl::condition), on the demo's Lesion-DDPM network and
# 48x64x48 grid (docs/BENCHMARKS.md "Sampling speed"). Run from the repository root after a build,
# with nothing else running:  bash tests/bench/models/sample_speed.sh [BUILD_DIR]
set -euo pipefail
bench=${1:-build}/tests/bench/models/ModelsBench
[ -x "$bench" ] || { echo "sample_speed.sh: no $bench (build first)" >&2; exit 1; }
common=(--mode sample --grid 48,64,48 --base 8 --modulation-hidden 8 --json)
date -u
lscpu | grep "Model name"
"$bench" "${common[@]}" --batch 1 --threads 1 --steps 2 --sample-steps 10
"$bench" "${common[@]}" --batch 1 --threads 2 --steps 2 --sample-steps 10
"$bench" "${common[@]}" --batch 2 --threads 2 --steps 1 --sample-steps 10
"$bench" "${common[@]}" --batch 1 --threads 2 --steps 1 --sample-steps 25
"$bench" "${common[@]}" --batch 1 --threads 2 --steps 1 --sample-steps 50
date -u
