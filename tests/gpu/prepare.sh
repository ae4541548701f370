#!/usr/bin/env bash
# Everything tests/gpu/check.sh needs besides the checkout, made on a Debian 12 development machine
# with a CPU build in build/: the Debian packages (.gpu-debs, tests/gpu/fetch-debs.sh) and the demo
# store (.gpu-data/store: the phantom cohort of launch/demo.sh, 48x64x48; about 16 MB). Carry both
# folders to the GPU machine beside the checkout (docs/gpu.md).
#   bash tests/gpu/prepare.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
lddpm=${LDDPM_BIN:-$root/build/launch/lddpm}
[ -x "$lddpm" ] || { echo "prepare.sh: no $lddpm; build first (bash launch/test.sh)" >&2; exit 2; }
[ -f "$root/.gpu-debs/direct.txt" ] || bash "$root/tests/gpu/fetch-debs.sh" "$root/.gpu-debs"
if [ ! -f "$root/.gpu-data/store/manifest.json" ]; then
  cohort=$(mktemp -d)
  trap 'rm -rf "$cohort"' EXIT
  "$lddpm" phantom --out "$cohort/cohort" --train-subjects 4 --timepoints 2 --test-subjects 2 \
    --voxel-size 2 --seed 0
  "$lddpm" preprocess --data "$cohort/cohort" --out "$root/.gpu-data/store" --downsample 2
fi
du -sh "$root/.gpu-debs" "$root/.gpu-data"
