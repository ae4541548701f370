#!/usr/bin/env bash
# The Python twin (python/lesion_ddpm, docs/python.md) against the C++ models it mirrors, at tiny
# sizes: for lesion-ddpm (per-block and per-level mask embeddings, x0 / eps / v / edm, the class-mean
# prior), cond-ddpm, pix2pix and seg, a trained checkpoint's weights moved by noise
# (PythonTwinOracle) must give the same denoiser / generator / segmenter output in Python within
# 1e-5 relative; `lddpm export`'s file must load with every tensor used; and the Python sampler
# (DDIM with eta 1, DDIM deterministic, DDPM) must give `lddpm sample`'s volumes from the masks it
# wrote, within 1e-5, and the same bits with the mask's modulation maps made once or at every step.
# Also: usage and file errors of `python3 -m lesion_ddpm`.
#   python_twin.sh LDDPM_BINARY MPIEXEC PYTHON ORACLE
set -euo pipefail
lddpm=$1 mpiexec=$2 python=$3 oracle=$4
root=$(cd "$(dirname "$0")/../.." && pwd)
e2e_name=python-twin
source "$root/tests/e2e/common.sh"  # scratch folder, fail, expect_usage
export PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}"

"$lddpm" phantom --out cohort --train-subjects 2 --test-subjects 1 --timepoints 1 --voxel-size 2 \
  --seed 3 --log-level warn
"$lddpm" preprocess --data cohort --out store --downsample 8 --log-level warn
tiny=(--base-channels 4 --channel-mult 1,2 --attention-levels 1 --attention-heads 2 --groups 2
      --patch 16 --batch 2 --warmup 1 --steps 2 --log-level warn)
declare -A runs=(
  [ld-block]="--model lesion-ddpm --prediction x0 --train-steps 4 --timestep-spacing quadratic --intensity-prior class-mean --timesteps 50"
  [ld-level]="--model lesion-ddpm --prediction eps --mask-embedding level --mask-sites input,bottleneck --timesteps 20"
  [ld-edm]="--model lesion-ddpm --prediction edm --sigma-data 0.7 --timesteps 20"
  [cond-v]="--model cond-ddpm --prediction v --timesteps 10 --intensity-prior class-mean"
  [p2p]="--model pix2pix --intensity-prior class-mean --disc-channels 4"
  [seg]="--model seg"
)
for name in "${!runs[@]}"; do
  read -r -a own <<< "${runs[$name]}"
  "$lddpm" train --store store --run "runs/$name" "${tiny[@]}" "${own[@]}"
done
newest() { ls -d "runs/$1/checkpoints/step-"* | tail -1; }

# 1. The networks, output for output: random-moved weights and the exported ones.
for name in "${!runs[@]}"; do
  ckpt=$(newest "$name")
  "$oracle" "$ckpt" "$name.weights.pt" "$name.tensors.pt" 16,24,16 7 ||
    fail "PythonTwinOracle failed on $name"
  "$lddpm" export --run "runs/$name" --out "$name.export.pt" > /dev/null
  cp "runs/$name/config.ini" "$name.config.ini"
done
"$python" - "${!runs[@]}" <<'PY' || fail "the Python networks differ from the C++ ones"
import sys
import torch
import lesion_ddpm

worst = 0.0
for name in sys.argv[1:]:
    config = lesion_ddpm.ModelConfig.read(f"{name}.config.ini")
    model = lesion_ddpm.load(f"{name}.weights.pt", config)
    lesion_ddpm.load(f"{name}.export.pt", config)  # the exported file fits the network too
    io = torch.load(f"{name}.tensors.pt")
    with torch.no_grad():
        if config.model in ("lesion-ddpm", "cond-ddpm"):
            out = model.denoise(io["x"], io["t"], io["condition"])
        elif config.model == "pix2pix":
            out = model.generate(io["condition"])
        else:
            out = model(io["x"])
    ref = io["output"]
    assert out.shape == ref.shape, (name, out.shape, ref.shape)
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert ref.abs().max() > 0.01, (name, "degenerate output: the oracle's weights did not move")
    print(f"{name:9s} {config.model:12s} max |py - c++| / max |c++| = {rel:.2e}")
    assert rel <= 1e-5, (name, rel)
    worst = max(worst, rel)
print(f"networks: worst relative difference {worst:.2e} (bound 1e-5)")
PY

# 2. Sampling: `lddpm sample` against `python3 -m lesion_ddpm sample` on the masks it wrote.
check_sample() {  # check_sample NAME SAMPLE_OPTIONS...
  local name=$1; shift
  "$lddpm" sample --run "runs/$name" --store store --split test --out "s-$name" --seed 11 \
    --log-level warn "$@"
  "$python" -m lesion_ddpm sample --weights "$name.export.pt" --config "$name.config.ini" \
    --masks "s-$name" --out "py-$name" --seed 11 "$@" > "py-$name.log" ||
    { cat "py-$name.log" >&2; fail "python3 -m lesion_ddpm sample failed on $name"; }
  "$python" - "s-$name/synthetic" "py-$name" <<'PY' || fail "samples of $name differ"
import glob, os, sys
import nibabel as nib, numpy as np
cpp, py = sys.argv[1:]
cases = sorted(glob.glob(f"{cpp}/*.nii.gz"))
assert cases, cpp
for path in cases:
    a = nib.load(path)
    b = nib.load(os.path.join(py, os.path.basename(path)))
    assert np.allclose(a.affine, b.affine), (path, "geometry")
    d = np.abs(np.asarray(a.dataobj, np.float64) - np.asarray(b.dataobj, np.float64)).max()
    print(f"{path}: max |py - c++| = {d:.2e}")
    assert d <= 1e-5, (path, d)
PY
}
check_sample ld-block --sampler ddim --eta 1
# The mask's modulation maps made once (the default) or at every step: the same bits, in both.
"$lddpm" sample --run runs/ld-block --store store --split test --out s-per-step --seed 11 \
  --log-level warn --sampler ddim --eta 1 --condition-cache-mib 0
"$python" -m lesion_ddpm sample --weights ld-block.export.pt --config ld-block.config.ini \
  --masks s-per-step --out py-per-step --seed 11 --sampler ddim --eta 1 --condition-cache-mib 0 \
  > py-per-step.log || { cat py-per-step.log >&2; fail "python3 -m lesion_ddpm sample failed"; }
for f in s-ld-block/synthetic/*.nii.gz; do
  cmp <(gzip -dc "$f") <(gzip -dc "s-per-step/synthetic/${f##*/}") ||
    fail "lddpm sample: maps made once and at every step differ on ${f##*/}"
  cmp <(gzip -dc "py-ld-block/${f##*/}") <(gzip -dc "py-per-step/${f##*/}") ||
    fail "python3 -m lesion_ddpm sample: maps made once and at every step differ on ${f##*/}"
done
check_sample ld-level --sampler ddim --steps 5
check_sample cond-v --sampler ddpm
check_sample p2p

# 3. Errors: a clear message and a non-zero exit, nothing written.
expect_usage --masks "$python" -m lesion_ddpm sample --weights ld-block.export.pt \
  --config ld-block.config.ini --masks nowhere --out never
[ ! -e never ] || fail "a refused sample call left its output folder"
code=0
"$python" -m lesion_ddpm info --weights ld-block.export.pt --config seg.config.ini > err.txt 2>&1 ||
  code=$?
[ "$code" -eq 1 ] && grep -q "does not fit" err.txt || { cat err.txt >&2; fail "a config that does not fit"; }
echo "e2e $e2e_name: passed"
