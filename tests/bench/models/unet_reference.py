#!/usr/bin/python3
"""The lesion-ddpm U-Net and training step written in Python with Debian's python3-torch (the same
LibTorch 1.13 as ours), module for module as models/Blocks.cpp and models/UNet3D.cpp, for the step
time comparison in docs/BENCHMARKS.md (benchmark c).

  /usr/bin/python3 tests/bench/models/unet_reference.py --side 48 --batch 2 --threads 2 \
      --compare build/tests/bench/models/ModelsBench

With --compare it alternates rounds of its own timing and the C++ binary's (`--mode step` with the
same settings), so both see the same machine load, and prints the ratio of the medians.
"""
import argparse
import json
import math
import statistics
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3(cin, cout, stride=1):
    return nn.Conv3d(cin, cout, 3, stride=stride, padding=1)


def zero_(module):
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class MaskModulation(nn.Module):
    def __init__(self, channels, mask_channels, hidden):
        super().__init__()
        self.shared = conv3(mask_channels, hidden)
        self.gamma_beta = zero_(conv3(hidden, 2 * channels))

    def forward(self, h, mask):
        gamma, beta = self.gamma_beta(F.silu(self.shared(mask))).chunk(2, dim=1)
        return h * (1 + gamma) + beta


class ResBlock3D(nn.Module):
    def __init__(self, cin, cout, embed_dim, mask_channels, hidden, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = conv3(cin, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = zero_(conv3(cout, cout))
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else None
        self.emb_proj = nn.Linear(embed_dim, cout)
        self.mod1 = MaskModulation(cin, mask_channels, hidden) if mask_channels else None
        self.mod2 = MaskModulation(cout, mask_channels, hidden) if mask_channels else None

    def forward(self, x, emb, mask):
        h = self.norm1(x)
        if self.mod1 is not None:
            h = self.mod1(h, mask)
        h = self.conv1(F.silu(h))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None, None]
        h = self.norm2(h)
        if self.mod2 is not None:
            h = self.mod2(h, mask)
        h = self.conv2(F.silu(h))
        return (x if self.skip is None else self.skip(x)) + h


class Attention3D(nn.Module):
    def __init__(self, channels, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.proj = zero_(nn.Conv3d(channels, channels, 1))

    def forward(self, x):
        b, c = x.shape[:2]
        n = x.shape[2] * x.shape[3] * x.shape[4]
        hd = c // self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(b * self.heads, 3 * hd, n).chunk(3, dim=1)
        w = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(hd), dim=-1)
        return x + self.proj(torch.bmm(v, w.transpose(1, 2)).reshape(x.shape))


class Up(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = conv3(channels, channels)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet3D(nn.Module):
    """lesion-ddpm: mask at the input and modulating every encoder, bottleneck, decoder block."""

    def __init__(self, base=16, mult=(1, 2, 4, 4), blocks=1, attn=(3,), heads=4, groups=8,
                 mask_channels=4, hidden=32):
        super().__init__()
        self.base, self.mult, self.blocks, self.attn = base, mult, blocks, attn
        e = 4 * base
        self.fc1, self.fc2 = nn.Linear(base, e), nn.Linear(e, e)
        self.in_conv = conv3(1 + mask_channels, base)
        block = lambda i, o: ResBlock3D(i, o, e, mask_channels, hidden, groups)
        skips, ch = [base], base
        self.enc, self.enc_attn, self.down = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for lvl, m in enumerate(mult):
            for _ in range(blocks):
                self.enc.append(block(ch, base * m))
                ch = base * m
                self.enc_attn.append(Attention3D(ch, heads, groups) if lvl in attn else nn.Identity())
                skips.append(ch)
            if lvl + 1 < len(mult):
                self.down.append(conv3(ch, ch, stride=2))
                skips.append(ch)
        self.mid1, self.mid_attn, self.mid2 = block(ch, ch), Attention3D(ch, heads, groups), block(ch, ch)
        self.dec, self.dec_attn, self.up = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for lvl in reversed(range(len(mult))):
            for _ in range(blocks + 1):
                self.dec.append(block(ch + skips.pop(), base * mult[lvl]))
                ch = base * mult[lvl]
                self.dec_attn.append(Attention3D(ch, heads, groups) if lvl in attn else nn.Identity())
            if lvl > 0:
                self.up.append(Up(ch))
        self.out_norm = nn.GroupNorm(groups, ch)
        self.out_conv = zero_(conv3(ch, 1))

    def embed(self, t):
        half = self.base // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half))
        args = t.float()[:, None] * freqs[None]
        return self.fc2(F.silu(self.fc1(torch.cat([torch.cos(args), torch.sin(args)], 1))))

    def forward(self, x, t, mask):
        emb = self.embed(t)
        masks = [mask if l == 0 else F.avg_pool3d(mask, 2 ** l) for l in range(len(self.mult))]
        h = self.in_conv(torch.cat([x, mask], 1))
        skips, i = [h], 0
        for lvl in range(len(self.mult)):
            for _ in range(self.blocks):
                h = self.enc_attn[i](self.enc[i](h, emb, masks[lvl]))
                skips.append(h)
                i += 1
            if lvl + 1 < len(self.mult):
                h = self.down[lvl](h)
                skips.append(h)
        coarse = masks[-1]
        h = self.mid2(self.mid_attn(self.mid1(h, emb, coarse)), emb, coarse)
        i, u = 0, 0
        for lvl in reversed(range(len(self.mult))):
            for _ in range(self.blocks + 1):
                h = self.dec_attn[i](self.dec[i](torch.cat([h, skips.pop()], 1), emb, masks[lvl]))
                i += 1
            if lvl > 0:
                h = self.up[u](h)
                u += 1
        return self.out_conv(F.silu(self.out_norm(h)))


def alphas_cumprod(T, s=0.008, max_beta=0.999):
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    out, prod = [], 1.0
    for t in range(T):
        prod *= 1 - min(1 - f(t + 1) / f(t), max_beta)
        out.append(prod)
    return torch.tensor(out, dtype=torch.float64)


def time_steps(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = UNet3D(base=args.base)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    abar = alphas_cumprod(1000)
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
