#!/usr/bin/python3
"""The lesion-ddpm training step in Python with Debian's python3-torch (the same LibTorch 1.13 as
ours), for the step time comparison in docs/BENCHMARKS.md (benchmark c). The network is the
supported Python twin (python/lesion_ddpm, docs/python.md) built with the registry's defaults, as
ModelsBench builds the C++ one; the parameter counts are compared on every round. Its weights keep
PyTorch's initialisation (the C++ model zeroes some layers): values do not change a dense step's
time.

  /usr/bin/python3 tests/bench/models/unet_reference.py --side 48 --batch 2 --threads 2 \
      --compare build/tests/bench/models/ModelsBench

With --compare it alternates rounds of its own timing and the C++ binary's (`--mode step` with the
same settings), so both see the same machine load, and prints the ratio of the medians.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "python"))
from lesion_ddpm import ModelConfig, NoiseSchedule, build  # noqa: E402


def time_steps(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build(ModelConfig(base_channels=args.base)).unet
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    abar = NoiseSchedule(1000).table
    s, b = args.side, args.batch
    x0 = torch.rand(b, 1, s, s, s) * 2 - 1
    mask = (torch.rand(b, 4, s, s, s) > 0.5).float()
    lesion = mask[:, 3:4]
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        t = torch.randint(0, 1000, (b,))
        noise = torch.randn_like(x0)
        a = abar[t].float().view(b, 1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = ((1 + 4.0 * lesion) * (net(xt, t, mask) - noise).abs()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), sum(p.numel() for p in net.parameters())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=48)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--compare", help="path of the C++ ModelsBench binary to interleave with")
    args = p.parse_args()
    ours, theirs = [], []
    for r in range(args.rounds if args.compare else 1):
        py, params = time_steps(args)
        theirs.append(py)
        line = {"round": r, "python_step_s": round(py, 4), "python_params": params}
        if args.compare:
            cmd = [args.compare, "--mode", "step", "--side", str(args.side), "--batch", str(args.batch),
                   "--base", str(args.base), "--threads", str(args.threads), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--json"]
            cpp = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            ours.append(cpp["step_s"])
            line.update({"cpp_step_s": round(cpp["step_s"], 4), "cpp_params": cpp["params"]})
            if cpp["params"] != params:
                raise SystemExit(f"architectures differ: {params} Python vs {cpp['params']} C++ parameters")
        print(json.dumps(line), flush=True)
    if args.compare:
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(json.dumps({"python_median_s": round(statistics.median(theirs), 4),
                          "cpp_median_s": round(statistics.median(ours), 4),
                          "python_over_cpp": round(ratio, 3),
                          "best_python_s": round(min(theirs), 4), "best_cpp_s": round(min(ours), 4),
                          "best_python_over_cpp": round(min(theirs) / min(ours), 3)}))


if __name__ == "__main__":
    main()
