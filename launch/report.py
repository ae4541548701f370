#!/usr/bin/env python3
"""The demo report: loss curve (PNG) and a markdown summary of one run, its samples and their
evaluation (`lddpm evaluate images` against the store, with the twin and the references), with
each quality target of docs/models.md ("Quality targets") checked (met / missed, with the figures). Uses Debian's
python3-matplotlib (Agg backend, no display needed)."""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line of a killed run
    return rows


def targets(report, generator):
    """(description, met, figures) for each target of docs/models.md "Quality targets"."""
    gens = {g["name"]: g["mean"] for g in report["generators"]}
    g, real = gens[generator], report["real_statistics"]["mean"]
    out = [("whole-grid SSIM >= 0.75", g["ssim"] >= 0.75, f"{g['ssim']:.3f}")]
    if "constant" in gens:
        c = gens["constant"]["brain_mae"]
        out.append(("brain MAE below the constant's", g["brain_mae"] < c,
                    f"{g['brain_mae']:.3f} vs {c:.3f}"))
    if "twin" in gens:
        t = gens["twin"]
        out.append(("brain MAE <= 1.25 x the twin's", g["brain_mae"] <= 1.25 * t["brain_mae"],
                    f"{g['brain_mae']:.3f} vs 1.25 x {t['brain_mae']:.3f} = {1.25 * t['brain_mae']:.3f}"))
        out.append(("brain SSIM >= 0.8 x the twin's", g["brain_ssim"] >= 0.8 * t["brain_ssim"],
                    f"{g['brain_ssim']:.3f} vs 0.8 x {t['brain_ssim']:.3f} = {0.8 * t['brain_ssim']:.3f}"))
    for key, name in (("csf_contrast", "CSF − WM"), ("gm_contrast", "GM − WM"),
                      ("lesion_contrast", "lesion − WM")):
        bound = max(0.25 * abs(real[key]), 0.1)
        out.append((f"{name} contrast within max(25 %, 0.1) of the real scans'",
                    abs(g[key] - real[key]) <= bound,
                    f"{g[key]:.3f} vs {real[key]:.3f} ± {bound:.3f}"))
    w, rw = g["wm_texture"], real["wm_texture"]
    out.append(("white-matter texture within 50 % of the real scans'", abs(w - rw) <= 0.5 * rw,
                f"{w:.4f} vs {rw:.4f}"))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--evaluation", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--generator", default=None,
                   help="the generator row the targets are checked on (default: the first)")
    a = p.parse_args()

    rows = read_rows(os.path.join(a.run, "metrics.jsonl"))
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot(steps, [r["loss"] for r in rows], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (weighted L1)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "loss.png"))

    with open(os.path.join(a.samples, "sampling.json")) as f:
        sampling = json.load(f)
    with open(os.path.join(a.evaluation, "images.json")) as f:
        report = json.load(f)
    with open(os.path.join(a.evaluation, "images.md")) as f:
        summary = f.read().split("\n\n")[0]  # the summary table; the per-case one stays in images.md
    generator = a.generator or report["generators"][0]["name"]
    checks = targets(report, generator)
    last = rows[-1] if rows else {}
    lines = [
        "# lesion-ddpm demo report",
        "",
        f"Training: {len(rows)} logged rows, last step {last.get('step')}, loss {last.get('loss', 0):.4g}, "
        f"{last.get('samples_per_s', 0):.3g} samples/s, data wait {100 * last.get('data_wait', 0):.2g} %.",
        f"Sampling: {sampling['sampler']} with {sampling['steps']} steps (eta {sampling['eta']}), "
        f"{sampling['seconds_per_volume']:.1f} s per volume on {sampling['ranks']} rank(s).",
        "",
        f"Test scans, normalised intensities in [-1, 1]; mean ± sd over {len(report['cases'])} cases. "
        "`twin`: the same subjects scanned again (what a perfect generator scores); `constant` and "
        "`class mean`: references from the training scans (docs/metrics.md).",
        "",
        summary.strip(),
        "",
        f"Quality targets ({generator}): {sum(m for _, m, _ in checks)} of {len(checks)} met.",
        "",
        "| target | | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {d} | {'met' if m else 'missed'} | {f} |" for d, m, f in checks]
    lines += [
        "",
        "Pictures: loss.png (loss curve), overview.png (per case: real | synthetic | lesion mask, "
        "the axial slice with the most lesion).",
    ]
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "targets.json"), "w") as f:
        json.dump([{"target": d, "met": bool(m), "measured": fig_} for d, m, fig_ in checks], f, indent=1)


if __name__ == "__main__":
    main()
