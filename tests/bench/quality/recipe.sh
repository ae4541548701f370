#!/usr/bin/env bash
# The quality benchmark behind docs/models.md's recipe table: one configuration per call, trained
# on the demo cohort (launch/demo.sh's phantom at 2 mm, preprocessed onto the 48x64x48 grid), its
# test masks sampled, and `lddpm evaluate images` run against the store with the twin cohort and
# the constant / class-mean references. Appends one JSON row per configuration to
# $LDDPM_QUALITY_DIR/rows.jsonl; `recipe.sh --table` prints them as markdown. The cohort, store and
# twin store are made once and reused. Nothing here is timed by ctest: figures go to
# docs/BENCHMARKS.md with the command and machine.
#
#   bash tests/bench/quality/recipe.sh NAME [--from RUN] [--sample "sample options"] [lddpm train options...]
#   bash tests/bench/quality/recipe.sh --table
#
# --from RUN samples and evaluates the run of an earlier row RUN again (another sampler) instead
# of training.
#
# The train options come after launch/configs/demo.ini (later options win). Environment:
# LDDPM_QUALITY_DIR (default /tmp/lddpm-quality), LDDPM_BUILD_DIR (default ./build),
# LDDPM_QUALITY_RANKS (default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
dir=${LDDPM_QUALITY_DIR:-/tmp/lddpm-quality}
build=${LDDPM_BUILD_DIR:-$root/build}
ranks=${LDDPM_QUALITY_RANKS:-2}
lddpm="$build/launch/lddpm"
py=/usr/bin/python3
mkdir -p "$dir"

if [ "${1:-}" = "--table" ]; then
  exec "$py" - "$dir/rows.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = [("ssim", "SSIM"), ("brain_ssim", "brain SSIM"), ("brain_mae", "brain MAE"),
        ("lesion_mae", "lesion MAE"), ("lesion_contrast", "lesion−WM"), ("csf_contrast", "CSF−WM"),
        ("gm_contrast", "GM−WM"), ("wm_texture", "WM texture")]
print("| run | train options | steps | s/step | s/volume | " + " | ".join(h for _, h in keys) + " |")
print("|---|---|---:|---:|---:|" + "---:|" * len(keys))
refs_done = False
for r in rows:
    if not refs_done:
        real = r["real"]
        print("| real | | | | | | | | | " + " | ".join(f"{real[k]:.3f}" for k, _ in keys[4:]) + " |")
        for name, m in r["references"].items():
            print(f"| {name} | | | | | " + " | ".join(f"{m[k]:.3f}" for k, _ in keys) + " |")
        refs_done = True
    m = r["metrics"]
    options = r["options"].replace(" | ", "; ").strip("; ")  # a "|" would split the cell
    print(f"| {r['name']} | `{options}` | {r['steps']} | {r['step_seconds']:.2f} | "
          f"{r['seconds_per_volume']:.1f} | " + " | ".join(f"{m[k]:.3f}" for k, _ in keys) + " |")
PY
fi

name=$1; shift
from=""
if [ "${1:-}" = "--from" ]; then from=$2; shift 2; fi
sample_options=""
if [ "${1:-}" = "--sample" ]; then sample_options=$2; shift 2; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun -n "$ranks" --oversubscribe)

if [ ! -f "$dir/store/manifest.json" ] || [ ! -f "$dir/twins-store/manifest.json" ]; then
  rm -rf "$dir/cohort" "$dir/store" "$dir/twins-store"
  "$lddpm" phantom --out "$dir/cohort" --train-subjects 4 --timepoints 2 --test-subjects 2 \
    --voxel-size 2 --seed 0 --twins --log-level warn
  "${mpi[@]}" "$lddpm" preprocess --data "$dir/cohort" --out "$dir/store" --downsample 2 --log-level warn
  "$lddpm" preprocess --data "$dir/cohort/twins" --out "$dir/twins-store" --downsample 2 --log-level warn
fi

run="$dir/runs/${from:-$name}"
rm -rf "$dir/samples/$name" "$dir/eval/$name"
t0=$(date +%s)
if [ -z "$from" ]; then
  rm -rf "$run"
  "${mpi[@]}" "$lddpm" train --config "$root/launch/configs/demo.ini" --store "$dir/store" \
    --run "$run" --log-level warn "$@"
fi
t1=$(date +%s)
# shellcheck disable=SC2086
"${mpi[@]}" "$lddpm" sample --run "$run" --store "$dir/store" --split test \
  --out "$dir/samples/$name" --log-level warn $sample_options
"$lddpm" evaluate images --real "$dir/store" --split test \
  --synthetic "$name=$dir/samples/$name/synthetic" --synthetic "twin=$dir/twins-store" \
  --out "$dir/eval/$name" --log-level warn > /dev/null
# The one-step x̂0 diagnostic exists for diffusion models only (pix2pix has no noise levels).
if ! grep -q "^model = pix2pix" "$run/config.ini"; then
  "$lddpm" evaluate denoising --run "$run" --store "$dir/store" --split test \
    --out "$dir/eval/$name" --log-level warn > /dev/null
fi
"$py" - "$name" "${from:+[run of $from] }$*" "$run" "$dir/samples/$name/sampling.json" "$dir/eval/$name/images.json" \
  "$((t1 - t0))" "$sample_options" >> "$dir/rows.jsonl" <<'PY'
import json, sys
name, options, run, sampling, images, train_s, sample_options = sys.argv[1:8]
rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
gens = {g["name"]: g for g in json.load(open(images))["generators"]}
report = json.load(open(images))
sampling = json.load(open(sampling))
keys = ["ssim", "ms_ssim", "brain_ssim", "brain_psnr", "brain_mae", "background_mae", "lesion_mae",
        "lesion_contrast", "csf_contrast", "gm_contrast", "wm_texture"]
pick = lambda g: {k: g["mean"][k] for k in keys}
print(json.dumps({
    "name": name, "options": options + (" | sample " + sample_options if sample_options else ""),
    "steps": rows[-1]["step"], "train_seconds": int(train_s),
    "step_seconds": sum(r["step_seconds"] for r in rows[-5:]) / min(5, len(rows)),
    "last_loss": rows[-1].get("loss", rows[-1].get("generator_loss")), "seconds_per_volume": sampling["seconds_per_volume"],
    "sampler": sampling["sampler"], "sampler_steps": sampling["steps"],
    "metrics": pick(gens[name]),
    "references": {k: pick(gens[k]) for k in ("twin", "constant", "class mean")},
    "real": report["real_statistics"]["mean"]}))
PY
tail -n 1 "$dir/rows.jsonl"
