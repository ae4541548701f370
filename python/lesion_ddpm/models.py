"""The four lesion-ddpm models around the U-Net, with the state-dict layout of `lddpm export`:
lesion-ddpm and cond-ddpm ("unet.*", "class_means" with the class-mean prior), pix2pix's generator
("generator.*"; the discriminator's weights in the file are not needed to generate) and the seg
U-Net ("unet.*")."""
import os
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from . import diffusion, rng
from .config import ModelConfig
from .network import UNet3D, inference


def condition_from_labels(tissue: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
    """The conditioning mask the generators see, [B, 4, D, H, W] float32: one-hot CSF, GM, WM of
    the tissue labels (1, 2, 3; 0 is background), then the lesion mask in {0, 1}. tissue and
    lesion: [B, D, H, W] or [D, H, W] (a batch of one)."""
    if tissue.shape != lesion.shape:
        raise ValueError(f"tissue {list(tissue.shape)} and lesion {list(lesion.shape)} differ")
    if tissue.dim() == 3:
        tissue, lesion = tissue.unsqueeze(0), lesion.unsqueeze(0)
    t = tissue.long().unsqueeze(1)
    return torch.cat([t.eq(1), t.eq(2), t.eq(3), lesion.unsqueeze(1).gt(0)], 1).float()


class _ClassMeanPrior(nn.Module):
    """The class-mean intensity prior μ(condition) (models/Model.cpp intensityPrior)."""

    def __init__(self, enabled: bool):
        super().__init__()
        self.has_prior = enabled
        if enabled:
            self.register_buffer("class_means", torch.zeros(5))

    def intensity_prior(self, condition: torch.Tensor) -> torch.Tensor:
        shape = [condition.size(0), 1] + list(condition.shape[2:])
        if not self.has_prior:
            return torch.zeros(shape, dtype=condition.dtype, device=condition.device)
        means = self.class_means.to(condition.dtype)
        anatomy, lesion = condition.narrow(1, 0, 3), condition.narrow(1, 3, 1)
        offsets = (means.narrow(0, 1, 3) - means[0]).view(1, 3, 1, 1, 1)
        tissue = means[0] + (anatomy * offsets).sum(1, keepdim=True)
        return tissue + (means[4] - tissue) * lesion


def _unet(c: ModelConfig, **kw) -> UNet3D:
    return UNet3D(base_channels=c.base_channels, channel_mult=c.channel_mult,
                  blocks_per_level=c.blocks_per_level, attention_levels=c.attention_levels,
                  attention_heads=c.attention_heads, groups=c.groups,
                  modulation_hidden=c.modulation_hidden,
                  shared_mask_embedding=c.mask_embedding == "level", **kw)


class DiffusionModel(_ClassMeanPrior):
    """lesion-ddpm (mask at the sites of --mask-sites) or cond-ddpm (mask at the input only)."""

    def __init__(self, c: ModelConfig):
        super().__init__(c.intensity_prior == "class-mean")
        self.config = c
        sites = set(c.mask_sites) if c.model == "lesion-ddpm" else {"input"}
        self.unet = _unet(c, in_channels=1, out_channels=1, mask_channels=c.anatomy_channels + 1,
                          mask_at_input="input" in sites, mask_in_encoder="encoder" in sites,
                          mask_in_bottleneck="bottleneck" in sites,
                          mask_in_decoder="decoder" in sites)
        self.schedule = diffusion.NoiseSchedule(c.timesteps)

    def denoise(self, xt: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The raw network output (ε̂, v̂, x̂0 or edm's F) at (x_t, t [B], condition); with the
        class-mean prior x_t is of the residual x0 − μ(condition)."""
        c = self.config
        return self.unet(diffusion.network_input(self.schedule, c.prediction, c.sigma_data, xt, t),
                         t, condition)

    @torch.no_grad()
    def synthesize(self, condition: torch.Tensor, generators: Sequence[torch.Generator],
                   sampler: str = "ddim", steps: Optional[int] = None, eta: float = 0.0,
                   on_step=None, condition_cache_bytes: int = 4096 << 20) -> torch.Tensor:
        """FLAIR [B, 1, D, H, W] in [-1, 1] for the masks of `condition`, as `lddpm sample`:
        DDIM over the model's K training timesteps unless `steps` says otherwise. The mask's
        modulation maps are made once, within `condition_cache_bytes` (--condition-cache-mib)."""
        c = self.config
        if c.train_steps > 0 and sampler == "ddpm":
            raise ValueError(f"the model trained on {c.train_steps} of its {c.timesteps} "
                             f"timesteps only: sample with ddim")
        steps = steps or (c.train_steps if c.train_steps > 0 else 50)
        like = condition.to(next(self.parameters()).dtype)
        shape = [condition.size(0), 1] + list(condition.shape[2:])
        with inference():  # as the steps run: the same kernels, so the same bits
            made = self.unet.condition(like, like.dtype, condition_cache_bytes)

        def denoiser(xt, t):
            return self.unet(diffusion.network_input(self.schedule, c.prediction, c.sigma_data,
                                                     xt, t), t, condition=made)

        x = diffusion.sample(self.schedule, c.prediction, c.sigma_data, denoiser, shape, like,
                             generators, sampler=sampler, steps=steps,
                             spacing=c.timestep_spacing, eta=eta, on_step=on_step)
        return (x + self.intensity_prior(like)).clamp(-1, 1) if self.has_prior else x


class Pix2PixGenerator(_ClassMeanPrior):
    def __init__(self, c: ModelConfig):
        super().__init__(c.intensity_prior == "class-mean")
        self.config = c
        self.generator = _unet(c, in_channels=c.anatomy_channels + 1, out_channels=1,
                               use_timestep=False)

    def generate(self, condition: torch.Tensor) -> torch.Tensor:
        residual = torch.tanh(self.generator(condition))
        return residual + self.intensity_prior(condition) if self.has_prior else residual

    @inference()
    def synthesize(self, condition, generators=None, **_):
        """FLAIR [B, 1, D, H, W] in [-1, 1], as `lddpm sample` (the generator's image, clamped:
        the residual's tanh plus the prior can leave [-1, 1])."""
        return self.generate(condition.to(next(self.parameters()).dtype)).clamp(-1, 1)


class Segmenter(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.unet = _unet(c, in_channels=1, out_channels=1, use_timestep=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Lesion logits [B, 1, D, H, W] of FLAIR [B, 1, D, H, W] (whole volume, no windows)."""
        return self.unet(image)


def build(config: ModelConfig) -> nn.Module:
    if config.model in ("lesion-ddpm", "cond-ddpm"):
        return DiffusionModel(config)
    if config.model == "pix2pix":
        return Pix2PixGenerator(config)
    return Segmenter(config)


def load(weights: str, config: Union[str, ModelConfig, None] = None) -> nn.Module:
    """The model of `config` (a run's or checkpoint's config.ini; by default the config.ini beside
    `weights`) with the weights of `lddpm export --out WEIGHTS` loaded, in eval mode on the CPU.
    Every tensor of the network must be in the file and every tensor in the file must belong to the
    network (pix2pix's discriminator excepted): ValueError naming them otherwise."""
    if config is None:
        config = os.path.join(os.path.dirname(os.path.abspath(weights)), "config.ini")
    if isinstance(config, str):
        config = ModelConfig.read(config)
    model = build(config)
    state = torch.load(weights, map_location="cpu")
    if not isinstance(state, dict):
        raise ValueError(f"{weights}: not a dict of tensors (lddpm export writes one)")
    if config.model == "pix2pix":
        state = {k: v for k, v in state.items() if not k.startswith("discriminator.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{weights} does not fit the {config.model} network of its config: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape "
                         f"{wrong[:5]}")
    model.load_state_dict(state)
    return model.eval()


def case_generators(seed: int, case_ids: Sequence[str]):
    """One generator per case, as `lddpm sample --seed SEED` seeds them."""
    return [rng.case_generator(seed, case) for case in case_ids]
