#!/usr/bin/env bash
# End-to-end test of the paper's table (launch/reproduce.sh) at a tiny size: phantom (2 training
# subjects x 2 timepoints, 2 test subjects, 4 mm grid) -> 2 seeds x (3 generators + 2 ablations,
# 2 steps each) under mpirun -n 2 -> image metrics -> downstream segmentation (3-step segmenters)
# -> results.md/json/csv and montage.png, and seed 1 beyond the training masks (launch/beyond.sh
# at k = 1, 2 sets of each kind). Recomputes every mean and sd over seeds with numpy from
# the per-seed files the stages wrote, each lesion-wise F1 from the per-case lesion counts, and the
# verdict of each of the paper's claims from those numbers; checks the parameter counts against
# `lddpm models`, the montage's size, that a rerun reuses every stage and rewrites the same table,
# and usage errors (exit 2 naming the option). The transplanted masks are checked with h5py and
# scipy: each subject's lesion components are some other patient's, in the host's brain and at
# least half in its white matter; the extra cohort sits on the real store's grid.
#   reproduce.sh LDDPM_BINARY MPIEXEC PYTHON
set -euo pipefail
lddpm=$1 mpiexec=$2 python=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
e2e_name=reproduce
source "$root/tests/e2e/common.sh"  # scratch folder, fail, expect_usage

tiny_model="--base-channels 4 --channel-mult 1,2 --attention-levels 1 --attention-heads 1 --groups 2"
tiny_model+=" --modulation-hidden 4 --disc-channels 4"
tiny="$tiny_model --patch 16 --batch 2 --warmup 1 --checkpoint-every 2"
seg_tiny="--steps 3 --checkpoint-every 3 --log-every 1 --base-channels 4 --channel-mult 1,2"
seg_tiny+=" --groups 2 --patch 16 --batch 2 --warmup 1 --log-level warn"
run_reproduce() {
  bash "$root/launch/reproduce.sh" --lddpm "$lddpm" --out rep --train-subjects 2 --test-subjects 2 \
    --downsample 4 --seeds 0,1 --steps 2 --ranks 2 --train-options "$tiny" --seg-options "$seg_tiny" \
    --beyond 1 --beyond-sizes 1,2
}
run_reproduce > first.log 2>&1 || { cat first.log >&2; fail "reproduce.sh failed"; }
for f in results.md results.json results.csv montage.png setup.json; do
  [ -s "rep/$f" ] || fail "no rep/$f"
done

"$python" - "$lddpm" "$tiny_model" <<'PY'
import csv, json, math, subprocess, sys
import numpy as np
import matplotlib.image as mpimg

lddpm, tiny = sys.argv[1], sys.argv[2].split()
res = json.load(open("rep/results.json"))
seeds = [0, 1]
assert res["setup"]["seeds"] == seeds, res["setup"]
names = ["lesion-ddpm", "cond-ddpm", "pix2pix", "ablation-mask-input", "ablation-lesion-weight-0"]
assert list(res["setup"]["generators"]) == names, res["setup"]["generators"]

def close(a, b):
    return (a is None and b is None) or abs(a - b) <= 1e-9 * max(1.0, abs(b))

def mean_sd(values):
    v = np.array(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1))

# Image metrics: mean and sample sd over the seeds, from each seed's images.json.
images = {s: {g["name"]: g["mean"] for g in json.load(open(f"rep/seed-{s}/images/images.json"))["generators"]}
          for s in seeds}
assert set(images[0]) == set(names + ["twin", "constant", "class mean"]), set(images[0])
for n in names + ["twin", "constant", "class mean"]:
    for k in ("brain_ssim", "brain_mae", "lesion_mae", "lesion_contrast", "ms_ssim"):
        m, sd = mean_sd([images[s][n][k] for s in seeds])
        got = res["images"]["summary"][n][k]
        assert close(got["mean"], m) and close(got["sd"], sd), (n, k, got, m, sd)
# The references do not depend on the seed; the generators' samples do.
assert images[0]["class mean"] == images[1]["class mean"]
assert images[0]["lesion-ddpm"]["brain_mae"] != images[1]["lesion-ddpm"]["brain_mae"]

# Downstream: Dice over seeds and lesion-wise F1 pooled over the test cases from the counts.
rows = ["real", "lesion-ddpm", "cond-ddpm", "pix2pix", "real+lesion-ddpm", "real+cond-ddpm", "real+pix2pix"]
seg = {s: {r["name"]: r for r in json.load(open(f"rep/seed-{s}/downstream/downstream.json"))["runs"]}
       for s in seeds}
assert list(seg[0]) == rows, list(seg[0])
assert [seg[0][n]["training_scans"] for n in rows] == [4, 4, 4, 4, 8, 8, 8]
for n in rows:
    dice = mean_sd([seg[s][n]["mean"]["dice"] for s in seeds])
    got = res["downstream"]["summary"][n]["dice"]
    assert close(got["mean"], dice[0]) and close(got["sd"], dice[1]), (n, got, dice)
    for s in seeds:
        cases = seg[s][n]["cases"]
        lesions = sum(c["lesions"] for c in cases)
        detected = sum(c["detected_lesions"] for c in cases)
        predicted = sum(c["predicted_lesions"] for c in cases)
        true_predicted = sum(round((c["lesion_precision"] or 0) * c["predicted_lesions"]) for c in cases)
        if predicted == 0:
            f1 = 0.0
        else:
            tp_rate, precision = detected / lesions, true_predicted / predicted
            f1 = 0.0 if tp_rate + precision == 0 else 2 * tp_rate * precision / (tp_rate + precision)
        assert close(res["downstream"]["per_seed"][str(s)][n]["lesion_f1"], f1), (n, s, f1)

# The claims' verdicts follow from the means.
m = lambda table, n, k: res[table]["summary"][n][k]["mean"]
claims = res["claims"]
assert claims[0]["holds"] == (m("images", "lesion-ddpm", "lesion_mae") <
                              min(m("images", g, "lesion_mae") for g in ("cond-ddpm", "pix2pix")))
assert claims[1]["holds"] == (m("downstream", "lesion-ddpm", "dice") >
                              max(m("downstream", g, "dice") for g in ("cond-ddpm", "pix2pix")))
assert claims[2]["holds"] == (m("downstream", "real+lesion-ddpm", "dice") > m("downstream", "real", "dice"))
md = open("rep/results.md").read()
for c in claims:
    assert ("holds" if c["holds"] else "does not hold") in md.split(c["claim"])[1].split("\n")[0]
for n in names + rows:
    assert f"| {n} |" in md or f"| **{n}** |" in md, n

# Parameter counts: what `lddpm models` says of each generator's configuration.
extra = {"lesion-ddpm": [], "cond-ddpm": ["--model", "cond-ddpm", "--base-channels", "10", "--groups", "5",
         "--attention-heads", "5"], "pix2pix": ["--model", "pix2pix", "--base-channels", "10", "--groups", "5",
         "--attention-heads", "5", "--disc-channels", "10"], "ablation-mask-input": ["--mask-sites", "input"],
         "ablation-lesion-weight-0": ["--lesion-weight", "0"]}
def merged(*lists):  # as reproduce.sh merges them: a later --key value replaces an earlier one
    values = {}
    for words in lists:
        values.update(zip(words[::2], words[1::2]))
    return [w for kv in values.items() for w in kv]
for n, options in extra.items():
    table = json.loads(subprocess.run([lddpm, "models", "--json", *merged(options, tiny)],
                                      capture_output=True, text=True, check=True).stdout)
    model = options[1] if options[:1] == ["--model"] else "lesion-ddpm"
    entry = next(e for e in table if e["name"] == model)
    want = entry["groups"].get("generator", entry["parameters"])
    assert res["parameters"][n] == want, (n, res["parameters"][n], want)
assert res["parameters"]["ablation-lesion-weight-0"] == res["parameters"]["lesion-ddpm"]
assert res["parameters"]["ablation-mask-input"] < res["parameters"]["lesion-ddpm"]

# CSV: every per-seed number once.
with open("rep/results.csv") as f:
    csv_rows = list(csv.DictReader(f))
beyond_rows = ["real"] + [f"real+{k}-{n}x" for k in ("resynth", "transplant", "extra") for n in (1, 2)]
assert len(csv_rows) == len(seeds) * (8 * 10 + 4 + 7 * 4) + len(beyond_rows) * 2, len(csv_rows)
# Montage: one row per test case, real + 5 generators + mask as columns (wider than tall).
image = mpimg.imread("rep/montage.png")
assert image.ndim == 3 and image.shape[1] > image.shape[0], image.shape
print("checked", len(names), "generators x", len(seeds), "seeds,", len(rows), "segmenters")

# Beyond the training masks (seed 1): the table from beyond.json, set sizes, the stores.
b = res["beyond"]
assert b["seeds"] == [1] and b["rows"] == beyond_rows, (b["seeds"], b["rows"])
runs = {r["name"]: r for r in json.load(open("rep/seed-1/beyond/beyond.json"))["runs"]}
assert list(runs) == beyond_rows, list(runs)
for n in beyond_rows:
    sets = 0 if n == "real" else int(n.rsplit("-", 1)[1].rstrip("x"))
    assert runs[n]["training_scans"] == 4 + 4 * sets, (n, runs[n]["training_scans"])
    dice = float(np.mean([c["dice"] for c in runs[n]["cases"]]))
    assert close(b["summary"][n]["dice"]["mean"], dice), (n, dice)
assert runs["real"]["cases"] == seg[1]["real"]["cases"]  # the downstream's real segmenter
assert "## Beyond the training masks" in md and "| real+extra-2x | 12 |" in md
PY

"$python" - <<'PY' || fail "beyond: the derived stores are wrong"
import glob, json
from collections import Counter
import h5py, numpy as np
from scipy import ndimage as nd

def subjects(store):
    out = {}
    for shard in sorted(glob.glob(f"{store}/shard-*.h5")):
        with h5py.File(shard, "r") as f:
            for sid, g in f["subjects"].items():
                patient = g.attrs["patient"]
                out[sid] = {"tissue": g["tissue"][()], "lesion": g["lesion"][()],
                            "patient": patient.decode() if isinstance(patient, bytes) else str(patient)}
    return out

def sizes(mask):
    labels, n = nd.label(mask, structure=np.ones((3, 3, 3)))
    return sorted(np.bincount(labels.ravel())[1:].tolist()), labels, n

real = {k: v for k, v in subjects("rep/store").items() if "_" in k}  # train ids: P1_T1 ...
real_sizes = {k: sizes(d["lesion"])[0] for k, d in real.items()}
warnings = {line.split(": lesions of")[0].split()[-1]: line for line in open("first.log")
            if ": lesions of" in line}
dropped = 0
for j in (1, 2):
    tp = subjects(f"rep/beyond-shared/transplant-{j}")
    assert sorted(tp) == sorted(f"{k}_tp{j}" for k in real), sorted(tp)
    for sid, s in tp.items():
        host = real[sid[: -len(f"_tp{j}")]]
        assert (s["tissue"] == host["tissue"]).all(), sid
        got, labels, n = sizes(s["lesion"])
        # Components are moved whole: the sizes are another patient's scan's, all of them or, when
        # one fitted nowhere, a part of them (a sub-multiset) and a warning naming the scan says
        # how many.
        donors = [real_sizes[k] for k, d in real.items() if d["patient"] != host["patient"]]
        assert any(not Counter(got) - Counter(d) for d in donors), (sid, got, donors)
        if not any(got == d for d in donors):
            assert sid in warnings and "components placed" in warnings[sid], sid
            dropped += 1
        brain = (host["tissue"] > 0) | (host["lesion"] > 0)
        wm = (host["tissue"] == 3) | (host["lesion"] > 0)
        assert brain[s["lesion"] > 0].all(), sid
        for c in range(1, n + 1):
            assert 2 * wm[labels == c].sum() >= (labels == c).sum(), (sid, c)
grid = json.load(open("rep/store/manifest.json"))["grid"]
for j in (1, 2):
    extra = json.load(open(f"rep/beyond-shared/extra-store-{j}/manifest.json"))
    assert extra["grid"] == grid, (extra["grid"], grid)
merged = json.load(open("rep/seed-1/beyond/stores/real+extra-2x/manifest.json"))
ids = sorted(s["id"] for s in merged["subjects"])
assert len(ids) == 12 and sum(i.endswith("_extra1_syn") for i in ids) == 4, ids
assert sum(i.endswith("_extra2_syn") for i in ids) == 4, ids
print(f"beyond: transplant, extra and merged stores checked ({dropped} transplanted scans with a "
      "component that fitted nowhere, each warned about)")
PY

# A rerun reuses every stage and rewrites the same numbers.
cp rep/results.json first.json
run_reproduce > second.log 2>&1 || { cat second.log >&2; fail "rerun failed"; }
awk '/^== (train|sample|seg)/ && !/done before/ { redone = 1 } END { exit !redone }' second.log &&
  { cat second.log >&2; fail "rerun redid a stage"; }
"$python" - <<'PY' || fail "rerun changed the numbers"
import json
a, b = json.load(open("first.json")), json.load(open("rep/results.json"))
for k in ("images", "downstream", "claims", "parameters"):
    assert a[k] == b[k], k
PY

# The nnU-Net export (launch/export_dataset.py) of two generators' test samples with the real
# scans, checked against nnU-Net's documented raw layout by an independent reader; bad input.
s=rep/seed-0/samples
export_to() { "$python" "$root/launch/export_dataset.py" --out "$@"; }
export_to nnunet/Dataset501_Phantom --samples "lesion-ddpm=$s/lesion-ddpm" \
  --samples "cond-ddpm=$s/cond-ddpm" --with-real > export.log 2>&1 || { cat export.log >&2; fail "export failed"; }
"$python" "$root/tests/e2e/nnunet_check.py" nnunet/Dataset501_Phantom "lesion-ddpm=$s/lesion-ddpm" \
  "cond-ddpm=$s/cond-ddpm" --with-real || fail "the nnU-Net export is not a valid dataset"
cp -r "$s/pix2pix" broken
missing=$(ls broken/lesion | head -1)
rm "broken/lesion/$missing"
code=0
export_to nnunet/Dataset502_Broken --samples pix2pix=broken > export.log 2>&1 || code=$?
[ "$code" -eq 1 ] && grep -q "lesion/${missing%%.*}" export.log || { cat export.log >&2; fail "missing mask: exit $code"; }
[ "$(ls -A nnunet)" = Dataset501_Phantom ] || fail "a failed export left files: $(ls -A nnunet)"
code=0
export_to nnunet/Dataset501_Phantom --samples pix2pix="$s/pix2pix" > export.log 2>&1 || code=$?
[ "$code" -eq 2 ] && grep -q -- "--out" export.log || fail "an existing --out: exit $code"

# The ready GPU configuration: the baseline widths its header gives match Lesion-DDPM's parameter
# count (within 2 %), counted by reproduce.py's own reader of a run's config.ini.
"$python" - "$lddpm" "$root" <<'PY' || fail "launch/configs/reproduce-gpu.ini: baselines not matched"
import os, re, shlex, sys, tempfile
lddpm, root = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(root, "launch"))
from reproduce import parameter_count
ini = open(os.path.join(root, "launch", "configs", "reproduce-gpu.ini")).read()
settings = dict(re.findall(r"^([a-z0-9-]+) = (.*)$", ini, re.M))
baselines = dict(re.findall(r'--options (\S+?)="([^"]*)"', ini))
assert set(baselines) == {"cond-ddpm", "pix2pix"}, baselines
counts = {}
for name, options in [("lesion-ddpm", "")] + sorted(baselines.items()):
    run = dict(settings)
    words = shlex.split(options)
    run.update({k[2:]: v for k, v in zip(words[::2], words[1::2])})
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.ini"), "w") as f:
            f.write("".join(f"{k} = {v}\n" for k, v in run.items()))
        counts[name] = parameter_count(lddpm, d)
assert counts["lesion-ddpm"] > 10_000_000, counts
for name in baselines:
    assert abs(counts[name] / counts["lesion-ddpm"] - 1) <= 0.02, counts
print("reproduce-gpu.ini:", counts)
PY

# Usage errors name the option.
expect_usage "--seeds" bash "$root/launch/reproduce.sh" --lddpm "$lddpm" --out x --seeds 1,a
expect_usage "--steps" bash "$root/launch/reproduce.sh" --lddpm "$lddpm" --out x --steps 0
expect_usage "--options" bash "$root/launch/reproduce.sh" --lddpm "$lddpm" --out x --options gan=--x
expect_usage "--device" bash "$root/launch/reproduce.sh" --lddpm "$lddpm" --out x --device tpu
expect_usage "--data" bash "$root/launch/reproduce.sh" --lddpm "$lddpm" --out x --data /nonexistent
expect_usage "--beyond" bash "$root/launch/reproduce.sh" --lddpm "$lddpm" --out x --seeds 0 --beyond 1
expect_usage "--sizes" bash "$root/launch/beyond.sh" --lddpm "$lddpm" --store rep/store \
  --run rep/seed-0/runs/lesion-ddpm --out x --sizes 0
expect_usage "--bogus" bash "$root/launch/reproduce.sh" --lddpm "$lddpm" --bogus
echo "e2e reproduce: ok ($(grep -o 'reproduce finished in [0-9]* s' first.log))"
