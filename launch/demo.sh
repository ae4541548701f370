#!/usr/bin/env bash
# The README's main command: phantom cohort (+ twins of the test subjects) -> preprocess (2 ranks)
# -> train Lesion-DDPM (2 ranks) -> sample the test masks (2 ranks) -> evaluate against the real
# scans beside the twin, constant and class-mean references -> report folder with the quality
# targets checked. Installs what is missing and builds first. Reruns reuse every finished stage
# (delete DEMO_DIR/.done-<stage> to redo it).
#
#   bash launch/demo.sh                 # everything under ./demo
#   LDDPM_DEMO_DIR=/scratch/d bash launch/demo.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
demo=${LDDPM_DEMO_DIR:-$root/demo}
build=${LDDPM_BUILD_DIR:-$root/build}
ranks=${LDDPM_DEMO_RANKS:-2}
start=$(date +%s)

bash "$root/launch/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target lddpm
lddpm="$build/launch/lddpm"
mpi=(mpirun -n "$ranks" --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
mkdir -p "$demo"

stage_dir=$demo
source "$root/launch/stage.sh"  # stage NAME COMMAND...: skipped when $demo/.done-NAME exists

# 4 training subjects x 2 timepoints + 2 test subjects at 2 mm (91x109x91), from Colin27, and the
# test subjects scanned again (cohort/twins: the 'twin' reference row).
stage phantom "$lddpm" phantom --out "$demo/cohort" --train-subjects 4 --timepoints 2 \
  --test-subjects 2 --voxel-size 2 --seed 0 --twins
# 2 ranks, one shard each; downsampled x2 onto a 48x64x48 grid. The twins the same way.
stage preprocess "${mpi[@]}" "$lddpm" preprocess --data "$demo/cohort" --out "$demo/store" \
  --downsample 2
stage twins "$lddpm" preprocess --data "$demo/cohort/twins" --out "$demo/twins" --downsample 2
stage train "${mpi[@]}" "$lddpm" train --config "$root/launch/configs/demo.ini" \
  --store "$demo/store" --run "$demo/run"
# DDIM over the 10 timesteps the model trained on, with ancestral noise (eta 1).
stage sample "${mpi[@]}" "$lddpm" sample --run "$demo/run" --store "$demo/store" --split test \
  --out "$demo/samples" --sampler ddim --eta 1
stage evaluate "$lddpm" evaluate images --real "$demo/store" --split test \
  --synthetic "lesion-ddpm=$demo/samples/synthetic" --synthetic "twin=$demo/twins" \
  --out "$demo/evaluation"

mkdir -p "$demo/report"
cp "$demo/evaluation/images.md" "$demo/evaluation/images.json" "$demo/samples/overview.png" \
  "$demo/report/"
cp "$demo/samples/png/"*.png "$demo/report/" 2>/dev/null || true
/usr/bin/python3 "$root/launch/report.py" --run "$demo/run" --samples "$demo/samples" \
  --evaluation "$demo/evaluation" --out "$demo/report"
echo
cat "$demo/report/report.md"
echo
echo "demo finished in $(( $(date +%s) - start )) s; report in $demo/report"
