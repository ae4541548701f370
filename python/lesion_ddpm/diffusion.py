"""Gaussian diffusion as models/Diffusion.cpp: the cosine schedule (float64), the x̂0 each
prediction implies, and the DDPM and DDIM samplers, each expression in the C++ order so that the
same inputs give the same floats."""
import math
from typing import Callable, List, Optional, Sequence

import torch

from .network import inference


class NoiseSchedule:
    """ᾱ(t) = f(t)/f(0), f(t) = cos²(π/2 (t/T + s)/(1 + s)); β_t = min(1 - ᾱ_t/ᾱ_{t-1}, βmax); ᾱ as
    the product of (1 - β). Index t = 0 is the first noising step."""

    def __init__(self, timesteps: int = 1000, offset: float = 0.008, max_beta: float = 0.999):
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        T = float(timesteps)

        def f(t):
            c = math.cos((t / T + offset) / (1 + offset) * math.pi / 2)
            return c * c

        self.betas: List[float] = []
        self.alpha_bar: List[float] = []
        product = 1.0
        for t in range(timesteps):
            beta = min(1.0 - f(float(t + 1)) / f(float(t)), max_beta)
            self.betas.append(beta)
            product *= 1.0 - beta
            self.alpha_bar.append(product)
        self.table = torch.tensor(self.alpha_bar, dtype=torch.float64)

    @property
    def timesteps(self) -> int:
        return len(self.alpha_bar)

    def alpha_bar_at(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """ᾱ_t for timesteps t [B] as [B, 1, 1, 1, 1] in the dtype/device of `like`."""
        shape = [t.size(0)] + [1] * (like.dim() - 1)
        return self.table.index_select(0, t.cpu().long()).to(like.dtype).to(like.device).view(shape)


def edm_d(a: torch.Tensor, sigma_data: float) -> torch.Tensor:
    return 1 - a + a * (sigma_data * sigma_data)


def network_input(schedule: NoiseSchedule, prediction: str, sigma_data: float,
                  xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if prediction != "edm":
        return xt
    return xt / edm_d(schedule.alpha_bar_at(t, xt), sigma_data).sqrt()


def predict_x0(schedule: NoiseSchedule, prediction: str, sigma_data: float, xt: torch.Tensor,
               t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """x̂0 implied by the denoiser output at (x_t, t); no clamping."""
    if prediction == "x0":
        return output
    a = schedule.alpha_bar_at(t, xt)
    if prediction == "eps":
        return (xt - (1 - a).sqrt() * output) / a.sqrt()
    if prediction == "edm":
        d = edm_d(a, sigma_data)
        return (sigma_data * sigma_data) * a.sqrt() * xt / d + (1 - a).sqrt() * sigma_data \
            / d.sqrt() * output
    return a.sqrt() * xt - (1 - a).sqrt() * output  # v


def ddim_timesteps(timesteps: int, steps: int) -> List[int]:
    """K timesteps evenly from T-1 down to 0 (rounded half away from zero, as std::llround)."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must be in [1, {timesteps}], got {steps}")
    out = []
    for i in range(steps - 1, -1, -1):
        pos = float(timesteps - 1) if steps == 1 else i * float(timesteps - 1) / float(steps - 1)
        out.append(int(math.floor(pos + 0.5)))
    return out


def timestep_subsequence(timesteps: int, steps: int, spacing: str) -> List[int]:
    """K distinct timesteps from T-1 down to 0, uniform or quadratic (t_i ∝ i²)."""
    if spacing == "uniform":
        return ddim_timesteps(timesteps, steps)
    if spacing != "quadratic":
        raise ValueError(f"unknown timestep spacing '{spacing}' (expected uniform or quadratic)")
    if not 1 <= steps <= timesteps:
        raise ValueError(f"timestep subsequence: steps must be in [1, {timesteps}], got {steps}")
    up = []
    for i in range(steps):
        u = 1.0 if steps == 1 else i / float(steps - 1)
        up.append(int(math.floor(u * u * float(timesteps - 1) + 0.5)))
    for i in range(1, len(up)):
        up[i] = max(up[i], up[i - 1] + 1)
    up[-1] = timesteps - 1
    for i in range(len(up) - 1, 0, -1):
        up[i - 1] = min(up[i - 1], up[i] - 1)
    return up[::-1]


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _x0(schedule, prediction, sigma_data, xt, t: int, output, clip: bool):
    ts = torch.full((xt.size(0),), t, dtype=torch.int64, device=xt.device)
    x0 = predict_x0(schedule, prediction, sigma_data, xt, ts, output)
    return x0.clamp(-1, 1) if clip else x0


def ddim_step(schedule, prediction, sigma_data, xt, t: int, t_prev: int, output,
              noise: Optional[torch.Tensor], eta: float, clip: bool = True):
    """One DDIM step t -> t_prev (-1: to clean data), ε re-derived from the clamped x̂0."""
    x0 = _x0(schedule, prediction, sigma_data, xt, t, output, clip)
    a = schedule.alpha_bar[t]
    a_prev = 1.0 if t_prev < 0 else schedule.alpha_bar[t_prev]
    eps = (xt - math.sqrt(a) * x0) / math.sqrt(1 - a)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a)) * math.sqrt(1 - a / a_prev)
    nxt = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma * sigma, 0.0)) * eps
    if sigma > 0:
        nxt = nxt + sigma * noise
    return nxt


def ddpm_step(schedule, prediction, sigma_data, xt, t: int, output,
              noise: Optional[torch.Tensor], clip: bool = True):
    """One ancestral step t -> t-1 with the posterior variance β̃_t."""
    x0 = _x0(schedule, prediction, sigma_data, xt, t, output, clip)
    a, beta = schedule.alpha_bar[t], schedule.betas[t]
    a_prev = 1.0 if t == 0 else schedule.alpha_bar[t - 1]
    mean = (math.sqrt(a_prev) * beta / (1 - a)) * x0 \
        + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)) * xt
    if t == 0:
        return mean
    return mean + math.sqrt(beta * (1 - a_prev) / (1 - a)) * noise


def randn_from(generators: Sequence[torch.Generator], shape: Sequence[int], like: torch.Tensor):
    """Standard normal [B, ...]: sample b from generators[b] (or all from generators[0]), drawn
    in float32 on the CPU as `lddpm` draws it, then moved to `like`'s dtype and device."""
    if len(generators) == 1:
        noise = torch.randn(list(shape), generator=generators[0], dtype=torch.float32)
    else:
        if len(generators) != shape[0]:
            raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
        one = [1] + list(shape[1:])
        noise = torch.cat([torch.randn(one, generator=g, dtype=torch.float32)
                           for g in generators], 0)
    return noise.to(like.dtype).to(like.device)


@inference()
def sample(schedule: NoiseSchedule, prediction: str, sigma_data: float, denoiser: Denoiser,
           shape: Sequence[int], like: torch.Tensor, generators: Sequence[torch.Generator],
           sampler: str = "ddim", steps: int = 50, spacing: str = "uniform", eta: float = 0.0,
           clip: bool = True, on_step: Optional[Callable[[int, int], None]] = None):
    """x_T ~ N(0, I) (drawn first), then one noise draw per stochastic step; returns x_0 in
    [-1, 1]. sampler "ddpm" visits all T steps, "ddim" the K of `spacing`."""
    x = randn_from(generators, shape, like)
    if sampler == "ddpm":
        ts = ddim_timesteps(schedule.timesteps, schedule.timesteps)
    elif sampler == "ddim":
        ts = timestep_subsequence(schedule.timesteps, steps, spacing)
    else:
        raise ValueError(f"unknown sampler '{sampler}' (expected ddpm or ddim)")
    for i, t in enumerate(ts):
        output = denoiser(x, torch.full((x.size(0),), t, dtype=torch.int64, device=x.device))
        if sampler == "ddpm":
            noise = randn_from(generators, shape, like) if t > 0 else None
            x = ddpm_step(schedule, prediction, sigma_data, x, t, output, noise, clip)
        else:
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            noise = randn_from(generators, shape, like) if eta > 0 and t_prev >= 0 else None
            x = ddim_step(schedule, prediction, sigma_data, x, t, t_prev, output, noise, eta, clip)
        if on_step:
            on_step(i + 1, len(ts))
    return x.clamp(-1, 1)
