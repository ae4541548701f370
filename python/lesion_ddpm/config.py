"""A run's model options, read from the config.ini that `lddpm train` writes into every run folder
(and copies into every checkpoint): the resolved `key = value` lines of the command line, the
--config file and the defaults, so nothing here guesses a default of its own."""
from dataclasses import dataclass, field
from typing import List

MODELS = ("lesion-ddpm", "cond-ddpm", "pix2pix", "seg")
MASK_SITES = ("input", "encoder", "bottleneck", "decoder")


def _ints(text: str, key: str) -> List[int]:
    text = text.strip()
    if not text:
        return []
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"config key '{key}': '{text}' is not a comma-separated list of integers")
    if any(v < 0 for v in values):
        raise ValueError(f"config key '{key}': '{text}' has a negative entry")
    return values


def read_settings(path: str) -> dict:
    """Every `key = value` of an lddpm config.ini as text (comments and blank lines skipped)."""
    settings = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise ValueError(f"{path}:{number}: not a 'key = value' line: {line!r}")
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


@dataclass
class ModelConfig:
    """The model options of `lddpm train` (models/Registry.h ModelConfig), typed, with its
    defaults."""
    model: str = "lesion-ddpm"
    anatomy_channels: int = 3
    base_channels: int = 16
    channel_mult: List[int] = field(default_factory=lambda: [1, 2, 4, 4])
    blocks_per_level: int = 1
    attention_levels: List[int] = field(default_factory=lambda: [3])
    attention_heads: int = 4
    groups: int = 8
    mask_sites: List[str] = field(default_factory=lambda: list(MASK_SITES))
    modulation_hidden: int = 32
    mask_embedding: str = "block"
    timesteps: int = 1000
    prediction: str = "eps"
    sigma_data: float = 0.5
    train_steps: int = 0
    timestep_spacing: str = "uniform"
    intensity_prior: str = "none"

    @classmethod
    def from_settings(cls, s: dict, source: str = "config") -> "ModelConfig":
        def need(key):
            if key not in s:
                raise ValueError(f"{source}: no '{key}' (not a config.ini that lddpm train wrote?)")
            return s[key]

        c = cls(
            model=need("model"),
            anatomy_channels=int(need("anatomy-channels")),
            base_channels=int(need("base-channels")),
            channel_mult=_ints(need("channel-mult"), "channel-mult"),
            blocks_per_level=int(need("blocks-per-level")),
            attention_levels=_ints(need("attention-levels"), "attention-levels"),
            attention_heads=int(need("attention-heads")),
            groups=int(need("groups")),
            mask_sites=[m for m in need("mask-sites").split(",") if m],
            modulation_hidden=int(need("modulation-hidden")),
            mask_embedding=need("mask-embedding"),
            timesteps=int(need("timesteps")),
            prediction=need("prediction"),
            sigma_data=float(need("sigma-data")),
            train_steps=int(need("train-steps")),
            timestep_spacing=need("timestep-spacing"),
            intensity_prior=need("intensity-prior"),
        )
        c.validate(source)
        return c

    @classmethod
    def read(cls, path: str) -> "ModelConfig":
        return cls.from_settings(read_settings(path), path)

    def validate(self, source: str = "config") -> None:
        def bad(key, why):
            raise ValueError(f"{source}: '{key}' {why}")

        if self.model not in MODELS:
            bad("model", f"is '{self.model}', not one of {', '.join(MODELS)}")
        if self.anatomy_channels != 3:
            bad("anatomy-channels", "must be 3 (one-hot CSF, GM, WM)")
        if not self.channel_mult:
            bad("channel-mult", "names no level")
        for level, mult in enumerate(self.channel_mult):
            if (self.base_channels * mult) % self.groups:
                bad("groups", f"{self.groups} does not divide level {level}'s width")
        if any(level >= len(self.channel_mult) for level in self.attention_levels):
            bad("attention-levels", "names a level the network does not have")
        if any(site not in MASK_SITES for site in self.mask_sites):
            bad("mask-sites", f"{self.mask_sites} has a site outside {', '.join(MASK_SITES)}")
        if self.mask_embedding not in ("block", "level"):
            bad("mask-embedding", f"is '{self.mask_embedding}', not block or level")
        if self.prediction not in ("eps", "v", "x0", "edm"):
            bad("prediction", f"is '{self.prediction}', not eps, v, x0 or edm")
        if self.timestep_spacing not in ("uniform", "quadratic"):
            bad("timestep-spacing", f"is '{self.timestep_spacing}', not uniform or quadratic")
        if self.intensity_prior not in ("none", "class-mean"):
            bad("intensity-prior", f"is '{self.intensity_prior}', not none or class-mean")
        if not 0 <= self.train_steps <= self.timesteps:
            bad("train-steps", f"{self.train_steps} is outside [0, timesteps]")
