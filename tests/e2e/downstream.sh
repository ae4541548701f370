#!/usr/bin/env bash
# End-to-end test of the downstream-segmentation experiment (launch/downstream.sh) at tiny sizes:
# phantom -> preprocess -> two tiny generators (lesion-ddpm, pix2pix) -> downstream.sh with 2 ranks
# (sample the training masks, build the synthetic and real + synthetic stores, train seg on the
# four sets, score them on the real test split). Checks the table; recomputes every Dice and lesion
# count with numpy/scipy from the saved predictions and the store's masks (h5py); checks that a
# synthetic store holds the sampled volumes on the source masks, that 1-rank scoring equals the
# 2-rank table, that a rerun reuses every stage, and usage errors (exit 2 naming the option).
#   downstream.sh LDDPM_BINARY MPIEXEC PYTHON
set -euo pipefail
lddpm=$1 mpiexec=$2 python=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
e2e_name=downstream
source "$root/tests/e2e/common.sh"  # scratch folder, fail, expect_usage

"$lddpm" phantom --out cohort --train-subjects 2 --test-subjects 2 --timepoints 1 --voxel-size 2 \
  --seed 5 --log-level warn
"$lddpm" preprocess --data cohort --out store --downsample 4 --log-level warn
tiny=(--base-channels 4 --channel-mult 1,2 --attention-levels "" --groups 2 --patch 16 --batch 2
      --warmup 1 --log-level warn)
"$lddpm" train --store store --run gen-ddpm --model lesion-ddpm --timesteps 20 --steps 2 "${tiny[@]}"
"$lddpm" train --store store --run gen-p2p --model pix2pix --steps 2 "${tiny[@]}"

run_downstream() {
  bash "$root/launch/downstream.sh" --lddpm "$lddpm" --store store --out ds --ranks 2 \
    --generator lesion-ddpm=gen-ddpm --generator pix2pix=gen-p2p --sample-steps 2 \
    -- --steps 3 --checkpoint-every 3 --log-every 1 "${tiny[@]}"
}
run_downstream > first.log 2>&1 || { cat first.log >&2; fail "downstream.sh failed"; }
[ -f ds/downstream.md ] && [ -f ds/downstream.json ] || fail "no downstream.md/json"
[ "$(grep -c '^| real\|^| lesion-ddpm\|^| pix2pix' ds/downstream.md)" -ge 4 ] || fail "table rows"

"$python" - <<'PY'
import glob, json, math, os
import h5py, nibabel as nib, numpy as np, scipy.ndimage as nd

table = json.load(open("ds/downstream.json"))
runs = {r["name"]: r for r in table["runs"]}
assert list(runs) == ["real", "lesion-ddpm", "pix2pix", "real+lesion-ddpm"], list(runs)
assert [runs[n]["training_scans"] for n in runs] == [2, 2, 2, 4], [r["training_scans"] for r in runs.values()]

def subjects(store):
    m = json.load(open(f"{store}/manifest.json"))
    return {s["id"]: (f"{store}/{s['shard']}", s["split"]) for s in m["subjects"]}

def dataset(store, sid, name):
    shard, _ = subjects(store)[sid]
    with h5py.File(shard, "r") as f:
        return f[f"subjects/{sid}/{name}"][()]

def nifti(path):  # lddpm writes [z, y, x]; nibabel reads (x, y, z)
    return np.asarray(nib.load(path).dataobj).transpose(2, 1, 0)

tests = sorted(i for i, (_, split) in subjects("store").items() if split == "test")
full = np.ones((3, 3, 3))
for name, run in runs.items():
    assert [c["case"] for c in run["cases"]] == tests, run["cases"]
    dices = []
    for case in run["cases"]:
        pred = nifti(f"ds/evaluation/predictions/{name}/{case['case']}.nii.gz") > 0
        true = dataset("store", case["case"], "lesion") > 0
        size = pred.sum() + true.sum()
        dice = 1.0 if size == 0 else 2.0 * (pred & true).sum() / size
        assert abs(case["dice"] - dice) < 1e-12, (name, case, dice)
        tl, tn = nd.label(true, structure=full)
        pl, pn = nd.label(pred, structure=full)
        assert case["lesions"] == tn and case["predicted_lesions"] == pn, (case, tn, pn)
        detected = len(set(tl[pred & true].tolist()))
        assert case["detected_lesions"] == detected, (case, detected)
        dices.append(dice)
    mean = sum(dices) / len(dices)
    sd = math.sqrt(sum((d - mean) ** 2 for d in dices) / (len(dices) - 1))
    assert abs(run["mean"]["dice"] - mean) < 1e-12 and abs(run["sd"]["dice"] - sd) < 1e-12, run

# A synthetic store: the sampled volume on the source subject's masks, id <id>_syn, train only.
syn = subjects("ds/stores/lesion-ddpm")
train = sorted(i for i, (_, split) in subjects("store").items() if split == "train")
assert sorted(syn) == [t + "_syn" for t in train], sorted(syn)
mixed = subjects("ds/stores/real+lesion-ddpm")
assert sorted(mixed) == sorted(train + [t + "_syn" for t in train]), sorted(mixed)
for t in train:
    image = dataset("ds/stores/lesion-ddpm", t + "_syn", "image")
    sampled = nifti(f"ds/samples/lesion-ddpm/synthetic/{t}.nii.gz")
    assert image.shape == (1,) + sampled.shape and np.array_equal(image[0], sampled.astype(np.float32))
    for d in ("lesion", "tissue", "patch_index"):
        assert np.array_equal(dataset("ds/stores/lesion-ddpm", t + "_syn", d), dataset("store", t, d)), d
    assert np.array_equal(dataset("ds/stores/real+lesion-ddpm", t, "image"), dataset("store", t, "image"))
print("checked", len(runs), "runs x", len(tests), "test cases")
PY

# Scoring on 1 rank gives exactly what the script's 2-rank scoring gave.
"$lddpm" evaluate segmentation --store store --split test --run real=ds/seg/real \
  --run pix2pix=ds/seg/pix2pix --json --log-level warn > one-rank.json
"$python" - <<'PY'
import json
two = {r["name"]: r["cases"] for r in json.load(open("ds/downstream.json"))["runs"]}
for r in json.load(open("one-rank.json"))["runs"]:
    assert r["cases"] == two[r["name"]], (r["name"], r["cases"], two[r["name"]])
PY

# The synthetic + real training scans in the MSLesSeg layout (launch/export_dataset.py): checked
# by an independent reader, and by lddpm's own MSLesSeg discovery, which must miss only the T1
# and T2 scans that no generator makes.
"$python" "$root/launch/export_dataset.py" --layout mslesseg --out mslesseg \
  --samples lesion-ddpm=ds/samples/lesion-ddpm --samples pix2pix=ds/samples/pix2pix --with-real \
  > export.log 2>&1 || { cat export.log >&2; fail "MSLesSeg export failed"; }
"$python" "$root/tests/e2e/mslesseg_check.py" mslesseg 6 || fail "the MSLesSeg export is not valid"
code=0
"$lddpm" inspect mslesseg > inspect.txt 2>&1 || code=$?
[ "$code" -eq 1 ] && grep -q "incomplete (12 problems)" inspect.txt &&
  [ "$(grep -c 'missing T[12] (expected P[0-9]*_T1_T[12].nii.gz)' inspect.txt)" -eq 12 ] ||
  { cat inspect.txt >&2; fail "lddpm inspect does not read the export as MSLesSeg missing T1/T2"; }

# A rerun reuses every stage and rewrites the same table.
cp ds/downstream.json first.json
run_downstream > second.log 2>&1 || { cat second.log >&2; fail "rerun failed"; }
[ "$(grep -c 'done before, reused' second.log)" -eq 10 ] || { cat second.log >&2; fail "rerun redid a stage"; }
cmp -s first.json ds/downstream.json || fail "rerun changed downstream.json"

# Usage errors name the option.
expect_usage "--store" bash "$root/launch/downstream.sh" --lddpm "$lddpm" --out x --generator a=gen-ddpm
expect_usage "--generator" bash "$root/launch/downstream.sh" --lddpm "$lddpm" --store store --out x \
  --generator nodir
expect_usage "--mix" bash "$root/launch/downstream.sh" --lddpm "$lddpm" --store store --out x \
  --generator a=gen-ddpm --mix b
expect_usage "--source-store" "$lddpm" preprocess --samples ds/samples/pix2pix --out x
expect_usage "--downsample" "$lddpm" preprocess --samples ds/samples/pix2pix --source-store store \
  --out x --downsample 2
expect_usage "--run" "$lddpm" evaluate segmentation --run gen-ddpm --store store
expect_usage "--save-predictions" "$lddpm" evaluate segmentation --run ds/seg/real --store store \
  --save-predictions
echo "e2e downstream: ok ($(grep -o 'finished in [0-9]* s' first.log))"
