#!/usr/bin/env python3
"""The demo report: loss curve (PNG) and a markdown summary of one run, its samples and their
evaluation. Uses Debian's python3-matplotlib (Agg backend, no display needed)."""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--evaluation", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    rows = []
    with open(os.path.join(a.run, "metrics.jsonl")) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line of a killed run
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot(steps, [r["loss"] for r in rows], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("lesion-weighted L1 (noise)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "loss.png"))

    with open(os.path.join(a.samples, "sampling.json")) as f:
        sampling = json.load(f)
    with open(os.path.join(a.evaluation, "images.md")) as f:
        table = f.read()
    last = rows[-1] if rows else {}
    lines = [
        "# lesion-ddpm demo report",
        "",
        f"Training: {len(rows)} logged rows, last step {last.get('step')}, loss {last.get('loss', 0):.4g}, "
        f"{last.get('samples_per_s', 0):.3g} samples/s, data wait {100 * last.get('data_wait', 0):.2g} %.",
        f"Sampling: {sampling['sampler']} with {sampling['steps']} steps, "
        f"{sampling['seconds_per_volume']:.1f} s per volume on {sampling['ranks']} rank(s).",
        "",
        "Image metrics, synthetic vs real test scans (normalised intensities in [-1, 1]):",
        "",
        table.strip(),
        "",
        "Pictures: loss.png (loss curve), overview.png (per case: real | synthetic | lesion mask, mid-axial slice).",
    ]
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
