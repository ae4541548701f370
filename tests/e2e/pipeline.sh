#!/usr/bin/env bash
# End-to-end: phantom (+ twins) -> preprocess (2 ranks) -> train (2 ranks, 4 steps, whole volumes,
# x0-prediction on 5 timesteps) -> sample (2 ranks, DDIM) -> evaluate images (generators, twin and
# references) and denoising -> export, at tiny sizes, through the real lddpm binary. Checks each
# stage's outputs, that sampling with 1 and 2 ranks gives identical volumes, the reference rows
# against numpy over the store read with h5py, and that Python's torch.load reads the exported
# weights with the model's parameter names.
#   pipeline.sh LDDPM_BINARY MPIEXEC PYTHON
set -euo pipefail
lddpm=$1 mpiexec=$2 python=$3
work=$(mktemp -d /tmp/lddpm-e2e.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=("$mpiexec" -n 2 --oversubscribe)
fail() { echo "e2e: FAIL: $*" >&2; exit 1; }

"$lddpm" phantom --out cohort --train-subjects 2 --test-subjects 1 --timepoints 1 --voxel-size 2 \
  --seed 3 --twins --log-level warn
[ -f cohort/twins/test/P3/P3_FLAIR.nii.gz ] || fail "no twin of the test subject"
"${mpi[@]}" "$lddpm" preprocess --data cohort --out store --downsample 4 --log-level warn
"$lddpm" preprocess --data cohort/twins --out twins --downsample 4 --log-level warn
[ -f store/manifest.json ] || fail "no manifest"
"$lddpm" inspect store --json > inspect.json
model=(--base-channels 4 --channel-mult 1,2 --attention-levels "" --groups 2 --timesteps 20
  --prediction x0 --loss-weighting min-snr --train-steps 5 --timestep-spacing quadratic)
"${mpi[@]}" "$lddpm" train --store store --run run --steps 4 --batch 2 --patch 0 --warmup 1 \
  --checkpoint-every 2 --log-every 1 "${model[@]}" --log-level warn
[ "$(wc -l < run/metrics.jsonl)" -eq 4 ] || fail "metrics.jsonl does not have 4 rows"
grep -q '"target_l1"' run/metrics.jsonl || fail "metrics.jsonl does not log the loss parts"
grep -q '"state": "finished"' run/status.json || fail "run not finished"
[ -d run/checkpoints/step-00000004 ] || fail "no final checkpoint"
# All 3 scans, dealt to ranks: every volume must come out byte-identical on 1 and 2 ranks,
# whatever --batch and the threads per rank (models/Conv3d.h runs one oneDNN kernel for all):
# 2 ranks at batch 1; 1 rank at batch 1 on 2 threads; 2 ranks at batch 2 on 1 thread each (rank 0
# samples cases 1-2, rank 1 case 3). --steps defaults to the 5 timesteps the model trained on
# (--eta 1: ancestral noise).
"${mpi[@]}" "$lddpm" sample --run run --store store --split all --out s2 --eta 1 --log-level warn
"$lddpm" sample --run run --store store --split all --out s1 --eta 1 --threads 2 --log-level warn
"${mpi[@]}" "$lddpm" sample --run run --store store --split all --batch 2 --threads 1 --out b2 \
  --eta 1 --log-level warn
grep -q '"steps": 5' s1/sampling.json || fail "sampling did not default to the 5 trained steps"
if "$lddpm" sample --run run --store store --out bad --sampler ddpm --log-level warn 2> ddpm.err; then
  fail "DDPM over all T accepted for a model trained on 5 timesteps"
fi
grep -q "train-steps" ddpm.err || fail "the DDPM refusal does not name --train-steps: $(cat ddpm.err)"
[ "$(ls s1/synthetic/*.nii.gz | wc -l)" -eq 3 ] || fail "expected 3 sampled volumes"
for f in s1/synthetic/*.nii.gz; do
  cmp -s "$f" "s2/synthetic/$(basename "$f")" || fail "sampling differs between 1 and 2 ranks: $f"
  cmp -s "$f" "b2/synthetic/$(basename "$f")" ||
    fail "sampling at batch 2 on 1 thread per rank differs from batch 1 on 2 threads: $f"
done
[ -f s2/overview.png ] || fail "no overview.png"
"$lddpm" evaluate images --real s2/real --synthetic s2/synthetic --mask s2/lesion \
  --brain-mask s2/brain --tissue s2/tissue --reference-store store --json > eval.json
"$python" - <<'PY'
import json, math
report = json.load(open("eval.json"))
assert len(report["cases"]) == 3, report["cases"]
names = [g["name"] for g in report["generators"]]
assert names == ["synthetic", "constant", "class mean"], names
for case in report["generators"][0]["cases"]:
    for key in ("mse", "mae", "psnr", "ssim", "ms_ssim", "brain_ssim", "brain_mae", "lesion_mae",
                "wm_texture", "lesion_contrast"):
        assert key in case, key
    assert math.isfinite(case["mse"]) and case["mse"] > 0
PY
# Real scans from the store (test split), the generator's folder, the twin store; reference rows
# from the store's train split, checked against numpy over the shards read with h5py.
"$lddpm" evaluate images --real store --split test --synthetic lesion-ddpm=s2/synthetic \
  --synthetic twin=twins --json --out eval-store > eval-store.json
"$python" - <<'PY'
import glob, json
import h5py, numpy as np
report = json.load(open("eval-store.json"))
assert report["cases"] == ["P3"], report["cases"]
gens = {g["name"]: g for g in report["generators"]}
assert list(gens) == ["lesion-ddpm", "twin", "constant", "class mean"], list(gens)
sums, counts = np.zeros(6), np.zeros(6)
subjects = {}
for shard in glob.glob("store/shard-*.h5"):
    with h5py.File(shard, "r") as f:
        for sid, g in f["subjects"].items():
            subjects[sid] = (g["image"][0].astype(np.float64), g["tissue"][()], g["lesion"][()] > 0)
for sid, (img, tissue, lesion) in subjects.items():
    if sid == "P3":
        continue  # the test scan; references come from the train split
    regions = [(tissue == 0) & ~lesion, (tissue == 1) & ~lesion, (tissue == 2) & ~lesion,
               (tissue == 3) & ~lesion, lesion, (tissue > 0) | lesion]
    for c, r in enumerate(regions):
        sums[c] += img[r].sum()
        counts[c] += r.sum()
means = sums / counts
img, tissue, lesion = subjects["P3"]
brain = (tissue > 0) | lesion
klass = np.full(img.shape, means[0])
for c in (1, 2, 3):
    klass[tissue == c] = means[c]
klass[lesion] = means[4]
constant = np.where(brain, means[5], means[0])
def brain_mae(x):
    return np.abs(img - x.astype(np.float32).astype(np.float64))[brain].mean()
got_class = gens["class mean"]["cases"][0]["brain_mae"]
got_constant = gens["constant"]["cases"][0]["brain_mae"]
assert abs(got_class - brain_mae(klass)) < 1e-6, (got_class, brain_mae(klass))
assert abs(got_constant - brain_mae(constant)) < 1e-6, (got_constant, brain_mae(constant))
assert got_class < got_constant, (got_class, got_constant)
# The twin is the same subject scanned again: same masks, so its tissue contrasts are the real
# scan's up to the intensity draws, and it beats the constant inside the brain.
real = report["real_statistics"]["cases"][0]
twin = gens["twin"]["cases"][0]
assert twin["brain_mae"] < got_constant, (twin["brain_mae"], got_constant)
for key in ("csf_contrast", "gm_contrast"):
    assert abs(twin[key] - real[key]) < 0.25 * abs(real[key]) + 0.1, (key, twin[key], real[key])
PY
[ -f eval-store/images.md ] || fail "no eval-store/images.md"
"$lddpm" evaluate denoising --run run --store store --split test --json > denoise.json
"$python" - <<'PY'
import json, math
report = json.load(open("denoise.json"))
rows = report["rows"]
assert len(rows) >= 2 and [r["t"] for r in rows] == sorted(r["t"] for r in rows), rows
for r in rows:
    for key in ("background_mae", "brain_mae", "lesion_mae", "brain_ssim", "trivial_brain_mae"):
        assert key in r, key
    assert math.isfinite(r["brain_mae"]), r
PY
"$lddpm" export --run run --out weights.pt > /dev/null
"$python" - "$work" <<'PY'
import sys, torch
d = torch.load("weights.pt")
assert isinstance(d, dict) and len(d) > 10, type(d)
assert any(k.endswith("in_conv.weight") for k in d), list(d)[:5]
assert all(torch.isfinite(v.float()).all() for v in d.values())
PY
echo "e2e: ok (phantom + twins, preprocess, train, sample x2 identical, evaluate images + denoising, export)"
