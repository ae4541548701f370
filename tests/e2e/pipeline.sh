#!/usr/bin/env bash
# End-to-end: phantom -> preprocess (2 ranks) -> train (2 ranks, 4 steps) -> sample (2 ranks,
# DDIM) -> evaluate -> export, at tiny sizes, through the real lddpm binary. Checks each stage's
# outputs, that sampling with 1 and 2 ranks gives identical volumes, and that Python's torch.load
# reads the exported weights with the model's parameter names.
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
  --seed 3 --log-level warn
"${mpi[@]}" "$lddpm" preprocess --data cohort --out store --downsample 4 --log-level warn
[ -f store/manifest.json ] || fail "no manifest"
"$lddpm" inspect store --json > inspect.json
model=(--base-channels 4 --channel-mult 1,2 --attention-levels "" --groups 2 --timesteps 20)
"${mpi[@]}" "$lddpm" train --store store --run run --steps 4 --batch 2 --patch 16 --warmup 1 \
  --checkpoint-every 2 --log-every 1 "${model[@]}" --log-level warn
[ "$(wc -l < run/metrics.jsonl)" -eq 4 ] || fail "metrics.jsonl does not have 4 rows"
grep -q '"state": "finished"' run/status.json || fail "run not finished"
[ -d run/checkpoints/step-00000004 ] || fail "no final checkpoint"
# All 3 scans, dealt to ranks: every volume must come out byte-identical on 1 and 2 ranks.
# --batch 1 (default) whatever the threads per rank; --batch 2 (oneDNN, whose reductions depend
# on the thread count) at equal threads per rank: rank 0 samples cases 1-2, rank 1 case 3.
"${mpi[@]}" "$lddpm" sample --run run --store store --split all --out s2 --steps 3 --log-level warn
"$lddpm" sample --run run --store store --split all --out s1 --steps 3 --log-level warn
"${mpi[@]}" "$lddpm" sample --run run --store store --split all --batch 2 --threads 1 --out b2 \
  --steps 3 --log-level warn
"$lddpm" sample --run run --store store --split all --batch 2 --threads 1 --out b1 --steps 3 \
  --log-level warn
[ "$(ls s1/synthetic/*.nii.gz | wc -l)" -eq 3 ] || fail "expected 3 sampled volumes"
for f in s1/synthetic/*.nii.gz; do
  cmp -s "$f" "s2/synthetic/$(basename "$f")" || fail "sampling differs between 1 and 2 ranks: $f"
  cmp -s "b1/synthetic/$(basename "$f")" "b2/synthetic/$(basename "$f")" ||
    fail "batch-2 sampling differs between 1 and 2 ranks: $(basename "$f")"
done
[ -f s2/overview.png ] || fail "no overview.png"
"$lddpm" evaluate images --real s2/real --synthetic s2/synthetic --mask s2/lesion \
  --brain-mask s2/brain --json > eval.json
"$python" - <<'PY'
import json, math
cases = json.load(open("eval.json"))["cases"]
assert len(cases) == 3, cases
for case in cases:
    for key in ("mse", "mae", "psnr", "ssim", "ms_ssim", "ms_ssim_scales", "lesion_mae", "brain_mae"):
        assert key in case, key
    assert math.isfinite(case["mse"]) and case["mse"] > 0
PY
"$lddpm" export --run run --out weights.pt > /dev/null
"$python" - "$work" <<'PY'
import sys, torch
d = torch.load("weights.pt")
assert isinstance(d, dict) and len(d) > 10, type(d)
assert any(k.endswith("in_conv.weight") for k in d), list(d)[:5]
assert all(torch.isfinite(v.float()).all() for v in d.values())
PY
echo "e2e: ok (phantom, preprocess, train, sample x2 identical, evaluate, export)"
