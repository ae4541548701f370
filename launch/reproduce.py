#!/usr/bin/env python3
"""The tables of launch/reproduce.sh (docs/reproduce.md), from the files its stages wrote.

Reads OUT/setup.json, each generator's config.ini (parameter counts through `lddpm models`), and per seed OUT/seed-S/images/images.json
(`lddpm evaluate images`) and OUT/seed-S/downstream/downstream.json (`lddpm evaluate
segmentation` through launch/downstream.sh), and for the --beyond seeds OUT/seed-S/beyond/beyond.json
(launch/beyond.sh). Writes, each whole or not at all:
  results.md    mean ± sample sd over seeds: image metrics, downstream Dice and lesion-wise F1,
                the paper's three claims checked, the command, machine and stage times
  results.json  every number (per seed and the summaries)
  results.csv   one row per (table, row, metric, seed) in long form
  montage.png   real | each generator | lesion mask, the same axial slice per test case (seed 0)

  python3 launch/reproduce.py --out OUT [--lddpm BINARY] [--seconds S]
"""
import argparse
import csv
import glob
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import tempfile

IMAGE_METRICS = [  # (key in images.json, column), brain-masked unless the name says otherwise
    ("brain_ssim", "brain SSIM"), ("brain_psnr", "brain PSNR"), ("brain_mae", "brain MAE"),
    ("ms_ssim", "MS-SSIM"), ("ssim", "SSIM (grid)"), ("lesion_mae", "lesion MAE"),
    ("lesion_contrast", "lesion−WM"), ("csf_contrast", "CSF−WM"), ("gm_contrast", "GM−WM"),
    ("wm_texture", "WM texture")]
CONTRASTS = ["lesion_contrast", "csf_contrast", "gm_contrast", "wm_texture"]
REFERENCES = ["twin", "constant", "class mean"]
GENERATORS = ["lesion-ddpm", "cond-ddpm", "pix2pix"]
SEG_METRICS = [("dice", "Dice"), ("lesion_f1", "lesion F1"),
               ("lesion_sensitivity", "lesion sensitivity"), ("lesion_precision", "lesion precision")]


def write_whole(path, text_or_bytes):
    """Write to a temporary beside PATH and rename: a reader never sees half a file."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(text_or_bytes if isinstance(text_or_bytes, bytes) else text_or_bytes.encode())
    os.replace(tmp, path)


def summary(values):
    """Mean and sample sd over seeds; None entries (undefined figures) are left out."""
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
            "n": len(v)}


def cell(s, digits=3):
    if s["mean"] is None:
        return "n/a"
    if s["n"] < 2:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def pooled_lesion_f1(cases):
    """Lesion-wise F1 over all test cases of one run: detected true lesions / all true lesions
    (sensitivity) and true-positive predicted lesions / all predicted lesions (precision), each
    pooled over the cases, then their harmonic mean."""
    lesions = sum(c["lesions"] for c in cases)
    detected = sum(c["detected_lesions"] for c in cases)
    predicted = sum(c["predicted_lesions"] for c in cases)
    hits = sum((c["lesion_precision"] or 0.0) * c["predicted_lesions"] for c in cases)
    if lesions == 0 or predicted == 0:
        return None if lesions == 0 else 0.0
    sensitivity, precision = detected / lesions, hits / predicted
    return 0.0 if sensitivity + precision == 0 else 2 * sensitivity * precision / (sensitivity + precision)


def shaping_options(lddpm):
    """The options `lddpm models` takes that shape a model (from its --help)."""
    usage = subprocess.run([lddpm, "models", "--help"], capture_output=True, text=True, check=True)
    return set(re.findall(r"^\s+--([a-z0-9-]+)", usage.stdout, re.M)) - {
        "json", "config", "help", "log-level", "log-all-ranks", "threads",
        # a buffer, not parameters; and `lddpm models` also lists seg, which refuses it
        "intensity-prior"}


def parameter_count(lddpm, run, model_keys=None):
    """The generator's parameters as trained: `lddpm models` given the model options of the run's
    resolved config.ini (pix2pix: its generator group, without the discriminator). MODEL_KEYS:
    shaping_options(lddpm), read once by a caller that counts several runs."""
    if model_keys is None:
        model_keys = shaping_options(lddpm)
    settings, model = [], None
    for line in open(os.path.join(run, "config.ini")):
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key in model_keys:
            settings.append(f"{key} = {value.strip()}")
            if key == "model":
                model = value.strip()
    with tempfile.NamedTemporaryFile("w", suffix=".ini") as ini:
        ini.write("\n".join(settings) + "\n")
        ini.flush()
        listed = subprocess.run([lddpm, "models", "--config", ini.name, "--json", "--log-level",
                                 "warn"], capture_output=True, text=True)
        if listed.returncode != 0:
            raise SystemExit(f"reproduce.py: `lddpm models` refused the model options of "
                             f"{run}/config.ini: {listed.stderr.strip()}")
        table = json.loads(listed.stdout)
    entry = next(e for e in table if e["name"] == model)
    return entry["groups"].get("generator", entry["parameters"])


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{os.cpu_count()} cores ({cpu})" + (f", GPU {gpu}" if gpu else "")


def stage_seconds(out):
    seconds = {}
    for path in sorted(glob.glob(os.path.join(out, ".done-*"))):
        try:
            seconds[os.path.basename(path)[len(".done-"):]] = int(open(path).read().strip())
        except ValueError:
            pass
    return seconds


def montage(out, setup, names, path):
    """Real | each generator | lesion mask on the axial slice with the most lesion voxels, one row
    per test case, from the first seed's samples; grey levels shared by the whole figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    import numpy as np

    seed_dir = os.path.join(out, f"seed-{setup['seeds'][0]}", "samples")
    first = os.path.join(seed_dir, names[0])
    cases = sorted(os.path.basename(p) for p in glob.glob(os.path.join(first, "real", "*.nii*")))
    if not cases:
        return False
    load = lambda *p: np.asanyarray(nib.load(os.path.join(*p)).dataobj, dtype=np.float32)
    columns = ["real"] + names + ["lesion mask"]
    fig, axes = plt.subplots(len(cases), len(columns), squeeze=False,
                             figsize=(1.6 * len(columns), 1.9 * len(cases)))
    for row, case in enumerate(cases):
        real = load(first, "real", case)
        lesion = load(first, "lesion", case) > 0
        per_slice = lesion.reshape(-1, lesion.shape[-1]).sum(0)
        z = int(per_slice.argmax()) if per_slice.max() > 0 else lesion.shape[-1] // 2
        lo, hi = np.percentile(real, 0.5), np.percentile(real, 99.5)
        images = [real] + [load(seed_dir, n, "synthetic", case) for n in names] + [lesion]
        for col, image in enumerate(images):
            ax = axes[row][col]
            image_slice = np.rot90(image[:, :, z])
            if col == len(images) - 1:
                ax.imshow(image_slice, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(image_slice, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=7)
        axes[row][0].set_ylabel(case.split(".")[0], fontsize=6)
    fig.tight_layout(pad=0.2)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_whole(path, buffer.getvalue())
    return True


def beyond_tables(out, seeds):
    """The experiment beyond the training masks (launch/beyond.sh) for the seeds that ran it:
    per seed each training set's Dice, lesion-wise F1 and per-case Dice, plus its stage seconds
    (the seed's beyond/ markers and the shared ones). None when no seed ran it."""
    done = [s for s in seeds if os.path.exists(os.path.join(out, f"seed-{s}", "beyond", "beyond.json"))]
    if not done:
        return None
    per_seed, seconds = {}, {}
    for s in done:
        folder = os.path.join(out, f"seed-{s}", "beyond")
        runs = json.load(open(os.path.join(folder, "beyond.json")))["runs"]
        per_seed[s] = {r["name"]: {"dice": r["mean"]["dice"], "dice_sd_cases": r["sd"]["dice"],
                                   "lesion_f1": pooled_lesion_f1(r["cases"]),
                                   "training_scans": r["training_scans"],
                                   "cases": {c["case"]: c["dice"] for c in r["cases"]}}
                       for r in runs}
        seconds[s] = sum(stage_seconds(folder).values())
    seconds["shared"] = sum(stage_seconds(os.path.join(out, "beyond-shared")).values())
    rows = list(per_seed[done[0]])
    summary_ = {n: {k: summary([per_seed[s][n][k] for s in done if n in per_seed[s]])
                    for k in ("dice", "lesion_f1")} for n in rows}
    return {"seeds": done, "rows": rows, "per_seed": per_seed, "summary": summary_,
            "stage_seconds": seconds}


def print_beyond(p, beyond):
    seeds = beyond["seeds"]
    one = len(seeds) == 1
    p("## Beyond the training masks: seg trained on real + k synthetic sets of Lesion-DDPM")
    p()
    p("Each set holds one synthetic scan per real training scan; `real+KIND-kx` trains on the real "
      "scans and k sets of KIND: `resynth` = the training masks sampled again (other noise), "
      "`transplant` = each training anatomy with another patient's lesions moved into its white "
      "matter, `extra` = the masks of new phantom subjects. Every segmenter has the same options "
      "and steps (docs/reproduce.md). Dice on the real test scans, "
      + (f"seed {seeds[0]}: mean ± sd over the test scans; lesion-wise F1 pooled over them."
         if one else f"mean ± sd over seeds {seeds}."))
    p()
    p("| training set | scans | Dice | lesion F1 | Dice − real |")
    p("|---|---:|---:|---:|---:|")
    first = beyond["per_seed"][seeds[0]]
    real = beyond["summary"].get("real", {}).get("dice", {}).get("mean")
    for n in beyond["rows"]:
        if one:
            r = first[n]
            dice = f"{r['dice']:.3f} ± {r['dice_sd_cases']:.3f}"
            f1 = "n/a" if r["lesion_f1"] is None else f"{r['lesion_f1']:.3f}"
        else:
            dice, f1 = cell(beyond["summary"][n]["dice"]), cell(beyond["summary"][n]["lesion_f1"])
        gain = beyond["summary"][n]["dice"]["mean"]
        delta = "" if real is None or n == "real" else f"{gain - real:+.3f}"
        p(f"| {n} | {first[n]['training_scans']} | {dice} | {f1} | {delta} |")
    p()
    p("Stage times (s): " + ", ".join(f"seed {k} {v}" if k != "shared" else f"shared {v}"
                                      for k, v in beyond["stage_seconds"].items()) + ".")
    p()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--lddpm", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "..", "build", "launch", "lddpm"))
    parser.add_argument("--seconds", type=int, default=None, help="wall time of this invocation")
    a = parser.parse_args()
    out = a.out
    setup = json.load(open(os.path.join(out, "setup.json")))
    names = list(setup["generators"])
    seeds = setup["seeds"]

    keys = shaping_options(a.lddpm)
    parameters = {n: parameter_count(a.lddpm, os.path.join(out, f"seed-{seeds[0]}", "runs", n), keys)
                  for n in names}

    per_seed_images, per_seed_seg, real_stats = {}, {}, {}
    for s in seeds:
        images = json.load(open(os.path.join(out, f"seed-{s}", "images", "images.json")))
        per_seed_images[s] = {g["name"]: g["mean"] for g in images["generators"]}
        real_stats[s] = images["real_statistics"]["mean"]
        seg = json.load(open(os.path.join(out, f"seed-{s}", "downstream", "downstream.json")))
        rows = {}
        for r in seg["runs"]:
            row = dict(r["mean"])
            row["lesion_f1"] = pooled_lesion_f1(r["cases"])
            row["training_scans"] = r["training_scans"]
            rows[r["name"]] = row
        per_seed_seg[s] = rows

    image_rows = [n for n in REFERENCES if n in per_seed_images[seeds[0]]] + names
    image_summary = {n: {k: summary([per_seed_images[s][n].get(k) for s in seeds])
                         for k, _ in IMAGE_METRICS} for n in image_rows}
    real_summary = {k: summary([real_stats[s].get(k) for s in seeds]) for k in CONTRASTS}
    seg_rows = list(per_seed_seg[seeds[0]])
    seg_summary = {n: {k: summary([per_seed_seg[s][n].get(k) for s in seeds]) for k, _ in SEG_METRICS}
                   for n in seg_rows}

    # The paper's claims, on the means over seeds.
    mean = lambda table, n, k: table[n][k]["mean"]
    claims = []
    lesion = {g: mean(image_summary, g, "lesion_mae") for g in GENERATORS}
    best_other = min((g for g in GENERATORS if g != "lesion-ddpm"), key=lambda g: lesion[g])
    claims.append({
        "claim": "1. Lesion-DDPM has the lowest lesion-region error (lesion MAE) of the generators",
        "holds": lesion["lesion-ddpm"] < lesion[best_other],
        "figures": ", ".join(f"{g} {cell(image_summary[g]['lesion_mae'])}" for g in GENERATORS)})
    dice = {n: mean(seg_summary, n, "dice") for n in seg_rows}
    competitor = max((g for g in GENERATORS if g != "lesion-ddpm"), key=lambda g: dice[g])
    claims.append({
        "claim": "2. seg trained on Lesion-DDPM's scans alone beats seg trained on the best "
                 "competitor's (paper: 0.616 vs 0.569)",
        "holds": dice["lesion-ddpm"] > dice[competitor],
        "figures": f"Dice lesion-ddpm {cell(seg_summary['lesion-ddpm']['dice'])}, best competitor "
                   f"{competitor} {cell(seg_summary[competitor]['dice'])}"})
    claims.append({
        "claim": "3. adding Lesion-DDPM's scans to the real ones raises Dice (paper: 0.685)",
        "holds": dice["real+lesion-ddpm"] > dice["real"],
        "figures": f"Dice real {cell(seg_summary['real']['dice'])}, real+lesion-ddpm "
                   f"{cell(seg_summary['real+lesion-ddpm']['dice'])}"})

    beyond = beyond_tables(out, setup.get("beyond") or [])
    seconds = stage_seconds(out)
    total = sum(seconds.values())
    host = machine()
    md = io.StringIO()
    p = lambda *x: print(*x, file=md)
    p("# The Lesion-DDPM paper's table, reproduced")
    p()
    p(f"Command: `{setup['command']}`  ")
    p(f"Machine: {host}; {setup['ranks']} rank(s), device {setup['device']}"
      + (f", launcher `{setup['launcher']}`" if setup["launcher"] else "") + "  ")
    p(f"Data: {setup['data']} (`--downsample {setup['downsample']}`); generators "
      f"{setup['steps']} steps of `{os.path.basename(setup['config'])}`; seeds {seeds}; "
      f"sum of stage times {total} s ({total / 60:.1f} min)"
      + (f", this invocation {a.seconds} s" if a.seconds is not None else "") + ".")
    p()
    p(f"## Images: the real test scans against each generator's samples of their masks "
      f"(mean ± sd over {len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
    p()
    p("Brain-masked except SSIM (grid); contrasts are the region's mean minus normal-appearing WM's; "
      "WM texture is the high-pass standard deviation in eroded WM (docs/metrics.md). twin, constant "
      "and class mean are the references (the same subject drawn again by the phantom; one "
      "constant; each class's mean training intensity).")
    p()
    p("| generator | parameters | " + " | ".join(h for _, h in IMAGE_METRICS) + " |")
    p("|---|---:|" + "---:|" * len(IMAGE_METRICS))
    p("| real | | " + " | ".join(cell(real_summary[k]) if k in CONTRASTS else "" for k, _ in IMAGE_METRICS) + " |")
    for n in image_rows:
        params = f"{parameters[n]:,}" if n in parameters else ""
        label = f"**{n}**" if n == "lesion-ddpm" else n
        p(f"| {label} | {params} | " + " | ".join(
            cell(image_summary[n][k], 2 if k == "brain_psnr" else 3) for k, _ in IMAGE_METRICS) + " |")
    p()
    if any(n.startswith("ablation-") for n in names):
        p("Ablations: `ablation-mask-input` is Lesion-DDPM with the mask at the input only "
          "(`--mask-sites input`), `ablation-lesion-weight-0` without the lesion weight "
          "(`--lesion-weight 0`).")
    else:
        p("Ablations: not run (`--no-ablations`).")
    p("Parameters are the generator's (pix2pix: without its discriminator).")
    p()
    p(f"## Downstream: seg trained on each set, Dice and lesion-wise F1 on the real test scans "
      f"(mean ± sd over {len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
    p()
    p("| training set | scans | " + " | ".join(h for _, h in SEG_METRICS) + " |")
    p("|---|---:|" + "---:|" * len(SEG_METRICS))
    for n in seg_rows:
        scans = per_seed_seg[seeds[0]][n]["training_scans"]
        p(f"| {n} | {scans if scans is not None else 'n/a'} | "
          + " | ".join(cell(seg_summary[n][k]) for k, _ in SEG_METRICS) + " |")
    p()
    if beyond:
        print_beyond(p, beyond)
    p("## The paper's claims here")
    p()
    for c in claims:
        p(f"{c['claim']}: **{'holds' if c['holds'] else 'does not hold'}** — {c['figures']}.")
    p()
    p("Stage times (s): " + ", ".join(f"{k} {v}" for k, v in seconds.items()) + ".")

    results = {"setup": setup, "machine": host, "stage_seconds": seconds,
               "invocation_seconds": a.seconds, "parameters": parameters,
               "images": {"per_seed": {str(s): per_seed_images[s] for s in seeds},
                          "real_statistics": {str(s): real_stats[s] for s in seeds},
                          "summary": image_summary, "real_summary": real_summary},
               "downstream": {"per_seed": {str(s): per_seed_seg[s] for s in seeds},
                              "summary": seg_summary},
               "claims": claims}
    if beyond:
        results["beyond"] = {k: v for k, v in beyond.items() if k != "per_seed"}
        results["beyond"]["per_seed"] = {str(s): v for s, v in beyond["per_seed"].items()}
    rows = io.StringIO()
    w = csv.writer(rows, lineterminator="\n")
    w.writerow(["table", "row", "metric", "seed", "value"])
    for s in seeds:
        for n in image_rows:
            for k, _ in IMAGE_METRICS:
                w.writerow(["images", n, k, s, per_seed_images[s][n].get(k)])
        for k in CONTRASTS:
            w.writerow(["images", "real", k, s, real_stats[s].get(k)])
        for n in seg_rows:
            for k, _ in SEG_METRICS:
                w.writerow(["downstream", n, k, s, per_seed_seg[s][n].get(k)])
    for s in (beyond["seeds"] if beyond else []):
        for n, r in beyond["per_seed"][s].items():
            for k in ("dice", "lesion_f1"):
                w.writerow(["beyond", n, k, s, r[k]])

    have_montage = montage(out, setup, names, os.path.join(out, "montage.png"))
    if have_montage:
        p()
        p("![real | each generator | lesion mask](montage.png)")
    write_whole(os.path.join(out, "results.json"), json.dumps(results, indent=1, allow_nan=False,
                                                              default=str))
    write_whole(os.path.join(out, "results.csv"), rows.getvalue())
    write_whole(os.path.join(out, "results.md"), md.getvalue())


if __name__ == "__main__":
    main()
