"""lesion-ddpm's networks in pure PyTorch, for the weights `lddpm export` writes: load a trained
lesion-ddpm / cond-ddpm / pix2pix / seg model, run its denoiser, and sample FLAIR from masks the way
`lddpm sample` does (same seeds, same noise). Usage: docs/python.md."""
from .config import ModelConfig, read_settings
from .diffusion import NoiseSchedule, sample, timestep_subsequence
from .models import (DiffusionModel, Pix2PixGenerator, Segmenter, build, case_generators,
                     condition_from_labels, load)
from .network import UNet3D
from .rng import case_generator, derive_seed, name_key

__all__ = ["ModelConfig", "read_settings", "NoiseSchedule", "sample", "timestep_subsequence",
           "DiffusionModel", "Pix2PixGenerator", "Segmenter", "build", "case_generators",
           "condition_from_labels", "load", "UNet3D", "case_generator", "derive_seed",
           "name_key"]
